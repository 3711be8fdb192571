//! Paying a batch: fee estimates from output sizes and unsigned PSBTs
//! (BIP174) an operator's wallet can sign as they are.
//!
//! # Sizes
//!
//! Sizes are counted in weight units (vbytes = weight / 4, rounded up):
//! the transaction overhead is 4 (version) + 4 (lock time) + the input and
//! output counts, times 4, plus 2 for the segwit marker and flag; an output
//! is `(8 + 1 + script length) · 4`; an input, with a typical signature,
//! is 592 (P2PKH), 364 (P2SH-wrapped P2WPKH), 272 (P2WPKH), 230 (P2TR key
//! path). The fee is `⌈vbytes · rate / 1000⌉` with the rate in sat/kvB
//! ([`FeeRate`]).

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, Psbt, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::address::{OutputType, PayoutAddress};
use crate::error::{Error, Result};

/// The lowest fee rate accepted: 100 sat/kvB (0.1 sat/vB), Bitcoin Core's
/// default minimum relay fee since 29.1; a lower rate is not relayed.
pub const MIN_SAT_PER_KVB: u64 = 100;

/// The highest fee rate accepted: 10,000,000 sat/kvB (10,000 sat/vB); a
/// higher one is a mistake (Bitcoin Core's own `maxfeerate` guard is 0.1
/// BTC/kvB).
pub const MAX_SAT_PER_KVB: u64 = 10_000_000;

/// A fee rate, checked where it is made: from 0.1 to 10,000 sat/vB.
///
/// It is held in satoshis per 1,000 virtual bytes (sat/kvB), Bitcoin Core's
/// own unit (`-minrelaytxfee`, `estimatesmartfee` in BTC/kvB), so fractional
/// rates such as 0.5 or 1.5 sat/vB are exact. The fee of `v` vbytes is
/// `⌈v · rate / 1000⌉` sat, rounded up like Bitcoin Core's `CFeeRate::GetFee`,
/// so a transaction never pays less than its rate. The [`bitcoin`] crate's
/// [`bitcoin::FeeRate`] counts sat per 1,000 weight units (a quarter of a
/// sat/kvB): [`FeeRate::from_bitcoin`] converts exactly,
/// [`FeeRate::to_bitcoin`] rounds up to its unit.
///
/// ```
/// use microgrid_core::settlement::psbt::FeeRate;
/// use rust_decimal::Decimal;
/// let half = FeeRate::from_sat_per_vb_decimal(Decimal::new(5, 1))?; // 0.5 sat/vB
/// assert_eq!(half.sat_per_kvb(), 500);
/// assert_eq!(half.fee_for_vbytes(141), bitcoin::Amount::from_sat(71)); // 70.5 rounds up
/// assert_eq!(FeeRate::new(2)?.fee_for_vbytes(141), bitcoin::Amount::from_sat(282));
/// assert_eq!(FeeRate::from_bitcoin(bitcoin::FeeRate::from_sat_per_kwu(250))?, FeeRate::new(1)?);
/// assert!(FeeRate::from_sat_per_kvb(99).is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "FeeRateRepr", into = "FeeRateRepr")]
pub struct FeeRate(u64);

/// A [`FeeRate`] as stored: `{"sat_per_kvb": 1500}`, checked when read.
#[derive(Serialize, Deserialize)]
struct FeeRateRepr {
    sat_per_kvb: u64,
}

impl FeeRate {
    /// `sat_per_vb` whole satoshis per vbyte (1 to 10,000).
    pub fn new(sat_per_vb: u64) -> Result<FeeRate> {
        match sat_per_vb.checked_mul(1000) {
            Some(kvb) if sat_per_vb >= 1 => FeeRate::from_sat_per_kvb(kvb),
            _ => Err(Error::InvalidFeeRate {
                sat_per_vb: Decimal::from(sat_per_vb),
            }),
        }
    }

