//! Settlement: conservation to the satoshi, carry-forward, and outputs that
//! bitcoin software reads back unchanged.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid_core::billing::{Bill, EnergyLines, PeriodBills};
use microgrid_core::settlement::bitcoin::{Amount, SignedAmount};
use microgrid_core::settlement::psbt::{FeeRate, Utxo};
use microgrid_core::settlement::*;
use microgrid_core::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Regtest addresses of several output types (P2WPKH, P2WSH, P2TR-like, base58).
const ADDRESSES: &[&str] = &[
    "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs",
    "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
];

fn sat(n: u64) -> Amount {
    Amount::from_sat(n)
}

fn signed(n: i64) -> SignedAmount {
    SignedAmount::from_sat(n)
}

fn addr(i: usize) -> PayoutAddress {
    PayoutAddress::new(ADDRESSES[i % ADDRESSES.len()], Network::Regtest).unwrap()
}

fn period() -> TimeRange {
    let s = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    TimeRange::new(
        s,
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
        TimeframeLength::default(),
    )
    .unwrap()
}

fn id(i: usize) -> ProsumerId {
    format!("m{i:02}").parse().unwrap()
}

/// Members m00.. with a payout address unless `i % 4 == 3`.
fn registry(n: usize) -> Registry {
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut r = Registry::default();
    for i in 0..n {
        let p = Prosumer::new(id(i).as_str(), "member", ProsumerKind::Household, joined).unwrap();
        r.register(if i % 4 == 3 {
            p
        } else {
            p.with_payout(addr(i))
        })
        .unwrap();
    }
    r
}

fn bill(i: usize, total: Decimal) -> Bill {
    Bill {
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
        total,
        baseline: total,
        saving: Decimal::ZERO,
    }
}

fn bills(totals: &[Decimal], grid_leg: Decimal) -> PeriodBills {
    PeriodBills {
        period: period(),
        currency: "EUR".parse().unwrap(),
        bills: totals
            .iter()
            .enumerate()
            .map(|(i, t)| bill(i, *t))
            .collect(),
        grid_leg,
        fees: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        metrics: CommunityMetrics::default(),
    }
}

fn rate(per_btc: Decimal) -> ExchangeRate {
    ExchangeRate::new(
        per_btc,
        "EUR".parse().unwrap(),
        "test",
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
    )
    .unwrap()
}

fn settle_plain(
    b: &PeriodBills,
    reg: &Registry,
    r: &ExchangeRate,
    carried: &BTreeMap<ProsumerId, SignedAmount>,
) -> Settlement {
    settle(b, reg, r, Network::Regtest, &addr(0), carried).unwrap()
}

/// Bill totals in EUR with up to 9 decimals, both signs.
fn totals() -> impl Strategy<Value = Vec<Decimal>> {
    prop::collection::vec(
        (-50_000_000_000i64..50_000_000_000).prop_map(|u| Decimal::new(u, 9)),
        1..20,
    )
}

