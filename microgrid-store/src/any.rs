//! Opening stores by URL, and routing each concern to its own database.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use microgrid_core::batch::{IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, IngestPlan, Prosumer, ProsumerId, Reading, Registry, TimeRange,
    TimeframeClearing, TimeframeLength, TimeframeSummary,
};

use crate::error::{Result, StoreError};
use crate::grid::Grid;
use crate::memory::MemoryStore;
use crate::traits::{
    clear_in_steps, ClearCounts, ClearFn, LedgerStore, ReadingStore, RegistryStore,
};

/// Any of the stores compiled in, chosen by URL at run time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// `memory:`
    Memory(MemoryStore),
    /// `sqlite:path` or `sqlite::memory:`
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::SqliteStore),
    /// `postgres://...` or `postgresql://...`
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::PostgresStore),
    /// `mongodb://...` or `mongodb+srv://...`
    #[cfg(feature = "mongodb")]
    Mongo(crate::mongo::MongoStore),
}

impl AnyStore {
    /// Opens the store `url` names; an error names the URL if its scheme is
    /// unknown or its feature is not compiled in.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = microgrid_store::AnyStore::open("memory:").await?;
    /// assert!(microgrid_store::AnyStore::open("redis://localhost").await.is_err());
    /// # Ok::<(), microgrid_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn open(url: &str) -> Result<AnyStore> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "memory" => Ok(AnyStore::Memory(MemoryStore::new())),
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(AnyStore::Sqlite(
                crate::sqlite::SqliteStore::open(url).await?,
            )),
            #[cfg(not(feature = "sqlite"))]
            "sqlite" => Err(missing_feature(url, "sqlite")),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(AnyStore::Postgres(
                crate::postgres::PostgresStore::open(url).await?,
            )),
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => Err(missing_feature(url, "postgres")),
            #[cfg(feature = "mongodb")]
            "mongodb" | "mongodb+srv" => {
                Ok(AnyStore::Mongo(crate::mongo::MongoStore::open(url).await?))
            }
            #[cfg(not(feature = "mongodb"))]
            "mongodb" | "mongodb+srv" => Err(missing_feature(url, "mongodb")),
            _ => Err(StoreError::bad_url(
                url,
                "expected memory:, sqlite:, postgres:// or mongodb://",
            )),
        }
    }
}

#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "mongodb"),
    allow(dead_code)
)]
fn missing_feature(url: &str, feature: &str) -> StoreError {
    StoreError::bad_url(
        url,
        format!("this build has no {feature} support (cargo feature `{feature}`)"),
    )
}

/// Runs `$body` with `$s` bound to the store inside any variant.
macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AnyStore::Memory($s) => $body,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($s) => $body,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $body,
            #[cfg(feature = "mongodb")]
            AnyStore::Mongo($s) => $body,
        }
    };
}

impl RegistryStore for AnyStore {
    async fn save_prosumer(&self, prosumer: &Prosumer) -> Result<()> {
        dispatch!(self, s => s.save_prosumer(prosumer).await)
    }
    async fn registry(&self) -> Result<Registry> {
        dispatch!(self, s => s.registry().await)
    }
    async fn insert_prosumers(&self, batch: &[Prosumer]) -> Result<()> {
        dispatch!(self, s => s.insert_prosumers(batch).await)
    }
}

impl ReadingStore for AnyStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        dispatch!(self, s => s.write_readings(plan).await)
    }
    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        dispatch!(self, s => s.readings(range).await)
    }
    async fn ingest(
        &self,
        batch: &ValidReadings,
        registry: &Registry,
        cleared: &BTreeSet<DateTime<Utc>>,
    ) -> Result<IngestCounts> {
        dispatch!(self, s => s.ingest(batch, registry, cleared).await)
    }
    async fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<Arc<ReadingRow>>> {
        dispatch!(self, s => s.reading_rows(range, registry).await)
    }
}

impl LedgerStore for AnyStore {
    async fn save_clearing(&self, clearing: &TimeframeClearing) -> Result<bool> {
        dispatch!(self, s => s.save_clearing(clearing).await)
    }
    async fn save_cleared(
        &self,
        rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
        registry: &Registry,
    ) -> Result<usize> {
        dispatch!(self, s => s.save_cleared(rows, registry).await)
    }
    async fn cleared_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>> {
        dispatch!(self, s => s.cleared_rows(range, registry).await)
    }
    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        dispatch!(self, s => s.cleared(range).await)
    }
    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        dispatch!(self, s => s.summaries(range).await)
    }
    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        dispatch!(self, s => s.allocations(range, prosumer).await)
    }
    async fn save_settlement(&self, settlement: &Settlement) -> Result<Settlement> {
        dispatch!(self, s => s.save_settlement(settlement).await)
    }
    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        dispatch!(self, s => s.settlement(id).await)
    }
    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        dispatch!(self, s => s.last_settlement(before).await)
    }

    async fn voided_settlements(&self) -> Result<Vec<Settlement>> {
        dispatch!(self, s => s.voided_settlements().await)
    }
    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        dispatch!(self, s => s.save_payment(paid).await)
    }
    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        dispatch!(self, s => s.save_voiding(voided).await)
    }
    async fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> Result<ClearCounts> {
        dispatch!(self, s => s.clear_with(range, registry, clear).await)
    }
}

