//! The storage traits, one per concern. Adapters translate rows or
//! documents to core types and back; the rules (idempotency, conflicts)
//! live in the core and in [`crate::Grid`].

use std::collections::BTreeSet;
use std::future::Future;

use chrono::{DateTime, Utc};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, IngestPlan, Prosumer, ProsumerId, Reading, Registry, TimeRange, TimeframeClearing,
    TimeframeSummary,
};

use crate::error::Result;

/// Who is connected.
pub trait RegistryStore: Send + Sync {
    /// Inserts or replaces a prosumer's record.
    fn save_prosumer(&self, prosumer: &Prosumer) -> impl Future<Output = Result<()>> + Send;
    /// Every prosumer.
    fn registry(&self) -> impl Future<Output = Result<Registry>> + Send;
}

/// Meter readings.
pub trait ReadingStore: Send + Sync {
    /// Writes a planned ingest (inserts and corrections) atomically: all of
    /// it or nothing.
    fn write_readings(&self, plan: &IngestPlan) -> impl Future<Output = Result<()>> + Send;
    /// The readings of every timeframe starting in `range`, sorted by
    /// timeframe and prosumer.
    fn readings(&self, range: &TimeRange) -> impl Future<Output = Result<Vec<Reading>>> + Send;
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
    /// Stores the payment (`paid_txid`) of a settlement stored before;
    /// [`crate::StoreError::NotFound`] if there is none with its id. The
    /// rule for a valid payment is the core's `Settlement::mark_paid`.
    fn save_payment(&self, paid: &Settlement) -> impl Future<Output = Result<()>> + Send;
}

/// A store of everything.
pub trait Store: RegistryStore + ReadingStore + LedgerStore {}

impl<T: RegistryStore + ReadingStore + LedgerStore> Store for T {}
