//! The operator's descriptor wallet: what it refuses, the addresses it
//! derives (checked against BIP32 derivation done here with the `bitcoin`
//! crate alone), fresh invoice addresses per settlement, and PSBTs whose
//! inputs and change carry the origins a signer needs.

use std::collections::BTreeMap;
use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpriv, Xpub};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, CompressedPublicKey, NetworkKind, OutPoint, Psbt, Txid};
use chrono::{NaiveDate, TimeZone, Utc};
use microgrid_core::billing::{Bill, EnergyLines, PeriodBills};
use microgrid_core::settlement::*;
use microgrid_core::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

/// A test wallet from a fixed seed: master fingerprint, account xprv and
/// the account path.
struct Account {
    fingerprint: Fingerprint,
    xprv: Xpriv,
    path: DerivationPath,
}

fn account(purpose: u32, network: NetworkKind) -> Account {
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(network, &[7u8; 32]).unwrap();
    let path = DerivationPath::from_str(&format!("m/{purpose}'/1'/0'")).unwrap();
    Account {
        fingerprint: master.fingerprint(&secp),
        xprv: master.derive_priv(&secp, &path).unwrap(),
        path,
    }
}

impl Account {
    fn xpub(&self) -> Xpub {
        Xpub::from_priv(&Secp256k1::new(), &self.xprv)
    }
    fn origin(&self) -> String {
        let p = self.path.to_string();
        format!("[{}/{}]", self.fingerprint, p.trim_start_matches("m/"))
    }
    fn descriptor(&self, script: &str, tail: &str) -> String {
        format!("{script}({}{}/{tail})", self.origin(), self.xpub())
    }
    /// The public key at `chain/index`, derived here.
    fn key(&self, chain: u32, index: u32) -> bitcoin::secp256k1::PublicKey {
        let secp = Secp256k1::new();
        let path = [
            ChildNumber::from_normal_idx(chain).unwrap(),
            ChildNumber::from_normal_idx(index).unwrap(),
        ];
        self.xpub().derive_pub(&secp, &path).unwrap().public_key
    }
    fn full_path(&self, chain: u32, index: u32) -> DerivationPath {
        self.path
            .child(ChildNumber::from_normal_idx(chain).unwrap())
            .child(ChildNumber::from_normal_idx(index).unwrap())
    }
    fn wpkh_address(&self, chain: u32, index: u32) -> String {
        let pk = CompressedPublicKey(self.key(chain, index));
        bitcoin::Address::p2wpkh(&pk, bitcoin::Network::Regtest).to_string()
    }
    fn tr_address(&self, chain: u32, index: u32) -> String {
        let secp = Secp256k1::new();
        let (xonly, _) = self.key(chain, index).x_only_public_key();
        bitcoin::Address::p2tr(&secp, xonly, None, bitcoin::Network::Regtest).to_string()
    }
}

fn wpkh_wallet() -> (Account, OperatorWallet) {
    let a = account(84, NetworkKind::Test);
    let w = OperatorWallet::new(&a.descriptor("wpkh", "<0;1>/*"), None, Network::Regtest).unwrap();
    (a, w)
}

fn tr_wallet() -> (Account, OperatorWallet) {
    let a = account(86, NetworkKind::Test);
    let w = OperatorWallet::new(
        &a.descriptor("tr", "0/*"),
        Some(&a.descriptor("tr", "1/*")),
        Network::Regtest,
    )
    .unwrap();
    (a, w)
}