    /// `sat_per_kvb` satoshis per 1,000 vbytes ([`MIN_SAT_PER_KVB`] to
    /// [`MAX_SAT_PER_KVB`]).
    pub fn from_sat_per_kvb(sat_per_kvb: u64) -> Result<FeeRate> {
        if (MIN_SAT_PER_KVB..=MAX_SAT_PER_KVB).contains(&sat_per_kvb) {
            Ok(FeeRate(sat_per_kvb))
        } else {
            Err(Error::InvalidFeeRate {
                sat_per_vb: Decimal::new(i64::try_from(sat_per_kvb).unwrap_or(i64::MAX), 3)
                    .normalize(),
            })
        }
    }

    /// A rate in sat/vB with at most 3 decimals (one sat/kvB), such as
    /// `1.5`; more decimals, or a rate out of range, is
    /// [`Error::InvalidFeeRate`].
    pub fn from_sat_per_vb_decimal(sat_per_vb: Decimal) -> Result<FeeRate> {
        let invalid = || Error::InvalidFeeRate { sat_per_vb };
        let kvb = sat_per_vb
            .checked_mul(Decimal::from(1000))
            .ok_or_else(invalid)?;
        if kvb.fract() != Decimal::ZERO {
            return Err(invalid());
        }
        let kvb = u64::try_from(kvb).map_err(|_| invalid())?;
        FeeRate::from_sat_per_kvb(kvb).map_err(|_| invalid())
    }

    /// The [`bitcoin`] crate's rate (sat per 1,000 weight units), exactly.
    pub fn from_bitcoin(rate: bitcoin::FeeRate) -> Result<FeeRate> {
        match rate.to_sat_per_kwu().checked_mul(4) {
            Some(kvb) => FeeRate::from_sat_per_kvb(kvb),
            None => Err(Error::InvalidFeeRate {
                sat_per_vb: Decimal::MAX,
            }),
        }
    }

    /// As the [`bitcoin`] crate's rate, rounded up to a whole sat per
    /// 1,000 weight units (exact when the rate is a multiple of 4 sat/kvB).
    pub fn to_bitcoin(self) -> bitcoin::FeeRate {
        bitcoin::FeeRate::from_sat_per_kwu(self.0.div_ceil(4))
    }

    /// Satoshis per 1,000 vbytes.
    pub fn sat_per_kvb(self) -> u64 {
        self.0
    }

    /// Satoshis per vbyte, exactly (up to 3 decimals).
    pub fn sat_per_vb_decimal(self) -> Decimal {
        Decimal::new(self.0 as i64, 3).normalize()
    }

    /// Satoshis per vbyte, rounded up to a whole one.
    pub fn sat_per_vb(self) -> u64 {
        self.0.div_ceil(1000)
    }

    /// The fee of `vbytes` virtual bytes: `⌈vbytes · rate / 1000⌉` sat
    /// (saturating at `u64::MAX` sat, far above all bitcoin, for sizes no
    /// transaction has).
    pub fn fee_for_vbytes(self, vbytes: u64) -> Amount {
        let fee = (u128::from(vbytes) * u128::from(self.0)).div_ceil(1000);
        Amount::from_sat(u64::try_from(fee).unwrap_or(u64::MAX))
    }
}

impl TryFrom<FeeRateRepr> for FeeRate {
    type Error = Error;
    fn try_from(r: FeeRateRepr) -> Result<FeeRate> {
        FeeRate::from_sat_per_kvb(r.sat_per_kvb)
    }
}

impl From<FeeRate> for FeeRateRepr {
    fn from(rate: FeeRate) -> FeeRateRepr {
        FeeRateRepr {
            sat_per_kvb: rate.0,
        }
    }
}

impl std::fmt::Display for FeeRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sat/vB", self.sat_per_vb_decimal())
    }
}

/// An unspent output of the operator's wallet, to fund the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utxo {
    /// The output spent.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The address it pays to (decides its script and input size).
    pub address: PayoutAddress,
}

