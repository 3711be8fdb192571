//! Arguments from Python, by hand: every method takes its arguments as
//! Python objects and converts them here with [`arg`], so that a value of
//! the wrong type is a `ValidationError` naming the argument (never the
//! `TypeError` of PyO3's own extraction), and the rules live here once:
//!
//! - times: timezone-aware `datetime`s of whole seconds; naive ones are
//!   `"naive_datetime"`, fractions of a second `"subsecond_time"` (refused,
//!   not rounded);
//! - money: `decimal.Decimal` (finite), `str` or `int` (numpy integers
//!   too); floats of any width and bools are `"invalid_type"`;
//! - energies: `int` (numpy integers too); bools, floats and decimals are
//!   `"invalid_type"`;
//! - counts and sizes: `int`, range-checked (`"out_of_range"`);
//! - names, ids, addresses, URLs: `str` (a `str` enum member counts).

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use microgrid_core::tariff::Tariff as CoreTariff;
use microgrid_core::{
    Mechanism, Network, PayoutAddress, Prosumer, ProsumerId, ProsumerKind, TimeRange,
    TimeframeLength,
};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyDate, PyDateTime, PyDict, PyFloat, PyInt, PyMapping, PyString, PyType,
};
use rust_decimal::Decimal;

use crate::errors::{Error, Result};

/// Converts argument `name` with `f`: its errors name the argument.
pub fn arg<'py, T>(
    name: &'static str,
    value: &Bound<'py, PyAny>,
    f: impl FnOnce(&Bound<'py, PyAny>) -> Result<T>,
) -> Result<T> {
    f(value).map_err(|e| e.in_argument(name))
}

/// Converts optional argument `name` with `f`; `None` is absent.
pub fn opt_arg<'py, T>(
    name: &'static str,
    value: Option<&Bound<'py, PyAny>>,
    f: impl FnOnce(&Bound<'py, PyAny>) -> Result<T>,
) -> Result<Option<T>> {
    match value {
        Some(v) if !v.is_none() => arg(name, v, f).map(Some),
        _ => Ok(None),
    }
}

/// Whether `value` is a `bool` or a numpy `bool_`.
pub fn is_bool(value: &Bound<'_, PyAny>) -> bool {
    if value.is_instance_of::<PyBool>() {
        return true;
    }
    let t = value.get_type();
    let module = t.module().map(|m| m.to_string_lossy().into_owned());
    let name = t.name().map(|n| n.to_string_lossy().into_owned());
    matches!(
        (module.as_deref(), name.as_deref()),
        (Ok("numpy"), Ok("bool" | "bool_"))
    )
}

/// `value` as a Python `int`, if it is an integer: an `int` or anything
/// with `__index__` (numpy integers), but not a `bool`.
fn as_int<'py>(value: &Bound<'py, PyAny>) -> Result<Option<Bound<'py, PyInt>>> {
    if is_bool(value) || value.is_instance_of::<PyFloat>() {
        return Ok(None);
    }
    if let Ok(i) = value.cast::<PyInt>() {
        return Ok(Some(i.clone()));
    }
    if !value.hasattr("__index__").unwrap_or(false) {
        return Ok(None);
    }
    match value.call_method0("__index__") {
        Ok(i) => Ok(i.cast_into::<PyInt>().ok()),
        // A numpy array of several values, say: not an integer.
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(value.py()) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An integer of `T` (`u32`, `u64`, `usize`, `i64`): `bool`s, floats and
/// decimals are refused.
pub fn integer<'py, T>(value: &Bound<'py, PyAny>) -> Result<T>
where
    T: for<'a> FromPyObject<'a, 'py> + Bounds,
{
    let Some(i) = as_int(value)? else {
        return Err(Error::wrong_type(value, "an int"));
    };
    i.extract::<T>().map_err(|_| {
        Error::invalid(
            "out_of_range",
            format!("{i} is outside {}..={}", T::MIN, T::MAX),
        )
        .with("value", value)
    })
}

/// The range of an integer type, for messages.
pub trait Bounds {
    /// The smallest value.
    const MIN: i128;
    /// The largest value.
    const MAX: u128;
}
macro_rules! bounds {
    ($($t:ty),*) => {$(
        impl Bounds for $t {
            const MIN: i128 = <$t>::MIN as i128;
            const MAX: u128 = <$t>::MAX as u128;
        }
    )*};
}
bounds!(u32, u64, usize, i64);

/// A flag: `True` or `False` (or a numpy `bool_`) only.
pub fn flag(value: &Bound<'_, PyAny>) -> Result<bool> {
    if !is_bool(value) {
        return Err(Error::wrong_type(value, "True or False"));
    }
    Ok(value.is_truthy()?)
}

