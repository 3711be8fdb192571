//! The ledger: one document per cleared timeframe (`cleared_frames`)
//! holding its summary and the allocations as parallel arrays sorted by
//! id, and one per settlement.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::batch::ReadingRow;
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, ProsumerId, Registry, TimeRange, TimeframeClearing, TimeframeSummary,
    Wh,
};
use mongodb::bson::{doc, to_raw_document_buf, DateTime as BsonTime, Decimal128, RawDocumentBuf};
use mongodb::options::Hint;
use mongodb::{ClientSession, Collection};
use serde::{Deserialize, Serialize};

use super::readings::{check_ascending, dense_row, Columns};
use super::{
    abort, bson_time, chrono_time, commit, decimal, inserting, is_duplicate_key, mongo, price,
    retrying, starts_in, Failed, MongoStore, StartOnly, IDS_INDEX,
};
use crate::error::{Result, StoreError};
use crate::rows::{corrupt, db, SummaryRow};
use crate::traits::LedgerStore;

/// A timeframe's summary as stored (prices exact, as `Decimal128`).
#[derive(Debug, Serialize, Deserialize)]
struct SummaryFields {
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
    /// The currency it was cleared in; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
}

impl SummaryFields {
    fn of(s: &TimeframeSummary) -> Result<SummaryFields> {
        Ok(SummaryFields {
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
            currency: s.currency.map(|c| c.to_string()),
        })
    }

    fn summary(&self, start: BsonTime) -> Result<TimeframeSummary> {
        SummaryRow {
            start: chrono_time(start)?,
            length_minutes: i64::from(self.length_minutes),
            energies: [
                self.production_wh,
                self.consumption_wh,
                self.supply_wh,
                self.demand_wh,
                self.shared_wh,
                self.import_wh,
                self.export_wh,
            ],
            sellers: self.sellers,
            buyers: self.buyers,
            grid_import: price(&self.grid_import_price)?,
            grid_export: price(&self.grid_export_price)?,
            community_price: self.community_price.as_ref().map(price).transpose()?,
            currency: self.currency.clone(),
        }
        .into_summary()
    }
}

/// A cleared timeframe.
#[derive(Debug, Deserialize)]
struct ClearedFrame {
    #[serde(rename = "_id")]
    start: BsonTime,
    summary: SummaryFields,
    ids: Vec<String>,
    produced: Vec<i64>,
    consumed: Vec<i64>,
    /// Signed community energy: + sold, − bought.
    community_wh: Vec<i64>,
}

impl ClearedFrame {
    fn checked(self) -> Result<ClearedFrame> {
        let n = self.ids.len();
        if [&self.produced, &self.consumed, &self.community_wh]
            .iter()
            .any(|a| a.len() != n)
        {
            return Err(corrupt("cleared timeframe document", self.start));
        }
        check_ascending(&self.ids, self.start)?;
        Ok(self)
    }
}

/// A [`ClearedFrame`] to write.
#[derive(Serialize)]
struct ClearedFrameOut<'a> {
    #[serde(rename = "_id")]
    id: BsonTime,
    /// The same as `_id`, for range queries.
    start: BsonTime,
    summary: SummaryFields,
    ids: Vec<&'a str>,
    produced: Vec<i64>,
    consumed: Vec<i64>,
    community_wh: Vec<i64>,
}

impl ClearedFrameOut<'_> {
    fn encode(&self) -> Result<RawDocumentBuf> {
        to_raw_document_buf(self).map_err(db("encoding a cleared timeframe"))
    }
}

/// A cleared timeframe's summary, and with it one prosumer's produced,
/// consumed and community energy when it was asked for.
#[derive(Debug, Deserialize)]
struct SummaryOnly {
    #[serde(rename = "_id")]
    start: BsonTime,
    summary: SummaryFields,
    #[serde(default)]
    one: Option<Vec<i64>>,
}

impl MongoStore {
    fn cleared_frames(&self) -> Collection<ClearedFrame> {
        self.db.collection("cleared_frames")
    }

    fn raw_cleared_frames(&self) -> Collection<RawDocumentBuf> {
        self.db.collection("cleared_frames")
    }