/// Rates from 1,000.00 to 200,000.00 EUR per BTC, up to 2 decimals.
fn rates() -> impl Strategy<Value = Decimal> {
    (100_000i64..20_000_000).prop_map(|c| Decimal::new(c, 2))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    // Σ payouts − Σ invoices + Σ carried_out − Σ carried_in + grid + operator = 0, and each member's sats are within 1 of the exact value.
    #[test]
    fn settlement_is_conserved_to_the_satoshi(ts in totals(), q in rates(), grid in -1_000_000i64..1_000_000, carried in prop::collection::vec(-2_000i64..2_000, 20)) {
        let b = bills(&ts, Decimal::new(grid, 2));
        let reg = registry(ts.len());
        let carried: BTreeMap<_, _> = carried.iter().take(ts.len()).enumerate().filter(|(_, c)| **c != 0).map(|(i, c)| (id(i), signed(*c))).collect();
        let s = settle_plain(&b, &reg, &rate(q), &carried);
        prop_assert!(s.is_conserved());
        let bill_sats: i64 = s.entries().iter().map(|e| e.bill_sats.to_sat()).sum();
        prop_assert_eq!(bill_sats, s.grid_amount().to_sat() + s.operator_amount().to_sat());
        for e in s.entries() {
            // |bill_sats − total·1e8/q| < 1  ⇔  |bill_sats·q − total·1e8| < q
            let diff = Decimal::from(e.bill_sats.to_sat()) * q - e.bill_total * Decimal::from(100_000_000);
            prop_assert!(diff.abs() < q, "{} {} at {}", e.prosumer, e.bill_total, q);
            prop_assert_eq!(e.due, e.carried_in - e.bill_sats);
            match &e.action {
                Action::Payout { sats, address } => prop_assert!(sats.to_signed().unwrap() == e.due && sats.to_sat() >= address.dust_limit_sats()),
                Action::Invoice { sats } => prop_assert!(-sats.to_signed().unwrap() == e.due && *sats >= sat(294)),
                Action::Carry { .. } => prop_assert_eq!(e.carried_out, e.due),
                Action::Nothing => prop_assert_eq!(e.due, SignedAmount::ZERO),
                Action::Lightning { .. } => prop_assert!(false, "Lightning without a threshold"),
            }
        }
    }

    // A balance carried forward is paid in a later period, never lost: over any sequence of periods, what each member got minus what it was invoiced plus what is still carried equals minus its bills.
    #[test]
    fn carried_balances_are_paid_later_never_lost(months in prop::collection::vec(prop::collection::vec(-3_000i64..3_000, 6), 1..8), q in rates()) {
        let reg = registry(6);
        let r = rate(q);
        let mut carried = BTreeMap::new();
        let mut net: BTreeMap<ProsumerId, i64> = BTreeMap::new();
        let mut billed: BTreeMap<ProsumerId, i64> = BTreeMap::new();
        for month in &months {
            // Tiny bills (cents) so that dust and carrying happen often.
            let ts: Vec<Decimal> = month.iter().map(|c| Decimal::new(*c, 4)).collect();
            let s = settle_plain(&bills(&ts, Decimal::ZERO), &reg, &r, &carried);
            prop_assert!(s.is_conserved());
            for e in s.entries() {
                *billed.entry(e.prosumer.clone()).or_default() += e.bill_sats.to_sat();
                let flow = match e.action {
                    Action::Payout { sats, .. } => sats.to_sat() as i64,
                    Action::Invoice { sats } => -(sats.to_sat() as i64),
                    _ => 0,
                };
                *net.entry(e.prosumer.clone()).or_default() += flow;
            }
            carried = s.carried_out();
        }
        for (who, b) in &billed {
            let still = carried.get(who).map_or(0, |c| c.to_sat());
            prop_assert_eq!(net.get(who).copied().unwrap_or(0) + still, -b, "{}", who);
        }
    }
}

#[test]
fn a_carried_balance_is_paid_once_it_reaches_the_dust_limit() {
    let reg = registry(1);
    let r = rate(Decimal::from(100_000)); // 1 EUR = 1000 sat
    let first = settle_plain(
        &bills(&[Decimal::new(-2, 1)], Decimal::ZERO),
        &reg,
        &r,
        &BTreeMap::new(),
    );
    assert_eq!(
        first.entries()[0].action,
        Action::Carry {
            reason: CarryReason::BelowDust
        }
    );
    assert_eq!(first.carried_out(), BTreeMap::from([(id(0), signed(200))]));
    let second = settle_plain(
        &bills(&[Decimal::new(-2, 1)], Decimal::ZERO),
        &reg,
        &r,
        &first.carried_out(),
    );
    assert_eq!(second.payouts(), vec![(addr(0), sat(400))]);
    assert!(second.carried_out().is_empty());
}

#[test]
fn members_without_address_carry_their_balance() {
    let reg = registry(4);
    let s = settle_plain(
        &bills(
            &[
                Decimal::ZERO,
                Decimal::ZERO,
                Decimal::ZERO,
                Decimal::from(-5),
            ],
            Decimal::ZERO,
        ),
        &reg,
        &rate(Decimal::from(50_000)),
        &BTreeMap::new(),
    );
    assert_eq!(
        s.entries()[3].action,
        Action::Carry {
            reason: CarryReason::NoAddress
        }
    );
    assert_eq!(s.entries()[3].carried_out, signed(10_000));
}

#[test]
fn settling_twice_gives_the_same_settlement_and_hash() {
    let b = bills(&[Decimal::from(-12), Decimal::from(7)], Decimal::from(-5));
    let reg = registry(2);
    let a = settle_plain(&b, &reg, &rate(Decimal::from(60_000)), &BTreeMap::new());
    let again = settle_plain(&b, &reg, &rate(Decimal::from(60_000)), &BTreeMap::new());
    assert_eq!(a, again);
    assert_eq!(a.content_hash(), again.content_hash());
    assert_eq!(a.id().len(), 32);
    let other = settle_plain(&b, &reg, &rate(Decimal::from(61_000)), &BTreeMap::new());
    assert_ne!(a.id(), other.id());
    assert_ne!(a.content_hash(), other.content_hash());
    // The canonical JSON has sorted keys and no floats.
    let json = a.canonical_json();
    assert!(json.starts_with("{\"entries\":["), "{json}");
    assert!(json.contains("\"bill_total\":\"-12\""), "{json}");
}

