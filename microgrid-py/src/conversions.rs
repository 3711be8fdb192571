//! Typed extraction of Python arguments: `Wrap<T>` is a `FromPyObject` for
//! each domain type `T`, so a method takes `Wrap<Price>` or
//! `Wrap<DateTime<Utc>>` and the rules (tz-aware datetimes only, exact
//! decimals only, names or enum members) live here once.
//!
//! Extraction errors are `ValidationError`s naming the value.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use microgrid_core::tariff::Tariff as CoreTariff;
use microgrid_core::{
    Mechanism, Network, PayoutAddress, Price, Prosumer, ProsumerId, ProsumerKind, TimeRange,
    TimeframeLength,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString};
use rust_decimal::Decimal;

use crate::errors::{Error, Result};

/// A Python value as a `T`.
pub struct Wrap<T>(pub T);

impl<T> Wrap<T> {
    /// The value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Extracts with `f`, turning its error into a Python error.
fn extract_with<T>(
    obj: Borrowed<'_, '_, PyAny>,
    f: impl FnOnce(&Bound<'_, PyAny>) -> Result<T>,
) -> PyResult<Wrap<T>> {
    f(&obj.to_owned()).map(Wrap).map_err(PyErr::from)
}

/// A timezone-aware `datetime` as UTC; naive datetimes are refused.
pub fn utc(value: &Bound<'_, PyAny>) -> Result<DateTime<Utc>> {
    let tz = value
        .getattr("tzinfo")
        .map_err(|_| Error::validation(format!("expected a datetime, got {value}")))?;
    if tz.is_none() {
        return Err(Error::validation(format!(
            "{value} is a naive datetime; use a timezone-aware one, e.g. datetime(2026, 6, 1, tzinfo=timezone.utc)"
        )));
    }
    let dt: DateTime<FixedOffset> = value
        .extract()
        .map_err(|e| Error::validation(format!("{value}: {e}")))?;
    Ok(dt.with_timezone(&Utc))
}

impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<DateTime<Utc>> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, utc)
    }
}

/// An exact decimal from `decimal.Decimal`, `int` or `str`; floats are
/// refused because they are not exact.
pub fn decimal(value: &Bound<'_, PyAny>) -> Result<Decimal> {
    if value.is_instance_of::<PyFloat>() {
        return Err(Error::validation(format!(
            "{value} is a float; money must be exact: pass decimal.Decimal(\"{value}\") or a string"
        )));
    }
    let text = value.str()?.to_string();
    Decimal::from_str_exact(text.trim())
        .map_err(|_| Error::validation(format!("not a decimal number: {text:?}")))
}

impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<Decimal> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, decimal)
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<Price> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |v| Ok(Price::new(decimal(v)?)?))
    }
}

/// The name of a `str` enum member (its `value`) or a plain string.
fn name(value: &Bound<'_, PyAny>) -> Result<String> {
    let named = match value.getattr("value") {
        Ok(v) => v,
        Err(_) => value.clone(),
    };
    Ok(named.str()?.to_string())
}

/// A mechanism by name (`"sdr"`, `"mmr"`, `"bill_sharing"`, `"fixed:0.15"`)
/// or by a `microgrid.Mechanism` member.
impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<Mechanism> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |v| Ok(name(v)?.parse()?))
    }
}

/// A prosumer kind by name or `microgrid.ProsumerKind` member.
impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<ProsumerKind> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |v| Ok(name(v)?.parse()?))
    }
}

/// A bitcoin network by name.
impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<Network> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |v| Ok(name(v)?.parse()?))
    }
}

/// A prosumer id (a string checked by the core).
impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<ProsumerId> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |v| {
            let s = v
                .cast::<PyString>()
                .map_err(|_| Error::validation(format!("a prosumer id must be a str, got {v}")))?;
            Ok(ProsumerId::new(s.to_str()?)?)
        })
    }
}

/// A `microgrid.Tariff`.
impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<CoreTariff> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |v| {
            v.cast::<crate::tariff::Tariff>()
                .map(|t| t.get().inner.clone())
                .map_err(|_| Error::validation("tariff must be a microgrid.Tariff"))
        })
    }
}

/// Whether `value` is a missing value: `None`, NaN or NaT (anything that
/// is not equal to itself).
pub fn is_missing(value: &Bound<'_, PyAny>) -> Result<bool> {
    Ok(value.is_none() || !value.eq(value)?)
}

/// A date, from a `date`, a `datetime` or a pandas `Timestamp` (its date).
fn date(value: &Bound<'_, PyAny>) -> Result<NaiveDate> {
    value
        .extract::<NaiveDate>()
        .map_err(|_| Error::validation(format!("expected a date, got {value}")))
}

/// A prosumer from a mapping (`dict`, a pandas or polars row) with keys
/// `id`, `name`, `kind`, `joined` and optionally `left`, `address` and
/// `network` (default "regtest"); missing values (None, NaN, NaT) are
/// absent.
impl<'a, 'py> FromPyObject<'a, 'py> for Wrap<Prosumer> {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        extract_with(obj, |row| {
            let get = |key: &str| -> Result<Option<Bound<'_, PyAny>>> {
                let v = match row.cast::<PyDict>() {
                    Ok(d) => d.get_item(key)?,
                    Err(_) => row.get_item(key).ok(),
                };
                match v {
                    Some(v) if !is_missing(&v)? => Ok(Some(v)),
                    _ => Ok(None),
                }
            };
            let need = |key: &str| {
                get(key)?.ok_or_else(|| Error::validation(format!("prosumer {row} has no {key:?}")))
            };
            let text = |v: Bound<'_, PyAny>| -> Result<String> { Ok(v.str()?.to_string()) };
            let kind: Wrap<ProsumerKind> = need("kind")?.extract()?;
            let mut p = Prosumer::new(
                text(need("id")?)?,
                text(need("name")?)?,
                kind.0,
                date(&need("joined")?)?,
            )?;
            if let Some(left) = get("left")? {
                p = p.with_left(date(&left)?)?;
            }
            if let Some(address) = get("address")? {
                let network = match get("network")? {
                    Some(n) => n.extract::<Wrap<Network>>()?.0,
                    None => Network::Regtest,
                };
                p = p.with_payout(PayoutAddress::new(&text(address)?, network)?);
            }
            Ok(p)
        })
    }
}

/// An `int` that is not a `bool` (energies are whole watt-hours; `True`
/// is not a watt-hour).
pub fn whole(value: &Bound<'_, PyAny>) -> Result<i64> {
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() {
        return Err(Error::validation(format!(
            "{value} is not an integer; energies are whole watt-hours (int)"
        )));
    }
    value
        .extract::<i64>()
        .map_err(|_| Error::validation(format!("{value} is not an integer number of watt-hours")))
}

/// The range `[start, end)` of `length` timeframes.
pub fn range(
    start: Wrap<DateTime<Utc>>,
    end: Wrap<DateTime<Utc>>,
    length: TimeframeLength,
) -> Result<TimeRange> {
    Ok(TimeRange::new(start.0, end.0, length)?)
}
