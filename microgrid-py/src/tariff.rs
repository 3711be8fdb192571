//! `microgrid.Tariff`.

use microgrid_core::tariff::Tariff as CoreTariff;
use microgrid_core::{Currency, GridPrices};
use pyo3::prelude::*;

use crate::conversions::{decimal, price};
use crate::errors::{core_error, ValidationError};

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
        import_price: &Bound<'_, PyAny>,
        export_price: &Bound<'_, PyAny>,
        currency: &str,
        grid_fee: Option<&Bound<'_, PyAny>>,
        fixed_fee: Option<&Bound<'_, PyAny>>,
        operator_margin: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Tariff> {
        let currency: Currency = currency.parse().map_err(core_error)?;
        let grid = GridPrices::new(
            price(import_price, "import_price")?,
            price(export_price, "export_price")?,
        )
        .map_err(core_error)?;
        let mut t = CoreTariff::new(currency, grid);
        if let Some(f) = grid_fee {
            t = t.with_grid_fee(price(f, "grid_fee")?);
        }
        if let Some(f) = fixed_fee {
            t = t
                .with_fixed_fee(decimal(f, "fixed_fee")?)
                .map_err(core_error)?;
        }
        if let Some(m) = operator_margin {
            t = t.with_operator_margin(price(m, "operator_margin")?);
        }
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

/// Rejects a tariff argument that is not a `Tariff`.
pub fn tariff(value: &Bound<'_, PyAny>) -> PyResult<CoreTariff> {
    value
        .extract::<Tariff>()
        .map(|t| t.inner)
        .map_err(|_| ValidationError::new_err("tariff must be a microgrid.Tariff"))
}
