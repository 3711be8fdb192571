//! `microgrid.simulate`: the core's seeded community generator, for
//! notebooks, examples and tests.

use chrono::NaiveDate;
use microgrid_core::simulate::Community;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::Result;

/// Readings of `households` simulated homes (70 % with solar) over `days`
/// days from `start`, as columns: start, prosumer_id, produced_wh,
/// consumed_wh. The same seed gives the same watt-hours everywhere.
#[pyfunction]
#[pyo3(signature = (households, start, days, *, seed = 42, timeframe_minutes = 15))]
pub fn simulate<'py>(
    py: Python<'py>,
    households: usize,
    start: NaiveDate,
    days: u32,
    seed: u64,
    timeframe_minutes: u32,
) -> Result<Bound<'py, PyDict>> {
    let length = microgrid_core::TimeframeLength::new(timeframe_minutes)?;
    let readings = Community::new(households, start, days, seed)
        .with_length(length)
        .readings()?;
    let d = PyDict::new(py);
    d.set_item(
        "start",
        readings
            .iter()
            .map(|r| r.timeframe().start())
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "prosumer_id",
        readings
            .iter()
            .map(|r| r.prosumer().to_string())
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "produced_wh",
        readings
            .iter()
            .map(|r| r.produced().get())
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "consumed_wh",
        readings
            .iter()
            .map(|r| r.consumed().get())
            .collect::<Vec<_>>(),
    )?;
    Ok(d)
}
