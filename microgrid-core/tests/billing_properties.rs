//! Property tests of billing: money is conserved per period for every
//! mechanism (network charges and prorated fixed fees included), fixed fees
//! are prorated by registration and add up exactly over a month however it
//! is split, and local time-of-use windows hold the same number of
//! timeframes on 23-, 24- and 25-hour days.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use microgrid_core::billing::bill_period;
use microgrid_core::tariff::{time_zone, Tariff, TimeOfUse, Tz};
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

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Member `i` of the conservation test: most joined in January and stay;
/// every third joins on 1 June, every fifth leaves on 1 June (the periods
/// start at 31 May 23:30 UTC, so those are registered for part of them).
fn member(i: usize) -> Prosumer {
    let joined = if i % 3 == 1 {
        date(2026, 6, 1)
    } else {
        date(2026, 1, 1)
    };
    let p = Prosumer::new(format!("m{i:02}"), "m", ProsumerKind::Household, joined).unwrap();
    if i % 5 == 4 {
        p.with_left(date(2026, 6, 1)).unwrap()
    } else {
        p
    }
}

/// `fee · seconds of [a, b) / seconds of its month`, summed over the UTC
/// months `[a, b)` touches: the exact share the floored fee approximates.
fn exact_share(fee: Decimal, a: DateTime<Utc>, b: DateTime<Utc>) -> Decimal {
    let mut sum = Decimal::ZERO;
    let mut t = a;
    while t < b {
        let first = date(t.year(), t.month(), 1);
        let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
        let (from, until) = (midnight(first), midnight(next));
        let end = b.min(until);
        sum += fee * Decimal::from((end - t).num_seconds())
            / Decimal::from((until - from).num_seconds());
        t = end;
    }
    sum
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    // Σ bill totals = grid leg + fees + operator margin, exactly, with the
    // fees = grid fees on imports + network charges on shared energy + the
    // members' prorated fixed fees; each bill's lines add up to its total.
    #[test]
    fn money_is_conserved_per_period(
        (members, rows) in period_readings(),
        m in mechanism(),
        (r, e) in (0i64..5_000, 0i64..5_000),
        (fee, margin, network, fixed) in (0i64..1_000, 0i64..500, 0i64..500, 0i64..100_000),
    ) {
        let (r, e) = (r.max(e), r.min(e));
        let grid = GridPrices::new(price(r), price(e)).unwrap();
        let tariff = Tariff::new("EUR".parse().unwrap(), grid)
            .with_grid_fee(price(fee))
            .with_network_charge(price(network))
            .with_operator_margin(price(margin))
            .with_fixed_fee(Decimal::new(fixed, 2)).unwrap();
        let mut registry = Registry::default();
        registry.register_all((0..members).map(member)).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 5, 31, 23, 30, 0).unwrap();
        let period = TimeRange::new(start, start + chrono::Duration::minutes(15 * rows.len() as i64), TimeframeLength::default()).unwrap();
        // Only registered members have readings.
        let active = |i: usize, tf: &Timeframe| member(i).is_active_in(tf);
        let readings: Vec<Reading> = rows.iter().zip(period.timeframes()).flat_map(|(row, tf)| {
            row.iter().enumerate().filter_map(move |(i, r)| {
                r.filter(|_| active(i, &tf))
                    .map(|(p, c)| Reading::new(format!("m{i:02}").parse().unwrap(), tf, Wh::new(p), Wh::new(c)).unwrap())
            })
        }).collect();
        let cleared = clear_range(&period, &readings, &tariff, &m).unwrap();
        let bills = bill_period(&period, &tariff, &registry, &cleared).unwrap();
        // One bill per member with a reading, with exactly its readings' energy.
        let mut with_readings: Vec<String> = readings.iter().map(|r| r.prosumer().to_string()).collect();
        with_readings.sort();
        with_readings.dedup();
        prop_assert_eq!(bills.bills.iter().map(|b| b.prosumer.to_string()).collect::<Vec<_>>(), with_readings);
        for b in &bills.bills {
            let mine = readings.iter().filter(|r| r.prosumer() == &b.prosumer);
            let (p, c) = mine.fold((0, 0), |(p, c), r| (p + r.produced().get(), c + r.consumed().get()));
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
            // The network charge is on the energy bought in the community.
            prop_assert_eq!(b.network_charge, price(network).amount_for(b.energy.bought));
            // The fixed fee is the registered share of the month(s), to 1e-9 per month.
            let who = member(b.prosumer.as_str()[1..].parse().unwrap());
            let from = period.start().max(midnight(who.joined()));
            let until = who.left().map_or(period.end(), |l| period.end().min(midnight(l)));
            let exact = if from < until { exact_share(Decimal::new(fixed, 2), from, until) } else { Decimal::ZERO };
            prop_assert!((b.fixed_fee - exact).abs() < Decimal::new(2, 9), "{} vs {}", b.fixed_fee, exact);
            prop_assert!(b.fixed_fee.scale() <= 9);
        }
        prop_assert_eq!(bills.total(), bills.grid_leg + bills.fees + bills.operator_margin);
        let grid_from_timeframes: Decimal = cleared.iter().map(|c| c.summary.grid_amount()).sum();
        prop_assert_eq!(bills.grid_leg, grid_from_timeframes);
        // The fees, from the timeframes' imports and shared energy and the members' fixed fees.
        let per_kwh_fees: Decimal = cleared
            .iter()
            .map(|c| price(fee).amount_for(c.summary.import) + price(network).amount_for(c.summary.shared))
            .sum();
        let fixed_fees: Decimal = bills.bills.iter().map(|b| b.fixed_fee).sum();
        prop_assert_eq!(bills.fees, per_kwh_fees + fixed_fees);
        let network_charges: Decimal = bills.bills.iter().map(|b| b.network_charge).sum();
        let shared: i64 = cleared.iter().map(|c| c.summary.shared.get()).sum();
        prop_assert_eq!(network_charges, price(network).amount_for(Wh::new(shared)));
        for b in &bills.bills {
            prop_assert_eq!(b.total, b.purchases - b.sales + b.imports - b.exports + b.grid_fee + b.network_charge + b.fixed_fee + b.operator_margin);
            prop_assert_eq!(b.saving, b.baseline - b.total);
            prop_assert_eq!(b.energy.produced.get() - b.energy.consumed.get(), b.energy.surplus.get() - b.energy.deficit.get());
        }
        // Sharing never makes the community as a whole pay more than without
        // it, the operator margin and the network charge on shared energy
        // aside (the baseline shares nothing).
        let baseline: Decimal = bills.bills.iter().map(|b| b.baseline).sum();
        prop_assert!(bills.total() - bills.operator_margin - network_charges <= baseline);
    }
}

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Vienna",
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kathmandu",
];

