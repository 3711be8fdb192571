//! Tariffs: what the grid charges and pays, and the community's fees.
//!
//! # Time of use, in local time
//!
//! A tariff has a time zone (an IANA name such as `Europe/Vienna`; UTC
//! unless set) and the length of the grid's timeframes it is built for
//! (15 minutes unless set). Its time-of-use windows are local times of day
//! (`from_minute..to_minute`, minutes after local midnight), optionally
//! limited to days of the week ([`Weekdays`]) and months of the year
//! ([`Months`], for seasons). A timeframe takes the prices of the window
//! that holds the local time of its start, or the tariff's base prices.
//!
//! So that no timeframe straddles two prices, a window's ends must be whole
//! timeframes, and so must the zone's offsets from UTC (checked for the
//! years 2000 to 2099): a window or zone that is not is refused when the
//! tariff is built ([`Error::TariffNotAligned`]), and clearing with a tariff
//! whose windows do not fit the grid's timeframes is refused too
//! ([`GridTariff::check_timeframes`]). Daylight-saving changes then just
//! work: a window 17:00–20:00 covers twelve quarter-hours on the 23-hour
//! and the 25-hour day as on any other day.
//!
//! ```
//! use chrono::{TimeZone, Utc, Weekday};
//! use microgrid_core::tariff::{time_zone, Months, Tariff, TimeOfUse, Weekdays};
//! use microgrid_core::*;
//!
//! let prices = |r: &str, e: &str| GridPrices::new(r.parse().unwrap(), e.parse().unwrap()).unwrap();
//! let tariff = Tariff::new("EUR".parse()?, prices("0.25", "0.07"))
//!     .in_time_zone(time_zone("Europe/Vienna")?)?
//!     // Working-day evening peak, all year.
//!     .with_time_of_use(TimeOfUse::new(17 * 60, 20 * 60, prices("0.40", "0.07")).on(Weekdays::MONDAY_TO_FRIDAY))?
//!     // Summer middays are cheap (April to September).
//!     .with_time_of_use(TimeOfUse::new(10 * 60, 16 * 60, prices("0.15", "0.05")).in_months(Months::from_to(4, 9)?))?;
//!
//! // Friday 2026-03-27 17:00 in Vienna is 16:00 UTC (CET, +01:00).
//! let at = |y, m, d, h| Timeframe::new(Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap(), TimeframeLength::default()).unwrap();
//! assert_eq!(tariff.grid_prices(&at(2026, 3, 27, 16)), prices("0.40", "0.07"));
//! // Monday 2026-03-30 17:00 in Vienna is 15:00 UTC (CEST, +02:00).
//! assert_eq!(tariff.grid_prices(&at(2026, 3, 30, 15)), prices("0.40", "0.07"));
//! assert_eq!(tariff.grid_prices(&at(2026, 3, 30, 16)), prices("0.40", "0.07"));
//! assert_eq!(tariff.grid_prices(&at(2026, 3, 30, 18)), prices("0.25", "0.07"));
//! // Saturday evening: base prices; a July noon: the summer window.
//! assert_eq!(tariff.grid_prices(&at(2026, 3, 28, 16)), prices("0.25", "0.07"));
//! assert_eq!(tariff.grid_prices(&at(2026, 7, 4, 10)), prices("0.15", "0.05"));
//! // 17:10 is not a quarter-hour: refused when built.
//! let bad = TimeOfUse::new(17 * 60 + 10, 20 * 60, prices("0.40", "0.07"));
//! assert_eq!(tariff.clone().with_time_of_use(bad).unwrap_err().kind(), "tariff_not_aligned");
//! # Ok::<(), microgrid_core::Error>(())
//! ```
//!
//! # The fixed fee is per calendar month, prorated
//!
//! [`Tariff::with_fixed_fee`] sets a fee per member and **calendar month**
//! (months in the tariff's time zone). A billing period charges each member
//! the part of the fee for the time it was registered (from midnight UTC of
//! the day it joined to midnight UTC of the day it left) within the period,
//! month by month:
//!
//! ```text
//! F(t)  = ⌊ fee · (t − month start) / (month length) ⌋   (in 10⁻⁹, exact integers)
//! charge of [a, b) in one month = F(b) − F(a)
//! ```
//!
//! Rounding is a cumulative floor over the month's elapsed time: the
//! charges of any split of a month into periods add up to `F(end) −
//! F(start)` exactly, so a member registered all month pays exactly the
//! fee, whether the month is billed at once, by week or by day, and a
//! member who joins on the 28th of a 30-day month pays 3/30 of it (to
//! 10⁻⁹). Every amount keeps [`AMOUNT_DECIMALS`] decimals, and the
//! community's fees are the sum of its members' ([`Tariff::fixed_fee_between`]).
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use microgrid_core::{tariff::Tariff, GridPrices};
//! use rust_decimal::Decimal;
//!
//! let t = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.08".parse()?)?)
//!     .with_fixed_fee("3.00".parse().unwrap())?;
//! let day = |d| Utc.with_ymd_and_hms(2026, 6, d, 0, 0, 0).unwrap();
//! let july = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
//! assert_eq!(t.fixed_fee_between(day(1), july)?, Decimal::from(3));
//! assert_eq!(t.fixed_fee_between(day(28), july)?, "0.3".parse().unwrap()); // 3 of 30 days
//! // Four weeks and two days of June add up to the fee, exactly.
//! let weeks = [day(1), day(8), day(15), day(22), day(29), july];
//! let sum: Decimal = weeks.windows(2).map(|w| t.fixed_fee_between(w[0], w[1]).unwrap()).sum();
//! assert_eq!(sum, Decimal::from(3));
//! # Ok::<(), microgrid_core::Error>(())
//! ```
//!
//! # A network charge on shared energy
//!
//! [`Tariff::with_network_charge`] sets a charge per kWh bought inside the
//! community (the reduced network charge of energy communities), separate
//! from the grid fee on imports; it is its own bill line
//! ([`crate::billing::Bill::network_charge`]).

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Timelike, Utc, Weekday};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clearing::GridTariff;
use crate::error::{Error, Result};
use crate::money::{Currency, Price, AMOUNT_DECIMALS};
use crate::pricing::GridPrices;
use crate::registry::Prosumer;
use crate::timeframe::{TimeRange, Timeframe, TimeframeLength};

