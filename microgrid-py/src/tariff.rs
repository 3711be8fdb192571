//! `microgrid.Tariff`.

use chrono::Weekday;
use microgrid_core::tariff::{time_zone, Months, Tariff as CoreTariff, TimeOfUse, Tz, Weekdays};
use microgrid_core::{Currency, GridPrices, GridTariff, Price, Timeframe, TimeframeLength};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyString, PyTime};
use rust_decimal::Decimal;

use crate::conversions::{arg, decimal, integer, opt_arg, shown, text, utc};
use crate::errors::{Error, Result};

/// A price per kWh from argument `name`.
fn price(name: &'static str, value: &Bound<'_, PyAny>) -> Result<Price> {
    arg(name, value, |v| Ok(Price::new(decimal(v)?)?))
}

/// A tariff: the grid's import and export prices per kWh (by time of use
/// in a local time zone, if `windows` are given), a grid fee per kWh
/// imported, a network charge per kWh shared inside the community, a fixed
/// fee per member and calendar month (prorated by the time each member is
/// registered in a billing period), and an operator margin per kWh bought
/// in the community. All amounts are `decimal.Decimal` (or strings);
/// floats are refused.
#[pyclass(module = "microgrid", frozen)]
#[derive(Clone)]
pub struct Tariff {
    pub inner: CoreTariff,
}

#[pymethods]
impl Tariff {
    #[new]
    #[pyo3(
        signature = (import_price, export_price, *, currency = None, grid_fee = None, fixed_fee = None, operator_margin = None, network_charge = None, time_zone = None, timeframe_minutes = None, windows = None),
        text_signature = "(import_price, export_price, *, currency='EUR', grid_fee=None, fixed_fee=None, operator_margin=None, network_charge=None, time_zone='UTC', timeframe_minutes=15, windows=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        import_price: &Bound<'_, PyAny>,
        export_price: &Bound<'_, PyAny>,
        currency: Option<&Bound<'_, PyAny>>,
        grid_fee: Option<&Bound<'_, PyAny>>,
        fixed_fee: Option<&Bound<'_, PyAny>>,
        operator_margin: Option<&Bound<'_, PyAny>>,
        network_charge: Option<&Bound<'_, PyAny>>,
        time_zone: Option<&Bound<'_, PyAny>>,
        timeframe_minutes: Option<&Bound<'_, PyAny>>,
        windows: Option<&Bound<'_, PyAny>>,
    ) -> Result<Tariff> {
        let import_price = price("import_price", import_price)?;
        let export_price = price("export_price", export_price)?;
        let currency = opt_arg("currency", currency, |v| Ok(text(v)?.parse::<Currency>()?))?;
        let grid_fee = opt_arg("grid_fee", grid_fee, |v| price("grid_fee", v))?;
        let fixed_fee = opt_arg("fixed_fee", fixed_fee, decimal)?;
        let operator_margin = opt_arg("operator_margin", operator_margin, |v| {
            price("operator_margin", v)
        })?;
        let network_charge = opt_arg("network_charge", network_charge, |v| {
            price("network_charge", v)
        })?;
        let zone = opt_arg("time_zone", time_zone, zone)?;
        let length = opt_arg("timeframe_minutes", timeframe_minutes, |v| {
            Ok(TimeframeLength::new(integer::<u32>(v)?)?)
        })?;
        let windows = opt_arg("windows", windows, time_of_use)?;
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
        if let Some(n) = network_charge {
            t = t.with_network_charge(n);
        }
        if let Some(length) = length {
            t = t
                .for_timeframes(length)
                .map_err(|e| Error::from(e).in_argument("timeframe_minutes"))?;
        }
        if let Some(z) = zone {
            t = t
                .in_time_zone(z)
                .map_err(|e| Error::from(e).in_argument("time_zone"))?;
        }
        for (i, w) in windows.into_iter().flatten().enumerate() {
            t = t
                .with_time_of_use(w)
                .map_err(|e| Error::from(e).in_argument(format!("windows[{i}]")))?;
        }
        t.check()?;
        Ok(Tariff { inner: t })
    }

    /// The currency code.
    #[getter]
    fn currency(&self) -> String {
        self.inner.currency().to_string()
    }

    /// The IANA name of the time zone of the windows and months (`"UTC"`
    /// unless set).
    #[getter]
    fn time_zone(&self) -> String {
        self.inner.time_zone().name().to_owned()
    }

    /// The timeframe length in minutes the tariff is built for.
    #[getter]
    fn timeframe_minutes(&self) -> u32 {
        self.inner.timeframes().minutes()
    }

    /// The network charge per kWh bought inside the community.
    #[getter]
    fn network_charge(&self) -> Decimal {
        self.inner.network_charge().per_kwh()
    }

    /// The fixed fee per member and calendar month.
    #[getter]
    fn fixed_fee(&self) -> Decimal {
        self.inner.fixed_fee()
    }

    /// The grid's `(import, export)` prices per kWh in the timeframe that
    /// starts at `start` (a timezone-aware datetime on the tariff's
    /// timeframe grid).
    #[pyo3(signature = (start), text_signature = "($self, start)")]
    fn grid_prices(&self, start: &Bound<'_, PyAny>) -> Result<(Decimal, Decimal)> {
        let tf = arg("start", start, |v| {
            Ok(Timeframe::new(utc(v)?, self.inner.timeframes())?)
        })?;
        let prices = self.inner.grid_prices(&tf);
        Ok((prices.import().per_kwh(), prices.export().per_kwh()))
    }

    /// The fixed fee of a member registered from `start` to `end` (both
    /// timezone-aware datetimes): month by month, its share of the monthly
    /// fee, rounded so that adjacent spans add up exactly.
    #[pyo3(signature = (start, end), text_signature = "($self, start, end)")]
    fn fixed_fee_between(
        &self,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
    ) -> Result<Decimal> {
        let start = arg("start", start, utc)?;
        let end = arg("end", end, utc)?;
        Ok(self.inner.fixed_fee_between(start, end)?)
    }

    fn __repr__(&self) -> String {
        format!(
            "Tariff(currency={:?}, time_zone={:?}, windows={})",
            self.inner.currency().to_string(),
            self.inner.time_zone().name(),
            self.inner.time_of_use().len()
        )
    }
}

