//! `microgrid.Tariff`.

use microgrid_core::tariff::Tariff as CoreTariff;
use microgrid_core::{Currency, GridPrices, Price};
use pyo3::prelude::*;

use crate::conversions::{arg, decimal, opt_arg, text};
use crate::errors::{Error, Result};

/// A price per kWh from argument `name`.
fn price(name: &'static str, value: &Bound<'_, PyAny>) -> Result<Price> {
    arg(name, value, |v| Ok(Price::new(decimal(v)?)?))
}

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
    #[pyo3(
        signature = (import_price, export_price, *, currency = None, grid_fee = None, fixed_fee = None, operator_margin = None),
        text_signature = "(import_price, export_price, *, currency='EUR', grid_fee=None, fixed_fee=None, operator_margin=None)"
    )]
    fn new(
        import_price: &Bound<'_, PyAny>,
        export_price: &Bound<'_, PyAny>,
        currency: Option<&Bound<'_, PyAny>>,
        grid_fee: Option<&Bound<'_, PyAny>>,
        fixed_fee: Option<&Bound<'_, PyAny>>,
        operator_margin: Option<&Bound<'_, PyAny>>,
    ) -> Result<Tariff> {
        let import_price = price("import_price", import_price)?;
        let export_price = price("export_price", export_price)?;
        let currency = opt_arg("currency", currency, |v| Ok(text(v)?.parse::<Currency>()?))?;
        let grid_fee = opt_arg("grid_fee", grid_fee, |v| price("grid_fee", v))?;
        let fixed_fee = opt_arg("fixed_fee", fixed_fee, decimal)?;
        let operator_margin = opt_arg("operator_margin", operator_margin, |v| {
            price("operator_margin", v)
        })?;
        let currency = match currency {
            Some(c) => c,
            None => "EUR".parse::<Currency>()?,
        };
        let grid = GridPrices::new(import_price, export_price)?;
        let mut t = CoreTariff::new(currency, grid);
        if let Some(f) = grid_fee {
            t = t.with_grid_fee(f);
        }
        if let Some(f) = fixed_fee {
            t = t
                .with_fixed_fee(f)
                .map_err(|e| Error::from(e).in_argument("fixed_fee"))?;
        }
        if let Some(m) = operator_margin {
            t = t.with_operator_margin(m);
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
