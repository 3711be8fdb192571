//! One conformance suite, written once, run against every store: the same
//! behaviour from memory and from each database.

use std::sync::Arc;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use microgrid_core::settlement::ExchangeRate;
use microgrid_core::simulate::{regtest_address, Community};
use microgrid_core::tariff::Tariff;
use microgrid_core::*;
use microgrid_store::*;
use rust_decimal::Decimal;

fn grid_prices() -> GridPrices {
    GridPrices::new("0.300001".parse().unwrap(), "0.080001".parse().unwrap()).unwrap()
}

fn tariff() -> Tariff {
    Tariff::new("EUR".parse().unwrap(), grid_prices())
        .with_grid_fee("0.02".parse().unwrap())
        .with_fixed_fee("1.5".parse().unwrap())
        .unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
}

/// Five households over one day, registered, with payout addresses.
async fn community_grid<S: Store>(store: S, days: u32) -> (Grid<S>, Community) {
    let community = Community::new(5, day(1), days, 3);
    let grid = Grid::new(store, TimeframeLength::default());
    for (i, p) in community.registry().unwrap().iter().enumerate() {
        grid.register(
            p.clone()
                .with_payout(regtest_address(i as u64, OutputType::P2wpkh)),
        )
        .await
        .unwrap();
    }
    (grid, community)
}

pub async fn registry_round_trips<S: Store>(store: S) {
    let grid = Grid::new(store, TimeframeLength::default());
    let p = Prosumer::new(
        "bäckerei-1".replace('ä', "a"),
        "Bäckerei Müller & Söhne \"Ost\"",
        ProsumerKind::Company,
        day(1),
    )
    .unwrap()
    .with_left(day(30))
    .unwrap()
    .with_payout(
        PayoutAddress::new("mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs", Network::Regtest).unwrap(),
    );
    let q = Prosumer::new("h.2_x", "Household", ProsumerKind::Household, day(2)).unwrap();
    grid.register(p.clone()).await.unwrap();
    grid.register(q.clone()).await.unwrap();
    assert!(matches!(
        grid.register(q.clone()).await,
        Err(StoreError::Domain(Error::DuplicateProsumer(_)))
    ));
    let reg = grid.registry().await.unwrap();
    assert_eq!(
        reg.iter().cloned().collect::<Vec<_>>(),
        vec![p.clone(), q.clone()]
    );
    let moved = q.with_payout(regtest_address(9, OutputType::P2tr));
    grid.update(moved.clone()).await.unwrap();
    assert_eq!(
        grid.registry().await.unwrap().get(moved.id()).unwrap(),
        &moved
    );
}

pub async fn ingest_is_idempotent_and_refuses_conflicts<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    let readings = community.readings().unwrap();
    let first = grid.record(readings.clone()).await.unwrap();
    assert_eq!(
        first,
        IngestReport {
            inserted: 480,
            replaced: 0,
            unchanged: 0
        }
    );
    assert_eq!(grid.record(readings.clone()).await.unwrap().unchanged, 480);

    // A correction before clearing replaces the stored value.
    let r0 = &readings[0];
    let corrected = Reading::new(
        r0.prosumer().clone(),
        r0.timeframe(),
        Wh::new(r0.produced().get() + 1),
        r0.consumed(),
    )
    .unwrap();
    assert_eq!(
        grid.record(vec![corrected.clone()]).await.unwrap().replaced,
        1
    );

    let range = community.range().unwrap();
    grid.clear(&range, &tariff(), &Mechanism::MidMarketRate)
        .await
        .unwrap();
    // After clearing, a different value is a conflict, and nothing of the batch is stored.
    let later = Reading::new(
        r0.prosumer().clone(),
        r0.timeframe(),
        Wh::new(7),
        Wh::new(7),
    )
    .unwrap();
    let next_day = Timeframe::new(range.end(), TimeframeLength::default()).unwrap();
    let new_one = Reading::new(r0.prosumer().clone(), next_day, Wh::new(1), Wh::new(1)).unwrap();
    let err = grid.record(vec![new_one.clone(), later]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Domain(Error::ConflictingReading { .. })),
        "{err}"
    );
    let after = TimeRange::new(range.end(), next_day.end(), TimeframeLength::default()).unwrap();
    assert!(
        grid.store().readings(&after).await.unwrap().is_empty(),
        "nothing of a rejected batch is stored"
    );
    // A rejected batch of unknown prosumers stores nothing either.
    let stranger = Reading::new(
        "stranger".parse().unwrap(),
        next_day,
        Wh::new(1),
        Wh::new(1),
    )
    .unwrap();
    assert!(grid.record(vec![new_one, stranger]).await.is_err());
    assert!(grid.store().readings(&after).await.unwrap().is_empty());
    // The same value again is still fine.
    assert_eq!(grid.record(vec![corrected]).await.unwrap().unchanged, 1);
}

