//! Readings: one document per timeframe (`reading_frames`), the
//! prosumers' values as parallel arrays sorted by id. Batches larger than
//! one transaction are staged as pending versions under a batch document
//! (`ingest_batches`) and take effect when it is committed (see the
//! parent module).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::batch::{check_ingest, IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::{
    IngestPlan, ProsumerId, Reading, Registry, TimeRange, Timeframe, TimeframeLength, Wh,
};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{
    doc, to_raw_document_buf, Bson, DateTime as BsonTime, Document, RawDocumentBuf,
};
use mongodb::{ClientSession, Collection};
use serde::{Deserialize, Serialize};

use super::{
    abort, back_off, bson_starts, bson_time, chrono_time, commit, day_of, inserting, is_too_large,
    mongo, retrying, starts_in, worth_retrying, Failed, IdOnly, MongoStore, StartOnly, ATTEMPTS,
};
use crate::error::{Result, StoreError};
use crate::rows::{corrupt, db, length};
use crate::traits::ReadingStore;

/// The readings of one timeframe.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ReadingFrame {
    #[serde(rename = "_id")]
    id: BsonTime,
    /// The same as `_id`, for range queries (see the module documentation).
    start: BsonTime,
    length_minutes: i32,
    /// The version: 1 for the first content, one more for each change; 0
    /// for a placeholder (a document holding only a pending version).
    pub(super) rev: i64,
    pub(super) ids: Vec<String>,
    pub(super) produced: Vec<i64>,
    pub(super) consumed: Vec<i64>,
    /// The next version, staged by a batch written in several
    /// transactions: the content once that batch is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pending: Option<Pending>,
}

/// A version staged by a batch.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Pending {
    /// The `_id` of its document in `ingest_batches`.
    pub(super) batch: String,
    /// The version (its `rev` one more than the document's).
    pub(super) frame: Box<ReadingFrame>,
}

/// A [`ReadingFrame`] to write, borrowing its arrays.
#[derive(Serialize)]
struct ReadingFrameOut<'a> {
    #[serde(rename = "_id")]
    id: BsonTime,
    start: BsonTime,
    length_minutes: i32,
    rev: i64,
    ids: &'a [&'a str],
    produced: &'a [i64],
    consumed: &'a [i64],
}

/// A document with a version staged next to its content.
#[derive(Serialize)]
struct StagedOut<'a> {
    #[serde(rename = "_id")]
    id: BsonTime,
    start: BsonTime,
    length_minutes: i32,
    rev: i64,
    ids: &'a [String],
    produced: &'a [i64],
    consumed: &'a [i64],
    pending: PendingOut<'a>,
}

#[derive(Serialize)]
struct PendingOut<'a> {
    batch: &'a str,
    frame: &'a RawDocumentBuf,
}

impl ReadingFrame {
    /// Checks what the code below relies on: arrays of one length, ids
    /// strictly ascending (in the pending version too).
    fn checked(self) -> Result<ReadingFrame> {
        let n = self.ids.len();
        if self.produced.len() != n || self.consumed.len() != n || self.id != self.start {
            return Err(corrupt("reading document", self.start));
        }
        check_ascending(&self.ids, self.start)?;
        if let Some(p) = &self.pending {
            let f = &p.frame;
            let n = f.ids.len();
            if f.produced.len() != n || f.consumed.len() != n || f.id != self.id {
                return Err(corrupt("pending reading document", self.start));
            }
            check_ascending(&f.ids, self.start)?;
        }
        Ok(self)
    }

    /// An error unless the document is of timeframes of `expected` length
    /// (`id`: a prosumer to name in the error).
    fn check_length(&self, expected: TimeframeLength, id: &str) -> Result<()> {
        let found = u32::try_from(self.length_minutes)
            .map_err(|_| corrupt("timeframe length", self.length_minutes))?;
        if found == expected.minutes() {
            return Ok(());
        }
        Err(mixed(id, chrono_time(self.start)?, expected, found))
    }
}

/// An error unless `ids` are strictly ascending.
pub(super) fn check_ascending(ids: &[String], start: BsonTime) -> Result<()> {
    match ids.windows(2).find(|w| w[0] >= w[1]) {
        Some(w) => Err(corrupt(
            "order of prosumer ids",
            format!("{} at {start}", w[1]),
        )),
        None => Ok(()),
    }
}

/// What a reading document holds, as a write's condition: its `rev` and
/// the batch of its pending version.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) rev: i64,
    pub(super) batch: Option<String>,
    /// Whether that batch is committed (then the pending version is the
    /// content).
    pub(super) committed: bool,
}

impl Held {
    /// The filter that matches the document only while it holds this.
    fn filter(&self, start: BsonTime) -> Document {
        doc! { "_id": start, "rev": self.rev, "pending.batch": self.batch.as_deref() }
    }
}

