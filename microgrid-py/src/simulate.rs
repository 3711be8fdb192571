//! `microgrid.simulate`: the core's seeded community generator, for
//! notebooks, examples and tests.

use chrono::NaiveDate;
use microgrid_core::simulate::Community;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::conversions::{arg, date, integer, opt_arg, text};
use crate::errors::{Error, Result};

/// The most readings one call simulates (a Python object per value: about
/// 2 GB of lists at this size).
pub const MAX_READINGS: u64 = 10_000_000;
/// The most households one call simulates.
pub const MAX_HOUSEHOLDS: usize = 1_000_000;
/// The most days one call simulates.
pub const MAX_DAYS: u32 = 3_660;

/// Readings of `households` simulated homes (70 % with solar) over `days`
/// days from `start`, as columns: start, prosumer_id, produced_wh,
/// consumed_wh. The same seed gives the same watt-hours everywhere. At
/// most 1,000,000 households, 3,660 days and 10,000,000 readings a call.
#[pyfunction]
#[pyo3(
    signature = (households, start, days, *, seed = None, timeframe_minutes = None),
    text_signature = "(households, start, days, *, seed=42, timeframe_minutes=15)"
)]
pub fn simulate<'py>(
    py: Python<'py>,
    households: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    days: &Bound<'py, PyAny>,
    seed: Option<&Bound<'py, PyAny>>,
    timeframe_minutes: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyDict>> {
    let households = arg("households", households, integer::<usize>)?;
    let start: NaiveDate = arg("start", start, date)?;
    let days = arg("days", days, integer::<u32>)?;
    let seed = opt_arg("seed", seed, integer::<u64>)?.unwrap_or(42);
    let minutes = opt_arg("timeframe_minutes", timeframe_minutes, integer::<u32>)?.unwrap_or(15);
    let length = microgrid_core::TimeframeLength::new(minutes)
        .map_err(|e| Error::from(e).in_argument("timeframe_minutes"))?;
    let too_many =
        |name: &'static str, what: String| Error::invalid("out_of_range", what).in_argument(name);
    if households > MAX_HOUSEHOLDS {
        return Err(too_many(
            "households",
            format!("{households} households: at most {MAX_HOUSEHOLDS} are simulated"),
        )
        .with("value", households));
    }
    if days > MAX_DAYS {
        return Err(too_many(
            "days",
            format!("{days} days: at most {MAX_DAYS} are simulated"),
        )
        .with("value", days));
    }
    let readings = (households as u64)
        .saturating_mul(u64::from(days))
        .saturating_mul(u64::from(length.per_day()));
    if readings > MAX_READINGS {
        return Err(too_many(
            "households",
            format!(
                "{households} households over {days} days are {readings} readings: at most {MAX_READINGS} are simulated"
            ),
        )
        .with("value", households));
    }
    // Python's dates end with the year 9999.
    let last = NaiveDate::from_ymd_opt(10_000, 1, 1);
    if start
        .checked_add_days(chrono::Days::new(u64::from(days)))
        .is_none_or(|end| Some(end) > last)
    {
        return Err(too_many(
            "days",
            format!("{start} plus {days} days is past the year 9999"),
        )
        .with("value", days));
    }
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

/// A made-up but valid regtest payout address, the same for the same
/// `seed`: `output_type` is `"p2wpkh"` (the default), `"p2pkh"` or
/// `"p2tr"`. For examples and tests, one per member: nobody holds its keys.
#[pyfunction]
#[pyo3(
    signature = (seed, output_type = None),
    text_signature = "(seed, output_type='p2wpkh')"
)]
pub fn regtest_address(
    seed: &Bound<'_, PyAny>,
    output_type: Option<&Bound<'_, PyAny>>,
) -> Result<String> {
    use microgrid_core::OutputType;
    let seed = arg("seed", seed, integer::<u64>)?;
    let name = opt_arg("output_type", output_type, text)?;
    let output_type = match name.as_deref() {
        None | Some("p2wpkh") => OutputType::P2wpkh,
        Some("p2pkh") => OutputType::P2pkh,
        Some("p2tr") => OutputType::P2tr,
        Some(other) => {
            return Err(Error::invalid(
                "invalid_value",
                format!("output type {other:?}: one of \"p2wpkh\", \"p2pkh\", \"p2tr\""),
            )
            .in_argument("output_type")
            .with("value", other));
        }
    };
    Ok(microgrid_core::simulate::regtest_address(seed, output_type)
        .as_str()
        .to_owned())
}