/// A `str` (a `str` subclass, such as a `str` enum member, as its value).
pub fn text(value: &Bound<'_, PyAny>) -> Result<String> {
    let s = value
        .cast::<PyString>()
        .map_err(|_| Error::wrong_type(value, "a str"))?;
    Ok(s.to_str()
        .map_err(|_| {
            Error::validation("the string is not valid Unicode (it has lone surrogates)")
                .with("value", value)
        })?
        .to_owned())
}

/// Whether `value` is a numpy floating-point scalar (`float16`,
/// `float32`, `longdouble`, ...; `float64` is a `float`).
fn is_numpy_float(value: &Bound<'_, PyAny>) -> bool {
    let t = value.get_type();
    let numpy = t
        .module()
        .map(|m| m.to_string_lossy() == "numpy")
        .unwrap_or(false);
    let name = t
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    numpy && (name.contains("float") || name.contains("double") || name == "half")
}

/// The `decimal.Decimal` type.
fn decimal_type(py: Python<'_>) -> Result<&Bound<'_, PyType>> {
    static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    Ok(DECIMAL.import(py, "decimal", "Decimal")?)
}

/// What money is, for messages.
const MONEY: &str = "a decimal.Decimal, str or int (money must be exact)";

/// An exact decimal from `decimal.Decimal` (finite), `int` (numpy integers
/// too) or `str`; floats of any width (Python, numpy `float16`..`float64`)
/// and bools are refused because they are not exact (or not money).
pub fn decimal(value: &Bound<'_, PyAny>) -> Result<Decimal> {
    if value.is_instance_of::<PyString>() {
        let s = text(value)?;
        // Digits with an optional sign and decimal point only: no digit
        // separators ("1_000"), exponents or white space inside.
        let digits = s.trim().trim_start_matches(['+', '-']);
        let plain = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits.bytes().filter(|&b| b == b'.').count() <= 1
            && digits.bytes().any(|b| b.is_ascii_digit());
        if !plain {
            return Err(
                Error::validation(format!("not a decimal number: {}", shown(value)))
                    .with("value", value),
            );
        }
        return Decimal::from_str_exact(s.trim()).map_err(|_| {
            Error::validation(format!("not a decimal number: {}", shown(value)))
                .with("value", value)
        });
    }
    if value.is_instance(decimal_type(value.py())?)? {
        return exact(value);
    }
    if value.is_instance_of::<PyFloat>() || is_numpy_float(value) {
        return Err(Error::invalid(
            "invalid_type",
            format!(
                "{} is a float ({}); money must be exact: pass decimal.Decimal(\"{}\") or a string",
                shown(value),
                crate::errors::type_name(value),
                value.str()?
            ),
        )
        .with("value", value)
        .with("type", crate::errors::type_name(value)));
    }
    match as_int(value)? {
        Some(i) => Decimal::from_str_exact(&i.str()?.to_string_lossy()).map_err(|_| {
            Error::invalid(
                "out_of_range",
                format!("{i} does not fit a decimal of 28 digits"),
            )
            .with("value", value)
        }),
        None => Err(Error::wrong_type(value, MONEY)),
    }
}

/// A finite `decimal.Decimal` exactly, from its digits and exponent (never
/// by its text, which for `1E+999999999` is a billion digits).
fn exact(value: &Bound<'_, PyAny>) -> Result<Decimal> {
    let out_of_range = || {
        Error::invalid(
            "out_of_range",
            format!(
                "{} does not fit a decimal of 28 digits (and 28 decimal places)",
                shown(value)
            ),
        )
        .with("value", value)
    };
    if !value.call_method0("is_finite")?.is_truthy()? {
        return Err(
            Error::validation(format!("{} is not a finite number", shown(value)))
                .with("value", value),
        );
    }
    let (sign, digits, exponent): (u8, Vec<u8>, i64) = value
        .call_method0("as_tuple")?
        .extract()
        .map_err(|_| out_of_range())?;
    let mut digits: &[u8] = &digits;
    while let [0, rest @ ..] = digits {
        digits = rest;
    }
    if digits.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let mut exponent = exponent;
    while let [rest @ .., 0] = digits {
        if exponent >= 0 {
            break;
        }
        digits = rest;
        exponent += 1;
    }
    let places = u32::try_from(exponent.min(0).unsigned_abs()).map_err(|_| out_of_range())?;
    let zeros = usize::try_from(exponent.max(0)).map_err(|_| out_of_range())?;
    if places > 28 || digits.len().saturating_add(zeros) > 29 {
        return Err(out_of_range());
    }
    let mut mantissa: i128 = 0;
    for &d in digits.iter().chain(std::iter::repeat_n(&0, zeros)) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(d)))
            .ok_or_else(out_of_range)?;
    }
    if sign == 1 {
        mantissa = -mantissa;
    }
    Decimal::try_from_i128_with_scale(mantissa, places).map_err(|_| out_of_range())
}