/// A reading document as loaded.
#[derive(Debug)]
pub(super) struct Loaded {
    /// Its content: the pending version of a committed batch, else its
    /// own (empty arrays for a placeholder). Without `pending`.
    pub(super) frame: ReadingFrame,
    pub(super) held: Held,
}

impl Loaded {
    /// Resolves a checked document given the committed batches.
    fn of(mut d: ReadingFrame, committed: &HashSet<String>) -> Loaded {
        let mut held = Held {
            rev: d.rev,
            batch: None,
            committed: false,
        };
        if let Some(p) = d.pending.take() {
            held.committed = committed.contains(&p.batch) && p.frame.rev == d.rev + 1;
            held.batch = Some(p.batch);
            if held.committed {
                let mut f = *p.frame;
                f.pending = None;
                d = f;
            }
        }
        Loaded { frame: d, held }
    }

    /// Whether it holds no readings (a placeholder).
    fn is_empty(&self) -> bool {
        self.frame.ids.is_empty()
    }
}

/// A reading document to write: the new version, and the document it was
/// planned from (`None`: there was none). Every write is conditional on
/// the document still holding what it was planned from.
pub(super) struct FrameWrite {
    pub(super) start: BsonTime,
    pub(super) length_minutes: i32,
    pub(super) doc: RawDocumentBuf,
    pub(super) old: Option<Loaded>,
}

impl FrameWrite {
    /// The document with the new version staged by `batch` next to the
    /// content it was planned from.
    fn staged(&self, batch: &str) -> Result<RawDocumentBuf> {
        let (rev, ids, produced, consumed): (i64, &[String], &[i64], &[i64]) = match &self.old {
            Some(l) => (
                l.frame.rev,
                &l.frame.ids,
                &l.frame.produced,
                &l.frame.consumed,
            ),
            None => (0, &[], &[], &[]),
        };
        to_raw_document_buf(&StagedOut {
            id: self.start,
            start: self.start,
            length_minutes: self.length_minutes,
            rev,
            ids,
            produced,
            consumed,
            pending: PendingOut {
                batch,
                frame: &self.doc,
            },
        })
        .map_err(db("encoding readings"))
    }
}

fn encode(
    start: BsonTime,
    length_minutes: i32,
    rev: i64,
    ids: &[&str],
    produced: &[i64],
    consumed: &[i64],
) -> Result<RawDocumentBuf> {
    to_raw_document_buf(&ReadingFrameOut {
        id: start,
        start,
        length_minutes,
        rev,
        ids,
        produced,
        consumed,
    })
    .map_err(db("encoding readings"))
}

/// The UTC days of `writes`' timeframes.
fn days_of<'a>(writes: impl IntoIterator<Item = &'a FrameWrite>) -> BTreeSet<BsonTime> {
    writes.into_iter().map(|w| day_of(w.start)).collect()
}

/// `writes` cut into runs of at most `bytes` of documents (at least one
/// document each).
fn chunks(writes: &[FrameWrite], bytes: usize) -> Vec<&[FrameWrite]> {
    let mut out: Vec<&[FrameWrite]> = Vec::new();
    let (mut from, mut size) = (0, 0);
    for (i, w) in writes.iter().enumerate() {
        let n = w.doc.as_bytes().len();
        if i > from && size + n > bytes {
            out.push(&writes[from..i]);
            (from, size) = (i, 0);
        }
        size += n;
    }
    if from < writes.len() {
        out.push(&writes[from..]);
    }
    out
}

/// Maps the `ids` arrays of stored documents to a registry's dense
/// indices. Documents of one store usually hold the same ids, so the
/// last mapping is kept and reused while they do.
pub(super) struct Columns<'r> {
    by_id: HashMap<&'r str, u32>,
    last_ids: Vec<String>,
    last: Vec<u32>,
}

/// The index of an id the registry does not know.
const UNKNOWN: u32 = u32::MAX;

impl<'r> Columns<'r> {
    pub(super) fn new(registry: &'r Registry) -> Columns<'r> {
        Columns {
            by_id: registry
                .by_index()
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id().as_str(), i as u32))
                .collect(),
            last_ids: Vec::new(),
            last: Vec::new(),
        }
    }

    /// The index of each of `ids` ([`UNKNOWN`] for ids not registered).
    fn of(&mut self, ids: &[String]) -> &[u32] {
        if ids != self.last_ids.as_slice() {
            let mapped = ids
                .iter()
                .map(|id| self.by_id.get(id.as_str()).copied().unwrap_or(UNKNOWN))
                .collect();
            self.last = mapped;
            self.last_ids = ids.to_vec();
        }
        &self.last
    }

    /// The index of each of `ids`; an unregistered id is an error.
    pub(super) fn known(&mut self, ids: &[String]) -> Result<&[u32]> {
        let indices = self.of(ids);
        match indices.iter().position(|&i| i == UNKNOWN) {
            Some(k) => Err(microgrid_core::Error::UnknownProsumer(ids[k].clone()).into()),
            None => Ok(indices),
        }
    }
}

