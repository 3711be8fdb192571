//! Billing a period in parts: the sums of a contiguous range of timeframes,
//! made wherever that range's readings are (another process, another
//! machine), merged and finished once into the period's bills.
//!
//! Billing sums each member's lines in integer units over the timeframes of
//! the period ([`RowBilling`]); everything that needs the whole period (the
//! fixed fees, bill sharing's per-period prices, the totals) happens once at
//! the end. A [`BillingPart`] is that running state for a sub-range: the
//! summaries of its timeframes and each member's sums. Adjacent parts
//! [`merge`](BillingPart::merge) by adding the sums, and
//! [`BillingPart::finish`] hands the merged state to [`RowBilling::finish`],
//! the same code [`bill_rows`](super::bill_rows) ends with, so the bills are
//! equal to the last decimal however the period was cut.
//!
//! A part is laid out by the registry's dense indices; it records a digest
//! of the registry's ids in index order, and merging or finishing it with
//! another registry is [`Error::ShapeMismatch`]. A gap between two parts is
//! [`Error::PeriodNotCleared`] naming the first missing timeframe, an
//! overlap [`Error::DuplicateClearing`] naming the first timeframe billed
//! twice.
//!
//! ```
//! use chrono::{Duration, NaiveDate, TimeZone, Utc};
//! use microgrid_core::batch::{ingest_rows, ReadingColumns, ReadingRow};
//! use microgrid_core::billing::{bill_rows, BillingPart};
//! use microgrid_core::tariff::Tariff;
//! use microgrid_core::*;
//!
//! let length = TimeframeLength::new(60)?;
//! let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
//! let period = TimeRange::new(start, start + Duration::hours(4), length)?;
//! let mut registry = Registry::default();
//! for id in ["a", "b"] {
//!     registry.register(Prosumer::new(id, id, ProsumerKind::Household, NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())?)?;
//! }
//! let mut cols = ReadingColumns::default();
//! for (k, tf) in period.timeframes().enumerate() {
//!     cols.push(tf.start().timestamp(), 0, 1_000 * k as i64, 200);
//!     cols.push(tf.start().timestamp(), 1, 0, 700);
//! }
//! let valid = cols.validate(&registry, length, ReadingLimits::default())?;
//! let mut rows = vec![ReadingRow::default(); period.len()];
//! ingest_rows(&valid, &registry, &mut rows, |_| false)?;
//! let input: Vec<(Timeframe, &ReadingRow)> = period.timeframes().zip(rows.iter()).collect();
//! let tariff = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.10".parse()?)?);
//! let cleared = clear_reading_rows(&input, &registry.id_order(), &tariff, &Mechanism::SupplyDemandRatio, 1)?;
//! let pairs: Vec<(&ReadingRow, &ClearedRow)> = rows.iter().zip(cleared.iter()).collect();
//!
//! // Two parts, made separately (say, on two machines) and sent as bytes.
//! let first = TimeRange::new(start, start + Duration::hours(1), length)?;
//! let rest = TimeRange::new(first.end(), period.end(), length)?;
//! let a = BillingPart::from_rows(&first, &tariff, &registry, &pairs[..1], 1)?;
//! let b = BillingPart::from_rows(&rest, &tariff, &registry, &pairs[1..], 1)?;
//! let b = BillingPart::from_bytes(&b.to_bytes()?)?;
//! let bills = a.merge(b)?.finish(&tariff, &registry)?;
//! assert_eq!(bills, bill_rows(&period, &tariff, &registry, &pairs, 1)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{in_tariff_currency, Lines, PeriodBills, RowBilling};
use crate::batch::ReadingRow;
use crate::clearing::TimeframeSummary;
use crate::error::{Error, Result};
use crate::matrix::ClearedRow;
use crate::registry::Registry;
use crate::tariff::Tariff;
use crate::timeframe::TimeRange;

/// The billing sums of a contiguous range of timeframes: mergeable with the
/// adjacent ranges' parts, finished into bills once the whole period is
/// merged. Serializable (serde, or [`to_bytes`](BillingPart::to_bytes)) to
/// cross process boundaries. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingPart {
    /// The timeframes summed.
    range: TimeRange,
    /// The registry the sums are laid out by: its size and a SHA-256 of
    /// its ids in index order.
    prosumers: usize,
    registry: String,
    /// The summary of every timeframe of the range, in time order.
    summaries: Vec<TimeframeSummary>,
    /// Registry indices of the members with a reading in the range, in
    /// increasing order.
    members: Vec<u32>,
    /// Each member's sums (the billing lines in integer units), parallel
    /// to `members`.
    sums: Vec<[i128; 12]>,
}

