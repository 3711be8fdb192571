//! Readings as columns: a batch comes in as four columns (starts, prosumer
//! indices, produced, consumed), is validated in one pass with the same
//! rules and errors as [`crate::validate_batch`], and is stored as one dense
//! [`ReadingRow`] per timeframe (a value per registered prosumer and a
//! presence flag), which is what clearing and billing read.
//!
//! # Example
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use microgrid_core::batch::{ingest_rows, ReadingColumns, ReadingRow};
//! use microgrid_core::*;
//!
//! let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
//! let mut registry = Registry::default();
//! let a = registry.register(Prosumer::new("a", "A", ProsumerKind::Household, joined)?)?;
//! let b = registry.register(Prosumer::new("b", "B", ProsumerKind::Household, joined)?)?;
//! let noon = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap().timestamp();
//! let batch = ReadingColumns::new(
//!     vec![noon, noon, noon + 900],
//!     vec![a.as_u32(), b.as_u32(), a.as_u32()],
//!     vec![500, 0, 100],
//!     vec![0, 300, 0],
//! )?;
//! let valid = batch.validate(&registry, TimeframeLength::default(), ReadingLimits::default())?;
//! assert_eq!(valid.try_span().map(|s| s.len()), Some(2));
//!
//! let mut rows = vec![ReadingRow::default(), ReadingRow::default()];
//! let report = ingest_rows(&valid, &registry, &mut rows, |_| false)?;
//! assert_eq!(report.inserted, 3);
//! assert_eq!(rows[0].get(b.get()), Some((Wh::new(0), Wh::new(300))));
//! assert_eq!(rows[1].get(b.get()), None);
//! // The same batch again changes nothing.
//! assert_eq!(ingest_rows(&valid, &registry, &mut rows, |_| false)?.unchanged, 3);
//! # Ok::<(), microgrid_core::Error>(())
//! ```

use chrono::{DateTime, Utc};

use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::reading::{Reading, ReadingLimits};
use crate::registry::{Prosumer, Registry};
use crate::timeframe::{TimeRange, Timeframe, TimeframeLength};

/// The most readings one batch may hold: 100 million (a month of 10,000
/// prosumers is 28.8 million). Larger inputs are recorded in several
/// batches.
pub const MAX_BATCH_READINGS: usize = 100_000_000;

/// The longest time one batch may span, first to last timeframe: 366 days.
/// A batch is checked against the stored readings of its span, so the span
/// bounds what one ingest reads.
pub const MAX_BATCH_SPAN_DAYS: i64 = 366;

/// A batch of readings as four columns of equal length: the start of each
/// reading's timeframe in seconds since the Unix epoch (UTC), the
/// prosumer's dense index in the registry
/// ([`crate::ProsumerIndex`]), and produced and consumed energy in Wh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadingColumns {
    starts: Vec<i64>,
    prosumers: Vec<u32>,
    produced: Vec<i64>,
    consumed: Vec<i64>,
}

impl ReadingColumns {
    /// The batch of these columns; an error if their lengths differ.
    pub fn new(
        starts: Vec<i64>,
        prosumers: Vec<u32>,
        produced: Vec<i64>,
        consumed: Vec<i64>,
    ) -> Result<ReadingColumns> {
        let n = starts.len();
        if prosumers.len() != n || produced.len() != n || consumed.len() != n {
            return Err(Error::ShapeMismatch(format!(
                "reading columns of different lengths: {n} starts, {} prosumers, {} produced, {} consumed",
                prosumers.len(),
                produced.len(),
                consumed.len()
            )));
        }
        Ok(ReadingColumns {
            starts,
            prosumers,
            produced,
            consumed,
        })
    }