/// Local midnight of `day` in `tz`, in UTC (none of [`ZONES`] skips it).
fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    tz.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn flat_tariff(tz: Tz, fee: Decimal) -> Tariff {
    let grid = GridPrices::new(price(3_000), price(800)).unwrap();
    Tariff::new("EUR".parse().unwrap(), grid)
        .with_fixed_fee(fee)
        .unwrap()
        .in_time_zone(tz)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    // A member registered for the whole of a local month pays the fee,
    // exactly; split into weeks (or any cut points on the quarter-hour
    // grid), the parts add up to the fee, exactly; a member who joins
    // mid-month pays the same however the rest of the month is split, and
    // that is its share of the month to 1e-9.
    #[test]
    fn monthly_fees_add_up_over_any_split_of_the_month(
        zone in 0usize..ZONES.len(),
        month in 0u32..(12 * 80),
        fee_nanos in 0i64..1_000_000_000_000_000,
        cuts in prop::collection::vec(0i64..(31 * 96), 0..8),
        joined_day in 1u32..29,
    ) {
        let tz = time_zone(ZONES[zone]).unwrap();
        let fee = Decimal::new(fee_nanos, 9);
        let tariff = flat_tariff(tz, fee);
        let first = date(2000 + (month / 12) as i32, month % 12 + 1, 1);
        let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
        let (from, until) = (local_midnight(tz, first), local_midnight(tz, next));
        prop_assert_eq!(tariff.fixed_fee_between(from, until).unwrap(), fee);
        // Weekly periods from the first of the month.
        let mut weeks = vec![from];
        while *weeks.last().unwrap() + Duration::days(7) < until {
            weeks.push(*weeks.last().unwrap() + Duration::days(7));
        }
        weeks.push(until);
        let weekly: Decimal = weeks.windows(2).map(|w| tariff.fixed_fee_between(w[0], w[1]).unwrap()).sum();
        prop_assert_eq!(weekly, fee);
        // Any cut points on the quarter-hour grid.
        let mut points: Vec<DateTime<Utc>> = cuts.iter().map(|&q| from + Duration::minutes(15 * q)).filter(|&t| t < until).collect();
        points.extend([from, until]);
        points.sort();
        let split: Decimal = points.windows(2).map(|w| tariff.fixed_fee_between(w[0], w[1]).unwrap()).sum();
        prop_assert_eq!(split, fee);
        // A member who joins mid-month (midnight UTC of `joined_day`).
        let joined = midnight(date(first.year(), first.month(), joined_day)).max(from);
        let rest = tariff.fixed_fee_between(joined, until).unwrap();
        let split_rest: Decimal = points.windows(2)
            .map(|w| tariff.fixed_fee_between(w[0].max(joined), w[1]).unwrap())
            .sum();
        prop_assert_eq!(split_rest, rest);
        let exact = fee * Decimal::from((until - joined).num_seconds()) / Decimal::from((until - from).num_seconds());
        prop_assert!((rest - exact).abs() < Decimal::new(1, 9), "{} vs {}", rest, exact);
    }
}

