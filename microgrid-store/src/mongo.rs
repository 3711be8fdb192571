//! MongoDB through the official driver, in compact documents: one
//! document per timeframe for its readings and one per cleared timeframe
//! for its result, each holding the prosumers as parallel arrays.
//!
//! # Documents
//!
//! | collection | `_id` | fields |
//! | --- | --- | --- |
//! | `prosumers` | id | name, kind, dates, payout address |
//! | `reading_frames` | start | `start`, `length_minutes`, `rev`, `ids`, `produced`, `consumed` |
//! | `cleared_frames` | start | `start`, `summary` (energies, counts, `Decimal128` prices), `ids`, `produced`, `consumed`, `community_wh` |
//! | `settlements` | id | period, hash, payment, the settlement as JSON |
//!
//! `ids` are sorted; the arrays are `Int64` and as long as `ids`. The
//! `_id` (a timeframe's start) keeps one document per timeframe; `start`
//! repeats it under an index of its own, `{start: 1}`, which range
//! queries use (the MongoDB-wire test server scans the whole collection
//! for a range of `_id`s). A prosumer's allocations are found through the
//! multikey index `{ids: 1, start: 1}` of `cleared_frames` and projected
//! to that prosumer's elements on the server. That index holds a key per
//! allocation, which makes it most of the cost of storing a clearing.
//! `rev` counts the writes of a reading document: writes that do not
//! happen in the transaction that read the document are conditional on
//! it (see below).
//!
//! # Transactions
//!
//! A stage reads and writes in one multi-document transaction, retried
//! with back-off when it loses to another writer (a transient error). A
//! server refuses a transaction whose writes do not fit its cache
//! (`TransactionTooLargeForCache`), so writes are cut into transactions of
//! at most 16 MiB of documents (`TXN_BYTES`):
//!
//! - recording checks the whole batch against the documents of its span
//!   (read in one transaction) before anything is written, so nothing of
//!   a rejected batch is stored. A batch whose documents fit one
//!   transaction is written in that same transaction. A larger one is
//!   written in several, each document on condition that its `rev` is
//!   still the one that was read; if one of them fails or loses, what the
//!   earlier ones wrote is undone (documents put back as they were, again
//!   on condition of `rev`) and the batch is recorded again from the
//!   start. Only a process that dies between those transactions leaves
//!   part of a large batch.
//! - storing cleared timeframes writes each timeframe once (its `_id`); a
//!   call writes its timeframes in as few transactions as fit.
//!
//! One document holds a timeframe of every prosumer, so a timeframe must
//! fit MongoDB's 16 MiB document limit: about 250,000 prosumers.

mod ledger;
mod readings;
#[cfg(test)]
mod tests;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::{Price, Prosumer, Registry};
use mongodb::bson::{doc, Bson, DateTime as BsonTime, Decimal128, Document};
use mongodb::error::{
    ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use mongodb::options::IndexOptions;
use mongodb::{Client, ClientSession, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::rows::{corrupt, date, db, registry, ProsumerRow};
use crate::traits::RegistryStore;

/// The most bytes of documents one transaction writes (the servers'
/// limit is a share of their cache; 16 MiB stays well inside it).
const TXN_BYTES: usize = 16 << 20;

/// How often a transaction that loses to another writer is tried.
const ATTEMPTS: u32 = 50;

/// The multikey index that finds a prosumer's cleared timeframes.
const IDS_INDEX: &str = "ids_1_start_1";

/// A store in one MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
    /// The most bytes of documents one transaction writes.
    txn_bytes: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProsumerDoc {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    kind: String,
    joined: String,
    left_on: Option<String>,
    payout_address: Option<String>,
    payout_network: Option<String>,
}

impl ProsumerDoc {
    fn of(p: &Prosumer) -> ProsumerDoc {
        ProsumerDoc {
            id: p.id().to_string(),
            name: p.name().to_owned(),
            kind: p.kind().as_str().to_owned(),
            joined: p.joined().to_string(),
            left_on: p.left().map(|d| d.to_string()),
            payout_address: p.payout().map(|a| a.as_str().to_owned()),
            payout_network: p.payout().map(|a| a.network().as_str().to_owned()),
        }
    }
}

/// A document with only its `_id` (a timeframe's start).
#[derive(Debug, Deserialize)]
struct StartOnly {
    #[serde(rename = "_id")]
    start: BsonTime,
}

/// Any document with only its `_id` (as a string).
#[derive(Debug, Deserialize)]
struct IdOnly {
    #[serde(rename = "_id")]
    id: String,
}

fn bson_time(t: DateTime<Utc>) -> BsonTime {
    BsonTime::from_millis(t.timestamp_millis())
}

fn chrono_time(t: BsonTime) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).ok_or_else(|| corrupt("timestamp", t))
}