    fn settlements(&self) -> Collection<SettlementDoc> {
        self.db.collection("settlements")
    }

    /// Starts of the cleared timeframes of `range`, read in `session`.
    pub(super) async fn cleared_in_session(
        &self,
        session: &mut ClientSession,
        range: &TimeRange,
    ) -> std::result::Result<BTreeSet<DateTime<Utc>>, Failed> {
        let docs: Vec<StartOnly> = self
            .cleared_frames()
            .clone_with_type::<StartOnly>()
            .find(starts_in(range.start(), range.end()))
            .projection(doc! { "_id": 1 })
            .session(&mut *session)
            .await
            .map_err(mongo("loading cleared timeframes"))?
            .stream(&mut *session)
            .try_collect()
            .await
            .map_err(mongo("loading cleared timeframes"))?;
        Ok(docs
            .into_iter()
            .map(|d| chrono_time(d.start))
            .collect::<Result<_>>()?)
    }

    /// Summaries of the cleared timeframes of `range` by start.
    async fn summaries_in(
        &self,
        range: &TimeRange,
    ) -> Result<BTreeMap<DateTime<Utc>, TimeframeSummary>> {
        let docs: Vec<SummaryOnly> = self
            .cleared_frames()
            .clone_with_type::<SummaryOnly>()
            .find(starts_in(range.start(), range.end()))
            .projection(doc! { "summary": 1 })
            .sort(doc! { "start": 1 })
            .await
            .map_err(db("loading timeframe summaries"))?
            .try_collect()
            .await
            .map_err(db("loading timeframe summaries"))?;
        docs.into_iter()
            .map(|d| Ok((chrono_time(d.start)?, d.summary.summary(d.start)?)))
            .collect()
    }

    /// One transaction storing the cleared timeframes of `docs` that are
    /// not stored yet; returns how many it stored.
    async fn try_save_cleared(
        &self,
        docs: &[(BsonTime, RawDocumentBuf)],
    ) -> std::result::Result<usize, Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            let starts: Vec<BsonTime> = docs.iter().map(|(s, _)| *s).collect();
            let stored: Vec<StartOnly> = self
                .cleared_frames()
                .clone_with_type::<StartOnly>()
                .find(doc! { "_id": { "$in": starts } })
                .projection(doc! { "_id": 1 })
                .session(&mut session)
                .await
                .map_err(mongo("loading cleared timeframes"))?
                .stream(&mut session)
                .try_collect()
                .await
                .map_err(mongo("loading cleared timeframes"))?;
            let stored: HashSet<BsonTime> = stored.into_iter().map(|d| d.start).collect();
            let fresh: Vec<&RawDocumentBuf> = docs
                .iter()
                .filter(|(s, _)| !stored.contains(s))
                .map(|(_, d)| d)
                .collect();
            let n = fresh.len();
            if n > 0 {
                self.raw_cleared_frames()
                    .insert_many(fresh)
                    .session(&mut session)
                    .await
                    .map_err(inserting("storing cleared timeframes"))?;
            }
            commit(&mut session).await?;
            Ok(n)
        }
        .await;
        abort(&mut session, result).await
    }

    /// Stores a batch of encoded cleared timeframes, retrying on conflicts.
    async fn save_cleared_chunk(&self, docs: &[(BsonTime, RawDocumentBuf)]) -> Result<usize> {
        if docs.is_empty() {
            return Ok(0);
        }
        retrying!("storing cleared timeframes", self.try_save_cleared(docs))
    }
}

