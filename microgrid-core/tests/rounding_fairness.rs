//! Property tests of the rounding rule over time (see the `clearing` module
//! docs): over a 30-day period, every member's shared energy stays within
//! 2 Wh a day of its exact pro rata total, and the deviations of all
//! members add up to exactly zero.
//!
//! Steady and daily-repeating communities are where a biased rule drifts
//! furthest (the plain floor in id order left members up to 2,900 Wh off
//! in a 15-minute month); there the low-discrepancy offset keeps every member within a
//! few Wh, deterministically, so these tests draw fresh cases on every
//! run. In simulated communities, whose shares vary at random, a member's
//! deviation is a random walk (standard deviation at most 16 Wh a month in
//! the simulator) and the bound is a statistical one, about 3.7 standard
//! deviations (`cargo run --release -p microgrid-benches --example
//! rounding_deviation` measures the tail over thousands of member-months):
//! that test draws a fixed set of communities, so that it cannot fail by
//! chance.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use microgrid_core::simulate::Community;
use microgrid_core::*;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const DAYS: u32 = 30;
/// The bound on a member's deviation, in Wh per day.
const WH_PER_DAY: i128 = 2;
/// Deviations are summed in units of 10^-9 Wh.
const NANO: i128 = 1_000_000_000;

/// Clears `matrix` and checks, timeframe by timeframe, that each side's
/// rounding errors add up to exactly zero; returns each member's total
/// deviation from its exact pro rata share as bounds `(low, high)` in
/// 10^-9 Wh (each timeframe's exact error `e / W` rounded down into `low`
/// and up into `high`).
fn deviations(matrix: &ReadingMatrix) -> Result<Vec<(i128, i128)>, TestCaseError> {
    let grid = GridPrices::new(Price::ZERO, Price::ZERO).unwrap();
    let cleared = clear_matrix(matrix, &grid, &Mechanism::MidMarketRate).unwrap();
    let n = matrix.prosumers().len();
    let mut out = vec![(0i128, 0i128); n];
    for (t, summary) in cleared.summaries.iter().enumerate() {
        let (produced, consumed) = matrix.row(t);
        let community = &cleared.community[t * n..(t + 1) * n];
        let shared = i128::from(summary.shared.get());
        let (supply, demand) = (
            i128::from(summary.supply.get()),
            i128::from(summary.demand.get()),
        );
        let mut errors = [0i128; 2];
        for i in 0..n {
            let net = i128::from(produced[i].get() - consumed[i].get());
            let mine = i128::from(community[i].get());
            let (side, weight, total, mine) = match net.signum() {
                1 => (0, net, supply, mine),
                -1 => (1, -net, demand, -mine),
                _ => continue,
            };
            // share − weight·shared/total = e / total, exactly.
            let e = mine * total - weight * shared;
            errors[side] += e;
            out[i].0 += (e * NANO).div_euclid(total);
            out[i].1 += -((-e * NANO).div_euclid(total));
        }
        // Σ over members of the deviations is exactly zero in each
        // timeframe, hence over the period: the mean is zero.
        prop_assert_eq!(errors, [0, 0], "timeframe {}", t);
    }
    Ok(out)
}

/// Every member within 2 Wh a day of its exact total.
fn check_bound(matrix: &ReadingMatrix, days: u32) -> Result<(), TestCaseError> {
    let bound = WH_PER_DAY * i128::from(days) * NANO;
    for (i, (low, high)) in deviations(matrix)?.into_iter().enumerate() {
        prop_assert!(
            -bound <= low && high <= bound,
            "{} ends between {:.3} and {:.3} Wh off its exact pro rata total",
            matrix.prosumers()[i],
            low as f64 / NANO as f64,
            high as f64 / NANO as f64
        );
    }
    Ok(())
}

fn ids(n: usize) -> Vec<ProsumerId> {
    (0..n)
        .map(|i| format!("p{i:03}").parse().unwrap())
        .collect()
}

/// `DAYS` days from midnight of day `day` (since 2000-01-01) in timeframes
/// of `minutes`.
fn period(day: u32, minutes: u32) -> TimeRange {
    let start = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap() + Duration::days(day.into());
    TimeRange::new(
        start,
        start + Duration::days(DAYS.into()),
        TimeframeLength::new(minutes).unwrap(),
    )
    .unwrap()
}

/// A member's produced and consumed Wh: often zero, small or large.
fn reading() -> impl Strategy<Value = (i64, i64)> {
    let value = prop_oneof![Just(0i64), 0i64..50, 0i64..5_000, 0i64..2_500_000];
    (value.clone(), value)
}

/// Repeats `cells` (one period's readings, member by member) over the
/// whole range.
fn repeated(n: usize, range: TimeRange, cells: &[(i64, i64)]) -> ReadingMatrix {
    let (produced, consumed) = (0..range.len() * n)
        .map(|k| {
            let (p, c) = cells[k % cells.len()];
            (Wh::new(p), Wh::new(c))
        })
        .unzip();
    ReadingMatrix::new(ids(n), range, produced, consumed).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // Up to 40 members with the same readings in every timeframe of 30 days.
    #[test]
    fn steady_communities_stay_within_two_wh_a_day(
        cells in prop::collection::vec(reading(), 1..40),
        minutes in prop::sample::select(&[5u32, 15, 30, 60][..]),
        day in 0u32..36_500,
    ) {
        let range = period(day, minutes);
        check_bound(&repeated(cells.len(), range, &cells), DAYS)?;
    }

    // Up to 12 members whose readings repeat every day for 30 days.
    #[test]
    fn daily_repeating_communities_stay_within_two_wh_a_day(
        (n, minutes, cells) in (1usize..12, prop::sample::select(&[15u32, 30, 60][..]))
            .prop_flat_map(|(n, minutes)| {
                let per_day = (1440 / minutes) as usize;
                (Just(n), Just(minutes), prop::collection::vec(reading(), n * per_day))
            }),
        day in 0u32..36_500,
    ) {
        let range = period(day, minutes);
        check_bound(&repeated(n, range, &cells), DAYS)?;
    }
}

proptest! {
    // Fixed cases: in simulated communities the bound holds with high
    // probability, not by construction (see the module docs).
    #![proptest_config(ProptestConfig {
        cases: 24,
        rng_seed: RngSeed::Fixed(13),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // Simulated households (solar, daily loads, noise) over 30 days.
    #[test]
    fn simulated_communities_stay_within_two_wh_a_day(
        n in 2usize..40,
        minutes in prop::sample::select(&[15u32, 30, 60][..]),
        day in 0u32..36_500,
        seed in any::<u64>(),
    ) {
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Days::new(day.into());
        let community = Community::new(n, start, DAYS, seed)
            .with_length(TimeframeLength::new(minutes).unwrap());
        check_bound(&community.matrix().unwrap(), DAYS)?;
    }
}
