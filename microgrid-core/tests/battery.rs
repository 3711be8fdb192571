//! Property tests of the community battery: per timeframe the energy
//! balances with the battery counted and the battery moves exactly its
//! charge out of the export and its discharge out of the import; over a
//! period the state of charge changes by Σ stored − Σ discharged, the
//! charge splits into stored and lost energy, the state of charge stays in
//! `[0, capacity]` and the power limits hold; money is conserved with the
//! battery's bill included; the period's metrics keep the battery apart
//! (the members' self-sufficiency is the one computed without it); and the
//! row and columnar clearing paths agree.

use chrono::{TimeZone, Utc};
use microgrid_core::battery::{clear_range_with_battery, dispatch_rows};
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

/// A battery: capacity, power limits (W), efficiency (η = 1, round
/// values, or any with 6 decimals), starting state of charge.
fn battery() -> impl Strategy<Value = BatterySpec> {
    let eta = prop_oneof![
        Just(Decimal::ONE),
        Just(Decimal::new(9, 1)),
        Just(Decimal::new(85, 2)),
        (1i64..=1_000_000).prop_map(|n| Decimal::new(n, 6)),
    ];
    (1i64..60_000, 0i64..30_000, 0i64..30_000, eta)
        .prop_flat_map(|(cap, c, d, eta)| (Just((cap, c, d, eta)), 0..=cap))
        .prop_map(|((cap, c, d, eta), soc)| {
            BatterySpec::new("battery", cap, c, d, eta, soc).unwrap()
        })
}

/// Per timeframe, per member: (produced, consumed) Wh, or no reading.
type Rows = Vec<Vec<Option<(i64, i64)>>>;

/// 1 to 48 timeframes, 1 to 12 members; a member has no reading one time
/// in five.
fn community() -> impl Strategy<Value = (usize, Rows)> {
    (1usize..49, 1usize..13).prop_flat_map(|(timeframes, members)| {
        let value = prop_oneof![Just(0i64), 0i64..3_000, 0i64..40_000];
        (
            Just(members),
            prop::collection::vec(
                prop::collection::vec(prop::option::weighted(0.8, (value.clone(), value)), members),
                timeframes,
            ),
        )
    })
}

fn day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
}

struct Setup {
    registry: Registry,
    period: TimeRange,
    readings: Vec<Reading>,
}