pub async fn clearing_twice_stores_one_result<S: Store + 'static>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    grid.record(community.readings().unwrap()).await.unwrap();
    let range = community.range().unwrap();
    let grid = Arc::new(grid);
    let (a, b) = {
        let (g1, g2) = (grid.clone(), grid.clone());
        let (r1, r2) = (range, range);
        let t1 = tokio::spawn(async move {
            g1.clear(&r1, &grid_prices(), &Mechanism::SupplyDemandRatio)
                .await
        });
        let t2 = tokio::spawn(async move {
            g2.clear(&r2, &grid_prices(), &Mechanism::MidMarketRate)
                .await
        });
        (t1.await.unwrap().unwrap(), t2.await.unwrap().unwrap())
    };
    assert_eq!(
        a.cleared + b.cleared,
        96,
        "each timeframe is stored by exactly one writer"
    );
    assert_eq!(a.cleared + a.already_cleared, 96);
    let again = grid
        .clear(&range, &grid_prices(), &Mechanism::MidMarketRate)
        .await
        .unwrap();
    assert_eq!(
        again,
        ClearReport {
            cleared: 0,
            already_cleared: 96
        }
    );
    let summaries = grid.summaries(&range).await.unwrap();
    assert_eq!(summaries.len(), 96);
    assert_eq!(
        grid.store().allocations(&range, None).await.unwrap().len(),
        480
    );
}

pub async fn the_three_views_round_trip<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    let readings = community.readings().unwrap();
    grid.record(readings.clone()).await.unwrap();
    let range = community.range().unwrap();
    grid.clear(&range, &tariff(), &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();

    // Stored results equal clearing the same readings in memory, exactly.
    let expected =
        clear_range(&range, &readings, &tariff(), &Mechanism::SupplyDemandRatio).unwrap();
    let stored = grid.clearings(&range).await.unwrap();
    assert_eq!(stored, expected);

    let id: ProsumerId = "house-0002".parse().unwrap();
    let mine = grid.prosumer(&id, &range).await.unwrap();
    assert_eq!(mine.len(), 96);
    assert!(mine.iter().all(|a| a.prosumer == id));

    let trades = grid.trades(&range, None).await.unwrap();
    let shared: i64 = grid
        .summaries(&range)
        .await
        .unwrap()
        .iter()
        .map(|s| s.shared.get())
        .sum();
    assert_eq!(trades.iter().map(|t| t.energy.get()).sum::<i64>(), shared);
    let my_trades = grid.trades(&range, Some(&id)).await.unwrap();
    assert!(my_trades.iter().all(|t| t.seller == id || t.buyer == id));
    let bought: i64 = mine.iter().map(|a| a.bought.get() + a.sold.get()).sum();
    assert_eq!(
        my_trades.iter().map(|t| t.energy.get()).sum::<i64>(),
        bought
    );

    // A sub-range returns only its timeframes.
    let noon = TimeRange::new(
        range.start() + Duration::hours(12),
        range.start() + Duration::hours(13),
        TimeframeLength::default(),
    )
    .unwrap();
    assert_eq!(grid.summaries(&noon).await.unwrap().len(), 4);
}

pub async fn extreme_values_round_trip<S: Store>(store: S) {
    // A clock past the last timeframe below, which is cleared.
    let later = Utc.with_ymd_and_hms(2200, 1, 1, 0, 0, 0).unwrap();
    let grid =
        Grid::new(store, TimeframeLength::default()).with_clock(Clock::from_fn(move || later));
    let joined = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    grid.register(Prosumer::new("x", "X", ProsumerKind::Other, joined).unwrap())
        .await
        .unwrap();
    grid.register(Prosumer::new("y", "Y", ProsumerKind::Other, joined).unwrap())
        .await
        .unwrap();
    let max = ReadingLimits::default().max_wh(TimeframeLength::default());
    for start in [
        Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2199, 12, 31, 23, 45, 0).unwrap(),
    ] {
        let tf = Timeframe::new(start, TimeframeLength::default()).unwrap();
        let rs = vec![
            Reading::new("x".parse().unwrap(), tf, Wh::new(max), Wh::ZERO).unwrap(),
            Reading::new("y".parse().unwrap(), tf, Wh::ZERO, Wh::new(max - 1)).unwrap(),
        ];
        grid.record(rs.clone()).await.unwrap();
        let range = TimeRange::new(tf.start(), tf.end(), TimeframeLength::default()).unwrap();
        assert_eq!(grid.store().readings(&range).await.unwrap(), rs);
        let prices = GridPrices::new(
            "999999.999999".parse().unwrap(),
            "0.000001".parse().unwrap(),
        )
        .unwrap();
        grid.clear(&range, &prices, &Mechanism::SupplyDemandRatio)
            .await
            .unwrap();
        let expected = clear_range(&range, &rs, &prices, &Mechanism::SupplyDemandRatio).unwrap();
        assert_eq!(grid.clearings(&range).await.unwrap(), expected);
    }
}