    /// The columns of `readings`, with ids looked up in `registry` (an
    /// unknown id is [`Error::UnknownProsumer`]).
    pub fn from_readings<'a>(
        registry: &Registry,
        readings: impl IntoIterator<Item = &'a Reading>,
    ) -> Result<ReadingColumns> {
        let mut cols = ReadingColumns::default();
        for r in readings {
            cols.push(
                r.timeframe().start().timestamp(),
                registry.index_of(r.prosumer())?.as_u32(),
                r.produced().get(),
                r.consumed().get(),
            );
        }
        Ok(cols)
    }

    /// Appends one reading (checked by [`ReadingColumns::validate`]).
    pub fn push(&mut self, start: i64, prosumer: u32, produced: i64, consumed: i64) {
        self.starts.push(start);
        self.prosumers.push(prosumer);
        self.produced.push(produced);
        self.consumed.push(consumed);
    }

    /// Number of readings.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Starts, seconds since the epoch.
    pub fn starts(&self) -> &[i64] {
        &self.starts
    }

    /// Dense prosumer indices.
    pub fn prosumers(&self) -> &[u32] {
        &self.prosumers
    }

    /// Produced Wh.
    pub fn produced(&self) -> &[i64] {
        &self.produced
    }

    /// Consumed Wh.
    pub fn consumed(&self) -> &[i64] {
        &self.consumed
    }

    /// Checks every reading against the registry, the timeframe length and
    /// the limits, in one pass and in order, with the rules and errors of
    /// [`crate::validate_batch`]: a misaligned start, a negative or
    /// implausible value, an unknown prosumer (index), a prosumer not
    /// active in the timeframe, and two different readings for one
    /// prosumer and timeframe reject the batch; the first error found is
    /// returned. Exact repeats inside the batch are kept once.
    pub fn validate(
        self,
        registry: &Registry,
        length: TimeframeLength,
        limits: ReadingLimits,
    ) -> Result<ValidReadings> {
        if self.len() > MAX_BATCH_READINGS {
            return Err(Error::TooLarge {
                what: "readings in a batch",
                found: self.len() as u64,
                max: MAX_BATCH_READINGS as u64,
            });
        }
        let max = limits.max_wh(length);
        let secs = length.seconds();
        let active: Vec<(i64, i64)> = registry.by_index().iter().map(active_span).collect();
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for i in 0..self.len() {
            let (start, p) = (self.starts[i], self.prosumers[i]);
            let when = || instant(start);
            let Some(prosumer) = registry.at(p as usize) else {
                return Err(Error::UnknownProsumer(format!("#{p} (no such index)")));
            };
            let id = || prosumer.id().to_string();
            if start.rem_euclid(secs) != 0 {
                return Err(Error::MisalignedTimeframe {
                    start: when(),
                    minutes: length.minutes(),
                });
            }
            for (what, value) in [
                ("produced", self.produced[i]),
                ("consumed", self.consumed[i]),
            ] {
                if value < 0 {
                    return Err(Error::NegativeEnergy {
                        id: id(),
                        start: when(),
                        what,
                        value,
                    });
                }
                if value > max {
                    return Err(Error::ImplausibleEnergy {
                        id: id(),
                        start: when(),
                        what,
                        value,
                        limit: max,
                    });
                }
            }
            let (from, until) = active[p as usize];
            if start < from || start.saturating_add(secs) > until {
                return Err(Error::InactiveProsumer {
                    id: id(),
                    start: when(),
                });
            }
            first = first.min(start);
            last = last.max(start);
        }
        let span = if self.is_empty() {
            None
        } else {
            let end = DateTime::from_timestamp(last.saturating_add(secs), 0)
                .ok_or(Error::Overflow("end of the batch's last timeframe"))?;
            let spanned = end - instant(first);
            if spanned > chrono::Duration::days(MAX_BATCH_SPAN_DAYS) {
                return Err(Error::TooLarge {
                    what: "days a batch spans",
                    found: (spanned.num_seconds().unsigned_abs()).div_ceil(86_400),
                    max: MAX_BATCH_SPAN_DAYS.unsigned_abs(),
                });
            }
            Some(TimeRange::new(instant(first), end, length)?)
        };
        let rows: Vec<u32> = match &span {
            Some(span) => {
                let first = span.start().timestamp();
                u32::try_from(span.len()).map_err(|_| Error::Overflow("timeframes in a batch"))?;
                self.starts
                    .iter()
                    .map(|s| ((s - first) / secs) as u32)
                    .collect()
            }
            None => Vec::new(),
        };
        let repeats = match &span {
            Some(span) => self.repeats(span, &rows, registry)?,
            None => Vec::new(),
        };
        Ok(ValidReadings {
            columns: self,
            span,
            rows,
            repeats,
        })
    }

    /// Positions of exact repeats (same prosumer, timeframe and values as
    /// an earlier reading); an error for a repeat with other values.
    fn repeats(&self, span: &TimeRange, rows: &[u32], registry: &Registry) -> Result<Vec<usize>> {
        let n = registry.len();
        let cells = span.len().saturating_mul(n);
        // A bit per (timeframe, prosumer) while that is not much larger than
        // the batch (a day of 10,000 prosumers: 120 KB), a hash set for
        // sparse batches over long spans; either only flags candidates.
        let mut candidates = Vec::new();
        if cells <= self.len().saturating_mul(64).max(1 << 23) {
            let mut seen = vec![0u64; cells.div_ceil(64)];
            for (i, (&row, &p)) in rows.iter().zip(&self.prosumers).enumerate() {
                let cell = row as usize * n + p as usize;
                let (word, bit) = (cell / 64, 1u64 << (cell % 64));
                if seen[word] & bit != 0 {
                    candidates.push(i);
                }
                seen[word] |= bit;
            }
        } else {
            let mut seen = std::collections::HashSet::with_capacity(self.len());
            for (i, cell) in rows.iter().zip(&self.prosumers).enumerate() {
                if !seen.insert(cell) {
                    candidates.push(i);
                }
            }
        }
        if candidates.is_empty() {
            return Ok(candidates);
        }
        // Rare: compare each repeat with the first reading of its cell.
        let mut first: std::collections::HashMap<(u32, u32), usize> =
            std::collections::HashMap::new();
        for (i, (&row, &p)) in rows.iter().zip(&self.prosumers).enumerate() {
            first.entry((row, p)).or_insert(i);
        }
        for &i in &candidates {
            let j = first[&(rows[i], self.prosumers[i])];
            if self.produced[i] != self.produced[j] || self.consumed[i] != self.consumed[j] {
                return Err(Error::DuplicateReading {
                    id: registry
                        .at(self.prosumers[i] as usize)
                        .map(|p| p.id().to_string())
                        .unwrap_or_default(),
                    start: instant(self.starts[i]),
                });
            }
        }
        Ok(candidates)
    }
}