/// A time zone: an IANA name (`"Europe/Vienna"`) or a `zoneinfo.ZoneInfo`
/// (by its key).
fn zone(value: &Bound<'_, PyAny>) -> Result<Tz> {
    let name = if value.is_instance_of::<PyString>() {
        text(value)?
    } else {
        let zoneinfo = value.py().import("zoneinfo")?.getattr("ZoneInfo")?;
        if !value.is_instance(&zoneinfo)? {
            return Err(Error::wrong_type(
                value,
                "a time zone name (str) or a zoneinfo.ZoneInfo",
            ));
        }
        match value.getattr("key") {
            Ok(key) if key.is_instance_of::<PyString>() => text(&key)?,
            _ => {
                return Err(Error::validation(format!(
                    "{} has no IANA name (a ZoneInfo read from a file)",
                    shown(value)
                ))
                .with("value", value))
            }
        }
    };
    Ok(time_zone(&name)?)
}

/// The keys a window may have.
const WINDOW_KEYS: [&str; 6] = [
    "start",
    "end",
    "import_price",
    "export_price",
    "days",
    "months",
];

/// Time-of-use windows: a list (or tuple) of dicts with `start` and `end`
/// (`"HH:MM"` local times or `datetime.time`s; `end` may be `"24:00"`),
/// `import_price` and `export_price`, and optionally `days` and `months`.
fn time_of_use(value: &Bound<'_, PyAny>) -> Result<Vec<TimeOfUse>> {
    if value.is_instance_of::<PyString>() || value.cast::<PyMapping>().is_ok() {
        return Err(Error::wrong_type(value, "a list of windows (dicts)"));
    }
    let items = value
        .try_iter()
        .map_err(|_| Error::wrong_type(value, "a list of windows (dicts)"))?;
    let mut out = Vec::new();
    for (i, item) in items.enumerate() {
        let item = item?;
        out.push(window(&item, i).map_err(|e| e.in_argument(format!("windows[{i}]")))?);
    }
    Ok(out)
}