fn decimal(p: Price) -> Result<Decimal128> {
    Decimal128::from_str(&p.per_kwh().to_string()).map_err(|e| corrupt("price", e))
}

fn price(d: &Decimal128) -> Result<Price> {
    Price::from_str(&d.to_string()).map_err(|_| corrupt("price", d))
}

/// `{start: {$gte: start, $lt: end}}`: the timeframes of a range.
fn starts_in(start: DateTime<Utc>, end: DateTime<Utc>) -> Document {
    doc! { "start": { "$gte": bson_time(start), "$lt": bson_time(end) } }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|ws| ws.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}

/// Why one attempt at a transaction failed.
#[derive(Debug)]
enum Failed {
    /// The database failed while the store was doing `.0`; tried again if
    /// the error is transient (the transaction lost to another writer).
    Mongo(&'static str, mongodb::error::Error),
    /// Another writer changed or inserted a document this attempt read as
    /// it was: tried again.
    Conflict,
    /// Anything else (a refused input, a corrupt value): returned as it is.
    Store(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Failed {
        Failed::Store(e)
    }
}

impl From<microgrid_core::Error> for Failed {
    fn from(e: microgrid_core::Error) -> Failed {
        Failed::Store(e.into())
    }
}

/// Wraps a driver error with the operation that failed.
fn mongo(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> Failed {
    move |e| Failed::Mongo(operation, e)
}

/// Wraps an insert's error: a duplicate key is another writer's document.
fn inserting(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> Failed {
    move |e| {
        if is_duplicate_key(&e) {
            Failed::Conflict
        } else {
            Failed::Mongo(operation, e)
        }
    }
}

impl Failed {
    fn retryable(&self) -> bool {
        match self {
            Failed::Mongo(_, e) => e.contains_label(TRANSIENT_TRANSACTION_ERROR),
            Failed::Conflict => true,
            Failed::Store(_) => false,
        }
    }

    fn into_store(self, operation: &'static str) -> StoreError {
        match self {
            Failed::Mongo(op, e) => db(op)(e),
            Failed::Conflict => StoreError::Database {
                operation,
                message: format!("other writers changed the same documents {ATTEMPTS} times"),
            },
            Failed::Store(e) => e,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or loses to other
/// writers [`ATTEMPTS`] times; waits a little longer after every loss.
macro_rules! retrying {
    ($operation:expr, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt.await {
                Ok(v) => break Ok(v),
                Err(f) if f.retryable() && tries + 1 < crate::mongo::ATTEMPTS => {
                    tries += 1;
                    crate::mongo::back_off(tries).await;
                }
                Err(f) => break Err(f.into_store($operation)),
            }
        }
    }};
}
pub(crate) use retrying;

/// Waits before try `n` (from 1) of a transaction that lost.
async fn back_off(n: u32) {
    let jitter = u64::from(Utc::now().timestamp_subsec_nanos() % 11);
    let wait = (5 * u64::from(n) + jitter).min(200);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Commits, trying the commit again while its result is unknown.
async fn commit(session: &mut ClientSession) -> std::result::Result<(), Failed> {
    let mut tries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 3 => {
                tries += 1;
            }
            Err(e) => return Err(Failed::Mongo("committing a transaction", e)),
        }
    }
}

/// Aborts the transaction of a failed attempt (best effort: the server
/// has usually aborted it already).
async fn abort<T>(
    session: &mut ClientSession,
    result: std::result::Result<T, Failed>,
) -> std::result::Result<T, Failed> {
    if result.is_err() {
        session.abort_transaction().await.ok();
    }
    result
}

impl MongoStore {
    /// Connects to `url` (e.g. `mongodb://localhost:27017`) and uses the
    /// database named in it, or `microgrid`.
    pub async fn open(url: &str) -> Result<MongoStore> {
        let client = Client::with_uri_str(url)
            .await
            .map_err(|e| StoreError::bad_url(url, e.to_string()))?;
        let name = client
            .default_database()
            .map_or("microgrid".to_owned(), |d| d.name().to_owned());
        MongoStore::open_database(client, &name).await
    }

    /// Uses database `name` of a connected client, creating its
    /// collections and indexes. A database written by the earlier layout
    /// (one document per reading and per allocation, in `readings`,
    /// `timeframes` and `allocations`) is refused rather than read as
    /// empty.
    pub async fn open_database(client: Client, name: &str) -> Result<MongoStore> {
        let database = client.database(name);
        let existing = database
            .list_collection_names()
            .await
            .map_err(db("listing the collections"))?;
        if let Some(old) = existing
            .iter()
            .find(|c| ["readings", "timeframes", "allocations"].contains(&c.as_str()))
        {
            return Err(StoreError::Database {
                operation: "opening the database",
                message: format!(
                    "database {name} has collection {old:?} of the per-row layout; \
                     this version stores readings and clearings per timeframe \
                     (reading_frames, cleared_frames) and does not convert them"
                ),
            });
        }
        // Collections are created up front: a transaction cannot create
        // one on every server version.
        for c in [
            "prosumers",
            "reading_frames",
            "cleared_frames",
            "settlements",
        ] {
            if !existing.iter().any(|e| e == c) {
                match database.create_collection(c).await {
                    Ok(()) => {}
                    // Created meanwhile by another process: fine.
                    Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == 48) => {}
                    Err(e) => return Err(db("creating a collection")(e)),
                }
            }
        }
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        database
            .collection::<Document>("reading_frames")
            .create_index(index(doc! { "start": 1 }, "start_1"))
            .await
            .map_err(db("creating the time index of readings"))?;
        database
            .collection::<Document>("cleared_frames")
            .create_indexes([
                index(doc! { "start": 1 }, "start_1"),
                index(doc! { "ids": 1, "start": 1 }, IDS_INDEX),
            ])
            .await
            .map_err(db("creating the indexes of cleared timeframes"))?;
        Ok(MongoStore {
            client,
            db: database,
            txn_bytes: TXN_BYTES,
        })
    }

    /// The same store writing at most `bytes` of documents per
    /// transaction (tests use it to reach the many-transaction path).
    #[cfg(test)]
    fn with_txn_bytes(mut self, bytes: usize) -> MongoStore {
        self.txn_bytes = bytes;
        self
    }

    fn prosumers(&self) -> Collection<ProsumerDoc> {
        self.db.collection("prosumers")
    }

    async fn session(&self) -> std::result::Result<ClientSession, Failed> {
        self.client
            .start_session()
            .await
            .map_err(mongo("starting a session"))
    }

    /// A session with a transaction started.
    async fn transaction(&self) -> std::result::Result<ClientSession, Failed> {
        let mut session = self.session().await?;
        session
            .start_transaction()
            .await
            .map_err(mongo("starting a transaction"))?;
        Ok(session)
    }

    /// One attempt at inserting new prosumers.
    async fn try_insert_prosumers(&self, docs: &[ProsumerDoc]) -> std::result::Result<(), Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
            let taken: Vec<IdOnly> = self
                .prosumers()
                .clone_with_type::<IdOnly>()
                .find(doc! { "_id": { "$in": &ids } })
                .projection(doc! { "_id": 1 })
                .session(&mut session)
                .await
                .map_err(mongo("looking up prosumers"))?
                .stream(&mut session)
                .try_collect()
                .await
                .map_err(mongo("looking up prosumers"))?;
            let taken: std::collections::HashSet<String> =
                taken.into_iter().map(|t| t.id).collect();
            if let Some(d) = docs.iter().find(|d| taken.contains(&d.id)) {
                return Err(microgrid_core::Error::DuplicateProsumer(d.id.clone()).into());
            }
            self.prosumers()
                .insert_many(docs)
                .session(&mut session)
                .await
                .map_err(inserting("registering prosumers"))?;
            commit(&mut session).await
        }
        .await;
        abort(&mut session, result).await
    }
}

impl RegistryStore for MongoStore {
    async fn save_prosumer(&self, p: &Prosumer) -> Result<()> {
        let d = ProsumerDoc::of(p);
        self.prosumers()
            .replace_one(doc! { "_id": &d.id }, &d)
            .upsert(true)
            .await
            .map_err(db("saving a prosumer"))?;
        Ok(())
    }