/// `[joined, left)` of a prosumer in seconds since the epoch.
fn active_span(p: &Prosumer) -> (i64, i64) {
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    (midnight(p.joined()), p.left().map_or(i64::MAX, midnight))
}

fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A batch that passed [`ReadingColumns::validate`]: every reading is
/// aligned, in range, of an active registered prosumer, and each
/// (prosumer, timeframe) has one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidReadings {
    columns: ReadingColumns,
    span: Option<TimeRange>,
    /// The row (timeframe of the span) of each reading.
    rows: Vec<u32>,
    repeats: Vec<usize>,
}

impl ValidReadings {
    /// The columns.
    pub fn columns(&self) -> &ReadingColumns {
        &self.columns
    }

    /// The timeframes from the first reading's to the last one's; `None`
    /// for an empty batch.
    pub fn try_span(&self) -> Option<TimeRange> {
        self.span
    }

    /// Number of distinct readings (exact repeats counted once).
    pub fn len(&self) -> usize {
        self.columns.len() - self.repeats.len()
    }

    /// Whether there is no reading.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row (timeframe of the span) of reading `i`.
    #[inline]
    pub fn row_of(&self, i: usize) -> usize {
        self.rows[i] as usize
    }

    /// Positions of the distinct readings, in batch order.
    pub fn distinct(&self) -> impl Iterator<Item = usize> + '_ {
        let mut repeats = self.repeats.iter().copied().peekable();
        (0..self.columns.len()).filter(move |&i| {
            if repeats.peek() == Some(&i) {
                repeats.next();
                false
            } else {
                true
            }
        })
    }

    /// The distinct readings as [`Reading`]s (for stores that take rows).
    pub fn to_readings(&self, registry: &Registry) -> Result<Vec<Reading>> {
        let length = self.span.map(|s| s.length()).unwrap_or_default();
        let c = &self.columns;
        self.distinct()
            .map(|i| {
                let id = registry
                    .at(c.prosumers[i] as usize)
                    .ok_or_else(|| Error::UnknownProsumer(format!("#{}", c.prosumers[i])))?
                    .id()
                    .clone();
                Reading::new(
                    id,
                    Timeframe::new(instant(c.starts[i]), length)?,
                    Wh::new(c.produced[i]),
                    Wh::new(c.consumed[i]),
                )
            })
            .collect()
    }
}