#[test]
fn sendmany_outputs_are_what_bitcoin_core_takes() {
    let reg = registry(3);
    let b = bills(
        &[Decimal::from(-12), Decimal::from(-3), Decimal::from(-1)],
        Decimal::ZERO,
    );
    let s = settle_plain(&b, &reg, &rate(Decimal::from(60_000)), &BTreeMap::new());
    assert_eq!(
        s.sendmany_json(),
        "{\"2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br\":0.00001667,\"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\":0.00020000,\"mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs\":0.00005000}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&s.sendmany_json()).unwrap();
    assert_eq!(parsed.as_object().unwrap().len(), 3);
}

#[test]
fn invoices_are_bip21_uris_to_the_operator() {
    let reg = registry(2);
    let s = settle_plain(
        &bills(&[Decimal::from(30), Decimal::ZERO], Decimal::ZERO),
        &reg,
        &rate(Decimal::from(60_000)),
        &BTreeMap::new(),
    );
    let inv = s.invoices();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].sats, sat(50_000));
    assert_eq!(
        inv[0].uri,
        "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=0.0005&label=m00&message=Energy%20bill%202026-06-01%20to%202026-07-01"
    );
}

#[test]
fn the_psbt_decodes_to_the_batch() {
    let reg = registry(3);
    let b = bills(
        &[Decimal::from(-12), Decimal::from(-3), Decimal::from(-1)],
        Decimal::ZERO,
    );
    let s = settle_plain(&b, &reg, &rate(Decimal::from(60_000)), &BTreeMap::new());
    let funding = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b";
    let utxos = [Utxo {
        outpoint: format!("{funding}:0").parse().unwrap(),
        value: bitcoin::Amount::from_sat(100_000),
        address: addr(0),
    }];
    let feerate = FeeRate::new(3).unwrap();
    let batch = s.build_psbt(&utxos, &addr(0), feerate).unwrap();

    let psbt = bitcoin::Psbt::from_str(&batch.psbt_base64).unwrap();
    let outputs: Vec<(String, u64)> = psbt
        .unsigned_tx
        .output
        .iter()
        .map(|o| {
            let a =
                bitcoin::Address::from_script(&o.script_pubkey, bitcoin::Network::Regtest).unwrap();
            (a.to_string(), o.value.to_sat())
        })
        .collect();
    let mut expected: Vec<(String, u64)> = s
        .payout_batch()
        .into_iter()
        .map(|(a, v)| (a.to_string(), v.to_sat()))
        .collect();
    expected.push((addr(0).to_string(), batch.change_sats.to_sat()));
    assert_eq!(outputs, expected);
    let paid: u64 = outputs.iter().map(|(_, v)| v).sum();
    assert_eq!(sat(100_000 - paid), batch.fee_sats);
    assert_eq!(batch.fee_sats, sat(batch.vbytes * 3));
    assert_eq!(
        psbt.inputs[0].witness_utxo.as_ref().unwrap().value.to_sat(),
        100_000
    );
    assert_eq!(
        psbt.unsigned_tx.input[0].previous_output.to_string(),
        format!("{funding}:0")
    );

    let too_little = [Utxo {
        outpoint: format!("{funding}:1").parse().unwrap(),
        value: bitcoin::Amount::from_sat(20_000),
        address: addr(0),
    }];
    assert!(matches!(
        s.build_psbt(&too_little, &addr(0), feerate),
        Err(Error::InsufficientInputs { .. })
    ));
}

