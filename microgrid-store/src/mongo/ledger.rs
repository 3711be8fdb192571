//! The ledger: one document per cleared timeframe (`cleared_frames`)
//! holding its summary and the allocations as parallel arrays sorted by
//! id, and one per settlement.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::batch::ReadingRow;
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, ProsumerId, Registry, TimeRange, Timeframe, TimeframeClearing,
    TimeframeSummary, Wh,
};
use mongodb::bson::{
    doc, to_raw_document_buf, Bson, DateTime as BsonTime, Decimal128, Document, RawDocumentBuf,
};
use mongodb::options::Hint;
use mongodb::{ClientSession, Collection};
use serde::{Deserialize, Serialize};

use super::readings::{check_ascending, dense_row, Columns};
use super::{
    abort, back_off, bson_time, chrono_time, commit, day_of, decimal, inserting, is_duplicate_key,
    mongo, price, retrying, starts_in, Failed, MongoStore, StartOnly, ATTEMPTS, IDS_INDEX,
};
use crate::error::{Result, StoreError};
use crate::rows::{corrupt, db, SummaryRow};
use crate::traits::{
    clear_open, settled_or_conflict, unwritten_payment, unwritten_voiding, wallet_address_taken,
    ClearCounts, ClearFn, LedgerStore, WalletIndices,
};

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
        let starts = self
            .cleared_matching(session, starts_in(range.start(), range.end()))
            .await?;
        Ok(starts.into_iter().map(chrono_time).collect::<Result<_>>()?)
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

    /// The starts among `starts` that are cleared, read in `session`.
    pub(super) async fn cleared_among(
        &self,
        session: &mut ClientSession,
        starts: &[Bson],
    ) -> std::result::Result<HashSet<BsonTime>, Failed> {
        let stored = self
            .cleared_matching(session, doc! { "_id": { "$in": starts } })
            .await?;
        Ok(stored.into_iter().collect())
    }

    /// The starts of the cleared timeframes that match `filter`, read in
    /// `session`.
    async fn cleared_matching(
        &self,
        session: &mut ClientSession,
        filter: mongodb::bson::Document,
    ) -> std::result::Result<Vec<BsonTime>, Failed> {
        let docs: Vec<StartOnly> = self
            .cleared_frames()
            .clone_with_type::<StartOnly>()
            .find(filter)
            .projection(doc! { "_id": 1 })
            .session(&mut *session)
            .await
            .map_err(mongo("loading cleared timeframes"))?
            .stream(&mut *session)
            .try_collect()
            .await
            .map_err(mongo("loading cleared timeframes"))?;
        Ok(docs.into_iter().map(|d| d.start).collect())
    }

    /// The `rev` of the readings of each of `starts` that has any, as
    /// readers see them (a committed batch's pending version counts),
    /// read in `session`.
    async fn revs_in_session(
        &self,
        session: &mut ClientSession,
        starts: &[Bson],
    ) -> std::result::Result<HashMap<BsonTime, i64>, Failed> {
        let docs: Vec<RevDoc> = self
            .db
            .collection::<RevDoc>("reading_frames")
            .find(doc! { "_id": { "$in": starts } })
            .projection(doc! { "rev": 1, "pending.batch": 1, "pending.frame.rev": 1 })
            .session(&mut *session)
            .await
            .map_err(mongo("loading reading versions"))?
            .stream(&mut *session)
            .try_collect()
            .await
            .map_err(mongo("loading reading versions"))?;
        let batches: BTreeSet<&String> = docs
            .iter()
            .filter_map(|d| d.pending.as_ref().map(|p| &p.batch))
            .collect();
        let batches: Vec<String> = batches.into_iter().cloned().collect();
        let committed = self.committed_among(Some(session), &batches).await?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let rev = match &d.pending {
                    Some(p) if committed.contains(&p.batch) && p.frame.rev == d.rev + 1 => {
                        p.frame.rev
                    }
                    _ => d.rev,
                };
                (d.start, rev)
            })
            .collect())
    }

    /// One transaction storing the cleared timeframes of `docs` that are
    /// not stored yet, with the guards of their days. With `revs` (one
    /// per document: the `rev` of the readings it was cleared from, 0 for
    /// none) a timeframe whose readings changed since is not stored but
    /// returned, to be cleared again. Returns how many were stored, and
    /// those.
    async fn try_store_cleared(
        &self,
        docs: &[(BsonTime, RawDocumentBuf)],
        revs: Option<&[i64]>,
    ) -> std::result::Result<(usize, Vec<BsonTime>), Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            let days = docs.iter().map(|(s, _)| day_of(*s)).collect();
            self.guard_days(&mut session, "day_guards", &days).await?;
            let starts: Vec<Bson> = docs.iter().map(|(s, _)| Bson::DateTime(*s)).collect();
            let stored = self.cleared_among(&mut session, &starts).await?;
            let mut stale = Vec::new();
            if let Some(revs) = revs {
                let now = self.revs_in_session(&mut session, &starts).await?;
                for ((s, _), rev) in docs.iter().zip(revs) {
                    if !stored.contains(s) && now.get(s).copied().unwrap_or(0) != *rev {
                        stale.push(*s);
                    }
                }
            }
            let fresh: Vec<&RawDocumentBuf> = docs
                .iter()
                .filter(|(s, _)| !stored.contains(s) && !stale.contains(s))
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
            Ok((n, stale))
        }
        .await;
        abort(&mut session, result).await
    }

    /// Stores encoded cleared timeframes in transactions of at most
    /// `chunk_bytes`, each retried on conflicts (see
    /// [`MongoStore::try_store_cleared`]; `revs` as there). Returns how
    /// many were stored, and the timeframes whose readings changed.
    async fn store_cleared(
        &self,
        docs: &[(BsonTime, RawDocumentBuf)],
        revs: Option<&[i64]>,
    ) -> Result<(usize, Vec<BsonTime>)> {
        let (mut stored, mut stale) = (0, Vec::new());
        let (mut from, mut bytes) = (0, 0);
        for i in 0..=docs.len() {
            let size = docs.get(i).map_or(0, |(_, d)| d.as_bytes().len());
            let end = i == docs.len();
            if (end || bytes + size > self.chunk_bytes) && i > from {
                let chunk = &docs[from..i];
                let chunk_revs = revs.map(|r| &r[from..i]);
                let (n, s) = retrying!(
                    "storing cleared timeframes",
                    self.try_store_cleared(chunk, chunk_revs)
                )?;
                stored += n;
                stale.extend(s);
                (from, bytes) = (i, 0);
            }
            bytes += size;
        }
        Ok((stored, stale))
    }

    fn claims(&self) -> Collection<Document> {
        self.db.collection("settlement_claims")
    }

    /// One transaction storing settlement `s` (encoded as `d`) with its
    /// claims, unless a standing settlement overlaps it (see
    /// [`LedgerStore::save_settlement`]).
    async fn try_save_settlement(
        &self,
        s: &Settlement,
        d: &SettlementDoc,
    ) -> std::result::Result<Settlement, Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            if let Some(stored) = self
                .settlements()
                .find_one(doc! { "_id": &s.id() })
                .session(&mut session)
                .await
                .map_err(mongo("loading a settlement"))?
            {
                session.abort_transaction().await.ok();
                return Ok(settled_or_conflict(s, Some(parse(&stored)?), None)?);
            }
            self.claim(&mut session, s, d.period_start, d.period_end)
                .await?;
            self.give_wallet_indices(&mut session, s).await?;
            self.settlements()
                .insert_one(d)
                .session(&mut session)
                .await
                .map_err(inserting("saving a settlement"))?;
            commit(&mut session).await?;
            Ok(s.clone())
        }
        .await;
        match abort(&mut session, result).await {
            Err(Failed::Claimed) => self.claimed_by(s).await,
            Err(Failed::AddressTaken) => Err(self.wallet_index_holder(s).await),
            other => other,
        }
    }

    fn wallet_addresses(&self) -> Collection<Document> {
        self.db.collection("wallet_addresses")
    }

    /// Writes a document per wallet index `s` gives out (if it was made
    /// with a wallet) in `session`'s transaction; an index given out
    /// already (a unique `_id`) is [`Failed::AddressTaken`].
    async fn give_wallet_indices(
        &self,
        session: &mut ClientSession,
        s: &Settlement,
    ) -> std::result::Result<(), Failed> {
        let docs = wallet_index_docs(s);
        if docs.is_empty() {
            return Ok(());
        }
        self.wallet_addresses()
            .insert_many(docs)
            .session(&mut *session)
            .await
            .map_err(|e| {
                if is_duplicate_key(&e) {
                    Failed::AddressTaken
                } else {
                    Failed::Mongo("giving out wallet addresses", e)
                }
            })?;
        Ok(())
    }

    /// Why saving `s` found one of its wallet indices given out: the
    /// settlement holding the lowest one
    /// ([`StoreError::WalletAddressTaken`]), or [`Failed::Conflict`] (try
    /// again) when none is held (the other writer did not commit).
    async fn wallet_index_holder(&self, s: &Settlement) -> Failed {
        let Some(w) = WalletIndices::of(s) else {
            return Failed::Conflict;
        };
        let [(_, receive), (_, change)] = w.chains();
        let holder = self
            .wallet_addresses()
            .find_one(doc! {
                "wallet": w.wallet,
                "settlement": { "$ne": s.id() },
                "$or": [
                    { "keychain": "receive", "index": { "$gte": i64::from(receive.start), "$lt": i64::from(receive.end) } },
                    { "keychain": "change", "index": { "$gte": i64::from(change.start), "$lt": i64::from(change.end) } },
                ],
            })
            .sort(doc! { "keychain": -1, "index": 1 })
            .await;
        let held = match holder {
            Ok(Some(h)) => h,
            Ok(None) => return Failed::Conflict,
            Err(e) => return Failed::Mongo("looking up wallet addresses", e),
        };
        match (
            held.get_str("keychain"),
            held.get_i64("index")
                .ok()
                .and_then(|i| u32::try_from(i).ok()),
            held.get_str("settlement"),
        ) {
            (Ok(chain), Some(index), Ok(holder)) => {
                Failed::Store(wallet_address_taken(s, chain, index, holder))
            }
            _ => Failed::Store(corrupt("wallet address", held)),
        }
    }

    /// Writes the wallet indices of settlements stored before
    /// `wallet_addresses` existed (once: they are marked `addresses:
    /// true`), in period order. Were two of them given the same index
    /// (two processes settling at once before), the earlier period's keeps
    /// it; the other keeps the indices no one else gave.
    pub(super) async fn give_earlier_wallet_indices(&self) -> Result<()> {
        let earlier: Vec<SettlementDoc> = self
            .settlements()
            .find(doc! { "addresses": { "$ne": true } })
            .sort(doc! { "period_start": 1, "_id": 1 })
            .await
            .map_err(db("loading settlements"))?
            .try_collect()
            .await
            .map_err(db("loading settlements"))?;
        for d in earlier {
            let s = parse(&d).map_err(|f| f.into_store("loading settlements"))?;
            let docs = wallet_index_docs(&s);
            if !docs.is_empty() {
                let written = self
                    .wallet_addresses()
                    .insert_many(docs)
                    .ordered(false)
                    .await;
                match written {
                    Ok(_) => {}
                    Err(e) if only_duplicates(&e) => {}
                    Err(e) => return Err(db("giving out earlier wallet addresses")(e)),
                }
            }
            self.settlements()
                .update_one(
                    doc! { "_id": &d.id },
                    doc! { "$set": { "addresses": true } },
                )
                .await
                .map_err(db("giving out earlier wallet addresses"))?;
        }
        Ok(())
    }

    /// Claims the timeframes of `s`'s period in `session`'s transaction,
    /// unless a standing settlement overlaps it. The claims' unique `_id`s
    /// keep two standing settlements off one timeframe whatever else
    /// happens; the guards of the period's days and the look-up of
    /// overlapping standing settlements in the same transaction cover
    /// periods whose timeframes are of other lengths.
    async fn claim(
        &self,
        session: &mut ClientSession,
        s: &Settlement,
        start: BsonTime,
        end: BsonTime,
    ) -> std::result::Result<(), Failed> {
        let days: BTreeSet<BsonTime> = s
            .period()
            .timeframes()
            .map(|tf| day_of(bson_time(tf.start())))
            .collect();
        self.guard_days(session, "settled_days", &days).await?;
        let overlapping = self
            .settlements()
            .find_one(doc! {
                "voided": { "$ne": true },
                "period_start": { "$lt": end },
                "period_end": { "$gt": start },
                "_id": { "$ne": &s.id() },
            })
            .session(&mut *session)
            .await
            .map_err(mongo("loading overlapping settlements"))?;
        if let Some(standing) = overlapping {
            return Err(s.conflict_with(&parse(&standing)?).into());
        }
        let claims: Vec<Document> = s
            .period()
            .timeframes()
            .map(|tf| doc! { "_id": bson_time(tf.start()), "settlement": &s.id() })
            .collect();
        self.claims()
            .insert_many(claims)
            .session(&mut *session)
            .await
            .map_err(|e| {
                if is_duplicate_key(&e) {
                    Failed::Claimed
                } else {
                    Failed::Mongo("claiming a period", e)
                }
            })?;
        Ok(())
    }

    /// What saving `s` comes to when a timeframe of its period is claimed
    /// already: the settlement holding the claim decides.
    async fn claimed_by(&self, s: &Settlement) -> std::result::Result<Settlement, Failed> {
        let starts: Vec<Bson> = s
            .period()
            .timeframes()
            .map(|tf| Bson::DateTime(bson_time(tf.start())))
            .collect();
        let claim = self
            .claims()
            .find_one(doc! { "_id": { "$in": starts } })
            .await
            .map_err(mongo("loading settlement claims"))?;
        let holder = match claim.as_ref().map(|c| c.get_str("settlement")) {
            Some(Ok(id)) => self.settlement(id).await?,
            Some(Err(e)) => return Err(corrupt("settlement claim", e).into()),
            None => None,
        };
        let (by_id, overlapping) = match holder {
            Some(h) if h.id() == s.id() => (Some(h), None),
            other => (
                self.settlement(s.id()).await?,
                other.filter(Settlement::stands),
            ),
        };
        match settled_or_conflict(s, by_id, overlapping) {
            // Neither stored nor refused: the claim was released
            // meanwhile; try again.
            Err(StoreError::Database { .. }) => Err(Failed::Conflict),
            other => Ok(other?),
        }
    }

    /// One transaction voiding a stored settlement (unpaid and standing)
    /// and releasing its claims; whether it was written.
    async fn try_void(
        &self,
        voided: &Settlement,
        document: &str,
    ) -> std::result::Result<bool, Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            let matched = self
                .settlements()
                .update_one(
                    doc! { "_id": &voided.id(), "paid_txid": null, "voided": { "$ne": true } },
                    doc! { "$set": { "voided": true, "document": document } },
                )
                .session(&mut session)
                .await
                .map_err(mongo("voiding a settlement"))?
                .matched_count;
            if matched == 1 {
                self.claims()
                    .delete_many(doc! { "settlement": &voided.id() })
                    .session(&mut session)
                    .await
                    .map_err(mongo("releasing settlement claims"))?;
            }
            commit(&mut session).await?;
            Ok(matched == 1)
        }
        .await;
        abort(&mut session, result).await
    }

    /// Claims the periods of standing settlements stored before claims
    /// existed (once: they are marked `claims: true`). Two of them that
    /// overlap are refused, as the SQL stores' constraint refuses them.
    pub(super) async fn claim_earlier_settlements(&self) -> Result<()> {
        let earlier: Vec<SettlementDoc> = self
            .settlements()
            .find(doc! { "claims": { "$ne": true }, "voided": { "$ne": true } })
            .await
            .map_err(db("loading settlements"))?
            .try_collect()
            .await
            .map_err(db("loading settlements"))?;
        for d in earlier {
            let s = parse(&d).map_err(|f| f.into_store("loading settlements"))?;
            let claimed = retrying!("claiming a settlement's period", async {
                let mut session = self.transaction().await?;
                let result = async {
                    self.claim(&mut session, &s, d.period_start, d.period_end)
                        .await?;
                    self.settlements()
                        .update_one(doc! { "_id": &d.id }, doc! { "$set": { "claims": true } })
                        .session(&mut session)
                        .await
                        .map_err(mongo("claiming a settlement's period"))?;
                    commit(&mut session).await
                }
                .await;
                match abort(&mut session, result).await {
                    Err(Failed::Claimed) => self.claimed_by(&s).await.map(|_| ()),
                    other => other,
                }
            });
            if let Err(e) = claimed {
                return Err(StoreError::Database {
                    operation: "opening the database",
                    message: format!(
                        "settlement {} cannot stand with the settlements stored: {e}; \
                         void one of them",
                        s.id()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The documents of `wallet_addresses` for the wallet indices `s` gives
/// out, in key order.
fn wallet_index_docs(s: &Settlement) -> Vec<Document> {
    let Some(w) = WalletIndices::of(s) else {
        return Vec::new();
    };
    w.chains()
        .into_iter()
        .flat_map(|(chain, range)| range.map(move |i| (chain, i)))
        .map(|(chain, i)| {
            doc! {
                "_id": format!("{}/{chain}/{i}", w.wallet),
                "wallet": w.wallet,
                "keychain": chain,
                "index": i64::from(i),
                "settlement": s.id(),
            }
        })
        .collect()
}

/// Whether an unordered insert failed only on keys stored already.
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|ws| ws.iter().all(|w| w.code == 11000))
        }
        _ => false,
    }
}

/// A settlement document's settlement.
fn parse(d: &SettlementDoc) -> std::result::Result<Settlement, Failed> {
    serde_json::from_str(&d.document).map_err(|e| corrupt("settlement", e).into())
}

/// A cleared timeframe encoded as its document: the prosumers with a
/// reading, in id order (`order`: the registry's indices by id).
fn encode_cleared(
    registry: &Registry,
    order: &[u32],
    readings: &ReadingRow,
    cleared: &ClearedRow,
) -> Result<(BsonTime, RawDocumentBuf)> {
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
    Ok((start, doc))
}

/// A reading document's version (see [`MongoStore::revs_in_session`]).
#[derive(Debug, Deserialize)]
struct RevDoc {
    #[serde(rename = "_id")]
    start: BsonTime,
    rev: i64,
    #[serde(default)]
    pending: Option<PendingRev>,
}

#[derive(Debug, Deserialize)]
struct PendingRev {
    batch: String,
    frame: RevOnly,
}

#[derive(Debug, Deserialize)]
struct RevOnly {
    rev: i64,
}

impl LedgerStore for MongoStore {
    /// One document, its `_id` keeping the first result, stored with the
    /// guard of its day (see the module documentation).
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
        let (stored, _) = self.store_cleared(&[(bson_time(start), doc)], None).await?;
        Ok(stored == 1)
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
        let docs = rows
            .iter()
            .map(|(readings, cleared)| encode_cleared(registry, &order, readings, cleared))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.store_cleared(&docs, None).await?.0)
    }

    /// Reads the open timeframes' readings with their `rev`s, clears them,
    /// and stores each result only if its readings are still at that
    /// `rev` (checked in the transaction that stores it, which also
    /// guards its day, so no ingest commits in between); a timeframe
    /// whose readings changed is read and cleared again.
    async fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> Result<ClearCounts> {
        let order = registry.id_order();
        let mut cleared = 0;
        // The part of `range` still to clear, and which of its timeframes.
        let mut todo: Option<(TimeRange, BTreeSet<BsonTime>)> = None;
        for tries in 1.. {
            let part = todo.as_ref().map_or(*range, |(r, _)| *r);
            let done = self.cleared(&part).await?;
            let (rows, revs) = self.frame_rows(&part, registry).await?;
            let mut open: Vec<(Timeframe, Arc<ReadingRow>)> = Vec::new();
            let mut open_revs = Vec::new();
            for ((tf, row), rev) in part.timeframes().zip(rows).zip(revs) {
                let wanted = todo
                    .as_ref()
                    .is_none_or(|(_, s)| s.contains(&bson_time(tf.start())));
                if wanted && !done.contains(&tf.start()) {
                    open.push((tf, row));
                    open_revs.push(rev);
                }
            }
            if open.is_empty() {
                break;
            }
            let docs = clear_open(open, clear)?
                .iter()
                .map(|(readings, result)| encode_cleared(registry, &order, readings, result))
                .collect::<Result<Vec<_>>>()?;
            let (stored, stale) = self.store_cleared(&docs, Some(&open_revs)).await?;
            cleared += stored;
            let (Some(&first), Some(&last)) = (stale.first(), stale.last()) else {
                break;
            };
            if tries >= ATTEMPTS {
                return Err(StoreError::Database {
                    operation: "clearing",
                    message: format!(
                        "the readings of {} timeframes changed {ATTEMPTS} times while they were cleared",
                        stale.len()
                    ),
                });
            }
            back_off(tries).await;
            let end = chrono_time(last)? + range.length().duration();
            let part = TimeRange::new(chrono_time(first)?, end, range.length())?;
            todo = Some((part, stale.into_iter().collect()));
        }
        Ok(ClearCounts {
            cleared,
            already_cleared: range.len() - cleared,
        })
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

    /// In one transaction: the settlement, and a claim of each timeframe
    /// of its period (unique `_id`s), unless a standing settlement
    /// overlaps it (found in that transaction, or holding a claim).
    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        if let Some(v) = &s.voided() {
            return Err(microgrid_core::Error::SettlementVoided {
                id: s.id().to_string(),
                reason: v.reason.clone(),
            }
            .into());
        }
        let d = SettlementDoc {
            id: s.id().to_string(),
            period_start: bson_time(s.period().start()),
            period_end: bson_time(s.period().end()),
            content_hash: s.content_hash(),
            paid_txid: s.paid_by().map(|t| t.to_string()),
            voided: false,
            claims: true,
            addresses: true,
            document: serde_json::to_string(s).map_err(db("encoding a settlement"))?,
        };
        retrying!("saving a settlement", self.try_save_settlement(s, &d))
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
            .find_one(
                doc! { "period_end": { "$lte": bson_time(before) }, "voided": { "$ne": true } },
            )
            .sort(doc! { "period_end": -1, "_id": -1 })
            .await
            .map_err(db("loading the last settlement"))?;
        d.map(|d| serde_json::from_str(&d.document).map_err(|e| corrupt("settlement", e)))
            .transpose()
    }

    async fn voided_settlements(&self) -> Result<Vec<Settlement>> {
        let mut cursor = self
            .settlements()
            .find(doc! { "voided": true })
            .sort(doc! { "period_end": 1, "_id": 1 })
            .await
            .map_err(db("loading the voided settlements"))?;
        let mut voided = Vec::new();
        while let Some(d) = cursor
            .try_next()
            .await
            .map_err(db("loading the voided settlements"))?
        {
            voided.push(serde_json::from_str(&d.document).map_err(|e| corrupt("settlement", e))?);
        }
        Ok(voided)
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_string(paid).map_err(db("encoding a settlement"))?;
        let txid = paid.paid_by().map(|t| t.to_string());
        // Written only while unpaid (or paid by this txid) and standing.
        let filter = doc! {
            "_id": &paid.id(),
            "paid_txid": { "$in": [txid.clone(), mongodb::bson::Bson::Null] },
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
        unwritten_payment(self.settlement(paid.id()).await?, paid)
    }

    /// In one transaction: marked voided (only while unpaid and
    /// standing), and its claims released.
    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        if voided.voided().is_none() {
            return Ok(());
        }
        let document = serde_json::to_string(voided).map_err(db("encoding a settlement"))?;
        if retrying!("voiding a settlement", self.try_void(voided, &document))? {
            return Ok(());
        }
        unwritten_voiding(self.settlement(voided.id()).await?, voided)
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
    /// Whether it is voided (then it holds no claims).
    #[serde(default)]
    voided: bool,
    /// Whether its period's claims were written (false only for a
    /// settlement stored before claims existed; see
    /// [`MongoStore::claim_earlier_settlements`]).
    #[serde(default)]
    claims: bool,
    /// Whether the wallet indices it gives out are in `wallet_addresses`
    /// (false only for a settlement stored before they were; see
    /// [`MongoStore::give_earlier_wallet_indices`]).
    #[serde(default)]
    addresses: bool,
    /// The settlement as JSON text (exact: decimals are strings in it).
    document: String,
}