pub async fn a_month_settles_end_to_end<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 30).await;
    grid.record(community.readings().unwrap()).await.unwrap();
    let june = community.range().unwrap();
    let t = tariff();
    grid.clear(&june, &t, &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
    let rate = ExchangeRate::new(Decimal::from(90_000), t.currency(), "test", june.end()).unwrap();
    let operator = regtest_address(77, OutputType::P2wpkh);
    let s = grid
        .settle(&june, &t, &rate, Network::Regtest, &operator)
        .await
        .unwrap();
    assert!(s.is_conserved());
    // Settling again returns the stored settlement.
    assert_eq!(
        grid.settle(&june, &t, &rate, Network::Regtest, &operator)
            .await
            .unwrap(),
        s
    );
    assert_eq!(grid.settlement(s.id()).await.unwrap().as_ref(), Some(&s));
    // Another rate for the same period is a conflict: one settlement stands.
    let dearer =
        ExchangeRate::new(Decimal::from(95_000), t.currency(), "test", june.end()).unwrap();
    assert!(matches!(
        grid.settle(&june, &t, &dearer, Network::Regtest, &operator).await,
        Err(StoreError::Domain(Error::SettlementConflict { existing, .. })) if existing == s.id()
    ));
    let paid = grid.mark_paid(s.id(), &"ab".repeat(32)).await.unwrap();
    assert_eq!(
        grid.settlement(s.id()).await.unwrap().unwrap().paid_by(),
        paid.paid_by()
    );
    // Paid once: the same txid again changes nothing, another is refused.
    grid.mark_paid(s.id(), &"AB".repeat(32)).await.unwrap();
    assert!(matches!(
        grid.mark_paid(s.id(), &"cd".repeat(32)).await,
        Err(StoreError::Domain(Error::AlreadyPaid { .. }))
    ));
    assert_eq!(
        grid.settlement(s.id()).await.unwrap().unwrap().paid_by(),
        paid.paid_by()
    );
    assert!(matches!(
        grid.mark_paid("nope", &"ab".repeat(32)).await,
        Err(StoreError::NotFound { .. })
    ));
    // A period that is not cleared cannot be settled.
    let july = TimeRange::new(
        june.end(),
        june.end() + Duration::days(1),
        TimeframeLength::default(),
    )
    .unwrap();
    assert!(matches!(
        grid.settle(&july, &t, &rate, Network::Regtest, &operator)
            .await,
        Err(StoreError::Domain(Error::PeriodNotCleared { .. }))
    ));
}

pub async fn a_failed_clearing_write_leaves_nothing<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    let readings = community.readings().unwrap();
    grid.record(readings.clone()).await.unwrap();
    let range = community.range().unwrap();
    let tf = range.timeframes().nth(48).unwrap();
    let at_noon: Vec<Reading> = readings
        .into_iter()
        .filter(|r| r.timeframe() == tf)
        .collect();
    let mut broken =
        clear_timeframe(tf, &at_noon, grid_prices(), &Mechanism::SupplyDemandRatio).unwrap();
    // The summary is written first; the duplicated last allocation fails the write half way.
    let last = broken.allocations.last().unwrap().clone();
    broken.allocations.push(last);
    assert!(grid.store().save_clearing(&broken).await.is_err());
    let one = TimeRange::new(tf.start(), tf.end(), TimeframeLength::default()).unwrap();
    assert!(
        grid.store().cleared(&one).await.unwrap().is_empty(),
        "no summary is left"
    );
    assert!(
        grid.store()
            .allocations(&one, None)
            .await
            .unwrap()
            .is_empty(),
        "no allocation is left"
    );
    // The timeframe can still be cleared properly afterwards.
    assert_eq!(
        grid.clear(&one, &grid_prices(), &Mechanism::SupplyDemandRatio)
            .await
            .unwrap()
            .cleared,
        1
    );
    assert_eq!(grid.store().allocations(&one, None).await.unwrap().len(), 5);
}

/// The columnar path (registration in bulk, readings as columns day by
/// day, a member registered late, missing readings) stores and bills
/// exactly what the core computes from the same readings, and the store's
/// row methods read back the same clearing.
pub async fn the_columnar_path_equals_the_core<S: Store>(store: S) {
    let community = Community::new(6, day(1), 2, 11);
    let all = community.registry().unwrap();
    // Registered out of id order, the last one only after the first day.
    let mut early: Vec<Prosumer> = all.iter().take(5).cloned().collect();
    early.reverse();
    let late = all.iter().nth(5).unwrap().clone();
    let grid = Grid::new(store, TimeframeLength::default());
    grid.register_all(early).await.unwrap();
    // Every third reading of house 2 is missing; house 6 reads from day 2.
    let keep =
        |r: &Reading, k: usize| !(r.prosumer().as_str().ends_with('2') && k.is_multiple_of(3));
    let readings: Vec<Reading> = community
        .readings()
        .unwrap()
        .into_iter()
        .enumerate()
        .filter(|(k, r)| keep(r, *k))
        .map(|(_, r)| r)
        .filter(|r| {
            r.prosumer() != late.id()
                || r.timeframe().start() >= Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap()
        })
        .collect();
    let (day1, day2): (Vec<Reading>, Vec<Reading>) = readings
        .iter()
        .cloned()
        .partition(|r| r.timeframe().start() < Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap());
    let registry = grid.shared_registry().await.unwrap();
    let report = grid
        .record_columns(ReadingColumns::from_readings(&registry, &day1).unwrap())
        .await
        .unwrap();
    assert_eq!(report.inserted, day1.len());
    grid.register(late).await.unwrap();
    let registry = grid.shared_registry().await.unwrap();
    grid.record_columns(ReadingColumns::from_readings(&registry, &day2).unwrap())
        .await
        .unwrap();

    let period = community.range().unwrap();
    for mechanism in [Mechanism::SupplyDemandRatio, Mechanism::BillSharing] {
        let expected = clear_range(&period, &readings, &tariff(), &mechanism).unwrap();
        let expected_bills =
            microgrid_core::billing::bill_period(&period, &tariff(), &registry, &expected).unwrap();
        if mechanism == Mechanism::SupplyDemandRatio {
            grid.clear(&period, &tariff(), &mechanism).await.unwrap();
            assert_eq!(grid.clearings(&period).await.unwrap(), expected);
            assert_eq!(grid.bill(&period, &tariff()).await.unwrap(), expected_bills);
            // The store's row methods read back the same clearing.
            let flat: Vec<Allocation> = expected
                .iter()
                .flat_map(|c| c.allocations.clone())
                .collect();
            assert_eq!(grid.store().allocations(&period, None).await.unwrap(), flat);
            let summaries: Vec<TimeframeSummary> =
                expected.iter().map(|c| c.summary.clone()).collect();
            assert_eq!(grid.store().summaries(&period).await.unwrap(), summaries);
            let mut stored = grid.store().readings(&period).await.unwrap();
            stored
                .sort_by(|a, b| (a.timeframe(), a.prosumer()).cmp(&(b.timeframe(), b.prosumer())));
            let mut sorted = readings.clone();
            sorted
                .sort_by(|a, b| (a.timeframe(), a.prosumer()).cmp(&(b.timeframe(), b.prosumer())));
            assert_eq!(stored, sorted);
        }
    }
}