#[test]
fn addresses_are_the_bip32_children_of_the_descriptor() {
    let (a, w) = wpkh_wallet();
    for i in [0, 1, 2, 19, 1000] {
        assert_eq!(w.receive_address(i).unwrap().as_str(), a.wpkh_address(0, i));
        assert_eq!(w.change_address(i).unwrap().as_str(), a.wpkh_address(1, i));
    }
    let (t, tw) = tr_wallet();
    for i in [0, 5] {
        assert_eq!(tw.receive_address(i).unwrap().as_str(), t.tr_address(0, i));
        assert_eq!(tw.change_address(i).unwrap().as_str(), t.tr_address(1, i));
    }
    assert_eq!(tw.output_type(), OutputType::P2tr);
    // A single-path descriptor without a change one: /0/* becomes /1/*.
    let single = OperatorWallet::new(&a.descriptor("wpkh", "0/*"), None, Network::Regtest).unwrap();
    assert_eq!(
        single.change_address(3).unwrap().as_str(),
        a.wpkh_address(1, 3)
    );
    // The same receive chain, given either way, is the same wallet.
    assert_eq!(single.id(), w.id());
    assert_eq!(w.id().len(), 8);
    assert!(w.descriptor().ends_with(&format!("#{}", w.id())));
    // With its checksum, as Bitcoin Core's listdescriptors gives it.
    let again = OperatorWallet::new(
        &w.descriptor(),
        Some(&w.change_descriptor()),
        Network::Regtest,
    )
    .unwrap();
    assert_eq!(again, w);
}

fn refusal(descriptor: &str, change: Option<&str>, network: Network) -> (String, String) {
    match OperatorWallet::new(descriptor, change, network) {
        Err(e @ Error::InvalidDescriptor { .. }) => {
            assert_eq!(e.kind(), "invalid_descriptor");
            let Error::InvalidDescriptor { descriptor, reason } = e else {
                unreachable!()
            };
            (descriptor, reason)
        }
        other => panic!("{descriptor} gave {other:?}"),
    }
}

#[test]
fn private_unranged_hardened_foreign_and_other_descriptors_are_refused() {
    let a = account(84, NetworkKind::Test);
    // A private key: refused, and the error does not repeat it.
    let private = format!("wpkh({}{}/0/*)", a.origin(), a.xprv);
    let (shown, reason) = refusal(&private, None, Network::Regtest);
    assert!(reason.contains("private key"), "{reason}");
    assert!(!shown.contains("tprv"), "{shown}");
    let (_, reason) = refusal(
        &a.descriptor("wpkh", "0/*"),
        Some(&format!("wpkh({}{}/1/*)", a.origin(), a.xprv)),
        Network::Regtest,
    );
    assert!(reason.contains("private key"), "{reason}");
    // One that does not even parse (a mistyped checksum character) is not
    // shown either.
    let mut typo = a.xprv.to_string();
    typo.pop();
    typo.push(if typo.ends_with('x') { 'y' } else { 'x' });
    let (shown, _) = refusal(&format!("wpkh({typo}/0/*)"), None, Network::Regtest);
    assert!(!shown.contains("tprv"), "{shown}");
    // Not ranged: no wildcard, or a single key.
    let (shown, reason) = refusal(&a.descriptor("wpkh", "0/5"), None, Network::Regtest);
    assert!(reason.contains("not ranged"), "{reason}");
    assert!(shown.starts_with("wpkh(["), "{shown}");
    let key = CompressedPublicKey(a.key(0, 0));
    let (_, reason) = refusal(&format!("wpkh({key})"), None, Network::Regtest);
    assert!(reason.contains("not ranged"), "{reason}");
    // Hardened wildcard.
    let (_, reason) = refusal(&a.descriptor("wpkh", "0/*'"), None, Network::Regtest);
    assert!(reason.contains("hardened"), "{reason}");
    // A tpub for mainnet, an xpub for regtest.
    let (_, reason) = refusal(&a.descriptor("wpkh", "<0;1>/*"), None, Network::Bitcoin);
    assert!(reason.contains("test networks"), "{reason}");
    let main = account(84, NetworkKind::Main);
    let (_, reason) = refusal(&main.descriptor("wpkh", "0/*"), None, Network::Regtest);
    assert!(reason.contains("mainnet"), "{reason}");
    // Types the wallet does not spend.
    let (_, reason) = refusal(&a.descriptor("pkh", "0/*"), None, Network::Regtest);
    assert!(reason.contains("unsupported script type"), "{reason}");
    let (_, reason) = refusal(
        &format!("wsh(multi(1,{}{}/0/*))", a.origin(), a.xpub()),
        None,
        Network::Regtest,
    );
    assert!(reason.contains("unsupported script type"), "{reason}");
    // A wrong checksum, text that is no descriptor.
    let mut bad = OperatorWallet::new(&a.descriptor("wpkh", "0/*"), None, Network::Regtest)
        .unwrap()
        .descriptor();
    bad.pop();
    bad.push('x');
    refusal(&bad, None, Network::Regtest);
    refusal("not a descriptor", None, Network::Regtest);
    // Change: a multipath one with a single-path receive, another type,
    // the receive chain again, and a change descriptor next to a multipath.
    let (_, reason) = refusal(
        &a.descriptor("wpkh", "0/*"),
        Some(&a.descriptor("wpkh", "<0;1>/*")),
        Network::Regtest,
    );
    assert!(reason.contains("multipath"), "{reason}");
    let t = account(86, NetworkKind::Test);
    let (_, reason) = refusal(
        &a.descriptor("wpkh", "0/*"),
        Some(&t.descriptor("tr", "1/*")),
        Network::Regtest,
    );
    assert!(reason.contains("another script type"), "{reason}");
    let (_, reason) = refusal(
        &a.descriptor("wpkh", "0/*"),
        Some(&a.descriptor("wpkh", "0/*")),
        Network::Regtest,
    );
    assert!(reason.contains("is the receive descriptor"), "{reason}");
    refusal(
        &a.descriptor("wpkh", "<0;1>/*"),
        Some(&a.descriptor("wpkh", "1/*")),
        Network::Regtest,
    );
    // A path without /0/* and no change descriptor.
    let (_, reason) = refusal(&a.descriptor("wpkh", "7/*"), None, Network::Regtest);
    assert!(reason.contains("change descriptor"), "{reason}");
}

