//! The pipeline on top of any store: register, record, clear, query, bill,
//! settle. Every stage reads what the previous one stored and writes its
//! own result.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use microgrid_core::batch::{IngestCounts, ReadingColumns, ReadingRow};
use microgrid_core::battery::{net_surplus_of_row, BatterySpec, BatteryStep};
use microgrid_core::billing::{BillingPart, PeriodBills, RowBilling};
use microgrid_core::settlement::{
    settle_with_policy, settle_with_wallet, ExchangeRate, NextIndices, OperatorWallet,
    PayoutPolicy, Settlement,
};
use microgrid_core::tariff::Tariff;
use microgrid_core::views::{AllocationColumns, SummaryColumns, TradeColumns};
use microgrid_core::{
    available_threads, clear_reading_rows, derive_trades, Allocation, ClearedRow, GridTariff,
    Network, PayoutAddress, PricingMechanism, Prosumer, ProsumerId, ProsumerIndex, Reading,
    ReadingLimits, Registry, TimeRange, Timeframe, TimeframeClearing, TimeframeLength,
    TimeframeSummary, Trade,
};

use crate::error::{Result, StoreError};
use crate::traits::Store;

/// Later than any period's end (9999-12-31 23:59:59 UTC), in range for
/// every store's date type (BSON dates among them).
const END_OF_TIME: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(t) => t,
    None => DateTime::<Utc>::UNIX_EPOCH,
};

/// What recording a batch of readings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// New readings stored.
    pub inserted: usize,
    /// Readings that corrected a stored one (of a timeframe not yet cleared).
    pub replaced: usize,
    /// Readings already stored with the same values.
    pub unchanged: usize,
}

impl From<IngestCounts> for IngestReport {
    fn from(c: IngestCounts) -> IngestReport {
        IngestReport {
            inserted: c.inserted,
            replaced: c.replaced,
            unchanged: c.unchanged,
        }
    }
}

/// What clearing a range did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearReport {
    /// Timeframes cleared and stored now.
    pub cleared: usize,
    /// Timeframes that were cleared before (left as they were).
    pub already_cleared: usize,
}

/// How many readings (timeframes × prosumers) one step of clearing holds
/// at a time: a month of a large community is cleared in chunks of
/// timeframes so that stores that load rows from a database stay bounded.
const CELLS_PER_CHUNK: usize = 8 << 20;

/// Where a grid reads the time: the system clock, or one a test or a
/// replay injects.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// A microgrid's books on a store `S`.
///
/// The grid keeps the registry it loaded (prosumer ids interned once, as
/// dense indices), so registering is cheap and readings move as columns.
/// Registrations made through another `Grid` on the same database are
/// picked up by [`Grid::refresh_registry`], and automatically when a
/// reading names an id this grid does not know yet.
#[derive(Debug, Clone)]
pub struct Grid<S> {
    store: S,
    length: TimeframeLength,
    limits: ReadingLimits,
    threads: usize,
    clock: Clock,
    registry: Arc<Mutex<Option<Arc<Registry>>>>,
    battery: Option<Arc<BatterySpec>>,
    /// Held while a settlement with a wallet reads its next indices and
    /// is stored, so two of them through this grid (or its clones) do not
    /// race for the same indices (across processes the store refuses the
    /// second, and the grid settles again).
    wallet_settling: Arc<tokio::sync::Mutex<()>>,
}

impl<S: Store> Grid<S> {
    /// A grid of `length` timeframes on `store`, with default reading
    /// limits, clearing and billing on every core.
    pub fn new(store: S, length: TimeframeLength) -> Grid<S> {
        Grid {
            store,
            length,
            limits: ReadingLimits::default(),
            threads: available_threads(),
            clock: Clock::system(),
            registry: Arc::default(),
            battery: None,
            wallet_settling: Arc::default(),
        }
    }

    /// The same grid with other plausibility limits for readings.
    pub fn with_limits(mut self, limits: ReadingLimits) -> Grid<S> {
        self.limits = limits;
        self
    }

    /// The same grid clearing and billing on at most `threads` threads.
    pub fn with_threads(mut self, threads: usize) -> Grid<S> {
        self.threads = threads.max(1);
        self
    }

    /// The same grid reading the time from `clock` (clearing refuses
    /// timeframes that have not ended by it).
    pub fn with_clock(mut self, clock: Clock) -> Grid<S> {
        self.clock = clock;
        self
    }

    /// The same grid with a community battery taking part in clearing
    /// ([`microgrid_core::battery`]): [`Grid::clear`] then computes the
    /// battery's readings by its dispatch rule before clearing each
    /// timeframe, and [`Grid::battery_states`] shows its state of charge.
    /// The battery must be registered (kind
    /// [`microgrid_core::ProsumerKind::Battery`], see
    /// [`BatterySpec::prosumer`]); its state of charge is
    /// [`BatterySpec::initial_soc`] at midnight UTC of the day it joined.
    ///
    /// The specification is not stored: give the same one each time the
    /// grid is opened. Its state of charge is recomputed from its stored
    /// readings, so a battery's timeframes are cleared in time order:
    /// clearing refuses ([`microgrid_core::Error::BatteryHistory`]) a range
    /// whose first open timeframe (from the battery's joining on) follows
    /// one that is not cleared, or precedes one that is. Nothing is
    /// recomputed silently.
    ///
    /// The battery's readings are the dispatch rule's: one recorded for it
    /// in an open timeframe is replaced when that timeframe is cleared.
    /// A grid without the specification refuses to clear a range in which
    /// a registered battery is active
    /// ([`microgrid_core::Error::BatteryHistory`]), so a forgotten
    /// `with_battery` cannot leave the battery idle unnoticed.
    pub fn with_battery(mut self, battery: BatterySpec) -> Grid<S> {
        self.battery = Some(Arc::new(battery));
        self
    }

