//! `microgrid.Tariff`.

use microgrid_core::tariff::Tariff as CoreTariff;
use microgrid_core::{Currency, GridPrices, Price};
use pyo3::prelude::*;
use rust_decimal::Decimal;

use crate::conversions::Wrap;
use crate::errors::Result;

/// A tariff: the grid's import and export prices per kWh, a grid fee per
/// kWh imported, a fixed fee per member and period, and an operator margin
/// per kWh bought in the community. All amounts are `decimal.Decimal` (or
/// strings); floats are refused.
#[pyclass(module = "microgrid", frozen)]
#[derive(Clone)]
pub struct Tariff {
    pub inner: CoreTariff,
}

#[pymethods]
impl Tariff {
    #[new]
    #[pyo3(signature = (import_price, export_price, *, currency = "EUR", grid_fee = None, fixed_fee = None, operator_margin = None))]
    fn new(
        import_price: Wrap<Price>,
        export_price: Wrap<Price>,
        currency: &str,
        grid_fee: Option<Wrap<Price>>,
        fixed_fee: Option<Wrap<Decimal>>,
        operator_margin: Option<Wrap<Price>>,
    ) -> Result<Tariff> {
        let currency: Currency = currency.parse()?;
        let grid = GridPrices::new(import_price.0, export_price.0)?;
        let mut t = CoreTariff::new(currency, grid);
        if let Some(f) = grid_fee {
            t = t.with_grid_fee(f.0);
        }
        if let Some(f) = fixed_fee {
            t = t.with_fixed_fee(f.0)?;
        }
        if let Some(m) = operator_margin {
            t = t.with_operator_margin(m.0);
        }
        t.check()?;
        Ok(Tariff { inner: t })
    }

    /// The currency code.
    #[getter]
    fn currency(&self) -> String {
        self.inner.currency().to_string()
    }

    fn __repr__(&self) -> String {
        format!("Tariff(currency={:?})", self.inner.currency().to_string())
    }
}