fn setup(members: usize, rows: &Rows, spec: &BatterySpec) -> Setup {
    let mut registry = Registry::default();
    registry
        .register_all((0..members).map(|i| {
            Prosumer::new(format!("m{i:02}"), "m", ProsumerKind::Household, day()).unwrap()
        }))
        .unwrap();
    registry
        .register(spec.prosumer("Community battery", day()).unwrap())
        .unwrap();
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
    let period = TimeRange::new(
        start,
        start + chrono::Duration::minutes(15 * rows.len() as i64),
        TimeframeLength::default(),
    )
    .unwrap();
    let readings = rows
        .iter()
        .zip(period.timeframes())
        .flat_map(|(row, tf)| {
            row.iter().enumerate().filter_map(move |(i, r)| {
                r.map(|(p, c)| {
                    Reading::new(
                        format!("m{i:02}").parse().unwrap(),
                        tf,
                        Wh::new(p),
                        Wh::new(c),
                    )
                    .unwrap()
                })
            })
        })
        .collect();
    Setup {
        registry,
        period,
        readings,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn the_battery_conserves_energy_and_money_and_both_paths_agree(
        (members, rows) in community(),
        spec in battery(),
        m in mechanism(),
        (r, e, fee, network, fixed) in (0i64..5_000, 0i64..5_000, 0i64..1_000, 0i64..500, 0i64..100_000),
    ) {
        let (r, e) = (r.max(e), r.min(e));
        let tariff = Tariff::new("EUR".parse().unwrap(), GridPrices::new(price(r), price(e)).unwrap())
            .with_grid_fee(price(fee))
            .with_network_charge(price(network))
            .with_fixed_fee(Decimal::new(fixed, 2)).unwrap();
        let s = setup(members, &rows, &spec);
        let length = s.period.length();
        let (with, steps) = clear_range_with_battery(
            &s.period, &s.readings, &tariff, &m, &spec, spec.initial_soc(),
        ).unwrap();
        let without = clear_range(&s.period, &s.readings, &tariff, &m).unwrap();
        prop_assert_eq!(steps.len(), s.period.len());

        // The state of charge chains from the initial one and stays in bounds.
        let mut soc = spec.initial_soc();
        for step in &steps {
            prop_assert_eq!(step.soc_start, soc);
            prop_assert!(Wh::ZERO <= step.soc_end && step.soc_end <= spec.capacity());
            prop_assert!(step.charged <= spec.charge_limit(length));
            prop_assert!(step.discharged <= spec.discharge_limit(length));
            prop_assert!(step.charged.get() == 0 || step.discharged.get() == 0);
            prop_assert_eq!(step.charged.get(), step.stored.get() + step.loss.get());
            // stored = ⌊charged · η⌋, in exact decimals.
            let exact = Decimal::from(step.charged.get()) * spec.round_trip_efficiency();
            prop_assert_eq!(Decimal::from(step.stored.get()), exact.floor());
            prop_assert_eq!(step.soc_end.get(), step.soc_start.get() + step.stored.get() - step.discharged.get());
            soc = step.soc_end;
        }
        let t = BatteryTotals::of(&steps);
        prop_assert_eq!(t.soc_end.get() - t.soc_start.get(), t.stored.get() - t.discharged.get());
        prop_assert_eq!(t.charged.get(), t.stored.get() + t.loss.get());

        for ((c, plain), step) in with.iter().zip(&without).zip(&steps) {
            let (sw, s0) = (&c.summary, &plain.summary);
            // The balance, battery counted: its discharge is production, its charge consumption.
            prop_assert_eq!(sw.production.get() + sw.import.get(), sw.consumption.get() + sw.export.get());
            prop_assert_eq!(sw.production.get(), s0.production.get() + step.discharged.get());
            prop_assert_eq!(sw.consumption.get(), s0.consumption.get() + step.charged.get());
            // It charges from what would be exported, discharges into what would be imported.
            prop_assert_eq!(sw.export.get(), s0.export.get() - step.charged.get());
            prop_assert_eq!(sw.import.get(), s0.import.get() - step.discharged.get());
            // As much as the rule allows: more charge would break a limit,
            // the surplus or the capacity; more discharge likewise.
            let surplus = s0.export.get();
            let deficit = s0.import.get();
            if step.charged.get() < surplus.min(spec.charge_limit(length).get()) {
                prop_assert!(step.soc_start.get() + spec.stored(Wh::new(step.charged.get() + 1)).get() > spec.capacity().get());
            }
            if step.discharged.get() < deficit.min(spec.discharge_limit(length).get()) {
                prop_assert_eq!(step.discharged, step.soc_start);
            }
            // The battery trades only inside the community.
            let a = c.allocations.iter().find(|a| &a.prosumer == spec.id()).unwrap();
            prop_assert_eq!((a.imported, a.exported), (Wh::ZERO, Wh::ZERO));
            prop_assert_eq!((a.bought, a.sold), (step.charged, step.discharged));
        }

        // Money: conserved per period with the battery's bill among the bills.
        let bills = bill_period(&s.period, &tariff, &s.registry, &with).unwrap();
        let bill = bills.bill(spec.id()).unwrap();
        prop_assert_eq!((bill.energy.produced, bill.energy.consumed), (t.discharged, t.charged));
        prop_assert_eq!(bills.total(), bills.grid_leg + bills.fees + bills.operator_margin);
        let grid: Decimal = with.iter().map(|c| c.summary.grid_amount()).sum();
        prop_assert_eq!(bills.grid_leg, grid);

        // The metrics keep the battery apart: the members' consumption and
        // production are those of the community cleared without it, and the
        // ratios are computed from them, independently here.
        let mm = &bills.metrics;
        prop_assert_eq!((mm.battery_charged, mm.battery_discharged), (t.charged, t.discharged));
        let plain = CommunityMetrics::from_summaries(without.iter().map(|c| &c.summary)).unwrap();
        prop_assert_eq!(mm.members_consumption(), plain.consumption);
        prop_assert_eq!(mm.members_production(), plain.production);
        prop_assert_eq!(
            mm.members_production().get() + mm.import.get() + mm.battery_discharged.get(),
            mm.members_consumption().get() + mm.export.get() + mm.battery_charged.get()
        );
        let consumed = plain.consumption.get();
        let expected = (consumed != 0)
            .then(|| Decimal::from(consumed - mm.import.get()) / Decimal::from(consumed));
        prop_assert_eq!(mm.self_sufficiency(), expected);
        let produced = plain.production.get();
        let expected = (produced != 0)
            .then(|| Decimal::from(produced - mm.export.get()) / Decimal::from(produced));
        prop_assert_eq!(mm.self_consumption(), expected);
        // Without the battery the metrics are the plain ones.
        let plain_bills = bill_period(&s.period, &tariff, &s.registry, &without).unwrap();
        prop_assert_eq!(plain_bills.metrics, plain);

        // The columnar path: the battery's column written by dispatch_rows,
        // then the parallel row kernel; the same clearings and steps.
        let b = s.registry.index_of(spec.id()).unwrap().get();
        let mut dense: Vec<(Timeframe, batch::ReadingRow)> = s
            .period
            .timeframes()
            .map(|tf| (tf, batch::ReadingRow::with_width(s.registry.len())))
            .collect();
        for rd in &s.readings {
            let k = ((rd.timeframe().start() - s.period.start()).num_minutes() / 15) as usize;
            let i = s.registry.index_of(rd.prosumer()).unwrap().get();
            dense[k].1.set(i, rd.produced(), rd.consumed());
        }
        let column_steps = dispatch_rows(&spec, &mut dense, b, spec.initial_soc(), |_| true).unwrap();
        prop_assert_eq!(&column_steps, &steps);
        let pairs: Vec<(Timeframe, &batch::ReadingRow)> = dense.iter().map(|(tf, r)| (*tf, r)).collect();
        let cleared = clear_reading_rows(&pairs, &s.registry.id_order(), &tariff, &m, 2).unwrap();
        for ((c, row), (_, readings)) in with.iter().zip(&cleared).zip(&dense) {
            prop_assert_eq!(&row.to_clearing(readings, &s.registry), c);
        }

        // The history replays from the battery's readings alone.
        let mut soc = spec.initial_soc();
        for step in &steps {
            let replayed = spec.replay(step.timeframe, soc, step.charged, step.discharged).unwrap();
            prop_assert_eq!(&replayed, step);
            soc = replayed.soc_end;
        }
    }
}

#[test]
fn a_full_battery_does_not_charge_and_an_empty_one_does_not_discharge() {
    let spec = BatterySpec::new("battery", 5_000, 10_000, 10_000, Decimal::ONE, 5_000).unwrap();
    let tf = Timeframe::new(
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        TimeframeLength::default(),
    )
    .unwrap();
    let full = spec.step(tf, Wh::new(5_000), 1_000).unwrap();
    assert_eq!((full.charged, full.soc_end), (Wh::ZERO, Wh::new(5_000)));
    let empty = spec.step(tf, Wh::ZERO, -1_000).unwrap();
    assert_eq!((empty.discharged, empty.soc_end), (Wh::ZERO, Wh::ZERO));
    // Its readings are computed, never given.
    let own = Reading::new(spec.id().clone(), tf, Wh::new(1), Wh::ZERO).unwrap();
    let range = TimeRange::new(tf.start(), tf.end(), tf.length()).unwrap();
    let grid = GridPrices::new(price(3_000), price(800)).unwrap();
    assert!(matches!(
        clear_range_with_battery(
            &range,
            &[own],
            &grid,
            &Mechanism::SupplyDemandRatio,
            &spec,
            Wh::ZERO
        ),
        Err(Error::BatteryHistory { .. })
    ));
}