/// Bills June 2026 (daily timeframes, UTC) as one month and as weekly
/// periods: a member registered all month pays the fee, and its weekly fees
/// add up to it exactly; one who joins on the 28th pays 3/30 of it.
#[test]
fn weekly_bills_add_up_to_the_monthly_fee() {
    let daily = TimeframeLength::new(1440).unwrap();
    let fee: Decimal = "4.99".parse().unwrap();
    let tariff = flat_tariff(Tz::UTC, fee)
        .for_timeframes(daily)
        .unwrap()
        .with_network_charge(price(150));
    let mut registry = Registry::default();
    registry
        .register(
            Prosumer::new("all-month", "a", ProsumerKind::Household, date(2026, 1, 1)).unwrap(),
        )
        .unwrap();
    registry
        .register(Prosumer::new("late", "l", ProsumerKind::Household, date(2026, 6, 28)).unwrap())
        .unwrap();
    let june = TimeRange::new(
        midnight(date(2026, 6, 1)),
        midnight(date(2026, 7, 1)),
        daily,
    )
    .unwrap();
    let readings: Vec<Reading> = june
        .timeframes()
        .flat_map(|tf| {
            let mut rs = vec![Reading::new(
                "all-month".parse().unwrap(),
                tf,
                Wh::new(5_000),
                Wh::new(1_000),
            )
            .unwrap()];
            if tf.start() >= midnight(date(2026, 6, 28)) {
                rs.push(
                    Reading::new("late".parse().unwrap(), tf, Wh::new(0), Wh::new(2_000)).unwrap(),
                );
            }
            rs
        })
        .collect();
    let cleared = clear_range(&june, &readings, &tariff, &Mechanism::SupplyDemandRatio).unwrap();
    let month = bill_period(&june, &tariff, &registry, &cleared).unwrap();
    let all_month = "all-month".parse().unwrap();
    let late = "late".parse().unwrap();
    assert_eq!(month.bill(&all_month).unwrap().fixed_fee, fee);
    assert_eq!(
        month.bill(&late).unwrap().fixed_fee,
        "0.499".parse::<Decimal>().unwrap()
    );
    // 3 days × 2 kWh bought at 0.015.
    assert_eq!(
        month.bill(&late).unwrap().network_charge,
        "0.09".parse::<Decimal>().unwrap()
    );
    assert_eq!(
        month.total(),
        month.grid_leg + month.fees + month.operator_margin
    );

    let mut weekly = Decimal::ZERO;
    let mut late_weekly = Decimal::ZERO;
    let mut day = 1;
    while day < 31 {
        let end = (day + 7).min(31);
        let to = if end == 31 {
            date(2026, 7, 1)
        } else {
            date(2026, 6, end)
        };
        let week = TimeRange::new(midnight(date(2026, 6, day)), midnight(to), daily).unwrap();
        let bills = bill_period(&week, &tariff, &registry, &cleared).unwrap();
        assert_eq!(
            bills.total(),
            bills.grid_leg + bills.fees + bills.operator_margin
        );
        weekly += bills.bill(&all_month).unwrap().fixed_fee;
        late_weekly += bills.bill(&late).map_or(Decimal::ZERO, |b| b.fixed_fee);
        day = end;
    }
    assert_eq!(weekly, fee);
    assert_eq!(late_weekly, "0.499".parse::<Decimal>().unwrap());
}

