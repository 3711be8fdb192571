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
    TimeRange, Timeframe, TimeframeClearing, TimeframeSummary, Wh,
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
    /// Stores a settlement unless a standing (not voided) settlement
    /// overlaps its period, and returns the stored one. One settlement per
    /// period, enforced by the store itself (a constraint or one
    /// transaction), so that of two concurrent settlements of overlapping
    /// periods exactly one stands:
    /// - the same settlement (same id) stored already is returned as stored;
    /// - another standing settlement overlapping it is
    ///   [`microgrid_core::Error::SettlementConflict`]
    ///   ([`Settlement::conflict_with`]);
    /// - the same settlement stored and voided is
    ///   [`microgrid_core::Error::SettlementVoided`];
    /// - a settlement made with a descriptor wallet that gives out a
    ///   receive or change index of it that another stored settlement
    ///   (standing or voided) gave out is
    ///   [`crate::StoreError::WalletAddressTaken`], checked in the same
    ///   write (a key of the indices given out, or the store's lock), so
    ///   that of two processes settling with one wallet at once, one gets
    ///   the error and no address is given twice.
    fn save_settlement(
        &self,
        settlement: &Settlement,
    ) -> impl Future<Output = Result<Settlement>> + Send;
    /// The settlement with `id` (standing or voided).
    fn settlement(&self, id: &str) -> impl Future<Output = Result<Option<Settlement>>> + Send;
    /// The standing settlement whose period ends last at or before
    /// `before`: voided settlements are not part of the chain.
    fn last_settlement(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Settlement>>> + Send;
    /// Every voided settlement, oldest period first. They are out of the
    /// chain of standing settlements but keep what they handed out: the
    /// addresses of a descriptor wallet's invoices are never given again.
    fn voided_settlements(&self) -> impl Future<Output = Result<Vec<Settlement>>> + Send;
    /// Clears the timeframes of `range` that are not cleared yet, in one
    /// step that no ingest can interleave with (a transaction holding what
    /// it read, or a lock): reads their readings, hands them to `clear`
    /// (which returns one result per timeframe given, in order) and stores
    /// the results. Returns how many were cleared now and how many were
    /// cleared already. The default is not atomic (reads, then
    /// [`LedgerStore::save_cleared`]); every adapter overrides it.
    fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> impl Future<Output = Result<ClearCounts>> + Send
    where
        Self: ReadingStore,
    {
        async move { clear_in_steps(self, range, registry, clear).await }
    }
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

    /// Stores the payment of a settlement stored before: `paid` is the
    /// stored settlement after [`Settlement::mark_paid`]. Written only if
    /// what is stored is still unpaid (or paid by the same transaction)
    /// and stands, checked by the store in the same write; otherwise the
    /// core's error against what is stored
    /// ([`microgrid_core::Error::AlreadyPaid`],
    /// [`microgrid_core::Error::SettlementVoided`]), or
    /// [`crate::StoreError::NotFound`] if there is none with its id.
    fn save_payment(&self, paid: &Settlement) -> impl Future<Output = Result<()>> + Send;

    /// Stores the voiding of a settlement stored before: `voided` is the
    /// stored settlement after [`Settlement::void`]. Written only if what
    /// is stored is unpaid, checked by the store in the same write;
    /// otherwise [`microgrid_core::Error::CannotVoidPaid`]. Voiding a
    /// voided settlement changes nothing.
    fn save_voiding(&self, voided: &Settlement) -> impl Future<Output = Result<()>> + Send;
}

/// What [`LedgerStore::clear_with`] computes with: the open timeframes of
/// a range with their readings, to one result each, in order.
pub type ClearFn<'a> = dyn Fn(&[(Timeframe, &ReadingRow)]) -> microgrid_core::Result<Vec<ClearedRow>>
    + Send
    + Sync
    + 'a;

/// How many timeframes [`LedgerStore::clear_with`] cleared now and how many
/// were cleared before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearCounts {
    /// Cleared now.
    pub cleared: usize,
    /// Cleared before (skipped).
    pub already_cleared: usize,
}

