//! Timeframes: half-open UTC intervals `[start, start + length)` on a fixed
//! grid.

use std::fmt;

use chrono::{DateTime, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The length of the timeframes of a grid, in whole minutes dividing a day
/// (5, 15, 30 and 60 are common; 15 is the default).
///
/// ```
/// use microgrid_core::TimeframeLength;
/// assert_eq!(TimeframeLength::default().minutes(), 15);
/// assert!(TimeframeLength::new(7).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct TimeframeLength(u32);

impl TimeframeLength {
    /// Fifteen minutes.
    pub const FIFTEEN_MINUTES: TimeframeLength = TimeframeLength(15);

    /// A length of `minutes`, which must divide 1440.
    pub fn new(minutes: u32) -> Result<TimeframeLength> {
        if minutes == 0 || 1440 % minutes != 0 {
            return Err(Error::InvalidTimeframeLength { minutes });
        }
        Ok(TimeframeLength(minutes))
    }

    /// The length in minutes.
    pub const fn minutes(self) -> u32 {
        self.0
    }

    /// The length in seconds.
    pub const fn seconds(self) -> i64 {
        self.0 as i64 * 60
    }

    /// The length as a duration.
    pub fn duration(self) -> Duration {
        Duration::seconds(self.seconds())
    }

    /// How many timeframes fit in a day.
    pub const fn per_day(self) -> u32 {
        1440 / self.0
    }
}

impl Default for TimeframeLength {
    fn default() -> Self {
        Self::FIFTEEN_MINUTES
    }
}

impl TryFrom<u32> for TimeframeLength {
    type Error = Error;
    fn try_from(m: u32) -> Result<Self> {
        TimeframeLength::new(m)
    }
}

impl From<TimeframeLength> for u32 {
    fn from(l: TimeframeLength) -> u32 {
        l.0
    }
}

/// One timeframe: `[start, start + length)`, with `start` aligned to the
/// grid of `length` (counted from the Unix epoch, so from midnight UTC).
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use microgrid_core::{Timeframe, TimeframeLength};
/// let start = Utc.with_ymd_and_hms(2026, 6, 1, 12, 15, 0).unwrap();
/// let tf = Timeframe::new(start, TimeframeLength::default())?;
/// assert_eq!(tf.end(), Utc.with_ymd_and_hms(2026, 6, 1, 12, 30, 0).unwrap());
/// assert!(Timeframe::new(start + chrono::Duration::minutes(1), tf.length()).is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timeframe {
    start: DateTime<Utc>,
    length: TimeframeLength,
}

impl Timeframe {
    /// The timeframe starting at `start`; an error if `start` is not on the
    /// grid of `length`.
    pub fn new(start: DateTime<Utc>, length: TimeframeLength) -> Result<Timeframe> {
        if start.nanosecond() != 0 || start.timestamp().rem_euclid(length.seconds()) != 0 {
            return Err(Error::MisalignedTimeframe {
                start,
                minutes: length.minutes(),
            });
        }
        // The end (and the next timeframe's end) must be representable.
        if start.checked_add_signed(length.duration() * 2).is_none() {
            return Err(Error::InvalidRange {
                start,
                end: start,
                reason: "the timeframe ends past the last representable time",
            });
        }
        Ok(Timeframe { start, length })
    }

    /// The timeframe that contains the instant `t`.
    pub fn containing(t: DateTime<Utc>, length: TimeframeLength) -> Timeframe {
        let secs = t.timestamp();
        let start = secs - secs.rem_euclid(length.seconds());
        Timeframe {
            start: DateTime::from_timestamp(start, 0).unwrap_or(t),
            length,
        }
    }

    /// Start (inclusive).
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// End (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.start + self.length.duration()
    }

    /// The length.
    pub fn length(&self) -> TimeframeLength {
        self.length
    }

    /// The next timeframe.
    pub fn next(&self) -> Timeframe {
        Timeframe {
            start: self.end(),
            length: self.length,
        }
    }

    /// Whether the instant `t` lies in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end()
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.format("%Y-%m-%dT%H:%MZ"),
            self.end().format("%Y-%m-%dT%H:%MZ")
        )
    }
}

/// A half-open range of whole timeframes `[start, end)`, such as a day or a
/// billing period.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use microgrid_core::{TimeRange, TimeframeLength};
/// let june = TimeRange::new(
///     Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
///     Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
///     TimeframeLength::default(),
/// )?;
/// assert_eq!(june.len(), 30 * 96);
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    length: TimeframeLength,
}

/// The longest range: 100 years (36,525 days). Clearing and billing walk a
/// range a chunk at a time, so this bounds the bookkeeping, not the memory.
pub const MAX_RANGE_DAYS: i64 = 36_525;

impl TimeRange {
    /// The timeframes from `start` (inclusive) to `end` (exclusive); both
    /// must be on the grid, `start < end`, and the range at most
    /// [`MAX_RANGE_DAYS`] long ([`Error::TooLarge`]).
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        length: TimeframeLength,
    ) -> Result<TimeRange> {
        if start >= end {
            return Err(Error::InvalidRange {
                start,
                end,
                reason: "start must be before end",
            });
        }
        Timeframe::new(start, length)?;
        Timeframe::new(end, length)?;
        let spanned = end - start;
        if spanned > chrono::Duration::days(MAX_RANGE_DAYS) {
            return Err(Error::TooLarge {
                what: "days in a range",
                found: spanned.num_seconds().unsigned_abs().div_ceil(86_400),
                max: MAX_RANGE_DAYS.unsigned_abs(),
            });
        }
        Ok(TimeRange { start, end, length })
    }

    /// First instant of the range.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// First instant after the range.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// The timeframe length.
    pub fn length(&self) -> TimeframeLength {
        self.length
    }

    /// The number of timeframes.
    pub fn len(&self) -> usize {
        ((self.end - self.start).num_seconds() / self.length.seconds()) as usize
    }

    /// Always false: a range holds at least one timeframe.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `tf` lies inside the range.
    pub fn contains(&self, tf: &Timeframe) -> bool {
        tf.length() == self.length && self.start <= tf.start() && tf.end() <= self.end
    }

    /// The timeframes of the range, in order.
    pub fn timeframes(&self) -> impl Iterator<Item = Timeframe> + '_ {
        let first = Timeframe {
            start: self.start,
            length: self.length,
        };
        std::iter::successors(Some(first), |t| Some(t.next())).take(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lengths_must_divide_a_day() {
        for ok in [1, 5, 15, 30, 60, 120, 1440] {
            assert!(TimeframeLength::new(ok).is_ok(), "{ok}");
        }
        for bad in [0, 7, 50, 1441] {
            assert!(TimeframeLength::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sub_second_starts_are_misaligned() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::milliseconds(1);
        assert!(matches!(
            Timeframe::new(t, TimeframeLength::default()),
            Err(Error::MisalignedTimeframe { .. })
        ));
    }

    #[test]
    fn containing_rounds_down_to_the_grid() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 44, 59).unwrap();
        let tf = Timeframe::containing(t, TimeframeLength::new(30).unwrap());
        assert_eq!(
            tf.start(),
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 30, 0).unwrap()
        );
        assert!(tf.contains(t) && !tf.contains(tf.end()));
    }

    #[test]
    fn range_iterates_every_timeframe_once() {
        let s = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let r = TimeRange::new(s, s + Duration::hours(2), TimeframeLength::default()).unwrap();
        let all: Vec<_> = r.timeframes().collect();
        assert_eq!(all.len(), 8);
        assert_eq!(all[7].end(), r.end());
        assert!(TimeRange::new(s, s, TimeframeLength::default()).is_err());
    }
}
