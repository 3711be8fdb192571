//! Property tests of billing: money is conserved per period for every
//! mechanism.

use chrono::{TimeZone, Utc};
use microgrid_core::billing::bill_period;
use microgrid_core::tariff::Tariff;
use microgrid_core::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

fn price(units: i64) -> Price {
    Price::new(Decimal::new(units, 4)).unwrap()
}

fn mechanism() -> impl Strategy<Value = Mechanism> {
    prop_oneof![
        (0i64..5_000).prop_map(|p| Mechanism::Fixed(price(p))),
        Just(Mechanism::MidMarketRate),
        Just(Mechanism::SupplyDemandRatio),
        Just(Mechanism::BillSharing),
    ]
}

/// Per timeframe, per member: (produced, consumed) Wh, or no reading.
type Rows = Vec<Vec<Option<(i64, i64)>>>;

/// A period of 1 to 6 timeframes, up to 12 members, and their readings
/// (produced, consumed); a member has no reading in a timeframe one time in
/// five, so timeframes list different members.
fn period_readings() -> impl Strategy<Value = (usize, Rows)> {
    (1usize..7, 1usize..13).prop_flat_map(|(timeframes, members)| {
        let value = prop_oneof![Just(0i64), 0i64..3_000, 0i64..200_000];
        (
            Just(members),
            prop::collection::vec(
                prop::collection::vec(prop::option::weighted(0.8, (value.clone(), value)), members),
                timeframes,
            ),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    // Σ bill totals = grid leg + fees + operator margin, exactly, and each bill's lines add up to its total.
    #[test]
    fn money_is_conserved_per_period(
        (members, rows) in period_readings(),
        m in mechanism(),
        (r, e) in (0i64..5_000, 0i64..5_000),
        (fee, margin, fixed) in (0i64..1_000, 0i64..500, 0i64..100_000),
    ) {
        let (r, e) = (r.max(e), r.min(e));
        let grid = GridPrices::new(price(r), price(e)).unwrap();
        let tariff = Tariff::new("EUR".parse().unwrap(), grid)
            .with_grid_fee(price(fee))
            .with_operator_margin(price(margin))
            .with_fixed_fee(Decimal::new(fixed, 2)).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let period = TimeRange::new(start, start + chrono::Duration::minutes(15 * rows.len() as i64), TimeframeLength::default()).unwrap();
        let readings: Vec<Reading> = rows.iter().zip(period.timeframes()).flat_map(|(row, tf)| {
            row.iter().enumerate().filter_map(move |(i, r)| {
                r.map(|(p, c)| Reading::new(format!("m{i:02}").parse().unwrap(), tf, Wh::new(p), Wh::new(c)).unwrap())
            })
        }).collect();
        let cleared = clear_range(&period, &readings, &tariff, &m).unwrap();
        let bills = bill_period(&period, &tariff, &cleared).unwrap();
        // One bill per member with a reading, with exactly its readings' energy.
        let with_readings = (0..members).filter(|&i| rows.iter().any(|row| row[i].is_some())).count();
        prop_assert_eq!(bills.bills.len(), with_readings);
        for b in &bills.bills {
            let i: usize = b.prosumer.as_str()[1..].parse().unwrap();
            let (p, c) = rows.iter().filter_map(|row| row[i]).fold((0, 0), |(p, c), (dp, dc)| (p + dp, c + dc));
            prop_assert_eq!((b.energy.produced.get(), b.energy.consumed.get()), (p, c));
            // Priced per timeframe, the energy lines are the clearing's amounts summed.
            let amounts: Option<Decimal> = cleared
                .iter()
                .flat_map(|c| &c.allocations)
                .filter(|a| a.prosumer == b.prosumer)
                .map(|a| a.amount())
                .sum();
            if let Some(amount) = amounts {
                prop_assert_eq!(b.purchases - b.sales + b.imports - b.exports, amount);
            }
        }
        prop_assert_eq!(bills.total(), bills.grid_leg + bills.fees + bills.operator_margin);
        let grid_from_timeframes: Decimal = cleared.iter().map(|c| c.summary.grid_amount()).sum();
        prop_assert_eq!(bills.grid_leg, grid_from_timeframes);
        for b in &bills.bills {
            prop_assert_eq!(b.total, b.purchases - b.sales + b.imports - b.exports + b.grid_fee + b.fixed_fee + b.operator_margin);
            prop_assert_eq!(b.saving, b.baseline - b.total);
            prop_assert_eq!(b.energy.produced.get() - b.energy.consumed.get(), b.energy.surplus.get() - b.energy.deficit.get());
        }
        // Sharing never makes the community as a whole pay more than without it (margin aside).
        let baseline: Decimal = bills.bills.iter().map(|b| b.baseline).sum();
        prop_assert!(bills.total() - bills.operator_margin <= baseline);
    }
}
