//! The storage traits, one per concern. Adapters translate rows or
//! documents to core types and back; the rules (idempotency, conflicts)
//! live in the core and in [`crate::Grid`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use microgrid_core::batch::{IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    plan_ingest, Allocation, ClearedRow, IngestPlan, Prosumer, ProsumerId, Reading, Registry,
    TimeRange, TimeframeClearing, TimeframeSummary, Wh,
};

use crate::error::Result;

/// Who is connected.
pub trait RegistryStore: Send + Sync {
    /// Inserts or replaces a prosumer's record.
    fn save_prosumer(&self, prosumer: &Prosumer) -> impl Future<Output = Result<()>> + Send;
    /// Every prosumer.
    fn registry(&self) -> impl Future<Output = Result<Registry>> + Send;
    /// Inserts new prosumers, all or none: an id that is stored already is
    /// [`microgrid_core::Error::DuplicateProsumer`]. The default saves them
    /// one by one; adapters override it with one bulk write.
    fn insert_prosumers(&self, batch: &[Prosumer]) -> impl Future<Output = Result<()>> + Send {
        async move {
            let registry = self.registry().await?;
            if let Some(p) = batch.iter().find(|p| registry.index_of(p.id()).is_ok()) {
                return Err(microgrid_core::Error::DuplicateProsumer(p.id().to_string()).into());
            }
            for p in batch {
                self.save_prosumer(p).await?;
            }
            Ok(())
        }
    }
}

/// Meter readings.
pub trait ReadingStore: Send + Sync {
    /// Writes a planned ingest (inserts and corrections) atomically: all of
    /// it or nothing.
    fn write_readings(&self, plan: &IngestPlan) -> impl Future<Output = Result<()>> + Send;
    /// The readings of every timeframe starting in `range`, sorted by
    /// timeframe and prosumer.
    fn readings(&self, range: &TimeRange) -> impl Future<Output = Result<Vec<Reading>>> + Send;

    /// Ingests a validated batch with the core's rule
    /// ([`microgrid_core::batch::check_ingest`]): checked against the
    /// stored readings of its span and `cleared` (the starts of its cleared
    /// timeframes), then written all or nothing. Indices are `registry`'s.
    /// The default goes through [`plan_ingest`] and
    /// [`ReadingStore::write_readings`]; adapters override it with a bulk
    /// path.
    fn ingest(
        &self,
        batch: &ValidReadings,
        registry: &Registry,
        cleared: &BTreeSet<DateTime<Utc>>,
    ) -> impl Future<Output = Result<IngestCounts>> + Send {
        async move {
            let Some(span) = batch.try_span() else {
                return Ok(IngestCounts::default());
            };
            let stored: BTreeMap<(DateTime<Utc>, ProsumerId), Reading> = self
                .readings(&span)
                .await?
                .into_iter()
                .map(|r| ((r.timeframe().start(), r.prosumer().clone()), r))
                .collect();
            let plan = plan_ingest(
                batch.to_readings(registry)?,
                |id, tf| stored.get(&(tf.start(), id.clone())).cloned(),
                |tf| cleared.contains(&tf.start()),
            )?;
            self.write_readings(&plan).await?;
            Ok(IngestCounts {
                inserted: plan.insert.len(),
                replaced: plan.replace.len(),
                unchanged: plan.unchanged,
            })
        }
    }

    /// The readings of `range` as one dense row per timeframe, by
    /// `registry`'s indices. The default builds them from
    /// [`ReadingStore::readings`].
    fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> impl Future<Output = Result<Vec<Arc<ReadingRow>>>> + Send {
        async move {
            let mut rows = vec![ReadingRow::with_width(registry.len()); range.len()];
            let (first, secs) = (range.start().timestamp(), range.length().seconds());
            for r in self.readings(range).await? {
                let k = ((r.timeframe().start().timestamp() - first) / secs) as usize;
                let i = registry.index_of(r.prosumer())?.get();
                rows[k].set(i, r.produced(), r.consumed());
            }
            Ok(rows.into_iter().map(Arc::new).collect())
        }
    }
}