#[test]
fn bad_inputs_are_refused_with_what_was_wrong() {
    let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
    assert!(matches!(
        ExchangeRate::new(Decimal::ZERO, "EUR".parse().unwrap(), "x", at),
        Err(Error::RateOutOfRange { .. })
    ));
    assert!(matches!(
        ExchangeRate::new(Decimal::from(-1), "EUR".parse().unwrap(), "x", at),
        Err(Error::RateOutOfRange { .. })
    ));
    let b = bills(&[Decimal::from(-1)], Decimal::ZERO);
    let usd = ExchangeRate::new(Decimal::from(60_000), "USD".parse().unwrap(), "x", at).unwrap();
    assert!(matches!(
        settle(
            &b,
            &registry(1),
            &usd,
            Network::Regtest,
            &addr(0),
            &BTreeMap::new()
        ),
        Err(Error::CurrencyMismatch { .. })
    ));
    let mainnet =
        PayoutAddress::new("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", Network::Bitcoin).unwrap();
    assert!(matches!(
        settle(
            &b,
            &registry(1),
            &rate(Decimal::from(60_000)),
            Network::Regtest,
            &mainnet,
            &BTreeMap::new()
        ),
        Err(Error::MixedNetworks { .. })
    ));
    let mut s = settle_plain(
        &b,
        &registry(1),
        &rate(Decimal::from(60_000)),
        &BTreeMap::new(),
    );
    assert!(matches!(s.mark_paid("abc"), Err(Error::InvalidTxid(_))));
    assert!(matches!(
        s.mark_paid(&"g".repeat(64)),
        Err(Error::InvalidTxid(_))
    ));
    s.mark_paid(&"AB".repeat(32)).unwrap();
    assert_eq!(s.paid_by().map(|t| t.to_string()), Some("ab".repeat(32)));
}

#[test]
fn an_exchange_rate_read_back_is_checked_like_a_new_one() {
    let r = rate(Decimal::from(60_000));
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<ExchangeRate>(&json).unwrap(), r);
    let zero = json.replace("\"60000\"", "\"0\"");
    assert_ne!(zero, json);
    assert!(serde_json::from_str::<ExchangeRate>(&zero).is_err());
}

#[test]
fn members_sharing_an_address_are_paid_in_one_output_everywhere() {
    // m01 and m04 share a wallet (registry: address i % 3); m03 has none.
    let reg = registry(5);
    let b = bills(&[0, -1, 0, 0, -2].map(Decimal::from), Decimal::ZERO);
    let s = settle_plain(&b, &reg, &rate(Decimal::from(60_000)), &BTreeMap::new());
    // −1 and −2 EUR at 60,000 EUR/BTC: 1,666.67 and 3,333.33 sat → 1,667 + 3,333.
    assert_eq!(
        s.payouts(),
        vec![(addr(1), sat(1_667)), (addr(4), sat(3_333))]
    );
    assert_eq!(s.payout_batch(), vec![(addr(1), sat(5_000))]);
    assert_eq!(
        s.sendmany_json(),
        "{\"mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs\":0.00005000}"
    );
    let utxos = [Utxo {
        outpoint: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0"
            .parse()
            .unwrap(),
        value: bitcoin::Amount::from_sat(50_000),
        address: addr(0),
    }];
    let batch = s
        .build_psbt(&utxos, &addr(0), FeeRate::new(2).unwrap())
        .unwrap();
    let psbt = bitcoin::Psbt::from_str(&batch.psbt_base64).unwrap();
    let values: Vec<u64> = psbt
        .unsigned_tx
        .output
        .iter()
        .map(|o| o.value.to_sat())
        .collect();
    assert_eq!(values, [5_000, batch.change_sats.to_sat()]);
    assert_eq!(
        s.estimate_fee(FeeRate::new(2).unwrap()).vbytes,
        batch.vbytes
    );
}

#[test]
fn amounts_beyond_all_bitcoin_are_refused() {
    // 30 million EUR at 1 EUR per BTC is more bitcoin than there will ever be.
    let b = bills(&[Decimal::from(-30_000_000)], Decimal::ZERO);
    assert_eq!(
        settle(
            &b,
            &registry(1),
            &rate(Decimal::ONE),
            Network::Regtest,
            &addr(0),
            &BTreeMap::new()
        ),
        Err(Error::Overflow("batch in satoshis"))
    );
    let b = bills(&[Decimal::ZERO], Decimal::from(30_000_000));
    assert_eq!(
        settle(
            &b,
            &registry(1),
            &rate(Decimal::ONE),
            Network::Regtest,
            &addr(0),
            &BTreeMap::new()
        ),
        Err(Error::Overflow("grid leg in satoshis"))
    );
}

