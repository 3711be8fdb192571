//! A settlement document stored before sats became `bitcoin::Amount`s.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid_core::billing::{Bill, EnergyLines, PeriodBills};
use microgrid_core::settlement::*;
use microgrid_core::*;
use rust_decimal::Decimal;

fn bill(id: &str, total: Decimal) -> Bill {
    Bill {
        prosumer: id.parse().unwrap(),
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

/// The document of [`settled`], as serialized before sats became
/// `bitcoin::Amount` / `SignedAmount` (written by the code of 6a5b034).
const STORED: &str = r#"{"id":"1c9d4dc537779f54d24105e88b71d96a","period":{"start":"2026-06-01T00:00:00Z","end":"2026-07-01T00:00:00Z","length":15},"network":"regtest","rate":{"per_btc":"60000","currency":"EUR","source":"test","at":"2026-07-01T00:00:00Z"},"operator_address":{"address":"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080","network":"regtest"},"entries":[{"prosumer":"a","bill_total":"-10.5","bill_sats":-17500,"carried_in":0,"due":17500,"action":{"kind":"payout","address":{"address":"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080","network":"regtest"},"sats":17500},"carried_out":0},{"prosumer":"b","bill_total":"4.25","bill_sats":7084,"carried_in":0,"due":-7084,"action":{"kind":"invoice","sats":7084},"carried_out":0},{"prosumer":"c","bill_total":"-3","bill_sats":-5000,"carried_in":0,"due":5000,"action":{"kind":"carry","reason":"no_address"},"carried_out":5000},{"prosumer":"d","bill_total":"0.0001","bill_sats":0,"carried_in":40,"due":40,"action":{"kind":"carry","reason":"below_dust"},"carried_out":40},{"prosumer":"e","bill_total":"0","bill_sats":0,"carried_in":-200,"due":-200,"action":{"kind":"carry","reason":"below_dust"},"carried_out":-200},{"prosumer":"f","bill_total":"0","bill_sats":0,"carried_in":0,"due":0,"action":{"kind":"nothing"},"carried_out":0}],"grid_sats":4167,"operator_sats":-19583,"paid_txid":"abababababababababababababababababababababababababababababababab"}"#;
/// Its id and content hash then.
const STORED_ID: &str = "1c9d4dc537779f54d24105e88b71d96a";
const STORED_HASH: &str = "9339abe6ece21cd1dec0996ef5938331425a18f80abb38af137f934f71d795d2";

/// A payout, an invoice, carries (no address, below dust either way, a
/// negative balance carried in) and nothing due, marked paid.
fn settled() -> Settlement {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
    let period = TimeRange::new(start, end, TimeframeLength::default()).unwrap();
    let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let a = PayoutAddress::new(
        "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
        Network::Regtest,
    )
    .unwrap();
    let b = PayoutAddress::new("mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs", Network::Regtest).unwrap();
    let mut reg = Registry::default();
    for (id, addr) in [
        ("a", Some(&a)),
        ("b", Some(&b)),
        ("c", None),
        ("d", Some(&a)),
        ("e", Some(&b)),
        ("f", Some(&a)),
    ] {
        let p = Prosumer::new(id, "member", ProsumerKind::Household, joined).unwrap();
        reg.register(match addr {
            Some(x) => p.with_payout(x.clone()),
            None => p,
        })
        .unwrap();
    }
    let bills = PeriodBills {
        period,
        currency: "EUR".parse().unwrap(),
        bills: vec![
            bill("a", "-10.5".parse().unwrap()),
            bill("b", "4.25".parse().unwrap()),
            bill("c", "-3".parse().unwrap()),
            bill("d", "0.0001".parse().unwrap()),
            bill("f", Decimal::ZERO),
        ],
        grid_leg: "2.5".parse().unwrap(),
        fees: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        metrics: CommunityMetrics::default(),
    };
    let rate =
        ExchangeRate::new(Decimal::from(60_000), "EUR".parse().unwrap(), "test", end).unwrap();
    let carried = BTreeMap::from([
        ("d".parse().unwrap(), bitcoin::SignedAmount::from_sat(40)),
        ("e".parse().unwrap(), bitcoin::SignedAmount::from_sat(-200)),
    ]);
    let mut s = settle(&bills, &reg, &rate, Network::Regtest, &a, &carried).unwrap();
    s.mark_paid(&"ab".repeat(32)).unwrap();
    s
}

#[test]
fn a_document_stored_before_amounts_were_typed_reads_verifies_and_writes_back_unchanged() {
    let s: Settlement = serde_json::from_str(STORED).unwrap();
    s.verify().unwrap();
    assert_eq!(s.id(), STORED_ID);
    assert_eq!(s.content_hash(), STORED_HASH);
    assert_eq!(serde_json::to_string(&s).unwrap(), STORED);
    let a = s.entry(&"a".parse().unwrap()).unwrap();
    assert_eq!(a.bill_sats, bitcoin::SignedAmount::from_sat(-17_500));
    assert_eq!(s.payouts()[0].1, bitcoin::Amount::from_sat(17_500));
    assert_eq!(s.invoices()[0].sats, bitcoin::Amount::from_sat(7_084));
    // Settling the same inputs today gives the same document, byte for byte.
    let again = settled();
    assert_eq!(again, s);
    assert_eq!(serde_json::to_string(&again).unwrap(), STORED);
}