/// [`LedgerStore::clear_with`] in steps (read, clear, store), each atomic
/// on its own but not together: what the trait's default does.
pub(crate) async fn clear_in_steps<S: ReadingStore + LedgerStore + ?Sized>(
    store: &S,
    range: &TimeRange,
    registry: &Registry,
    clear: &ClearFn<'_>,
) -> Result<ClearCounts> {
    let done = store.cleared(range).await?;
    let rows = store.reading_rows(range, registry).await?;
    let (pairs, already_cleared) = clear_not_done(range, rows, &done, clear)?;
    let cleared = store.save_cleared(&pairs, registry).await?;
    Ok(ClearCounts {
        cleared,
        already_cleared: already_cleared + pairs.len() - cleared,
    })
}

/// A cleared timeframe: the readings it was cleared from and its result.
pub(crate) type ClearedPair = (Arc<ReadingRow>, Arc<ClearedRow>);

/// Runs `clear` on the timeframes of `range` not in `done` (`rows` are
/// the readings of every timeframe of `range`, in order) and pairs each
/// result with the readings it was cleared from; also returns how many
/// timeframes were done already.
pub(crate) fn clear_not_done(
    range: &TimeRange,
    rows: Vec<Arc<ReadingRow>>,
    done: &BTreeSet<DateTime<Utc>>,
    clear: &ClearFn<'_>,
) -> Result<(Vec<ClearedPair>, usize)> {
    let open: Vec<(Timeframe, Arc<ReadingRow>)> = range
        .timeframes()
        .zip(rows)
        .filter(|(tf, _)| !done.contains(&tf.start()))
        .collect();
    let already_cleared = range.len() - open.len();
    if open.is_empty() {
        return Ok((Vec::new(), already_cleared));
    }
    Ok((clear_open(open, clear)?, already_cleared))
}

/// Runs `clear` on the open timeframes and pairs each result with the
/// readings it was cleared from.
pub(crate) fn clear_open(
    open: Vec<(Timeframe, Arc<ReadingRow>)>,
    clear: &ClearFn<'_>,
) -> Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>> {
    let todo: Vec<(Timeframe, &ReadingRow)> =
        open.iter().map(|(tf, r)| (*tf, r.as_ref())).collect();
    let cleared = clear(&todo)?;
    if cleared.len() != open.len() {
        return Err(microgrid_core::Error::ShapeMismatch(format!(
            "{} results for {} timeframes",
            cleared.len(),
            open.len()
        ))
        .into());
    }
    Ok(open
        .into_iter()
        .map(|(_, r)| r)
        .zip(cleared.into_iter().map(Arc::new))
        .collect())
}

/// The indices of a descriptor wallet that a settlement made with it
/// gives out ([`Settlement::wallet`]), which no other stored settlement,
/// standing or voided, may give again: the receive indices of its
/// invoices and the change indices reserved for its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalletIndices<'a> {
    /// The wallet's id.
    pub wallet: &'a str,
    /// `[first_index, next_index)` on the receive chain.
    pub receive: std::ops::Range<u32>,
    /// `[first_change_index, next_change_index)` on the change chain.
    pub change: std::ops::Range<u32>,
}

