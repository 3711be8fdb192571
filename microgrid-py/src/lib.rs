//! Python bindings for `microgrid`: a thin layer that converts Python
//! values to the core's types and back; every rule lives in the Rust
//! crates. The Python package `microgrid` re-exports this module.

mod arrow_views;
mod battery;
mod conversions;
mod distributed;
mod errors;
mod grid;
mod input;
mod lightning;
mod runtime;
mod settlement;
mod simulate;
mod tariff;

use pyo3::prelude::*;

/// The native module `microgrid._microgrid`.
#[pymodule]
fn _microgrid(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<grid::Grid>()?;
    m.add_class::<tariff::Tariff>()?;
    m.add_class::<battery::Battery>()?;
    m.add_class::<settlement::Settlement>()?;
    m.add_class::<settlement::OperatorWallet>()?;
    m.add_class::<distributed::BillingPart>()?;
    m.add_function(wrap_pyfunction!(simulate::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(simulate::regtest_address, m)?)?;
    m.add_function(wrap_pyfunction!(lightning::check_offer, m)?)?;
    m.add_function(wrap_pyfunction!(lightning::check_bolt11, m)?)?;
    m.add_function(wrap_pyfunction!(lightning::invoice_uri_with_lightning, m)?)?;
    errors::register(m)?;
    Ok(())
}
