//! Property tests of clearing, pricing and trades: the invariants of
//! the clearing rules (see the `clearing` module docs), each checked on thousands of random timeframes.

use chrono::{TimeZone, Utc};
use microgrid_core::pricing::bill_sharing::BillSharingPeriod;
use microgrid_core::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

const CASES: u32 = 4_000;

fn timeframe() -> Timeframe {
    Timeframe::new(
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        TimeframeLength::default(),
    )
    .unwrap()
}

/// Up to 40 prosumers with produced/consumed values that are often zero,
/// often equal and sometimes large.
fn readings() -> impl Strategy<Value = Vec<Reading>> {
    readings_of(timeframe())
}

fn readings_of(tf: Timeframe) -> impl Strategy<Value = Vec<Reading>> {
    let value = prop_oneof![Just(0i64), 0i64..50, 0i64..5_000, 0i64..2_500_000];
    prop::collection::vec((value.clone(), value), 0..40).prop_map(move |pairs| {
        pairs
            .into_iter()
            .enumerate()
            .map(|(i, (p, c))| {
                Reading::new(
                    format!("p{i:03}").parse().unwrap(),
                    tf,
                    Wh::new(p),
                    Wh::new(c),
                )
                .unwrap()
            })
            .collect()
    })
}

/// Any timeframe from 1900 to 2200, of any length, so that the rounding
/// offset (see the `clearing` module docs) takes any value.
fn any_timeframe() -> impl Strategy<Value = Timeframe> {
    const LENGTHS: [u32; 7] = [1, 5, 15, 30, 60, 360, 1440];
    (
        prop::sample::select(&LENGTHS[..]),
        -2_208_988_800i64..7_258_118_400,
    )
        .prop_map(|(minutes, seconds)| {
            let length = TimeframeLength::new(minutes).unwrap();
            let start = seconds - seconds.rem_euclid(length.seconds());
            Timeframe::new(Utc.timestamp_opt(start, 0).unwrap(), length).unwrap()
        })
}

/// Readings of [`readings`]' kind in a timeframe of [`any_timeframe`].
fn readings_anywhen() -> impl Strategy<Value = (Timeframe, Vec<Reading>)> {
    any_timeframe().prop_flat_map(|tf| (Just(tf), readings_of(tf)))
}

/// Grid prices with up to 4 decimals, export ≤ import, sometimes zero or equal.
fn grid() -> impl Strategy<Value = GridPrices> {
    (0i64..10_000, 0i64..10_000).prop_map(|(a, b)| {
        let (e, r) = if a <= b { (a, b) } else { (b, a) };
        GridPrices::new(
            Price::new(Decimal::new(r, 4)).unwrap(),
            Price::new(Decimal::new(e, 4)).unwrap(),
        )
        .unwrap()
    })
}

fn mechanism() -> impl Strategy<Value = Mechanism> {
    prop_oneof![
        (0i64..10_000).prop_map(|p| Mechanism::Fixed(Price::new(Decimal::new(p, 4)).unwrap())),
        Just(Mechanism::MidMarketRate),
        Just(Mechanism::SupplyDemandRatio),
        Just(Mechanism::BillSharing),
    ]
}

