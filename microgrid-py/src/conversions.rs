//! Conversions between Python values and the core's types: tz-aware
//! `datetime` ↔ UTC, `decimal.Decimal` ↔ exact decimals (floats refused),
//! names ↔ enums.

use chrono::{DateTime, FixedOffset, Utc};
use microgrid_core::{Mechanism, Network, Price, ProsumerKind, TimeRange, TimeframeLength};
use pyo3::prelude::*;
use pyo3::types::PyFloat;
use rust_decimal::Decimal;

use crate::errors::{core_error, ValidationError};

/// A timezone-aware `datetime` as UTC; naive datetimes are refused.
pub fn utc(value: &Bound<'_, PyAny>, what: &str) -> PyResult<DateTime<Utc>> {
    let tz = value
        .getattr("tzinfo")
        .map_err(|_| ValidationError::new_err(format!("{what} must be a datetime, got {value}")))?;
    if tz.is_none() {
        return Err(ValidationError::new_err(format!(
            "{what} is a naive datetime ({value}); use a timezone-aware one, e.g. datetime(2026, 6, 1, tzinfo=timezone.utc)"
        )));
    }
    let dt: DateTime<FixedOffset> = value
        .extract()
        .map_err(|e| ValidationError::new_err(format!("{what}: {e}")))?;
    Ok(dt.with_timezone(&Utc))
}

/// An exact decimal from `decimal.Decimal`, `int` or `str`; floats are
/// refused because they are not exact.
pub fn decimal(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Decimal> {
    if value.is_instance_of::<PyFloat>() {
        return Err(ValidationError::new_err(format!(
            "{what} is a float ({value}); money must be exact: pass decimal.Decimal(\"{value}\") or a string"
        )));
    }
    let text = value.str()?.to_string();
    Decimal::from_str_exact(text.trim())
        .map_err(|_| ValidationError::new_err(format!("{what} is not a decimal number: {text:?}")))
}

/// A price per kWh.
pub fn price(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Price> {
    Price::new(decimal(value, what)?).map_err(core_error)
}

/// The range `[start, end)` of `length` timeframes.
pub fn range(
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    length: TimeframeLength,
) -> PyResult<TimeRange> {
    TimeRange::new(utc(start, "start")?, utc(end, "end")?, length).map_err(core_error)
}

/// A mechanism by name (`"sdr"`, `"mmr"`, `"bill_sharing"`, `"fixed:0.15"`)
/// or by a `microgrid.Mechanism` member.
pub fn mechanism(value: &Bound<'_, PyAny>) -> PyResult<Mechanism> {
    let name = match value.getattr("value") {
        Ok(v) => v.str()?.to_string(),
        Err(_) => value.str()?.to_string(),
    };
    name.parse().map_err(core_error)
}

/// A prosumer kind by name or `microgrid.ProsumerKind` member.
pub fn kind(value: &Bound<'_, PyAny>) -> PyResult<ProsumerKind> {
    let name = match value.getattr("value") {
        Ok(v) => v.str()?.to_string(),
        Err(_) => value.str()?.to_string(),
    };
    name.parse().map_err(core_error)
}

/// A bitcoin network by name.
pub fn network(name: &str) -> PyResult<Network> {
    name.parse().map_err(core_error)
}