/// A dense row of `width` from a document's arrays (`indices` from
/// [`Columns`]; unregistered ids are left out).
pub(super) fn dense_row(
    indices: &[u32],
    produced: &[i64],
    consumed: &[i64],
    width: usize,
) -> ReadingRow {
    let mut row = ReadingRow::with_width(width);
    for ((&i, &p), &c) in indices.iter().zip(produced).zip(consumed) {
        if i != UNKNOWN {
            row.set(i as usize, Wh::new(p), Wh::new(c));
        }
    }
    row
}

/// A batch's distinct readings grouped by timeframe: the rows of its span
/// that it touches (ascending) and, per row, its readings in id order.
struct Grouped {
    rows: Vec<usize>,
    /// Where each row's entries start in `entries` (and the end).
    bounds: Vec<usize>,
    /// (prosumer index, produced, consumed).
    entries: Vec<(u32, i64, i64)>,
}

impl Grouped {
    fn of(batch: &ValidReadings, registry: &Registry, span: &TimeRange) -> Result<Grouped> {
        if u32::try_from(span.len()).is_err() {
            return Err(microgrid_core::Error::Overflow("timeframes in one batch").into());
        }
        let c = batch.columns();
        let mut rank = vec![UNKNOWN; registry.len()];
        for (r, &i) in registry.id_order().iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        let mut keyed: Vec<(u64, usize)> = batch
            .distinct()
            .map(|i| {
                let p = c.prosumers()[i] as usize;
                let r = rank.get(p).copied().unwrap_or(UNKNOWN);
                (((batch.row_of(i) as u64) << 32) | u64::from(r), i)
            })
            .collect();
        keyed.sort_unstable_by_key(|&(key, _)| key);
        let mut g = Grouped {
            rows: Vec::new(),
            bounds: Vec::new(),
            entries: Vec::with_capacity(keyed.len()),
        };
        for (key, i) in keyed {
            let k = (key >> 32) as usize;
            if g.rows.last() != Some(&k) {
                g.rows.push(k);
                g.bounds.push(g.entries.len());
            }
            g.entries
                .push((c.prosumers()[i], c.produced()[i], c.consumed()[i]));
        }
        g.bounds.push(g.entries.len());
        Ok(g)
    }

    fn group(&self, j: usize) -> &[(u32, i64, i64)] {
        &self.entries[self.bounds[j]..self.bounds[j + 1]]
    }
}

/// The start of row `k` of `span`.
fn start_of(span: &TimeRange, k: usize) -> Result<DateTime<Utc>> {
    let secs = span.start().timestamp() + k as i64 * span.length().seconds();
    DateTime::from_timestamp(secs, 0).ok_or_else(|| corrupt("timeframe", secs))
}

/// The new version of a stored document (or a new one) with `entries`
/// (sorted by id) merged in; `None` if it changes nothing.
pub(super) fn merge_frame(
    start: BsonTime,
    length_minutes: i32,
    old: Option<Loaded>,
    entries: &[(u32, i64, i64)],
    registry: &Registry,
) -> Result<Option<FrameWrite>> {
    let id_of = |i: u32| -> Result<&str> {
        registry
            .at(i as usize)
            .map(|p| p.id().as_str())
            .ok_or_else(|| microgrid_core::Error::UnknownProsumer(format!("#{i}")).into())
    };
    let mut changed = old.is_none();
    let merged = {
        let (oids, op, oc): (&[String], &[i64], &[i64]) = match &old {
            Some(l) => (&l.frame.ids, &l.frame.produced, &l.frame.consumed),
            None => (&[], &[], &[]),
        };
        let n = oids.len() + entries.len();
        let (mut ids, mut produced, mut consumed) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut a, mut b) = (0, 0);
        loop {
            let new = entries
                .get(b)
                .map(|e| Ok::<_, StoreError>((id_of(e.0)?, e.1, e.2)));
            let new = new.transpose()?;
            let order = match (oids.get(a), &new) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(o), Some((id, _, _))) => o.as_str().cmp(id),
            };
            match (order, new) {
                (std::cmp::Ordering::Less, _) | (_, None) => {
                    ids.push(oids[a].as_str());
                    produced.push(op[a]);
                    consumed.push(oc[a]);
                    a += 1;
                }
                (std::cmp::Ordering::Greater, Some((id, p, c))) => {
                    ids.push(id);
                    produced.push(p);
                    consumed.push(c);
                    changed = true;
                    b += 1;
                }
                (std::cmp::Ordering::Equal, Some((id, p, c))) => {
                    changed |= (op[a], oc[a]) != (p, c);
                    ids.push(id);
                    produced.push(p);
                    consumed.push(c);
                    a += 1;
                    b += 1;
                }
            }
        }
        (ids, produced, consumed)
    };
    if !changed {
        return Ok(None);
    }
    let (ids, produced, consumed) = merged;
    let rev = old.as_ref().map_or(1, |l| l.frame.rev + 1);
    let doc = encode(start, length_minutes, rev, &ids, &produced, &consumed)?;
    drop(ids);
    Ok(Some(FrameWrite {
        start,
        length_minutes,
        doc,
        old,
    }))
}

