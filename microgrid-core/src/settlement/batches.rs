//! Paying a large settlement in transactions Bitcoin Core relays.
//!
//! Bitcoin Core does not relay a transaction of more than 400,000 weight
//! units (100,000 vbytes, [`MAX_STANDARD_TX_VBYTES`]). With one P2WPKH input
//! and P2WPKH change a transaction has `110 + 31·k + 43·m` vbytes for `k`
//! P2WPKH and `m` P2TR outputs, so about 3,222 P2WPKH payouts fit one; a
//! community of 10,000 members needs several.
//!
//! [`Settlement::batches`] splits the payout outputs
//! ([`Settlement::payout_batch`]: merged per address, in address order)
//! into consecutive parts, each as large as fits under the cap
//! ([`BatchOptions::max_vbytes`], at most the standard limit), counting the
//! funding inputs the options assume (one P2WPKH input by default) and a
//! change output to the operator. The split depends only on the settlement
//! and the options. Each [`Batch`] has its fee estimate, its `sendmany`
//! object and, given the operator's inputs, an unsigned PSBT
//! ([`Batch::psbt`]) that is checked against the cap again.
//!
//! The parts add up exactly to the settlement's payouts: for every output,
//! `amount + fee_share = payout`, and the payouts of all batches are the
//! payout batch. `fee_share` is zero when the operator pays the fee; when
//! the members pay ([`FeePayer::Members`]), each batch's estimated fee is
//! split among its outputs pro rata to their payouts
//! ([`super::policy::pro_rata`]), so the shares add up to the fee exactly.

use bitcoin::{Amount, Transaction, Weight};
use serde::{Deserialize, Serialize};

use crate::address::{Network, OutputType, PayoutAddress};
use crate::error::{Error, Result};

use super::policy::{pro_rata, FeePayer};
use super::psbt::{build_psbt, FeeEstimate, FeeRate, UnsignedBatch, Utxo};
use super::sats::format_btc;
use super::Settlement;

/// The largest transaction Bitcoin Core relays, in weight units
/// (`MAX_STANDARD_TX_WEIGHT`).
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;

/// The largest transaction Bitcoin Core relays, in vbytes.
pub const MAX_STANDARD_TX_VBYTES: u64 = MAX_STANDARD_TX_WEIGHT / 4;

/// How to split a settlement's payouts into transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    feerate: FeeRate,
    max_vbytes: u64,
    inputs: Vec<OutputType>,
    fee_payer: FeePayer,
    change: Option<PayoutAddress>,
}

impl BatchOptions {
    /// Batches at `feerate`, at most [`MAX_STANDARD_TX_VBYTES`] each, funded
    /// by one P2WPKH input each, change to the operator's address, the fee
    /// paid by the operator.
    pub fn new(feerate: FeeRate) -> BatchOptions {
        BatchOptions {
            feerate,
            max_vbytes: MAX_STANDARD_TX_VBYTES,
            inputs: vec![OutputType::P2wpkh],
            fee_payer: FeePayer::Operator,
            change: None,
        }
    }

    /// A smaller cap on each transaction's size (leave room for more
    /// inputs than assumed, or keep transactions small). More than
    /// [`MAX_STANDARD_TX_VBYTES`] is [`Error::TooLarge`].
    pub fn max_vbytes(mut self, max_vbytes: u64) -> Result<BatchOptions> {
        if max_vbytes > MAX_STANDARD_TX_VBYTES {
            return Err(Error::TooLarge {
                what: "vbytes per transaction (the standard limit)",
                found: max_vbytes,
                max: MAX_STANDARD_TX_VBYTES,
            });
        }
        self.max_vbytes = max_vbytes;
        Ok(self)
    }

    /// The inputs each transaction is assumed to spend (their types), for
    /// the size and fee estimates; at least one, at most 1,000
    /// ([`Error::TooLarge`] otherwise).
    pub fn funding_inputs(mut self, inputs: &[OutputType]) -> Result<BatchOptions> {
        if inputs.is_empty() || inputs.len() > 1_000 {
            return Err(Error::TooLarge {
                what: "assumed funding inputs per transaction (1 to 1000)",
                found: inputs.len() as u64,
                max: 1_000,
            });
        }
        self.inputs = inputs.to_vec();
        Ok(self)
    }

    /// Who pays the fee.
    pub fn fee_payer(mut self, payer: FeePayer) -> BatchOptions {
        self.fee_payer = payer;
        self
    }

    /// The change address counted in each transaction (default: the
    /// operator's address).
    pub fn change(mut self, change: PayoutAddress) -> BatchOptions {
        self.change = Some(change);
        self
    }

    /// The fee rate.
    pub fn feerate(&self) -> FeeRate {
        self.feerate
    }

    /// The cap in vbytes.
    pub fn cap_vbytes(&self) -> u64 {
        self.max_vbytes
    }

