//! Billing in parts: a period cut at random points into sub-ranges, each
//! billed into a `BillingPart` on its own, sent as bytes, merged in any
//! order and finished, gives exactly `bill_rows`'s bills for the period.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use microgrid_core::batch::{ingest_rows, ReadingColumns, ReadingRow};
use microgrid_core::billing::{bill_rows, BillingPart};
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

const TIMEFRAMES: usize = 16;

fn start() -> DateTime<Utc> {
    // Four 6-hour timeframes a day, across a month boundary.
    Utc.with_ymd_and_hms(2026, 6, 29, 0, 0, 0).unwrap()
}

fn length() -> TimeframeLength {
    TimeframeLength::new(360).unwrap()
}

/// The registry of `n` members (ids not in registration order; some join
/// on the second day, which prorates their fixed fee); the first is a
/// battery, whose energy the metrics keep apart.
fn registry(n: usize, late: &[bool]) -> Registry {
    let day0 = NaiveDate::from_ymd_opt(2026, 6, 29).unwrap();
    let mut registry = Registry::default();
    for (k, &is_late) in late.iter().enumerate().take(n) {
        let joined = if is_late {
            day0 + chrono::Days::new(1)
        } else {
            day0
        };
        registry
            .register(
                Prosumer::new(
                    format!("p{:03}", (k * 37) % 101),
                    "x",
                    if k == 0 {
                        ProsumerKind::Battery
                    } else {
                        ProsumerKind::Household
                    },
                    joined,
                )
                .unwrap(),
            )
            .unwrap();
    }
    registry
}

/// Per timeframe and member: a reading (produced, consumed) or none.
type Cells = Vec<Vec<Option<(i64, i64)>>>;

fn rows(registry: &Registry, cells: &Cells, late: &[bool]) -> Vec<ReadingRow> {
    let period = TimeRange::new(start(), start() + Duration::days(4), length()).unwrap();
    let mut cols = ReadingColumns::default();
    for (t, tf) in period.timeframes().enumerate() {
        for (k, cell) in cells[t].iter().enumerate() {
            if let Some((p, c)) = cell {
                if late[k] && t < 4 {
                    continue;
                }
                cols.push(tf.start().timestamp(), k as u32, *p, *c);
            }
        }
    }
    let mut rows = vec![ReadingRow::default(); TIMEFRAMES];
    let valid = cols
        .validate(registry, length(), ReadingLimits::default())
        .unwrap();
    if let Some(span) = valid.try_span() {
        let first = (span.start() - start()).num_seconds() as usize / 21_600;
        ingest_rows(
            &valid,
            registry,
            &mut rows[first..first + span.len()],
            |_| false,
        )
        .unwrap();
    }
    rows
}

fn community() -> impl Strategy<Value = (Vec<bool>, Cells)> {
    (1usize..9).prop_flat_map(|n| {
        let value = prop_oneof![Just(0i64), 0i64..3_000, 0i64..2_000_000];
        (
            prop::collection::vec(prop::bool::weighted(0.3), n),
            prop::collection::vec(
                prop::collection::vec(prop::option::weighted(0.75, (value.clone(), value)), n),
                TIMEFRAMES,
            ),
        )
    })
}

fn tariff(r: i64, e: i64, fee: i64, margin: i64, fixed: i64) -> Tariff {
    let grid = GridPrices::new(price(r.max(e)), price(r.min(e))).unwrap();
    Tariff::new("EUR".parse().unwrap(), grid)
        .with_grid_fee(price(fee))
        .with_operator_margin(price(margin))
        .with_fixed_fee(Decimal::new(fixed, 2))
        .unwrap()
}