    /// The community battery, if the grid has one.
    pub fn battery(&self) -> Option<&BatterySpec> {
        self.battery.as_deref()
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The timeframe length.
    pub fn length(&self) -> TimeframeLength {
        self.length
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Arc<Registry>>> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The registry, loaded from the store the first time.
    pub async fn shared_registry(&self) -> Result<Arc<Registry>> {
        if let Some(r) = self.cache().as_ref() {
            return Ok(r.clone());
        }
        self.refresh_registry().await
    }

    /// Loads the registry from the store again (for registrations made
    /// elsewhere).
    pub async fn refresh_registry(&self) -> Result<Arc<Registry>> {
        let loaded = Arc::new(self.store.registry().await?);
        *self.cache() = Some(loaded.clone());
        Ok(loaded)
    }

    /// Registers a new prosumer and returns its dense index; an error if
    /// its id is taken.
    pub async fn register(&self, prosumer: Prosumer) -> Result<ProsumerIndex> {
        let id = prosumer.id().clone();
        self.register_all(vec![prosumer]).await?;
        Ok(self.shared_registry().await?.index_of(&id)?)
    }

    /// Registers many prosumers at once, all or none: an id that is taken
    /// (or repeated in `batch`) rejects the whole batch.
    pub async fn register_all(&self, batch: Vec<Prosumer>) -> Result<()> {
        let mut registry = (*self.shared_registry().await?).clone();
        registry.register_all(batch.iter().cloned())?;
        match self.store.insert_prosumers(&batch).await {
            Ok(()) => {
                *self.cache() = Some(Arc::new(registry));
                Ok(())
            }
            Err(e) => {
                // Someone else may have registered meanwhile: start afresh.
                *self.cache() = None;
                Err(e)
            }
        }
    }

    /// Replaces the record of a registered prosumer.
    pub async fn update(&self, prosumer: Prosumer) -> Result<()> {
        let mut registry = (*self.shared_registry().await?).clone();
        registry.update(prosumer.clone())?;
        self.store.save_prosumer(&prosumer).await?;
        *self.cache() = Some(Arc::new(registry));
        Ok(())
    }

    /// Every registered prosumer.
    pub async fn registry(&self) -> Result<Registry> {
        Ok((*self.shared_registry().await?).clone())
    }

    /// Records a batch of readings: validated whole against the registry
    /// (see [`microgrid_core::validate_batch`]), then written atomically.
    /// Re-sending a reading changes nothing; a different value for a
    /// cleared timeframe, or a new reading for one, rejects the batch;
    /// nothing of a rejected batch is stored.
    pub async fn record(&self, batch: Vec<Reading>) -> Result<IngestReport> {
        if let Some(r) = batch.iter().find(|r| r.timeframe().length() != self.length) {
            return Err(microgrid_core::Error::MixedTimeframeLength {
                id: r.prosumer().to_string(),
                start: r.timeframe().start(),
                expected: self.length.minutes(),
                found: r.timeframe().length().minutes(),
            }
            .into());
        }
        let mut registry = self.shared_registry().await?;
        if batch
            .iter()
            .any(|r| registry.index_of(r.prosumer()).is_err())
        {
            registry = self.refresh_registry().await?;
        }
        let columns = ReadingColumns::from_readings(&registry, &batch)?;
        drop(batch);
        self.record_columns_with(columns, &registry, self.limits)
            .await
    }

    /// Records a batch given as columns (prosumers by their dense index in
    /// [`Grid::shared_registry`]), with the rules of [`Grid::record`]:
    /// validated in one pass, then ingested by the store in one call.
    pub async fn record_columns(&self, columns: ReadingColumns) -> Result<IngestReport> {
        let registry = self.shared_registry().await?;
        self.record_columns_with(columns, &registry, self.limits)
            .await
    }

    /// Records the battery's dispatched readings. They are bounded by the
    /// battery's own power limits (checked when its [`BatterySpec`] was
    /// made), which for a community's battery may exceed the plausibility
    /// limit of one meter: a 10,000-household battery of 2.5 kW each
    /// charges at 25 MW.
    async fn record_battery(
        &self,
        spec: &BatterySpec,
        readings: &[Reading],
        registry: &Registry,
    ) -> Result<IngestReport> {
        let limits = ReadingLimits {
            max_power_w: self
                .limits
                .max_power_w
                .max(spec.max_charge_w())
                .max(spec.max_discharge_w()),
        };
        let columns = ReadingColumns::from_readings(registry, readings)?;
        self.record_columns_with(columns, registry, limits).await
    }

    async fn record_columns_with(
        &self,
        columns: ReadingColumns,
        registry: &Registry,
        limits: ReadingLimits,
    ) -> Result<IngestReport> {
        let batch = columns.validate(registry, self.length, limits)?;
        let Some(span) = batch.try_span() else {
            return Ok(IngestReport::default());
        };
        let cleared = self.store.cleared(&span).await?;
        Ok(self.store.ingest(&batch, registry, &cleared).await?.into())
    }

    /// Clears every timeframe of `range` not cleared yet, from the stored
    /// readings, and stores the results: the columnar kernel on every
    /// core, a chunk of timeframes at a time, one store call per chunk.
    /// Clearing twice stores one result. A range that has not ended by the
    /// grid's clock is refused ([`microgrid_core::Error::TimeframeNotEnded`]).
    pub async fn clear(
        &self,
        range: &TimeRange,
        tariff: &(dyn GridTariff + Sync),
        mechanism: &dyn PricingMechanism,
    ) -> Result<ClearReport> {
        let now = self.clock.now();
        if range.end() > now {
            let open = range
                .timeframes()
                .find(|tf| tf.end() > now)
                .map_or(range.start(), |tf| tf.start());
            return Err(microgrid_core::Error::TimeframeNotEnded { start: open, now }.into());
        }
        if let Some(battery) = self.battery.clone() {
            return self
                .clear_with_battery(range, tariff, mechanism, &battery)
                .await;
        }
        self.no_battery_unaccounted(range).await?;
        self.clear_ended(range, tariff, mechanism).await
    }

    /// Refuses `range` when a battery is registered and active in it but
    /// this grid has no [`BatterySpec`]: its dispatch would be skipped.
    async fn no_battery_unaccounted(&self, range: &TimeRange) -> Result<()> {
        let registry = self.shared_registry().await?;
        let unaccounted = registry.iter().find_map(|p| {
            if p.kind() != microgrid_core::ProsumerKind::Battery {
                return None;
            }
            range
                .timeframes()
                .find(|tf| p.is_active_in(tf))
                .map(|tf| (p, tf))
        });
        match unaccounted {
            None => Ok(()),
            Some((battery, tf)) => Err(microgrid_core::Error::BatteryHistory {
                id: battery.id().to_string(),
                start: tf.start(),
                reason: "it is a registered battery, and this grid has no specification of it \
                         (Grid::with_battery): clearing without one would leave it idle"
                    .into(),
            }
            .into()),
        }
    }

    /// [`Grid::clear`] of a range that has ended, without a battery.
    async fn clear_ended(
        &self,
        range: &TimeRange,
        tariff: &(dyn GridTariff + Sync),
        mechanism: &dyn PricingMechanism,
    ) -> Result<ClearReport> {
        let registry = self.shared_registry().await?;
        let order = registry.id_order();
        let threads = self.threads;
        let compute = |todo: &[(Timeframe, &ReadingRow)]| {
            clear_reading_rows(todo, &order, tariff, mechanism, threads)
        };
        let mut report = ClearReport::default();
        for chunk in chunks(range, registry.len())? {
            let counts = self.store.clear_with(&chunk, &registry, &compute).await?;
            report.cleared += counts.cleared;
            report.already_cleared += counts.already_cleared;
        }
        Ok(report)
    }

    /// [`Grid::clear`] with the battery: the part of `range` before the
    /// battery joined is cleared as usual; from then on, a chunk at a
    /// time, the battery's readings are dispatched from the stored readings
    /// of the other members, recorded, and cleared with them (checked again
    /// inside the store's clearing step, so a reading changed meanwhile is
    /// refused rather than cleared with a stale dispatch).
    async fn clear_with_battery(
        &self,
        range: &TimeRange,
        tariff: &(dyn GridTariff + Sync),
        mechanism: &dyn PricingMechanism,
        spec: &BatterySpec,
    ) -> Result<ClearReport> {
        let (registry, b, joined) = self.battery_member(spec).await?;
        let length = self.length;
        let mut report = ClearReport::default();
        let from = range.start().max(joined);
        if range.start() < from {
            // Before the battery joined: an ordinary clearing.
            let before = TimeRange::new(range.start(), from.min(range.end()), length)?;
            let r = self.clear_ended(&before, tariff, mechanism).await?;
            report.cleared += r.cleared;
            report.already_cleared += r.already_cleared;
        }
        if from >= range.end() {
            return Ok(report);
        }
        let part = TimeRange::new(from, range.end(), length)?;
        let done = self.store.cleared(&part).await?;
        let Some(first_open) = part.timeframes().find(|tf| !done.contains(&tf.start())) else {
            report.already_cleared += part.len();
            return Ok(report);
        };
        let history = |reason: String| -> StoreError {
            microgrid_core::Error::BatteryHistory {
                id: spec.id().to_string(),
                start: first_open.start(),
                reason,
            }
            .into()
        };
        // Everything of the battery before the first open timeframe is
        // cleared, and nothing after it.
        let mut soc = spec.initial_soc();
        if joined < first_open.start() {
            let before = TimeRange::new(joined, first_open.start(), length)?;
            let cleared = self.store.cleared(&before).await?;
            if let Some(gap) = before
                .timeframes()
                .find(|tf| !cleared.contains(&tf.start()))
            {
                return Err(history(format!(
                    "the earlier timeframe starting {} is not cleared: a battery's \
                     timeframes are cleared in time order",
                    gap.start()
                )));
            }
            for step in self.replay_battery(spec, &before, soc).await? {
                soc = step.soc_end;
            }
        }
        let horizon = Timeframe::containing(self.clock.now(), length)
            .start()
            .max(range.end());
        if first_open.start() < horizon {
            let after = TimeRange::new(first_open.start(), horizon, length)?;
            if let Some(later) = self.store.cleared(&after).await?.into_iter().next() {
                return Err(history(format!(
                    "the later timeframe starting {later} is cleared already: a \
                     battery's timeframes are cleared in time order"
                )));
            }
        }
        // The timeframes of `part` before the first open one are cleared.
        report.already_cleared +=
            ((first_open.start() - from).num_seconds() / length.seconds()) as usize;
        let open = TimeRange::new(first_open.start(), range.end(), length)?;
        let battery = registry.by_index()[b].clone();
        let order = registry.id_order();
        let threads = self.threads;
        for chunk in chunks(&open, registry.len())? {
            let rows = self.store.reading_rows(&chunk, &registry).await?;
            let mut readings = Vec::new();
            let mut chunk_soc = soc;
            for (tf, row) in chunk.timeframes().zip(&rows) {
                if battery.is_active_in(&tf) {
                    let step = spec.step(tf, chunk_soc, net_surplus_of_row(row, Some(b)))?;
                    readings.push(step.reading(spec.id())?);
                    chunk_soc = step.soc_end;
                }
            }
            if !readings.is_empty() {
                self.record_battery(spec, &readings, &registry).await?;
            }
            let start_soc = soc;
            let compute = |todo: &[(Timeframe, &ReadingRow)]| {
                check_battery_rows(spec, &battery, b, &chunk, start_soc, todo)?;
                clear_reading_rows(todo, &order, tariff, mechanism, threads)
            };
            let counts = self.store.clear_with(&chunk, &registry, &compute).await?;
            report.cleared += counts.cleared;
            report.already_cleared += counts.already_cleared;
            soc = chunk_soc;
        }
        Ok(report)
    }

    /// The registry, the battery's dense index and the instant it joined;
    /// an error if it is not registered as a battery, or its owner is not
    /// registered.
    async fn battery_member(
        &self,
        spec: &BatterySpec,
    ) -> Result<(Arc<Registry>, usize, DateTime<Utc>)> {
        let mut registry = self.shared_registry().await?;
        if registry.find(spec.id().as_str()).is_none() {
            registry = self.refresh_registry().await?;
        }
        let b = registry.index_of(spec.id())?.get();
        let p = &registry.by_index()[b];
        if p.kind() != microgrid_core::ProsumerKind::Battery {
            return Err(microgrid_core::Error::InvalidBattery {
                id: spec.id().to_string(),
                input: "id",
                reason: format!("is registered as a {} prosumer, not as a battery", p.kind()),
            }
            .into());
        }
        if let microgrid_core::BatteryOwner::Member(owner) = spec.owner() {
            registry.index_of(owner)?;
        }
        let joined = p.joined().and_time(chrono::NaiveTime::MIN).and_utc();
        Ok((registry, b, joined))
    }

    /// The battery's steps in `range`, replayed from its stored
    /// allocations from `soc` (timeframes without one are idle).
    async fn replay_battery(
        &self,
        spec: &BatterySpec,
        range: &TimeRange,
        soc: microgrid_core::Wh,
    ) -> Result<Vec<BatteryStep>> {
        let mut soc = soc;
        let mut steps = Vec::new();
        for a in self.store.allocations(range, Some(spec.id())).await? {
            let step = spec.replay(a.timeframe, soc, a.consumed, a.produced)?;
            soc = step.soc_end;
            steps.push(step);
        }
        Ok(steps)
    }

    /// The community battery per cleared timeframe of `range` in which it
    /// has a reading: its state of charge at the start and the end, and
    /// what it charged, stored, lost and discharged. Recomputed from its
    /// stored readings since it joined (see [`Grid::with_battery`]); an
    /// error if the grid has no battery, or a stored reading does not fit
    /// its specification ([`microgrid_core::Error::BatteryHistory`]).
    pub async fn battery_states(&self, range: &TimeRange) -> Result<Vec<BatteryStep>> {
        let Some(spec) = self.battery.clone() else {
            return Err(StoreError::NotFound {
                what: "battery",
                key: "this grid has no battery (Grid::with_battery)".into(),
            });
        };
        let (_, _, joined) = self.battery_member(&spec).await?;
        if joined >= range.end() {
            return Ok(Vec::new());
        }
        let mut soc = spec.initial_soc();
        if joined < range.start() {
            let before = TimeRange::new(joined, range.start(), self.length)?;
            if let Some(last) = self.replay_battery(&spec, &before, soc).await?.last() {
                soc = last.soc_end;
            }
        }
        let within = TimeRange::new(range.start().max(joined), range.end(), self.length)?;
        self.replay_battery(&spec, &within, soc).await
    }

    /// The grid as a whole per cleared timeframe ("smart grid info").
    pub async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        self.store.summaries(range).await
    }

    /// The cleared timeframes of `range` as columns, with the registry
    /// that gives their indices.
    pub async fn cleared_rows(&self, range: &TimeRange) -> Result<ClearedRows> {
        let registry = self.shared_registry().await?;
        let rows = self.store.cleared_rows(range, &registry).await?;
        Ok(ClearedRows { registry, rows })
    }

    /// The grid view of `range` as columns.
    pub async fn summary_columns(&self, range: &TimeRange) -> Result<SummaryColumns> {
        let cleared = self.cleared_rows(range).await?;
        Ok(SummaryColumns::from_rows(&cleared.pairs())?)
    }

    /// The prosumer view of `range` as columns, of the prosumers `only` or
    /// of everyone; prosumers as indices into the returned registry.
    pub async fn allocation_columns(
        &self,
        range: &TimeRange,
        only: Option<&[ProsumerId]>,
    ) -> Result<(AllocationColumns, Arc<Registry>)> {
        let cleared = self.cleared_rows(range).await?;
        let only = only
            .map(|ids| {
                ids.iter()
                    .map(|id| Ok(cleared.registry.index_of(id)?.as_u32()))
                    .collect::<Result<Vec<u32>>>()
            })
            .transpose()?;
        let columns =
            AllocationColumns::from_rows(&cleared.pairs(), &cleared.registry, only.as_deref());
        Ok((columns, cleared.registry))
    }

    /// The trader view of `range` as columns, of one prosumer or all;
    /// prosumers as indices into the returned registry.
    pub async fn trade_columns(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<(TradeColumns, Arc<Registry>)> {
        let cleared = self.cleared_rows(range).await?;
        let only = prosumer
            .map(|id| cleared.registry.index_of(id).map(|i| i.as_u32()))
            .transpose()?;
        let columns = TradeColumns::from_rows(&cleared.pairs(), &cleared.registry, only);
        Ok((columns, cleared.registry))
    }

    /// One prosumer per cleared timeframe ("prosumer info").
    pub async fn prosumer(&self, id: &ProsumerId, range: &TimeRange) -> Result<Vec<Allocation>> {
        let cleared = self.cleared_rows(range).await?;
        let i = cleared.registry.index_of(id)?.get();
        Ok(cleared
            .rows
            .iter()
            .filter_map(|(readings, c)| c.allocation(readings, &cleared.registry, i))
            .collect())
    }

    /// The cleared timeframes of `range` with their allocations.
    pub async fn clearings(&self, range: &TimeRange) -> Result<Vec<TimeframeClearing>> {
        let cleared = self.cleared_rows(range).await?;
        let order = cleared.registry.id_order();
        Ok(cleared
            .rows
            .iter()
            .map(|(readings, c)| TimeframeClearing {
                summary: c.summary.clone(),
                allocations: order
                    .iter()
                    .filter_map(|&i| c.allocation(readings, &cleared.registry, i as usize))
                    .collect(),
            })
            .collect())
    }

    /// The bilateral trades of `range` ("trader info"), of one prosumer or
    /// all. Trades are derived from the stored allocations by the core's
    /// deterministic rule, so they are the same every time.
    pub async fn trades(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Trade>> {
        Ok(self
            .clearings(range)
            .await?
            .iter()
            .flat_map(|c| derive_trades(&c.summary, &c.allocations))
            .filter(|t| prosumer.is_none_or(|p| &t.seller == p || &t.buyer == p))
            .collect())
    }

    /// Bills `period` from the stored clearings, in columns, a chunk of
    /// timeframes at a time; an error if a timeframe of it is not cleared.
    pub async fn bill(&self, period: &TimeRange, tariff: &Tariff) -> Result<PeriodBills> {
        let registry = self.shared_registry().await?;
        let mut billing = RowBilling::new(period, tariff, &registry, self.threads)?;
        for chunk in chunks(period, registry.len())? {
            let rows = self.store.cleared_rows(&chunk, &registry).await?;
            let pairs: Vec<(&ReadingRow, &ClearedRow)> =
                rows.iter().map(|(r, c)| (r.as_ref(), c.as_ref())).collect();
            billing.add(&pairs)?;
        }
        Ok(billing.finish()?)
    }

    /// The billing sums of `range`, a part of a longer billing period, as
    /// [`Grid::bill`] makes them but not finished: [`BillingPart::merge`]
    /// it with the parts of the rest of the period (billed by other grids
    /// with the same registry, on other machines, say) and
    /// [`Grid::bill_parts`] the whole. An error if a timeframe of `range`
    /// is not cleared.
    pub async fn bill_part(&self, range: &TimeRange, tariff: &Tariff) -> Result<BillingPart> {
        let registry = self.shared_registry().await?;
        let mut billing = RowBilling::new(range, tariff, &registry, self.threads)?;
        for chunk in chunks(range, registry.len())? {
            let rows = self.store.cleared_rows(&chunk, &registry).await?;
            let pairs: Vec<(&ReadingRow, &ClearedRow)> =
                rows.iter().map(|(r, c)| (r.as_ref(), c.as_ref())).collect();
            billing.add(&pairs)?;
        }
        Ok(billing.into_part()?)
    }

    /// The bills of the period the `parts` cover together (in any order,
    /// without gaps or overlaps: see [`BillingPart::merge_all`]), with this
    /// grid's registry, which must be the one the parts were made with.
    /// Equal to [`Grid::bill`] of the period on one grid holding all of it.
    pub async fn bill_parts(
        &self,
        parts: Vec<BillingPart>,
        tariff: &Tariff,
    ) -> Result<PeriodBills> {
        let registry = self.shared_registry().await?;
        Ok(BillingPart::merge_all(parts)?.finish(tariff, &registry)?)
    }

    /// Bills and settles `period`, carrying in the balances of the last
    /// standing settlement before it, and stores the settlement. A period
    /// is settled once (the store enforces it): settling it again with the
    /// same inputs returns the stored settlement; a period that overlaps a
    /// standing settlement made with other inputs (another rate, say) is
    /// [`microgrid_core::Error::SettlementConflict`] naming it and what
    /// differs. To replace a settlement, void it first
    /// ([`Grid::void_settlement`]).
    pub async fn settle(
        &self,
        period: &TimeRange,
        tariff: &Tariff,
        rate: &ExchangeRate,
        network: Network,
        operator: &PayoutAddress,
    ) -> Result<Settlement> {
        let bills = self.bill(period, tariff).await?;
        self.settle_bills(&bills, rate, network, operator).await
    }

    /// [`Grid::settle`] with a payout policy: a balance due to a member
    /// below the policy's minimum payout is carried forward to the next
    /// settlement instead of paid ([`PayoutPolicy::with_minimum_payout`]).
    /// The minimum changes who is paid, and so the settlement's id.
    pub async fn settle_with_policy(
        &self,
        period: &TimeRange,
        tariff: &Tariff,
        rate: &ExchangeRate,
        network: Network,
        operator: &PayoutAddress,
        policy: &PayoutPolicy,
    ) -> Result<Settlement> {
        let bills = self.bill(period, tariff).await?;
        self.settle_bills_with_policy(&bills, rate, network, operator, policy)
            .await
    }

    /// Settles bills made elsewhere (say, [`Grid::bill_parts`] of parts
    /// billed on other machines) as [`Grid::settle`] settles its own:
    /// carrying in the balances of the last standing settlement before
    /// the bills' period, with this grid's registry, stored once. The same
    /// bills give the same settlement, content hash included.
    pub async fn settle_bills(
        &self,
        bills: &PeriodBills,
        rate: &ExchangeRate,
        network: Network,
        operator: &PayoutAddress,
    ) -> Result<Settlement> {
        self.settle_bills_with_policy(bills, rate, network, operator, &PayoutPolicy::default())
            .await
    }

    /// [`Grid::settle_bills`] with a payout policy (see
    /// [`Grid::settle_with_policy`]).
    pub async fn settle_bills_with_policy(
        &self,
        bills: &PeriodBills,
        rate: &ExchangeRate,
        network: Network,
        operator: &PayoutAddress,
        policy: &PayoutPolicy,
    ) -> Result<Settlement> {
        let period = &bills.period;
        let registry = self.shared_registry().await?;
        let carried = self
            .store
            .last_settlement(period.start())
            .await?
            .map(|s| s.carried_out())
            .unwrap_or_default();
        let settlement =
            settle_with_policy(bills, &registry, rate, network, operator, &carried, policy)?;
        self.store.save_settlement(&settlement).await
    }

    /// The next unused receive and change indices of the operator's
    /// `wallet`: one past the highest used by the settlements stored for
    /// it ([`NextIndices::after`] over each): the chain of standing
    /// settlements through [`LedgerStore::last_settlement`] (from the last
    /// one back, period by period) and every voided one through
    /// [`LedgerStore::voided_settlements`], so an address handed out by a
    /// settlement that was later voided is not handed out again.
    ///
    /// [`LedgerStore::last_settlement`]: crate::LedgerStore::last_settlement
    /// [`LedgerStore::voided_settlements`]: crate::LedgerStore::voided_settlements
    pub async fn next_wallet_indices(&self, wallet: &OperatorWallet) -> Result<NextIndices> {
        let id = wallet.id();
        let mut next = NextIndices::default();
        let mut before = END_OF_TIME;
        while let Some(s) = self.store.last_settlement(before).await? {
            next = next.after(&s, &id);
            if s.period().start() >= before {
                break;
            }
            before = s.period().start();
        }
        for s in self.store.voided_settlements().await? {
            next = next.after(&s, &id);
        }
        Ok(next)
    }

    /// The indices a settlement of `period` with `wallet` starts from: the
    /// first indices of the standing settlement of an overlapping period
    /// made with it (so that settling again with the same inputs gives
    /// the same settlement), else [`Grid::next_wallet_indices`].
    async fn wallet_indices_for(
        &self,
        wallet: &OperatorWallet,
        period: &TimeRange,
    ) -> Result<NextIndices> {
        let id = wallet.id();
        let mut next = NextIndices::default();
        let mut before = END_OF_TIME;
        while let Some(s) = self.store.last_settlement(before).await? {
            next = next.after(&s, &id);
            let overlaps = s.period().start() < period.end() && period.start() < s.period().end();
            match &s.wallet() {
                Some(r) if overlaps && r.wallet == id => {
                    return Ok(NextIndices {
                        receive: r.first_index,
                        change: r.first_change_index,
                    })
                }
                _ => {}
            }
            if s.period().start() >= before {
                break;
            }
            before = s.period().start();
        }
        for s in self.store.voided_settlements().await? {
            next = next.after(&s, &id);
        }
        Ok(next)
    }

    /// [`Grid::settle_with_policy`] with the operator's descriptor wallet
    /// instead of one address: each member who owes gets an invoice to an
    /// address of its own at the wallet's next unused receive index
    /// ([`Grid::next_wallet_indices`]), recorded in the settlement, which
    /// is stored like any other. The network is the wallet's. Settling the
    /// same period again with the same inputs starts from the indices of
    /// the standing settlement and so returns it. The replacement of a
    /// voided settlement starts past the indices the voided one used.
    /// Two processes settling with the same wallet at once never give one
    /// address twice: the store refuses the second settlement
    /// ([`StoreError::WalletAddressTaken`]), and the grid reads the
    /// indices again and settles again (a few times before it returns the
    /// error). Through one grid (and its clones) they are made one at a
    /// time.
    pub async fn settle_with_wallet(
        &self,
        period: &TimeRange,
        tariff: &Tariff,
        rate: &ExchangeRate,
        wallet: &OperatorWallet,
        policy: &PayoutPolicy,
    ) -> Result<Settlement> {
        let bills = self.bill(period, tariff).await?;
        self.settle_bills_with_wallet(&bills, rate, wallet, policy)
            .await
    }

    /// [`Grid::settle_with_wallet`] of bills made elsewhere.
    pub async fn settle_bills_with_wallet(
        &self,
        bills: &PeriodBills,
        rate: &ExchangeRate,
        wallet: &OperatorWallet,
        policy: &PayoutPolicy,
    ) -> Result<Settlement> {
        self.settle_bills_with_wallet_from(bills, rate, wallet, policy, NextIndices::default())
            .await
    }

    /// [`Grid::settle_bills_with_wallet`] from at least `floor`: the
    /// indices used are the larger of `floor` and the stored settlements'
    /// next ones (for a wallet also used outside this grid).
    ///
    /// The store refuses a settlement giving out an index another stored
    /// settlement gave ([`StoreError::WalletAddressTaken`]), in the write
    /// that stores it: when another process settled with the same wallet
    /// between reading the next indices and storing, the indices are read
    /// again and the settlement made again, at most 5 times in all; the
    /// last refusal is returned.
    pub async fn settle_bills_with_wallet_from(
        &self,
        bills: &PeriodBills,
        rate: &ExchangeRate,
        wallet: &OperatorWallet,
        policy: &PayoutPolicy,
        floor: NextIndices,
    ) -> Result<Settlement> {
        const ATTEMPTS: u32 = 5;
        let _one_at_a_time = self.wallet_settling.lock().await;
        let mut attempt = 1;
        loop {
            let stored = self.wallet_indices_for(wallet, &bills.period).await?;
            let next = NextIndices {
                receive: stored.receive.max(floor.receive),
                change: stored.change.max(floor.change),
            };
            let registry = self.shared_registry().await?;
            let carried = self
                .store
                .last_settlement(bills.period.start())
                .await?
                .map(|s| s.carried_out())
                .unwrap_or_default();
            let settlement =
                settle_with_wallet(bills, &registry, rate, wallet, next, &carried, policy)?;
            match self.store.save_settlement(&settlement).await {
                Err(StoreError::WalletAddressTaken { .. }) if attempt < ATTEMPTS => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The stored settlement with `id`.
    pub async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        self.store.settlement(id).await
    }

    /// Records the transaction that paid settlement `id`, once: the same
    /// txid again changes nothing, another one is
    /// [`microgrid_core::Error::AlreadyPaid`], a voided settlement
    /// [`microgrid_core::Error::SettlementVoided`]. The store checks it in
    /// the same write, so of two concurrent payments one stands.
    pub async fn mark_paid(&self, id: &str, txid: &str) -> Result<Settlement> {
        let mut settlement = self.stored_settlement(id).await?;
        settlement.mark_paid(txid)?;
        self.store.save_payment(&settlement).await?;
        Ok(settlement)
    }

    /// Voids settlement `id`, which must not be paid
    /// ([`microgrid_core::Error::CannotVoidPaid`]), so that its period can
    /// be settled again (at a corrected rate, say). The voided settlement
    /// stays stored with its reason and time (by the grid's clock); it pays
    /// and carries nothing. Voiding twice changes nothing.
    pub async fn void_settlement(&self, id: &str, reason: &str) -> Result<Settlement> {
        let mut settlement = self.stored_settlement(id).await?;
        settlement.void(reason, self.clock.now())?;
        self.store.save_voiding(&settlement).await?;
        self.stored_settlement(id).await
    }

    async fn stored_settlement(&self, id: &str) -> Result<Settlement> {
        self.store
            .settlement(id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "settlement",
                key: id.to_owned(),
            })
    }
}

/// Cleared timeframes as columns, with the registry whose indices they use.
#[derive(Debug, Clone)]
pub struct ClearedRows {
    /// The registry the rows are laid out by.
    pub registry: Arc<Registry>,
    /// Per cleared timeframe, in time order: its readings and its result.
    pub rows: Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>,
}

impl ClearedRows {
    /// The rows as borrowed pairs, as the core's columnar functions take them.
    pub fn pairs(&self) -> Vec<(&ReadingRow, &ClearedRow)> {
        self.rows
            .iter()
            .map(|(r, c)| (r.as_ref(), c.as_ref()))
            .collect()
    }
}

/// Checks, inside the store's clearing step, that the rows about to be
/// cleared are the consecutive timeframes of `chunk` and hold the
/// battery's readings its dispatch rule gives from `soc` (a reading
/// corrected after the dispatch would otherwise be cleared with a stale
/// one).
fn check_battery_rows(
    spec: &BatterySpec,
    battery: &Prosumer,
    b: usize,
    chunk: &TimeRange,
    soc: microgrid_core::Wh,
    todo: &[(Timeframe, &ReadingRow)],
) -> microgrid_core::Result<()> {
    let mut soc = soc;
    let mut expected = chunk.timeframes();
    for (tf, row) in todo {
        let stale = |reason: &str| microgrid_core::Error::BatteryHistory {
            id: spec.id().to_string(),
            start: tf.start(),
            reason: reason.to_owned(),
        };
        if expected.next() != Some(*tf) {
            return Err(stale(
                "an earlier timeframe was cleared meanwhile by another grid; clear again",
            ));
        }
        if battery.is_active_in(tf) {
            let step = spec.step(*tf, soc, net_surplus_of_row(row, Some(b)))?;
            if row.get(b) != Some((step.discharged, step.charged)) {
                return Err(stale(
                    "a reading changed after the battery was dispatched; clear again",
                ));
            }
            soc = step.soc_end;
        }
    }
    Ok(())
}

/// `range` cut into consecutive ranges of about [`CELLS_PER_CHUNK`]
/// readings for `prosumers` prosumers (whole days where possible).
fn chunks(range: &TimeRange, prosumers: usize) -> Result<Vec<TimeRange>> {
    let per_day = range.length().per_day() as usize;
    let mut len = (CELLS_PER_CHUNK / prosumers.max(1)).max(1);
    if len >= per_day {
        len -= len % per_day;
    }
    let step = range.length().duration() * i32::try_from(len).unwrap_or(i32::MAX);
    let mut out = Vec::new();
    let mut start = range.start();
    while start < range.end() {
        let end = (start + step).min(range.end());
        out.push(TimeRange::new(start, end, range.length())?);
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use chrono::{Duration, NaiveDate};
    use microgrid_core::simulate::Community;
    use microgrid_core::{GridPrices, Mechanism};
    use rust_decimal::Decimal;

    /// A grid with a battery clears a period in two steps as in one and as
    /// the core's row path does; out of order is refused; the battery's
    /// states chain and it has its own bill.
    #[tokio::test]
    async fn a_battery_clears_in_time_order_like_the_core() {
        use microgrid_core::battery::clear_range_with_battery;
        use microgrid_core::BatteryTotals;
        let community = Community::new(9, NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), 3, 11);
        let period = community.range().unwrap();
        let spec = BatterySpec::new(
            "battery",
            20_000,
            8_000,
            6_000,
            "0.9".parse().unwrap(),
            3_000,
        )
        .unwrap();
        let tariff = Tariff::new(
            "EUR".parse().unwrap(),
            GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap()).unwrap(),
        );
        let mut members: Vec<Prosumer> = community.registry().unwrap().iter().cloned().collect();
        members.push(
            spec.prosumer("Battery", NaiveDate::from_ymd_opt(2026, 6, 1).unwrap())
                .unwrap(),
        );
        let readings = community.readings().unwrap();
        let mechanism = Mechanism::SupplyDemandRatio;
        let grid = || async {
            let g = Grid::new(MemoryStore::new(), period.length()).with_battery(spec.clone());
            g.register_all(members.clone()).await.unwrap();
            g.record(readings.clone()).await.unwrap();
            g
        };
        let whole = grid().await;
        whole.clear(&period, &tariff, &mechanism).await.unwrap();
        let (expected, steps) = clear_range_with_battery(
            &period,
            &readings,
            &tariff,
            &mechanism,
            &spec,
            spec.initial_soc(),
        )
        .unwrap();
        assert_eq!(whole.clearings(&period).await.unwrap(), expected);
        assert_eq!(whole.battery_states(&period).await.unwrap(), steps);
        let t = BatteryTotals::of(&steps);
        assert!(t.charged.get() > 0 && t.discharged.get() > 0, "{t:?}");

        let half = period.start() + Duration::hours(31);
        let first = TimeRange::new(period.start(), half, period.length()).unwrap();
        let second = TimeRange::new(half, period.end(), period.length()).unwrap();
        let split = grid().await;
        // The second half first: refused, nothing cleared.
        let err = split.clear(&second, &tariff, &mechanism).await.unwrap_err();
        assert_eq!(err.kind(), "battery_history", "{err}");
        assert!(split.summaries(&period).await.unwrap().is_empty());
        split.clear(&first, &tariff, &mechanism).await.unwrap();
        // Clearing the first half again changes nothing.
        let again = split.clear(&first, &tariff, &mechanism).await.unwrap();
        assert_eq!((again.cleared, again.already_cleared), (0, first.len()));
        let r = split.clear(&period, &tariff, &mechanism).await.unwrap();
        assert_eq!((r.cleared, r.already_cleared), (second.len(), first.len()));
        assert_eq!(split.clearings(&period).await.unwrap(), expected);
        let later = split.battery_states(&second).await.unwrap();
        assert_eq!(
            later.first().unwrap().soc_start,
            steps[first.len() - 1].soc_end
        );
        let bills = split.bill(&period, &tariff).await.unwrap();
        let bill = bills.bill(spec.id()).unwrap();
        assert_eq!(
            (bill.energy.consumed, bill.energy.produced),
            (t.charged, t.discharged)
        );
        assert_eq!(
            bills.total(),
            bills.grid_leg + bills.fees + bills.operator_margin
        );

        // The same store through a grid that forgot the battery: refused
        // where the battery is active, nothing cleared.
        let forgetful = Grid::new(MemoryStore::new(), period.length());
        forgetful.register_all(members.clone()).await.unwrap();
        forgetful.record(readings.clone()).await.unwrap();
        let err = forgetful
            .clear(&period, &tariff, &mechanism)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "battery_history", "{err}");
        assert!(err.to_string().contains("with_battery"), "{err}");
        assert!(forgetful.summaries(&period).await.unwrap().is_empty());
    }

    /// A community's battery may charge and discharge at more than one
    /// meter's plausibility limit: its readings are bounded by its own
    /// power limits, while members' readings keep the grid's.
    #[tokio::test]
    async fn a_battery_beyond_a_meters_power_limit_clears() {
        use microgrid_core::{ProsumerKind, Wh};
        let day = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let length = TimeframeLength::default();
        let period = TimeRange::new(start, start + Duration::minutes(30), length).unwrap();
        // Meters up to 10 kW (2,500 Wh a quarter-hour); the battery 20 kW.
        let limits = ReadingLimits {
            max_power_w: 10_000,
        };
        let spec = BatterySpec::new("battery", 100_000, 20_000, 20_000, Decimal::ONE, 0).unwrap();
        let mut members = vec![spec.prosumer("Battery", day).unwrap()];
        for id in ["a", "b", "c"] {
            members.push(Prosumer::new(id, id, ProsumerKind::Household, day).unwrap());
        }
        let tfs: Vec<Timeframe> = period.timeframes().collect();
        let r = |id: &str, tf: Timeframe, p: i64, c: i64| {
            Reading::new(id.parse().unwrap(), tf, Wh::new(p), Wh::new(c)).unwrap()
        };
        // 4,000 Wh of surplus, then 4,500 Wh of deficit.
        let readings = vec![
            r("a", tfs[0], 2_000, 0),
            r("b", tfs[0], 2_000, 0),
            r("c", tfs[0], 0, 0),
            r("a", tfs[1], 0, 1_500),
            r("b", tfs[1], 0, 1_500),
            r("c", tfs[1], 0, 1_500),
        ];
        let grid = Grid::new(MemoryStore::new(), length)
            .with_limits(limits)
            .with_battery(spec.clone());
        grid.register_all(members).await.unwrap();
        grid.record(readings).await.unwrap();
        // A member's reading above 10 kW is still refused.
        let err = grid
            .record(vec![r("c", tfs[0], 2_501, 0)])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "implausible_energy", "{err}");
        let tariff = Tariff::new(
            "EUR".parse().unwrap(),
            GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap()).unwrap(),
        );
        grid.clear(&period, &tariff, &Mechanism::SupplyDemandRatio)
            .await
            .unwrap();
        let steps = grid.battery_states(&period).await.unwrap();
        let moved: Vec<(i64, i64)> = steps
            .iter()
            .map(|s| (s.charged.get(), s.discharged.get()))
            .collect();
        assert_eq!(moved, [(4_000, 0), (0, 4_000)]);
    }