impl Utxo {
    /// An unspent output of `value` paying `address`.
    pub fn new(outpoint: OutPoint, value: Amount, address: PayoutAddress) -> Utxo {
        Utxo {
            outpoint,
            value,
            address,
        }
    }
}

/// A fee estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeEstimate {
    /// Virtual size of the transaction.
    pub vbytes: u64,
    /// Fee at the given rate (serialized as whole satoshis).
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub fee_sats: Amount,
}

fn varint_len(n: usize) -> u64 {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        _ => 5,
    }
}

/// Weight of an input spending `output_type`, with a typical signature.
pub(crate) fn input_weight(output_type: OutputType) -> u64 {
    match output_type {
        OutputType::P2pkh => 592,
        OutputType::P2sh => 364,
        OutputType::P2tr => 230,
        // P2WPKH; other witness types are counted like it.
        _ => 272,
    }
}

/// Weight of an output paying to `address`.
pub(crate) fn output_weight(address: &PayoutAddress) -> u64 {
    (9 + address.as_bitcoin().script_pubkey().len() as u64) * 4
}

/// The size and fee of a transaction spending `inputs` (their types) to
/// `outputs`.
pub fn estimate_fee(
    inputs: &[OutputType],
    outputs: &[&PayoutAddress],
    feerate: FeeRate,
) -> FeeEstimate {
    let legacy = inputs.iter().filter(|t| **t == OutputType::P2pkh).count() as u64;
    let segwit = legacy < inputs.len() as u64;
    let weight = (8 + varint_len(inputs.len()) + varint_len(outputs.len())) * 4
        // marker and flag, and an empty witness (one byte) per legacy input
        + if segwit { 2 + legacy } else { 0 }
        + inputs.iter().map(|t| input_weight(*t)).sum::<u64>()
        + outputs.iter().map(|a| output_weight(a)).sum::<u64>();
    let vbytes = weight.div_ceil(4);
    FeeEstimate {
        vbytes,
        fee_sats: feerate.fee_for_vbytes(vbytes),
    }
}

/// An unsigned transaction paying a batch, as a PSBT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedBatch {
    /// BIP174 PSBT, base64.
    pub psbt_base64: String,
    /// The fee it pays (serialized as whole satoshis).
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub fee_sats: Amount,
    /// The change it returns (zero if change would be dust and went to the
    /// fee; serialized as whole satoshis).
    #[serde(with = "bitcoin::amount::serde::as_sat")]
    pub change_sats: Amount,
    /// Its virtual size.
    pub vbytes: u64,
}