#[test]
fn rate_sources_and_reasons_for_voiding_are_short_printable_texts() {
    let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
    let eur = "EUR".parse().unwrap();
    for source in ["", "  ", "kraken\u{202E}", "line\nbreak", &"x".repeat(201)] {
        assert!(
            matches!(
                ExchangeRate::new(Decimal::from(90_000), eur, source, at),
                Err(Error::InvalidText {
                    what: "exchange-rate source",
                    ..
                })
            ),
            "{source:?}"
        );
    }
    assert!(ExchangeRate::new(Decimal::from(90_000), eur, "Kraken EUR/BTC close", at).is_ok());
    // The bounds of the rate itself.
    for per_btc in [
        Decimal::ZERO,
        Decimal::from(-1),
        MAX_RATE_PER_BTC + Decimal::ONE,
    ] {
        assert!(matches!(
            ExchangeRate::new(per_btc, eur, "test", at),
            Err(Error::RateOutOfRange { .. })
        ));
    }
    assert_eq!(MAX_RATE_PER_BTC, Decimal::from(1_000_000_000_000_000i64));
    assert!(ExchangeRate::new(MAX_RATE_PER_BTC, eur, "test", at).is_ok());
}

#[test]
fn a_settlement_is_voided_once_with_a_reason_and_never_when_paid() {
    let reg = registry(3);
    let b = bills(
        &[Decimal::from(10), Decimal::from(-4), Decimal::ZERO],
        Decimal::from(6),
    );
    let s = settle_plain(&b, &reg, &rate(Decimal::from(90_000)), &BTreeMap::new());
    let at = Utc.with_ymd_and_hms(2026, 7, 2, 0, 0, 0).unwrap();
    let mut voided = s.clone();
    assert!(matches!(
        voided.void("oops\u{0}", at),
        Err(Error::InvalidText {
            what: "reason for voiding",
            ..
        })
    ));
    voided.void("wrong rate", at).unwrap();
    assert!(!voided.stands());
    voided.void("again", at).unwrap();
    assert_eq!(voided.voided().unwrap().reason, "wrong rate");
    assert_eq!(
        voided.content_hash(),
        s.content_hash(),
        "voiding is not content"
    );
    assert!(matches!(
        voided.mark_paid(&"ab".repeat(32)),
        Err(Error::SettlementVoided { .. })
    ));
    let mut paid = s.clone();
    paid.mark_paid(&"ab".repeat(32)).unwrap();
    assert!(matches!(
        paid.void("late", at),
        Err(Error::CannotVoidPaid { .. })
    ));
    let other = settle_plain(&b, &reg, &rate(Decimal::from(95_000)), &BTreeMap::new());
    assert_eq!(s.differences(&s), Vec::<String>::new());
    assert!(s.differences(&other).contains(&"rate".to_owned()));
    assert!(matches!(
        other.conflict_with(&s),
        Error::SettlementConflict { existing, .. } if existing == s.id() && existing != other.id()
    ));
}

#[test]
fn verify_finds_an_edited_settlement() {
    let reg = registry(3);
    let b = bills(
        &[Decimal::from(10), Decimal::from(-4), Decimal::ZERO],
        Decimal::from(6),
    );
    let s = settle_plain(&b, &reg, &rate(Decimal::from(90_000)), &BTreeMap::new());
    s.verify().unwrap();
    let mut paid = s.clone();
    paid.mark_paid(&"ab".repeat(32)).unwrap();
    paid.verify().unwrap();
    // The fields are private: a settlement is edited where it can be, in
    // its stored document.
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let add = |v: &mut serde_json::Value, by: i64| *v = (v.as_i64().unwrap() + by).into();
    let edits: Vec<(&str, Edit)> = vec![
        ("id", Box::new(|d| d["id"] = "0".repeat(32).into())),
        (
            "operator",
            Box::new(move |d| add(&mut d["operator_sats"], 1)),
        ),
        (
            "due",
            Box::new(move |d| add(&mut d["entries"][0]["due"], 1)),
        ),
        (
            "order",
            Box::new(|d| d["entries"].as_array_mut().unwrap().swap(0, 1)),
        ),
        (
            "rate",
            Box::new(|d| d["rate"] = serde_json::to_value(rate(Decimal::from(1))).unwrap()),
        ),
    ];
    for (what, edit) in edits {
        let mut document = serde_json::to_value(&s).unwrap();
        edit(&mut document);
        let t: Settlement = serde_json::from_value(document).unwrap();
        assert!(
            matches!(t.verify(), Err(Error::InvalidSettlement { .. })),
            "{what}"
        );
    }
}