// --- settlements -----------------------------------------------------------

fn id(i: usize) -> ProsumerId {
    format!("m{i:03}").parse().unwrap()
}

const PAYOUT: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

fn registry(n: usize) -> Registry {
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut r = Registry::default();
    for i in 0..n {
        let p = Prosumer::new(id(i).as_str(), "member", ProsumerKind::Household, joined)
            .unwrap()
            .with_payout(PayoutAddress::new(PAYOUT, Network::Regtest).unwrap());
        r.register(p).unwrap();
    }
    r
}

fn period(month: u32) -> TimeRange {
    TimeRange::new(
        Utc.with_ymd_and_hms(2026, month, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, month + 1, 1, 0, 0, 0).unwrap(),
        TimeframeLength::default(),
    )
    .unwrap()
}

fn bills(month: u32, totals: &[i64]) -> PeriodBills {
    PeriodBills {
        period: period(month),
        currency: "EUR".parse().unwrap(),
        bills: totals
            .iter()
            .enumerate()
            .map(|(i, t)| Bill {
                prosumer: id(i),
                energy: EnergyLines::default(),
                purchases: Decimal::ZERO,
                sales: Decimal::ZERO,
                imports: Decimal::ZERO,
                exports: Decimal::ZERO,
                grid_fee: Decimal::ZERO,
                network_charge: Decimal::ZERO,
                fixed_fee: Decimal::ZERO,
                operator_margin: Decimal::ZERO,
                total: Decimal::from(*t),
                baseline: Decimal::from(*t),
                saving: Decimal::ZERO,
            })
            .collect(),
        grid_leg: Decimal::ZERO,
        fees: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        metrics: CommunityMetrics::default(),
    }
}

fn rate() -> ExchangeRate {
    ExchangeRate::new(
        Decimal::from(50_000),
        "EUR".parse().unwrap(),
        "test",
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
    )
    .unwrap()
}

/// Members alternately owe (positive total) and are owed.
fn totals(n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                3 + i as i64
            } else {
                -(2 + i as i64)
            }
        })
        .collect()
}