/// Builds the unsigned PSBT paying `payouts` (in order) from `utxos`, with
/// change to `change` (appended last, dropped into the fee if below its
/// dust limit). Segwit inputs carry their `witness_utxo` so signers can
/// check amounts; P2PKH inputs do not, because BIP174 reserves it for segwit
/// spends and a legacy input needs the whole previous transaction
/// (`non_witness_utxo`), which the operator's wallet adds when it processes
/// the PSBT. An error if the inputs do not cover the payouts and the fee.
pub fn build_psbt(
    payouts: &[(PayoutAddress, Amount)],
    utxos: &[Utxo],
    change: &PayoutAddress,
    feerate: FeeRate,
) -> Result<UnsignedBatch> {
    let outpoints = check_inputs(utxos)?;
    let input_types: Vec<OutputType> = utxos.iter().map(|u| u.address.output_type()).collect();
    let mut outputs: Vec<&PayoutAddress> = payouts.iter().map(|(a, _)| a).collect();
    let available = sum_of_money(utxos.iter().map(|u| u.value), "operator inputs")?;
    let paid = sum_of_money(payouts.iter().map(|(_, s)| *s), "payout batch")?;
    let without_change = estimate_fee(&input_types, &outputs, feerate);
    outputs.push(change);
    let with_change = estimate_fee(&input_types, &outputs, feerate);
    let needed = paid
        .checked_add(without_change.fee_sats)
        .ok_or(Error::Overflow("payout batch and fee"))?;
    if available < needed {
        return Err(Error::InsufficientInputs {
            needed: needed.to_sat(),
            available: available.to_sat(),
        });
    }
    let change_sats = paid
        .checked_add(with_change.fee_sats)
        .and_then(|spent| available.checked_sub(spent))
        .unwrap_or(Amount::ZERO);
    let (fee, change_sats, vbytes) = if change_sats.to_sat() >= change.dust_limit_sats() {
        (with_change.fee_sats, change_sats, with_change.vbytes)
    } else {
        (available - paid, Amount::ZERO, without_change.vbytes)
    };

    let input = outpoints
        .into_iter()
        .map(|previous_output| TxIn {
            previous_output,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        })
        .collect();
    let mut output: Vec<TxOut> = payouts
        .iter()
        .map(|(a, sats)| TxOut {
            value: *sats,
            script_pubkey: a.as_bitcoin().script_pubkey(),
        })
        .collect();
    if change_sats > Amount::ZERO {
        output.push(TxOut {
            value: change_sats,
            script_pubkey: change.as_bitcoin().script_pubkey(),
        });
    }
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input,
        output,
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).map_err(|e| Error::Psbt(e.to_string()))?;
    for (slot, u) in psbt.inputs.iter_mut().zip(utxos) {
        if u.address.output_type() == OutputType::P2pkh {
            continue;
        }
        slot.witness_utxo = Some(TxOut {
            value: u.value,
            script_pubkey: u.address.as_bitcoin().script_pubkey(),
        });
    }
    Ok(UnsignedBatch {
        psbt_base64: psbt.to_string(),
        fee_sats: fee,
        change_sats,
        vbytes,
    })
}

/// The inputs' outpoints; an error for one that is spent twice (Bitcoin
/// Core rejects such a transaction) or is worth more than all bitcoin.
fn check_inputs(utxos: &[Utxo]) -> Result<Vec<OutPoint>> {
    let mut seen = std::collections::BTreeSet::new();
    utxos
        .iter()
        .map(|u| {
            let outpoint = u.outpoint;
            if !seen.insert(outpoint) {
                return Err(Error::Psbt(format!("outpoint {outpoint} is spent twice")));
            }
            if u.value > Amount::MAX_MONEY {
                return Err(Error::Psbt(format!(
                    "input {outpoint} of {} sat is worth more than 21 million BTC",
                    u.value.to_sat()
                )));
            }
            Ok(outpoint)
        })
        .collect()
}