#[test]
fn a_minimum_payout_carries_smaller_balances_and_changes_the_id_only_then() {
    let reg = registry(3);
    // −1, −2 and −6 EUR at 60,000 EUR/BTC: 1,667, 3,333 and 10,000 sat due.
    let b = bills(&[-1, -2, -6].map(Decimal::from), Decimal::ZERO);
    let r = rate(Decimal::from(60_000));
    let plain = settle_plain(&b, &reg, &r, &BTreeMap::new());
    let default = settle_with_policy(
        &b,
        &reg,
        &r,
        Network::Regtest,
        &addr(0),
        &BTreeMap::new(),
        &PayoutPolicy::default(),
    )
    .unwrap();
    assert_eq!(default, plain, "no minimum: what settle makes, id included");
    let policy = PayoutPolicy::with_minimum_payout(bitcoin::Amount::from_sat(5_000)).unwrap();
    let s = settle_with_policy(
        &b,
        &reg,
        &r,
        Network::Regtest,
        &addr(0),
        &BTreeMap::new(),
        &policy,
    )
    .unwrap();
    assert_ne!(s.id(), plain.id());
    s.verify().unwrap();
    assert!(s.is_conserved());
    assert_eq!(s.payouts(), vec![(addr(2), sat(10_000))]);
    assert_eq!(
        s.entries()[0].action,
        Action::Carry {
            reason: CarryReason::BelowMinimum
        }
    );
    assert_eq!(
        s.carried_out(),
        BTreeMap::from([(id(0), signed(1_667)), (id(1), signed(3_333))])
    );
    // Next period the carried balances reach the minimum and are paid.
    let next = settle_with_policy(
        &bills(&[-2, -1, 0].map(Decimal::from), Decimal::ZERO),
        &reg,
        &r,
        Network::Regtest,
        &addr(0),
        &s.carried_out(),
        &policy,
    )
    .unwrap();
    assert_eq!(
        next.payouts(),
        vec![(addr(0), sat(5_000)), (addr(1), sat(5_000))]
    );
}

#[test]
fn fractional_fee_rates_are_exact_and_checked_where_made() {
    let d = |s: &str| Decimal::from_str(s).unwrap();
    let rate = FeeRate::from_sat_per_vb_decimal(d("1.5")).unwrap();
    assert_eq!(rate.sat_per_kvb(), 1_500);
    assert_eq!(rate.sat_per_vb_decimal(), d("1.5"));
    assert_eq!(rate.to_bitcoin(), bitcoin::FeeRate::from_sat_per_kwu(375));
    assert_eq!(FeeRate::from_bitcoin(rate.to_bitcoin()).unwrap(), rate);
    assert_eq!(
        FeeRate::from_sat_per_vb_decimal(d("0.1"))
            .unwrap()
            .sat_per_kvb(),
        100
    );
    for bad in ["0", "0.09", "0.0005", "-1", "10000.001"] {
        assert!(
            matches!(
                FeeRate::from_sat_per_vb_decimal(d(bad)),
                Err(Error::InvalidFeeRate { sat_per_vb }) if sat_per_vb == d(bad)
            ),
            "{bad}"
        );
    }
    assert!(FeeRate::from_sat_per_vb_decimal(d("10000")).is_ok());
    assert!(FeeRate::from_sat_per_kvb(99).is_err());
    let json = serde_json::to_string(&rate).unwrap();
    assert_eq!(json, "{\"sat_per_kvb\":1500}");
    assert_eq!(serde_json::from_str::<FeeRate>(&json).unwrap(), rate);
    assert!(serde_json::from_str::<FeeRate>("{\"sat_per_kvb\":0}").is_err());
    // 141 vB at 0.5 sat/vB: 70.5 rounds up to 71.
    let reg = registry(3);
    let s = settle_plain(
        &bills(&[-12, -3, -1].map(Decimal::from), Decimal::ZERO),
        &reg,
        &super_rate(),
        &BTreeMap::new(),
    );
    let half = FeeRate::from_sat_per_vb_decimal(d("0.5")).unwrap();
    let est = s.estimate_fee(half);
    assert_eq!(est.fee_sats, sat(est.vbytes.div_ceil(2)));
}

fn super_rate() -> ExchangeRate {
    rate(Decimal::from(60_000))
}

/// An operator address no member uses.
fn own_operator() -> PayoutAddress {
    simulate::regtest_address(1_000, OutputType::P2wpkh)
}

/// [`settle_plain`] with [`own_operator`]'s address.
fn settle_own(b: &PeriodBills, reg: &Registry, r: &ExchangeRate) -> Settlement {
    settle(
        b,
        reg,
        r,
        Network::Regtest,
        &own_operator(),
        &BTreeMap::new(),
    )
    .unwrap()
}