impl<'a> WalletIndices<'a> {
    /// What `s` gives out, if it was made with a wallet.
    pub fn of(s: &'a Settlement) -> Option<WalletIndices<'a>> {
        s.wallet().map(|r| WalletIndices {
            wallet: r.wallet.as_str(),
            receive: r.first_index..r.next_index.max(r.first_index),
            change: r.first_change_index..r.next_change_index.max(r.first_change_index),
        })
    }

    /// Both chains with their names as stored (`"receive"`, `"change"`).
    pub fn chains(&self) -> [(&'static str, std::ops::Range<u32>); 2] {
        [
            ("receive", self.receive.clone()),
            ("change", self.change.clone()),
        ]
    }

    /// How many indices in all.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn count(&self) -> u64 {
        self.chains()
            .iter()
            .map(|(_, r)| u64::from(r.end - r.start))
            .sum()
    }

    /// The first index (receive chain first, then change) given out by
    /// both `self` and `other`.
    pub fn first_shared(&self, other: &WalletIndices<'_>) -> Option<(&'static str, u32)> {
        if self.wallet != other.wallet {
            return None;
        }
        self.chains()
            .into_iter()
            .zip(other.chains())
            .find_map(|((chain, a), (_, b))| {
                let start = a.start.max(b.start);
                (start < a.end.min(b.end)).then_some((chain, start))
            })
    }
}

/// [`crate::StoreError::WalletAddressTaken`]: settlement `s` gives index
/// `index` of `chain`, which settlement `holder` gave already.
pub(crate) fn wallet_address_taken(
    s: &Settlement,
    chain: &str,
    index: u32,
    holder: &str,
) -> crate::StoreError {
    let record = s.wallet();
    let (keychain, address) = if chain == "change" {
        let first_batch = record.is_some_and(|r| r.first_change_index == index);
        (
            "change",
            first_batch.then(|| s.operator_address().to_string()),
        )
    } else {
        let invoice = record.and_then(|r| r.invoices.iter().find(|a| a.index == index));
        ("receive", invoice.map(|a| a.address.to_string()))
    };
    crate::StoreError::WalletAddressTaken {
        settlement: s.id().to_string(),
        wallet: record.map(|r| r.wallet.clone()).unwrap_or_default(),
        keychain,
        index,
        address,
        holder: holder.to_owned(),
    }
}

/// A store of everything.
pub trait Store: RegistryStore + ReadingStore + LedgerStore {}

impl<T: RegistryStore + ReadingStore + LedgerStore> Store for T {}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mongodb"))]
pub(crate) use written::{settled_or_conflict, unwritten_payment, unwritten_voiding};

/// What a database adapter (SQL or MongoDB) answers when a conditional
/// ledger write stored nothing.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mongodb"))]
mod written {
    use super::Result;
    use crate::error::StoreError;
    use microgrid_core::settlement::Settlement;

    /// The outcome of storing `settlement` when the insert stored nothing or
    /// hit the one-settlement-per-period constraint: `by_id` is what is
    /// stored under its id, `overlapping` a standing settlement overlapping
    /// its period (see [`LedgerStore::save_settlement`]).
    pub(crate) fn settled_or_conflict(
        settlement: &Settlement,
        by_id: Option<Settlement>,
        overlapping: Option<Settlement>,
    ) -> Result<Settlement> {
        match (by_id, overlapping) {
            (Some(stored), _) => match &stored.voided() {
                None => Ok(stored),
                Some(v) => Err(microgrid_core::Error::SettlementVoided {
                    id: stored.id().to_string(),
                    reason: v.reason.clone(),
                }
                .into()),
            },
            (None, Some(standing)) => Err(settlement.conflict_with(&standing).into()),
            (None, None) => Err(StoreError::Database {
                operation: "saving a settlement",
                message: format!(
                    "settlement {} was neither stored nor refused; try again",
                    settlement.id()
                ),
            }),
        }
    }

    /// Why a conditional payment write changed nothing, given what is stored
    /// (see [`LedgerStore::save_payment`]).
    pub(crate) fn unwritten_payment(stored: Option<Settlement>, paid: &Settlement) -> Result<()> {
        let mut stored = stored.ok_or_else(|| not_found(paid.id()))?;
        stored.mark_paid(&paid.paid_by().map(|t| t.to_string()).unwrap_or_default())?;
        Err(changed_meanwhile("marking a settlement paid", paid.id()))
    }

    /// Why a conditional voiding write changed nothing, given what is stored
    /// (see [`LedgerStore::save_voiding`]): voiding twice is no change.
    pub(crate) fn unwritten_voiding(stored: Option<Settlement>, voided: &Settlement) -> Result<()> {
        let stored = stored.ok_or_else(|| not_found(voided.id()))?;
        match (stored.paid_by(), stored.voided()) {
            (Some(txid), _) => Err(microgrid_core::Error::CannotVoidPaid {
                id: stored.id().to_string(),
                txid: txid.to_string(),
            }
            .into()),
            (None, Some(_)) => Ok(()),
            (None, None) => Err(changed_meanwhile("voiding a settlement", voided.id())),
        }
    }

    fn not_found(id: &str) -> StoreError {
        StoreError::NotFound {
            what: "settlement",
            key: id.to_owned(),
        }
    }

    fn changed_meanwhile(operation: &'static str, id: &str) -> StoreError {
        StoreError::Database {
            operation,
            message: format!("settlement {id} changed meanwhile; try again"),
        }
    }
}
