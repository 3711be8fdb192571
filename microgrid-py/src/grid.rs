//! `microgrid.Grid`: the pipeline on a store opened by URL.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use microgrid_core::settlement::ExchangeRate;
use microgrid_core::{
    Allocation, PayoutAddress, Prosumer, ProsumerId, Reading, Timeframe, TimeframeLength, Wh,
};
use microgrid_store::{AnyStore, Grid as StoreGrid};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::conversions::{decimal, range, utc};
use crate::errors::{core_error, store_error, ValidationError};
use crate::runtime::block_on;
use crate::settlement::Settlement;

/// The books of one microgrid on a store: `Grid()` in memory,
/// `Grid("sqlite:books.db")`, `Grid("postgres://...")` or
/// `Grid("mongodb://...")`.
#[pyclass(module = "microgrid", frozen)]
pub struct Grid {
    inner: Arc<StoreGrid<AnyStore>>,
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

#[pymethods]
impl Grid {
    #[new]
    #[pyo3(signature = (url = "memory:", *, timeframe_minutes = 15))]
    fn new(py: Python<'_>, url: &str, timeframe_minutes: u32) -> PyResult<Grid> {
        let length = TimeframeLength::new(timeframe_minutes).map_err(core_error)?;
        let url = url.to_owned();
        let store = block_on(py, async move {
            AnyStore::open(&url).await.map_err(store_error)
        })?;
        Ok(Grid {
            inner: Arc::new(StoreGrid::new(store, length)),
        })
    }

    /// Timeframe length in minutes.
    #[getter]
    fn timeframe_minutes(&self) -> u32 {
        self.inner.length().minutes()
    }

    /// Registers a prosumer. `kind` is a `ProsumerKind` or its name;
    /// `address` a bitcoin payout address on `network`.
    #[pyo3(signature = (id, name, kind, joined, *, left = None, address = None, network = "regtest"))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        id: &str,
        name: &str,
        kind: &Bound<'_, PyAny>,
        joined: NaiveDate,
        left: Option<NaiveDate>,
        address: Option<&str>,
        network: &str,
    ) -> PyResult<()> {
        let mut p =
            Prosumer::new(id, name, crate::conversions::kind(kind)?, joined).map_err(core_error)?;
        if let Some(left) = left {
            p = p.with_left(left).map_err(core_error)?;
        }
        if let Some(a) = address {
            p = p.with_payout(
                PayoutAddress::new(a, crate::conversions::network(network)?).map_err(core_error)?,
            );
        }
        let grid = self.inner.clone();
        block_on(
            py,
            async move { grid.register(p).await.map_err(store_error) },
        )
    }