/// One timeframe's readings, dense by prosumer index: produced, consumed
/// and whether a reading is there. Prosumers registered after the row was
/// written are past its end and have no reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadingRow {
    produced: Vec<Wh>,
    consumed: Vec<Wh>,
    present: Vec<bool>,
}

impl ReadingRow {
    /// A row of `width` prosumers without readings.
    pub fn with_width(width: usize) -> ReadingRow {
        ReadingRow {
            produced: vec![Wh::ZERO; width],
            consumed: vec![Wh::ZERO; width],
            present: vec![false; width],
        }
    }

    /// The row of these readings (`None`: no reading of that prosumer).
    pub fn from_values(values: impl IntoIterator<Item = Option<(Wh, Wh)>>) -> ReadingRow {
        let mut row = ReadingRow::default();
        for v in values {
            let (p, c) = v.unwrap_or((Wh::ZERO, Wh::ZERO));
            row.produced.push(p);
            row.consumed.push(c);
            row.present.push(v.is_some());
        }
        row
    }

    /// Number of prosumer slots.
    pub fn width(&self) -> usize {
        self.present.len()
    }

    /// Grows the row to `width` slots (new ones without readings).
    pub fn widen(&mut self, width: usize) {
        if width > self.width() {
            self.produced.resize(width, Wh::ZERO);
            self.consumed.resize(width, Wh::ZERO);
            self.present.resize(width, false);
        }
    }

    /// Produced and consumed of prosumer `i`, if it has a reading.
    pub fn get(&self, i: usize) -> Option<(Wh, Wh)> {
        self.present
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| (self.produced[i], self.consumed[i]))
    }

    /// Stores the reading of prosumer `i`, widening the row if needed.
    pub fn set(&mut self, i: usize, produced: Wh, consumed: Wh) {
        self.widen(i + 1);
        self.produced[i] = produced;
        self.consumed[i] = consumed;
        self.present[i] = true;
    }

    /// Produced, by prosumer index (zero where there is no reading).
    pub fn produced(&self) -> &[Wh] {
        &self.produced
    }

    /// Consumed, by prosumer index (zero where there is no reading).
    pub fn consumed(&self) -> &[Wh] {
        &self.consumed
    }

    /// Whether each prosumer has a reading.
    pub fn present(&self) -> &[bool] {
        &self.present
    }

    /// Number of readings in the row.
    pub fn count(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }
}

/// What ingesting a batch did (or, before it is written, will do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounts {
    /// New readings.
    pub inserted: usize,
    /// Readings that corrected a stored one (of a timeframe not yet cleared).
    pub replaced: usize,
    /// Readings already stored with the same values.
    pub unchanged: usize,
}

