//! Property test of the columnar path: readings in as columns, stored as
//! dense rows by prosumer index, cleared row by row and billed from the
//! rows, give exactly what the per-timeframe path gives (`clear_range` +
//! `bill_period`), to the last Wh and the last decimal.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use microgrid_core::batch::{ingest_rows, ReadingColumns, ReadingRow};
use microgrid_core::billing::{bill_period, bill_rows};
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

/// A member: a name key (so ids sort differently from registration
/// order), the day it joins (0 or 1), the day it leaves (2, 3 or never),
/// and whether it is registered only after the first batch is stored.
type Member = (u16, u32, Option<u32>, bool);

fn member() -> impl Strategy<Value = Member> {
    (
        any::<u16>(),
        0u32..2,
        prop::option::of(2u32..4),
        prop::bool::weighted(0.3),
    )
}

/// Per timeframe and member: a reading (produced, consumed) or none.
type Cells = Vec<Vec<Option<(i64, i64)>>>;

fn community() -> impl Strategy<Value = (Vec<Member>, Cells)> {
    // Four 6-hour timeframes a day, three days.
    (prop::collection::vec(member(), 1..10)).prop_flat_map(|members| {
        let n = members.len();
        let value = prop_oneof![Just(0i64), 0i64..3_000, 0i64..2_000_000];
        (
            Just(members),
            prop::collection::vec(
                prop::collection::vec(prop::option::weighted(0.75, (value.clone(), value)), n),
                12,
            ),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_500))]

    // Columnar ingest + clear_reading_rows + bill_rows (and the column views) equal clear_range + bill_period exactly.
    #[test]
    fn the_columnar_month_equals_the_per_timeframe_path(
        (members, cells) in community(),
        m in mechanism(),
        (r, e) in (0i64..5_000, 0i64..5_000),
        (fee, margin, fixed) in (0i64..1_000, 0i64..500, 0i64..100_000),
        threads in 1usize..4,
    ) {
        let length = TimeframeLength::new(360).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let period = TimeRange::new(start, start + Duration::days(3), length).unwrap();
        let timeframes: Vec<Timeframe> = period.timeframes().collect();
        let day0 = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let prosumer = |k: usize| {
            let (key, joined, left, _) = members[k];
            let p = Prosumer::new(format!("p{key:05}-{k}"), "x", ProsumerKind::Household, day0 + chrono::Days::new(joined.into())).unwrap();
            match left {
                Some(d) => p.with_left(day0 + chrono::Days::new(d.into())).unwrap(),
                None => p,
            }
        };
        // Only readings of active members can be recorded.
        let reading = |t: usize, k: usize| -> Option<Reading> {
            let (p, c) = cells[t][k]?;
            let who = prosumer(k);
            who.is_active_in(&timeframes[t]).then(|| Reading::new(who.id().clone(), timeframes[t], Wh::new(p), Wh::new(c)).unwrap())
        };

        // Per-timeframe path.
        let all: Vec<Reading> = (0..12).flat_map(|t| (0..members.len()).filter_map(move |k| reading(t, k))).collect();
        let grid = GridPrices::new(price(r.max(e)), price(r.min(e))).unwrap();
        let tariff = Tariff::new("EUR".parse().unwrap(), grid)
            .with_grid_fee(price(fee))
            .with_operator_margin(price(margin))
            .with_network_charge(price(margin / 2))
            .with_fixed_fee(Decimal::new(fixed, 2)).unwrap();
        let expected = clear_range(&period, &all, &tariff, &m).unwrap();
        let mut everyone = Registry::default();
        everyone.register_all((0..members.len()).map(prosumer)).unwrap();
        let expected_bills = bill_period(&period, &tariff, &everyone, &expected).unwrap();

        // Columnar path: early members first, then a batch, then the late
        // members and the rest of the readings.
        let mut registry = Registry::default();
        let (early, late): (Vec<usize>, Vec<usize>) = (0..members.len()).partition(|&k| !members[k].3);
        registry.register_all(early.iter().map(|&k| prosumer(k))).unwrap();
        let mut rows = vec![ReadingRow::default(); 12];
        let batch = |ks: &[usize], registry: &Registry, rows: &mut [ReadingRow]| {
            let mut cols = ReadingColumns::default();
            for t in 0..12 {
                for &k in ks {
                    if let Some(r) = reading(t, k) {
                        cols.push(r.timeframe().start().timestamp(), registry.index_of(r.prosumer()).unwrap().as_u32(), r.produced().get(), r.consumed().get());
                    }
                }
            }
            let valid = cols.validate(registry, length, ReadingLimits::default()).unwrap();
            if let Some(span) = valid.try_span() {
                let first = (span.start() - start).num_seconds() as usize / 21_600;
                ingest_rows(&valid, registry, &mut rows[first..first + span.len()], |_| false).unwrap();
            }
        };
        batch(&early, &registry, &mut rows);
        registry.register_all(late.iter().map(|&k| prosumer(k))).unwrap();
        batch(&late, &registry, &mut rows);

        let input: Vec<(Timeframe, &ReadingRow)> = timeframes.iter().copied().zip(rows.iter()).collect();
        let cleared = clear_reading_rows(&input, &registry.id_order(), &tariff, &m, threads).unwrap();
        for (t, c) in cleared.iter().enumerate() {
            prop_assert_eq!(&c.to_clearing(&rows[t], &registry), &expected[t]);
        }
        let pairs: Vec<(&ReadingRow, &ClearedRow)> = rows.iter().zip(cleared.iter()).collect();
        let bills = bill_rows(&period, &tariff, &registry, &pairs, threads).unwrap();
        prop_assert_eq!(&bills, &expected_bills);
        // Chunk by chunk gives the same bills.
        let mut chunked = billing::RowBilling::new(&period, &tariff, &registry, threads).unwrap();
        for chunk in pairs.chunks(threads + 2) {
            chunked.add(chunk).unwrap();
        }
        prop_assert_eq!(chunked.finish().unwrap(), expected_bills);

        // The views as columns hold the same allocations and trades.
        let id = |i: u32| registry.at(i as usize).unwrap().id().clone();
        let nanos = |x: i128| Decimal::from_i128_with_scale(x, 9);
        let a = views::AllocationColumns::from_rows(&pairs, &registry, None);
        let flat: Vec<&Allocation> = expected.iter().flat_map(|c| &c.allocations).collect();
        prop_assert_eq!(a.len(), flat.len());
        for (k, x) in flat.iter().enumerate() {
            prop_assert_eq!(&id(a.prosumer[k]), &x.prosumer);
            prop_assert_eq!(a.start[k], x.timeframe.start().timestamp());
            prop_assert_eq!((a.sold_wh[k], a.bought_wh[k], a.exported_wh[k], a.imported_wh[k]), (x.sold.get(), x.bought.get(), x.exported.get(), x.imported.get()));
            prop_assert_eq!(a.community_amount[k].map(nanos), x.community_amount);
            prop_assert_eq!(nanos(a.grid_amount[k]), x.grid_amount);
        }
        let t = views::TradeColumns::from_rows(&pairs, &registry, None);
        let trades: Vec<Trade> = expected.iter().flat_map(|c| c.trades()).collect();
        prop_assert_eq!(t.len(), trades.len());
        for (k, x) in trades.iter().enumerate() {
            prop_assert_eq!((id(t.seller[k]), id(t.buyer[k]), t.energy_wh[k]), (x.seller.clone(), x.buyer.clone(), x.energy.get()));
        }
        let s = views::SummaryColumns::from_rows(&pairs).unwrap();
        prop_assert_eq!(s.shared_wh, expected.iter().map(|c| c.summary.shared.get()).collect::<Vec<_>>());
    }
}

#[test]
fn bill_rows_refuses_a_period_with_a_missing_timeframe() {
    let length = TimeframeLength::default();
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let period = TimeRange::new(start, start + Duration::minutes(30), length).unwrap();
    let tariff = Tariff::new(
        "EUR".parse().unwrap(),
        GridPrices::new(price(3_000), price(1_000)).unwrap(),
    );
    let registry = Registry::default();
    let row = ReadingRow::default();
    let first = Timeframe::new(start, length).unwrap();
    let cleared =
        clear_reading_rows(&[(first, &row)], &[], &tariff, &Mechanism::MidMarketRate, 1).unwrap();
    assert_eq!(
        bill_rows(&period, &tariff, &registry, &[(&row, &cleared[0])], 1),
        Err(Error::PeriodNotCleared {
            start: first.next().start()
        })
    );
}