    /// Who pays the fee.
    pub fn payer(&self) -> FeePayer {
        self.fee_payer
    }
}

/// One output of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutput {
    /// Where to.
    pub address: PayoutAddress,
    /// What the settlement pays this address (the members' payouts to it).
    pub payout: Amount,
    /// The part of the fee deducted from it (zero when the operator pays).
    pub fee_share: Amount,
    /// The output's value: `payout − fee_share`.
    pub amount: Amount,
}

/// One transaction of a settlement's payouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Its place among the settlement's batches, from 0.
    pub index: usize,
    /// The outputs it pays, in address order.
    pub outputs: Vec<BatchOutput>,
    /// Estimated weight with the assumed inputs and a change output.
    pub weight: Weight,
    /// Estimated virtual size (`⌈weight / 4⌉`).
    pub vbytes: u64,
    /// Estimated fee at the options' rate.
    pub fee: Amount,
    /// Who pays it.
    pub fee_payer: FeePayer,
    /// The rate.
    pub feerate: FeeRate,
    /// The cap its PSBT is held to, in vbytes.
    pub max_vbytes: u64,
    /// The settlement's network.
    pub network: Network,
}

impl Batch {
    /// Σ payouts of its outputs.
    pub fn payouts_total(&self) -> Amount {
        self.outputs.iter().map(|o| o.payout).sum()
    }

    /// Σ values of its outputs (the payouts less the fee shares).
    pub fn outputs_total(&self) -> Amount {
        self.outputs.iter().map(|o| o.amount).sum()
    }

    /// The fee estimate.
    pub fn estimate(&self) -> FeeEstimate {
        FeeEstimate {
            vbytes: self.vbytes,
            fee_sats: self.fee,
        }
    }

    /// The outputs as `(address, value)`, as the PSBT pays them.
    pub fn payments(&self) -> Vec<(PayoutAddress, Amount)> {
        self.outputs
            .iter()
            .map(|o| (o.address.clone(), o.amount))
            .collect()
    }

    /// The outputs object of Bitcoin Core's `sendmany` /
    /// `walletcreatefundedpsbt` for this transaction (BTC, 8 decimals).
    pub fn sendmany_json(&self) -> String {
        let fields: Vec<String> = self
            .outputs
            .iter()
            .map(|o| format!("\"{}\":{}", o.address, format_btc(o.amount)))
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    /// An unsigned PSBT paying this batch's outputs (in order) from
    /// `utxos`, change to `change` (last). The inputs pay the outputs and
    /// the fee at the batch's rate for the inputs given (which may differ
    /// from the estimate's assumed inputs). A transaction over the batch's
    /// cap is [`Error::TooLarge`]; an address of another network
    /// [`Error::MixedNetworks`].
    pub fn psbt(&self, utxos: &[Utxo], change: &PayoutAddress) -> Result<UnsignedBatch> {
        for (id, a) in utxos
            .iter()
            .map(|u| ("operator input", &u.address))
            .chain([("operator change", change)])
        {
            if a.network() != self.network {
                return Err(Error::MixedNetworks {
                    id: id.into(),
                    expected: self.network.to_string(),
                    found: a.network().to_string(),
                });
            }
        }
        let unsigned = build_psbt(&self.payments(), utxos, change, self.feerate)?;
        if unsigned.vbytes > self.max_vbytes {
            return Err(Error::TooLarge {
                what: "vbytes of the batch's transaction with these inputs",
                found: unsigned.vbytes,
                max: self.max_vbytes,
            });
        }
        Ok(unsigned)
    }

    /// Checks that `tx` pays exactly this batch: every output of the batch
    /// once with its value, and nothing else but change to `change` (if
    /// given). An [`Error::TransactionMismatch`] names the first thing
    /// that differs.
    pub fn check_transaction(
        &self,
        tx: &Transaction,
        change: Option<&PayoutAddress>,
    ) -> Result<()> {
        let txid = tx.compute_txid().to_string();
        let mismatch = |reason: String| Error::TransactionMismatch {
            txid: txid.clone(),
            reason,
        };
        let mut expected: Vec<(bitcoin::ScriptBuf, Amount, &PayoutAddress)> = self
            .outputs
            .iter()
            .map(|o| (o.address.as_bitcoin().script_pubkey(), o.amount, &o.address))
            .collect();
        let change_script = change.map(|c| c.as_bitcoin().script_pubkey());
        let mut change_seen = false;
        for (vout, out) in tx.output.iter().enumerate() {
            if let Some(i) = expected
                .iter()
                .position(|(s, v, _)| *s == out.script_pubkey && *v == out.value)
            {
                expected.swap_remove(i);
            } else if change_script.as_ref() == Some(&out.script_pubkey) && !change_seen {
                change_seen = true;
            } else {
                return Err(mismatch(format!(
                    "output {vout} of {} sat is not one of the batch's outputs",
                    out.value.to_sat()
                )));
            }
        }
        if let Some((_, v, a)) = expected.first() {
            return Err(mismatch(format!(
                "it does not pay {} sat to {a}",
                v.to_sat()
            )));
        }
        Ok(())
    }
}

/// Weight of a transaction spending `inputs` to `outputs` outputs whose
/// weights add up to `output_weight` (see [`super::psbt`] for the sizes).
pub(crate) fn tx_weight(inputs: &[OutputType], outputs: usize, output_weight: u64) -> u64 {
    fn varint_len(n: usize) -> u64 {
        match n {
            0..=0xfc => 1,
            0xfd..=0xffff => 3,
            _ => 5,
        }
    }
    let legacy = inputs.iter().filter(|t| **t == OutputType::P2pkh).count() as u64;
    let segwit = legacy < inputs.len() as u64;
    (8 + varint_len(inputs.len()) + varint_len(outputs)) * 4
        + if segwit { 2 + legacy } else { 0 }
        + inputs
            .iter()
            .map(|t| super::psbt::input_weight(*t))
            .sum::<u64>()
        + output_weight
}

impl Settlement {
    /// The payouts split into transactions under the options' cap (see
    /// the [module docs](self)). No payouts give no batches. An output
    /// that does not fit a transaction on its own is [`Error::TooLarge`];
    /// when the members pay the fee, an output whose share of it leaves
    /// less than its dust limit is [`Error::PayoutBelowDustAfterFee`]
    /// (raise the minimum payout, or let the operator pay).
    pub fn batches(&self, options: &BatchOptions) -> Result<Vec<Batch>> {
        self.batches_of(self.payout_batch(), options)
    }