fn wallet_settlement(w: &OperatorWallet, month: u32, n: usize, next: NextIndices) -> Settlement {
    settle_with_wallet(
        &bills(month, &totals(n)),
        &registry(n),
        &rate(),
        w,
        next,
        &BTreeMap::new(),
        &PayoutPolicy::default(),
    )
    .unwrap()
}

#[test]
fn each_invoice_gets_a_fresh_address_and_the_next_settlement_starts_after() {
    let (a, w) = wpkh_wallet();
    let first = wallet_settlement(&w, 6, 10, NextIndices::default());
    let invoices = first.invoices();
    assert_eq!(invoices.len(), 5);
    for (k, inv) in invoices.iter().enumerate() {
        assert_eq!(inv.index, Some(k as u32));
        assert_eq!(inv.address.as_str(), a.wpkh_address(0, k as u32));
        assert!(
            inv.uri.starts_with(&format!("bitcoin:{}?", inv.address)),
            "{}",
            inv.uri
        );
    }
    let record = first.wallet().unwrap();
    assert_eq!((record.first_index, record.next_index), (0, 5));
    assert_eq!(
        (record.first_change_index, record.next_change_index),
        (0, 1)
    );
    assert_eq!(record.wallet, w.id());
    // The operator's address is the change address of the first batch.
    assert_eq!(first.operator_address(), &w.change_address(0).unwrap());
    first.verify().unwrap();

    let next = NextIndices::default().after(&first, &w.id());
    assert_eq!(
        next,
        NextIndices {
            receive: 5,
            change: 1
        }
    );
    let second = wallet_settlement(&w, 7, 10, next);
    let used: Vec<u32> = second.invoices().iter().filter_map(|i| i.index).collect();
    assert_eq!(used, vec![5, 6, 7, 8, 9]);
    let before: Vec<_> = invoices.iter().map(|i| i.address.clone()).collect();
    assert!(second
        .invoices()
        .iter()
        .all(|i| !before.contains(&i.address)));
    // Another wallet's settlements do not move this one's indices.
    let (_, other) = tr_wallet();
    assert_eq!(
        NextIndices::default().after(&first, &other.id()),
        NextIndices::default()
    );

    // The wallet is part of the id and the content: the same bills with
    // other indices are another settlement, and without a wallet another
    // again; settling again gives the same one.
    assert_ne!(first.id(), second.id());
    let shifted = wallet_settlement(
        &w,
        6,
        10,
        NextIndices {
            receive: 1,
            change: 0,
        },
    );
    assert_ne!(shifted.id(), first.id());
    assert_ne!(shifted.content_hash(), first.content_hash());
    assert_eq!(shifted.differences(&first), vec!["wallet".to_owned()]);
    assert_eq!(wallet_settlement(&w, 6, 10, NextIndices::default()), first);
}