/// Checks a validated batch against the stored rows of its span without
/// changing anything, with the rule of [`crate::plan_ingest`]: a reading
/// equal to the stored one changes nothing; one for a timeframe that is
/// cleared already is [`Error::ConflictingReading`] if it differs from the
/// stored one and [`Error::LateReading`] if there was none; otherwise it is
/// inserted or replaces the stored one. `rows[k]` is the `k`-th timeframe
/// of the span (`None`: nothing stored there).
pub fn check_ingest<R: AsRef<ReadingRow>>(
    batch: &ValidReadings,
    registry: &Registry,
    rows: &[Option<R>],
    cleared: impl Fn(usize) -> bool,
) -> Result<IngestCounts> {
    let c = batch.columns();
    let mut counts = IngestCounts::default();
    // The bulk case: nothing stored and nothing cleared in the span.
    let span_len = batch.try_span().map_or(0, |s| s.len());
    if rows.iter().all(|r| r.is_none()) && !(0..span_len).any(&cleared) {
        counts.inserted = batch.len();
        return Ok(counts);
    }
    for i in batch.distinct() {
        let (k, p) = (batch.row_of(i), c.prosumers[i] as usize);
        let stored = rows
            .get(k)
            .and_then(|r| r.as_ref())
            .and_then(|r| r.as_ref().get(p));
        let same = stored == Some((Wh::new(c.produced[i]), Wh::new(c.consumed[i])));
        if same {
            counts.unchanged += 1;
            continue;
        }
        if cleared(k) {
            let id = registry
                .at(p)
                .map(|x| x.id().to_string())
                .unwrap_or_default();
            let start = instant(c.starts[i]);
            return Err(match stored {
                Some(_) => Error::ConflictingReading { id, start },
                None => Error::LateReading { id, start },
            });
        }
        match stored {
            Some(_) => counts.replaced += 1,
            None => counts.inserted += 1,
        }
    }
    Ok(counts)
}

/// Writes a batch that [`check_ingest`] accepted into the rows of its span
/// (`rows[k]` is the `k`-th timeframe), widening rows to the registry.
pub fn write_ingest(batch: &ValidReadings, width: usize, rows: &mut [&mut ReadingRow]) {
    let c = batch.columns();
    for row in rows.iter_mut() {
        row.widen(width);
    }
    for i in batch.distinct() {
        rows[batch.row_of(i)].set(
            c.prosumers[i] as usize,
            Wh::new(c.produced[i]),
            Wh::new(c.consumed[i]),
        );
    }
}

/// [`check_ingest`] then [`write_ingest`] on rows held in one slice: the
/// whole ingest rule for an in-memory store. Nothing is written on error.
pub fn ingest_rows(
    batch: &ValidReadings,
    registry: &Registry,
    rows: &mut [ReadingRow],
    cleared: impl Fn(usize) -> bool,
) -> Result<IngestCounts> {
    let view: Vec<Option<&ReadingRow>> = rows.iter().map(Some).collect();
    let counts = check_ingest(batch, registry, &view, cleared)?;
    let mut refs: Vec<&mut ReadingRow> = rows.iter_mut().collect();
    write_ingest(batch, registry.len(), &mut refs);
    Ok(counts)
}

impl AsRef<ReadingRow> for ReadingRow {
    fn as_ref(&self) -> &ReadingRow {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ProsumerKind;
    use chrono::{NaiveDate, TimeZone};

    fn registry() -> Registry {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let mut reg = Registry::default();
        reg.register(Prosumer::new("b", "B", ProsumerKind::Household, day).unwrap())
            .unwrap();
        reg.register(
            Prosumer::new("a", "A", ProsumerKind::Household, day)
                .unwrap()
                .with_left(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap())
                .unwrap(),
        )
        .unwrap();
        reg
    }

    fn at(h: u32) -> i64 {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0)
            .unwrap()
            .timestamp()
    }

    fn validate(cols: ReadingColumns) -> Result<ValidReadings> {
        cols.validate(
            &registry(),
            TimeframeLength::default(),
            ReadingLimits::default(),
        )
    }

    fn one(start: i64, p: u32, produced: i64, consumed: i64) -> ReadingColumns {
        ReadingColumns::new(vec![start], vec![p], vec![produced], vec![consumed]).unwrap()
    }

    #[test]
    fn every_rule_of_validate_batch_is_enforced_with_its_error() {
        assert!(matches!(
            validate(one(at(1) + 60, 0, 1, 1)),
            Err(Error::MisalignedTimeframe { .. })
        ));
        assert!(matches!(
            validate(one(at(1), 0, -1, 1)),
            Err(Error::NegativeEnergy { .. })
        ));
        assert!(matches!(
            validate(one(at(1), 0, 1, 10_000_000)),
            Err(Error::ImplausibleEnergy { .. })
        ));
        assert!(matches!(
            validate(one(at(1), 7, 1, 1)),
            Err(Error::UnknownProsumer(_))
        ));
        let next_day = at(0) + 86_400;
        assert!(matches!(
            validate(one(next_day, 1, 1, 1)),
            Err(Error::InactiveProsumer { .. })
        ));
        let twice =
            ReadingColumns::new(vec![at(1); 2], vec![0, 0], vec![1, 2], vec![0, 0]).unwrap();
        assert!(matches!(
            validate(twice),
            Err(Error::DuplicateReading { .. })
        ));
        assert!(matches!(
            ReadingColumns::new(vec![1], vec![], vec![], vec![]),
            Err(Error::ShapeMismatch(_))
        ));
    }