    /// Inside the store's clearing step, rows whose battery reading is not
    /// what the dispatch rule gives (a member's reading corrected after the
    /// dispatch), or that skip a timeframe, are refused.
    #[test]
    fn stale_battery_readings_are_refused_inside_the_clearing_step() {
        use microgrid_core::{ProsumerKind, Wh};
        let spec = BatterySpec::new("battery", 10_000, 4_000, 4_000, Decimal::ONE, 0).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let battery = Prosumer::new("battery", "B", ProsumerKind::Battery, day).unwrap();
        let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let chunk = TimeRange::new(
            start,
            start + Duration::minutes(30),
            TimeframeLength::default(),
        )
        .unwrap();
        let tfs: Vec<Timeframe> = chunk.timeframes().collect();
        // Slot 0 a member with 600 Wh of surplus, slot 1 the battery.
        let row = |battery_charged: i64| {
            let mut r = ReadingRow::with_width(2);
            r.set(0, Wh::new(600), Wh::ZERO);
            r.set(1, Wh::ZERO, Wh::new(battery_charged));
            r
        };
        let (good, stale) = (row(600), row(500));
        let ok = [(tfs[0], &good), (tfs[1], &good)];
        // 600 + 600 Wh charged (4 kW over 15 minutes is 1,000 Wh).
        check_battery_rows(&spec, &battery, 1, &chunk, Wh::ZERO, &ok).unwrap();
        for rows in [
            vec![(tfs[0], &good), (tfs[1], &stale)],
            vec![(tfs[1], &good)],
        ] {
            let err = check_battery_rows(&spec, &battery, 1, &chunk, Wh::ZERO, &rows).unwrap_err();
            assert_eq!(err.kind(), "battery_history", "{err}");
        }
    }