#[test]
fn the_record_is_stored_and_read_back_and_checked() {
    let (_, w) = wpkh_wallet();
    let s = wallet_settlement(
        &w,
        6,
        8,
        NextIndices {
            receive: 40,
            change: 3,
        },
    );
    let json = serde_json::to_string(&s).unwrap();
    let back: Settlement = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.content_hash(), s.content_hash());
    back.verify().unwrap();
    // A settlement without a wallet has no "wallet" key in its document.
    let plain = settle(
        &bills(6, &totals(8)),
        &registry(8),
        &rate(),
        Network::Regtest,
        &PayoutAddress::new(PAYOUT, Network::Regtest).unwrap(),
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(!serde_json::to_string(&plain)
        .unwrap()
        .contains("\"wallet\""));
    assert!(plain
        .invoices()
        .iter()
        .all(|i| i.index.is_none() && &i.address == plain.operator_address()));

    // Typed views of the amounts and the payment.
    assert_eq!(back.grid_amount().to_sat(), back.grid_amount().to_sat());
    assert_eq!(
        back.operator_amount().to_sat(),
        back.operator_amount().to_sat()
    );
    for inv in back.invoices() {
        assert_eq!(inv.amount(), inv.sats);
    }
    assert_eq!(back.paid_by(), None);
    let mut paid = back.clone();
    let txid = Txid::from_str(&"ab".repeat(32)).unwrap();
    paid.mark_paid_txid(txid).unwrap();
    assert_eq!(paid.paid_by(), Some(txid));
    // Edits of the stored document are caught.
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| -> Settlement {
        let mut document = serde_json::to_value(&s).unwrap();
        edit(&mut document);
        serde_json::from_value(document).unwrap()
    };
    let other = serde_json::to_value(w.receive_address(99).unwrap()).unwrap();
    let t = edited(&|d| d["wallet"]["invoices"][1]["address"] = other.clone());
    assert!(matches!(t.verify(), Err(Error::InvalidSettlement { .. })));
    let t = edited(&|d| d["wallet"]["next_index"] = 41.into());
    assert!(matches!(t.verify(), Err(Error::InvalidSettlement { .. })));
    let t = edited(&|d| {
        d["wallet"]["invoices"].as_array_mut().unwrap().pop();
    });
    assert!(matches!(t.verify(), Err(Error::InvalidSettlement { .. })));
    let t = edited(&|d| {
        d.as_object_mut().unwrap().remove("wallet");
    });
    assert!(matches!(t.verify(), Err(Error::InvalidSettlement { .. })));
}

// --- PSBTs -----------------------------------------------------------------

fn outpoint(n: u32) -> OutPoint {
    OutPoint::new(Txid::from_str(&"4a".repeat(32)).unwrap(), n)
}

/// Checks a wallet PSBT: the outputs are exactly the batch's plus change to
/// the wallet's change address; inputs and change carry their origins.
fn check_wallet_psbt(
    a: &Account,
    w: &OperatorWallet,
    batch: &Batch,
    utxos: &[WalletUtxo],
    p: &WalletPsbt,
    taproot: bool,
) {
    let psbt = Psbt::from_str(&p.psbt_base64).unwrap();
    let tx = &psbt.unsigned_tx;
    let mut expected: Vec<(bitcoin::ScriptBuf, Amount)> = batch
        .outputs
        .iter()
        .map(|o| (o.address.as_bitcoin().script_pubkey(), o.amount))
        .collect();
    let change_index = p.change_index.unwrap();
    let change = w.change_address(change_index).unwrap();
    assert_eq!(p.change_address.as_ref(), Some(&change));
    expected.push((change.as_bitcoin().script_pubkey(), p.change));
    let found: Vec<(bitcoin::ScriptBuf, Amount)> = tx
        .output
        .iter()
        .map(|o| (o.script_pubkey.clone(), o.value))
        .collect();
    assert_eq!(found, expected);
    let spent: Amount = utxos.iter().map(|u| u.value).sum();
    let paid: Amount = tx.output.iter().map(|o| o.value).sum();
    assert_eq!(spent - paid, p.fee);

    let chain = |k: Keychain| if k == Keychain::Receive { 0 } else { 1 };
    for (input, u) in psbt.inputs.iter().zip(utxos) {
        let key = a.key(chain(u.keychain), u.index);
        let path = a.full_path(chain(u.keychain), u.index);
        let spk = w
            .address(u.keychain, u.index)
            .unwrap()
            .as_bitcoin()
            .script_pubkey();
        assert_eq!(
            input
                .witness_utxo
                .as_ref()
                .map(|o| (&o.script_pubkey, o.value)),
            Some((&spk, u.value))
        );
        if taproot {
            let (xonly, _) = key.x_only_public_key();
            assert_eq!(input.tap_internal_key, Some(xonly));
            let (leaves, origin) = &input.tap_key_origins[&xonly];
            assert!(leaves.is_empty());
            assert_eq!(origin, &(a.fingerprint, path));
            assert!(input.bip32_derivation.is_empty());
        } else {
            assert_eq!(input.bip32_derivation.len(), 1);
            assert_eq!(input.bip32_derivation[&key], (a.fingerprint, path));
        }
    }
    let last = psbt.outputs.last().unwrap();
    let key = a.key(1, change_index);
    let path = a.full_path(1, change_index);
    if taproot {
        let (xonly, _) = key.x_only_public_key();
        assert_eq!(last.tap_internal_key, Some(xonly));
        assert_eq!(last.tap_key_origins[&xonly].1, (a.fingerprint, path));
    } else {
        assert_eq!(last.bip32_derivation[&key], (a.fingerprint, path));
    }
    // The payouts carry nothing of the operator's wallet.
    for o in &psbt.outputs[..psbt.outputs.len() - 1] {
        assert!(o.bip32_derivation.is_empty() && o.tap_key_origins.is_empty());
    }
}

