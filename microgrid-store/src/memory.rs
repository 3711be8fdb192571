//! The in-memory store: the default, nothing to set up, gone when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, IngestPlan, Prosumer, ProsumerId, Reading, Registry, TimeRange, TimeframeClearing,
    TimeframeSummary,
};

use crate::error::{Result, StoreError};
use crate::traits::{LedgerStore, ReadingStore, RegistryStore};

#[derive(Debug, Default)]
struct Inner {
    prosumers: BTreeMap<ProsumerId, Prosumer>,
    readings: BTreeMap<DateTime<Utc>, BTreeMap<ProsumerId, Reading>>,
    clearings: BTreeMap<DateTime<Utc>, TimeframeClearing>,
    settlements: BTreeMap<String, Settlement>,
}

/// Everything in memory, behind one lock. Cheap to clone (clones share
/// the data).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave half a write: every
        // write below is a single map operation or is prepared first.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn in_range<'a, V>(
    map: &'a BTreeMap<DateTime<Utc>, V>,
    range: &TimeRange,
) -> impl Iterator<Item = (&'a DateTime<Utc>, &'a V)> {
    map.range(range.start()..range.end())
}

impl RegistryStore for MemoryStore {
    async fn save_prosumer(&self, prosumer: &Prosumer) -> Result<()> {
        self.lock()
            .prosumers
            .insert(prosumer.id().clone(), prosumer.clone());
        Ok(())
    }

    async fn registry(&self) -> Result<Registry> {
        let prosumers: Vec<Prosumer> = self.lock().prosumers.values().cloned().collect();
        Ok(prosumers
            .into_iter()
            .collect::<microgrid_core::Result<Registry>>()?)
    }
}

impl ReadingStore for MemoryStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let mut inner = self.lock();
        for r in plan.insert.iter().chain(&plan.replace) {
            inner
                .readings
                .entry(r.timeframe().start())
                .or_default()
                .insert(r.prosumer().clone(), r.clone());
        }
        Ok(())
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        Ok(in_range(&self.lock().readings, range)
            .flat_map(|(_, by_id)| by_id.values().cloned())
            .collect())
    }
}

impl LedgerStore for MemoryStore {
    async fn save_clearing(&self, clearing: &TimeframeClearing) -> Result<bool> {
        let mut inner = self.lock();
        let start = clearing.summary.timeframe.start();
        if inner.clearings.contains_key(&start) {
            return Ok(false);
        }
        // The same rule the databases' keys enforce: one allocation per prosumer.
        let mut ids: Vec<&ProsumerId> = clearing.allocations.iter().map(|a| &a.prosumer).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(StoreError::Database {
                operation: "saving allocations",
                message: format!("duplicate allocation of {} at {start}", w[0]),
            });
        }
        inner.clearings.insert(start, clearing.clone());
        Ok(true)
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        Ok(in_range(&self.lock().clearings, range)
            .map(|(s, _)| *s)
            .collect())
    }

    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        Ok(in_range(&self.lock().clearings, range)
            .map(|(_, c)| c.summary.clone())
            .collect())
    }

    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        Ok(in_range(&self.lock().clearings, range)
            .flat_map(|(_, c)| c.allocations.iter())
            .filter(|a| prosumer.is_none_or(|p| &a.prosumer == p))
            .cloned()
            .collect())
    }

    async fn save_settlement(&self, settlement: &Settlement) -> Result<Settlement> {
        let mut inner = self.lock();
        Ok(inner
            .settlements
            .entry(settlement.id.clone())
            .or_insert_with(|| settlement.clone())
            .clone())
    }

    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        Ok(self.lock().settlements.get(id).cloned())
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        Ok(self
            .lock()
            .settlements
            .values()
            .filter(|s| s.period.end() <= before)
            .max_by_key(|s| (s.period.end(), s.id.clone()))
            .cloned())
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let mut inner = self.lock();
        let stored = inner
            .settlements
            .get_mut(&paid.id)
            .ok_or_else(|| StoreError::NotFound {
                what: "settlement",
                key: paid.id.clone(),
            })?;
        *stored = paid.clone();
        Ok(())
    }
}