impl MongoStore {
    pub(super) fn frames(&self) -> Collection<ReadingFrame> {
        self.db.collection("reading_frames")
    }

    fn raw_frames(&self) -> Collection<RawDocumentBuf> {
        self.db.collection("reading_frames")
    }

    pub(super) fn batches(&self) -> Collection<Document> {
        self.db.collection("ingest_batches")
    }

    /// Which of `batches` are committed, read in `session` if one is given.
    pub(super) async fn committed_among(
        &self,
        session: Option<&mut ClientSession>,
        batches: &[String],
    ) -> std::result::Result<HashSet<String>, Failed> {
        if batches.is_empty() {
            return Ok(HashSet::new());
        }
        let batch_docs = self.batches().clone_with_type::<IdOnly>();
        let find = batch_docs
            .find(doc! { "_id": { "$in": batches }, "state": "committed" })
            .projection(doc! { "_id": 1 });
        let found: Vec<IdOnly> = match session {
            Some(s) => find
                .session(&mut *s)
                .await
                .map_err(mongo("loading batch states"))?
                .stream(&mut *s)
                .try_collect()
                .await
                .map_err(mongo("loading batch states"))?,
            None => find
                .await
                .map_err(mongo("loading batch states"))?
                .try_collect()
                .await
                .map_err(mongo("loading batch states"))?,
        };
        Ok(found.into_iter().map(|b| b.id).collect())
    }

    /// Resolves documents (checked) against the states of the batches
    /// whose versions they hold, read after the documents (in `session`
    /// if one is given).
    async fn resolve(
        &self,
        session: Option<&mut ClientSession>,
        docs: Vec<ReadingFrame>,
    ) -> std::result::Result<Vec<Loaded>, Failed> {
        let docs = docs
            .into_iter()
            .map(ReadingFrame::checked)
            .collect::<Result<Vec<_>>>()?;
        let batches: BTreeSet<&String> = docs
            .iter()
            .filter_map(|d| d.pending.as_ref().map(|p| &p.batch))
            .collect();
        let batches: Vec<String> = batches.into_iter().cloned().collect();
        let committed = self.committed_among(session, &batches).await?;
        Ok(docs
            .into_iter()
            .map(|d| Loaded::of(d, &committed))
            .collect())
    }

