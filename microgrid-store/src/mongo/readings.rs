//! Readings: one document per timeframe (`reading_frames`), the
//! prosumers' values as parallel arrays sorted by id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::batch::{check_ingest, IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::{
    IngestPlan, ProsumerId, Reading, Registry, TimeRange, Timeframe, TimeframeLength, Wh,
};
use mongodb::bson::{doc, to_raw_document_buf, DateTime as BsonTime, Document, RawDocumentBuf};
use mongodb::error::TRANSIENT_TRANSACTION_ERROR;
use mongodb::{ClientSession, Collection};
use serde::{Deserialize, Serialize};

use super::{
    abort, back_off, bson_starts, bson_time, chrono_time, commit, inserting, mongo, retrying,
    starts_in, Failed, MongoStore, ATTEMPTS,
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
    /// Writes of this document so far.
    pub(super) rev: i64,
    pub(super) ids: Vec<String>,
    pub(super) produced: Vec<i64>,
    pub(super) consumed: Vec<i64>,
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

impl ReadingFrame {
    /// Checks what the code below relies on: arrays of one length, ids
    /// strictly ascending.
    fn checked(self) -> Result<ReadingFrame> {
        let n = self.ids.len();
        if self.produced.len() != n || self.consumed.len() != n || self.id != self.start {
            return Err(corrupt("reading document", self.start));
        }
        check_ascending(&self.ids, self.start)?;
        Ok(self)
    }
}

impl ReadingFrame {
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

/// A reading document to write: the new version, and the version it
/// replaces (`None`: it is new). Writes outside the transaction that read
/// `old` are conditional on `old.rev`.
pub(super) struct FrameWrite {
    pub(super) start: BsonTime,
    pub(super) rev: i64,
    pub(super) doc: RawDocumentBuf,
    pub(super) old: Option<ReadingFrame>,
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
    old: Option<ReadingFrame>,
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
            Some(f) => (&f.ids, &f.produced, &f.consumed),
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
    let rev = old.as_ref().map_or(1, |f| f.rev + 1);
    let doc = encode(start, length_minutes, rev, &ids, &produced, &consumed)?;
    drop(ids);
    Ok(Some(FrameWrite {
        start,
        rev,
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

    /// The reading documents of `starts` (ascending), read in `session`.
    pub(super) async fn load_frames(
        &self,
        session: &mut ClientSession,
        starts: &[DateTime<Utc>],
        step_secs: i64,
    ) -> std::result::Result<Vec<Option<ReadingFrame>>, Failed> {
        let mut out: Vec<Option<ReadingFrame>> = starts.iter().map(|_| None).collect();
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
                    out[j] = Some(f.checked()?);
                }
            }
        }
        Ok(out)
    }

    /// Writes reading documents in `session`: new ones with `insert_many`,
    /// changed ones replaced on condition of the `rev` they were read at.
    async fn write_frames(
        &self,
        session: &mut ClientSession,
        writes: &[FrameWrite],
    ) -> std::result::Result<(), Failed> {
        let new: Vec<&RawDocumentBuf> = writes
            .iter()
            .filter(|w| w.old.is_none())
            .map(|w| &w.doc)
            .collect();
        if !new.is_empty() {
            self.raw_frames()
                .insert_many(new)
                .session(&mut *session)
                .await
                .map_err(inserting("writing readings"))?;
        }
        for w in writes.iter().filter(|w| w.old.is_some()) {
            let replaced = self
                .raw_frames()
                .replace_one(doc! { "_id": w.start, "rev": w.rev - 1 }, &w.doc)
                .session(&mut *session)
                .await
                .map_err(mongo("correcting readings"))?;
            if replaced.matched_count == 0 {
                return Err(Failed::Conflict);
            }
        }
        Ok(())
    }

    /// One transaction writing `writes`.
    async fn try_write_chunk(&self, writes: &[FrameWrite]) -> std::result::Result<(), Failed> {
        let mut session = self.transaction().await?;
        let result = async {
            self.write_frames(&mut session, writes).await?;
            commit(&mut session).await
        }
        .await;
        abort(&mut session, result).await
    }

    /// Writes more than one transaction holds, in transactions of at most
    /// `txn_bytes` (16 MiB unless a test says otherwise); if one fails, what the earlier ones wrote is undone.
    pub(super) async fn write_frames_chunked(
        &self,
        writes: &[FrameWrite],
    ) -> std::result::Result<(), Failed> {
        let mut chunks: Vec<&[FrameWrite]> = Vec::new();
        let (mut from, mut bytes) = (0, 0);
        for (i, w) in writes.iter().enumerate() {
            let size = w.doc.as_bytes().len();
            if i > from && bytes + size > self.txn_bytes {
                chunks.push(&writes[from..i]);
                (from, bytes) = (i, 0);
            }
            bytes += size;
        }
        chunks.push(&writes[from..]);
        for (i, chunk) in chunks.iter().enumerate() {
            let mut tries = 0;
            let result = loop {
                match self.try_write_chunk(chunk).await {
                    Err(Failed::Mongo(_, e))
                        if e.contains_label(TRANSIENT_TRANSACTION_ERROR)
                            && tries + 1 < ATTEMPTS =>
                    {
                        tries += 1;
                        back_off(tries).await;
                    }
                    other => break other,
                }
            };
            if let Err(f) = result {
                self.undo(chunks[..i].iter().flat_map(|c| c.iter())).await;
                return Err(f);
            }
        }
        Ok(())
    }

    /// Puts documents back as they were before `writes` (best effort,
    /// after a failure that is being reported): new ones are deleted,
    /// replaced ones restored, each only if no one wrote it since.
    async fn undo(&self, writes: impl Iterator<Item = &FrameWrite>) {
        let mut inserted = Vec::new();
        for w in writes {
            match &w.old {
                None => inserted.push(w.start),
                Some(old) => {
                    let _ = self
                        .frames()
                        .replace_one(doc! { "_id": w.start, "rev": w.rev }, old)
                        .await;
                }
            }
        }
        for chunk in inserted.chunks(10_000) {
            let _ = self
                .frames()
                .delete_many(doc! { "_id": { "$in": chunk.to_vec() }, "rev": 1 })
                .await;
        }
    }

    /// One attempt at changing the reading documents of `starts`: reads
    /// them (and the cleared timeframes of `span`) in a transaction,
    /// `build`s the writes, and writes them in that transaction if they
    /// fit, else in several (see the module documentation).
    async fn try_update_frames<T, F>(
        &self,
        starts: &[DateTime<Utc>],
        step_secs: i64,
        span: Option<&TimeRange>,
        build: &F,
    ) -> std::result::Result<T, Failed>
    where
        F: Fn(Vec<Option<ReadingFrame>>, &BTreeSet<DateTime<Utc>>) -> Result<(Vec<FrameWrite>, T)>
            + Sync,
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
        let bytes: usize = writes.iter().map(|w| w.doc.as_bytes().len()).sum();
        if !writes.is_empty() && bytes <= self.txn_bytes {
            let written = async {
                self.write_frames(&mut session, &writes).await?;
                commit(&mut session).await
            }
            .await;
            abort(&mut session, written).await?;
            return Ok(value);
        }
        // Nothing to write, or more than one transaction holds: the
        // reading transaction ends here.
        session.abort_transaction().await.ok();
        drop(session);
        if !writes.is_empty() {
            self.write_frames_chunked(&writes).await?;
        }
        Ok(value)
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
        let build = |frames: Vec<Option<ReadingFrame>>, _: &BTreeSet<DateTime<Utc>>| {
            let mut writes = Vec::new();
            for ((start, (len, new)), old) in by_start.iter().zip(frames) {
                let minutes = len.minutes();
                if let Some(f) = &old {
                    f.check_length(*len, new.keys().next().copied().unwrap_or_default())?;
                }
                let mut merged: Entries = BTreeMap::new();
                if let Some(f) = &old {
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
                let rev = old.as_ref().map_or(1, |f| f.rev + 1);
                let doc = encode(start, minutes as i32, rev, &ids, &produced, &consumed)?;
                drop((ids, merged));
                writes.push(FrameWrite {
                    start,
                    rev,
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
        let mut cursor = self
            .frames()
            .find(starts_in(range.start(), range.end()))
            .sort(doc! { "start": 1 })
            .await
            .map_err(db("loading readings"))?;
        let mut out = Vec::new();
        while let Some(f) = cursor.try_next().await.map_err(db("loading readings"))? {
            let f = f.checked()?;
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

    /// Reads the span's documents and checks the batch with the core's
    /// rule in one transaction, then writes the changed documents (in
    /// that transaction when they fit; see the module documentation).
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
        let minutes = span.length().minutes();
        let build = |frames: Vec<Option<ReadingFrame>>, stored: &BTreeSet<DateTime<Utc>>| {
            let width = registry.len();
            let mut columns = Columns::new(registry);
            let mut rows = Vec::with_capacity(frames.len());
            for (j, f) in frames.iter().enumerate() {
                rows.push(match f {
                    None => None,
                    Some(f) => {
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
                if let Some(w) = merge_frame(start, minutes as i32, old, entries, registry)? {
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
        let width = registry.len();
        let mut columns = Columns::new(registry);
        let empty = Arc::new(ReadingRow::default());
        let mut rows = vec![empty; range.len()];
        let (first, secs) = (range.start().timestamp(), range.length().seconds());
        let mut cursor = self
            .frames()
            .find(starts_in(range.start(), range.end()))
            .await
            .map_err(db("loading readings"))?;
        while let Some(f) = cursor.try_next().await.map_err(db("loading readings"))? {
            let f = f.checked()?;
            f.check_length(range.length(), f.ids.first().map_or("", |id| id.as_str()))?;
            let offset = chrono_time(f.start)?.timestamp() - first;
            let k = usize::try_from(offset / secs).unwrap_or(usize::MAX);
            if offset % secs != 0 || k >= rows.len() {
                return Err(corrupt("timeframe start", f.start));
            }
            let indices = columns.known(&f.ids)?;
            rows[k] = Arc::new(dense_row(indices, &f.produced, &f.consumed, width));
        }
        Ok(rows)
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