/// Registering a batch is all or nothing, and another grid on the same
/// store sees what one registered.
pub async fn register_all_is_all_or_nothing<S: Store + Clone>(store: S) {
    let grid = Grid::new(store.clone(), TimeframeLength::default());
    let p = |id: &str| Prosumer::new(id, id, ProsumerKind::Household, day(1)).unwrap();
    grid.register(p("a")).await.unwrap();
    assert!(matches!(
        grid.register_all(vec![p("b"), p("c"), p("a")]).await,
        Err(StoreError::Domain(Error::DuplicateProsumer(id))) if id == "a"
    ));
    assert!(matches!(
        grid.register_all(vec![p("b"), p("b")]).await,
        Err(StoreError::Domain(Error::DuplicateProsumer(id))) if id == "b"
    ));
    assert_eq!(grid.registry().await.unwrap().len(), 1);
    assert_eq!(store.registry().await.unwrap().len(), 1);
    grid.register_all(vec![p("c"), p("b")]).await.unwrap();
    let other = Grid::new(store, TimeframeLength::default());
    let ids: Vec<String> = other
        .registry()
        .await
        .unwrap()
        .iter()
        .map(|p| p.id().to_string())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

/// A reading for a timeframe that was cleared without it is refused: it
/// would be stored and never billed.
pub async fn a_late_reading_is_refused<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    let period = community.range().unwrap();
    grid.clear(&period, &tariff(), &Mechanism::MidMarketRate)
        .await
        .unwrap();
    let late = community.readings().unwrap()[..3].to_vec();
    assert!(matches!(
        grid.record(late).await,
        Err(StoreError::Domain(Error::LateReading { .. }))
    ));
    assert!(grid.store().readings(&period).await.unwrap().is_empty());
}

/// A timeframe that has not ended by the grid's clock cannot be cleared:
/// its readings may still come.
pub async fn an_open_timeframe_cannot_be_cleared<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    let period = community.range().unwrap();
    let noon = Utc.with_ymd_and_hms(2026, 6, 1, 12, 5, 0).unwrap();
    let grid = grid.with_clock(Clock::from_fn(move || noon));
    grid.record(community.readings().unwrap()).await.unwrap();
    assert!(matches!(
        grid.clear(&period, &tariff(), &Mechanism::MidMarketRate).await,
        Err(StoreError::Domain(Error::TimeframeNotEnded { start, .. }))
            if start == Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    ));
    assert!(grid.store().cleared(&period).await.unwrap().is_empty());
    let morning = TimeRange::new(
        period.start(),
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        period.length(),
    )
    .unwrap();
    assert_eq!(
        grid.clear(&morning, &tariff(), &Mechanism::MidMarketRate)
            .await
            .unwrap()
            .cleared,
        48
    );
}

/// Settles `period` at `per_btc` EUR per BTC.
async fn settle_at<S: Store>(
    grid: &Grid<S>,
    period: &TimeRange,
    per_btc: i64,
) -> microgrid_store::Result<settlement::Settlement> {
    let t = tariff();
    let rate =
        ExchangeRate::new(Decimal::from(per_btc), t.currency(), "test", period.end()).unwrap();
    let operator = regtest_address(77, OutputType::P2wpkh);
    grid.settle(period, &t, &rate, Network::Regtest, &operator)
        .await
}

fn days(from: u32, to: u32) -> TimeRange {
    let at = |d: u32| {
        Utc.from_utc_datetime(&day(1).and_hms_opt(0, 0, 0).unwrap())
            + Duration::days(i64::from(d) - 1)
    };
    TimeRange::new(at(from), at(to), TimeframeLength::default()).unwrap()
}

