//! Splitting a settlement's payouts into standard-size transactions: every
//! part under the cap, the parts adding up exactly to the payouts, the same
//! split every time, and PSBTs that decode to exactly each part's outputs
//! plus change.

use std::str::FromStr;

use bitcoin::hashes::Hash;
use chrono::{TimeZone, Utc};
use microgrid_core::settlement::batches::MAX_STANDARD_TX_VBYTES;
use microgrid_core::settlement::psbt::{FeeRate, Utxo};
use microgrid_core::settlement::*;
use microgrid_core::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

const TYPES: [OutputType; 5] = [
    OutputType::P2pkh,
    OutputType::P2sh,
    OutputType::P2wpkh,
    OutputType::P2wsh,
    OutputType::P2tr,
];

/// A distinct regtest address of `output_type` for `seed`.
fn address(seed: u64, output_type: OutputType) -> PayoutAddress {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = output_type as u8;
    bytes[31] = 0x5a;
    let mut h20 = [0u8; 20];
    h20.copy_from_slice(&bytes[..20]);
    let script = match output_type {
        OutputType::P2pkh => {
            bitcoin::ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(h20))
        }
        OutputType::P2sh => {
            bitcoin::ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array(h20))
        }
        OutputType::P2wsh => {
            bitcoin::ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array(bytes))
        }
        OutputType::P2tr => bitcoin::ScriptBuf::builder()
            .push_opcode(bitcoin::opcodes::all::OP_PUSHNUM_1)
            .push_slice(bytes)
            .into_script(),
        _ => bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(h20)),
    };
    let text = bitcoin::Address::from_script(&script, bitcoin::Network::Regtest)
        .unwrap()
        .to_string();
    PayoutAddress::new(&text, Network::Regtest).unwrap()
}

fn operator() -> PayoutAddress {
    PayoutAddress::new(
        "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
        Network::Regtest,
    )
    .unwrap()
}

/// A settlement paying `payouts` (address type index, sats), built
/// directly: batching reads only its payouts, network and operator.
fn settlement(payouts: &[(usize, u64)]) -> Settlement {
    let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
    let period = TimeRange::new(
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
        at,
        TimeframeLength::default(),
    )
    .unwrap();
    let entries: Vec<SettlementEntry> = payouts
        .iter()
        .enumerate()
        .map(|(i, (t, sats))| SettlementEntry {
            prosumer: format!("m{i:05}").parse().unwrap(),
            bill_total: Decimal::ZERO,
            bill_sats: -bitcoin::SignedAmount::from_sat(*sats as i64),
            carried_in: bitcoin::SignedAmount::ZERO,
            due: bitcoin::SignedAmount::from_sat(*sats as i64),
            // Every 50th member shares the wallet of the one before.
            action: Action::Payout {
                address: address(if i % 50 == 49 { i - 1 } else { i } as u64, TYPES[*t]),
                sats: bitcoin::Amount::from_sat(*sats),
            },
            carried_out: bitcoin::SignedAmount::ZERO,
        })
        .collect();
    // The fields are private: the settlement is read from its document,
    // as a store reads it.
    let document = serde_json::json!({
        "id": "0".repeat(32),
        "period": period,
        "network": Network::Regtest,
        "rate": ExchangeRate::new(Decimal::from(60_000), "EUR".parse().unwrap(), "test", at).unwrap(),
        "operator_address": operator(),
        "entries": entries,
        "grid_sats": 0,
        "operator_sats": 0,
        "paid_txid": null,
    });
    serde_json::from_value(document).unwrap()
}