/// Parts of the period cut at `cuts` (timeframe indices).
fn parts(
    pairs: &[(&ReadingRow, &ClearedRow)],
    cuts: &[usize],
    tariff: &Tariff,
    registry: &Registry,
    threads: usize,
) -> Vec<BillingPart> {
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < TIMEFRAMES)
        .collect();
    bounds.extend([0, TIMEFRAMES]);
    bounds.sort_unstable();
    bounds.dedup();
    let at = |k: usize| start() + length().duration() * k as i32;
    bounds
        .windows(2)
        .map(|w| {
            let range = TimeRange::new(at(w[0]), at(w[1]), length()).unwrap();
            BillingPart::from_rows(&range, tariff, registry, &pairs[w[0]..w[1]], threads).unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn parts_merged_in_any_order_bill_like_bill_rows(
        (late, cells) in community(),
        m in mechanism(),
        (r, e) in (0i64..5_000, 0i64..5_000),
        (fee, margin, fixed) in (0i64..1_000, 0i64..500, 0i64..100_000),
        cuts in prop::collection::vec(0usize..TIMEFRAMES, 0..6),
        order in any::<u64>(),
        threads in 1usize..3,
    ) {
        let registry = registry(late.len(), &late);
        let rows = rows(&registry, &cells, &late);
        let tariff = tariff(r, e, fee, margin, fixed);
        let period = TimeRange::new(start(), start() + Duration::days(4), length()).unwrap();
        let input: Vec<(Timeframe, &ReadingRow)> = period.timeframes().zip(rows.iter()).collect();
        let cleared = clear_reading_rows(&input, &registry.id_order(), &tariff, &m, threads).unwrap();
        let pairs: Vec<(&ReadingRow, &ClearedRow)> = rows.iter().zip(cleared.iter()).collect();
        let expected = bill_rows(&period, &tariff, &registry, &pairs, threads).unwrap();
        // The battery's energy is kept apart in the metrics, which merged
        // parts reproduce like the rest of the bills (checked below).
        let battery = registry.iter().find(|p| p.kind() == ProsumerKind::Battery).unwrap();
        let (charged, discharged) = expected
            .bill(battery.id())
            .map_or((Wh::ZERO, Wh::ZERO), |b| (b.energy.consumed, b.energy.produced));
        prop_assert_eq!((expected.metrics.battery_charged, expected.metrics.battery_discharged), (charged, discharged));
        prop_assert_eq!(expected.metrics.members_consumption().get(), expected.metrics.consumption.get() - charged.get());

        // Through bytes, in a shuffled order.
        let mut parts: Vec<BillingPart> = parts(&pairs, &cuts, &tariff, &registry, threads)
            .into_iter()
            .map(|p| BillingPart::from_bytes(&p.to_bytes().unwrap()).unwrap())
            .collect();
        let n = parts.len();
        for k in 0..n {
            parts.swap(k, (order.rotate_left(k as u32 * 7) as usize) % n);
        }
        let merged = BillingPart::merge_all(parts.clone()).unwrap();
        prop_assert_eq!(merged.range(), &period);
        prop_assert_eq!(merged.summaries().len(), TIMEFRAMES);
        prop_assert_eq!(merged.clone().finish(&tariff, &registry).unwrap(), expected.clone());

        // A tree of merges (neighbours pairwise, as a distributed reduction
        // does) gives the same part.
        parts.sort_by_key(|p| p.range().start());
        while parts.len() > 1 {
            let mut next = Vec::new();
            let mut it = parts.into_iter();
            while let Some(a) = it.next() {
                next.push(match it.next() {
                    Some(b) => a.merge(b).unwrap(),
                    None => a,
                });
            }
            parts = next;
        }
        prop_assert_eq!(&parts[0], &merged);
    }
}

fn small() -> (Registry, Vec<ReadingRow>, Tariff) {
    let late = [false, true, false];
    let cells: Cells = (0..TIMEFRAMES)
        .map(|t| {
            vec![
                Some((1_000 * (t as i64 % 3), 400)),
                Some((0, 700)),
                Some((900, 100 * t as i64)),
            ]
        })
        .collect();
    let registry = registry(3, &late);
    let rows = rows(&registry, &cells, &late);
    (registry, rows, tariff(3_000, 1_000, 100, 50, 1_000))
}

fn cleared(registry: &Registry, rows: &[ReadingRow], tariff: &Tariff) -> Vec<ClearedRow> {
    let period = TimeRange::new(start(), start() + Duration::days(4), length()).unwrap();
    let input: Vec<(Timeframe, &ReadingRow)> = period.timeframes().zip(rows.iter()).collect();
    clear_reading_rows(
        &input,
        &registry.id_order(),
        tariff,
        &Mechanism::SupplyDemandRatio,
        1,
    )
    .unwrap()
}

#[test]
fn a_gap_an_overlap_another_registry_and_a_part_period_are_refused() {
    let (registry, rows, tariff) = small();
    let cleared = cleared(&registry, &rows, &tariff);
    let pairs: Vec<(&ReadingRow, &ClearedRow)> = rows.iter().zip(cleared.iter()).collect();
    let at = |k: usize| start() + length().duration() * k as i32;
    let part = |a: usize, b: usize| {
        let range = TimeRange::new(at(a), at(b), length()).unwrap();
        BillingPart::from_rows(&range, &tariff, &registry, &pairs[a..b], 1).unwrap()
    };
    // A gap names the first timeframe missing, an overlap the first billed twice.
    assert_eq!(
        part(0, 4).merge(part(6, 16)),
        Err(Error::PeriodNotCleared { start: at(4) })
    );
    assert_eq!(
        BillingPart::merge_all([part(0, 4), part(3, 16)]),
        Err(Error::DuplicateClearing { start: at(3) })
    );
    // Finishing a part of the period bills that part only (its range is
    // the period); a part that did not get all its timeframes is refused.
    let range = TimeRange::new(at(0), at(4), length()).unwrap();
    let mut billing = billing::RowBilling::new(&range, &tariff, &registry, 1).unwrap();
    billing.add(&pairs[0..2]).unwrap();
    assert_eq!(
        billing.into_part(),
        Err(Error::PeriodNotCleared { start: at(2) })
    );
    // Another registry (one more member) is refused, merging and finishing.
    let mut other = registry.clone();
    other
        .register(
            Prosumer::new(
                "zz",
                "zz",
                ProsumerKind::Household,
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
    let theirs = {
        let range = TimeRange::new(at(4), at(16), length()).unwrap();
        BillingPart::from_rows(&range, &tariff, &other, &pairs[4..16], 1).unwrap()
    };
    assert!(matches!(
        part(0, 4).merge(theirs),
        Err(Error::ShapeMismatch(_))
    ));
    assert!(matches!(
        part(0, 4)
            .merge(part(4, 16))
            .unwrap()
            .finish(&tariff, &other),
        Err(Error::ShapeMismatch(_))
    ));
    // Bytes that are not a part.
    assert!(matches!(
        BillingPart::from_bytes(b"{\"range\": 1}"),
        Err(Error::Parse { .. })
    ));
    // The whole period finished equals bill_rows.
    let period = TimeRange::new(at(0), at(16), length()).unwrap();
    assert_eq!(
        part(0, 7)
            .merge(part(7, 16))
            .unwrap()
            .finish(&tariff, &registry),
        bill_rows(&period, &tariff, &registry, &pairs, 1)
    );
    assert_eq!(
        BillingPart::merge_all([]),
        Err(Error::ShapeMismatch("no billing parts to merge".into()))
    );
}

#[test]
fn a_tampered_part_is_refused() {
    let (registry, rows, tariff) = small();
    let cleared = cleared(&registry, &rows, &tariff);
    let pairs: Vec<(&ReadingRow, &ClearedRow)> = rows.iter().zip(cleared.iter()).collect();
    let period = TimeRange::new(start(), start() + Duration::days(4), length()).unwrap();
    let part = BillingPart::from_rows(&period, &tariff, &registry, &pairs, 1).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&part.to_bytes().unwrap()).unwrap();
    let edits: [fn(&mut serde_json::Value); 3] = [
        |v| {
            v["members"][0] = serde_json::json!(7);
        },
        |v| {
            v["summaries"].as_array_mut().unwrap().pop();
        },
        |v| {
            v["sums"].as_array_mut().unwrap().pop();
        },
    ];
    // Sums beyond 64 bits (a long period of large members) survive the bytes.
    // (Edited as text: serde_json's Value holds no integer that large.)
    let text = String::from_utf8(part.to_bytes().unwrap()).unwrap();
    let at = text.find("\"sums\":[[").unwrap() + "\"sums\":[[".len();
    let close = at + text[at..].find(']').unwrap();
    let mut first: Vec<String> = text[at..close].split(',').map(String::from).collect();
    first[6] = "1267650600228229401496703205376".into(); // 2^100
    let edited = format!("{}{}{}", &text[..at], first.join(","), &text[close..]);
    let big = BillingPart::from_bytes(edited.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(big.to_bytes().unwrap()).unwrap(), edited);
    for edit in edits {
        let mut v = json.clone();
        edit(&mut v);
        assert!(matches!(
            BillingPart::from_bytes(&serde_json::to_vec(&v).unwrap()),
            Err(Error::ShapeMismatch(_))
        ));
    }
}
