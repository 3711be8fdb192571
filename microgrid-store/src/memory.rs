//! The in-memory store: the default, nothing to set up, gone when dropped.
//!
//! Readings are kept as one dense [`ReadingRow`] per timeframe and cleared
//! timeframes as [`ClearedRow`]s, both behind `Arc`s: clearing and billing
//! a month read them without copying, and a cleared timeframe keeps the
//! very row it was cleared from (a cleared timeframe's readings cannot
//! change, so nothing is copied on write either).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use microgrid_core::batch::{check_ingest, write_ingest, IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, IngestPlan, Prosumer, ProsumerId, Reading, Registry, TimeRange,
    Timeframe, TimeframeClearing, TimeframeSummary, Wh,
};

use crate::error::{Result, StoreError};
use crate::traits::{
    clear_open, wallet_address_taken, ClearCounts, ClearFn, LedgerStore, ReadingStore,
    RegistryStore, WalletIndices,
};

/// A cleared timeframe: the readings it was cleared from and the result.
type Cleared = (Arc<ReadingRow>, Arc<ClearedRow>);

#[derive(Debug, Default)]
struct Inner {
    registry: Registry,
    /// The prosumer of each column of the rows below.
    columns: Vec<ProsumerId>,
    column_of: HashMap<ProsumerId, usize>,
    readings: BTreeMap<DateTime<Utc>, Arc<ReadingRow>>,
    clearings: BTreeMap<DateTime<Utc>, Cleared>,
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
        // write below is checked first and then applied.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// The column of `id`, adding one if it has none.
    fn column(&mut self, id: &ProsumerId) -> usize {
        if let Some(&c) = self.column_of.get(id) {
            return c;
        }
        self.columns.push(id.clone());
        self.column_of.insert(id.clone(), self.columns.len() - 1);
        self.columns.len() - 1
    }

    /// Makes the columns follow `registry`'s indices: usually they already
    /// do and only new prosumers are appended; otherwise (a registry from
    /// another store, in another order) every stored row is laid out again
    /// once.
    fn align(&mut self, registry: &Registry) {
        let prefix = self
            .columns
            .iter()
            .zip(registry.by_index())
            .all(|(c, p)| c == p.id());
        if prefix && self.columns.len() <= registry.len() {
            for p in &registry.by_index()[self.columns.len()..] {
                self.column(p.id());
            }
            return;
        }
        let old = std::mem::take(&mut self.columns);
        self.column_of.clear();
        for p in registry.by_index() {
            self.column(p.id());
        }
        let moved: Vec<usize> = old.iter().map(|id| self.column(id)).collect();
        let width = self.columns.len();
        let relay = |row: &ReadingRow| {
            let mut out = ReadingRow::with_width(width);
            for (c, &to) in moved.iter().enumerate() {
                if let Some((p, q)) = row.get(c) {
                    out.set(to, p, q);
                }
            }
            out
        };
        for row in self.readings.values_mut() {
            *row = Arc::new(relay(row));
        }
        for (row, cleared) in self.clearings.values_mut() {
            let mut community = vec![Wh::ZERO; width];
            for (c, &to) in moved.iter().enumerate() {
                community[to] = cleared.community.get(c).copied().unwrap_or(Wh::ZERO);
            }
            *row = Arc::new(relay(row));
            *cleared = Arc::new(ClearedRow {
                summary: cleared.summary.clone(),
                community,
            });
        }
    }

    /// The columns with a prosumer, in id order: the order allocations
    /// are listed in.
    fn columns_by_id(&self) -> Vec<(&ProsumerId, usize)> {
        let mut ids: Vec<(&ProsumerId, usize)> = self
            .columns
            .iter()
            .enumerate()
            .map(|(c, id)| (id, c))
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// The allocations of one cleared timeframe, given its columns in id order.
fn allocations_of<'a>(
    by_id: &'a [(&'a ProsumerId, usize)],
    (row, cleared): &'a Cleared,
) -> impl Iterator<Item = Allocation> + 'a {
    by_id.iter().filter_map(move |&(id, c)| {
        let (p, q) = row.get(c)?;
        Some(Allocation::new(
            id.clone(),
            &cleared.summary,
            p,
            q,
            cleared.community.get(c).copied().unwrap_or(Wh::ZERO),
        ))
    })
}

fn in_range<'a, V>(
    map: &'a BTreeMap<DateTime<Utc>, V>,
    range: &TimeRange,
) -> impl Iterator<Item = (&'a DateTime<Utc>, &'a V)> {
    map.range(range.start()..range.end())
}