    /// Two grids with the same registry, each holding half of a period
    /// that crosses a month boundary, bill parts that merge into the
    /// bills of one grid holding all of it; a third grid, with the
    /// registry only, settles them into the same settlement.
    #[tokio::test]
    async fn parts_billed_on_two_grids_settle_like_one_grid() {
        let community = Community::new(12, NaiveDate::from_ymd_opt(2026, 6, 29).unwrap(), 4, 7);
        let period = community.range().unwrap();
        let tariff = Tariff::new(
            "EUR".parse().unwrap(),
            GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap()).unwrap(),
        )
        .with_fixed_fee(Decimal::from(3))
        .unwrap();
        let members: Vec<Prosumer> = community.registry().unwrap().iter().cloned().collect();
        let readings = community.readings().unwrap();
        let half = period.start() + Duration::days(2) + Duration::minutes(45);
        let ranges = [
            TimeRange::new(period.start(), half, period.length()).unwrap(),
            TimeRange::new(half, period.end(), period.length()).unwrap(),
        ];
        let operator = PayoutAddress::new(
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            Network::Regtest,
        )
        .unwrap();
        let rate = ExchangeRate::new(
            Decimal::from(50_000),
            "EUR".parse().unwrap(),
            "test",
            period.end(),
        )
        .unwrap();
        for mechanism in [Mechanism::SupplyDemandRatio, Mechanism::BillSharing] {
            let grid = || Grid::new(MemoryStore::new(), period.length());
            let whole = grid();
            whole.register_all(members.clone()).await.unwrap();
            whole.record(readings.clone()).await.unwrap();
            whole.clear(&period, &tariff, &mechanism).await.unwrap();
            let mut parts = Vec::new();
            for range in &ranges {
                let g = grid();
                g.register_all(members.clone()).await.unwrap();
                let mine: Vec<Reading> = readings
                    .iter()
                    .filter(|r| range.contains(&r.timeframe()))
                    .cloned()
                    .collect();
                g.record(mine).await.unwrap();
                g.clear(range, &tariff, &mechanism).await.unwrap();
                assert_eq!(
                    g.summaries(range).await.unwrap(),
                    whole.summaries(range).await.unwrap()
                );
                parts.push(g.bill_part(range, &tariff).await.unwrap());
            }
            parts.reverse();
            let books = grid();
            books.register_all(members.clone()).await.unwrap();
            let bills = books.bill_parts(parts, &tariff).await.unwrap();
            assert_eq!(bills, whole.bill(&period, &tariff).await.unwrap());
            let s = books
                .settle_bills(&bills, &rate, Network::Regtest, &operator)
                .await
                .unwrap();
            let expected = whole
                .settle(&period, &tariff, &rate, Network::Regtest, &operator)
                .await
                .unwrap();
            assert_eq!(s.content_hash(), expected.content_hash());
            assert_eq!(s.id(), expected.id());
        }
    }
}
