//! `microgrid.Grid`: the pipeline on a store opened by URL.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use microgrid_core::billing::PeriodBills;
use microgrid_core::settlement::bitcoin::Amount;
use microgrid_core::settlement::{ExchangeRate, NextIndices, PayoutPolicy};
use microgrid_core::tariff::Tariff as CoreTariff;
use microgrid_core::{
    Allocation, Error as CoreError, Network, PayoutAddress, Prosumer, ReadingColumns, Registry,
    TimeframeLength, Wh,
};
use microgrid_store::{AnyStore, Grid as StoreGrid, IngestReport};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3_arrow::PyTable;
use rust_decimal::Decimal;

use crate::conversions::{
    arg, date, decimal, flag, integer, mechanism, network, opt_arg, prosumer, prosumer_id,
    prosumer_ids, prosumer_kind, range, tariff, text,
};
use crate::distributed::{parts, BillingPart};
use crate::errors::{Error, Result};
use crate::input::{is_arrow, is_pandas, wide_columns, Readings, Wide};
use crate::runtime::block_on;
use crate::settlement::Settlement;

type Inner = Arc<StoreGrid<AnyStore>>;

/// The books of one microgrid on a store: `Grid()` in memory,
/// `Grid("sqlite:books.db")`, `Grid("postgres://...")` or
/// `Grid("mongodb://...")`.
#[pyclass(module = "microgrid", frozen)]
pub struct Grid {
    inner: Inner,
}

fn columns<'py>(
    py: Python<'py>,
    cols: Vec<(&str, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, values) in cols {
        d.set_item(name, values)?;
    }
    Ok(d)
}

fn report(py: Python<'_>, report: IngestReport) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("inserted", report.inserted)?;
    d.set_item("replaced", report.replaced)?;
    d.set_item("unchanged", report.unchanged)?;
    Ok(d)
}

/// Builds the core's columns with `build` against the grid's registry,
/// loading it again once if an id is unknown (registered through another
/// `Grid` on the same database), and records them: all of it without
/// the GIL.
fn record_with<F>(py: Python<'_>, grid: &Inner, build: F) -> Result<IngestReport>
where
    F: Fn(&Registry) -> Result<ReadingColumns> + Send,
{
    let grid = grid.clone();
    block_on(py, async move {
        let registry = grid.shared_registry().await?;
        let columns = match build(&registry) {
            Err(e) if matches!(e.core(), Some(CoreError::UnknownProsumer(_))) => {
                let registry = grid.refresh_registry().await?;
                build(&registry)?
            }
            other => other?,
        };
        Ok(grid.record_columns(columns).await?)
    })
}

/// The prosumers of a DataFrame (pandas or polars), an Arrow table or a
/// sequence of dicts.
fn prosumer_rows(prosumers: &Bound<'_, PyAny>) -> Result<Vec<Prosumer>> {
    let expected = "a DataFrame, an Arrow table or a list of dicts";
    if prosumers.is_instance_of::<PyString>() || prosumers.is_instance_of::<PyDict>() {
        return Err(Error::wrong_type(prosumers, expected));
    }
    let rows = if is_pandas(prosumers) && prosumers.hasattr("to_dict")? {
        prosumers.call_method1("to_dict", ("records",))?
    } else if prosumers.hasattr("to_dicts")? {
        prosumers.call_method0("to_dicts")?
    } else if is_arrow(prosumers) && prosumers.hasattr("to_pylist")? {
        prosumers.call_method0("to_pylist")?
    } else {
        prosumers.clone()
    };
    rows.try_iter()
        .map_err(|_| Error::wrong_type(prosumers, expected))?
        .enumerate()
        .map(|(i, row)| prosumer(&row?).map_err(|e| e.at_row(i)))
        .collect()
}

fn allocation_columns<'py>(py: Python<'py>, rows: &[Allocation]) -> PyResult<Bound<'py, PyDict>> {
    let wh = |f: fn(&Allocation) -> Wh| rows.iter().map(|a| f(a).get()).collect::<Vec<i64>>();
    columns(
        py,
        vec![
            (
                "start",
                rows.iter()
                    .map(|a| a.timeframe.start())
                    .collect::<Vec<_>>()
                    .into_pyobject(py)?
                    .into_any(),
            ),
            (
                "prosumer_id",
                rows.iter()
                    .map(|a| a.prosumer.to_string())
                    .collect::<Vec<_>>()
                    .into_pyobject(py)?
                    .into_any(),
            ),
            (
                "produced_wh",
                wh(|a| a.produced).into_pyobject(py)?.into_any(),
            ),
            (
                "consumed_wh",
                wh(|a| a.consumed).into_pyobject(py)?.into_any(),
            ),
            ("sold_wh", wh(|a| a.sold).into_pyobject(py)?.into_any()),
            ("bought_wh", wh(|a| a.bought).into_pyobject(py)?.into_any()),
            (
                "imported_wh",
                wh(|a| a.imported).into_pyobject(py)?.into_any(),
            ),
            (
                "exported_wh",
                wh(|a| a.exported).into_pyobject(py)?.into_any(),
            ),
            (
                "amount",
                rows.iter()
                    .map(|a| a.amount())
                    .collect::<Vec<_>>()
                    .into_pyobject(py)?
                    .into_any(),
            ),
        ],
    )
}