    /// The reading documents of `starts` (ascending), read and resolved
    /// in `session`.
    pub(super) async fn load_frames(
        &self,
        session: &mut ClientSession,
        starts: &[DateTime<Utc>],
        step_secs: i64,
    ) -> std::result::Result<Vec<Option<Loaded>>, Failed> {
        let mut out: Vec<Option<Loaded>> = starts.iter().map(|_| None).collect();
        let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
            return Ok(out);
        };
        // One range when the starts are dense, else lists of them.
        let spanned = (last - first).num_seconds() / step_secs.max(1) + 1;
        let filters: Vec<Document> = if spanned <= 2 * starts.len() as i64 {
            vec![doc! { "start": { "$gte": bson_time(first), "$lte": bson_time(last) } }]
        } else {
            starts
                .chunks(10_000)
                .map(|c| doc! { "_id": { "$in": bson_starts(c) } })
                .collect()
        };
        let mut docs = Vec::new();
        for filter in filters {
            let mut cursor = self
                .frames()
                .find(filter)
                .session(&mut *session)
                .await
                .map_err(mongo("loading readings"))?;
            let mut stream = cursor.stream(&mut *session);
            while let Some(f) = stream.try_next().await.map_err(mongo("loading readings"))? {
                if let Ok(j) = starts.binary_search(&chrono_time(f.start)?) {
                    docs.push((j, f));
                }
            }
        }
        let (at, docs): (Vec<usize>, Vec<ReadingFrame>) = docs.into_iter().unzip();
        for (j, l) in at.into_iter().zip(self.resolve(Some(session), docs).await?) {
            out[j] = Some(l);
        }
        Ok(out)
    }

    /// Writes reading documents in `session`'s transaction, with the
    /// guards of their days: new ones inserted, the others replaced on
    /// condition that they still hold what they were planned from.
    async fn write_frames(
        &self,
        session: &mut ClientSession,
        writes: &[FrameWrite],
    ) -> std::result::Result<(), Failed> {
        self.guard_days(session, "day_guards", &days_of(writes))
            .await?;
        let held = writes
            .iter()
            .filter_map(|w| Some(w.old.as_ref()?.held.filter(w.start)));
        self.replace(
            session,
            held,
            writes.iter().map(|w| &w.doc),
            "writing readings",
        )
        .await
    }

    /// Replaces documents in `session`'s transaction: deletes each of
    /// `held` (a filter that matches one document only while it holds
    /// what the write was planned from; none matching is a conflict),
    /// then inserts `docs` (a duplicate `_id` is a conflict). In one
    /// transaction this is a conditional replacement; on the test server
    /// a delete and an insert cost a fifth of replacing a large document.
    async fn replace<'a>(
        &self,
        session: &mut ClientSession,
        held: impl Iterator<Item = Document>,
        docs: impl Iterator<Item = &'a RawDocumentBuf>,
        operation: &'static str,
    ) -> std::result::Result<(), Failed> {
        for filter in held {
            let deleted = self
                .raw_frames()
                .delete_one(filter)
                .session(&mut *session)
                .await
                .map_err(mongo(operation))?;
            if deleted.deleted_count == 0 {
                return Err(Failed::Conflict);
            }
        }
        let docs: Vec<&RawDocumentBuf> = docs.collect();
        if !docs.is_empty() {
            self.raw_frames()
                .insert_many(docs)
                .session(&mut *session)
                .await
                .map_err(inserting(operation))?;
        }
        Ok(())
    }

    /// Writes `writes` as one batch in two phases (see the module
    /// documentation): staged in transactions of at most `chunk_bytes`,
    /// then committed in one that checks that every staged version is in
    /// place and (if `check_cleared`) that none of the timeframes was
    /// cleared meanwhile. A conflict (another writer changed a document,
    /// or cleared a timeframe) abandons the batch and is returned, so
    /// that the caller plans again.
    pub(super) async fn write_batch(
        &self,
        writes: &[FrameWrite],
        check_cleared: bool,
    ) -> std::result::Result<(), Failed> {
        let batch = ObjectId::new().to_hex();
        self.batches()
            .insert_one(doc! {
                "_id": &batch,
                "state": "pending",
                "started": BsonTime::now(),
                "frames": writes.len() as i64,
            })
            .await
            .map_err(mongo("starting a batch of readings"))?;
        let done = async {
            for chunk in chunks(writes, self.chunk_bytes) {
                transient(|| self.try_stage(&batch, chunk)).await?;
            }
            transient(|| self.try_commit_batch(&batch, writes, check_cleared)).await
        }
        .await;
        match done {
            Ok(()) => {}
            // A commit whose answer was lost may have happened.
            Err(f) => {
                if !self.abandon(&batch).await {
                    return Err(f);
                }
            }
        }
        // Committed: move the versions into place, each replacing its
        // document only while that holds it pending (best effort: until
        // they are moved, readers take them through the batch's state,
        // and the next writer of a document moves its version).
        for chunk in chunks(writes, self.chunk_bytes) {
            transient(|| self.try_move_into_place(&batch, chunk))
                .await
                .ok();
        }
        Ok(())
    }

    /// One transaction moving the versions of `chunk` of a committed
    /// batch into place: the documents still holding them pending are
    /// replaced by them (the others were rewritten by later writers,
    /// which moved them).
    async fn try_move_into_place(
        &self,
        batch: &str,
        chunk: &[FrameWrite],
    ) -> std::result::Result<(), Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            let starts: Vec<Bson> = chunk.iter().map(|w| Bson::DateTime(w.start)).collect();
            let deleted = self
                .raw_frames()
                .delete_many(doc! { "_id": { "$in": &starts }, "pending.batch": batch })
                .session(&mut session)
                .await
                .map_err(mongo("moving readings into place"))?
                .deleted_count;
            if deleted as usize != chunk.len() {
                // Some were rewritten meanwhile: one by one.
                session.abort_transaction().await.ok();
                session
                    .start_transaction()
                    .await
                    .map_err(mongo("starting a transaction"))?;
                for w in chunk {
                    let held = doc! { "_id": w.start, "pending.batch": batch };
                    let one = self
                        .replace(
                            &mut session,
                            std::iter::once(held),
                            std::iter::once(&w.doc),
                            "moving readings into place",
                        )
                        .await;
                    match one {
                        Ok(()) | Err(Failed::Conflict) => {}
                        Err(f) => return Err(f),
                    }
                }
            } else {
                self.raw_frames()
                    .insert_many(chunk.iter().map(|w| &w.doc))
                    .session(&mut session)
                    .await
                    .map_err(mongo("moving readings into place"))?;
            }
            commit(&mut session).await
        }
        .await;
        abort(&mut session, result).await
    }

    /// One transaction staging `chunk` of a batch.
    pub(super) async fn try_stage(
        &self,
        batch: &str,
        chunk: &[FrameWrite],
    ) -> std::result::Result<(), Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            self.guard_days(&mut session, "day_guards", &days_of(chunk))
                .await?;
            let mut staged = Vec::with_capacity(chunk.len());
            let mut overwritten = BTreeSet::new();
            for w in chunk {
                staged.push(w.staged(batch)?);
                if let Some(Held {
                    batch: Some(b),
                    committed: false,
                    ..
                }) = w.old.as_ref().map(|o| &o.held)
                {
                    overwritten.insert(b.clone());
                }
            }
            let held = chunk
                .iter()
                .filter_map(|w| Some(w.old.as_ref()?.held.filter(w.start)));
            self.replace(&mut session, held, staged.iter(), "staging readings")
                .await?;
            // The pending versions replaced were of batches not committed
            // when this one was planned; still so, or plan again.
            let overwritten: Vec<String> = overwritten.into_iter().collect();
            if !self
                .committed_among(Some(&mut session), &overwritten)
                .await?
                .is_empty()
            {
                return Err(Failed::Conflict);
            }
            commit(&mut session).await
        }
        .await;
        abort(&mut session, result).await
    }

    /// One transaction committing a staged batch.
    pub(super) async fn try_commit_batch(
        &self,
        batch: &str,
        writes: &[FrameWrite],
        check_cleared: bool,
    ) -> std::result::Result<(), Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            self.guard_days(&mut session, "day_guards", &days_of(writes))
                .await?;
            let starts: Vec<Bson> = writes.iter().map(|w| Bson::DateTime(w.start)).collect();
            let mut in_place = 0;
            for part in starts.chunks(10_000) {
                let staged: Vec<StartOnly> = self
                    .frames()
                    .clone_with_type::<StartOnly>()
                    .find(doc! { "_id": { "$in": part }, "pending.batch": batch })
                    .projection(doc! { "_id": 1 })
                    .session(&mut session)
                    .await
                    .map_err(mongo("checking a batch of readings"))?
                    .stream(&mut session)
                    .try_collect()
                    .await
                    .map_err(mongo("checking a batch of readings"))?;
                in_place += staged.len();
            }
            if in_place != writes.len() {
                return Err(Failed::Conflict);
            }
            if check_cleared {
                for part in starts.chunks(10_000) {
                    let cleared = self.cleared_among(&mut session, part).await?;
                    if !cleared.is_empty() {
                        return Err(Failed::Conflict);
                    }
                }
            }
            let committed = self
                .batches()
                .update_one(
                    doc! { "_id": batch, "state": "pending" },
                    doc! { "$set": { "state": "committed", "committed": BsonTime::now() } },
                )
                .session(&mut session)
                .await
                .map_err(mongo("committing a batch of readings"))?;
            if committed.matched_count == 0 {
                return Err(Failed::Conflict);
            }
            commit(&mut session).await
        }
        .await;
        abort(&mut session, result).await
    }

    /// Abandons a batch that failed: marks it aborted (if it is still
    /// pending) and removes its pending versions and placeholders (best
    /// effort: they are invisible either way). Returns whether the batch
    /// turned out committed after all (a commit whose answer was lost).
    async fn abandon(&self, batch: &str) -> bool {
        let aborted = self
            .batches()
            .update_one(
                doc! { "_id": batch, "state": "pending" },
                doc! { "$set": { "state": "aborted" } },
            )
            .await;
        match aborted {
            Ok(r) if r.matched_count == 1 => {}
            Ok(_) => {
                let batches = [batch.to_owned()];
                match self.committed_among(None, &batches).await {
                    Ok(c) if c.is_empty() => {}
                    Ok(_) => return true,
                    // Unknown: leave its versions (invisible unless committed).
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        }
        // Only what this batch wrote: placeholders holding nothing but its
        // version, and its versions.
        self.frames()
            .delete_many(doc! { "pending.batch": batch, "rev": 0 })
            .await
            .ok();
        self.frames()
            .update_many(
                doc! { "pending.batch": batch },
                doc! { "$unset": { "pending": "" } },
            )
            .await
            .ok();
        false
    }

    /// One attempt at changing the reading documents of `starts`: reads
    /// them (and the cleared timeframes of `span`) in a transaction,
    /// `build`s the writes, and writes them in that transaction if they
    /// fit, else as a batch in two phases (see the module documentation).
    async fn try_update_frames<T, F>(
        &self,
        starts: &[DateTime<Utc>],
        step_secs: i64,
        span: Option<&TimeRange>,
        build: &F,
    ) -> std::result::Result<T, Failed>
    where
        F: Fn(Vec<Option<Loaded>>, &BTreeSet<DateTime<Utc>>) -> Result<(Vec<FrameWrite>, T)> + Sync,
        T: Send,
    {
        let mut session = self.transaction().await?;
        let read = async {
            let frames = self.load_frames(&mut session, starts, step_secs).await?;
            let cleared = match span {
                Some(span) => self.cleared_in_session(&mut session, span).await?,
                None => BTreeSet::new(),
            };
            Ok(build(frames, &cleared)?)
        }
        .await;
        let (writes, value) = abort(&mut session, read).await?;
        if writes.is_empty() {
            session.abort_transaction().await.ok();
            return Ok(value);
        }
        let bytes: usize = writes.iter().map(|w| w.doc.as_bytes().len()).sum();
        if bytes <= self.txn_bytes {
            let written = async {
                self.write_frames(&mut session, &writes).await?;
                commit(&mut session).await
            }
            .await;
            match abort(&mut session, written).await {
                Ok(()) => return Ok(value),
                // More than this server takes in one transaction.
                Err(Failed::Mongo(_, e)) if is_too_large(&e) => {}
                Err(f) => return Err(f),
            }
        } else {
            session.abort_transaction().await.ok();
        }
        drop(session);
        self.write_batch(&writes, span.is_some()).await?;
        Ok(value)
    }

    /// The readings of `range` as dense rows by `registry`'s indices,
    /// with the `rev` of each row's content (0: none).
    pub(super) async fn frame_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<(Vec<Arc<ReadingRow>>, Vec<i64>)> {
        let width = registry.len();
        let mut columns = Columns::new(registry);
        let empty = Arc::new(ReadingRow::default());
        let mut rows = vec![empty; range.len()];
        let mut revs = vec![0; range.len()];
        let (first, secs) = (range.start().timestamp(), range.length().seconds());
        let mut place = |f: ReadingFrame| -> Result<()> {
            let offset = chrono_time(f.start)?.timestamp() - first;
            let k = usize::try_from(offset / secs).unwrap_or(usize::MAX);
            if offset % secs != 0 || k >= rows.len() {
                return Err(corrupt("timeframe start", f.start));
            }
            revs[k] = f.rev;
            if f.ids.is_empty() {
                return Ok(());
            }
            f.check_length(range.length(), f.ids[0].as_str())?;
            let indices = columns.known(&f.ids)?;
            rows[k] = Arc::new(dense_row(indices, &f.produced, &f.consumed, width));
            Ok(())
        };
        let mut cursor = self
            .frames()
            .find(starts_in(range.start(), range.end()))
            .await
            .map_err(db("loading readings"))?;
        // Documents holding a pending version are resolved at the end.
        let mut pending = Vec::new();
        while let Some(f) = cursor.try_next().await.map_err(db("loading readings"))? {
            if f.pending.is_some() {
                pending.push(f);
            } else {
                place(f.checked()?)?;
            }
        }
        for l in self
            .resolve(None, pending)
            .await
            .map_err(|f| f.into_store("loading readings"))?
        {
            place(l.frame)?;
        }
        Ok((rows, revs))
    }
}

/// Runs `attempt` again while it fails with a transient transaction error
/// (at most [`ATTEMPTS`] times).
async fn transient<T, F, Fut>(attempt: F) -> std::result::Result<T, Failed>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, Failed>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(Failed::Mongo(_, e)) if worth_retrying(&e) && tries + 1 < ATTEMPTS => {
                tries += 1;
                back_off(tries).await;
            }
            other => return other,
        }
    }
}