/// The registry, the readings and the ledger (clearing results and
/// settlements) each in a store of its own, e.g. the registry and the
/// ledger in PostgreSQL and the readings in MongoDB.
///
/// No one transaction spans two databases, so ingest and clearing take
/// turns through a lock of this value (and its clones): within one
/// process they do not interleave. Two processes writing the same routed
/// databases can interleave an ingest with a clear; route readings and
/// ledger to one database where that matters.
#[derive(Debug, Clone)]
pub struct RoutedStore<R = AnyStore, D = AnyStore, L = AnyStore> {
    /// Where prosumers live.
    pub registry: R,
    /// Where readings live.
    pub readings: D,
    /// Where clearing results and settlements live.
    pub ledger: L,
    turns: Arc<tokio::sync::Mutex<()>>,
}

impl<R, D, L> RoutedStore<R, D, L> {
    /// The three stores, routed.
    pub fn new(registry: R, readings: D, ledger: L) -> RoutedStore<R, D, L> {
        RoutedStore {
            registry,
            readings,
            ledger,
            turns: Arc::default(),
        }
    }
}

impl RoutedStore {
    /// Opens the three stores by URL.
    pub async fn open(
        registry_url: &str,
        readings_url: &str,
        ledger_url: &str,
    ) -> Result<RoutedStore> {
        Ok(RoutedStore::new(
            AnyStore::open(registry_url).await?,
            AnyStore::open(readings_url).await?,
            AnyStore::open(ledger_url).await?,
        ))
    }
}

impl<R: RegistryStore, D: Send + Sync, L: Send + Sync> RegistryStore for RoutedStore<R, D, L> {
    async fn save_prosumer(&self, prosumer: &Prosumer) -> Result<()> {
        self.registry.save_prosumer(prosumer).await
    }
    async fn registry(&self) -> Result<Registry> {
        self.registry.registry().await
    }
    async fn insert_prosumers(&self, batch: &[Prosumer]) -> Result<()> {
        self.registry.insert_prosumers(batch).await
    }
}

impl<R: Send + Sync, D: ReadingStore, L: LedgerStore> ReadingStore for RoutedStore<R, D, L> {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        self.readings.write_readings(plan).await
    }
    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        self.readings.readings(range).await
    }
    async fn ingest(
        &self,
        batch: &ValidReadings,
        registry: &Registry,
        cleared: &BTreeSet<DateTime<Utc>>,
    ) -> Result<IngestCounts> {
        let _turn = self.turns.lock().await;
        // What the ledger cleared before this turn began counts too.
        let mut cleared = cleared.clone();
        if let Some(span) = batch.try_span() {
            cleared.extend(self.ledger.cleared(&span).await?);
        }
        self.readings.ingest(batch, registry, &cleared).await
    }
    async fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<Arc<ReadingRow>>> {
        self.readings.reading_rows(range, registry).await
    }
}

impl<R: Send + Sync, D: Send + Sync, L: LedgerStore> LedgerStore for RoutedStore<R, D, L> {
    async fn save_clearing(&self, clearing: &TimeframeClearing) -> Result<bool> {
        self.ledger.save_clearing(clearing).await
    }
    async fn save_cleared(
        &self,
        rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
        registry: &Registry,
    ) -> Result<usize> {
        self.ledger.save_cleared(rows, registry).await
    }
    async fn cleared_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>> {
        self.ledger.cleared_rows(range, registry).await
    }
    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        self.ledger.cleared(range).await
    }
    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        self.ledger.summaries(range).await
    }
    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        self.ledger.allocations(range, prosumer).await
    }
    async fn save_settlement(&self, settlement: &Settlement) -> Result<Settlement> {
        self.ledger.save_settlement(settlement).await
    }
    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        self.ledger.settlement(id).await
    }
    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        self.ledger.last_settlement(before).await
    }

    async fn voided_settlements(&self) -> Result<Vec<Settlement>> {
        self.ledger.voided_settlements().await
    }
    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        self.ledger.save_payment(paid).await
    }
    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        self.ledger.save_voiding(voided).await
    }
    async fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> Result<ClearCounts>
    where
        Self: ReadingStore,
    {
        // Two databases: no one transaction; ingests wait for this turn.
        let _turn = self.turns.lock().await;
        clear_in_steps(self, range, registry, clear).await
    }
}

impl Grid<AnyStore> {
    /// A grid of 15-minute timeframes on the store `url` names (see
    /// [`AnyStore::open`]).
    pub async fn open(url: &str) -> Result<Grid<AnyStore>> {
        Ok(Grid::new(
            AnyStore::open(url).await?,
            TimeframeLength::default(),
        ))
    }
}