fn psbt_case(a: &Account, w: &OperatorWallet, taproot: bool) {
    // 40 members, 20 of them owed: two batches under a small cap.
    let s = wallet_settlement(
        w,
        6,
        40,
        NextIndices {
            receive: 7,
            change: 2,
        },
    );
    let rate = psbt::FeeRate::new(2).unwrap();
    // The reservation is made at the standard size: one batch here.
    assert_eq!(s.wallet().unwrap().next_change_index, 3);
    let batches = s
        .batches(
            &BatchOptions::new(rate)
                .funding_inputs(&[w.output_type(), w.output_type()])
                .unwrap(),
        )
        .unwrap();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    let utxos = [
        WalletUtxo {
            outpoint: outpoint(0),
            value: Amount::from_sat(200_000),
            keychain: Keychain::Receive,
            index: 3,
        },
        WalletUtxo {
            outpoint: outpoint(1),
            value: batch.outputs_total() + Amount::from_sat(50_000),
            keychain: Keychain::Change,
            index: 1,
        },
    ];
    let p = w.batch_psbt(&s, batch, &utxos).unwrap();
    assert_eq!(p.change_index, Some(2));
    check_wallet_psbt(a, w, batch, &utxos, &p, taproot);
    // Its fee pays the batch's rate for its size.
    assert_eq!(p.fee, rate.fee_for_vbytes(p.vbytes));
    // A batch past the reservation, or another wallet's settlement, is refused.
    let mut later = batch.clone();
    later.index = 1;
    assert!(matches!(
        w.batch_psbt(&s, &later, &utxos),
        Err(Error::TooLarge { .. })
    ));
    let (_, other) = if taproot { wpkh_wallet() } else { tr_wallet() };
    assert!(matches!(
        other.batch_psbt(&s, batch, &utxos),
        Err(Error::InvalidDescriptor { .. })
    ));
}

#[test]
fn wpkh_psbts_carry_bip32_derivations_and_change_on_the_internal_chain() {
    let (a, w) = wpkh_wallet();
    psbt_case(&a, &w, false);
}

#[test]
fn tr_psbts_carry_tap_key_origins_and_internal_keys() {
    let (a, w) = tr_wallet();
    psbt_case(&a, &w, true);
}