/// A digest of the registry's ids in index order, so that parts laid out
/// by different registries are never added up.
fn registry_digest(registry: &Registry) -> String {
    let mut hash = Sha256::new();
    for p in registry.iter() {
        hash.update(p.id().as_str().as_bytes());
        hash.update([0u8]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn to_sums(l: &Lines) -> [i128; 12] {
    let e = l.energy;
    [
        e[0],
        e[1],
        e[2],
        e[3],
        e[4],
        e[5],
        l.purchases,
        l.sales,
        l.imports,
        l.exports,
        l.deficit_at_import_price,
        l.surplus_at_export_price,
    ]
}

fn to_lines(s: &[i128; 12]) -> Lines {
    Lines {
        energy: [s[0], s[1], s[2], s[3], s[4], s[5]],
        purchases: s[6],
        sales: s[7],
        imports: s[8],
        exports: s[9],
        deficit_at_import_price: s[10],
        surplus_at_export_price: s[11],
    }
}

impl RowBilling<'_> {
    /// The sums so far as a [`BillingPart`] of the range this billing was
    /// started for (instead of [`finish`](RowBilling::finish)ing it): every
    /// timeframe of the range must have been added
    /// ([`Error::PeriodNotCleared`] names the first that was not).
    pub fn into_part(self) -> Result<BillingPart> {
        if self.summaries.len() < self.period.len() {
            let k =
                i32::try_from(self.summaries.len()).map_err(|_| Error::Overflow("timeframes"))?;
            return Err(Error::PeriodNotCleared {
                start: self.period.start() + self.period.length().duration() * k,
            });
        }
        let mut members = Vec::new();
        let mut sums = Vec::new();
        for (i, (&present, lines)) in self.member.iter().zip(&self.lines).enumerate() {
            if present {
                members.push(u32::try_from(i).map_err(|_| Error::Overflow("prosumer index"))?);
                sums.push(to_sums(lines));
            }
        }
        Ok(BillingPart {
            range: self.period,
            prosumers: self.registry.len(),
            registry: registry_digest(self.registry),
            summaries: self.summaries,
            members,
            sums,
        })
    }
}

impl BillingPart {
    /// The part of `range` from its timeframes as columns (each timeframe
    /// of `range`, in order: its readings and its clearing), as
    /// [`bill_rows`](super::bill_rows) takes them.
    pub fn from_rows(
        range: &TimeRange,
        tariff: &Tariff,
        registry: &Registry,
        rows: &[(&ReadingRow, &ClearedRow)],
        threads: usize,
    ) -> Result<BillingPart> {
        let mut billing = RowBilling::new(range, tariff, registry, threads)?;
        billing.add(rows)?;
        billing.into_part()
    }

    /// The timeframes this part sums.
    pub fn range(&self) -> &TimeRange {
        &self.range
    }

    /// The summaries of the part's timeframes, in time order.
    pub fn summaries(&self) -> &[TimeframeSummary] {
        &self.summaries
    }

    /// How many members have a reading in the part's range.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// This part followed by `next`, which must start where this one ends
    /// (a gap is [`Error::PeriodNotCleared`] naming this part's end, an
    /// overlap [`Error::DuplicateClearing`] naming `next`'s start), have
    /// the same timeframe length and be laid out by the same registry
    /// ([`Error::ShapeMismatch`]).
    pub fn merge(self, next: BillingPart) -> Result<BillingPart> {
        self.check()?;
        next.check()?;
        if next.range.length() != self.range.length() {
            return Err(Error::ShapeMismatch(format!(
                "the billing part starting {} has {}-minute timeframes, the one before it {}-minute ones",
                next.range.start(),
                next.range.length().minutes(),
                self.range.length().minutes()
            )));
        }
        if next.range.start() > self.range.end() {
            return Err(Error::PeriodNotCleared {
                start: self.range.end(),
            });
        }
        if next.range.start() < self.range.end() {
            return Err(Error::DuplicateClearing {
                start: next.range.start(),
            });
        }
        if (next.prosumers, &next.registry) != (self.prosumers, &self.registry) {
            return Err(Error::ShapeMismatch(format!(
                "the billing part starting {} was made with another registry ({} prosumers) than the one before it ({} prosumers)",
                next.range.start(),
                next.prosumers,
                self.prosumers
            )));
        }
        let range = TimeRange::new(self.range.start(), next.range.end(), self.range.length())?;
        let mut summaries = self.summaries;
        summaries.extend(next.summaries);
        // Both member lists are sorted: merge them, adding the sums of the
        // members in both.
        let mut members = Vec::with_capacity(self.members.len().max(next.members.len()));
        let mut sums = Vec::with_capacity(members.capacity());
        let mut a = self.members.into_iter().zip(self.sums).peekable();
        let mut b = next.members.into_iter().zip(next.sums).peekable();
        loop {
            let take = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (Some(x), Some(y)) if x.0 < y.0 => a.next(),
                (Some(x), Some(y)) if x.0 > y.0 => b.next(),
                (Some(_), Some(_)) => match (a.next(), b.next()) {
                    (Some((i, x)), Some((_, y))) => {
                        let mut lines = to_lines(&x);
                        lines.merge(&to_lines(&y))?;
                        Some((i, to_sums(&lines)))
                    }
                    _ => None,
                },
            };
            if let Some((i, s)) = take {
                members.push(i);
                sums.push(s);
            }
        }
        Ok(BillingPart {
            range,
            prosumers: self.prosumers,
            registry: self.registry,
            summaries,
            members,
            sums,
        })
    }

    /// The parts merged in time order (they may come in any order); an
    /// error if there are none ([`Error::ShapeMismatch`]), or as
    /// [`merge`](BillingPart::merge).
    pub fn merge_all(parts: impl IntoIterator<Item = BillingPart>) -> Result<BillingPart> {
        let mut parts: Vec<BillingPart> = parts.into_iter().collect();
        parts.sort_by_key(|p| p.range.start());
        let mut parts = parts.into_iter();
        let first = parts
            .next()
            .ok_or_else(|| Error::ShapeMismatch("no billing parts to merge".into()))?;
        parts.try_fold(first, BillingPart::merge)
    }

    /// The bills of the part's range, which must be the whole billing
    /// period, for the members of `registry` (the one the part was made
    /// with: else [`Error::ShapeMismatch`]). Ends the way
    /// [`bill_rows`](super::bill_rows) does ([`RowBilling::finish`]), so
    /// the bills are equal to the last decimal.
    pub fn finish(self, tariff: &Tariff, registry: &Registry) -> Result<PeriodBills> {
        self.check()?;
        if self.prosumers != registry.len() || self.registry != registry_digest(registry) {
            return Err(Error::ShapeMismatch(format!(
                "the billing part of {} to {} was made with another registry ({} prosumers) than the one it is billed with ({} prosumers)",
                self.range.start(),
                self.range.end(),
                self.prosumers,
                registry.len()
            )));
        }
        let mut billing = RowBilling::new(&self.range, tariff, registry, 1)?;
        for s in &self.summaries {
            in_tariff_currency(s, tariff)?;
        }
        billing.summaries = self.summaries;
        for (&i, s) in self.members.iter().zip(&self.sums) {
            let i = i as usize;
            billing.lines[i] = to_lines(s);
            billing.member[i] = true;
        }
        billing.finish()
    }

    /// The part as bytes (JSON), for [`from_bytes`](BillingPart::from_bytes)
    /// in another process.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::ShapeMismatch(format!("billing part: {e}")))
    }

    /// A part from [`to_bytes`](BillingPart::to_bytes), checked: bytes that
    /// are not a part are [`Error::Parse`], a part whose content does not
    /// hold together [`Error::ShapeMismatch`].
    pub fn from_bytes(bytes: &[u8]) -> Result<BillingPart> {
        let part: BillingPart = serde_json::from_slice(bytes).map_err(|e| Error::Parse {
            what: "billing part",
            input: format!("{} bytes ({e})", bytes.len()),
        })?;
        part.check()?;
        Ok(part)
    }

    /// That the content holds together: one summary per timeframe of the
    /// range in order, members in increasing order within the registry,
    /// one sum per member.
    fn check(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::ShapeMismatch(format!(
                "the billing part of {} to {}: {what}",
                self.range.start(),
                self.range.end()
            )))
        };
        if self.summaries.len() != self.range.len() {
            return bad(format!(
                "{} summaries for {} timeframes",
                self.summaries.len(),
                self.range.len()
            ));
        }
        if let Some((tf, s)) = self
            .range
            .timeframes()
            .zip(&self.summaries)
            .find(|(tf, s)| &s.timeframe != tf)
        {
            return bad(format!(
                "the summary for {} is of {}",
                tf.start(),
                s.timeframe.start()
            ));
        }
        if self.sums.len() != self.members.len() {
            return bad(format!(
                "{} sums for {} members",
                self.sums.len(),
                self.members.len()
            ));
        }
        if self.members.windows(2).any(|w| w[0] >= w[1])
            || self
                .members
                .last()
                .is_some_and(|&i| i as usize >= self.prosumers)
        {
            return bad(format!(
                "member indices not increasing within {} prosumers",
                self.prosumers
            ));
        }
        Ok(())
    }
}