/// The evening peak 17:00–20:00 local and the quarter-hours of local day
/// `day` in `tz` that it prices.
fn peak_quarter_hours(tz: Tz, day: NaiveDate) -> (usize, usize) {
    let base = GridPrices::new(price(2_500), price(700)).unwrap();
    let peak = GridPrices::new(price(4_000), price(700)).unwrap();
    let tariff = Tariff::new("EUR".parse().unwrap(), base)
        .in_time_zone(tz)
        .unwrap()
        .with_time_of_use(TimeOfUse::new(17 * 60, 20 * 60, peak))
        .unwrap();
    let next = day.succ_opt().unwrap();
    let range = TimeRange::new(
        local_midnight(tz, day),
        local_midnight(tz, next),
        TimeframeLength::default(),
    )
    .unwrap();
    let in_peak = range
        .timeframes()
        .filter(|tf| tariff.grid_prices(tf) == peak)
        .count();
    (range.len(), in_peak)
}

#[test]
fn the_peak_holds_twelve_quarter_hours_on_23_24_and_25_hour_days() {
    let vienna = time_zone("Europe/Vienna").unwrap();
    // 2026-03-29: clocks go forward (23 hours); 2026-10-25: back (25 hours).
    assert_eq!(peak_quarter_hours(vienna, date(2026, 3, 29)), (92, 12));
    assert_eq!(peak_quarter_hours(vienna, date(2026, 3, 28)), (96, 12));
    assert_eq!(peak_quarter_hours(vienna, date(2026, 10, 25)), (100, 12));
    let new_york = time_zone("America/New_York").unwrap();
    assert_eq!(peak_quarter_hours(new_york, date(2026, 3, 8)), (92, 12));
    assert_eq!(peak_quarter_hours(new_york, date(2026, 11, 1)), (100, 12));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    // On any local day of 2000–2099 in any of the zones, the evening peak
    // prices exactly 12 quarter-hours, and a day has 92, 96 or 100 of them.
    #[test]
    fn the_peak_holds_twelve_quarter_hours_on_any_day(zone in 0usize..ZONES.len(), offset in 0u64..36_500) {
        let tz = time_zone(ZONES[zone]).unwrap();
        let day = date(2000, 1, 1) + chrono::Days::new(offset);
        let (len, in_peak) = peak_quarter_hours(tz, day);
        prop_assert!([92, 96, 100].contains(&len), "{} in {}: {}", day, ZONES[zone], len);
        prop_assert_eq!(in_peak, 12);
    }
}