#[test]
fn a_large_settlement_reserves_one_change_index_per_standard_batch() {
    let (a, w) = wpkh_wallet();
    // 9,000 members, half of them owed: 4,500 payouts to distinct
    // addresses need two standard-size transactions.
    let n = 9_000;
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut reg = Registry::default();
    for i in 0..n {
        let mut p =
            Prosumer::new(id(i).as_str(), "member", ProsumerKind::Household, joined).unwrap();
        if i % 2 == 1 {
            p = p.with_payout(w.change_address(10_000 + i as u32).unwrap());
        }
        reg.register(p).unwrap();
    }
    let s = settle_with_wallet(
        &bills(6, &totals(n)),
        &reg,
        &rate(),
        &w,
        NextIndices {
            receive: 0,
            change: 0,
        },
        &BTreeMap::new(),
        &PayoutPolicy::default(),
    )
    .unwrap();
    let r = s.wallet().unwrap();
    assert_eq!(r.invoices.len(), 4_500);
    let batches = s
        .batches(&BatchOptions::new(psbt::FeeRate::new(1).unwrap()))
        .unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(r.next_change_index, 2);
    for batch in &batches {
        let utxos = [WalletUtxo {
            outpoint: outpoint(batch.index as u32),
            value: batch.outputs_total() + Amount::from_sat(1_000_000),
            keychain: Keychain::Receive,
            index: 0,
        }];
        let p = w.batch_psbt(&s, batch, &utxos).unwrap();
        assert_eq!(p.change_index, Some(batch.index as u32));
        assert!(p.vbytes <= batches::MAX_STANDARD_TX_VBYTES);
        check_wallet_psbt(&a, &w, batch, &utxos, &p, false);
    }
}

#[test]
fn reconciliation_matches_invoices_by_their_own_addresses() {
    let (_, w) = wpkh_wallet();
    let s = wallet_settlement(
        &w,
        6,
        10,
        NextIndices {
            receive: 3,
            change: 0,
        },
    );
    let inv = s.invoices();
    // Two members owe different amounts; pay the second's address its
    // amount, and the first's address less than it owes.
    let out = |a: &PayoutAddress, sats: u64| bitcoin::TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: a.as_bitcoin().script_pubkey(),
    };
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![],
        output: vec![
            out(&inv[1].address, inv[1].sats.to_sat()),
            out(&inv[0].address, inv[0].sats.to_sat() - 1),
            out(&inv[2].address, inv[2].sats.to_sat() + 5),
            out(&inv[1].address, inv[1].sats.to_sat()),
        ],
    };
    let r = s.reconcile(&tx);
    assert_eq!(r.invoices.len(), 1);
    assert_eq!(r.invoices[0].prosumer, inv[1].prosumer);
    assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
    assert!(
        matches!(&r.problems[0], reconcile::Problem::InvoicePartly { candidates, .. } if *candidates == vec![inv[0].prosumer.clone()])
    );
    assert!(
        matches!(&r.problems[1], reconcile::Problem::InvoiceOverpaid { prosumer, .. } if *prosumer == inv[2].prosumer)
    );
    assert!(
        matches!(&r.problems[2], reconcile::Problem::InvoiceTwice { prosumer, .. } if *prosumer == inv[1].prosumer)
    );
    assert!(r.other_outputs.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // Any index on either chain derives the address BIP32 gives, for both
    // script types.
    #[test]
    fn derivation_matches_bip32(index in 0u32..(1 << 31), change in any::<bool>()) {
        let (a, w) = wpkh_wallet();
        let chain = u32::from(change);
        let keychain = if change { Keychain::Change } else { Keychain::Receive };
        prop_assert_eq!(w.address(keychain, index).unwrap().to_string(), a.wpkh_address(chain, index));
        let (t, tw) = tr_wallet();
        prop_assert_eq!(tw.address(keychain, index).unwrap().to_string(), t.tr_address(chain, index));
    }

    // A chain of settlements, each starting after the ones before, never
    // hands out an index (or address) twice, and each verifies.
    #[test]
    fn a_chain_of_settlements_never_reuses_an_index(sizes in prop::collection::vec(0usize..12, 1..5)) {
        let (_, w) = wpkh_wallet();
        let mut next = NextIndices::default();
        let mut seen = std::collections::BTreeSet::new();
        for (k, n) in sizes.iter().enumerate() {
            let s = wallet_settlement(&w, 1 + k as u32, *n, next);
            s.verify().unwrap();
            for inv in s.invoices() {
                prop_assert!(seen.insert(inv.index.unwrap()));
            }
            let after = next.after(&s, &w.id());
            prop_assert!(after.receive >= next.receive && after.change > next.change);
            next = after;
        }
        prop_assert_eq!(next.receive as usize, seen.len());
    }
}
