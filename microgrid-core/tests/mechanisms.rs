//! Hand-computed examples for each pricing mechanism, including the edge
//! cases S < D, S > D, S = D, S = 0 and D = 0.
//!
//! Throughout: r = 0.30 and e = 0.10 per kWh; amounts are what each
//! prosumer pays (negative: receives) in the timeframe.

use chrono::{TimeZone, Utc};
use microgrid_core::pricing::bill_sharing::BillSharingPeriod;
use microgrid_core::*;
use rust_decimal::Decimal;

fn tf() -> Timeframe {
    Timeframe::new(
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        TimeframeLength::default(),
    )
    .unwrap()
}

fn grid() -> GridPrices {
    GridPrices::new("0.30".parse().unwrap(), "0.10".parse().unwrap()).unwrap()
}

/// Clears prosumers a, b, c with the given net positions in Wh and returns
/// the summary and each one's amount.
fn clear(nets: [i64; 3], m: Mechanism) -> (TimeframeSummary, Vec<Decimal>) {
    let readings: Vec<Reading> = ["a", "b", "c"]
        .iter()
        .zip(nets)
        .map(|(id, net)| {
            Reading::new(
                id.parse().unwrap(),
                tf(),
                Wh::new(net.max(0)),
                Wh::new((-net).max(0)),
            )
            .unwrap()
        })
        .collect();
    let c = clear_timeframe(tf(), &readings, grid(), &m).unwrap();
    let amounts = c
        .allocations
        .iter()
        .map(|a| a.amount().unwrap_or_default())
        .collect();
    (c.summary, amounts)
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn price(s: &str) -> Option<Price> {
    Some(s.parse().unwrap())
}

#[test]
fn fixed_price_short_supply() {
    // S = 1 kWh, D = 2 kWh at p = 0.20: a gets 0.20; b buys 0.75 kWh at 0.20 and imports 0.75 at 0.30.
    let (s, amounts) = clear(
        [1000, -1500, -500],
        Mechanism::Fixed("0.20".parse().unwrap()),
    );
    assert_eq!(amounts, [d("-0.20"), d("0.375"), d("0.125")]);
    assert_eq!(s.grid_amount(), d("0.30"));
    assert_eq!(s.buy_price(), price("0.25"));
}

#[test]
fn mmr_short_supply_buyers_absorb_the_import() {
    // mid = 0.20; same split as the fixed price of 0.20.
    let (s, amounts) = clear([1000, -1500, -500], Mechanism::MidMarketRate);
    assert_eq!(amounts, [d("-0.20"), d("0.375"), d("0.125")]);
    assert_eq!(
        (s.sell_price(), s.buy_price()),
        (price("0.20"), price("0.25"))
    );
}

#[test]
fn mmr_long_supply_sellers_absorb_the_export() {
    // S = 3 kWh, D = 2 kWh: buyers pay mid; a sells 2 kWh at 0.20 and exports 1 kWh at 0.10.
    let (s, amounts) = clear([3000, -1000, -1000], Mechanism::MidMarketRate);
    assert_eq!(amounts, [d("-0.50"), d("0.20"), d("0.20")]);
    assert_eq!(s.grid_amount(), d("-0.10"));
    assert_eq!(
        (s.sell_price(), s.buy_price()),
        (price("0.166667"), price("0.20"))
    );
}

#[test]
fn mmr_balanced_market_trades_everything_at_mid() {
    let (s, amounts) = clear([2000, -1500, -500], Mechanism::MidMarketRate);
    assert_eq!(amounts, [d("-0.40"), d("0.30"), d("0.10")]);
    assert_eq!((s.import, s.export), (Wh::ZERO, Wh::ZERO));
}

#[test]
fn sdr_short_supply_follows_liu_et_al() {
    // SDR = 0.5: sell = 0.03 / (0.2·0.5 + 0.1) = 0.15; buy = 0.15·0.5 + 0.30·0.5 = 0.225.
    let (s, amounts) = clear([1000, -1500, -500], Mechanism::SupplyDemandRatio);
    assert_eq!(amounts, [d("-0.15"), d("0.3375"), d("0.1125")]);
    assert_eq!(
        (s.sell_price(), s.buy_price()),
        (price("0.15"), price("0.225"))
    );
}

#[test]
fn sdr_long_supply_prices_everything_at_the_export_price() {
    let (s, amounts) = clear([3000, -1000, -1000], Mechanism::SupplyDemandRatio);
    assert_eq!(amounts, [d("-0.30"), d("0.10"), d("0.10")]);
    assert_eq!(
        (s.sell_price(), s.buy_price()),
        (price("0.10"), price("0.10"))
    );
}

#[test]
fn sdr_balanced_market_prices_at_the_export_price() {
    // SDR = 1: sell = e·r / ((r − e) + e) = e, buy = e.
    let (s, amounts) = clear([2000, -1500, -500], Mechanism::SupplyDemandRatio);
    assert_eq!(amounts, [d("-0.20"), d("0.15"), d("0.05")]);
    assert_eq!(
        (s.sell_price(), s.buy_price()),
        (price("0.10"), price("0.10"))
    );
}

#[test]
fn no_supply_means_everyone_imports_at_r() {
    for m in [
        Mechanism::MidMarketRate,
        Mechanism::SupplyDemandRatio,
        Mechanism::Fixed("0.2".parse().unwrap()),
    ] {
        let (s, amounts) = clear([0, -1500, -500], m);
        assert_eq!(amounts, [d("0"), d("0.45"), d("0.15")], "{m}");
        assert_eq!((s.shared, s.import), (Wh::ZERO, Wh::new(2000)));
        assert_eq!(s.buy_price(), price("0.30"), "{m}");
    }
    let (s, _) = clear([0, -1500, -500], Mechanism::SupplyDemandRatio);
    assert_eq!(
        s.sell_price(),
        price("0.30"),
        "SDR with no supply: both prices are r"
    );
}

#[test]
fn no_demand_means_everyone_exports_at_e() {
    for m in [
        Mechanism::MidMarketRate,
        Mechanism::SupplyDemandRatio,
        Mechanism::Fixed("0.2".parse().unwrap()),
    ] {
        let (s, amounts) = clear([1000, 500, 0], m);
        assert_eq!(amounts, [d("-0.10"), d("-0.05"), d("0")], "{m}");
        assert_eq!(s.sell_price(), price("0.10"), "{m}");
    }
}

#[test]
fn bill_sharing_splits_the_grid_bill_by_deficit_and_surplus() {
    // Per timeframe nothing is priced yet.
    let (s, amounts) = clear([1000, -1500, -500], Mechanism::BillSharing);
    assert_eq!(s.buy_price(), None);
    assert_eq!(amounts, [Decimal::ZERO; 3]);
    // Over the period (this one timeframe): C = 0.30 for 1 kWh imported, R = 0.
    let bill = BillSharingPeriod::from_summaries([&s]);
    assert_eq!((bill.import_cost, bill.export_revenue), (d("0.30"), d("0")));
    assert_eq!(
        bill.buyer_amounts(&[0, 1500, 500]).unwrap(),
        [d("0"), d("0.225"), d("0.075")]
    );
    assert_eq!(
        bill.seller_amounts(&[1000, 0, 0]).unwrap(),
        [d("0"), d("0"), d("0")]
    );
    assert_eq!(bill.buy_price(2000), price("0.15"));
}

#[test]
fn bill_sharing_with_surplus_pays_sellers_the_export_revenue() {
    // S = 3 kWh, D = 2 kWh: nothing imported, 1 kWh exported for 0.10.
    let (s, _) = clear([3000, -1000, -1000], Mechanism::BillSharing);
    let bill = BillSharingPeriod::from_summaries([&s]);
    assert_eq!((bill.import_cost, bill.export_revenue), (d("0"), d("0.10")));
    assert_eq!(
        bill.seller_amounts(&[3000, 0, 0]).unwrap(),
        [d("0.10"), d("0"), d("0")]
    );
}