/// Clearing results and settlements.
pub trait LedgerStore: Send + Sync {
    /// Stores a cleared timeframe (summary and allocations) atomically,
    /// unless that timeframe is stored already. Returns whether it was
    /// stored now; the first result stays.
    fn save_clearing(
        &self,
        clearing: &TimeframeClearing,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Starts of the cleared timeframes in `range`.
    fn cleared(
        &self,
        range: &TimeRange,
    ) -> impl Future<Output = Result<BTreeSet<DateTime<Utc>>>> + Send;
    /// Summaries of the cleared timeframes in `range`, in time order.
    fn summaries(
        &self,
        range: &TimeRange,
    ) -> impl Future<Output = Result<Vec<TimeframeSummary>>> + Send;
    /// Allocations in `range` (of one prosumer, or all), by time then id.
    fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> impl Future<Output = Result<Vec<Allocation>>> + Send;
    /// Stores a settlement atomically unless one with its id exists, and
    /// returns the stored one.
    fn save_settlement(
        &self,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settlement>> + Send;
    /// The settlement with `id`.
    fn settlement(&self, id: &str) -> impl Future<Output = Result<Option<Settlement>>> + Send;
    /// The settlement whose period ends last at or before `before`.
    fn last_settlement(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Settlement>>> + Send;
    /// Stores cleared timeframes given as columns (each with the readings
    /// it was cleared from), skipping those cleared already; returns how
    /// many were stored now. The default stores them one by one with
    /// [`LedgerStore::save_clearing`]; adapters override it with one bulk
    /// write.
    fn save_cleared(
        &self,
        rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
        registry: &Registry,
    ) -> impl Future<Output = Result<usize>> + Send {
        async move {
            let mut stored = 0;
            for (readings, cleared) in rows {
                if self
                    .save_clearing(&cleared.to_clearing(readings, registry))
                    .await?
                {
                    stored += 1;
                }
            }
            Ok(stored)
        }
    }

    /// The cleared timeframes of `range` in time order, as columns: the
    /// readings each was cleared from and its result, by `registry`'s
    /// indices. The default builds them from [`LedgerStore::summaries`]
    /// and [`LedgerStore::allocations`].
    fn cleared_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> impl Future<Output = Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>>> + Send {
        async move {
            let summaries = self.summaries(range).await?;
            let mut by_start: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
            let mut rows = Vec::with_capacity(summaries.len());
            for (k, summary) in summaries.into_iter().enumerate() {
                by_start.insert(summary.timeframe.start(), k);
                rows.push((
                    ReadingRow::with_width(registry.len()),
                    ClearedRow {
                        summary,
                        community: vec![Wh::ZERO; registry.len()],
                    },
                ));
            }
            for a in self.allocations(range, None).await? {
                let Some(&k) = by_start.get(&a.timeframe.start()) else {
                    continue;
                };
                let i = registry.index_of(&a.prosumer)?.get();
                rows[k].0.set(i, a.produced, a.consumed);
                rows[k].1.community[i] = Wh::new(a.sold.get() - a.bought.get());
            }
            Ok(rows
                .into_iter()
                .map(|(r, c)| (Arc::new(r), Arc::new(c)))
                .collect())
        }
    }

    /// Stores the payment (`paid_txid`) of a settlement stored before;
    /// [`crate::StoreError::NotFound`] if there is none with its id. The
    /// rule for a valid payment is the core's `Settlement::mark_paid`.
    fn save_payment(&self, paid: &Settlement) -> impl Future<Output = Result<()>> + Send;
}

/// A store of everything.
pub trait Store: RegistryStore + ReadingStore + LedgerStore {}

impl<T: RegistryStore + ReadingStore + LedgerStore> Store for T {}