/// Σ `values`, an error when it exceeds 21 million BTC (or `u64`).
fn sum_of_money(mut values: impl Iterator<Item = Amount>, what: &'static str) -> Result<Amount> {
    values
        .try_fold(Amount::ZERO, Amount::checked_add)
        .filter(|total| *total <= Amount::MAX_MONEY)
        .ok_or(Error::Overflow(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Network;

    fn addr(s: &str) -> PayoutAddress {
        PayoutAddress::new(s, Network::Bitcoin).unwrap()
    }

    #[test]
    fn one_p2wpkh_in_two_p2wpkh_out_is_141_vbytes() {
        // The textbook size: 10.5 + 68 + 2 · 31 = 140.5 → 141 vB.
        let a = addr("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4");
        let fee = estimate_fee(&[OutputType::P2wpkh], &[&a, &a], FeeRate::new(2).unwrap());
        assert_eq!(
            fee,
            FeeEstimate {
                vbytes: 141,
                fee_sats: Amount::from_sat(282)
            }
        );
    }

    #[test]
    fn amounts_serialize_as_whole_satoshis() {
        let a = addr("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4");
        let fee = estimate_fee(&[OutputType::P2wpkh], &[&a, &a], FeeRate::new(2).unwrap());
        let json = serde_json::to_string(&fee).unwrap();
        assert_eq!(json, r#"{"vbytes":141,"fee_sats":282}"#);
        assert_eq!(serde_json::from_str::<FeeEstimate>(&json).unwrap(), fee);
        let batch = build_psbt(
            &[(a.clone(), Amount::from_sat(10_000))],
            &[utxo(0, 100_000)],
            &a,
            FeeRate::new(1).unwrap(),
        )
        .unwrap();
        let value = serde_json::to_value(&batch).unwrap();
        assert_eq!(
            value["fee_sats"],
            serde_json::json!(batch.fee_sats.to_sat())
        );
        assert_eq!(
            value["change_sats"],
            serde_json::json!(batch.change_sats.to_sat())
        );
        assert_eq!(
            serde_json::from_value::<UnsignedBatch>(value).unwrap(),
            batch
        );
    }

    #[test]
    fn fee_rates_out_of_range_are_refused() {
        assert!(FeeRate::new(0).is_err());
        assert!(FeeRate::new(10_001).is_err());
    }

    fn utxo(vout: u32, value_sats: u64) -> Utxo {
        Utxo::new(
            format!("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:{vout}")
                .parse()
                .unwrap(),
            Amount::from_sat(value_sats),
            addr("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"),
        )
    }

    #[test]
    fn inputs_that_overflow_or_repeat_are_refused_not_summed() {
        let a = addr("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4");
        let rate = FeeRate::new(1).unwrap();
        let pay = [(a.clone(), Amount::from_sat(10_000))];
        let big = u64::MAX / 2 + 10;
        assert_eq!(
            build_psbt(&pay, &[utxo(0, big), utxo(1, big)], &a, rate),
            Err(Error::Psbt(format!(
                "input 4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0 of {big} sat is worth more than 21 million BTC"
            )))
        );
        let half = Amount::MAX_MONEY.to_sat() / 2 + 1;
        assert_eq!(
            build_psbt(&pay, &[utxo(0, half), utxo(1, half)], &a, rate),
            Err(Error::Overflow("operator inputs"))
        );
        assert!(matches!(
            build_psbt(&pay, &[utxo(0, 100_000), utxo(0, 100_000)], &a, rate),
            Err(Error::Psbt(m)) if m.contains("spent twice")
        ));
        assert!(build_psbt(&pay, &[utxo(0, 100_000), utxo(1, 100_000)], &a, rate).is_ok());
    }

    #[test]
    fn only_segwit_inputs_carry_a_witness_utxo() {
        let legacy = Utxo {
            address: addr("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            ..utxo(1, 100_000)
        };
        let a = addr("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4");
        let batch = build_psbt(
            &[(a.clone(), Amount::from_sat(10_000))],
            &[utxo(0, 100_000), legacy],
            &a,
            FeeRate::new(1).unwrap(),
        )
        .unwrap();
        let psbt: Psbt = batch.psbt_base64.parse().unwrap();
        assert_eq!(
            psbt.inputs[0]
                .witness_utxo
                .as_ref()
                .map(|o| o.value.to_sat()),
            Some(100_000)
        );
        assert_eq!(psbt.inputs[1].witness_utxo, None);
    }

    #[test]
    fn legacy_inputs_of_a_segwit_transaction_count_their_empty_witness() {
        let a = addr("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4");
        let one = FeeRate::new(1).unwrap();
        // Legacy only: 10 + 148 + 31 = 189 vB, no witness at all.
        assert_eq!(estimate_fee(&[OutputType::P2pkh], &[&a], one).vbytes, 189);
        // Three legacy inputs and a P2WPKH one: weight 4·10 + 2 + 3 (empty
        // witnesses) + 3·592 + 272 + 124 = 2217 → 555 vB (not 554).
        let p2pkh = OutputType::P2pkh;
        let mixed = estimate_fee(&[p2pkh, p2pkh, p2pkh, OutputType::P2wpkh], &[&a], one);
        assert_eq!(mixed.vbytes, 555);
    }
}