/// Window `i`; an error in one of its values names it as
/// `windows[i].key`.
fn window(value: &Bound<'_, PyAny>, i: usize) -> Result<TimeOfUse> {
    let d = value
        .cast::<PyDict>()
        .map_err(|_| Error::wrong_type(value, "a dict (a time-of-use window)"))?;
    for key in d.keys() {
        let known = key
            .cast::<PyString>()
            .ok()
            .and_then(|k| k.to_str().ok().map(|k| WINDOW_KEYS.contains(&k)))
            .unwrap_or(false);
        if !known {
            return Err(Error::validation(format!(
                "unknown key {} in a time-of-use window (expected {})",
                shown(&key),
                WINDOW_KEYS.join(", ")
            ))
            .with("key", &key));
        }
    }
    let need = |key: &'static str| -> Result<Bound<'_, PyAny>> {
        match d.get_item(key)? {
            Some(v) if !v.is_none() => Ok(v),
            _ => Err(Error::invalid(
                "missing_value",
                format!("a time-of-use window has no {key:?}"),
            )
            .with("key", key)),
        }
    };
    let at = |key: &'static str| move |e: Error| e.in_argument(format!("windows[{i}].{key}"));
    let price = |key: &'static str| -> Result<Price> {
        let v = need(key)?;
        decimal(&v)
            .and_then(|d| Ok(Price::new(d)?))
            .map_err(at(key))
    };
    let from = minute_of_day(&need("start")?).map_err(at("start"))?;
    let to = minute_of_day(&need("end")?).map_err(at("end"))?;
    let grid = GridPrices::new(price("import_price")?, price("export_price")?)?;
    let mut w = TimeOfUse::new(from, to, grid);
    if let Some(days) = d.get_item("days")?.filter(|v| !v.is_none()) {
        w = w.on(weekdays(&days).map_err(at("days"))?);
    }
    if let Some(months) = d.get_item("months")?.filter(|v| !v.is_none()) {
        w = w.in_months(self::months(&months).map_err(at("months"))?);
    }
    Ok(w)
}

/// Minutes after local midnight: `"HH:MM"` (`"24:00"` for the end of the
/// day) or a `datetime.time` of whole minutes without a time zone.
fn minute_of_day(value: &Bound<'_, PyAny>) -> Result<u32> {
    if value.is_instance_of::<PyTime>() {
        let part = |name: &str| -> Result<u32> { Ok(value.getattr(name)?.extract::<u32>()?) };
        if part("second")? != 0 || part("microsecond")? != 0 || !value.getattr("tzinfo")?.is_none()
        {
            return Err(Error::validation(format!(
                "{} is not a whole minute of local time (no seconds, no tzinfo: the tariff's time_zone applies)",
                shown(value)
            ))
            .with("value", value));
        }
        return Ok(part("hour")? * 60 + part("minute")?);
    }
    if !value.is_instance_of::<PyString>() {
        return Err(Error::wrong_type(
            value,
            "a time of day (\"HH:MM\" or a datetime.time)",
        ));
    }
    let s = text(value)?;
    let parsed = s.split_once(':').and_then(|(h, m)| {
        let digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return None;
        }
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    });
    parsed.ok_or_else(|| {
        Error::validation(format!(
            "{s:?} is not a time of day \"HH:MM\" from \"00:00\" to \"24:00\""
        ))
        .with("value", value)
    })
}

/// Days of the week: `"weekdays"` (Monday to Friday), `"weekend"`,
/// `"all"`, or a list of day names (`"mon"`, `"Monday"`) or numbers (0 is
/// Monday, as `date.weekday()`).
fn weekdays(value: &Bound<'_, PyAny>) -> Result<Weekdays> {
    if value.is_instance_of::<PyString>() {
        return match text(value)?.to_ascii_lowercase().as_str() {
            "weekdays" => Ok(Weekdays::MONDAY_TO_FRIDAY),
            "weekend" => Ok(Weekdays::WEEKEND),
            "all" => Ok(Weekdays::ALL),
            other => Err(Error::validation(format!(
                "{other:?} is not \"weekdays\", \"weekend\", \"all\" or a list of days"
            ))
            .with("value", value)),
        };
    }
    let items = value.try_iter().map_err(|_| {
        Error::wrong_type(
            value,
            "\"weekdays\", \"weekend\", \"all\" or a list of days",
        )
    })?;
    let mut days = Vec::new();
    for item in items {
        let item = item?;
        let day = if item.is_instance_of::<PyString>() {
            let name = text(&item)?;
            name.parse::<Weekday>().map_err(|_| {
                Error::validation(format!("{name:?} is not a day of the week")).with("value", &item)
            })?
        } else {
            let n = integer::<u32>(&item)?;
            u8::try_from(n)
                .ok()
                .and_then(|n| Weekday::try_from(n).ok())
                .ok_or_else(|| {
                    Error::invalid(
                        "out_of_range",
                        format!("{n} is not a day 0 (Monday) to 6 (Sunday)"),
                    )
                    .with("value", &item)
                })?
        };
        days.push(day);
    }
    Ok(Weekdays::of(days))
}

/// Months: a list of numbers 1 (January) to 12.
fn months(value: &Bound<'_, PyAny>) -> Result<Months> {
    if value.is_instance_of::<PyString>() {
        return Err(Error::wrong_type(value, "a list of months (1 to 12)"));
    }
    let items = value
        .try_iter()
        .map_err(|_| Error::wrong_type(value, "a list of months (1 to 12)"))?;
    let mut months = Vec::new();
    for item in items {
        months.push(integer::<u32>(&item?)?);
    }
    Ok(Months::of(months)?)
}