fn sum(values: impl Iterator<Item = Wh>) -> i64 {
    values.map(Wh::get).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    // Σ sold = Σ bought = shared = min(S, D); Σ imported = D − shared; Σ exported = S − shared.
    #[test]
    fn energy_is_conserved_per_timeframe((tf, rs) in readings_anywhen(), g in grid(), m in mechanism()) {
        let c = clear_timeframe(tf, &rs, g, &m).unwrap();
        let s = &c.summary;
        prop_assert_eq!(s.shared, s.supply.min(s.demand));
        prop_assert_eq!(sum(c.allocations.iter().map(|a| a.sold)), s.shared.get());
        prop_assert_eq!(sum(c.allocations.iter().map(|a| a.bought)), s.shared.get());
        prop_assert_eq!(sum(c.allocations.iter().map(|a| a.imported)), s.import.get());
        prop_assert_eq!(sum(c.allocations.iter().map(|a| a.exported)), s.export.get());
        prop_assert_eq!(s.import.get() - s.export.get(), s.demand.get() - s.supply.get());
        prop_assert_eq!(s.production.get(), sum(rs.iter().map(Reading::produced)));
        // Each prosumer's own energy balances: net = sold + exported − bought − imported.
        for a in &c.allocations {
            prop_assert_eq!(a.net().get(), a.sold.get() + a.exported.get() - a.bought.get() - a.imported.get());
            prop_assert!(a.sold.get() == 0 || a.bought.get() == 0);
        }
    }

    // Each share of the long side is within one Wh of its exact pro rata value.
    #[test]
    fn shares_are_within_one_wh_of_pro_rata((tf, rs) in readings_anywhen(), g in grid()) {
        let c = clear_timeframe(tf, &rs, g, &Mechanism::MidMarketRate).unwrap();
        let s = &c.summary;
        for a in &c.allocations {
            let net = i128::from(a.net().get());
            let (mine, weight, total) = if net > 0 {
                (a.sold.get(), net, s.supply.get())
            } else if net < 0 {
                (a.bought.get(), -net, s.demand.get())
            } else {
                continue;
            };
            // |mine − weight·shared/total| < 1  ⇔  |mine·total − weight·shared| < total
            let diff = i128::from(mine) * i128::from(total) - weight * i128::from(s.shared.get());
            prop_assert!(diff.abs() < i128::from(total), "{} gets {} of {}", a.prosumer, mine, weight);
        }
    }

    // The long side's shares are the systematic rounding of the module docs:
    // ⌊(c_i·shared + m)/W⌋ − ⌊(c_{i−1}·shared + m)/W⌋ in id order, m = ⌊u_t·W⌋.
    #[test]
    fn shares_follow_the_stated_rule((tf, rs) in readings_anywhen()) {
        let c = clear_timeframe(tf, &rs, GridPrices::new(Price::ZERO, Price::ZERO).unwrap(), &Mechanism::MidMarketRate).unwrap();
        let s = &c.summary;
        let shared = i128::from(s.shared.get());
        let u = i128::from(microgrid_core::clearing::rounding_offset(&tf));
        for (sign, total) in [(1i64, s.supply.get()), (-1, s.demand.get())] {
            let w = i128::from(total);
            let m = (u * w) >> 64;
            let (mut running, mut before) = (0i128, 0i128);
            for a in c.allocations.iter().filter(|a| a.net().get() * sign > 0) {
                running += i128::from(a.net().get() * sign);
                let upto = (running * shared + m) / w;
                let mine = if sign > 0 { a.sold } else { a.bought };
                prop_assert_eq!(i128::from(mine.get()), upto - before, "{} in {}", a.prosumer, tf);
                before = upto;
            }
        }
    }

    // Σ prosumer amounts = r·import − e·export, to the last decimal, for every per-timeframe mechanism.
    #[test]
    fn every_mechanism_is_budget_balanced(rs in readings(), g in grid(), m in mechanism()) {
        let c = clear_timeframe(timeframe(), &rs, g, &m).unwrap();
        let grid_bill = c.summary.grid_amount();
        match m {
            Mechanism::BillSharing => {
                let bill = BillSharingPeriod::from_summaries([&c.summary]);
                prop_assert_eq!(bill.import_cost - bill.export_revenue, grid_bill);
                let deficits: Vec<u64> = c.allocations.iter().map(|a| (-a.net().get()).max(0) as u64).collect();
                let surpluses: Vec<u64> = c.allocations.iter().map(|a| a.net().get().max(0) as u64).collect();
                let paid: Decimal = bill.buyer_amounts(&deficits).unwrap().into_iter().sum();
                let got: Decimal = bill.seller_amounts(&surpluses).unwrap().into_iter().sum();
                prop_assert_eq!(paid - got, grid_bill);
            }
            _ => {
                let total: Decimal = c.allocations.iter().map(|a| a.amount().unwrap()).sum();
                prop_assert_eq!(total, grid_bill);
            }
        }
    }

    // Trades add up to each prosumer's community sales and purchases; at most sellers + buyers − 1 of them.
    #[test]
    fn trades_sum_to_allocations((tf, rs) in readings_anywhen(), g in grid(), m in mechanism()) {
        let c = clear_timeframe(tf, &rs, g, &m).unwrap();
        let trades = c.trades();
        let traders = c.allocations.iter().filter(|a| a.sold.get() > 0 || a.bought.get() > 0).count();
        prop_assert!(trades.len() <= traders.saturating_sub(1));
        for a in &c.allocations {
            prop_assert_eq!(sum(trades.iter().filter(|t| t.seller == a.prosumer).map(|t| t.energy)), a.sold.get());
            prop_assert_eq!(sum(trades.iter().filter(|t| t.buyer == a.prosumer).map(|t| t.energy)), a.bought.get());
        }
        prop_assert!(trades.iter().all(|t| t.energy.get() > 0 && t.seller != t.buyer));
        prop_assert_eq!(sum(trades.iter().map(|t| t.energy)), c.summary.shared.get());
    }

    // Clearing depends on the readings only, not on the order they arrive in.
    #[test]
    fn allocation_is_independent_of_arrival_order((tf, rs) in readings_anywhen(), g in grid(), m in mechanism(), seed in any::<u64>()) {
        let mut shuffled = rs.clone();
        let mut rng = microgrid_core::simulate::SplitMix64::new(seed);
        for i in (1..shuffled.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        let a = clear_timeframe(tf, &rs, g, &m).unwrap();
        let b = clear_timeframe(tf, &shuffled, g, &m).unwrap();
        prop_assert_eq!(a, b);
    }

    // SDR's effective prices are Liu et al.'s formulas, up to rounding to 6 decimals.
    #[test]
    fn sdr_average_prices_follow_liu_et_al(rs in readings(), g in grid()) {
        let c = clear_timeframe(timeframe(), &rs, g, &Mechanism::SupplyDemandRatio).unwrap();
        let s = &c.summary;
        let (r, e) = (g.import().per_kwh(), g.export().per_kwh());
        let (sell, buy) = (s.sell_price().unwrap().per_kwh(), s.buy_price().unwrap().per_kwh());
        let tolerance = Decimal::new(2, 6);
        if s.supply.get() == 0 {
            prop_assert_eq!((sell, buy), (r, r));
        } else if s.supply > s.demand || s.demand.get() == 0 {
            prop_assert_eq!((sell, buy), (e, e));
        } else {
            let sdr = Decimal::from(s.supply.get()) / Decimal::from(s.demand.get());
            let exact_sell = e * r / ((r - e) * sdr + e);
            let exact_buy = exact_sell * sdr + r * (Decimal::ONE - sdr);
            prop_assert!((sell - exact_sell).abs() <= tolerance, "sell {} vs {}", sell, exact_sell);
            prop_assert!((buy - exact_buy).abs() <= tolerance, "buy {} vs {}", buy, exact_buy);
            // Individually rational: e ≤ sell and buy ≤ r.
            prop_assert!(e <= sell && buy <= r);
        }
    }

    // Clearing a matrix row gives the same result as clearing the same readings one timeframe at a time.
    #[test]
    fn matrix_clearing_equals_timeframe_clearing(rows in prop::collection::vec(readings(), 1..4), g in grid(), m in mechanism()) {
        let n = rows.iter().map(Vec::len).max().unwrap_or(0);
        let ids: Vec<ProsumerId> = (0..n).map(|i| format!("p{i:03}").parse().unwrap()).collect();
        let start = timeframe().start();
        let range = TimeRange::new(start, start + chrono::Duration::minutes(15 * rows.len() as i64), TimeframeLength::default()).unwrap();
        let (mut produced, mut consumed) = (Vec::new(), Vec::new());
        let mut per_timeframe = Vec::new();
        for (row, tf) in rows.iter().zip(range.timeframes()) {
            let mut full = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let (p, c) = row.get(i).map_or((Wh::ZERO, Wh::ZERO), |r| (r.produced(), r.consumed()));
                produced.push(p);
                consumed.push(c);
                full.push(Reading::new(id.clone(), tf, p, c).unwrap());
            }
            per_timeframe.push(clear_timeframe(tf, &full, g, &m).unwrap());
        }
        let matrix = ReadingMatrix::new(ids, range, produced, consumed).unwrap();
        let cleared = clear_matrix(&matrix, &g, &m).unwrap();
        prop_assert_eq!(&clear_matrix_parallel(&matrix, &g, &m).unwrap(), &cleared);
        for (t, expected) in per_timeframe.iter().enumerate() {
            prop_assert_eq!(&cleared.timeframe(&matrix, t), expected);
        }
    }
}