/// `value`'s repr, shortened for a message.
pub fn shown(value: &Bound<'_, PyAny>) -> String {
    let r = value
        .repr()
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "<unprintable>".to_owned());
    if r.chars().count() > 80 {
        r.chars().take(77).chain("...".chars()).collect()
    } else {
        r
    }
}

/// A timezone-aware `datetime` of whole seconds, as UTC; naive datetimes
/// and fractions of a second are refused.
pub fn utc(value: &Bound<'_, PyAny>) -> Result<DateTime<Utc>> {
    if is_missing(value)? {
        return Err(
            Error::invalid("missing_value", "a time is missing (None, NaT)").with("value", value),
        );
    }
    if !value.is_instance_of::<PyDateTime>() {
        return Err(Error::wrong_type(value, "a timezone-aware datetime"));
    }
    if value.getattr("tzinfo")?.is_none() || value.call_method0("utcoffset")?.is_none() {
        return Err(Error::invalid(
            "naive_datetime",
            format!(
                "{} is a naive datetime; use a timezone-aware one, e.g. datetime(2026, 6, 1, tzinfo=timezone.utc)",
                value.str()?
            ),
        )
        .with("value", value));
    }
    let micros: u32 = value.getattr("microsecond")?.extract()?;
    let nanos: u32 = match value.getattr("nanosecond") {
        Ok(n) => n.extract().unwrap_or(0),
        Err(_) => 0,
    };
    if micros != 0 || nanos != 0 {
        return Err(Error::invalid(
            "subsecond_time",
            format!(
                "{} is not a whole second (fractions are refused, not rounded)",
                value.str()?
            ),
        )
        .with("value", value));
    }
    let dt: DateTime<FixedOffset> = value
        .extract()
        .map_err(|e| Error::validation(format!("{}: {e}", shown(value))).with("value", value))?;
    Ok(dt.with_timezone(&Utc))
}

/// A date, from a `date` (or a `datetime`, pandas `Timestamp` at
/// midnight: its date; a time of day would be dropped, so it is refused).
pub fn date(value: &Bound<'_, PyAny>) -> Result<NaiveDate> {
    if !value.is_instance_of::<PyDate>() {
        return Err(Error::wrong_type(value, "a date"));
    }
    if value.is_instance_of::<PyDateTime>() {
        let midnight = ["hour", "minute", "second", "microsecond"]
            .iter()
            .all(|part| {
                value
                    .getattr(*part)
                    .and_then(|v| v.extract::<i64>())
                    .is_ok_and(|v| v == 0)
            });
        if !midnight {
            return Err(Error::invalid(
                "invalid_value",
                format!("{} is a time of day, not a date", shown(value)),
            )
            .with("value", value));
        }
    }
    value
        .extract::<NaiveDate>()
        .map_err(|e| Error::validation(format!("{}: {e}", shown(value))).with("value", value))
}

/// The name of a `str` enum member or a plain string; another enum's
/// member by its `str` value.
fn name(value: &Bound<'_, PyAny>) -> Result<String> {
    if value.is_instance_of::<PyString>() {
        return text(value);
    }
    let enum_type = value.py().import("enum")?.getattr("Enum")?;
    if value.is_instance(&enum_type)? {
        if let Ok(v) = value.getattr("value") {
            if v.is_instance_of::<PyString>() {
                return text(&v);
            }
        }
    }
    Err(Error::wrong_type(value, "a str (a name)"))
}

/// A mechanism by name (`"sdr"`, `"mmr"`, `"bill_sharing"`, `"fixed:0.15"`)
/// or by a `microgrid.Mechanism` member.
pub fn mechanism(value: &Bound<'_, PyAny>) -> Result<Mechanism> {
    Ok(name(value)?.parse()?)
}

/// A prosumer kind by name or `microgrid.ProsumerKind` member.
pub fn prosumer_kind(value: &Bound<'_, PyAny>) -> Result<ProsumerKind> {
    Ok(name(value)?.parse()?)
}

/// A bitcoin network by name.
pub fn network(value: &Bound<'_, PyAny>) -> Result<Network> {
    Ok(name(value)?.parse()?)
}

/// A prosumer id (a string checked by the core).
pub fn prosumer_id(value: &Bound<'_, PyAny>) -> Result<ProsumerId> {
    Ok(ProsumerId::new(text(value)?)?)
}