    async fn registry(&self) -> Result<Registry> {
        let docs: Vec<ProsumerDoc> = self
            .prosumers()
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(db("loading the registry"))?
            .try_collect()
            .await
            .map_err(db("loading the registry"))?;
        let rows = docs
            .into_iter()
            .map(|d| {
                Ok(ProsumerRow {
                    id: d.id,
                    name: d.name,
                    kind: d.kind,
                    joined: date(&d.joined)?,
                    left: d.left_on.as_deref().map(date).transpose()?,
                    address: d.payout_address,
                    network: d.payout_network,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        registry(rows)
    }

    /// All or none, in one transaction: an id stored already (or repeated
    /// in `batch`) is [`microgrid_core::Error::DuplicateProsumer`].
    async fn insert_prosumers(&self, batch: &[Prosumer]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        if let Some(p) = batch.iter().find(|p| !seen.insert(p.id())) {
            return Err(microgrid_core::Error::DuplicateProsumer(p.id().to_string()).into());
        }
        let docs: Vec<ProsumerDoc> = batch.iter().map(ProsumerDoc::of).collect();
        retrying!("registering prosumers", self.try_insert_prosumers(&docs))
    }
}

/// `Bson` of a list of starts, for `$in`.
fn bson_starts(starts: &[DateTime<Utc>]) -> Vec<Bson> {
    starts
        .iter()
        .map(|s| Bson::DateTime(bson_time(*s)))
        .collect()
}