impl ReadingStore for MongoStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        type Entries<'a> = BTreeMap<&'a str, (i64, i64)>;
        let mut by_start: BTreeMap<DateTime<Utc>, (TimeframeLength, Entries)> = BTreeMap::new();
        for r in plan.insert.iter().chain(&plan.replace) {
            let tf = r.timeframe();
            let (len, entries) = by_start
                .entry(tf.start())
                .or_insert_with(|| (tf.length(), BTreeMap::new()));
            if *len != tf.length() {
                return Err(mixed(
                    r.prosumer().as_str(),
                    tf.start(),
                    *len,
                    tf.length().minutes(),
                ));
            }
            entries.insert(
                r.prosumer().as_str(),
                (r.produced().get(), r.consumed().get()),
            );
        }
        let starts: Vec<DateTime<Utc>> = by_start.keys().copied().collect();
        let build = |frames: Vec<Option<Loaded>>, _: &BTreeSet<DateTime<Utc>>| {
            let mut writes = Vec::new();
            for ((start, (len, new)), old) in by_start.iter().zip(frames) {
                let minutes = len.minutes() as i32;
                if let Some(l) = old.as_ref().filter(|l| !l.is_empty()) {
                    l.frame
                        .check_length(*len, new.keys().next().copied().unwrap_or_default())?;
                }
                let mut merged: Entries = BTreeMap::new();
                if let Some(l) = &old {
                    let f = &l.frame;
                    for ((id, &p), &c) in f.ids.iter().zip(&f.produced).zip(&f.consumed) {
                        merged.insert(id.as_str(), (p, c));
                    }
                }
                let changed = old.is_none() || new.iter().any(|(id, v)| merged.get(id) != Some(v));
                if !changed {
                    continue;
                }
                merged.extend(new.iter().map(|(id, v)| (*id, *v)));
                let ids: Vec<&str> = merged.keys().copied().collect();
                let produced: Vec<i64> = merged.values().map(|v| v.0).collect();
                let consumed: Vec<i64> = merged.values().map(|v| v.1).collect();
                let start = bson_time(*start);
                let rev = old.as_ref().map_or(1, |l| l.frame.rev + 1);
                let doc = encode(start, minutes, rev, &ids, &produced, &consumed)?;
                drop((ids, merged));
                writes.push(FrameWrite {
                    start,
                    length_minutes: minutes,
                    doc,
                    old,
                });
            }
            Ok((writes, ()))
        };
        let step = by_start.values().next().map_or(1, |(len, _)| len.seconds());
        retrying!(
            "writing readings",
            self.try_update_frames(&starts, step, None, &build)
        )
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let docs: Vec<ReadingFrame> = self
            .frames()
            .find(starts_in(range.start(), range.end()))
            .sort(doc! { "start": 1 })
            .await
            .map_err(db("loading readings"))?
            .try_collect()
            .await
            .map_err(db("loading readings"))?;
        let frames = self
            .resolve(None, docs)
            .await
            .map_err(|f| f.into_store("loading readings"))?;
        let mut out = Vec::new();
        for Loaded { frame: f, .. } in frames {
            let tf = Timeframe::new(chrono_time(f.start)?, length(i64::from(f.length_minutes))?)?;
            for ((id, &p), &c) in f.ids.into_iter().zip(&f.produced).zip(&f.consumed) {
                out.push(Reading::new(
                    ProsumerId::new(id)?,
                    tf,
                    Wh::new(p),
                    Wh::new(c),
                )?);
            }
        }
        Ok(out)
    }

    /// Reads the span's documents and cleared timeframes and checks the
    /// batch with the core's rule in one transaction, then writes the
    /// changed documents: in that transaction when they fit, else as a
    /// batch in two phases that lands whole or not at all (see the module
    /// documentation).
    async fn ingest(
        &self,
        batch: &ValidReadings,
        registry: &Registry,
        cleared: &BTreeSet<DateTime<Utc>>,
    ) -> Result<IngestCounts> {
        let Some(span) = batch.try_span() else {
            return Ok(IngestCounts::default());
        };
        let grouped = Grouped::of(batch, registry, &span)?;
        let starts = grouped
            .rows
            .iter()
            .map(|&k| start_of(&span, k))
            .collect::<Result<Vec<_>>>()?;
        let minutes = span.length().minutes() as i32;
        let build = |frames: Vec<Option<Loaded>>, stored: &BTreeSet<DateTime<Utc>>| {
            let width = registry.len();
            let mut columns = Columns::new(registry);
            let mut rows = Vec::with_capacity(frames.len());
            for (j, l) in frames.iter().enumerate() {
                rows.push(match l {
                    Some(l) if !l.is_empty() => {
                        let f = &l.frame;
                        let first = grouped.group(j).first().map_or(0, |e| e.0);
                        let id = registry.at(first as usize).map_or("", |p| p.id().as_str());
                        f.check_length(span.length(), id)?;
                        Some(dense_row(
                            columns.of(&f.ids),
                            &f.produced,
                            &f.consumed,
                            width,
                        ))
                    }
                    _ => None,
                });
            }
            let mut view: Vec<Option<&ReadingRow>> = vec![None; span.len()];
            for (j, &k) in grouped.rows.iter().enumerate() {
                view[k] = rows[j].as_ref();
            }
            let is_cleared = |k: usize| {
                start_of(&span, k).is_ok_and(|t| cleared.contains(&t) || stored.contains(&t))
            };
            let counts = check_ingest(batch, registry, &view, is_cleared)?;
            drop(view);
            drop(rows);
            let mut writes = Vec::new();
            for (j, old) in frames.into_iter().enumerate() {
                let start = bson_time(starts[j]);
                let entries = grouped.group(j);
                if let Some(w) = merge_frame(start, minutes, old, entries, registry)? {
                    writes.push(w);
                }
            }
            Ok((writes, counts))
        };
        retrying!(
            "recording readings",
            self.try_update_frames(&starts, span.length().seconds(), Some(&span), &build)
        )
    }

    async fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<Arc<ReadingRow>>> {
        Ok(self.frame_rows(range, registry).await?.0)
    }
}

/// A document of another timeframe length at `start`.
fn mixed(id: &str, start: DateTime<Utc>, expected: TimeframeLength, found: u32) -> StoreError {
    microgrid_core::Error::MixedTimeframeLength {
        id: id.to_owned(),
        start,
        expected: expected.minutes(),
        found,
    }
    .into()
}