/// Prosumer ids: a sequence of `str` (a `str` itself is refused, it is
/// not a list of ids).
pub fn prosumer_ids(value: &Bound<'_, PyAny>) -> Result<Vec<ProsumerId>> {
    if value.is_instance_of::<PyString>() {
        return Err(Error::wrong_type(value, "a list of prosumer ids"));
    }
    let items = value
        .try_iter()
        .map_err(|_| Error::wrong_type(value, "a list of prosumer ids"))?;
    items
        .enumerate()
        .map(|(row, item)| prosumer_id(&item?).map_err(|e| e.at_row(row)))
        .collect()
}

/// A `microgrid.Tariff`.
pub fn tariff(value: &Bound<'_, PyAny>) -> Result<CoreTariff> {
    value
        .cast::<crate::tariff::Tariff>()
        .map(|t| t.get().inner.clone())
        .map_err(|_| Error::wrong_type(value, "a microgrid.Tariff"))
}

/// Whether `value` is a missing value: `None`, pandas' `NA` and `NaT`, or
/// NaN (anything that is not equal to itself; a value whose comparison
/// raises, a signaling NaN decimal, is not missing but refused later).
pub fn is_missing(value: &Bound<'_, PyAny>) -> Result<bool> {
    if value.is_none() {
        return Ok(true);
    }
    let name = value
        .get_type()
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "NAType" || name == "NaTType" {
        return Ok(true);
    }
    Ok(value.ne(value).unwrap_or(false))
}

/// A prosumer from a mapping (`dict`, a pandas or polars row) with keys
/// `id`, `name`, `kind`, `joined` and optionally `left`, `address` and
/// `network` (default "regtest"); missing values (None, NaN, NaT) are
/// absent.
pub fn prosumer(row: &Bound<'_, PyAny>) -> Result<Prosumer> {
    let get = |key: &'static str| -> Result<Option<Bound<'_, PyAny>>> {
        let v = if let Ok(d) = row.cast::<PyDict>() {
            d.get_item(key)?
        } else if let Ok(m) = row.cast::<PyMapping>() {
            match m.get_item(key) {
                Ok(v) => Some(v),
                Err(e) if e.is_instance_of::<PyKeyError>(row.py()) => None,
                Err(e) => return Err(Error::from(e).in_argument(key)),
            }
        } else {
            return Err(Error::wrong_type(row, "a dict (a prosumer's row)"));
        };
        match v {
            Some(v) if !is_missing(&v)? => Ok(Some(v)),
            _ => Ok(None),
        }
    };
    let need = |key: &'static str| {
        get(key)?.ok_or_else(|| {
            Error::invalid(
                "missing_value",
                format!("prosumer {} has no {key:?}", shown(row)),
            )
            .with("key", key)
        })
    };
    let id = arg("id", &need("id")?, text)?;
    let name = arg("name", &need("name")?, text)?;
    let kind = arg("kind", &need("kind")?, prosumer_kind)?;
    let joined = arg("joined", &need("joined")?, date)?;
    let mut p = Prosumer::new(id, name, kind, joined)?;
    if let Some(left) = get("left")? {
        p = p.with_left(arg("left", &left, date)?)?;
    }
    if let Some(address) = get("address")? {
        let network = match get("network")? {
            Some(n) => arg("network", &n, network)?,
            None => Network::Regtest,
        };
        p = p.with_payout(PayoutAddress::new(
            &arg("address", &address, text)?,
            network,
        )?);
    }
    Ok(p)
}

/// Whole watt-hours: an `int` (numpy integers too); bools, floats and
/// decimals are refused (energies are whole watt-hours; `True` is not a
/// watt-hour, and `100.9` is not `100`).
pub fn whole(value: &Bound<'_, PyAny>) -> Result<i64> {
    if is_missing(value)? {
        return Err(Error::invalid("missing_value", "a value is missing").with("value", value));
    }
    let Some(i) = as_int(value)? else {
        let ty = crate::errors::type_name(value);
        return Err(Error::invalid(
            "invalid_type",
            format!(
                "{} ({ty}) is not an integer; energies are whole watt-hours (int)",
                shown(value)
            ),
        )
        .with("value", value)
        .with("type", ty));
    };
    i.extract::<i64>().map_err(|_| {
        Error::invalid(
            "out_of_range",
            format!("{i} Wh does not fit a 64-bit integer"),
        )
        .with("value", value)
    })
}

/// The range `[start, end)` of `length` timeframes, from arguments `start`
/// and `end`.
pub fn range(
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    length: TimeframeLength,
) -> Result<TimeRange> {
    let start = arg("start", start, utc)?;
    let end = arg("end", end, utc)?;
    Ok(TimeRange::new(start, end, length)?)
}