/// One dict per member with its lines, total, baseline and saving, as
/// `Grid.bill` returns them.
fn bill_dicts<'py>(py: Python<'py>, bills: &PeriodBills) -> Result<Vec<Bound<'py, PyDict>>> {
    bills
        .bills
        .iter()
        .map(|b| {
            let d = PyDict::new(py);
            d.set_item("prosumer_id", b.prosumer.as_str())?;
            d.set_item("bought_wh", b.energy.bought.get())?;
            d.set_item("sold_wh", b.energy.sold.get())?;
            d.set_item("imported_wh", b.energy.imported.get())?;
            d.set_item("exported_wh", b.energy.exported.get())?;
            d.set_item("purchases", b.purchases)?;
            d.set_item("sales", b.sales)?;
            d.set_item("imports", b.imports)?;
            d.set_item("exports", b.exports)?;
            d.set_item("grid_fee", b.grid_fee)?;
            d.set_item("network_charge", b.network_charge)?;
            d.set_item("fixed_fee", b.fixed_fee)?;
            d.set_item("operator_margin", b.operator_margin)?;
            d.set_item("total", b.total)?;
            d.set_item("baseline", b.baseline)?;
            d.set_item("saving", b.saving)?;
            Ok(d)
        })
        .collect()
}

/// The end of the period the parts cover (the latest end), if any.
fn parts_end(parts: &[microgrid_core::billing::BillingPart]) -> Option<DateTime<Utc>> {
    parts.iter().map(|p| p.range().end()).max()
}

/// The exchange rate (at `at`, the period's end), network and operator
/// address of a settlement, from `Grid.settle`'s keyword arguments.
fn settlement_inputs(
    tariff: &CoreTariff,
    at: Option<DateTime<Utc>>,
    rate: &Any<'_>,
    operator_address: &Any<'_>,
    network: Option<&Any<'_>>,
    rate_source: Option<&Any<'_>>,
) -> Result<(ExchangeRate, Network, PayoutAddress)> {
    let rate = arg("rate", rate, decimal)?;
    let operator_address = arg("operator_address", operator_address, text)?;
    let net = opt_arg("network", network, self::network)?.unwrap_or(Network::Regtest);
    let rate_source =
        opt_arg("rate_source", rate_source, text)?.unwrap_or_else(|| "manual".to_owned());
    let operator = PayoutAddress::new(&operator_address, net)
        .map_err(|e| Error::from(e).in_argument("operator_address"))?;
    let at =
        at.ok_or_else(|| Error::validation("no billing parts to settle").in_argument("parts"))?;
    let rate = ExchangeRate::new(rate, tariff.currency(), &rate_source, at)
        .map_err(|e| Error::from(e).in_argument("rate"))?;
    Ok((rate, net, operator))
}

/// The payout policy of `minimum_payout_sats` (whole satoshis; none: pay
/// every balance above dust) and `lightning_below_sats` (none: nothing
/// over Lightning when settling).
fn payout_policy(
    minimum_payout_sats: Option<&Any<'_>>,
    lightning_below_sats: Option<&Any<'_>>,
) -> Result<PayoutPolicy> {
    let policy = match opt_arg("minimum_payout_sats", minimum_payout_sats, integer::<u64>)? {
        None => PayoutPolicy::default(),
        Some(sats) => PayoutPolicy::with_minimum_payout(Amount::from_sat(sats))
            .map_err(|e| Error::from(e).in_argument("minimum_payout_sats"))?,
    };
    match opt_arg("lightning_below_sats", lightning_below_sats, integer::<u64>)? {
        None => Ok(policy),
        Some(sats) => policy
            .with_lightning_below(Amount::from_sat(sats))
            .map_err(|e| Error::from(e).in_argument("lightning_below_sats")),
    }
}

/// An argument as passed; converted by hand (see `conversions`).
type Any<'py> = Bound<'py, PyAny>;