/// Funds `batch` with one P2WPKH input worth its outputs, its fee and
/// 100,000 sat of change, and decodes the PSBT.
fn check_psbt(batch: &Batch, n: u32) -> Result<(), TestCaseError> {
    let needed = batch.outputs_total().to_sat() + batch.fee.to_sat() + 100_000;
    let utxo = Utxo {
        outpoint: format!("{}:{n}", "4a".repeat(32)).parse().unwrap(),
        value: bitcoin::Amount::from_sat(needed),
        address: operator(),
    };
    let unsigned = batch.psbt(&[utxo], &operator()).unwrap();
    prop_assert_eq!(unsigned.vbytes, batch.vbytes);
    prop_assert_eq!(unsigned.fee_sats, batch.fee);
    prop_assert_eq!(unsigned.change_sats, bitcoin::Amount::from_sat(100_000));
    let psbt = bitcoin::Psbt::from_str(&unsigned.psbt_base64).unwrap();
    let outputs: Vec<(bitcoin::ScriptBuf, u64)> = psbt
        .unsigned_tx
        .output
        .iter()
        .map(|o| (o.script_pubkey.clone(), o.value.to_sat()))
        .collect();
    let mut expected: Vec<(bitcoin::ScriptBuf, u64)> = batch
        .outputs
        .iter()
        .map(|o| (o.address.as_bitcoin().script_pubkey(), o.amount.to_sat()))
        .collect();
    expected.push((operator().as_bitcoin().script_pubkey(), 100_000));
    prop_assert_eq!(outputs, expected);
    // The transaction it becomes is under the cap (the witness of the one
    // input is at most 108 bytes + the empty-witness estimate).
    let tx_weight = psbt.unsigned_tx.weight().to_wu() + 2 + 108;
    prop_assert!(
        tx_weight <= 4 * batch.max_vbytes,
        "{} > {}",
        tx_weight,
        4 * batch.max_vbytes
    );
    prop_assert!(batch
        .check_transaction(&psbt.unsigned_tx, Some(&operator()))
        .is_ok());
    Ok(())
}