/// One settlement stands per period, also when settles race; a standing
/// settlement can be voided (unless paid) and then replaced, and the
/// chain of carried balances follows the settlements that stand.
pub async fn one_settlement_stands_per_period<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 3).await;
    grid.record(community.readings().unwrap()).await.unwrap();
    grid.clear(&days(1, 4), &tariff(), &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
    // Three overlapping settlements at once: exactly one stands.
    let (one_two, two_three) = (days(1, 3), days(2, 4));
    let (a, b, c) = tokio::join!(
        settle_at(&grid, &one_two, 90_000),
        settle_at(&grid, &two_three, 95_000),
        settle_at(&grid, &one_two, 95_000),
    );
    let results = [a, b, c];
    let stood: Vec<&settlement::Settlement> =
        results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(stood.len(), 1, "{results:?}");
    let standing = stood[0].clone();
    for r in &results {
        match r {
            Ok(s) => assert_eq!(s.id(), standing.id()),
            Err(StoreError::Domain(Error::SettlementConflict {
                existing, differs, ..
            })) => {
                assert_eq!(existing, &standing.id());
                assert!(!differs.is_empty());
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // A period inside the standing one, or around it, is refused too.
    for (from, to) in [(2, 3), (1, 4)] {
        assert!(matches!(
            settle_at(&grid, &days(from, to), 90_000).await,
            Err(StoreError::Domain(Error::SettlementConflict { existing, .. })) if existing == standing.id()
        ));
    }
    // Voided, it no longer holds its period; voiding again changes nothing.
    let voided = grid
        .void_settlement(standing.id(), "wrong rate")
        .await
        .unwrap();
    assert!(!voided.stands());
    assert_eq!(voided.voided().unwrap().reason, "wrong rate");
    let again = grid.void_settlement(standing.id(), "other").await.unwrap();
    assert_eq!(again.voided(), voided.voided());
    assert!(matches!(
        grid.mark_paid(standing.id(), &"ab".repeat(32)).await,
        Err(StoreError::Domain(Error::SettlementVoided { .. }))
    ));
    assert!(grid
        .store()
        .last_settlement(days(1, 5).end())
        .await
        .unwrap()
        .is_none());
    // The same inputs again make the same (voided) settlement: refused.
    let same = (
        standing.period(),
        standing
            .rate()
            .per_btc()
            .to_string()
            .parse::<i64>()
            .unwrap(),
    );
    assert!(matches!(
        settle_at(&grid, &same.0, same.1).await,
        Err(StoreError::Domain(Error::SettlementVoided { id, .. })) if id == standing.id()
    ));
    // A replacement stands, is the chain's last, and once paid cannot be voided.
    let first = settle_at(&grid, &days(1, 2), 91_000).await.unwrap();
    let second = settle_at(&grid, &days(2, 4), 91_000).await.unwrap();
    assert_eq!(
        grid.store()
            .last_settlement(days(1, 5).end())
            .await
            .unwrap()
            .map(|s| s.id().to_string()),
        Some(second.id().to_string())
    );
    let carried: std::collections::BTreeMap<_, _> = first.carried_out();
    for e in second.entries() {
        assert_eq!(
            e.carried_in,
            carried
                .get(&e.prosumer)
                .copied()
                .unwrap_or(settlement::bitcoin::SignedAmount::ZERO)
        );
    }
    grid.mark_paid(first.id(), &"ef".repeat(32)).await.unwrap();
    assert!(matches!(
        grid.void_settlement(first.id(), "too late").await,
        Err(StoreError::Domain(Error::CannotVoidPaid { .. }))
    ));
    let stored = grid.settlement(first.id()).await.unwrap().unwrap();
    assert!(stored.stands());
    assert_eq!(
        stored.paid_by().map(|t| t.to_string()),
        Some("ef".repeat(32))
    );
    assert!(matches!(
        grid.void_settlement("nope", "x").await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A period cleared in EUR is not billed (or settled) in USD: the store
/// keeps the currency of each clearing.
pub async fn a_period_is_billed_in_the_currency_it_was_cleared_in<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    grid.record(community.readings().unwrap()).await.unwrap();
    let period = days(1, 2);
    grid.clear(&period, &tariff(), &Mechanism::MidMarketRate)
        .await
        .unwrap();
    let summaries = grid.summaries(&period).await.unwrap();
    assert!(summaries
        .iter()
        .all(|s| s.currency == Some(tariff().currency())));
    let dollars = Tariff::new("USD".parse().unwrap(), grid_prices());
    assert!(matches!(
        grid.bill(&period, &dollars).await,
        Err(StoreError::Domain(Error::ClearedInOtherCurrency { cleared, billed, .. }))
            if cleared == "EUR" && billed == "USD"
    ));
    let rate = ExchangeRate::new(
        Decimal::from(90_000),
        dollars.currency(),
        "test",
        period.end(),
    )
    .unwrap();
    let operator = regtest_address(77, OutputType::P2wpkh);
    assert!(matches!(
        grid.settle(&period, &dollars, &rate, Network::Regtest, &operator)
            .await,
        Err(StoreError::Domain(Error::ClearedInOtherCurrency { .. }))
    ));
    assert!(grid
        .store()
        .last_settlement(period.end())
        .await
        .unwrap()
        .is_none());
}

/// Of two concurrent payments of one settlement with different
/// transactions, one is recorded and the other refused.
pub async fn one_of_two_concurrent_payments_stands<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    grid.record(community.readings().unwrap()).await.unwrap();
    grid.clear(&days(1, 2), &tariff(), &Mechanism::MidMarketRate)
        .await
        .unwrap();
    let s = settle_at(&grid, &days(1, 2), 90_000).await.unwrap();
    let (t1, t2) = ("01".repeat(32), "02".repeat(32));
    let (x, y) = tokio::join!(grid.mark_paid(s.id(), &t1), grid.mark_paid(s.id(), &t2));
    let paid = match (&x, &y) {
        (Ok(p), Err(StoreError::Domain(Error::AlreadyPaid { .. })))
        | (Err(StoreError::Domain(Error::AlreadyPaid { .. })), Ok(p)) => p.paid_by(),
        other => panic!("expected one payment to stand: {other:?}"),
    };
    assert_eq!(
        grid.settlement(s.id()).await.unwrap().unwrap().paid_by(),
        paid
    );
}

/// Of two concurrent registrations of one id, exactly one succeeds and
/// its record is the one stored.
pub async fn concurrent_registrations_admit_one<S: Store>(store: S) {
    let grid = Grid::new(store, TimeframeLength::default());
    for round in 0..5 {
        let id = format!("p{round}");
        let first = Prosumer::new(&id, "First", ProsumerKind::Household, day(1)).unwrap();
        let second = Prosumer::new(&id, "Second", ProsumerKind::Company, day(1)).unwrap();
        let (a, b) = tokio::join!(grid.register(first), grid.register(second));
        let winner = match (&a, &b) {
            (Ok(_), Err(StoreError::Domain(Error::DuplicateProsumer(_)))) => "First",
            (Err(StoreError::Domain(Error::DuplicateProsumer(_))), Ok(_)) => "Second",
            other => panic!("expected exactly one registration of {id}: {other:?}"),
        };
        let stored = grid.refresh_registry().await.unwrap();
        let p = stored.get(&ProsumerId::new(&id).unwrap()).unwrap();
        assert_eq!(p.name(), winner);
    }
}

/// An ingest and a clear of the same timeframes do not interleave: an
/// ingest started while the store clears (here: from inside the clearing,
/// between reading and storing) either waits and is then refused as late,
/// or lands before; every cleared timeframe was cleared from exactly the
/// readings stored for it.
pub async fn ingest_and_clear_do_not_interleave<S: Store + 'static>(store: S) {
    let (grid, community) = community_grid(store, 1).await;
    let grid = Arc::new(grid);
    let (early, late): (Vec<Reading>, Vec<Reading>) = community
        .readings()
        .unwrap()
        .into_iter()
        .partition(|r| r.prosumer().as_str() < "house-0003");
    let late_count = late.len();
    grid.record(early).await.unwrap();
    let period = days(1, 2);
    let registry = grid.shared_registry().await.unwrap();
    let order = registry.id_order();
    let t = tariff();
    let pending = std::sync::Mutex::new(Some(late));
    let ingest = std::sync::Mutex::new(None);
    let compute = |todo: &[(Timeframe, &ReadingRow)]| {
        if let Some(late) = pending.lock().unwrap().take() {
            let g = grid.clone();
            *ingest.lock().unwrap() = Some(tokio::spawn(async move { g.record(late).await }));
            // This worker waits; the other one runs the ingest meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        clear_reading_rows(todo, &order, &t, &Mechanism::SupplyDemandRatio, 1)
    };
    let counts = grid
        .store()
        .clear_with(&period, &registry, &compute)
        .await
        .unwrap();
    assert_eq!(counts.cleared, period.len());
    let handle = ingest.lock().unwrap().take().unwrap();
    match handle.await.unwrap() {
        Ok(report) => assert_eq!(report.inserted, late_count),
        Err(StoreError::Domain(Error::LateReading { .. })) => {}
        Err(e) => panic!("unexpected {e}"),
    }
    let cleared = grid.cleared_rows(&period).await.unwrap();
    let stored = grid
        .store()
        .reading_rows(&period, &cleared.registry)
        .await
        .unwrap();
    assert_eq!(cleared.rows.len(), period.len());
    for ((used, _), now) in cleared.rows.iter().zip(&stored) {
        assert_eq!(
            used.as_ref(),
            now.as_ref(),
            "a reading stored but not cleared"
        );
    }
}

/// Runs every test of the suite against the store `make()` returns.
/// A test wallet's public descriptor (a tpub derived from a fixed seed).
fn test_wallet() -> settlement::OperatorWallet {
    use settlement::bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
    use settlement::bitcoin::secp256k1::Secp256k1;
    use settlement::bitcoin::NetworkKind;
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(NetworkKind::Test, &[9u8; 32]).unwrap();
    let path: DerivationPath = "m/84'/1'/0'".parse().unwrap();
    let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
    let descriptor = format!(
        "wpkh([{}/84'/1'/0']{xpub}/<0;1>/*)",
        master.fingerprint(&secp)
    );
    settlement::OperatorWallet::new(&descriptor, None, Network::Regtest).unwrap()
}

/// Settlements made with the operator's wallet give each invoice a fresh
/// address: the next settlement starts after the highest index any
/// earlier one used, read back from the store; settling again returns the
/// stored settlement; a settlement made without the wallet changes
/// nothing; after a voiding, the replacement starts past the voided
/// settlement's indices; two settlements made
/// at once take different indices.
pub async fn wallet_settlements_never_reuse_an_address<S: Store>(store: S) {
    let (grid, community) = community_grid(store, 5).await;
    grid.record(community.readings().unwrap()).await.unwrap();
    let t = tariff();
    grid.clear(&days(1, 6), &t, &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
    let wallet = test_wallet();
    let policy = settlement::PayoutPolicy::default();
    let rate = |p: &TimeRange| {
        ExchangeRate::new(Decimal::from(90_000), t.currency(), "test", p.end()).unwrap()
    };
    assert_eq!(
        grid.next_wallet_indices(&wallet).await.unwrap(),
        settlement::NextIndices::default()
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut all = Vec::new();
    for d in 1..3 {
        let p = days(d, d + 1);
        let s = grid
            .settle_with_wallet(&p, &t, &rate(&p), &wallet, &policy)
            .await
            .unwrap();
        let r = s.wallet().cloned().unwrap();
        assert!(!r.invoices.is_empty());
        for inv in s.invoices() {
            assert!(
                seen.insert(inv.address.to_string()),
                "{} reused",
                inv.address
            );
            assert_eq!(
                inv.address,
                wallet.receive_address(inv.index.unwrap()).unwrap()
            );
        }
        // Read back from the store: the record and the next indices.
        assert_eq!(grid.settlement(s.id()).await.unwrap().as_ref(), Some(&s));
        let next = grid.next_wallet_indices(&wallet).await.unwrap();
        assert_eq!(
            (next.receive, next.change),
            (r.next_index, r.next_change_index)
        );
        all.push(s);
    }
    assert_eq!(
        all[1].wallet().unwrap().first_index,
        all[0].wallet().unwrap().next_index
    );
    // Settling the first day again gives the stored settlement.
    let p = days(1, 2);
    assert_eq!(
        grid.settle_with_wallet(&p, &t, &rate(&p), &wallet, &policy)
            .await
            .unwrap(),
        all[0]
    );
    // Void the second day and settle it again at another rate: the store
    // still knows the voided settlement's indices, so the replacement,
    // given no floor, starts after them.
    let voided = grid
        .void_settlement(all[1].id(), "wrong rate")
        .await
        .unwrap();
    let past_voided = settlement::NextIndices::default().after(&voided, &wallet.id());
    assert_eq!(
        grid.next_wallet_indices(&wallet).await.unwrap(),
        past_voided
    );
    let p = days(2, 3);
    let bills = grid.bill(&p, &t).await.unwrap();
    let dearer = ExchangeRate::new(Decimal::from(95_000), t.currency(), "test", p.end()).unwrap();
    let again = grid
        .settle_bills_with_wallet(&bills, &dearer, &wallet, &policy)
        .await
        .unwrap();
    assert_eq!(again.wallet().unwrap().first_index, past_voided.receive);
    for inv in again.invoices() {
        assert!(
            seen.insert(inv.address.to_string()),
            "{} reused",
            inv.address
        );
    }
    // A settlement without the wallet leaves its indices as they are.
    let p = days(3, 4);
    let plain = grid
        .settle(
            &p,
            &t,
            &rate(&p),
            Network::Regtest,
            &regtest_address(77, OutputType::P2wpkh),
        )
        .await
        .unwrap();
    assert!(plain.wallet().is_none());
    let next = grid.next_wallet_indices(&wallet).await.unwrap();
    assert_eq!(next.receive, again.wallet().unwrap().next_index);
    // Two settlements of other periods at once through the grid take
    // different indices.
    let (p4, p5) = (days(4, 5), days(5, 6));
    let (r4, r5) = (rate(&p4), rate(&p5));
    let (a, b) = tokio::join!(
        grid.settle_with_wallet(&p4, &t, &r4, &wallet, &policy),
        grid.settle_with_wallet(&p5, &t, &r5, &wallet, &policy),
    );
    for s in [a.unwrap(), b.unwrap()] {
        for inv in s.invoices() {
            assert!(
                seen.insert(inv.address.to_string()),
                "{} reused",
                inv.address
            );
        }
    }
}

/// A member's BOLT12 payout offer is stored and read back by every store:
/// on registration (one and many), replaced and removed by an update; a
/// member without one reads back without one.
pub async fn payout_offers_round_trip<S: Store>(store: S) {
    use microgrid_core::lightning::PayoutOffer;
    // Test vectors of the `lightning` crate: a testnet offer and a minimal
    // mainnet one, both without amount.
    let testnet: PayoutOffer = "lno1qgsyxjtl6luzd9t3pr62xr7eemp6awnejusgf6gw45q75vcfqqqqqqq2p32x2um5ypmx2cm5dae8x93pqthvwfzadd7jejes8q9lhc4rvjxd022zv5l44g6qah82ru5rdpnpj"
        .parse()
        .unwrap();
    let mainnet: PayoutOffer = "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese"
        .parse()
        .unwrap();
    let grid = Grid::new(store, TimeframeLength::default());
    let member = |id: &str| Prosumer::new(id, id, ProsumerKind::Household, day(1)).unwrap();
    let a = member("a")
        .with_payout(regtest_address(1, OutputType::P2wpkh))
        .with_offer(testnet.clone());
    let b = member("b");
    let c = member("c").with_offer(mainnet.clone());
    grid.register(a.clone()).await.unwrap();
    grid.register_all(vec![b.clone(), c.clone()]).await.unwrap();
    let reg = grid.registry().await.unwrap();
    assert_eq!(reg.by_index(), [a.clone(), b.clone(), c.clone()]);
    assert_eq!(reg.get(a.id()).unwrap().offer(), Some(&testnet));
    assert_eq!(reg.get(b.id()).unwrap().offer(), None);

    let a2 = a.with_offer(mainnet.clone());
    grid.update(a2.clone()).await.unwrap();
    let c2 = c.without_offer();
    grid.update(c2.clone()).await.unwrap();
    let reg = grid.registry().await.unwrap();
    assert_eq!(reg.get(a2.id()).unwrap(), &a2);
    assert_eq!(reg.get(c2.id()).unwrap().offer(), None);
}

macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn registry_round_trips() {
                super::registry_round_trips($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn payout_offers_round_trip() {
                super::payout_offers_round_trip($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ingest_is_idempotent_and_refuses_conflicts() {
                super::ingest_is_idempotent_and_refuses_conflicts($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn clearing_twice_stores_one_result() {
                super::clearing_twice_stores_one_result($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_three_views_round_trip() {
                super::the_three_views_round_trip($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extreme_values_round_trip() {
                super::extreme_values_round_trip($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_failed_clearing_write_leaves_nothing() {
                super::a_failed_clearing_write_leaves_nothing($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_columnar_path_equals_the_core() {
                super::the_columnar_path_equals_the_core($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn register_all_is_all_or_nothing() {
                super::register_all_is_all_or_nothing($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_late_reading_is_refused() {
                super::a_late_reading_is_refused($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_open_timeframe_cannot_be_cleared() {
                super::an_open_timeframe_cannot_be_cleared($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_settlement_stands_per_period() {
                super::one_settlement_stands_per_period($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_period_is_billed_in_the_currency_it_was_cleared_in() {
                super::a_period_is_billed_in_the_currency_it_was_cleared_in($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_of_two_concurrent_payments_stands() {
                super::one_of_two_concurrent_payments_stands($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_registrations_admit_one() {
                super::concurrent_registrations_admit_one($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ingest_and_clear_do_not_interleave() {
                super::ingest_and_clear_do_not_interleave($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn wallet_settlements_never_reuse_an_address() {
                super::wallet_settlements_never_reuse_an_address($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_month_settles_end_to_end() {
                super::a_month_settles_end_to_end($make).await
            }
        }
    };
}

conformance!(memory, MemoryStore::new());

#[cfg(feature = "sqlite")]
conformance!(sqlite, {
    // Each test gets its own file, kept until the process ends.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    SqliteStore::open(&format!("sqlite:{}", dir.path().join("grid.db").display()))
        .await
        .unwrap()
});

/// The URL of the test PostgreSQL server; the test fails (never skips)
/// without it.
#[cfg(feature = "postgres")]
fn postgres_url() -> String {
    std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
        "MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/test-all, or ./scripts/databases run -- cargo test --all-features",
    )
}

#[cfg(feature = "postgres")]
static SCHEMAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(feature = "postgres")]
conformance!(postgres, {
    // Each test in its own schema of the shared server.
    let n = SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let schema = format!(
        "t{}_{}_{}",
        std::process::id(),
        n,
        Utc::now().timestamp_micros()
    );
    PostgresStore::open_in_schema(&postgres_url(), &schema)
        .await
        .unwrap()
});

/// The URL of the test MongoDB server; the test fails (never skips)
/// without it.
#[cfg(feature = "mongodb")]
fn mongodb_url() -> String {
    std::env::var("MICROGRID_TEST_MONGODB_URL").expect(
        "MICROGRID_TEST_MONGODB_URL is not set: run ./scripts/test-all, or ./scripts/databases run -- cargo test --all-features",
    )
}

#[cfg(feature = "mongodb")]
static DATABASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(feature = "mongodb")]
conformance!(mongo, {
    // Each test in its own database of the shared server.
    let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let client = ::mongodb::Client::with_uri_str(&mongodb_url())
        .await
        .unwrap();
    MongoStore::open_database(
        client,
        &format!(
            "t{}_{}_{}",
            std::process::id(),
            n,
            Utc::now().timestamp_micros()
        ),
    )
    .await
    .unwrap()
});

#[cfg(feature = "sqlite")]
conformance!(routed_memory_sqlite, {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let sqlite = format!("sqlite:{}", dir.path().join("ledger.db").display());
    RoutedStore::open("memory:", "memory:", &sqlite)
        .await
        .unwrap()
});

// The seed system's three databases: registry in SQLite, readings in
// MongoDB, clearing results and settlements in PostgreSQL.
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "mongodb"))]
conformance!(routed_three_databases, {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let n = SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tag = format!(
        "r{}_{}_{}",
        std::process::id(),
        n,
        Utc::now().timestamp_micros()
    );
    let client = ::mongodb::Client::with_uri_str(&mongodb_url())
        .await
        .unwrap();
    RoutedStore::new(
        AnyStore::open(&format!(
            "sqlite:{}",
            dir.path().join("registry.db").display()
        ))
        .await
        .unwrap(),
        AnyStore::Mongo(MongoStore::open_database(client, &tag).await.unwrap()),
        AnyStore::Postgres(
            PostgresStore::open_in_schema(&postgres_url(), &tag)
                .await
                .unwrap(),
        ),
    )
});