    /// The registered prosumers as a list of dicts.
    fn prosumers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let grid = self.inner.clone();
        let registry = block_on(
            py,
            async move { grid.registry().await.map_err(store_error) },
        )?;
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
                Ok(d)
            })
            .collect()
    }

    /// Records readings given as columns: `start` (tz-aware datetimes),
    /// `prosumer_id`, `produced_wh`, `consumed_wh` (ints). The batch is
    /// checked whole; nothing of a rejected batch is stored. Returns a dict
    /// with inserted, replaced and unchanged counts.
    fn record<'py>(
        &self,
        py: Python<'py>,
        start: Vec<Bound<'py, PyAny>>,
        prosumer_id: Vec<String>,
        produced_wh: Vec<i64>,
        consumed_wh: Vec<i64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let seconds = start
            .iter()
            .map(|s| utc(s, "start").map(|t| t.timestamp()))
            .collect::<PyResult<Vec<i64>>>()?;
        let codes: Vec<i64> = (0..prosumer_id.len() as i64).collect();
        self.record_columns(py, seconds, codes, prosumer_id, produced_wh, consumed_wh)
    }

    /// The fast path for columnar data: `start_s` as Unix seconds (UTC),
    /// `codes` indexing `prosumer_ids` (as `pandas.factorize` gives them),
    /// and the energies. No Python object is made per row.
    fn record_columns<'py>(
        &self,
        py: Python<'py>,
        start_s: Vec<i64>,
        codes: Vec<i64>,
        prosumer_ids: Vec<String>,
        produced_wh: Vec<i64>,
        consumed_wh: Vec<i64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let n = start_s.len();
        if codes.len() != n || produced_wh.len() != n || consumed_wh.len() != n {
            return Err(ValidationError::new_err(format!(
                "columns differ in length: {n} starts, {} prosumers, {} produced, {} consumed",
                codes.len(),
                produced_wh.len(),
                consumed_wh.len()
            )));
        }
        let length = self.inner.length();
        let grid = self.inner.clone();
        let report = block_on(py, async move {
            let ids = prosumer_ids
                .into_iter()
                .map(ProsumerId::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(core_error)?;
            let mut batch = Vec::with_capacity(n);
            for i in 0..n {
                let start = DateTime::<Utc>::from_timestamp(start_s[i], 0).ok_or_else(|| {
                    ValidationError::new_err(format!("start {} is out of range", start_s[i]))
                })?;
                let id = usize::try_from(codes[i])
                    .ok()
                    .and_then(|c| ids.get(c))
                    .ok_or_else(|| {
                        ValidationError::new_err(format!("prosumer code {} has no id", codes[i]))
                    })?;
                let tf = Timeframe::new(start, length).map_err(core_error)?;
                let r = Reading::new(
                    id.clone(),
                    tf,
                    Wh::new(produced_wh[i]),
                    Wh::new(consumed_wh[i]),
                )
                .map_err(core_error)?;
                batch.push(r);
            }
            grid.record(batch).await.map_err(store_error)
        })?;
        let d = PyDict::new(py);
        d.set_item("inserted", report.inserted)?;
        d.set_item("replaced", report.replaced)?;
        d.set_item("unchanged", report.unchanged)?;
        Ok(d)
    }

    /// Clears every timeframe of `[start, end)` not cleared yet with
    /// `mechanism` (a `Mechanism` or a name such as "sdr" or "fixed:0.15")
    /// at the tariff's grid prices.
    fn clear<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        mechanism: &Bound<'py, PyAny>,
        tariff: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let m = crate::conversions::mechanism(mechanism)?;
        let t = crate::tariff::tariff(tariff)?;
        let grid = self.inner.clone();
        let report = block_on(py, async move {
            grid.clear(&r, &t, &m).await.map_err(store_error)
        })?;
        let d = PyDict::new(py);
        d.set_item("cleared", report.cleared)?;
        d.set_item("already_cleared", report.already_cleared)?;
        Ok(d)
    }

    /// The grid as a whole per cleared timeframe, as columns.
    fn summaries<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let grid = self.inner.clone();
        let rows = block_on(
            py,
            async move { grid.summaries(&r).await.map_err(store_error) },
        )?;
        let wh = |f: fn(&microgrid_core::TimeframeSummary) -> Wh| {
            rows.iter().map(|s| f(s).get()).collect::<Vec<i64>>()
        };
        columns(
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
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
                (
                    "sell_price_per_kwh",
                    rows.iter()
                        .map(|s| s.sell_price().map(|p| p.per_kwh()))
                        .collect::<Vec<_>>()
                        .into_pyobject(py)?
                        .into_any(),
                ),
            ],
        )
    }

    /// One prosumer per cleared timeframe, as columns.
    fn prosumer<'py>(
        &self,
        py: Python<'py>,
        id: &str,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let id = ProsumerId::new(id).map_err(core_error)?;
        let grid = self.inner.clone();
        let rows = block_on(py, async move {
            grid.prosumer(&id, &r).await.map_err(store_error)
        })?;
        allocation_columns(py, &rows)
    }

    /// The bilateral trades of `[start, end)` (of one prosumer, or all), as
    /// columns.
    #[pyo3(signature = (start, end, prosumer_id = None))]
    fn trades<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        prosumer_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = range(start, end, self.inner.length())?;
        let id = prosumer_id
            .map(ProsumerId::new)
            .transpose()
            .map_err(core_error)?;
        let grid = self.inner.clone();
        let rows = block_on(py, async move {
            grid.trades(&r, id.as_ref()).await.map_err(store_error)
        })?;
        columns(
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
        )
    }

    /// Bills `[start, end)`: one dict per member with its lines, total,
    /// baseline and saving (decimal.Decimal in the tariff's currency).
    fn bill<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        tariff: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let r = range(start, end, self.inner.length())?;
        let t = crate::tariff::tariff(tariff)?;
        let grid = self.inner.clone();
        let bills = block_on(
            py,
            async move { grid.bill(&r, &t).await.map_err(store_error) },
        )?;
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
                d.set_item("fixed_fee", b.fixed_fee)?;
                d.set_item("operator_margin", b.operator_margin)?;
                d.set_item("total", b.total)?;
                d.set_item("baseline", b.baseline)?;
                d.set_item("saving", b.saving)?;
                Ok(d)
            })
            .collect()
    }

    /// Bills and settles `[start, end)` at `rate` (tariff currency per BTC,
    /// a decimal), paying out on `network` with invoices to
    /// `operator_address`. Settling again with the same inputs returns the
    /// stored settlement.
    #[pyo3(signature = (start, end, tariff, *, rate, operator_address, network = "regtest", rate_source = "manual"))]
    #[allow(clippy::too_many_arguments)]
    fn settle<'py>(
        &self,
        py: Python<'py>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        tariff: &Bound<'py, PyAny>,
        rate: &Bound<'py, PyAny>,
        operator_address: &str,
        network: &str,
        rate_source: &str,
    ) -> PyResult<Settlement> {
        let r = range(start, end, self.inner.length())?;
        let t = crate::tariff::tariff(tariff)?;
        let net = crate::conversions::network(network)?;
        let operator = PayoutAddress::new(operator_address, net).map_err(core_error)?;
        let rate = ExchangeRate::new(decimal(rate, "rate")?, t.currency(), rate_source, r.end())
            .map_err(core_error)?;
        let grid = self.inner.clone();
        let inner = block_on(py, async move {
            grid.settle(&r, &t, &rate, net, &operator)
                .await
                .map_err(store_error)
        })?;
        Ok(Settlement { inner })
    }

    /// The stored settlement with `id`, or None.
    fn settlement(&self, py: Python<'_>, id: &str) -> PyResult<Option<Settlement>> {
        let grid = self.inner.clone();
        let id = id.to_owned();
        let s = block_on(py, async move {
            grid.settlement(&id).await.map_err(store_error)
        })?;
        Ok(s.map(|inner| Settlement { inner }))
    }

    /// Marks settlement `id` paid by transaction `txid` (64 hex characters).
    fn mark_paid(&self, py: Python<'_>, id: &str, txid: &str) -> PyResult<Settlement> {
        let grid = self.inner.clone();
        let (id, txid) = (id.to_owned(), txid.to_owned());
        let inner = block_on(py, async move {
            grid.mark_paid(&id, &txid).await.map_err(store_error)
        })?;
        Ok(Settlement { inner })
    }
}