pub use chrono_tz::Tz;

/// The time zone named `name` in the IANA database (`"Europe/Vienna"`,
/// `"UTC"`), or [`Error::UnknownTimeZone`].
///
/// ```
/// use microgrid_core::tariff::time_zone;
/// assert_eq!(time_zone("Europe/Vienna")?.name(), "Europe/Vienna");
/// assert!(time_zone("Mars/Olympus").is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
pub fn time_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>()
        .map_err(|_| Error::UnknownTimeZone(name.to_owned()))
}

/// A set of days of the week (local days, in the tariff's time zone).
///
/// ```
/// use chrono::Weekday;
/// use microgrid_core::tariff::Weekdays;
/// assert!(Weekdays::WEEKEND.contains(Weekday::Sun));
/// assert!(!Weekdays::MONDAY_TO_FRIDAY.contains(Weekday::Sat));
/// assert_eq!(Weekdays::of([Weekday::Sat, Weekday::Sun]), Weekdays::WEEKEND);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weekdays(u8);

impl Weekdays {
    /// Every day.
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    /// Monday to Friday.
    pub const MONDAY_TO_FRIDAY: Weekdays = Weekdays(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Weekdays = Weekdays(0b110_0000);

    /// The set of `days`.
    pub fn of(days: impl IntoIterator<Item = Weekday>) -> Weekdays {
        Weekdays(
            days.into_iter()
                .fold(0, |bits, d| bits | 1 << d.num_days_from_monday()),
        )
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & 1 << day.num_days_from_monday() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days, Monday first.
    pub fn days(self) -> Vec<Weekday> {
        (0..7u8)
            .filter(|i| self.0 & 1 << i != 0)
            .filter_map(|i| Weekday::try_from(i).ok())
            .collect()
    }
}

impl Default for Weekdays {
    fn default() -> Self {
        Weekdays::ALL
    }
}

impl fmt::Debug for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.days()).finish()
    }
}

impl Serialize for Weekdays {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let names: Vec<String> = self.days().iter().map(|d| d.to_string()).collect();
        names.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Weekdays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Weekdays, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let days = names
            .iter()
            .map(|n| {
                n.parse::<Weekday>()
                    .map_err(|_| serde::de::Error::custom(format!("unknown day of the week {n:?}")))
            })
            .collect::<std::result::Result<Vec<Weekday>, D::Error>>()?;
        Ok(Weekdays::of(days))
    }
}

/// A set of months of the year, 1 (January) to 12 (local months, in the
/// tariff's time zone): a season.
///
/// ```
/// use microgrid_core::tariff::Months;
/// let winter = Months::from_to(10, 3)?; // October to March
/// assert!(winter.contains(1) && winter.contains(12) && !winter.contains(6));
/// assert_eq!(Months::of([6, 7, 8])?, Months::from_to(6, 8)?);
/// assert!(Months::of([13]).is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Months(u16);

impl Months {
    /// Every month.
    pub const ALL: Months = Months(0b1111_1111_1111);

    /// The set of `months` (each 1 to 12).
    pub fn of(months: impl IntoIterator<Item = u32>) -> Result<Months> {
        months.into_iter().try_fold(Months(0), |set, m| {
            if (1..=12).contains(&m) {
                Ok(Months(set.0 | 1 << (m - 1)))
            } else {
                Err(Error::InvalidTimeOfUse {
                    window: format!("month {m}"),
                    reason: "months are 1 (January) to 12 (December)",
                })
            }
        })
    }

    /// The months from `first` to `last`, both included, wrapping over the
    /// new year when `last < first` (`from_to(10, 3)` is October to March).
    pub fn from_to(first: u32, last: u32) -> Result<Months> {
        Months::of([first, last])?;
        let span = (last + 12 - first) % 12;
        Months::of((0..=span).map(|k| (first - 1 + k) % 12 + 1))
    }

