//! MongoDB through the official driver, in compact documents: one
//! document per timeframe for its readings and one per cleared timeframe
//! for its result, each holding the prosumers as parallel arrays.
//!
//! # Documents
//!
//! | collection | `_id` | fields |
//! | --- | --- | --- |
//! | `prosumers` | id | name, kind, dates, payout address, BOLT12 offer |
//! | `reading_frames` | start | `start`, `length_minutes`, `rev`, `ids`, `produced`, `consumed`, and while a large batch is written, `pending` |
//! | `cleared_frames` | start | `start`, `summary` (energies, counts, `Decimal128` prices), `ids`, `produced`, `consumed`, `community_wh` |
//! | `settlements` | id | period, hash, payment, `voided`, `claims`, the settlement as JSON |
//! | `settlement_claims` | a timeframe's start | `settlement`: the id of the standing settlement covering it |
//! | `wallet_addresses` | `<wallet>/<keychain>/<index>` | `wallet`, `keychain` (`receive`, `change`), `index`, `settlement`: the id of the settlement (standing or voided) that gave the descriptor wallet's index out |
//! | `ingest_batches` | batch id | `state` (`pending`, `committed`, `aborted`), `started`, `frames` |
//! | `day_guards`, `settled_days` | a UTC day's start | `n`: writes so far (see below) |
//!
//! `ids` are sorted; the arrays are `Int64` and as long as `ids`. The
//! `_id` (a timeframe's start) keeps one document per timeframe; `start`
//! repeats it under an index of its own, `{start: 1}`, which range
//! queries use (the MongoDB-wire test server scans the whole collection
//! for a range of `_id`s). A prosumer's allocations are found through the
//! multikey index `{ids: 1, start: 1}` of `cleared_frames` and projected
//! to that prosumer's elements on the server. That index holds a key per
//! allocation, which makes it most of the cost of storing a clearing.
//! `rev` counts the versions of a reading document: every write of one is
//! conditional on the `rev` (and staged batch) it was planned from.
//!
//! # Transactions
//!
//! Every stage runs in multi-document transactions (snapshot isolation),
//! retried with back-off when one loses to another writer (a
//! `TransientTransactionError`, or a conditional write that finds its
//! document changed), at most `ATTEMPTS` (50) times.
//!
//! Snapshot isolation alone lets two transactions that read each other's
//! documents but write different ones both commit (write skew: an ingest
//! that found a timeframe not cleared, and a clearing that read its
//! readings before the ingest wrote them). So every transaction that
//! writes reading documents, commits a batch of them or stores cleared
//! timeframes also increments a guard document per UTC day it touches
//! (`day_guards`): two such transactions over a common day cannot both
//! commit (the second writer of a guard gets a `WriteConflict` and tries
//! again, reading what the first committed). Settlements do the same with
//! `settled_days`.
//!
//! - **Recording** reads the documents of the batch's span and its
//!   cleared timeframes in one transaction and checks the batch with the
//!   core's rule. When the documents to write fit one transaction
//!   (`TXN_BYTES`, 64 MiB: the test server refuses a transaction of more
//!   than 76 MiB of documents as `TransactionTooLargeForCache`; a day of
//!   10,000 prosumers is 45.5 MiB, a month of 1,000 prosumers 128 MiB)
//!   they are written in that transaction. A larger batch (or one the
//!   server refuses as too large) is written in two phases under a batch
//!   document in `ingest_batches`: each changed document gets the new
//!   version as `pending: {batch, frame}` next to its current content (a
//!   new timeframe gets a placeholder, `rev` 0 and empty arrays), in
//!   transactions of at most `CHUNK_BYTES` (16 MiB); readers ignore a pending
//!   version until its batch is committed. One last transaction checks
//!   that every pending version is still in place and that none of the
//!   timeframes was cleared meanwhile, and sets the batch `committed`: from
//!   then on readers take the pending versions, and the writer moves them
//!   into place (any later writer of the document does it too). A batch
//!   that fails, or whose writer dies, is never committed: its pending
//!   versions stay invisible (and are removed, or overwritten by the next
//!   writer). No reading document is removed but a placeholder holding
//!   nothing but its own failed batch's pending version. (A document is
//!   replaced by deleting and inserting it in one transaction, on
//!   condition of what it holds: on the test server that costs a fifth
//!   of an in-place replacement of a large document.)
//! - **Clearing** reads the readings of the open timeframes (noting each
//!   document's `rev`), clears them, and stores the results in
//!   transactions of at most `CHUNK_BYTES` (16 MiB), each of which stores a
//!   timeframe only if its readings are still at the `rev` they were
//!   cleared from (else that timeframe is cleared again) and it is not
//!   cleared yet. Each timeframe's result is therefore the clearing of
//!   exactly the readings stored for it, and an ingest that comes later
//!   finds it cleared.
//! - **Settling** claims every timeframe of the period in
//!   `settlement_claims` (a unique `_id`) in the transaction that stores
//!   the settlement, so two standing settlements never cover one
//!   timeframe; voiding removes the claims in the transaction that marks
//!   the settlement voided. Paying and voiding are conditional writes.
//!   A settlement made with the operator's descriptor wallet also writes
//!   a document per wallet index it gives out (every invoice's receive
//!   index and the change indices of its batches) in `wallet_addresses`,
//!   in the same transaction: the unique `_id` refuses an index another
//!   settlement gave out, and voiding keeps them, so no address is given
//!   twice, even by two processes settling with one wallet at once.
//!
//! # Sharding
//!
//! The collections kept per timeframe, `reading_frames` and
//! `cleared_frames`, are made to be sharded on the ranged key
//! `{ start: 1 }` (`sh.shardCollection("<db>.reading_frames", { start: 1 })`,
//! likewise `cleared_frames`), the counterpart of PostgreSQL's monthly
//! partitions:
//!
//! - Every range read of the store filters on the key first:
//!   `{ start: { $gte, $lt } }` (summaries, cleared timeframes, cleared
//!   rows for billing, allocations, readings, reading rows), the dense
//!   span of an ingest or clearing `{ start: { $gte, $lte } }`, and one
//!   prosumer's allocations `{ start: {...}, ids: id }`. A router sends
//!   each to the shards whose chunks hold the range only. The `{start: 1}`
//!   index the key needs exists already; the test `range_queries_filter_on_the_shard_key`
//!   shows the filters and the server's plans on the one-node test server.
//! - Zones by month (`sh.updateZoneKeyRange` from the first instant of a
//!   month to the next) keep a month's chunks together, and put old months
//!   on an archive shard, as detaching a partition does in PostgreSQL.
//! - `_id` is the timeframe's start as well. A sharded collection checks
//!   `_id` unique per shard only, but all documents of one `start` fall in
//!   one chunk, so one document per timeframe still holds. Lookups by
//!   lists of `_id`s (revisions and sparse starts of a batch, cleared
//!   starts in a transaction) name no shard key and go to every shard,
//!   each answering from its `_id` index.
//! - A time key sends new timeframes to the chunk of the newest times, so
//!   one shard takes the current month's writes: 96 documents a day for any
//!   number of prosumers. A hashed key would spread them, but make every
//!   range read go to every shard.
//!
//! `settlement_claims` (`_id`: a timeframe's start), `day_guards` and
//! `settled_days` (`_id`: a day) are small and read by `_id`; left
//! unsharded, or sharded on a ranged `{ _id: 1 }`. `prosumers`,
//! `settlements` and `ingest_batches` are not kept per time and stay
//! unsharded. The store's transactions then span shards (distributed
//! transactions), and the day guards order them as on one node.
//!
//! One document holds a timeframe of every prosumer, so a timeframe must
//! fit MongoDB's 16 MiB document limit: about 250,000 prosumers (half as
//! many for a batch written in two phases, whose documents hold two
//! versions for a while).

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