fn payouts() -> impl Strategy<Value = Vec<(usize, u64)>> {
    prop::collection::vec((0usize..5, 10_000u64..5_000_000), 0..=20_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn batches_stay_under_the_cap_and_add_up_to_the_payouts(
        payouts in payouts(),
        cap in 1_000u64..=MAX_STANDARD_TX_VBYTES,
        kvb in 100u64..50_000,
        members_pay in any::<bool>(),
    ) {
        let s = settlement(&payouts);
        let payer = if members_pay { FeePayer::Members } else { FeePayer::Operator };
        let options = BatchOptions::new(FeeRate::from_sat_per_kvb(kvb).unwrap())
            .max_vbytes(cap)
            .unwrap()
            .fee_payer(payer);
        let batches = s.batches(&options).unwrap();
        prop_assert_eq!(&batches, &s.batches(&options).unwrap(), "deterministic");
        let batch = s.payout_batch();
        let flattened: Vec<(PayoutAddress, bitcoin::Amount)> = batches
            .iter()
            .flat_map(|b| b.outputs.iter().map(|o| (o.address.clone(), o.payout)))
            .collect();
        prop_assert_eq!(&flattened, &batch);
        let total: u64 = batch.iter().map(|(_, v)| v.to_sat()).sum();
        prop_assert_eq!(batches.iter().map(|b| b.payouts_total().to_sat()).sum::<u64>(), total);
        let mut start = 0;
        for (i, b) in batches.iter().enumerate() {
            prop_assert_eq!(b.index, i);
            prop_assert!(b.vbytes <= cap && b.weight.to_wu() <= 4 * cap);
            prop_assert_eq!(b.vbytes, b.weight.to_wu().div_ceil(4));
            prop_assert_eq!(b.fee, FeeRate::from_sat_per_kvb(kvb).unwrap().fee_for_vbytes(b.vbytes));
            let shares: u64 = b.outputs.iter().map(|o| o.fee_share.to_sat()).sum();
            prop_assert_eq!(shares, if members_pay { b.fee.to_sat() } else { 0 });
            for o in &b.outputs {
                prop_assert_eq!(o.amount + o.fee_share, o.payout);
                prop_assert!(o.amount.to_sat() >= o.address.dust_limit_sats());
            }
            start += b.outputs.len();
            // Each batch but the last is full: the next output would not fit.
            if let Some((next, _)) = batch.get(start) {
                let mut more = b.outputs.iter().map(|o| o.address.clone()).collect::<Vec<_>>();
                more.push(next.clone());
                more.push(operator());
                let refs: Vec<&PayoutAddress> = more.iter().collect();
                let bigger = psbt::estimate_fee(&[OutputType::P2wpkh], &refs, FeeRate::new(1).unwrap());
                prop_assert!(bigger.vbytes > cap, "batch {} could take one more output", i);
            }
        }
        // PSBTs: the first and last batch (all of them for small splits).
        let picked: Vec<&Batch> = if batches.len() <= 3 {
            batches.iter().collect()
        } else {
            vec![&batches[0], &batches[batches.len() - 1]]
        };
        for (n, b) in picked.into_iter().enumerate() {
            check_psbt(b, n as u32)?;
        }
    }
}

#[test]
fn ten_thousand_p2wpkh_payouts_need_four_standard_transactions() {
    let payouts: Vec<(usize, u64)> = (0..10_000).map(|i| (2, 50_000 + i as u64)).collect();
    let s = settlement(&payouts);
    // Members 49, 99, ... share a wallet with the one before: 9,800 outputs.
    assert_eq!(s.payout_batch().len(), 9_800);
    let batches = s
        .batches(&BatchOptions::new(
            FeeRate::from_sat_per_kvb(1_500).unwrap(),
        ))
        .unwrap();
    let counts: Vec<usize> = batches.iter().map(|b| b.outputs.len()).collect();
    // 1 P2WPKH input, n P2WPKH payouts and P2WPKH change:
    // weight 4·(8 + 1 + 3) + 2 + 272 + 124·(n + 1) ≤ 400,000 ⇒ n ≤ 3,222.
    assert_eq!(counts, [3_222, 3_222, 3_222, 134]);
    assert_eq!(batches[0].weight.to_wu(), 446 + 124 * 3_222);
    assert_eq!(batches[0].vbytes, 99_994);
    assert_eq!(batches[0].fee.to_sat(), 149_991); // 99,994 vB at 1.5 sat/vB
                                                  // A smaller cap gives more, smaller transactions.
    let small = s
        .batches(
            &BatchOptions::new(FeeRate::new(2).unwrap())
                .max_vbytes(25_000)
                .unwrap(),
        )
        .unwrap();
    assert!(small.len() > batches.len() && small.iter().all(|b| b.vbytes <= 25_000));
    // The whole settlement in one transaction would be far over the limit.
    let one = s.estimate_fee(FeeRate::new(1).unwrap());
    assert!(one.vbytes > MAX_STANDARD_TX_VBYTES, "{}", one.vbytes);
}

#[test]
fn caps_options_and_members_fees_are_checked() {
    let s = settlement(&[(2, 1_000), (4, 400)]);
    assert!(matches!(
        BatchOptions::new(FeeRate::new(1).unwrap()).max_vbytes(100_001),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        s.batches(
            &BatchOptions::new(FeeRate::new(1).unwrap())
                .max_vbytes(100)
                .unwrap()
        ),
        Err(Error::TooLarge { .. })
    ));
    // At 10 sat/vB the P2TR payout of 400 sat cannot pay its share.
    let members = BatchOptions::new(FeeRate::new(10).unwrap()).fee_payer(FeePayer::Members);
    assert!(matches!(
        s.batches(&members),
        Err(Error::PayoutBelowDustAfterFee { .. })
    ));
    assert_eq!(settlement(&[]).batches(&members).unwrap(), vec![]);
    // Members paying at 1 sat/vB: 2 payouts of 10,000 and 30,000 sat.
    let s = settlement(&[(2, 10_000), (2, 30_000)]);
    let b = &s
        .batches(&BatchOptions::new(FeeRate::new(1).unwrap()).fee_payer(FeePayer::Members))
        .unwrap()[0];
    // 1 input, 3 P2WPKH outputs: 10.5 + 68 + 3·31 = 171.5 → 172 vB.
    assert_eq!(b.fee.to_sat(), 172);
    let mut shares: Vec<(u64, u64)> = b
        .outputs
        .iter()
        .map(|o| (o.payout.to_sat(), o.fee_share.to_sat()))
        .collect();
    shares.sort();
    assert_eq!(shares, [(10_000, 43), (30_000, 129)]);
    // A transaction with extra or missing outputs is not the batch.
    let psbt = bitcoin::Psbt::from_str(
        &b.psbt(
            &[Utxo {
                outpoint: format!("{}:0", "4a".repeat(32)).parse().unwrap(),
                value: bitcoin::Amount::from_sat(100_000),
                address: operator(),
            }],
            &operator(),
        )
        .unwrap()
        .psbt_base64,
    )
    .unwrap();
    let tx = psbt.unsigned_tx;
    assert!(b.check_transaction(&tx, Some(&operator())).is_ok());
    assert!(matches!(
        b.check_transaction(&tx, None),
        Err(Error::TransactionMismatch { .. })
    ));
    let mut short = tx.clone();
    short.output.remove(0);
    assert!(matches!(
        b.check_transaction(&short, Some(&operator())),
        Err(Error::TransactionMismatch { .. })
    ));
}
