//! What the conformance suite does not reach in this adapter: one
//! prosumer's allocations through the multikey index, `write_readings`,
//! the store-level duplicate check, batches written in several
//! transactions, and undoing those when one of them fails. Like the
//! suite, these need the test server (`MICROGRID_TEST_MONGODB_URL`, set by
//! `./scripts/databases run -- ...`) and fail without it.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, NaiveDate, Utc};
use futures::TryStreamExt;
use microgrid_core::simulate::Community;
use microgrid_core::{
    GridPrices, IngestPlan, Mechanism, Prosumer, ProsumerKind, Reading, TimeRange, Timeframe,
    TimeframeLength, Wh,
};
use mongodb::bson::doc;
use mongodb::Client;

use super::ledger::one_prosumer;
use super::readings::{merge_frame, ReadingFrame};
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
async fn a_failed_transaction_undoes_what_the_earlier_ones_wrote() {
    // One document per transaction.
    let (grid, community, readings) = recorded_day(store().await.with_txn_bytes(1)).await;
    let store = grid.store();
    let day = community.range().unwrap();
    let registry = grid.registry().await.unwrap();
    let starts: Vec<_> = day.timeframes().take(3).map(|tf| tf.start()).collect();
    let mut session = store.transaction().await.unwrap();
    let stored = store.load_frames(&mut session, &starts, 900).await.unwrap();
    drop(session);
    // Corrections of the first two timeframes, a new timeframe the next
    // day, and then a write that finds its document changed (a `rev`
    // that is not the stored one).
    let index = registry.index_of(readings[0].prosumer()).unwrap().as_u32();
    let mut writes = Vec::new();
    for (k, old) in stored.into_iter().enumerate() {
        let start = bson_time(starts[k]);
        let mut old: ReadingFrame = old.unwrap();
        let i = old
            .ids
            .iter()
            .position(|id| id == readings[0].prosumer().as_str());
        let entries = [(index, old.produced[i.unwrap()] + 10, 0)];
        if k == 2 {
            old.rev += 1;
        }
        writes.push(
            merge_frame(start, 15, Some(old), &entries, &registry)
                .unwrap()
                .unwrap(),
        );
        if k == 0 {
            let next = bson_time(day.end());
            writes.push(
                merge_frame(next, 15, None, &entries, &registry)
                    .unwrap()
                    .unwrap(),
            );
        }
    }
    assert!(matches!(
        store.write_frames_chunked(&writes).await,
        Err(Failed::Conflict)
    ));
    assert_eq!(store.readings(&day).await.unwrap(), sorted(readings));
    let revs: Vec<i64> = store
        .frames()
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<ReadingFrame>>()
        .await
        .unwrap()
        .iter()
        .map(|f| f.rev)
        .collect();
    assert_eq!(revs, vec![1; 96], "every document as it was, none added");
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
