//! What the conformance suite does not reach in this adapter: one
//! prosumer's allocations through the multikey index, `write_readings`,
//! the store-level duplicate check, batches written in two phases (and
//! what a failed or abandoned one leaves: nothing), settlement claims,
//! and races between tasks (settles, registrations, ingest against
//! clear). Like the suite, these need the test server
//! (`MICROGRID_TEST_MONGODB_URL`, set by `./scripts/databases run --
//! ...`) and fail without it.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use futures::TryStreamExt;
use microgrid_core::settlement::{ExchangeRate, Settlement};
use microgrid_core::simulate::{regtest_address, Community};
use microgrid_core::tariff::Tariff;
use microgrid_core::{
    Error, GridPrices, IngestPlan, Mechanism, Network, OutputType, Prosumer, ProsumerKind, Reading,
    TimeRange, Timeframe, TimeframeLength, Wh,
};
use mongodb::bson::{doc, Document};
use mongodb::Client;
use rust_decimal::Decimal;

use super::ledger::one_prosumer;
use super::readings::{merge_frame, FrameWrite, ReadingFrame};
use super::{bson_time, Failed, MongoStore, IDS_INDEX};
use crate::error::StoreError;
use crate::grid::Grid;
use crate::traits::{LedgerStore, ReadingStore, RegistryStore};

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A store in a database of its own on the test server.
async fn store() -> MongoStore {
    let url = std::env::var("MICROGRID_TEST_MONGODB_URL").expect(
        "MICROGRID_TEST_MONGODB_URL is not set: run ./scripts/databases run -- cargo test --all-features",
    );
    let client = Client::with_uri_str(&url).await.unwrap();
    let n = DATABASES.fetch_add(1, Ordering::SeqCst);
    let name = format!(
        "u{}_{}_{}",
        std::process::id(),
        n,
        Utc::now().timestamp_micros()
    );
    MongoStore::open_database(client, &name).await.unwrap()
}

fn prices() -> GridPrices {
    GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap()).unwrap()
}

fn june(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
}

/// A grid of five households with one day of readings recorded.
async fn recorded_day(store: MongoStore) -> (Grid<MongoStore>, Community, Vec<Reading>) {
    let community = Community::new(5, june(1), 1, 7);
    let grid = Grid::new(store, TimeframeLength::default());
    grid.register_all(community.registry().unwrap().iter().cloned().collect())
        .await
        .unwrap();
    let readings = community.readings().unwrap();
    let report = grid.record(readings.clone()).await.unwrap();
    assert_eq!(report.inserted, readings.len());
    (grid, community, readings)
}

fn sorted(mut readings: Vec<Reading>) -> Vec<Reading> {
    readings.sort_by(|a, b| {
        (a.timeframe().start(), a.prosumer()).cmp(&(b.timeframe().start(), b.prosumer()))
    });
    readings
}

