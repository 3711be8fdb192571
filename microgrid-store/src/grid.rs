//! The pipeline on top of any store: register, record, clear, query, bill,
//! settle. Every stage reads what the previous one stored and writes its
//! own result.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use microgrid_core::billing::{bill_period, PeriodBills};
use microgrid_core::settlement::{settle, ExchangeRate, Settlement};
use microgrid_core::tariff::Tariff;
use microgrid_core::{
    clear_timeframe, derive_trades, plan_ingest, validate_batch, Allocation, GridTariff, Network,
    PayoutAddress, PricingMechanism, Prosumer, ProsumerId, Reading, ReadingLimits, Registry,
    TimeRange, TimeframeClearing, TimeframeLength, TimeframeSummary, Trade,
};

use crate::error::{Result, StoreError};
use crate::traits::Store;

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

/// What clearing a range did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearReport {
    /// Timeframes cleared and stored now.
    pub cleared: usize,
    /// Timeframes that were cleared before (left as they were).
    pub already_cleared: usize,
}

/// A microgrid's books on a store `S`.
#[derive(Debug, Clone)]
pub struct Grid<S> {
    store: S,
    length: TimeframeLength,
    limits: ReadingLimits,
}

impl<S: Store> Grid<S> {
    /// A grid of `length` timeframes on `store`, with default reading
    /// limits.
    pub fn new(store: S, length: TimeframeLength) -> Grid<S> {
        Grid {
            store,
            length,
            limits: ReadingLimits::default(),
        }
    }

    /// The same grid with other plausibility limits for readings.
    pub fn with_limits(mut self, limits: ReadingLimits) -> Grid<S> {
        self.limits = limits;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The timeframe length.
    pub fn length(&self) -> TimeframeLength {
        self.length
    }

    /// Registers a new prosumer; an error if its id is taken.
    pub async fn register(&self, prosumer: Prosumer) -> Result<()> {
        let mut registry = self.store.registry().await?;
        registry.register(prosumer.clone())?;
        self.store.save_prosumer(&prosumer).await
    }

    /// Replaces the record of a registered prosumer.
    pub async fn update(&self, prosumer: Prosumer) -> Result<()> {
        let mut registry = self.store.registry().await?;
        registry.update(prosumer.clone())?;
        self.store.save_prosumer(&prosumer).await
    }

    /// Every registered prosumer.
    pub async fn registry(&self) -> Result<Registry> {
        self.store.registry().await
    }

    /// Records a batch of readings: validated whole against the registry
    /// (see [`validate_batch`]), then written atomically. Re-sending a
    /// reading changes nothing; a different value for a cleared timeframe
    /// rejects the batch; nothing of a rejected batch is stored.
    pub async fn record(&self, batch: Vec<Reading>) -> Result<IngestReport> {
        let registry = self.store.registry().await?;
        let batch = validate_batch(&registry, self.length, self.limits, batch)?;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(IngestReport::default());
        };
        let span = TimeRange::new(
            first.timeframe().start(),
            last.timeframe().end(),
            self.length,
        )?;
        let stored: BTreeMap<(DateTime<Utc>, ProsumerId), Reading> = self
            .store
            .readings(&span)
            .await?
            .into_iter()
            .map(|r| ((r.timeframe().start(), r.prosumer().clone()), r))
            .collect();
        let cleared = self.store.cleared(&span).await?;
        let plan = plan_ingest(
            batch,
            |id, tf| stored.get(&(tf.start(), id.clone())).cloned(),
            |tf| cleared.contains(&tf.start()),
        )?;
        self.store.write_readings(&plan).await?;
        Ok(IngestReport {
            inserted: plan.insert.len(),
            replaced: plan.replace.len(),
            unchanged: plan.unchanged,
        })
    }

    /// Clears every timeframe of `range` not cleared yet, from the stored
    /// readings, and stores the results. Clearing twice stores one result.
    pub async fn clear(
        &self,
        range: &TimeRange,
        tariff: &(dyn GridTariff + Sync),
        mechanism: &dyn PricingMechanism,
    ) -> Result<ClearReport> {
        let done = self.store.cleared(range).await?;
        let mut by_timeframe: BTreeMap<DateTime<Utc>, Vec<Reading>> = BTreeMap::new();
        for r in self.store.readings(range).await? {
            by_timeframe
                .entry(r.timeframe().start())
                .or_default()
                .push(r);
        }
        let mut report = ClearReport::default();
        for tf in range.timeframes() {
            if done.contains(&tf.start()) {
                report.already_cleared += 1;
                continue;
            }
            let readings = by_timeframe.remove(&tf.start()).unwrap_or_default();
            let clearing = clear_timeframe(tf, &readings, tariff.grid_prices(&tf), mechanism)?;
            if self.store.save_clearing(&clearing).await? {
                report.cleared += 1;
            } else {
                report.already_cleared += 1;
            }
        }
        Ok(report)
    }

    /// The grid as a whole per cleared timeframe ("smart grid info").
    pub async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        self.store.summaries(range).await
    }

    /// One prosumer per cleared timeframe ("prosumer info").
    pub async fn prosumer(&self, id: &ProsumerId, range: &TimeRange) -> Result<Vec<Allocation>> {
        self.store.allocations(range, Some(id)).await
    }

    /// The cleared timeframes of `range` with their allocations.
    pub async fn clearings(&self, range: &TimeRange) -> Result<Vec<TimeframeClearing>> {
        let summaries = self.store.summaries(range).await?;
        let mut allocations: BTreeMap<DateTime<Utc>, Vec<Allocation>> = BTreeMap::new();
        for a in self.store.allocations(range, None).await? {
            allocations.entry(a.timeframe.start()).or_default().push(a);
        }
        Ok(summaries
            .into_iter()
            .map(|summary| TimeframeClearing {
                allocations: allocations
                    .remove(&summary.timeframe.start())
                    .unwrap_or_default(),
                summary,
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

    /// Bills `period` from the stored clearings; an error if a timeframe of
    /// it is not cleared.
    pub async fn bill(&self, period: &TimeRange, tariff: &Tariff) -> Result<PeriodBills> {
        Ok(bill_period(period, tariff, &self.clearings(period).await?)?)
    }

    /// Bills and settles `period`, carrying in the balances of the last
    /// settlement before it, and stores the settlement. Settling the same
    /// period with the same inputs returns the stored settlement.
    pub async fn settle(
        &self,
        period: &TimeRange,
        tariff: &Tariff,
        rate: &ExchangeRate,
        network: Network,
        operator: &PayoutAddress,
    ) -> Result<Settlement> {
        let bills = self.bill(period, tariff).await?;
        let registry = self.store.registry().await?;
        let carried = self
            .store
            .last_settlement(period.start())
            .await?
            .map(|s| s.carried_out())
            .unwrap_or_default();
        let settlement = settle(&bills, &registry, rate, network, operator, &carried)?;
        self.store.save_settlement(&settlement).await
    }

    /// The stored settlement with `id`.
    pub async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        self.store.settlement(id).await
    }

    /// Records the transaction that paid settlement `id`.
    pub async fn mark_paid(&self, id: &str, txid: &str) -> Result<Settlement> {
        let mut settlement =
            self.store
                .settlement(id)
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: "settlement",
                    key: id.to_owned(),
                })?;
        settlement.mark_paid(txid)?;
        self.store.save_payment(&settlement).await?;
        Ok(settlement)
    }
}