    /// Whether `month` (1 to 12) is in the set.
    pub fn contains(self, month: u32) -> bool {
        (1..=12).contains(&month) && self.0 & 1 << (month - 1) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The months, 1 to 12, in order.
    pub fn months(self) -> Vec<u32> {
        (1..=12).filter(|&m| self.contains(m)).collect()
    }
}

impl Default for Months {
    fn default() -> Self {
        Months::ALL
    }
}

impl fmt::Debug for Months {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.months()).finish()
    }
}

impl Serialize for Months {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.months().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Months {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Months, D::Error> {
        let months = Vec::<u32>::deserialize(d)?;
        Months::of(months).map_err(serde::de::Error::custom)
    }
}

/// Grid prices that apply from `from_minute` (inclusive) to `to_minute`
/// (exclusive) of each local day of the tariff's time zone, on `days` in
/// `months` (every day of the year unless limited), e.g. a cheaper night
/// tariff or a working-day evening peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeOfUse {
    /// First minute of the local day (0..1440) the prices apply.
    pub from_minute: u32,
    /// Minute of the local day they stop applying (exclusive, up to 1440).
    pub to_minute: u32,
    /// The grid prices in that window.
    pub grid: GridPrices,
    /// The days of the week it applies on (all unless limited).
    #[serde(default)]
    pub days: Weekdays,
    /// The months it applies in (all unless limited).
    #[serde(default)]
    pub months: Months,
}

impl TimeOfUse {
    /// Prices `grid` from `from_minute` to `to_minute` of every local day.
    pub fn new(from_minute: u32, to_minute: u32, grid: GridPrices) -> TimeOfUse {
        TimeOfUse {
            from_minute,
            to_minute,
            grid,
            days: Weekdays::ALL,
            months: Months::ALL,
        }
    }

    /// The same window, on `days` only.
    pub fn on(mut self, days: Weekdays) -> TimeOfUse {
        self.days = days;
        self
    }

    /// The same window, in `months` only.
    pub fn in_months(mut self, months: Months) -> TimeOfUse {
        self.months = months;
        self
    }

    /// Whether the window holds a local time.
    fn holds(&self, minute: u32, day: Weekday, month: u32) -> bool {
        self.from_minute <= minute
            && minute < self.to_minute
            && self.days.contains(day)
            && self.months.contains(month)
    }

    /// Whether both ends are whole timeframes of `minutes`.
    fn fits(&self, minutes: u32) -> bool {
        self.from_minute.is_multiple_of(minutes) && self.to_minute.is_multiple_of(minutes)
    }

    fn overlaps(&self, other: &TimeOfUse) -> bool {
        self.from_minute < other.to_minute
            && other.from_minute < self.to_minute
            && self.days.0 & other.days.0 != 0
            && self.months.0 & other.months.0 != 0
    }
}

impl fmt::Display for TimeOfUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.from_minute), hm(self.to_minute))?;
        if self.days != Weekdays::ALL {
            let days: Vec<String> = self.days.days().iter().map(|d| d.to_string()).collect();
            write!(f, " on {}", days.join(","))?;
        }
        if self.months != Months::ALL {
            let months: Vec<String> = self.months.months().iter().map(|m| m.to_string()).collect();
            write!(f, " in months {}", months.join(","))?;
        }
        Ok(())
    }
}

/// What members pay and get besides the community price: the grid's import
/// and export prices (optionally by time of use, in local time), a per-kWh
/// grid fee on imported energy, a per-kWh network charge on energy shared
/// inside the community, a fixed fee per member and calendar month
/// (prorated), and an optional operator margin per kWh bought inside the
/// community. See the [module docs](self) for the rules.
///
/// ```
/// use microgrid_core::{tariff::Tariff, GridPrices};
/// let t = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.08".parse()?)?)
///     .with_grid_fee("0.05".parse()?)
///     .with_network_charge("0.02".parse()?)
///     .with_fixed_fee("4.50".parse().unwrap())?
///     .with_operator_margin("0.01".parse()?);
/// assert_eq!(t.currency().as_str(), "EUR");
/// assert_eq!(t.time_zone().name(), "UTC");
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTariff")]
pub struct Tariff {
    currency: Currency,
    grid: GridPrices,
    #[serde(serialize_with = "zone_name")]
    time_zone: Tz,
    timeframes: TimeframeLength,
    time_of_use: Vec<TimeOfUse>,
    grid_fee: Price,
    network_charge: Price,
    fixed_fee: Decimal,
    operator_margin: Price,
}