impl LedgerStore for MongoStore {
    /// One document, so atomic by itself; its `_id` keeps the first result.
    async fn save_clearing(&self, c: &TimeframeClearing) -> Result<bool> {
        let start = c.summary.timeframe.start();
        let mut allocations: Vec<&Allocation> = c.allocations.iter().collect();
        allocations.sort_by(|a, b| a.prosumer.cmp(&b.prosumer));
        if let Some(w) = allocations
            .windows(2)
            .find(|w| w[0].prosumer == w[1].prosumer)
        {
            return Err(StoreError::Database {
                operation: "saving allocations",
                message: format!("duplicate allocation of {} at {start}", w[0].prosumer),
            });
        }
        let doc = ClearedFrameOut {
            id: bson_time(start),
            start: bson_time(start),
            summary: SummaryFields::of(&c.summary)?,
            ids: allocations.iter().map(|a| a.prosumer.as_str()).collect(),
            produced: allocations.iter().map(|a| a.produced.get()).collect(),
            consumed: allocations.iter().map(|a| a.consumed.get()).collect(),
            community_wh: allocations
                .iter()
                .map(|a| a.sold.get() - a.bought.get())
                .collect(),
        }
        .encode()?;
        match self.raw_cleared_frames().insert_one(doc).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(db("saving a clearing")(e)),
        }
    }

    /// In transactions of at most 16 MiB of documents (one, unless
    /// the timeframes are more than a server takes in one), each reading
    /// which of its timeframes are stored and inserting the others.
    async fn save_cleared(
        &self,
        rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
        registry: &Registry,
    ) -> Result<usize> {
        let order = registry.id_order();
        let mut stored = 0;
        let (mut chunk, mut bytes) = (Vec::new(), 0);
        for (readings, cleared) in rows {
            let present: Vec<usize> = order
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| readings.get(i).is_some())
                .collect();
            let ids = present
                .iter()
                .map(|&i| {
                    registry.at(i).map(|p| p.id().as_str()).ok_or_else(|| {
                        StoreError::from(microgrid_core::Error::UnknownProsumer(format!("#{i}")))
                    })
                })
                .collect::<Result<Vec<&str>>>()?;
            let start = bson_time(cleared.summary.timeframe.start());
            let doc = ClearedFrameOut {
                id: start,
                start,
                summary: SummaryFields::of(&cleared.summary)?,
                ids,
                produced: present
                    .iter()
                    .map(|&i| readings.produced()[i].get())
                    .collect(),
                consumed: present
                    .iter()
                    .map(|&i| readings.consumed()[i].get())
                    .collect(),
                community_wh: present
                    .iter()
                    .map(|&i| cleared.community.get(i).map_or(0, |w| w.get()))
                    .collect(),
            }
            .encode()?;
            let size = doc.as_bytes().len();
            if !chunk.is_empty() && bytes + size > self.txn_bytes {
                stored += self.save_cleared_chunk(&chunk).await?;
                (chunk, bytes) = (Vec::new(), 0);
            }
            chunk.push((start, doc));
            bytes += size;
        }
        stored += self.save_cleared_chunk(&chunk).await?;
        Ok(stored)
    }

    async fn cleared_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>> {
        let width = registry.len();
        let mut columns = Columns::new(registry);
        let mut cursor = self
            .cleared_frames()
            .find(starts_in(range.start(), range.end()))
            .sort(doc! { "start": 1 })
            .await
            .map_err(db("loading cleared timeframes"))?;
        let mut out = Vec::new();
        while let Some(f) = cursor
            .try_next()
            .await
            .map_err(db("loading cleared timeframes"))?
        {
            let f = f.checked()?;
            let summary = f.summary.summary(f.start)?;
            let indices = columns.known(&f.ids)?;
            let row = dense_row(indices, &f.produced, &f.consumed, width);
            let mut community = vec![Wh::ZERO; width];
            for (&i, &x) in indices.iter().zip(&f.community_wh) {
                community[i as usize] = Wh::new(x);
            }
            out.push((Arc::new(row), Arc::new(ClearedRow { summary, community })));
        }
        Ok(out)
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        let docs: Vec<StartOnly> = self
            .cleared_frames()
            .clone_with_type::<StartOnly>()
            .find(starts_in(range.start(), range.end()))
            .projection(doc! { "_id": 1 })
            .await
            .map_err(db("loading cleared timeframes"))?
            .try_collect()
            .await
            .map_err(db("loading cleared timeframes"))?;
        docs.into_iter().map(|d| chrono_time(d.start)).collect()
    }

    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        Ok(self.summaries_in(range).await?.into_values().collect())
    }

    /// All allocations from the whole documents; one prosumer's through
    /// the multikey index on `ids`, with only its elements projected on
    /// the server.
    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        let mut out = Vec::new();
        let Some(id) = prosumer else {
            let mut cursor = self
                .cleared_frames()
                .find(starts_in(range.start(), range.end()))
                .sort(doc! { "start": 1 })
                .await
                .map_err(db("loading allocations"))?;
            while let Some(f) = cursor.try_next().await.map_err(db("loading allocations"))? {
                let f = f.checked()?;
                let summary = f.summary.summary(f.start)?;
                let values = f.produced.iter().zip(&f.consumed).zip(&f.community_wh);
                for (id, ((&p, &c), &x)) in f.ids.into_iter().zip(values) {
                    out.push(Allocation::new(
                        ProsumerId::new(id)?,
                        &summary,
                        Wh::new(p),
                        Wh::new(c),
                        Wh::new(x),
                    ));
                }
            }
            return Ok(out);
        };
        let pipeline = one_prosumer(range, id);
        let mut cursor = self
            .cleared_frames()
            .aggregate(pipeline)
            .hint(Hint::Name(IDS_INDEX.to_owned()))
            .await
            .map_err(db("loading allocations"))?
            .with_type::<SummaryOnly>();
        while let Some(d) = cursor.try_next().await.map_err(db("loading allocations"))? {
            let summary = d.summary.summary(d.start)?;
            let Some(&[p, c, x]) = d.one.as_deref() else {
                return Err(corrupt("allocation", format!("{id} at {}", d.start)));
            };
            out.push(Allocation::new(
                id.clone(),
                &summary,
                Wh::new(p),
                Wh::new(c),
                Wh::new(x),
            ));
        }
        Ok(out)
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
        let txid = paid.paid_txid.as_deref();
        // Written only while unpaid (or paid by this txid) and standing.
        let filter = doc! {
            "_id": &paid.id,
            "paid_txid": { "$in": [txid, mongodb::bson::Bson::Null] },
            "voided": { "$ne": true },
        };
        let matched = self
            .settlements()
            .update_one(
                filter,
                doc! { "$set": { "paid_txid": txid, "document": document } },
            )
            .await
            .map_err(db("marking a settlement paid"))?
            .matched_count;
        if matched == 1 {
            return Ok(());
        }
        let mut stored = self.stored(&paid.id).await?;
        stored.mark_paid(txid.unwrap_or_default())?;
        Err(StoreError::Database {
            operation: "marking a settlement paid",
            message: format!("settlement {} changed meanwhile; try again", paid.id),
        })
    }

    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        let document = serde_json::to_string(voided).map_err(db("encoding a settlement"))?;
        // Written only while unpaid and standing.
        let filter = doc! { "_id": &voided.id, "paid_txid": null, "voided": { "$ne": true } };
        let matched = self
            .settlements()
            .update_one(
                filter,
                doc! { "$set": { "voided": true, "document": document } },
            )
            .await
            .map_err(db("voiding a settlement"))?
            .matched_count;
        if matched == 1 {
            return Ok(());
        }
        let stored = self.stored(&voided.id).await?;
        if let Some(txid) = stored.paid_txid {
            return Err(microgrid_core::Error::CannotVoidPaid {
                id: stored.id,
                txid,
            }
            .into());
        }
        Ok(())
    }
}

impl MongoStore {
    /// The stored settlement `id`, or [`StoreError::NotFound`].
    async fn stored(&self, id: &str) -> Result<Settlement> {
        self.settlement(id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "settlement",
                key: id.to_owned(),
            })
    }
}

/// The aggregation that finds one prosumer's cleared timeframes in
/// `range` (through [`IDS_INDEX`]) and keeps only its elements of the
/// arrays: `{summary, one: [produced, consumed, community]}`.
pub(super) fn one_prosumer(range: &TimeRange, id: &ProsumerId) -> Vec<mongodb::bson::Document> {
    let mut filter = starts_in(range.start(), range.end());
    filter.insert("ids", id.as_str());
    let at = |array: &str| doc! { "$arrayElemAt": [format!("${array}"), "$$i"] };
    vec![
        doc! { "$match": filter },
        doc! { "$sort": { "start": 1 } },
        doc! { "$project": {
            "summary": 1,
            "one": { "$let": {
                "vars": { "i": { "$indexOfArray": ["$ids", id.as_str()] } },
                "in": [at("produced"), at("consumed"), at("community_wh")],
            } },
        } },
    ]
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