impl RegistryStore for MemoryStore {
    async fn save_prosumer(&self, prosumer: &Prosumer) -> Result<()> {
        let mut inner = self.lock();
        if inner.registry.index_of(prosumer.id()).is_ok() {
            inner.registry.update(prosumer.clone())?;
        } else {
            inner.registry.register(prosumer.clone())?;
        }
        Ok(())
    }

    async fn registry(&self) -> Result<Registry> {
        Ok(self.lock().registry.clone())
    }

    async fn insert_prosumers(&self, batch: &[Prosumer]) -> Result<()> {
        Ok(self.lock().registry.register_all(batch.iter().cloned())?)
    }
}

impl ReadingStore for MemoryStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let mut inner = self.lock();
        for r in plan.insert.iter().chain(&plan.replace) {
            let c = inner.column(r.prosumer());
            let row = inner.readings.entry(r.timeframe().start()).or_default();
            Arc::make_mut(row).set(c, r.produced(), r.consumed());
        }
        Ok(())
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let inner = self.lock();
        let order = inner.columns_by_id();
        let mut out = Vec::new();
        for (start, row) in in_range(&inner.readings, range) {
            let tf = Timeframe::new(*start, range.length())?;
            for &(id, c) in &order {
                if let Some((p, q)) = row.get(c) {
                    out.push(Reading::new(id.clone(), tf, p, q)?);
                }
            }
        }
        Ok(out)
    }

    async fn ingest(
        &self,
        batch: &ValidReadings,
        registry: &Registry,
        cleared: &BTreeSet<DateTime<Utc>>,
    ) -> Result<IngestCounts> {
        let Some(span) = batch.try_span() else {
            return Ok(IngestCounts::default());
        };
        let mut inner = self.lock();
        inner.align(registry);
        let starts: Vec<DateTime<Utc>> = span.timeframes().map(|tf| tf.start()).collect();
        let stored: Vec<Option<Arc<ReadingRow>>> = starts
            .iter()
            .map(|s| inner.readings.get(s).cloned())
            .collect();
        let is_cleared =
            |k: usize| cleared.contains(&starts[k]) || inner.clearings.contains_key(&starts[k]);
        let counts = check_ingest(batch, registry, &stored, is_cleared)?;
        drop(stored);
        let width = inner.columns.len();
        // Rows the batch does not touch are left alone (and unshared).
        let mut touched = vec![false; starts.len()];
        for i in batch.distinct() {
            touched[batch.row_of(i)] = true;
        }
        let mut rows: Vec<ReadingRow> = starts
            .iter()
            .zip(&touched)
            .map(|(s, &t)| match (t, inner.readings.remove(s)) {
                (true, Some(row)) => Arc::unwrap_or_clone(row),
                (true, None) => ReadingRow::with_width(width),
                (false, kept) => {
                    if let Some(row) = kept {
                        inner.readings.insert(*s, row);
                    }
                    ReadingRow::default()
                }
            })
            .collect();
        let mut refs: Vec<&mut ReadingRow> = rows.iter_mut().collect();
        write_ingest(batch, width, &mut refs);
        for ((s, row), t) in starts.into_iter().zip(rows).zip(touched) {
            if t {
                inner.readings.insert(s, Arc::new(row));
            }
        }
        Ok(counts)
    }

    async fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<Arc<ReadingRow>>> {
        let mut inner = self.lock();
        inner.align(registry);
        let empty = Arc::new(ReadingRow::default());
        Ok(range
            .timeframes()
            .map(|tf| {
                inner
                    .readings
                    .get(&tf.start())
                    .cloned()
                    .unwrap_or_else(|| empty.clone())
            })
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
        let columns: Vec<usize> = clearing
            .allocations
            .iter()
            .map(|a| inner.column(&a.prosumer))
            .collect();
        let width = inner.columns.len();
        let mut row = ReadingRow::with_width(width);
        let mut community = vec![Wh::ZERO; width];
        for (a, &c) in clearing.allocations.iter().zip(&columns) {
            row.set(c, a.produced, a.consumed);
            community[c] = Wh::new(a.sold.get() - a.bought.get());
        }
        let cleared = ClearedRow {
            summary: clearing.summary.clone(),
            community,
        };
        inner
            .clearings
            .insert(start, (Arc::new(row), Arc::new(cleared)));
        Ok(true)
    }

    async fn save_cleared(
        &self,
        rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
        registry: &Registry,
    ) -> Result<usize> {
        let mut inner = self.lock();
        inner.align(registry);
        let mut stored = 0;
        for (readings, cleared) in rows {
            let start = cleared.summary.timeframe.start();
            if inner.clearings.contains_key(&start) {
                continue;
            }
            inner
                .clearings
                .insert(start, (readings.clone(), cleared.clone()));
            stored += 1;
        }
        Ok(stored)
    }

    async fn cleared_rows(&self, range: &TimeRange, registry: &Registry) -> Result<Vec<Cleared>> {
        let mut inner = self.lock();
        inner.align(registry);
        Ok(in_range(&inner.clearings, range)
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        Ok(in_range(&self.lock().clearings, range)
            .map(|(s, _)| *s)
            .collect())
    }

    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        Ok(in_range(&self.lock().clearings, range)
            .map(|(_, (_, c))| c.summary.clone())
            .collect())
    }

    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        let inner = self.lock();
        let by_id = inner.columns_by_id();
        Ok(in_range(&inner.clearings, range)
            .flat_map(|(_, c)| allocations_of(&by_id, c))
            .filter(|a| prosumer.is_none_or(|p| &a.prosumer == p))
            .collect())
    }

    async fn save_settlement(&self, settlement: &Settlement) -> Result<Settlement> {
        let mut inner = self.lock();
        if let Some(stored) = inner.settlements.get(settlement.id()) {
            return match &stored.voided() {
                None => Ok(stored.clone()),
                Some(v) => Err(microgrid_core::Error::SettlementVoided {
                    id: stored.id().to_string(),
                    reason: v.reason.clone(),
                }
                .into()),
            };
        }
        let period = &settlement.period();
        if let Some(standing) = inner.settlements.values().find(|s| {
            s.stands() && s.period().start() < period.end() && period.start() < s.period().end()
        }) {
            return Err(settlement.conflict_with(standing).into());
        }
        // No wallet index given twice, standing or voided: checked under
        // the lock, as the insert below.
        if let Some(mine) = WalletIndices::of(settlement) {
            let taken = inner
                .settlements
                .values()
                .filter_map(|other| {
                    let shared = mine.first_shared(&WalletIndices::of(other)?)?;
                    Some((shared, other.id()))
                })
                .min_by_key(|((chain, index), _)| (*chain != "receive", *index));
            if let Some(((chain, index), holder)) = taken {
                return Err(wallet_address_taken(settlement, chain, index, holder));
            }
        }
        inner
            .settlements
            .insert(settlement.id().to_string(), settlement.clone());
        Ok(settlement.clone())
    }

    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        Ok(self.lock().settlements.get(id).cloned())
    }

    async fn voided_settlements(&self) -> Result<Vec<Settlement>> {
        let mut voided: Vec<Settlement> = (self.lock().settlements.values())
            .filter(|s| !s.stands())
            .cloned()
            .collect();
        voided.sort_by(|a, b| (a.period().end(), &a.id()).cmp(&(b.period().end(), &b.id())));
        Ok(voided)
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        Ok(self
            .lock()
            .settlements
            .values()
            .filter(|s| s.stands() && s.period().end() <= before)
            .max_by_key(|s| (s.period().end(), s.id().to_string()))
            .cloned())
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let mut inner = self.lock();
        let stored = stored_mut(&mut inner, paid.id())?;
        let txid = paid.paid_by().map(|t| t.to_string()).unwrap_or_default();
        // The core's rule against what is stored, under the lock.
        let mut marked = stored.clone();
        marked.mark_paid(&txid)?;
        *stored = marked;
        Ok(())
    }

    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        let mut inner = self.lock();
        let stored = stored_mut(&mut inner, voided.id())?;
        let Some(v) = &voided.voided() else {
            return Ok(());
        };
        Ok(stored.void(&v.reason, v.at)?)
    }

    async fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> Result<ClearCounts> {
        // Under the lock from reading to storing: no ingest in between.
        let mut inner = self.lock();
        inner.align(registry);
        let empty = Arc::new(ReadingRow::default());
        let open: Vec<(Timeframe, Arc<ReadingRow>)> = range
            .timeframes()
            .filter(|tf| !inner.clearings.contains_key(&tf.start()))
            .map(|tf| {
                let row = inner.readings.get(&tf.start()).unwrap_or(&empty);
                (tf, row.clone())
            })
            .collect();
        let already_cleared = range.len() - open.len();
        let pairs = clear_open(open, clear)?;
        let cleared = pairs.len();
        for (readings, result) in pairs {
            inner
                .clearings
                .insert(result.summary.timeframe.start(), (readings, result));
        }
        Ok(ClearCounts {
            cleared,
            already_cleared,
        })
    }
}

/// The stored settlement `id`, to change under the lock.
fn stored_mut<'a>(inner: &'a mut Inner, id: &str) -> Result<&'a mut Settlement> {
    inner
        .settlements
        .get_mut(id)
        .ok_or_else(|| StoreError::NotFound {
            what: "settlement",
            key: id.to_owned(),
        })
}