/// A transaction with one input and `outputs` (address, sats).
fn transaction(outputs: &[(&PayoutAddress, u64)]) -> bitcoin::Transaction {
    bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint::from_str(
                "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b:0",
            )
            .unwrap(),
            ..Default::default()
        }],
        output: outputs
            .iter()
            .map(|(a, v)| bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(*v),
                script_pubkey: a.as_bitcoin().script_pubkey(),
            })
            .collect(),
    }
}

#[test]
fn reconciliation_finds_payouts_and_invoices_and_reports_partial_and_double_payments() {
    // m00, m01 and m04 are owed money; m02, m03 and m05 owe the operator;
    // addresses repeat every 3 members.
    let reg = registry(6);
    let b = bills(&[-6, -3, 2, 3, -1, 4].map(Decimal::from), Decimal::ZERO);
    let s = settle_own(&b, &reg, &super_rate());
    let invoices = s.invoices();
    let sats: Vec<u64> = invoices.iter().map(|i| i.sats.to_sat()).collect();
    assert_eq!(sats, [3_333, 5_000, 6_667]);
    let batch = s.payout_batch();
    assert_eq!(batch.len(), 2); // m01 and m04 share addr(1)
    let operator = own_operator();
    let stranger = Some(simulate::regtest_address(2_000, OutputType::P2tr));
    let mut outputs: Vec<(&PayoutAddress, u64)> = vec![
        (&batch[0].0, batch[0].1.to_sat()),     // a payout, exactly
        (&operator, 3_333),                     // m02's invoice
        (&operator, 3_333),                     // ... paid twice
        (&operator, 4_000),                     // part of m03's or m05's
        (&batch[1].0, batch[1].1.to_sat() - 1), // a payout short by one sat
        (&operator, 90_000),                    // change
    ];
    if let Some(st) = &stranger {
        outputs.push((st, 1_000));
    }
    let tx = transaction(&outputs);
    let hex = bitcoin::consensus::encode::serialize_hex(&tx);
    let r = s.reconcile_hex(&hex).unwrap();
    assert_eq!(r, s.reconcile(&tx));
    assert_eq!(r.txid, tx.compute_txid());
    assert_eq!(r.payouts.len(), 1);
    assert_eq!(r.payouts[0].address, batch[0].0);
    assert_eq!(r.payouts[0].outpoint.vout, 0);
    assert_eq!(r.invoices.len(), 1);
    assert_eq!(
        r.invoices[0].prosumer.as_str(),
        invoices[0].prosumer.as_str()
    );
    use microgrid_core::settlement::reconcile::Problem;
    assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
    assert!(
        matches!(&r.problems[0], Problem::InvoiceTwice { prosumer, outpoint, .. } if *prosumer == invoices[0].prosumer && outpoint.vout == 2)
    );
    assert!(
        matches!(&r.problems[1], Problem::InvoicePartly { candidates, .. } if *candidates == vec![invoices[1].prosumer.clone(), invoices[2].prosumer.clone()])
    );
    assert!(
        matches!(&r.problems[2], Problem::PayoutWrongAmount { found, expected, .. } if found.to_sat() + 1 == expected.to_sat())
    );
    let others: Vec<u32> = r.other_outputs.iter().map(|o| o.outpoint.vout).collect();
    assert_eq!(
        others,
        if stranger.is_some() {
            vec![5, 6]
        } else {
            vec![5]
        }
    );
    // Every output is accounted for.
    assert_eq!(
        r.payouts.len() + r.invoices.len() + r.problems.len() + r.other_outputs.len(),
        tx.output.len()
    );

    // The ledger marks exactly what was paid, and a second transaction
    // paying the same invoice again is reported.
    let mut ledger = Payments::new(&s);
    assert!(ledger.record(&r).unwrap().is_empty());
    assert!(
        ledger.record(&r).unwrap().is_empty(),
        "recording twice changes nothing"
    );
    assert_eq!(ledger.open_payouts(&s), vec![batch[1].clone()]);
    assert_eq!(ledger.open_invoices(&s).len(), 2);
    let rest = transaction(&[
        (&batch[1].0, batch[1].1.to_sat()),
        (&operator, 5_000),
        (&operator, 6_667),
        (&operator, 3_333),
    ]);
    let again = ledger.record(&s.reconcile(&rest)).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].what, invoices[0].prosumer.as_str());
    assert!(ledger.is_complete(&s));
    let other = settle_own(&b, &reg, &rate(Decimal::from(61_000)));
    assert!(matches!(
        Payments::new(&other).record(&r),
        Err(Error::ShapeMismatch(_))
    ));
    assert!(matches!(s.reconcile_hex("00zz"), Err(Error::Parse { .. })));
}