/// The most bytes of reading documents an ingest writes in one
/// transaction; more go through a batch written in two phases (see the
/// module documentation). A server's limit is a share of its cache: the
/// test server's (1 GiB cache) is 76 MiB, and a server that refuses less
/// (`TransactionTooLargeForCache`) gets the two-phase path too.
const TXN_BYTES: usize = 64 << 20;

/// The most bytes of documents one transaction of a stage written in
/// several transactions writes (well inside any server's limit).
const CHUNK_BYTES: usize = 16 << 20;

/// How often a transaction that loses to another writer is tried.
const ATTEMPTS: u32 = 50;

/// The multikey index that finds a prosumer's cleared timeframes.
const IDS_INDEX: &str = "ids_1_start_1";

/// A store in one MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
    /// The most bytes of reading documents one ingest transaction writes.
    txn_bytes: usize,
    /// The most bytes of documents one of several transactions writes.
    chunk_bytes: usize,
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
    /// Absent in documents written before offers existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payout_offer: Option<String>,
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
            payout_offer: p.offer().map(|o| o.as_str().to_owned()),
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

/// Whether the server refused a transaction as too large
/// (`TransactionTooLarge`, 334, or `TransactionTooLargeForCache`, 388).
fn is_too_large(e: &mongodb::error::Error) -> bool {
    const CODES: [i32; 2] = [334, 388];
    match e.kind.as_ref() {
        ErrorKind::Command(c) => CODES.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => CODES.contains(&w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|ws| ws.iter().any(|w| CODES.contains(&w.code))),
        _ => e.to_string().contains("TransactionTooLarge"),
    }
}