fn plus(r: &Reading, wh: i64) -> Reading {
    Reading::new(
        r.prosumer().clone(),
        r.timeframe(),
        Wh::new(r.produced().get() + wh),
        r.consumed(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prosumers_allocations_come_through_the_ids_index() {
    let (grid, community, _) = recorded_day(store().await).await;
    let day = community.range().unwrap();
    grid.clear(&day, &prices(), &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
    let id = &community.ids()[2];
    let noon = TimeRange::new(
        day.start() + Duration::hours(12),
        day.start() + Duration::hours(14),
        day.length(),
    )
    .unwrap();
    let all = grid.store().allocations(&noon, None).await.unwrap();
    let mine = grid.store().allocations(&noon, Some(id)).await.unwrap();
    assert_eq!(mine.len(), 8);
    assert_eq!(
        mine,
        all.into_iter()
            .filter(|a| &a.prosumer == id)
            .collect::<Vec<_>>()
    );
    // The query scans the multikey index.
    let plan = grid
        .store()
        .db
        .run_command(doc! {
            "explain": {
                "aggregate": "cleared_frames",
                "pipeline": one_prosumer(&noon, id),
                "cursor": {},
                "hint": IDS_INDEX,
            },
            "verbosity": "queryPlanner",
        })
        .await
        .unwrap()
        .to_string();
    assert!(
        plan.contains("IXSCAN") && plan.contains(IDS_INDEX),
        "{plan}"
    );
    // A prosumer with no allocation there has none.
    let nobody = "nobody".parse().unwrap();
    assert!(grid
        .store()
        .allocations(&noon, Some(&nobody))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_readings_merges_into_the_timeframe_documents() {
    let store = store().await;
    let community = Community::new(4, june(1), 1, 3);
    let readings = community.readings().unwrap();
    let day = community.range().unwrap();
    let (first, rest) = readings.split_at(100);
    for part in [first, rest] {
        let plan = IngestPlan {
            insert: part.to_vec(),
            replace: Vec::new(),
            unchanged: 0,
        };
        store.write_readings(&plan).await.unwrap();
    }
    assert_eq!(
        store.readings(&day).await.unwrap(),
        sorted(readings.clone())
    );
    let corrected = plus(&readings[7], 5);
    let plan = IngestPlan {
        insert: Vec::new(),
        replace: vec![corrected.clone()],
        unchanged: 0,
    };
    store.write_readings(&plan).await.unwrap();
    let mut expected = readings.clone();
    expected[7] = corrected;
    assert_eq!(store.readings(&day).await.unwrap(), sorted(expected));
    // A plan that mixes lengths in one timeframe is refused.
    let hour = Timeframe::new(day.start(), TimeframeLength::new(60).unwrap()).unwrap();
    let long = Reading::new(readings[0].prosumer().clone(), hour, Wh::ZERO, Wh::ZERO).unwrap();
    let plan = IngestPlan {
        insert: vec![readings[1].clone(), long],
        replace: Vec::new(),
        unchanged: 0,
    };
    assert!(matches!(
        store.write_readings(&plan).await,
        Err(StoreError::Domain(
            microgrid_core::Error::MixedTimeframeLength { .. }
        ))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserting_a_stored_prosumer_inserts_none_of_the_batch() {
    let store = store().await;
    let p = |id: &str| Prosumer::new(id, id, ProsumerKind::Household, june(1)).unwrap();
    store.insert_prosumers(&[p("a"), p("b")]).await.unwrap();
    let err = store.insert_prosumers(&[p("c"), p("b")]).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Domain(microgrid_core::Error::DuplicateProsumer(id)) if id == "b"),
        "{err}"
    );
    let err = store.insert_prosumers(&[p("d"), p("d")]).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::Domain(microgrid_core::Error::DuplicateProsumer(_))
    ));
    let ids: Vec<String> = store
        .registry()
        .await
        .unwrap()
        .iter()
        .map(|p| p.id().to_string())
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_a_transaction_is_written_in_several() {
    // About 250 bytes per timeframe document: a day is some 25 transactions.
    let (grid, community, readings) = recorded_day(store().await.with_txn_bytes(1_000)).await;
    let day = community.range().unwrap();
    assert_eq!(
        grid.store().readings(&day).await.unwrap(),
        sorted(readings.clone())
    );
    assert_eq!(
        grid.record(readings.clone()).await.unwrap().unchanged,
        readings.len()
    );
    let corrected: Vec<Reading> = readings.iter().map(|r| plus(r, 1)).collect();
    let report = grid.record(corrected.clone()).await.unwrap();
    assert_eq!(report.replaced, readings.len());
    assert_eq!(
        grid.store().readings(&day).await.unwrap(),
        sorted(corrected.clone())
    );
    // Clearing stores in several transactions too, each timeframe once.
    let report = grid
        .clear(&day, &prices(), &Mechanism::MidMarketRate)
        .await
        .unwrap();
    assert_eq!(report.cleared, 96);
    assert_eq!(grid.store().cleared(&day).await.unwrap().len(), 96);
    // A late correction is refused and changes nothing.
    let late: Vec<Reading> = corrected.iter().map(|r| plus(r, 1)).collect();
    assert!(grid.record(late).await.is_err());
    assert_eq!(
        grid.store().readings(&day).await.unwrap(),
        sorted(corrected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_of_another_timeframe_length_is_refused() {
    let (grid, community, readings) = recorded_day(store().await).await;
    let hours = Grid::new(grid.store().clone(), TimeframeLength::new(60).unwrap());
    let day = community.range().unwrap();
    let hour = Timeframe::new(day.start(), hours.length()).unwrap();
    let r = Reading::new(readings[0].prosumer().clone(), hour, Wh::ZERO, Wh::ZERO).unwrap();
    let mixed = |e: &StoreError| {
        matches!(
            e,
            StoreError::Domain(microgrid_core::Error::MixedTimeframeLength {
                expected: 60,
                found: 15,
                ..
            })
        )
    };
    let err = hours.record(vec![r]).await.unwrap_err();
    assert!(mixed(&err), "{err}");
    let by_hour = TimeRange::new(day.start(), day.end(), hours.length()).unwrap();
    let registry = hours.registry().await.unwrap();
    let err = hours
        .store()
        .reading_rows(&by_hour, &registry)
        .await
        .unwrap_err();
    assert!(mixed(&err), "{err}");
}

/// The reading documents as stored, by start.
async fn documents(store: &MongoStore) -> Vec<ReadingFrame> {
    store
        .frames()
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// The states of the ingest batches.
async fn batch_states(store: &MongoStore) -> Vec<String> {
    let docs: Vec<Document> = store
        .db
        .collection::<Document>("ingest_batches")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs.iter()
        .map(|d| d.get_str("state").unwrap().to_owned())
        .collect()
}

/// The writes that correct the first reading of each of the first `n`
/// timeframes of `day` by `wh` and add one the day after, planned from
/// what is stored (in a transaction of their own).
async fn corrections(
    store: &MongoStore,
    day: &TimeRange,
    readings: &[Reading],
    n: usize,
    wh: i64,
) -> Vec<FrameWrite> {
    let registry = store.registry().await.unwrap();
    let mut starts: Vec<_> = day.timeframes().take(n).map(|tf| tf.start()).collect();
    starts.push(day.end());
    let mut session = store.transaction().await.unwrap();
    let mut stored = store.load_frames(&mut session, &starts, 900).await.unwrap();
    drop(session);
    let next_day = stored.pop().unwrap();
    let id = readings[0].prosumer();
    let index = registry.index_of(id).unwrap().as_u32();
    let mut writes = Vec::new();
    for (k, old) in stored.into_iter().enumerate() {
        let old = old.unwrap();
        let i = old.frame.ids.iter().position(|x| x == id.as_str()).unwrap();
        let entries = [(index, old.frame.produced[i] + wh, old.frame.consumed[i])];
        let start = bson_time(starts[k]);
        writes.push(
            merge_frame(start, 15, Some(old), &entries, &registry)
                .unwrap()
                .unwrap(),
        );
    }
    let next = bson_time(day.end());
    writes.push(
        merge_frame(next, 15, next_day, &[(index, 1, 2)], &registry)
            .unwrap()
            .unwrap(),
    );
    writes
}

/// Nothing of a batch is left: no pending version, no placeholder.
async fn no_trace_of_batches(store: &MongoStore, day: &TimeRange) {
    let docs = documents(store).await;
    assert!(
        docs.iter().all(|d| d.pending.is_none()),
        "a pending version is left"
    );
    assert!(docs.iter().all(|d| d.rev > 0), "a placeholder is left");
    assert_eq!(docs.len(), day.len(), "a document was added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_leaves_nothing() {
    // One document per transaction: every batch goes through two phases.
    let (grid, community, readings) = recorded_day(store().await.with_txn_bytes(1)).await;
    let store = grid.store();
    let day = community.range().unwrap();
    assert_eq!(batch_states(store).await, ["committed"]);
    no_trace_of_batches(store, &day).await;
    let writes = corrections(store, &day, &readings, 3, 10).await;
    // Another writer changes the third document after the batch was
    // planned: the batch stages two documents, then finds it changed.
    store
        .frames()
        .update_one(
            doc! { "_id": bson_time(day.start() + Duration::minutes(30)) },
            doc! { "$inc": { "rev": 1 } },
        )
        .await
        .unwrap();
    assert!(matches!(
        store.write_batch(&writes, true).await,
        Err(Failed::Conflict)
    ));
    assert_eq!(
        store.readings(&day).await.unwrap(),
        sorted(readings.clone())
    );
    no_trace_of_batches(store, &day).await;
    assert_eq!(batch_states(store).await, ["committed", "aborted"]);
    // A batch that finds a timeframe cleared meanwhile is refused whole,
    // and recording it again says why.
    let writes = corrections(store, &day, &readings, 3, 10).await;
    let first = TimeRange::new(
        day.start(),
        day.start() + Duration::minutes(15),
        day.length(),
    )
    .unwrap();
    grid.clear(&first, &prices(), &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
    assert!(matches!(
        store.write_batch(&writes, true).await,
        Err(Failed::Conflict)
    ));
    assert_eq!(
        store.readings(&day).await.unwrap(),
        sorted(readings.clone())
    );
    no_trace_of_batches(store, &day).await;
    let late: Vec<Reading> = readings.iter().map(|r| plus(r, 1)).collect();
    assert!(matches!(
        grid.record(late).await,
        Err(StoreError::Domain(Error::ConflictingReading { .. }))
    ));
    assert_eq!(store.readings(&day).await.unwrap(), sorted(readings));
    no_trace_of_batches(store, &day).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_invisible_until_committed_and_whole_after() {
    let (grid, community, readings) = recorded_day(store().await.with_txn_bytes(1)).await;
    let store = grid.store();
    let day = community.range().unwrap();
    let registry = grid.registry().await.unwrap();
    // A writer that dies after staging (no commit): nothing shows.
    let writes = corrections(store, &day, &readings, 3, 10).await;
    store
        .batches()
        .insert_one(doc! { "_id": "dead", "state": "pending" })
        .await
        .unwrap();
    for w in &writes {
        store
            .try_stage("dead", std::slice::from_ref(w))
            .await
            .unwrap();
    }
    let staged = documents(store).await;
    assert_eq!(staged.iter().filter(|d| d.pending.is_some()).count(), 4);
    assert_eq!(
        store.readings(&day).await.unwrap(),
        sorted(readings.clone())
    );
    let next = TimeRange::new(day.end(), day.end() + Duration::days(1), day.length()).unwrap();
    assert!(store.readings(&next).await.unwrap().is_empty());
    let rows = store.reading_rows(&day, &registry).await.unwrap();
    assert_eq!(
        rows[0].get(registry.index_of(readings[0].prosumer()).unwrap().get()),
        Some((readings[0].produced(), readings[0].consumed()))
    );
    // A later batch over it stages, commits and is read whole before its
    // versions are moved into place (its writer "dies" after committing).
    let writes = corrections(store, &day, &readings, 3, 20).await;
    store
        .batches()
        .insert_one(doc! { "_id": "late", "state": "pending" })
        .await
        .unwrap();
    store.try_stage("late", &writes).await.unwrap();
    assert_eq!(
        store.readings(&day).await.unwrap(),
        sorted(readings.clone())
    );
    store.try_commit_batch("late", &writes, true).await.unwrap();
    let mut expected = sorted(readings.clone());
    let id = readings[0].prosumer().clone();
    for r in expected.iter_mut().filter(|r| r.prosumer() == &id).take(3) {
        *r = plus(r, 20);
    }
    assert_eq!(store.readings(&day).await.unwrap(), expected);
    assert_eq!(store.readings(&next).await.unwrap().len(), 1);
    let rows = store.reading_rows(&day, &registry).await.unwrap();
    let i = registry.index_of(&id).unwrap().get();
    assert_eq!(
        rows[2].get(i).map(|(p, _)| p),
        Some(expected[2 * 5].produced())
    );
    // A correction of a document holding the committed version applies
    // it first: both land.
    let again = grid.record(vec![plus(&expected[5], 7)]).await.unwrap();
    assert_eq!(again.replaced, 1);
    expected[5] = plus(&expected[5], 7);
    assert_eq!(store.readings(&day).await.unwrap(), expected);
    // A whole day recorded again (itself a batch) overwrites the dead
    // writer's leftovers, and clearing reads what readers read.
    grid.record(expected.clone()).await.unwrap();
    assert_eq!(
        grid.clear(&day, &prices(), &Mechanism::SupplyDemandRatio)
            .await
            .unwrap()
            .cleared,
        96
    );
    let cleared = grid.cleared_rows(&day).await.unwrap();
    let stored = store.reading_rows(&day, &cleared.registry).await.unwrap();
    for ((used, _), now) in cleared.rows.iter().zip(&stored) {
        assert_eq!(used.as_ref(), now.as_ref());
    }
}

fn days(from: u32, to: u32) -> TimeRange {
    let at = |d: u32| Utc.from_utc_datetime(&june(d).and_hms_opt(0, 0, 0).unwrap());
    TimeRange::new(at(from), at(to), TimeframeLength::default()).unwrap()
}

fn tariff() -> Tariff {
    Tariff::new("EUR".parse().unwrap(), prices())
}

/// Settles `period` at `per_btc` EUR per BTC.
async fn settle_at(
    grid: &Grid<MongoStore>,
    period: &TimeRange,
    per_btc: i64,
) -> crate::error::Result<Settlement> {
    let t = tariff();
    let rate =
        ExchangeRate::new(Decimal::from(per_btc), t.currency(), "test", period.end()).unwrap();
    let operator = regtest_address(77, OutputType::P2wpkh);
    grid.settle(period, &t, &rate, Network::Regtest, &operator)
        .await
}

/// A grid of five households with `n` days recorded and cleared.
async fn cleared_days(store: MongoStore, n: u32) -> Grid<MongoStore> {
    let community = Community::new(5, june(1), n, 11);
    let grid = Grid::new(store, TimeframeLength::default());
    let registry = community.registry().unwrap();
    let members = registry
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.clone()
                .with_payout(regtest_address(i as u64, OutputType::P2wpkh))
        })
        .collect();
    grid.register_all(members).await.unwrap();
    grid.record(community.readings().unwrap()).await.unwrap();
    grid.clear(
        &community.range().unwrap(),
        &prices(),
        &Mechanism::SupplyDemandRatio,
    )
    .await
    .unwrap();
    grid
}

/// The settlement ids the claims name, with how many timeframes each.
async fn claims(store: &MongoStore) -> Vec<(String, usize)> {
    let docs: Vec<Document> = store
        .db
        .collection::<Document>("settlement_claims")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for d in docs {
        *by.entry(d.get_str("settlement").unwrap().to_owned())
            .or_default() += 1;
    }
    by.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_overlapping_settlements_exactly_one_stands() {
    let grid = cleared_days(store().await, 4).await;
    for round in 0..3_i64 {
        // Every period holds day 2: each pair overlaps.
        let periods = [
            days(1, 3),
            days(2, 4),
            days(2, 3),
            days(1, 5),
            days(2, 5),
            days(1, 3),
        ];
        let tasks: Vec<_> = periods
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let (grid, p) = (grid.clone(), *p);
                let rate = 90_000 + 1_000 * round + k as i64;
                tokio::spawn(async move { settle_at(&grid, &p, rate).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let stood: Vec<&Settlement> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
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
        assert_eq!(
            claims(grid.store()).await,
            [(standing.id().to_string(), standing.period().len())]
        );
        assert_eq!(
            grid.store()
                .last_settlement(days(1, 6).end())
                .await
                .unwrap(),
            Some(standing.clone())
        );
        grid.void_settlement(standing.id(), "next round")
            .await
            .unwrap();
        assert!(claims(grid.store()).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voided_settlement_frees_its_period_and_a_payment_is_once() {
    let grid = cleared_days(store().await, 3).await;
    let first = settle_at(&grid, &days(1, 3), 90_000).await.unwrap();
    // Settling again returns it; another rate is a conflict.
    assert_eq!(settle_at(&grid, &days(1, 3), 90_000).await.unwrap(), first);
    assert!(matches!(
        settle_at(&grid, &days(2, 4), 95_000).await,
        Err(StoreError::Domain(Error::SettlementConflict { existing, .. })) if existing == first.id()
    ));
    // Voided, its period is free: settling again works and stands.
    grid.void_settlement(first.id(), "wrong rate")
        .await
        .unwrap();
    assert!(grid
        .store()
        .last_settlement(days(1, 4).end())
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        settle_at(&grid, &days(1, 3), 90_000).await,
        Err(StoreError::Domain(Error::SettlementVoided { id, .. })) if id == first.id()
    ));
    assert!(matches!(
        grid.mark_paid(first.id(), &"ab".repeat(32)).await,
        Err(StoreError::Domain(Error::SettlementVoided { .. }))
    ));
    let second = settle_at(&grid, &days(1, 3), 91_000).await.unwrap();
    assert_eq!(claims(grid.store()).await, [(second.id().to_string(), 192)]);
    assert_eq!(
        grid.store()
            .last_settlement(days(1, 4).end())
            .await
            .unwrap(),
        Some(second.clone())
    );
    // Paid once: the same txid again is no change, another is refused,
    // and a paid settlement is not voided; two payments racing: one.
    let (x, y) = {
        let (a, b) = (grid.clone(), grid.clone());
        let (ia, ib) = (second.id().to_string(), second.id().to_string());
        let ta = tokio::spawn(async move { a.mark_paid(&ia, &"01".repeat(32)).await });
        let tb = tokio::spawn(async move { b.mark_paid(&ib, &"02".repeat(32)).await });
        (ta.await.unwrap(), tb.await.unwrap())
    };
    let paid = match (&x, &y) {
        (Ok(p), Err(StoreError::Domain(Error::AlreadyPaid { .. })))
        | (Err(StoreError::Domain(Error::AlreadyPaid { .. })), Ok(p)) => p.paid_by(),
        other => panic!("expected one payment: {other:?}"),
    };
    let txid = paid.unwrap().to_string();
    grid.mark_paid(second.id(), &txid.to_uppercase())
        .await
        .unwrap();
    assert!(matches!(
        grid.mark_paid(second.id(), &"cd".repeat(32)).await,
        Err(StoreError::Domain(Error::AlreadyPaid { .. }))
    ));
    assert!(matches!(
        grid.void_settlement(second.id(), "too late").await,
        Err(StoreError::Domain(Error::CannotVoidPaid { .. }))
    ));
    let stored = grid.settlement(second.id()).await.unwrap().unwrap();
    assert_eq!(stored.paid_by(), paid);
    assert!(stored.stands());
    assert_eq!(claims(grid.store()).await, [(second.id().to_string(), 192)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_stored_before_claims_are_claimed_when_opened() {
    let grid = cleared_days(store().await, 3).await;
    let s = settle_at(&grid, &days(1, 3), 90_000).await.unwrap();
    let store = grid.store();
    // As an earlier version stored it: no claims, no flag.
    store
        .db
        .collection::<Document>("settlement_claims")
        .delete_many(doc! {})
        .await
        .unwrap();
    store
        .db
        .collection::<Document>("settlements")
        .update_one(
            doc! { "_id": &s.id() },
            doc! { "$unset": { "claims": "", "voided": "" } },
        )
        .await
        .unwrap();
    let reopened = MongoStore::open_database(store.client.clone(), store.db.name())
        .await
        .unwrap();
    assert_eq!(claims(&reopened).await, [(s.id().to_string(), 192)]);
    let grid = Grid::new(reopened, TimeframeLength::default());
    assert!(matches!(
        settle_at(&grid, &days(2, 3), 95_000).await,
        Err(StoreError::Domain(Error::SettlementConflict { existing, .. })) if existing == s.id()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_registrations_of_one_id_exactly_one_succeeds() {
    let store = store().await;
    for round in 0..5 {
        let id = format!("p{round}");
        let tasks: Vec<_> = (0..4)
            .map(|k| {
                let store = store.clone();
                let p = Prosumer::new(&id, format!("racer {k}"), ProsumerKind::Household, june(1))
                    .unwrap();
                tokio::spawn(async move { store.insert_prosumers(&[p]).await })
            })
            .collect();
        let mut won = Vec::new();
        for (k, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(()) => won.push(k),
                Err(StoreError::Domain(Error::DuplicateProsumer(d))) => assert_eq!(d, id),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        let registry = store.registry().await.unwrap();
        let stored = registry.get(&id.parse().unwrap()).unwrap();
        assert_eq!(stored.name(), format!("racer {}", won[0]));
    }
    // Only the explicit update replaces a record.
    let p = Prosumer::new("p0", "renamed", ProsumerKind::Company, june(1)).unwrap();
    assert!(store
        .insert_prosumers(std::slice::from_ref(&p))
        .await
        .is_err());
    store.save_prosumer(&p).await.unwrap();
    assert_eq!(store.registry().await.unwrap().get(p.id()).unwrap(), &p);
}

/// Races an ingest of the later households' readings of days 1 and 2
/// against a clear of those days, `rounds` times: every cleared
/// timeframe's stored readings are the ones it was cleared from, and the
/// ingest either landed whole or was refused as late.
async fn ingest_racing_clear(txn_bytes: usize, rounds: usize) {
    for _ in 0..rounds {
        let community = Community::new(5, june(1), 2, 5);
        let grid = Grid::new(
            store().await.with_txn_bytes(txn_bytes),
            TimeframeLength::default(),
        );
        grid.register_all(community.registry().unwrap().iter().cloned().collect())
            .await
            .unwrap();
        let (early, late): (Vec<Reading>, Vec<Reading>) = community
            .readings()
            .unwrap()
            .into_iter()
            .partition(|r| r.prosumer().as_str() < "house-0004");
        grid.record(early.clone()).await.unwrap();
        let period = community.range().unwrap();
        let (g1, g2, l) = (grid.clone(), grid.clone(), late.clone());
        let ingest = tokio::spawn(async move { g1.record(l).await });
        let clear = tokio::spawn(async move {
            g2.clear(&period, &prices(), &Mechanism::SupplyDemandRatio)
                .await
        });
        let (ingest, clear) = (ingest.await.unwrap(), clear.await.unwrap());
        assert_eq!(clear.unwrap().cleared, period.len());
        let stored = grid.store().readings(&period).await.unwrap();
        match ingest {
            Ok(report) => {
                assert_eq!(report.inserted, late.len());
                assert_eq!(stored.len(), early.len() + late.len());
            }
            Err(StoreError::Domain(Error::LateReading { .. })) => {
                assert_eq!(
                    stored,
                    sorted(early.clone()),
                    "a refused ingest left readings"
                );
            }
            Err(e) => panic!("unexpected {e}"),
        }
        let cleared = grid.cleared_rows(&period).await.unwrap();
        let now = grid
            .store()
            .reading_rows(&period, &cleared.registry)
            .await
            .unwrap();
        assert_eq!(cleared.rows.len(), period.len());
        for ((used, _), now) in cleared.rows.iter().zip(&now) {
            assert_eq!(used.as_ref(), now.as_ref());
        }
        let docs = documents(grid.store()).await;
        assert!(docs.iter().all(|d| d.pending.is_none() && d.rev > 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_racing_a_clear_lands_before_it_or_is_refused() {
    ingest_racing_clear(super::TXN_BYTES, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_racing_a_clear_lands_before_it_or_is_refused() {
    // About 20 documents per transaction: the ingest is a batch of ten.
    ingest_racing_clear(5_000, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_stores_no_result_of_readings_that_changed() {
    let (grid, community, readings) = recorded_day(store().await).await;
    let store = grid.store();
    let day = community.range().unwrap();
    let registry = grid.registry().await.unwrap();
    // A clearing function that changes a reading of the timeframes it is
    // given before returning (as an ingest committing meanwhile would):
    // those results are not stored; the timeframes are cleared again.
    let calls = AtomicUsize::new(0);
    let handle = tokio::runtime::Handle::current();
    let order = registry.id_order();
    let changed = plus(&readings[0], 100);
    let clear = |todo: &[(Timeframe, &microgrid_core::batch::ReadingRow)]| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            let (s, r, handle) = (store.clone(), changed.clone(), handle.clone());
            std::thread::spawn(move || {
                handle.block_on(async move {
                    let plan = IngestPlan {
                        insert: Vec::new(),
                        replace: vec![r],
                        unchanged: 0,
                    };
                    s.write_readings(&plan).await
                })
            })
            .join()
            .unwrap()
            .unwrap();
        }
        microgrid_core::clear_reading_rows(
            todo,
            &order,
            &prices(),
            &Mechanism::SupplyDemandRatio,
            1,
        )
    };
    let counts = store.clear_with(&day, &registry, &clear).await.unwrap();
    assert_eq!(counts.cleared, 96);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let cleared = grid.cleared_rows(&day).await.unwrap();
    let now = store.reading_rows(&day, &cleared.registry).await.unwrap();
    for ((used, _), now) in cleared.rows.iter().zip(&now) {
        assert_eq!(used.as_ref(), now.as_ref());
    }
    let i = registry.index_of(changed.prosumer()).unwrap().get();
    let k = ((changed.timeframe().start() - day.start()).num_minutes() / 15) as usize;
    assert_eq!(
        cleared.rows[k].0.get(i),
        Some((changed.produced(), changed.consumed()))
    );
    // Clearing again clears nothing.
    let again = store.clear_with(&day, &registry, &clear).await.unwrap();
    assert_eq!((again.cleared, again.already_cleared), (0, 96));
}

/// The per-timeframe collections would be sharded on `{start: 1}` (see
/// the module documentation). The test server is one node, so this shows
/// what a router would go by: the store's range filters bound `start`
/// first, and the server answers them from the `{start: 1}` index that
/// the shard key needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_filter_on_the_shard_key() {
    let (grid, community, _) = recorded_day(store().await).await;
    let day = community.range().unwrap();
    grid.clear(&day, &prices(), &Mechanism::SupplyDemandRatio)
        .await
        .unwrap();
    let noon = TimeRange::new(
        day.start() + Duration::hours(12),
        day.start() + Duration::hours(14),
        day.length(),
    )
    .unwrap();
    let range = super::starts_in(noon.start(), noon.end());
    let bounds = doc! { "$gte": bson_time(noon.start()), "$lt": bson_time(noon.end()) };
    assert_eq!(range, doc! { "start": bounds.clone() });
    // One prosumer's allocations: the range first, then the id.
    let id = &community.ids()[2];
    let pipeline = one_prosumer(&noon, id);
    let matched = pipeline[0].get_document("$match").unwrap();
    assert_eq!(matched.keys().next().map(String::as_str), Some("start"));
    assert_eq!(matched.get_document("start").unwrap(), &bounds);
    let db = &grid.store().db;
    for collection in ["reading_frames", "cleared_frames"] {
        let indexes = db
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .unwrap();
        assert!(indexes.iter().any(|i| i == "start_1"), "{indexes:?}");
        let plan = db
            .run_command(doc! {
                "explain": { "find": collection, "filter": range.clone() },
                "verbosity": "queryPlanner",
            })
            .await
            .unwrap();
        let winning = plan
            .get_document("queryPlanner")
            .and_then(|q| q.get_document("winningPlan"))
            .unwrap()
            .to_string();
        assert!(
            winning.contains("IXSCAN") && winning.contains("\"start_1\""),
            "{collection}: {plan}"
        );
    }
}