    #[test]
    fn exact_repeats_count_once_and_sparse_batches_use_the_map() {
        let far = at(0) + 300 * 86_400;
        let cols = ReadingColumns::new(
            vec![at(1), far, at(1)],
            vec![0, 0, 0],
            vec![5, 6, 5],
            vec![0, 0, 0],
        )
        .unwrap();
        let valid = validate(cols).unwrap();
        assert_eq!(valid.len(), 2);
        assert_eq!(valid.distinct().collect::<Vec<_>>(), [0, 1]);
        // 300 days of 1,000 prosumers (28.8 M cells) for three readings:
        // too sparse for a bit per cell.
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let mut many = Registry::default();
        for i in 0..1_000 {
            let p = Prosumer::new(format!("p{i:04}"), "P", ProsumerKind::Household, day).unwrap();
            many.register(p).unwrap();
        }
        let sparse = |v: i64| {
            ReadingColumns::new(
                vec![at(1), far, far],
                vec![0, 999, 999],
                vec![5, 6, v],
                vec![0, 0, 0],
            )
            .unwrap()
            .validate(&many, TimeframeLength::default(), ReadingLimits::default())
        };
        let span = sparse(6).unwrap().try_span().unwrap();
        assert!(span.len() * many.len() > 1 << 23, "the map path");
        assert_eq!(sparse(6).unwrap().len(), 2);
        assert!(matches!(sparse(7), Err(Error::DuplicateReading { .. })));
    }

    #[test]
    fn late_and_conflicting_readings_for_cleared_rows_are_refused() {
        let reg = registry();
        let valid = validate(one(at(1), 0, 5, 0)).unwrap();
        let mut rows = vec![ReadingRow::default()];
        assert!(matches!(
            ingest_rows(&valid, &reg, &mut rows, |_| true),
            Err(Error::LateReading { .. })
        ));
        assert_eq!(rows[0].count(), 0);
        ingest_rows(&valid, &reg, &mut rows, |_| false).unwrap();
        let other = validate(one(at(1), 0, 6, 0)).unwrap();
        assert!(matches!(
            ingest_rows(&other, &reg, &mut rows, |_| true),
            Err(Error::ConflictingReading { .. })
        ));
        let counts = ingest_rows(&other, &reg, &mut rows, |_| false).unwrap();
        assert_eq!(counts.replaced, 1);
        assert_eq!(rows[0].get(0), Some((Wh::new(6), Wh::ZERO)));
    }

    #[test]
    fn a_batch_spans_at_most_366_days_and_a_range_100_years() {
        let reg = registry();
        let year = 366 * 86_400;
        let columns = |last: i64| ReadingColumns {
            starts: vec![at(0), last],
            prosumers: vec![0, 0],
            produced: vec![1, 1],
            consumed: vec![0, 0],
        };
        let length = TimeframeLength::default();
        let limits = ReadingLimits::default();
        // The last timeframe ends exactly 366 days after the first starts.
        assert!(columns(at(0) + year - 900)
            .validate(&reg, length, limits)
            .is_ok());
        assert!(matches!(
            columns(at(0) + year).validate(&reg, length, limits),
            Err(Error::TooLarge {
                what: "days a batch spans",
                found: 367,
                max: 366
            })
        ));
        let start = instant(at(0));
        let century = chrono::Duration::days(crate::timeframe::MAX_RANGE_DAYS);
        assert!(TimeRange::new(start, start + century, length).is_ok());
        assert!(matches!(
            TimeRange::new(start, start + century + chrono::Duration::days(1), length),
            Err(Error::TooLarge {
                what: "days in a range",
                ..
            })
        ));
    }
}