fn zone_name<S: Serializer>(tz: &Tz, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl Tariff {
    /// A tariff with these grid prices at all times and no fees, in UTC,
    /// for 15-minute timeframes.
    pub fn new(currency: Currency, grid: GridPrices) -> Tariff {
        Tariff {
            currency,
            grid,
            time_zone: Tz::UTC,
            timeframes: TimeframeLength::default(),
            time_of_use: Vec::new(),
            grid_fee: Price::ZERO,
            network_charge: Price::ZERO,
            fixed_fee: Decimal::ZERO,
            operator_margin: Price::ZERO,
        }
    }

    /// The same tariff in time zone `tz`: its time-of-use windows are
    /// local times there, and its months (for the fixed fee) local months.
    /// An error if a window then no longer fits the timeframes.
    pub fn in_time_zone(mut self, tz: Tz) -> Result<Tariff> {
        self.time_zone = tz;
        self.check_aligned(self.timeframes)?;
        Ok(self)
    }

    /// The same tariff for a grid of `length` timeframes (15 minutes
    /// unless set): its windows must be whole timeframes of that length.
    pub fn for_timeframes(mut self, length: TimeframeLength) -> Result<Tariff> {
        self.timeframes = length;
        self.check_aligned(length)?;
        Ok(self)
    }

    /// Adds a time-of-use window, checked: inside one local day and not
    /// empty ([`Error::InvalidTimeOfUse`]), on at least one day and month,
    /// not overlapping an earlier window on a common day and month, and
    /// with its ends (and the time zone's offsets) on the boundaries of the
    /// tariff's timeframes ([`Error::TariffNotAligned`]).
    pub fn with_time_of_use(mut self, window: TimeOfUse) -> Result<Tariff> {
        let reason = if window.from_minute >= window.to_minute || window.to_minute > 1440 {
            Some("it must run from one minute of a day to a later one (from < to ≤ 24:00)")
        } else if window.days.is_empty() {
            Some("it has no day of the week")
        } else if window.months.is_empty() {
            Some("it has no month")
        } else {
            None
        };
        let invalid = |reason| Error::InvalidTimeOfUse {
            window: window.to_string(),
            reason,
        };
        if let Some(reason) = reason {
            return Err(invalid(reason));
        }
        let minutes = self.timeframes.minutes();
        if !window.fits(minutes) {
            return Err(Error::TariffNotAligned {
                what: format!("time-of-use window {window}"),
                minutes,
            });
        }
        if self.time_of_use.iter().any(|w| w.overlaps(&window)) {
            return Err(invalid("it overlaps an earlier window"));
        }
        self.time_of_use.push(window);
        self.check_aligned(self.timeframes)?;
        Ok(self)
    }

    /// Sets the network fee per kWh of energy imported from the grid.
    pub fn with_grid_fee(mut self, per_kwh: Price) -> Tariff {
        self.grid_fee = per_kwh;
        self
    }

    /// Sets the network charge per kWh of energy bought inside the
    /// community (shared energy), charged to the buyer on its own bill
    /// line. Not negative ([`Tariff::check`]).
    pub fn with_network_charge(mut self, per_kwh: Price) -> Tariff {
        self.network_charge = per_kwh;
        self
    }

    /// Sets the fixed fee each member pays per calendar month (in the
    /// tariff's time zone), prorated by the time it is registered in each
    /// billing period (see the [module docs](self)); not negative, at most
    /// 9 decimals.
    pub fn with_fixed_fee(mut self, fee: Decimal) -> Result<Tariff> {
        check_amount("fixed fee", fee)?;
        self.fixed_fee = fee;
        Ok(self)
    }

    /// Sets the operator's margin per kWh bought inside the community.
    pub fn with_operator_margin(mut self, per_kwh: Price) -> Tariff {
        self.operator_margin = per_kwh;
        self
    }

    /// Checks the per-kWh fees: the grid fee, the network charge and the
    /// operator margin must not be negative (a negative fee would pay
    /// members for importing). Billing calls it; so can anyone building a
    /// tariff from user input.
    pub fn check(&self) -> Result<()> {
        for (what, price) in [
            ("grid fee", self.grid_fee),
            ("network charge", self.network_charge),
            ("operator margin", self.operator_margin),
        ] {
            if price.per_kwh().is_sign_negative() && !price.per_kwh().is_zero() {
                return Err(Error::InvalidPrice {
                    what,
                    value: price.per_kwh(),
                    reason: "it is negative",
                });
            }
        }
        Ok(())
    }

    /// The tariff's currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// The base grid prices, outside every time-of-use window.
    pub fn grid(&self) -> GridPrices {
        self.grid
    }
    /// The time zone of its windows and months.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }
    /// The timeframe length it was built for.
    pub fn timeframes(&self) -> TimeframeLength {
        self.timeframes
    }
    /// The time-of-use windows, in the order they were added.
    pub fn time_of_use(&self) -> &[TimeOfUse] {
        &self.time_of_use
    }
    /// Grid fee per kWh imported.
    pub fn grid_fee(&self) -> Price {
        self.grid_fee
    }
    /// Network charge per kWh bought inside the community.
    pub fn network_charge(&self) -> Price {
        self.network_charge
    }
    /// Fixed fee per member and calendar month.
    pub fn fixed_fee(&self) -> Decimal {
        self.fixed_fee
    }
    /// Operator margin per kWh bought in the community.
    pub fn operator_margin(&self) -> Price {
        self.operator_margin
    }

    /// The fixed fee for the time `[start, end)`: month by month, `F(b) −
    /// F(a)` with `F` the cumulative floor of the [module docs](self), so
    /// that the fees of adjacent spans add up exactly. Zero when `end ≤
    /// start`.
    pub fn fixed_fee_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Decimal> {
        if self.fixed_fee.is_zero() || end <= start {
            return Ok(Decimal::ZERO);
        }
        let mut fee = self.fixed_fee;
        fee.rescale(AMOUNT_DECIMALS);
        let nanos = fee.mantissa();
        let mut sum: i128 = 0;
        let mut t = start;
        while t < end {
            let (from, until) = self.month_of(t)?;
            let piece_end = end.min(until);
            let length = (until - from).num_seconds();
            let share = |x: DateTime<Utc>| {
                nanos * i128::from((x - from).num_seconds()) / i128::from(length)
            };
            sum += share(piece_end) - share(t);
            t = piece_end;
        }
        Decimal::try_from_i128_with_scale(sum, AMOUNT_DECIMALS)
            .map_err(|_| Error::Overflow("fixed fee"))
    }

    /// The fixed fee of `prosumer` for `period`: [`Tariff::fixed_fee_between`]
    /// over the part of the period it is registered, from midnight UTC of
    /// the day it joined to midnight UTC of the day it left.
    pub fn fixed_fee_for(&self, period: &TimeRange, prosumer: &Prosumer) -> Result<Decimal> {
        let joined = midnight(prosumer.joined());
        let start = period.start().max(joined);
        let end = match prosumer.left() {
            Some(left) => period.end().min(midnight(left)),
            None => period.end(),
        };
        self.fixed_fee_between(start, end)
    }

    /// The local calendar month that holds `t`: its first and last instant
    /// (exclusive), in UTC.
    fn month_of(&self, t: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
        let local = t.with_timezone(&self.time_zone);
        let (mut y, mut m) = (local.year(), local.month());
        // A zone whose clocks go back over midnight can show the last
        // month's date just after a month began: go by the boundaries.
        for _ in 0..3 {
            let from = self.month_start(y, m)?;
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let until = self.month_start(ny, nm)?;
            if t < from {
                (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
            } else if t >= until {
                (y, m) = (ny, nm);
            } else {
                return Ok((from, until));
            }
        }
        Err(Error::Overflow("month of a fixed fee"))
    }

    /// The instant local midnight of the 1st of month `m` of year `y`
    /// begins (the first local time after it when clocks skip midnight).
    fn month_start(&self, y: i32, m: u32) -> Result<DateTime<Utc>> {
        let midnight = NaiveDate::from_ymd_opt(y, m, 1)
            .ok_or(Error::Overflow("month of a fixed fee"))?
            .and_time(chrono::NaiveTime::MIN);
        // Clocks skip at most a day (Pacific/Apia, 2011).
        for minutes in 0..=(2 * 1440) {
            let local = midnight + Duration::minutes(minutes);
            if let Some(t) = self.time_zone.from_local_datetime(&local).earliest() {
                return Ok(t.with_timezone(&Utc));
            }
        }
        Err(Error::Overflow("month of a fixed fee"))
    }

    /// Checks that every window's ends and, when there are windows, every
    /// offset of the time zone from UTC in 2000–2099 are whole timeframes of
    /// `length`.
    fn check_aligned(&self, length: TimeframeLength) -> Result<()> {
        let minutes = length.minutes();
        if let Some(w) = self.time_of_use.iter().find(|w| !w.fits(minutes)) {
            return Err(Error::TariffNotAligned {
                what: format!("time-of-use window {w}"),
                minutes,
            });
        }
        if self.time_of_use.is_empty() {
            return Ok(());
        }
        for offset in zone_offsets(self.time_zone) {
            if offset % length.seconds() != 0 {
                let sign = if offset < 0 { '-' } else { '+' };
                let abs = offset.unsigned_abs();
                return Err(Error::TariffNotAligned {
                    what: format!(
                        "time zone {} (offset {sign}{:02}:{:02}{})",
                        self.time_zone.name(),
                        abs / 3600,
                        abs % 3600 / 60,
                        if abs % 60 == 0 {
                            String::new()
                        } else {
                            format!(":{:02}", abs % 60)
                        },
                    ),
                    minutes,
                });
            }
        }
        Ok(())
    }
}

/// The distinct offsets from UTC (seconds) that `tz` has in 2000–2099,
/// sampled on the 1st and the 15th of every month (offsets change at most
/// a few times a year).
fn zone_offsets(tz: Tz) -> Vec<i64> {
    if tz == Tz::UTC {
        return vec![0];
    }
    let mut offsets: Vec<i64> = Vec::new();
    for year in 2000..2100 {
        for month in 1..=12 {
            for day in [1, 15] {
                let Some(noon) =
                    NaiveDate::from_ymd_opt(year, month, day).and_then(|d| d.and_hms_opt(12, 0, 0))
                else {
                    continue;
                };
                let offset = i64::from(tz.offset_from_utc_datetime(&noon).fix().local_minus_utc());
                if !offsets.contains(&offset) {
                    offsets.push(offset);
                }
            }
        }
    }
    offsets
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A [`Tariff`] as read, before the checks of its builder methods. Tariffs
/// written before time zones, network charges and days or months of
/// windows existed read as UTC, 15-minute timeframes, no network charge
/// and windows on every day.
#[derive(Deserialize)]
struct RawTariff {
    currency: Currency,
    grid: GridPrices,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    timeframes: Option<TimeframeLength>,
    time_of_use: Vec<TimeOfUse>,
    grid_fee: Price,
    #[serde(default)]
    network_charge: Option<Price>,
    fixed_fee: Decimal,
    operator_margin: Price,
}

impl TryFrom<RawTariff> for Tariff {
    type Error = Error;
    fn try_from(r: RawTariff) -> Result<Tariff> {
        let mut tariff = Tariff::new(r.currency, r.grid)
            .with_grid_fee(r.grid_fee)
            .with_network_charge(r.network_charge.unwrap_or(Price::ZERO))
            .with_operator_margin(r.operator_margin)
            .with_fixed_fee(r.fixed_fee)?;
        if let Some(zone) = r.time_zone {
            tariff = tariff.in_time_zone(time_zone(&zone)?)?;
        }
        if let Some(length) = r.timeframes {
            tariff = tariff.for_timeframes(length)?;
        }
        r.time_of_use
            .into_iter()
            .try_fold(tariff, |t, window| t.with_time_of_use(window))
    }
}

/// The largest fixed fee per member and month: far above any real fee,
/// and small enough that a community's fees cannot overflow a sum.
pub const MAX_FIXED_FEE: i64 = 1_000_000_000;

/// Checks that an amount is not negative, at most [`MAX_FIXED_FEE`], and
/// has at most [`AMOUNT_DECIMALS`] decimals.
pub(crate) fn check_amount(what: &'static str, value: Decimal) -> Result<()> {
    let reason = if value.is_sign_negative() && !value.is_zero() {
        Some("it is negative")
    } else if value > Decimal::from(MAX_FIXED_FEE) {
        Some("it is above 1,000,000,000")
    } else if value.normalize().scale() > AMOUNT_DECIMALS {
        Some("more than 9 decimals")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidAmount {
            what,
            value,
            reason,
        }),
        None => Ok(()),
    }
}

impl GridTariff for Tariff {
    fn grid_prices(&self, tf: &Timeframe) -> GridPrices {
        if self.time_of_use.is_empty() {
            return self.grid;
        }
        let local = tf.start().with_timezone(&self.time_zone);
        let minute = local.hour() * 60 + local.minute();
        let (day, month) = (local.weekday(), local.month());
        self.time_of_use
            .iter()
            .find(|w| w.holds(minute, day, month))
            .map_or(self.grid, |w| w.grid)
    }
    fn price_currency(&self) -> Option<Currency> {
        Some(self.currency)
    }
    fn check_timeframes(&self, length: TimeframeLength) -> Result<()> {
        self.check_aligned(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn prices(r: &str, e: &str) -> GridPrices {
        GridPrices::new(r.parse().unwrap(), e.parse().unwrap()).unwrap()
    }

    fn eur() -> Tariff {
        Tariff::new("EUR".parse().unwrap(), prices("0.30", "0.08"))
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> Timeframe {
        Timeframe::new(
            Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap(),
            TimeframeLength::default(),
        )
        .unwrap()
    }

    #[test]
    fn time_of_use_windows_pick_the_grid_prices() {
        let night = TimeOfUse::new(0, 6 * 60, prices("0.20", "0.05"));
        let t = eur().with_time_of_use(night).unwrap();
        assert_eq!(t.grid_prices(&at(2026, 1, 1, 5, 0)), prices("0.20", "0.05"));
        assert_eq!(t.grid_prices(&at(2026, 1, 1, 6, 0)), prices("0.30", "0.08"));
        let err = t
            .clone()
            .with_time_of_use(TimeOfUse::new(300, 420, prices("1", "0")))
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_time_of_use");
    }

    #[test]
    fn windows_are_local_and_follow_daylight_saving() {
        let vienna = time_zone("Europe/Vienna").unwrap();
        let peak = TimeOfUse::new(17 * 60, 20 * 60, prices("0.40", "0.08"));
        let t = eur()
            .in_time_zone(vienna)
            .unwrap()
            .with_time_of_use(peak)
            .unwrap();
        // Winter: 17:00 CET is 16:00 UTC; summer: 17:00 CEST is 15:00 UTC.
        assert_eq!(
            t.grid_prices(&at(2026, 1, 5, 16, 0)),
            prices("0.40", "0.08")
        );
        assert_eq!(
            t.grid_prices(&at(2026, 1, 5, 15, 45)),
            prices("0.30", "0.08")
        );
        assert_eq!(
            t.grid_prices(&at(2026, 7, 6, 15, 0)),
            prices("0.40", "0.08")
        );
        assert_eq!(
            t.grid_prices(&at(2026, 7, 6, 18, 0)),
            prices("0.30", "0.08")
        );
    }

    #[test]
    fn days_and_months_limit_a_window() {
        let weekend = TimeOfUse::new(0, 1440, prices("0.10", "0.05")).on(Weekdays::WEEKEND);
        let summer = TimeOfUse::new(12 * 60, 14 * 60, prices("0.05", "0.01"))
            .on(Weekdays::MONDAY_TO_FRIDAY)
            .in_months(Months::from_to(6, 8).unwrap());
        let t = eur()
            .with_time_of_use(weekend)
            .unwrap()
            .with_time_of_use(summer)
            .unwrap();
        // 2026-06-06 is a Saturday, 2026-06-08 a Monday.
        assert_eq!(
            t.grid_prices(&at(2026, 6, 6, 12, 0)),
            prices("0.10", "0.05")
        );
        assert_eq!(
            t.grid_prices(&at(2026, 6, 8, 12, 0)),
            prices("0.05", "0.01")
        );
        assert_eq!(
            t.grid_prices(&at(2026, 5, 4, 12, 0)),
            prices("0.30", "0.08")
        );
        // Overlap on a common day and month is refused; on disjoint days it is not.
        let saturday_noon =
            TimeOfUse::new(12 * 60, 13 * 60, prices("1", "0")).on(Weekdays::of([Weekday::Sat]));
        assert!(t.clone().with_time_of_use(saturday_noon).is_err());
        let winter_noon = TimeOfUse::new(12 * 60, 13 * 60, prices("1", "0"))
            .on(Weekdays::MONDAY_TO_FRIDAY)
            .in_months(Months::from_to(12, 2).unwrap());
        assert!(t.with_time_of_use(winter_noon).is_ok());
        // No day, no month: refused.
        let never = TimeOfUse::new(0, 60, prices("1", "0")).on(Weekdays::of([]));
        assert_eq!(
            eur().with_time_of_use(never).unwrap_err().kind(),
            "invalid_time_of_use"
        );
        assert!(Months::of([0]).is_err());
        assert!(Months::from_to(1, 13).is_err());
        assert_eq!(Months::from_to(3, 3).unwrap().months(), [3]);
        assert_eq!(Months::from_to(11, 2).unwrap().months(), [1, 2, 11, 12]);
    }

    #[test]
    fn windows_and_zones_off_the_timeframes_are_refused() {
        let w = TimeOfUse::new(17 * 60 + 10, 20 * 60, prices("0.40", "0.08"));
        let err = eur().with_time_of_use(w).unwrap_err();
        assert_eq!(
            err,
            Error::TariffNotAligned {
                what: "time-of-use window 17:10-20:00".into(),
                minutes: 15
            }
        );
        // 17:30 fits quarter-hours, not hours.
        let half = TimeOfUse::new(17 * 60 + 30, 20 * 60, prices("0.40", "0.08"));
        let t = eur().with_time_of_use(half).unwrap();
        assert!(t
            .clone()
            .for_timeframes(TimeframeLength::new(60).unwrap())
            .is_err());
        assert!(t
            .check_timeframes(TimeframeLength::new(60).unwrap())
            .is_err());
        assert!(t.check_timeframes(TimeframeLength::new(5).unwrap()).is_ok());
        // Kathmandu is +05:45: fine for quarter-hours, not for half-hours.
        let peak = TimeOfUse::new(17 * 60, 20 * 60, prices("0.40", "0.08"));
        let kathmandu = time_zone("Asia/Kathmandu").unwrap();
        let t = eur()
            .in_time_zone(kathmandu)
            .unwrap()
            .with_time_of_use(peak)
            .unwrap();
        let err = t
            .for_timeframes(TimeframeLength::new(30).unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            Error::TariffNotAligned {
                what: "time zone Asia/Kathmandu (offset +05:45)".into(),
                minutes: 30
            }
        );
        // Daily timeframes cannot hold an evening window in any zone.
        let daily = TimeframeLength::new(1440).unwrap();
        assert!(eur()
            .for_timeframes(daily)
            .unwrap()
            .with_time_of_use(peak)
            .is_err());
        // Without windows the zone only sets the months: any length is fine.
        assert!(eur()
            .in_time_zone(kathmandu)
            .unwrap()
            .for_timeframes(daily)
            .is_ok());
    }

    #[test]
    fn a_tariff_read_back_is_checked_like_a_built_one() {
        let t = eur()
            .with_fixed_fee(Decimal::new(450, 2))
            .unwrap()
            .with_network_charge("0.02".parse().unwrap())
            .in_time_zone(time_zone("Europe/Vienna").unwrap())
            .unwrap()
            .with_time_of_use(TimeOfUse::new(0, 360, prices("0.20", "0.05")).on(Weekdays::WEEKEND))
            .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""time_zone":"Europe/Vienna""#), "{json}");
        assert!(json.contains(r#""days":["Sat","Sun"]"#), "{json}");
        assert_eq!(serde_json::from_str::<Tariff>(&json).unwrap(), t);
        let negative_fee = json.replace("\"4.50\"", "\"-4.50\"");
        assert_ne!(negative_fee, json);
        assert!(serde_json::from_str::<Tariff>(&negative_fee).is_err());
        let empty_window = json.replace("\"to_minute\":360", "\"to_minute\":0");
        assert_ne!(empty_window, json);
        assert!(serde_json::from_str::<Tariff>(&empty_window).is_err());
        let misaligned = json.replace("\"to_minute\":360", "\"to_minute\":361");
        assert!(serde_json::from_str::<Tariff>(&misaligned).is_err());
        let mars = json.replace("Europe/Vienna", "Mars/Olympus");
        assert!(serde_json::from_str::<Tariff>(&mars).is_err());
    }

    #[test]
    fn a_tariff_written_before_time_zones_still_reads() {
        let old = r#"{"currency":"EUR","grid":{"import":"0.30","export":"0.08"},
            "time_of_use":[{"from_minute":0,"to_minute":360,"grid":{"import":"0.20","export":"0.05"}}],
            "grid_fee":"0.05","fixed_fee":"4.50","operator_margin":"0.01"}"#;
        let t: Tariff = serde_json::from_str(old).unwrap();
        assert_eq!(t.time_zone(), Tz::UTC);
        assert_eq!(t.network_charge(), Price::ZERO);
        assert_eq!(t.time_of_use()[0].days, Weekdays::ALL);
        assert_eq!(
            t.grid_prices(&at(2026, 6, 6, 5, 45)),
            prices("0.20", "0.05")
        );
        assert_eq!(t.fixed_fee(), Decimal::new(450, 2));
    }

    #[test]
    fn fixed_fees_must_be_exact_and_not_negative() {
        let t = eur();
        assert!(t.clone().with_fixed_fee(Decimal::new(-1, 0)).is_err());
        assert!(t.clone().with_fixed_fee(Decimal::new(1, 10)).is_err());
        assert!(t.with_fixed_fee(Decimal::new(450, 2)).is_ok());
    }

    #[test]
    fn the_fixed_fee_is_prorated_by_local_month() {
        let vienna = time_zone("Europe/Vienna").unwrap();
        let t = eur()
            .with_fixed_fee(Decimal::from(31))
            .unwrap()
            .in_time_zone(vienna)
            .unwrap();
        // March in Vienna: 2026-02-28 23:00 UTC to 2026-03-31 22:00 UTC, 743 hours.
        let march = Utc.with_ymd_and_hms(2026, 2, 28, 23, 0, 0).unwrap();
        let april = Utc.with_ymd_and_hms(2026, 3, 31, 22, 0, 0).unwrap();
        assert_eq!(
            t.fixed_fee_between(march, april).unwrap(),
            Decimal::from(31)
        );
        // The UTC month is one hour of local March short and two hours of April long.
        let utc_march = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let utc_april = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
        let fee = t.fixed_fee_between(utc_march, utc_april).unwrap();
        let exact = Decimal::from(31) * Decimal::from(742) / Decimal::from(743)
            + Decimal::from(31) * Decimal::from(2) / Decimal::from(720);
        assert!(
            (fee - exact).abs() <= Decimal::new(2, 9),
            "{fee} vs {exact}"
        );
        // Nothing for an empty span; a 1e-9 floor for one second.
        assert_eq!(t.fixed_fee_between(april, march).unwrap(), Decimal::ZERO);
        let one_second = t
            .fixed_fee_between(march, march + Duration::seconds(1))
            .unwrap();
        assert_eq!(one_second, Decimal::new(11589, 9)); // ⌊31e9 / 2,674,800⌋
    }

    #[test]
    fn members_pay_for_the_days_they_are_registered() {
        let t = eur().with_fixed_fee(Decimal::from(3)).unwrap();
        let june = TimeRange::new(
            Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
            TimeframeLength::default(),
        )
        .unwrap();
        let day = |d| NaiveDate::from_ymd_opt(2026, 6, d).unwrap();
        let p = |joined| Prosumer::new("a", "a", crate::ProsumerKind::Household, joined).unwrap();
        assert_eq!(
            t.fixed_fee_for(&june, &p(day(1))).unwrap(),
            Decimal::from(3)
        );
        assert_eq!(
            t.fixed_fee_for(&june, &p(day(28))).unwrap(),
            Decimal::new(3, 1)
        );
        let left = p(day(1)).with_left(day(11)).unwrap();
        assert_eq!(t.fixed_fee_for(&june, &left).unwrap(), Decimal::ONE);
        let later = p(NaiveDate::from_ymd_opt(2026, 7, 2).unwrap());
        assert_eq!(t.fixed_fee_for(&june, &later).unwrap(), Decimal::ZERO);
    }
}