#[test]
fn mark_paid_by_a_transaction_checks_it_pays_the_batch() {
    let reg = registry(3);
    let b = bills(&[-12, -3, -1].map(Decimal::from), Decimal::ZERO);
    let s = settle_own(&b, &reg, &super_rate());
    let batch = s.payout_batch();
    let outputs: Vec<(&PayoutAddress, u64)> = batch.iter().map(|(a, v)| (a, v.to_sat())).collect();
    let mut with_change = outputs.clone();
    let change = own_operator();
    with_change.push((&change, 12_345));
    let tx = transaction(&with_change);
    let mut paid = s.clone();
    paid.mark_paid_by(&tx, &[]).unwrap();
    assert_eq!(paid.paid_by(), Some(tx.compute_txid()));
    let mut by_txid = s.clone();
    by_txid.mark_paid_txid(tx.compute_txid()).unwrap();
    assert_eq!(by_txid.paid_by(), paid.paid_by());
    // A typed UTXO is the same as one written out.
    let outpoint = bitcoin::OutPoint::new(tx.compute_txid(), 3);
    assert_eq!(
        Utxo::new(outpoint, bitcoin::Amount::from_sat(5_000), own_operator()),
        Utxo {
            outpoint: bitcoin::OutPoint::new(tx.compute_txid(), 3),
            value: bitcoin::Amount::from_sat(5_000),
            address: own_operator(),
        }
    );
    let mut short = s.clone();
    assert!(matches!(
        short.mark_paid_by(&transaction(&outputs[..2]), &[]),
        Err(Error::TransactionMismatch { .. })
    ));
    let mut wrong = outputs.clone();
    wrong[0].1 += 1;
    assert!(matches!(
        short.mark_paid_by(&transaction(&wrong), &[]),
        Err(Error::TransactionMismatch { .. })
    ));
    assert_eq!(short.paid_by(), None);
    // The batch the members pay the fee of: the outputs less their shares.
    let options = BatchOptions::new(FeeRate::new(1).unwrap()).fee_payer(FeePayer::Members);
    let batches = s.batches(&options).unwrap();
    let net: Vec<(PayoutAddress, Amount)> = batches[0].payments();
    let net_refs: Vec<(&PayoutAddress, u64)> = net.iter().map(|(a, v)| (a, v.to_sat())).collect();
    let mut by_batch = s.clone();
    assert!(by_batch.mark_paid_by(&transaction(&net_refs), &[]).is_err());
    by_batch
        .mark_paid_by(&transaction(&net_refs), &batches)
        .unwrap();
    assert!(by_batch.paid_by().is_some());
}

#[test]
fn every_invoice_uri_parses_back_to_what_it_asks() {
    let reg = registry(4);
    let b = bills(&[7, 30, 1, 12].map(Decimal::from), Decimal::ZERO);
    let s = settle_plain(&b, &reg, &super_rate(), &BTreeMap::new());
    assert!(!s.invoices().is_empty());
    for inv in s.invoices() {
        let r = bip21::parse(&inv.uri).unwrap();
        assert_eq!(
            &r.address_on(Network::Regtest).unwrap(),
            s.operator_address()
        );
        assert_eq!(r.amount, Some(inv.sats));
        assert_eq!(r.label.as_deref(), Some(inv.prosumer.as_str()));
        assert_eq!(
            r.message.as_deref(),
            Some("Energy bill 2026-06-01 to 2026-07-01")
        );
        assert!(r.other.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    // payment_uri → parse gives back the address, amount, label and message.
    #[test]
    fn bip21_uris_round_trip(i in 0usize..3, sats in 0u64..=2_100_000_000_000_000, label in proptest::option::of("\\PC{0,30}"), message in proptest::option::of("\\PC{0,60}")) {
        let a = addr(i);
        let uri = bip21::payment_uri(&a, sats, label.as_deref(), message.as_deref());
        let r = bip21::parse(&uri).unwrap();
        prop_assert_eq!(r.address_on(Network::Regtest).unwrap(), a);
        prop_assert_eq!(r.amount, (sats > 0).then(|| bitcoin::Amount::from_sat(sats)));
        prop_assert_eq!(r.label, label);
        prop_assert_eq!(r.message, message);
        // What a wallet showing it as a QR code writes: upper-case scheme and keys.
        let upper = uri.replacen("bitcoin:", "BITCOIN:", 1).replace("amount=", "AMOUNT=");
        prop_assert_eq!(bip21::parse(&upper).unwrap().amount, r.amount);
    }
}
