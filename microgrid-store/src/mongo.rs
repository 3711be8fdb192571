//! MongoDB through the official driver: serde-typed collections, exact
//! decimals as `Decimal128`, unique indexes for idempotency, `insert_many`
//! for readings, and multi-document transactions where a stage writes more
//! than one document.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, IngestPlan, Price, Prosumer, ProsumerId, Reading, Registry, TimeRange, Timeframe,
    TimeframeClearing, TimeframeSummary, Wh,
};
use mongodb::bson::{doc, DateTime as BsonTime, Decimal128};
use mongodb::error::{ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::rows::{corrupt, date, db, length, registry, ProsumerRow, SummaryRow};
use crate::traits::{LedgerStore, ReadingStore, RegistryStore};

/// A store in one MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
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

#[derive(Debug, Serialize, Deserialize)]
struct ReadingDoc {
    start: BsonTime,
    prosumer_id: String,
    length_minutes: i32,
    produced_wh: i64,
    consumed_wh: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TimeframeDoc {
    #[serde(rename = "_id")]
    start: BsonTime,
    length_minutes: i32,
    production_wh: i64,
    consumption_wh: i64,
    supply_wh: i64,
    demand_wh: i64,
    shared_wh: i64,
    import_wh: i64,
    export_wh: i64,
    sellers: i64,
    buyers: i64,
    grid_import_price: Decimal128,
    grid_export_price: Decimal128,
    community_price: Option<Decimal128>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AllocationDoc {
    start: BsonTime,
    prosumer_id: String,
    produced_wh: i64,
    consumed_wh: i64,
    community_wh: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SettlementDoc {
    #[serde(rename = "_id")]
    id: String,
    period_start: BsonTime,
    period_end: BsonTime,
    content_hash: String,
    paid_txid: Option<String>,
    /// The settlement as JSON text (exact: decimals are strings in it).
    document: String,
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

impl MongoStore {
    /// Connects to `url` (e.g. `mongodb://localhost:27017`) and uses the
    /// database named in it, or `microgrid`.
    pub async fn open(url: &str) -> Result<MongoStore> {
        let client = Client::with_uri_str(url)
            .await
            .map_err(|e| StoreError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let name = client
            .default_database()
            .map_or("microgrid".to_owned(), |d| d.name().to_owned());
        MongoStore::open_database(client, &name).await
    }

    /// Uses database `name` of a connected client, creating its indexes.
    pub async fn open_database(client: Client, name: &str) -> Result<MongoStore> {
        let database = client.database(name);
        let unique = |keys| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        database
            .collection::<ReadingDoc>("readings")
            .create_index(unique(doc! { "start": 1, "prosumer_id": 1 }))
            .await
            .map_err(db("creating the readings index"))?;
        database
            .collection::<AllocationDoc>("allocations")
            .create_index(unique(doc! { "start": 1, "prosumer_id": 1 }))
            .await
            .map_err(db("creating the allocations index"))?;
        Ok(MongoStore {
            client,
            db: database,
        })
    }

    fn prosumers(&self) -> Collection<ProsumerDoc> {
        self.db.collection("prosumers")
    }
    fn readings_coll(&self) -> Collection<ReadingDoc> {
        self.db.collection("readings")
    }
    fn timeframes(&self) -> Collection<TimeframeDoc> {
        self.db.collection("timeframes")
    }
    fn allocations_coll(&self) -> Collection<AllocationDoc> {
        self.db.collection("allocations")
    }
    fn settlements(&self) -> Collection<SettlementDoc> {
        self.db.collection("settlements")
    }

    async fn summaries_in(
        &self,
        range: &TimeRange,
    ) -> Result<BTreeMap<DateTime<Utc>, TimeframeSummary>> {
        let docs: Vec<TimeframeDoc> = self
            .timeframes()
            .find(
                doc! { "_id": { "$gte": bson_time(range.start()), "$lt": bson_time(range.end()) } },
            )
            .sort(doc! { "_id": 1 })
            .await
            .map_err(db("loading timeframe summaries"))?
            .try_collect()
            .await
            .map_err(db("loading timeframe summaries"))?;
        docs.into_iter()
            .map(|d| {
                let start = chrono_time(d.start)?;
                let row = SummaryRow {
                    start,
                    length_minutes: i64::from(d.length_minutes),
                    energies: [
                        d.production_wh,
                        d.consumption_wh,
                        d.supply_wh,
                        d.demand_wh,
                        d.shared_wh,
                        d.import_wh,
                        d.export_wh,
                    ],
                    sellers: d.sellers,
                    buyers: d.buyers,
                    grid_import: price(&d.grid_import_price)?,
                    grid_export: price(&d.grid_export_price)?,
                    community_price: d.community_price.as_ref().map(price).transpose()?,
                };
                Ok((start, row.into_summary()?))
            })
            .collect()
    }

    /// Deletes readings this call inserted (best effort: it runs after a
    /// failure already being reported).
    async fn undo_inserts(&self, docs: &[ReadingDoc]) {
        for chunk in docs.chunks(1_000) {
            let keys: Vec<_> = chunk
                .iter()
                .map(|d| doc! { "start": d.start, "prosumer_id": &d.prosumer_id })
                .collect();
            let _ = self.readings_coll().delete_many(doc! { "$or": keys }).await;
        }
    }

    /// Replaces corrected readings in one transaction.
    async fn write_corrections(
        &self,
        readings: &[Reading],
        to_doc: impl Fn(&Reading) -> ReadingDoc,
    ) -> Result<()> {
        if readings.is_empty() {
            return Ok(());
        }
        let mut session = self
            .client
            .start_session()
            .await
            .map_err(db("starting a session"))?;
        session
            .start_transaction()
            .await
            .map_err(db("starting a correction transaction"))?;
        for r in readings {
            let d = to_doc(r);
            self.readings_coll()
                .replace_one(doc! { "start": d.start, "prosumer_id": &d.prosumer_id }, &d)
                .upsert(true)
                .session(&mut session)
                .await
                .map_err(db("correcting readings"))?;
        }
        session
            .commit_transaction()
            .await
            .map_err(db("committing corrections"))
    }

    /// One attempt at writing a clearing in a transaction.
    async fn try_save_clearing(
        &self,
        summary: &TimeframeDoc,
        allocations: &[AllocationDoc],
    ) -> std::result::Result<bool, mongodb::error::Error> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        match self
            .timeframes()
            .insert_one(summary)
            .session(&mut session)
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                session.abort_transaction().await.ok();
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if !allocations.is_empty() {
            self.allocations_coll()
                .insert_many(allocations)
                .session(&mut session)
                .await?;
        }
        session.commit_transaction().await?;
        Ok(true)
    }
}

fn timeframe_doc(s: &TimeframeSummary) -> Result<TimeframeDoc> {
    Ok(TimeframeDoc {
        start: bson_time(s.timeframe.start()),
        length_minutes: s.timeframe.length().minutes() as i32,
        production_wh: s.production.get(),
        consumption_wh: s.consumption.get(),
        supply_wh: s.supply.get(),
        demand_wh: s.demand.get(),
        shared_wh: s.shared.get(),
        import_wh: s.import.get(),
        export_wh: s.export.get(),
        sellers: i64::from(s.sellers),
        buyers: i64::from(s.buyers),
        grid_import_price: decimal(s.grid.import())?,
        grid_export_price: decimal(s.grid.export())?,
        community_price: s.community_price.known().map(decimal).transpose()?,
    })
}

impl RegistryStore for MongoStore {
    async fn save_prosumer(&self, p: &Prosumer) -> Result<()> {
        let d = ProsumerDoc {
            id: p.id().to_string(),
            name: p.name().to_owned(),
            kind: p.kind().as_str().to_owned(),
            joined: p.joined().to_string(),
            left_on: p.left().map(|d| d.to_string()),
            payout_address: p.payout().map(|a| a.as_str().to_owned()),
            payout_network: p.payout().map(|a| a.network().as_str().to_owned()),
        };
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
}

impl ReadingStore for MongoStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let to_doc = |r: &Reading| ReadingDoc {
            start: bson_time(r.timeframe().start()),
            prosumer_id: r.prosumer().to_string(),
            length_minutes: r.timeframe().length().minutes() as i32,
            produced_wh: r.produced().get(),
            consumed_wh: r.consumed().get(),
        };
        // New readings go in with insert_many, 10,000 at a time and not in
        // one transaction: a transaction as large as a big batch exceeds
        // the server's limits. If a chunk fails, what this call inserted is
        // deleted again, so nothing of the batch stays.
        let inserts: Vec<ReadingDoc> = plan.insert.iter().map(to_doc).collect();
        for (i, chunk) in inserts.chunks(10_000).enumerate() {
            if let Err(e) = self.readings_coll().insert_many(chunk).await {
                self.undo_inserts(&inserts[..i * 10_000 + chunk.len()])
                    .await;
                return Err(db("writing readings")(e));
            }
        }
        // Corrections (of timeframes not cleared yet) in one transaction.
        if let Err(e) = self.write_corrections(&plan.replace, to_doc).await {
            self.undo_inserts(&inserts).await;
            return Err(e);
        }
        Ok(())
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let docs: Vec<ReadingDoc> = self
            .readings_coll()
            .find(doc! { "start": { "$gte": bson_time(range.start()), "$lt": bson_time(range.end()) } })
            .sort(doc! { "start": 1, "prosumer_id": 1 })
            .await
            .map_err(db("loading readings"))?
            .try_collect()
            .await
            .map_err(db("loading readings"))?;
        docs.into_iter()
            .map(|d| {
                let tf =
                    Timeframe::new(chrono_time(d.start)?, length(i64::from(d.length_minutes))?)?;
                Ok(Reading::new(
                    ProsumerId::new(d.prosumer_id)?,
                    tf,
                    Wh::new(d.produced_wh),
                    Wh::new(d.consumed_wh),
                )?)
            })
            .collect()
    }
}

impl LedgerStore for MongoStore {
    async fn save_clearing(&self, c: &TimeframeClearing) -> Result<bool> {
        let summary = timeframe_doc(&c.summary)?;
        let allocations: Vec<AllocationDoc> = c
            .allocations
            .iter()
            .map(|a| AllocationDoc {
                start: summary.start,
                prosumer_id: a.prosumer.to_string(),
                produced_wh: a.produced.get(),
                consumed_wh: a.consumed.get(),
                community_wh: a.sold.get() - a.bought.get(),
            })
            .collect();
        let mut attempt = 0;
        loop {
            match self.try_save_clearing(&summary, &allocations).await {
                Ok(stored) => return Ok(stored),
                // Two writers of one timeframe: the loser backs off, retries
                // and then finds it stored.
                Err(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR) && attempt < 50 => {
                    attempt += 1;
                    let jitter = u64::from(Utc::now().timestamp_subsec_nanos() % 11);
                    let wait = (5 * attempt + jitter).min(200);
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                // Anything else, a duplicate allocation included, fails the
                // write; the transaction was aborted, so nothing is left.
                Err(e) => return Err(db("saving a clearing")(e)),
            }
        }
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        Ok(self.summaries_in(range).await?.into_keys().collect())
    }

    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        Ok(self.summaries_in(range).await?.into_values().collect())
    }

    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        let summaries = self.summaries_in(range).await?;
        let mut filter =
            doc! { "start": { "$gte": bson_time(range.start()), "$lt": bson_time(range.end()) } };
        if let Some(p) = prosumer {
            filter.insert("prosumer_id", p.as_str());
        }
        let docs: Vec<AllocationDoc> = self
            .allocations_coll()
            .find(filter)
            .sort(doc! { "start": 1, "prosumer_id": 1 })
            .await
            .map_err(db("loading allocations"))?
            .try_collect()
            .await
            .map_err(db("loading allocations"))?;
        docs.into_iter()
            .map(|d| {
                let start = chrono_time(d.start)?;
                let summary = summaries
                    .get(&start)
                    .ok_or_else(|| corrupt("allocation without summary", start))?;
                Ok(Allocation::new(
                    ProsumerId::new(d.prosumer_id)?,
                    summary,
                    Wh::new(d.produced_wh),
                    Wh::new(d.consumed_wh),
                    Wh::new(d.community_wh),
                ))
            })
            .collect()
    }

    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        let d = SettlementDoc {
            id: s.id.clone(),
            period_start: bson_time(s.period.start()),
            period_end: bson_time(s.period.end()),
            content_hash: s.content_hash(),
            paid_txid: s.paid_txid.clone(),
            document: serde_json::to_string(s).map_err(db("encoding a settlement"))?,
        };
        match self.settlements().insert_one(&d).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(db("saving a settlement")(e)),
        }
        self.settlement(&s.id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "settlement",
                key: s.id.clone(),
            })
    }

    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        let d = self
            .settlements()
            .find_one(doc! { "_id": id })
            .await
            .map_err(db("loading a settlement"))?;
        d.map(|d| serde_json::from_str(&d.document).map_err(|e| corrupt("settlement", e)))
            .transpose()
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        let d = self
            .settlements()
            .find_one(doc! { "period_end": { "$lte": bson_time(before) } })
            .sort(doc! { "period_end": -1, "_id": -1 })
            .await
            .map_err(db("loading the last settlement"))?;
        d.map(|d| serde_json::from_str(&d.document).map_err(|e| corrupt("settlement", e)))
            .transpose()
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_string(paid).map_err(db("encoding a settlement"))?;
        let updated = self
            .settlements()
            .update_one(
                doc! { "_id": &paid.id },
                doc! { "$set": { "paid_txid": paid.paid_txid.as_deref(), "document": document } },
            )
            .await
            .map_err(db("marking a settlement paid"))?
            .matched_count;
        if updated == 0 {
            return Err(StoreError::NotFound {
                what: "settlement",
                key: paid.id.clone(),
            });
        }
        Ok(())
    }
}