    /// [`Settlement::batches`] of some of the settlement's payouts (the
    /// on-chain part of a [`crate::lightning::PayoutSplit`]).
    pub(crate) fn batches_of(
        &self,
        payouts: Vec<(PayoutAddress, Amount)>,
        options: &BatchOptions,
    ) -> Result<Vec<Batch>> {
        let change = options.change.as_ref().unwrap_or(&self.operator_address);
        if change.network() != self.network {
            return Err(Error::MixedNetworks {
                id: "operator change".into(),
                expected: self.network.to_string(),
                found: change.network().to_string(),
            });
        }
        let change_weight = super::psbt::output_weight(change);
        let cap = options.max_vbytes * 4;
        let mut parts: Vec<(Vec<(PayoutAddress, Amount)>, u64)> = Vec::new();
        let mut current: Vec<(PayoutAddress, Amount)> = Vec::new();
        let mut current_weight = change_weight;
        for (address, sats) in payouts {
            let w = super::psbt::output_weight(&address);
            let fits = |count: usize, weight: u64| {
                tx_weight(&options.inputs, count + 1, weight + w) <= cap
            };
            if !fits(current.len() + 1, current_weight) {
                if current.is_empty() || !fits(1, change_weight) {
                    return Err(Error::TooLarge {
                        what: "vbytes of a transaction paying one output",
                        found: tx_weight(&options.inputs, 2, change_weight + w).div_ceil(4),
                        max: options.max_vbytes,
                    });
                }
                let full = std::mem::take(&mut current);
                parts.push((full, current_weight));
                current_weight = change_weight;
            }
            current.push((address, sats));
            current_weight += w;
        }
        if !current.is_empty() {
            parts.push((current, current_weight));
        }
        parts
            .into_iter()
            .enumerate()
            .map(|(index, (outputs, output_weight))| {
                let weight = tx_weight(&options.inputs, outputs.len() + 1, output_weight);
                let vbytes = weight.div_ceil(4);
                let fee = options.feerate.fee_for_vbytes(vbytes);
                let shares = match options.fee_payer {
                    FeePayer::Operator => vec![Amount::ZERO; outputs.len()],
                    FeePayer::Members => {
                        let weights: Vec<Amount> = outputs.iter().map(|(_, s)| *s).collect();
                        pro_rata(fee, &weights).ok_or(Error::Overflow("fee shares"))?
                    }
                };
                let outputs = outputs
                    .into_iter()
                    .zip(shares)
                    .map(|((address, sats), share)| {
                        let amount = sats
                            .checked_sub(share)
                            .filter(|a| a.to_sat() >= address.dust_limit_sats());
                        let Some(amount) = amount else {
                            return Err(Error::PayoutBelowDustAfterFee {
                                address: address.to_string(),
                                payout: sats.to_sat(),
                                fee_share: share.to_sat(),
                                dust_limit: address.dust_limit_sats(),
                            });
                        };
                        Ok(BatchOutput {
                            address,
                            payout: sats,
                            fee_share: share,
                            amount,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Batch {
                    index,
                    outputs,
                    weight: Weight::from_wu(weight),
                    vbytes,
                    fee,
                    fee_payer: options.fee_payer,
                    feerate: options.feerate,
                    max_vbytes: options.max_vbytes,
                    network: self.network,
                })
            })
            .collect()
    }
}