#[pymethods]
impl Grid {
    #[new]
    #[pyo3(
        signature = (url = None, *, timeframe_minutes = None),
        text_signature = "(url='memory:', *, timeframe_minutes=15)"
    )]
    fn new(
        py: Python<'_>,
        url: Option<&Any<'_>>,
        timeframe_minutes: Option<&Any<'_>>,
    ) -> Result<Grid> {
        let minutes = opt_arg("timeframe_minutes", timeframe_minutes, integer::<u32>)?;
        let length = TimeframeLength::new(minutes.unwrap_or(15))
            .map_err(|e| Error::from(e).in_argument("timeframe_minutes"))?;
        let url = opt_arg("url", url, text)?.unwrap_or_else(|| "memory:".to_owned());
        let store = block_on(py, async move { Ok(AnyStore::open(&url).await?) })?;
        Ok(Grid {
            inner: Arc::new(StoreGrid::new(store, length)),
        })
    }

    /// Timeframe length in minutes.
    #[getter]
    fn timeframe_minutes(&self) -> u32 {
        self.inner.length().minutes()
    }

    /// Splits `settlement`'s payouts by an on-chain threshold: a payout of
    /// less than `lightning_below_sats` to a member registered with a
    /// BOLT12 offer (usable on the settlement's network at `at`, default
    /// now) is paid over Lightning; the rest stay on-chain. A dict with
    /// settlement_id, onchain (prosumer, address, sats), lightning
    /// (prosumer, offer, amount_msat, payer_note), offers_not_used
    /// (prosumer, reason), onchain_sats and lightning_msat, which add up to
    /// the settlement's payouts exactly; with `sat_per_vb`, also the
    /// on-chain part's batches (as `Settlement.batches`, with `max_vbytes`
    /// and `fee_payer`).
    #[pyo3(
        signature = (settlement, *, lightning_below_sats, at = None, sat_per_vb = None, max_vbytes = None, fee_payer = None),
        text_signature = "($self, settlement, *, lightning_below_sats, at=None, sat_per_vb=None, max_vbytes=None, fee_payer='operator')"
    )]
    #[allow(clippy::too_many_arguments)]
    fn lightning_split<'py>(
        &self,
        py: Python<'py>,
        settlement: PyRef<'py, Settlement>,
        lightning_below_sats: &Any<'py>,
        at: Option<&Any<'py>>,
        sat_per_vb: Option<&Any<'py>>,
        max_vbytes: Option<&Any<'py>>,
        fee_payer: Option<&Any<'py>>,
    ) -> Result<Bound<'py, PyDict>> {
        let options = crate::lightning::split_options(
            lightning_below_sats,
            at,
            sat_per_vb,
            max_vbytes,
            fee_payer,
        )?;
        let grid = self.inner.clone();
        let registry = block_on(py, async move { Ok(grid.shared_registry().await?) })?;
        crate::lightning::split_dict(py, &registry, &settlement.inner, &options)
    }

    /// Registers a prosumer. `kind` is a `ProsumerKind` or its name;
    /// `address` a bitcoin payout address on `network`; `offer` a BOLT12
    /// offer for payouts over Lightning (`Grid.lightning_split`), checked
    /// for `network` now (see `microgrid.check_offer`).
    #[pyo3(
        signature = (id, name, kind, joined, *, left = None, address = None, network = None, offer = None),
        text_signature = "($self, id, name, kind, joined, *, left=None, address=None, network='regtest', offer=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        id: &Any<'_>,
        name: &Any<'_>,
        kind: &Any<'_>,
        joined: &Any<'_>,
        left: Option<&Any<'_>>,
        address: Option<&Any<'_>>,
        network: Option<&Any<'_>>,
        offer: Option<&Any<'_>>,
    ) -> Result<()> {
        let id = arg("id", id, text)?;
        let name = arg("name", name, text)?;
        let kind = arg("kind", kind, prosumer_kind)?;
        let joined = arg("joined", joined, date)?;
        let left = opt_arg("left", left, date)?;
        let address = opt_arg("address", address, text)?;
        let net = opt_arg("network", network, self::network)?.unwrap_or(Network::Regtest);
        let mut p = Prosumer::new(id, name, kind, joined)?;
        if let Some(left) = left {
            p = p.with_left(left)?;
        }
        if let Some(a) = address {
            p = p.with_payout(
                PayoutAddress::new(&a, net).map_err(|e| Error::from(e).in_argument("address"))?,
            );
        }
        if let Some(o) = offer.filter(|o| !o.is_none()) {
            p = p.with_offer(crate::lightning::payout_offer(o, net, Utc::now())?);
        }
        let grid = self.inner.clone();
        block_on(py, async move {
            grid.register(p).await?;
            Ok(())
        })
    }

    /// Registers many prosumers in one call, all or none: a DataFrame
    /// (pandas or polars), an Arrow table, or a list of dicts, each with
    /// `id`, `name`, `kind`, `joined` and optionally `left`, `address` and
    /// `network`. Returns how many were registered.
    fn register_all(&self, py: Python<'_>, prosumers: &Any<'_>) -> Result<usize> {
        let batch = prosumer_rows(prosumers).map_err(|e| e.in_argument("prosumers"))?;
        let n = batch.len();
        let grid = self.inner.clone();
        block_on(py, async move {
            grid.register_all(batch).await?;
            Ok(n)
        })
    }

    /// The registered prosumers as a list of dicts.
    fn prosumers<'py>(&self, py: Python<'py>) -> Result<Vec<Bound<'py, PyDict>>> {
        let grid = self.inner.clone();
        let registry = block_on(py, async move { Ok(grid.shared_registry().await?) })?;
        registry
            .iter()
            .map(|p| {
                let d = PyDict::new(py);
                d.set_item("id", p.id().as_str())?;
                d.set_item("name", p.name())?;
                d.set_item("kind", p.kind().as_str())?;
                d.set_item("joined", p.joined())?;
                d.set_item("left", p.left())?;
                d.set_item("address", p.payout().map(|a| a.as_str().to_owned()))?;
                d.set_item("network", p.payout().map(|a| a.network().as_str()))?;
                d.set_item("offer", p.offer().map(|o| o.as_str().to_owned()))?;
                Ok(d)
            })
            .collect()
    }

    /// Records readings, either a long frame, `record(frame)`, with columns
    /// `start`, `prosumer_id`, `produced_wh`, `consumed_wh` (a pandas or
    /// polars DataFrame, a pyarrow Table or RecordBatch, anything with
    /// `__arrow_c_stream__` or `__arrow_c_array__`), or four columns,
    /// `record(start, prosumer_id, produced_wh, consumed_wh)` (lists,
    /// numpy arrays, pandas Series, Arrow arrays). See the package docs for
    /// the types taken. The batch is checked whole; nothing of a rejected
    /// batch is stored. Returns a dict with inserted, replaced and
    /// unchanged counts.
    #[pyo3(
        signature = (start, prosumer_id = None, produced_wh = None, consumed_wh = None, *, assume_utc = None),
        text_signature = "($self, /, start, prosumer_id=None, produced_wh=None, consumed_wh=None, *, assume_utc=False)"
    )]
    fn record<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        prosumer_id: Option<&Bound<'py, PyAny>>,
        produced_wh: Option<&Bound<'py, PyAny>>,
        consumed_wh: Option<&Bound<'py, PyAny>>,
        assume_utc: Option<&Bound<'py, PyAny>>,
    ) -> Result<Bound<'py, PyDict>> {
        let assume_utc = opt_arg("assume_utc", assume_utc, flag)?.unwrap_or(false);
        let readings = match (prosumer_id, produced_wh, consumed_wh) {
            (None, None, None) => Readings::from_frame(start, assume_utc)?,
            (Some(p), Some(prod), Some(cons)) => {
                Readings::from_columns(start, p, prod, cons, assume_utc)?
            }
            _ => {
                return Err(Error::invalid(
                    "missing_value",
                    "pass one frame, record(frame), or four columns, record(start, prosumer_id, produced_wh, consumed_wh)",
                ))
            }
        };
        let counts = record_with(py, &self.inner, move |registry| {
            readings.to_columns(registry)
        })?;
        Ok(report(py, counts)?)
    }

    /// Records readings from two wide frames of the same shape: `produced`
    /// and `consumed` watt-hours, a row per start (a pandas DataFrame
    /// indexed by tz-aware `start`, or with a `start` column; an Arrow
    /// table with a `start` column) and an integer column per prosumer
    /// id. Every cell is a reading.
    #[pyo3(
        signature = (produced_wh, consumed_wh, *, assume_utc = None),
        text_signature = "($self, /, produced_wh, consumed_wh, *, assume_utc=False)"
    )]
    fn record_wide<'py>(
        &self,
        py: Python<'py>,
        produced_wh: &Bound<'py, PyAny>,
        consumed_wh: &Bound<'py, PyAny>,
        assume_utc: Option<&Bound<'py, PyAny>>,
    ) -> Result<Bound<'py, PyDict>> {
        let assume_utc = opt_arg("assume_utc", assume_utc, flag)?.unwrap_or(false);
        let produced = Wide::from_frame(produced_wh, "produced_wh")
            .map_err(|e| e.in_argument("produced_wh"))?;
        let consumed = Wide::from_frame(consumed_wh, "consumed_wh")
            .map_err(|e| e.in_argument("consumed_wh"))?;
        let counts = record_with(py, &self.inner, move |registry| {
            wide_columns(&produced, &consumed, assume_utc, registry)
        })?;
        Ok(report(py, counts)?)
    }

    /// Clears every timeframe of `[start, end)` not cleared yet with
    /// `mechanism` (a `Mechanism` or a name such as "sdr" or "fixed:0.15")
    /// at the tariff's grid prices.
    fn clear<'py>(
        &self,
        py: Python<'py>,
        start: &Any<'py>,
        end: &Any<'py>,
        mechanism: &Any<'py>,
        tariff: &Any<'py>,
    ) -> Result<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let m = arg("mechanism", mechanism, self::mechanism)?;
        let t = arg("tariff", tariff, self::tariff)?;
        let grid = self.inner.clone();
        let report = block_on(py, async move { Ok(grid.clear(&r, &t, &m).await?) })?;
        let d = PyDict::new(py);
        d.set_item("cleared", report.cleared)?;
        d.set_item("already_cleared", report.already_cleared)?;
        Ok(d)
    }

    /// The grid as a whole per cleared timeframe, as columns.
    fn summaries<'py>(
        &self,
        py: Python<'py>,
        start: &Any<'_>,
        end: &Any<'_>,
    ) -> Result<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let grid = self.inner.clone();
        let rows = block_on(py, async move { Ok(grid.summaries(&r).await?) })?;
        let wh = |f: fn(&microgrid_core::TimeframeSummary) -> Wh| {
            rows.iter().map(|s| f(s).get()).collect::<Vec<i64>>()
        };
        Ok(columns(
            py,
            vec![
                (
                    "start",
                    rows.iter()
                        .map(|s| s.timeframe.start())
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "production_wh",
                    wh(|s| s.production).into_pyobject(py)?.into_any(),
                ),
                (
                    "consumption_wh",
                    wh(|s| s.consumption).into_pyobject(py)?.into_any(),
                ),
                ("supply_wh", wh(|s| s.supply).into_pyobject(py)?.into_any()),
                ("demand_wh", wh(|s| s.demand).into_pyobject(py)?.into_any()),
                ("shared_wh", wh(|s| s.shared).into_pyobject(py)?.into_any()),
                ("import_wh", wh(|s| s.import).into_pyobject(py)?.into_any()),
                ("export_wh", wh(|s| s.export).into_pyobject(py)?.into_any()),
                (
                    "buy_price_per_kwh",
                    rows.iter()
                        .map(|s| s.buy_price().map(|p| p.per_kwh()))
                        .collect::<Vec<Option<Decimal>>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "sell_price_per_kwh",
                    rows.iter()
                        .map(|s| s.sell_price().map(|p| p.per_kwh()))
                        .collect::<Vec<Option<Decimal>>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
            ],
        )?)
    }

    /// The grid view of `[start, end)` as an Arrow table (PyCapsule
    /// interface: `pyarrow.table(...)`, `polars.DataFrame(...)`).
    fn summaries_arrow(&self, py: Python<'_>, start: &Any<'_>, end: &Any<'_>) -> Result<PyTable> {
        let r = range(start, end, self.inner.length())?;
        let grid = self.inner.clone();
        block_on(py, async move {
            crate::arrow_views::summaries(grid.summary_columns(&r).await?)
        })
    }

    /// The prosumer view of `[start, end)` as an Arrow table, of the
    /// prosumers `prosumer_ids` or of everyone: by time, then by id.
    #[pyo3(signature = (start, end, prosumer_ids = None))]
    fn allocations_arrow(
        &self,
        py: Python<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
        prosumer_ids: Option<&Any<'_>>,
    ) -> Result<PyTable> {
        let r = range(start, end, self.inner.length())?;
        let only = opt_arg("prosumer_ids", prosumer_ids, self::prosumer_ids)?;
        let grid = self.inner.clone();
        block_on(py, async move {
            let (columns, registry) = grid.allocation_columns(&r, only.as_deref()).await?;
            crate::arrow_views::allocations(columns, &registry)
        })
    }

    /// The trades of `[start, end)` (of one prosumer, or all) as an Arrow
    /// table.
    #[pyo3(signature = (start, end, prosumer_id = None))]
    fn trades_arrow(
        &self,
        py: Python<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
        prosumer_id: Option<&Any<'_>>,
    ) -> Result<PyTable> {
        let r = range(start, end, self.inner.length())?;
        let id = opt_arg("prosumer_id", prosumer_id, self::prosumer_id)?;
        let grid = self.inner.clone();
        block_on(py, async move {
            let (columns, registry) = grid.trade_columns(&r, id.as_ref()).await?;
            crate::arrow_views::trades(columns, &registry)
        })
    }

    /// One prosumer per cleared timeframe, as columns.
    fn prosumer<'py>(
        &self,
        py: Python<'py>,
        id: &Any<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
    ) -> Result<Bound<'py, PyDict>> {
        let id = arg("id", id, self::prosumer_id)?;
        let r = range(start, end, self.inner.length())?;
        let grid = self.inner.clone();
        let rows = block_on(py, async move { Ok(grid.prosumer(&id, &r).await?) })?;
        Ok(allocation_columns(py, &rows)?)
    }

    /// The bilateral trades of `[start, end)` (of one prosumer, or all), as
    /// columns.
    #[pyo3(signature = (start, end, prosumer_id = None))]
    fn trades<'py>(
        &self,
        py: Python<'py>,
        start: &Any<'_>,
        end: &Any<'_>,
        prosumer_id: Option<&Any<'_>>,
    ) -> Result<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let id = opt_arg("prosumer_id", prosumer_id, self::prosumer_id)?;
        let grid = self.inner.clone();
        let rows = block_on(py, async move { Ok(grid.trades(&r, id.as_ref()).await?) })?;
        Ok(columns(
            py,
            vec![
                (
                    "start",
                    rows.iter()
                        .map(|t| t.timeframe.start())
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "seller_id",
                    rows.iter()
                        .map(|t| t.seller.to_string())
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "buyer_id",
                    rows.iter()
                        .map(|t| t.buyer.to_string())
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "energy_wh",
                    rows.iter()
                        .map(|t| t.energy.get())
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "price_per_kwh",
                    rows.iter()
                        .map(|t| t.price.map(|p| p.per_kwh()))
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
            ],
        )?)
    }

    /// Bills `[start, end)`: one dict per member with its lines, total,
    /// baseline and saving (decimal.Decimal in the tariff's currency).
    fn bill<'py>(
        &self,
        py: Python<'py>,
        start: &Any<'_>,
        end: &Any<'_>,
        tariff: &Any<'_>,
    ) -> Result<Vec<Bound<'py, PyDict>>> {
        let r = range(start, end, self.inner.length())?;
        let t = arg("tariff", tariff, self::tariff)?;
        let grid = self.inner.clone();
        let bills = block_on(py, async move { Ok(grid.bill(&r, &t).await?) })?;
        bill_dicts(py, &bills)
    }

    /// The billing sums of `[start, end)`, a part of a longer billing
    /// period, not finished into bills: merge it with the parts of the rest
    /// of the period (made by other grids with the same registry, on other
    /// machines, say) through `Grid.bill_parts` or `Grid.settle_parts`.
    fn bill_part(
        &self,
        py: Python<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
        tariff: &Any<'_>,
    ) -> Result<BillingPart> {
        let r = range(start, end, self.inner.length())?;
        let t = arg("tariff", tariff, self::tariff)?;
        let grid = self.inner.clone();
        let inner = block_on(py, async move { Ok(grid.bill_part(&r, &t).await?) })?;
        Ok(BillingPart { inner })
    }

    /// The bills of the period that `parts` (`BillingPart`s, in any order)
    /// cover together, finished with this grid's registry (the one the
    /// parts were made with): the same dicts as `Grid.bill` of the period
    /// on one grid holding all of it.
    fn bill_parts<'py>(
        &self,
        py: Python<'py>,
        parts: &Any<'_>,
        tariff: &Any<'_>,
    ) -> Result<Vec<Bound<'py, PyDict>>> {
        let parts = arg("parts", parts, self::parts)?;
        let t = arg("tariff", tariff, self::tariff)?;
        let grid = self.inner.clone();
        let bills = block_on(py, async move { Ok(grid.bill_parts(parts, &t).await?) })?;
        bill_dicts(py, &bills)
    }

    /// Settles the period that `parts` cover together, as `Grid.settle`
    /// settles its own books: billed from the parts with this grid's
    /// registry, carrying in the balances of this grid's last standing
    /// settlement before the period, stored once. The same bills give the
    /// same settlement, content hash included.
    #[pyo3(
        signature = (parts, tariff, *, rate, operator_address, network = None, rate_source = None, minimum_payout_sats = None, lightning_below_sats = None),
        text_signature = "($self, /, parts, tariff, *, rate, operator_address, network='regtest', rate_source='manual', minimum_payout_sats=None, lightning_below_sats=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn settle_parts(
        &self,
        py: Python<'_>,
        parts: &Any<'_>,
        tariff: &Any<'_>,
        rate: &Any<'_>,
        operator_address: &Any<'_>,
        network: Option<&Any<'_>>,
        rate_source: Option<&Any<'_>>,
        minimum_payout_sats: Option<&Any<'_>>,
        lightning_below_sats: Option<&Any<'_>>,
    ) -> Result<Settlement> {
        let policy = payout_policy(minimum_payout_sats, lightning_below_sats)?;
        let parts = arg("parts", parts, self::parts)?;
        let t = arg("tariff", tariff, self::tariff)?;
        let (rate, net, operator) = settlement_inputs(
            &t,
            parts_end(&parts),
            rate,
            operator_address,
            network,
            rate_source,
        )?;
        let grid = self.inner.clone();
        let inner = block_on(py, async move {
            let bills = grid.bill_parts(parts, &t).await?;
            Ok(grid
                .settle_bills_with_policy(&bills, &rate, net, &operator, &policy)
                .await?)
        })?;
        Ok(Settlement { inner })
    }

    /// Bills and settles `[start, end)` at `rate` (tariff currency per BTC,
    /// a decimal), paying out on `network` with invoices to
    /// `operator_address`. Settling again with the same inputs returns the
    /// stored settlement. With `minimum_payout_sats`, a balance due to a
    /// member below it is carried forward to the next settlement instead
    /// of paid (this changes who is paid, and so the id). With
    /// `lightning_below_sats` above zero, a balance on-chain cannot pay (no
    /// address, below dust, below the minimum) is paid over Lightning to
    /// the member's BOLT12 offer if it has one usable on the network at the
    /// period's end (an entry with action `lightning`; see
    /// `Grid.lightning_split` for paying them) instead of carried.
    #[pyo3(
        signature = (start, end, tariff, *, rate, operator_address, network = None, rate_source = None, minimum_payout_sats = None, lightning_below_sats = None),
        text_signature = "($self, /, start, end, tariff, *, rate, operator_address, network='regtest', rate_source='manual', minimum_payout_sats=None, lightning_below_sats=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        py: Python<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
        tariff: &Any<'_>,
        rate: &Any<'_>,
        operator_address: &Any<'_>,
        network: Option<&Any<'_>>,
        rate_source: Option<&Any<'_>>,
        minimum_payout_sats: Option<&Any<'_>>,
        lightning_below_sats: Option<&Any<'_>>,
    ) -> Result<Settlement> {
        let policy = payout_policy(minimum_payout_sats, lightning_below_sats)?;
        let r = range(start, end, self.inner.length())?;
        let t = arg("tariff", tariff, self::tariff)?;
        let (rate, net, operator) = settlement_inputs(
            &t,
            Some(r.end()),
            rate,
            operator_address,
            network,
            rate_source,
        )?;
        let grid = self.inner.clone();
        let inner = block_on(py, async move {
            Ok(grid
                .settle_with_policy(&r, &t, &rate, net, &operator, &policy)
                .await?)
        })?;
        Ok(Settlement { inner })
    }

    /// Bills and settles `[start, end)` as `settle` does, with the
    /// operator's descriptor `wallet` (a `microgrid.OperatorWallet`)
    /// instead of one address: each member who owes gets an invoice to an
    /// address of its own, at the wallet's next unused receive index after
    /// every settlement stored with it (see `next_wallet_indices`); the
    /// network is the wallet's. Settling again with the same inputs
    /// returns the stored settlement; the replacement of a voided one
    /// starts past the voided one's indices. `first_index` /
    /// `first_change_index` set a floor (for a wallet also used outside
    /// this grid).
    #[pyo3(
        signature = (start, end, tariff, *, rate, wallet, rate_source = None, minimum_payout_sats = None, first_index = None, first_change_index = None, lightning_below_sats = None),
        text_signature = "($self, /, start, end, tariff, *, rate, wallet, rate_source='manual', minimum_payout_sats=None, first_index=None, first_change_index=None, lightning_below_sats=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn settle_with_wallet(
        &self,
        py: Python<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
        tariff: &Any<'_>,
        rate: &Any<'_>,
        wallet: PyRef<'_, crate::settlement::OperatorWallet>,
        rate_source: Option<&Any<'_>>,
        minimum_payout_sats: Option<&Any<'_>>,
        first_index: Option<&Any<'_>>,
        first_change_index: Option<&Any<'_>>,
        lightning_below_sats: Option<&Any<'_>>,
    ) -> Result<Settlement> {
        let policy = payout_policy(minimum_payout_sats, lightning_below_sats)?;
        let r = range(start, end, self.inner.length())?;
        let t = arg("tariff", tariff, self::tariff)?;
        let floor = NextIndices {
            receive: opt_arg("first_index", first_index, integer::<u32>)?.unwrap_or(0),
            change: opt_arg("first_change_index", first_change_index, integer::<u32>)?.unwrap_or(0),
        };
        let per_btc = arg("rate", rate, decimal)?;
        let source =
            opt_arg("rate_source", rate_source, text)?.unwrap_or_else(|| "manual".to_owned());
        let rate = ExchangeRate::new(per_btc, t.currency(), &source, r.end())
            .map_err(|e| Error::from(e).in_argument("rate"))?;
        let wallet = wallet.inner.clone();
        let grid = self.inner.clone();
        let inner = block_on(py, async move {
            let bills = grid.bill(&r, &t).await?;
            Ok(grid
                .settle_bills_with_wallet_from(&bills, &rate, &wallet, &policy, floor)
                .await?)
        })?;
        Ok(Settlement { inner })
    }

    /// The next unused indices of `wallet` after the settlements stored
    /// with it: a dict with receive and change.
    fn next_wallet_indices<'py>(
        &self,
        py: Python<'py>,
        wallet: PyRef<'py, crate::settlement::OperatorWallet>,
    ) -> Result<Bound<'py, PyDict>> {
        let wallet = wallet.inner.clone();
        let grid = self.inner.clone();
        let next = block_on(
            py,
            async move { Ok(grid.next_wallet_indices(&wallet).await?) },
        )?;
        let d = PyDict::new(py);
        d.set_item("receive", next.receive)?;
        d.set_item("change", next.change)?;
        Ok(d)
    }

    /// The stored settlement with `id`, or None.
    fn settlement(&self, py: Python<'_>, id: &Any<'_>) -> Result<Option<Settlement>> {
        let grid = self.inner.clone();
        let id = arg("id", id, text)?;
        let s = block_on(py, async move { Ok(grid.settlement(&id).await?) })?;
        Ok(s.map(|inner| Settlement { inner }))
    }

    /// Marks settlement `id` paid by transaction `txid` (64 hex characters).
    fn mark_paid(&self, py: Python<'_>, id: &Any<'_>, txid: &Any<'_>) -> Result<Settlement> {
        let grid = self.inner.clone();
        let (id, txid) = (arg("id", id, text)?, arg("txid", txid, text)?);
        let inner = block_on(py, async move { Ok(grid.mark_paid(&id, &txid).await?) })?;
        Ok(Settlement { inner })
    }

    /// Voids settlement `id`, which must not be paid, so that its period
    /// can be settled again (at a corrected rate, say); `reason` is kept
    /// with it. Voiding twice changes nothing.
    fn void_settlement(
        &self,
        py: Python<'_>,
        id: &Any<'_>,
        reason: &Any<'_>,
    ) -> Result<Settlement> {
        let grid = self.inner.clone();
        let (id, reason) = (arg("id", id, text)?, arg("reason", reason, text)?);
        let inner = block_on(
            py,
            async move { Ok(grid.void_settlement(&id, &reason).await?) },
        )?;
        Ok(Settlement { inner })
    }

    /// The same books with the community battery `battery` (a
    /// `microgrid.Battery`) taking part in clearing: `clear` computes the
    /// battery's readings by its dispatch rule and clears them with the
    /// members'. The battery must be registered with kind `"battery"`; its
    /// state of charge is `initial_soc_wh` at midnight UTC of the day it
    /// joined and is recomputed from its stored readings, so its
    /// timeframes are cleared in time order (a range after an open
    /// timeframe, or before a cleared one, is a `ConflictError` of kind
    /// `battery_history`). The battery is not stored: pass it again when
    /// the books are opened again.
    fn with_battery(&self, battery: &Any<'_>) -> Result<Grid> {
        let spec = arg("battery", battery, |v| {
            v.cast::<crate::battery::Battery>()
                .map(|b| b.get().inner.clone())
                .map_err(|_| Error::wrong_type(v, "a microgrid.Battery"))
        })?;
        Ok(Grid {
            inner: Arc::new((*self.inner).clone().with_battery(spec)),
        })
    }

    /// The community battery of these books (`with_battery`), if any.
    #[getter]
    fn battery(&self) -> Option<crate::battery::Battery> {
        self.inner
            .battery()
            .map(|b| crate::battery::Battery { inner: b.clone() })
    }

    /// The battery per cleared timeframe of `[start, end)` in which it has
    /// a reading, as columns: `start`, `soc_start_wh`, `charged_wh`,
    /// `stored_wh`, `loss_wh`, `discharged_wh`, `soc_end_wh`.
    fn battery_states(&self, py: Python<'_>, start: &Any<'_>, end: &Any<'_>) -> Result<Py<PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let grid = self.inner.clone();
        let steps = block_on(py, async move { Ok(grid.battery_states(&r).await?) })?;
        crate::battery::state_dict(
            py,
            &microgrid_core::views::BatteryColumns::from_steps(&steps),
        )
    }

    /// `battery_states` as an Arrow table (PyCapsule interface).
    fn battery_states_arrow(
        &self,
        py: Python<'_>,
        start: &Any<'_>,
        end: &Any<'_>,
    ) -> Result<PyTable> {
        let r = range(start, end, self.inner.length())?;
        let grid = self.inner.clone();
        block_on(py, async move {
            let steps = grid.battery_states(&r).await?;
            crate::battery::state_table(microgrid_core::views::BatteryColumns::from_steps(&steps))
        })
    }
}