/// The UTC day of a timeframe start, as the `_id` of its guard document.
fn day_of(start: BsonTime) -> BsonTime {
    const DAY_MS: i64 = 86_400_000;
    BsonTime::from_millis(start.timestamp_millis().div_euclid(DAY_MS) * DAY_MS)
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
    /// A settlement claim (a unique `_id`) is held already: the caller
    /// looks up by whom.
    Claimed,
    /// A wallet index (a unique `_id` in `wallet_addresses`) is given out
    /// already: the caller looks up by whom.
    AddressTaken,
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

/// Whether trying a transaction again can help: it lost to another
/// writer or a connection broke (labelled transient), and the server can
/// still be reached. A server that cannot be selected (down, or
/// unreachable) has already been waited for (`serverSelectionTimeoutMS`,
/// 30 s by default): the store fails instead of waiting that long again
/// for each of its tries.
fn worth_retrying(e: &mongodb::error::Error) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        && !matches!(
            e.kind.as_ref(),
            mongodb::error::ErrorKind::ServerSelection { .. }
        )
}

impl Failed {
    fn retryable(&self) -> bool {
        match self {
            Failed::Mongo(_, e) => worth_retrying(e),
            Failed::Conflict | Failed::Claimed | Failed::AddressTaken => true,
            Failed::Store(_) => false,
        }
    }

    fn into_store(self, operation: &'static str) -> StoreError {
        match self {
            Failed::Mongo(op, e) => db(op)(e),
            Failed::Conflict | Failed::Claimed | Failed::AddressTaken => StoreError::Database {
                operation,
                message: format!("other writers changed the same documents {ATTEMPTS} times"),
            },
            Failed::Store(e) => e,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or loses to other
/// writers `ATTEMPTS` (50) times; waits a little longer after every loss.
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
            "settlement_claims",
            "wallet_addresses",
            "ingest_batches",
            "day_guards",
            "settled_days",
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
        database
            .collection::<Document>("settlements")
            .create_index(index(doc! { "period_end": 1 }, "period_end_1"))
            .await
            .map_err(db("creating the period index of settlements"))?;
        database
            .collection::<Document>("settlement_claims")
            .create_index(index(doc! { "settlement": 1 }, "settlement_1"))
            .await
            .map_err(db("creating the index of settlement claims"))?;
        database
            .collection::<Document>("wallet_addresses")
            .create_index(index(
                doc! { "wallet": 1, "keychain": 1, "index": 1 },
                "wallet_1_keychain_1_index_1",
            ))
            .await
            .map_err(db("creating the index of wallet addresses"))?;
        let store = MongoStore {
            client,
            db: database,
            txn_bytes: TXN_BYTES,
            chunk_bytes: CHUNK_BYTES,
        };
        store.claim_earlier_settlements().await?;
        store.give_earlier_wallet_indices().await?;
        Ok(store)
    }

    /// The same store writing at most `bytes` of documents per
    /// transaction (tests use it to reach the many-transaction paths).
    #[cfg(test)]
    fn with_txn_bytes(mut self, bytes: usize) -> MongoStore {
        self.txn_bytes = bytes;
        self.chunk_bytes = bytes;
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

    /// Increments the guard document of each of `days` in the collection
    /// `guards`, inserting those that are missing, in `session`'s
    /// transaction: two transactions guarding a common day cannot both
    /// commit (see the module documentation).
    async fn guard_days(
        &self,
        session: &mut ClientSession,
        guards: &str,
        days: &std::collections::BTreeSet<BsonTime>,
    ) -> std::result::Result<(), Failed> {
        if days.is_empty() {
            return Ok(());
        }
        let guards = self.db.collection::<Document>(guards);
        let ids: Vec<Bson> = days.iter().map(|d| Bson::DateTime(*d)).collect();
        let touched = guards
            .update_many(
                doc! { "_id": { "$in": &ids } },
                doc! { "$inc": { "n": 1_i64 } },
            )
            .session(&mut *session)
            .await
            .map_err(mongo("guarding days"))?;
        if touched.matched_count as usize == ids.len() {
            return Ok(());
        }
        // The first write of some of the days.
        let present: Vec<StartOnly> = guards
            .clone_with_type::<StartOnly>()
            .find(doc! { "_id": { "$in": &ids } })
            .projection(doc! { "_id": 1 })
            .session(&mut *session)
            .await
            .map_err(mongo("guarding days"))?
            .stream(&mut *session)
            .try_collect()
            .await
            .map_err(mongo("guarding days"))?;
        let present: std::collections::HashSet<BsonTime> =
            present.into_iter().map(|p| p.start).collect();
        let missing: Vec<Document> = days
            .iter()
            .filter(|d| !present.contains(d))
            .map(|d| doc! { "_id": *d, "n": 1_i64 })
            .collect();
        guards
            .insert_many(missing)
            .session(&mut *session)
            .await
            .map_err(inserting("guarding days"))?;
        Ok(())
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
                    offer: d.payout_offer,
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
