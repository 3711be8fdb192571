//! Meter readings: one prosumer's produced and consumed energy in one
//! timeframe, and the rules for taking a batch of them in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::registry::{ProsumerId, Registry};
use crate::timeframe::{Timeframe, TimeframeLength};

/// One prosumer's energy in one timeframe, both values whole, non-negative
/// watt-hours.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use microgrid_core::{Reading, Timeframe, TimeframeLength, Wh};
/// let tf = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
/// let r = Reading::new("house-1".parse()?, tf, Wh::new(900), Wh::new(250))?;
/// assert_eq!(r.net(), Wh::new(650));
/// assert!(Reading::new("house-1".parse()?, tf, Wh::new(-1), Wh::new(0)).is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ReadingRepr", into = "ReadingRepr")]
pub struct Reading {
    prosumer: ProsumerId,
    timeframe: Timeframe,
    produced: Wh,
    consumed: Wh,
}

#[derive(Serialize, Deserialize)]
struct ReadingRepr {
    prosumer: ProsumerId,
    timeframe: Timeframe,
    produced: Wh,
    consumed: Wh,
}

impl TryFrom<ReadingRepr> for Reading {
    type Error = Error;
    fn try_from(r: ReadingRepr) -> Result<Reading> {
        Reading::new(r.prosumer, r.timeframe, r.produced, r.consumed)
    }
}

impl From<Reading> for ReadingRepr {
    fn from(r: Reading) -> ReadingRepr {
        ReadingRepr {
            prosumer: r.prosumer,
            timeframe: r.timeframe,
            produced: r.produced,
            consumed: r.consumed,
        }
    }
}

impl Reading {
    /// A reading; an error if either value is negative.
    pub fn new(
        prosumer: ProsumerId,
        timeframe: Timeframe,
        produced: Wh,
        consumed: Wh,
    ) -> Result<Reading> {
        for (what, value) in [("produced", produced), ("consumed", consumed)] {
            if value.get() < 0 {
                return Err(Error::NegativeEnergy {
                    id: prosumer.to_string(),
                    start: timeframe.start(),
                    what,
                    value: value.get(),
                });
            }
        }
        Ok(Reading {
            prosumer,
            timeframe,
            produced,
            consumed,
        })
    }

    /// Whose reading it is.
    pub fn prosumer(&self) -> &ProsumerId {
        &self.prosumer
    }
    /// The timeframe it covers.
    pub fn timeframe(&self) -> Timeframe {
        self.timeframe
    }
    /// Energy produced.
    pub fn produced(&self) -> Wh {
        self.produced
    }
    /// Energy consumed.
    pub fn consumed(&self) -> Wh {
        self.consumed
    }
    /// `produced - consumed`: positive for a seller, negative for a buyer.
    pub fn net(&self) -> Wh {
        Wh::new(self.produced.get() - self.consumed.get())
    }
    /// Whether two readings carry the same values.
    pub fn same_values(&self, other: &Reading) -> bool {
        self.produced == other.produced && self.consumed == other.consumed
    }
}

/// Plausibility limits for readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingLimits {
    /// The largest average power, in watts, a prosumer can produce or
    /// consume over a timeframe. Default 10 MW.
    pub max_power_w: i64,
}

impl Default for ReadingLimits {
    fn default() -> Self {
        ReadingLimits {
            max_power_w: 10_000_000,
        }
    }
}

impl ReadingLimits {
    /// The largest plausible energy in one timeframe of `length`.
    pub fn max_wh(&self, length: TimeframeLength) -> i64 {
        self.max_power_w.saturating_mul(i64::from(length.minutes())) / 60
    }
}

/// Checks a batch of readings against the registry and the limits, and
/// returns it sorted by timeframe and prosumer with exact duplicates
/// removed. One bad reading rejects the whole batch with an error that
/// names it.
///
/// Rejected: a timeframe of another length than the grid's, a value above
/// the plausibility limit, an unknown prosumer, a prosumer not active in
/// the timeframe, and two different readings for one prosumer and
/// timeframe. (Negative values and misaligned starts cannot be built.)
pub fn validate_batch(
    registry: &Registry,
    length: TimeframeLength,
    limits: ReadingLimits,
    batch: impl IntoIterator<Item = Reading>,
) -> Result<Vec<Reading>> {
    let max = limits.max_wh(length);
    let mut seen: BTreeMap<(Timeframe, ProsumerId), Reading> = BTreeMap::new();
    for r in batch {
        let start = r.timeframe.start();
        if r.timeframe.length() != length {
            return Err(Error::MixedTimeframeLength {
                id: r.prosumer.to_string(),
                start,
                expected: length.minutes(),
                found: r.timeframe.length().minutes(),
            });
        }
        for (what, value) in [("produced", r.produced), ("consumed", r.consumed)] {
            if value.get() > max {
                return Err(Error::ImplausibleEnergy {
                    id: r.prosumer.to_string(),
                    start,
                    what,
                    value: value.get(),
                    limit: max,
                });
            }
        }
        let prosumer = registry.get(&r.prosumer)?;
        if !prosumer.is_active_in(&r.timeframe) {
            return Err(Error::InactiveProsumer {
                id: r.prosumer.to_string(),
                start,
            });
        }
        match seen.get(&(r.timeframe, r.prosumer.clone())) {
            Some(prev) if !prev.same_values(&r) => {
                return Err(Error::DuplicateReading {
                    id: r.prosumer.to_string(),
                    start,
                })
            }
            Some(_) => {}
            None => {
                seen.insert((r.timeframe, r.prosumer.clone()), r);
            }
        }
    }
    Ok(seen.into_values().collect())
}

/// What ingesting a validated batch does to the stored readings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestPlan {
    /// Readings not stored yet.
    pub insert: Vec<Reading>,
    /// Readings that correct a stored value of a timeframe not yet cleared.
    pub replace: Vec<Reading>,
    /// How many readings were already stored with the same values.
    pub unchanged: usize,
}

/// Decides, for a validated batch, which readings are new, which correct a
/// stored reading and which change nothing. A different value for a
/// timeframe that is already cleared is an [`Error::ConflictingReading`]
/// (a new reading for it, an [`Error::LateReading`]),
/// and then nothing of the batch is to be stored.
///
/// Every store applies this one rule: `stored` looks up the stored reading
/// of a prosumer and timeframe, `cleared` says whether a timeframe has been
/// cleared.
pub fn plan_ingest(
    batch: Vec<Reading>,
    stored: impl Fn(&ProsumerId, &Timeframe) -> Option<Reading>,
    cleared: impl Fn(&Timeframe) -> bool,
) -> Result<IngestPlan> {
    let mut plan = IngestPlan::default();
    for r in batch {
        match stored(&r.prosumer, &r.timeframe) {
            None if cleared(&r.timeframe) => {
                return Err(Error::LateReading {
                    id: r.prosumer.to_string(),
                    start: r.timeframe.start(),
                })
            }
            None => plan.insert.push(r),
            Some(old) if old.same_values(&r) => plan.unchanged += 1,
            Some(_) if cleared(&r.timeframe) => {
                return Err(Error::ConflictingReading {
                    id: r.prosumer.to_string(),
                    start: r.timeframe.start(),
                })
            }
            Some(_) => plan.replace.push(r),
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Prosumer, ProsumerKind};
    use chrono::{NaiveDate, TimeZone, Utc};

    fn registry() -> Registry {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let mut reg = Registry::default();
        reg.register(Prosumer::new("a", "A", ProsumerKind::Household, day).unwrap())
            .unwrap();
        reg.register(
            Prosumer::new("gone", "Gone", ProsumerKind::Household, day)
                .unwrap()
                .with_left(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap())
                .unwrap(),
        )
        .unwrap();
        reg
    }

    fn tf(h: u32) -> Timeframe {
        Timeframe::new(
            Utc.with_ymd_and_hms(2026, 1, 5, h, 0, 0).unwrap(),
            TimeframeLength::default(),
        )
        .unwrap()
    }

    fn reading(id: &str, h: u32, p: i64, c: i64) -> Reading {
        Reading::new(id.parse().unwrap(), tf(h), Wh::new(p), Wh::new(c)).unwrap()
    }

    fn check(batch: Vec<Reading>) -> Result<Vec<Reading>> {
        validate_batch(
            &registry(),
            TimeframeLength::default(),
            ReadingLimits::default(),
            batch,
        )
    }

    #[test]
    fn exact_duplicates_collapse_and_the_batch_is_sorted() {
        let out = check(vec![
            reading("a", 2, 1, 1),
            reading("a", 1, 5, 0),
            reading("a", 2, 1, 1),
        ])
        .unwrap();
        assert_eq!(out, vec![reading("a", 1, 5, 0), reading("a", 2, 1, 1)]);
    }

    #[test]
    fn one_bad_reading_rejects_the_batch_and_names_it() {
        let err = check(vec![reading("a", 1, 1, 1), reading("nobody", 1, 1, 1)]).unwrap_err();
        assert_eq!(err, Error::UnknownProsumer("nobody".into()));
        let err = check(vec![reading("a", 1, 1, 1), reading("a", 1, 2, 1)]).unwrap_err();
        assert!(matches!(err, Error::DuplicateReading { ref id, .. } if id == "a"));
        let err = check(vec![reading("gone", 1, 1, 1)]).unwrap_err();
        assert!(matches!(err, Error::InactiveProsumer { .. }));
        let err = check(vec![reading("a", 1, 2_500_001, 0)]).unwrap_err();
        assert!(matches!(
            err,
            Error::ImplausibleEnergy {
                limit: 2_500_000,
                ..
            }
        ));
    }

    #[test]
    fn readings_of_another_length_are_refused() {
        let hour = Timeframe::new(tf(1).start(), TimeframeLength::new(60).unwrap()).unwrap();
        let r = Reading::new("a".parse().unwrap(), hour, Wh::new(1), Wh::new(1)).unwrap();
        assert!(matches!(
            check(vec![r]),
            Err(Error::MixedTimeframeLength { .. })
        ));
    }

    #[test]
    fn ingest_is_idempotent_and_refuses_changes_to_cleared_timeframes() {
        let old = reading("a", 1, 5, 0);
        let stored = |_: &ProsumerId, t: &Timeframe| (*t == tf(1)).then(|| old.clone());
        let plan = plan_ingest(
            vec![reading("a", 1, 5, 0), reading("a", 2, 1, 1)],
            stored,
            |t| *t == tf(1),
        )
        .unwrap();
        assert_eq!(
            (plan.insert.len(), plan.replace.len(), plan.unchanged),
            (1, 0, 1)
        );
        // A new reading for a cleared timeframe would never be billed.
        assert!(matches!(
            plan_ingest(vec![reading("a", 2, 1, 1)], stored, |_| true),
            Err(Error::LateReading { .. })
        ));
        let plan = plan_ingest(vec![reading("a", 1, 6, 0)], stored, |_| false).unwrap();
        assert_eq!(plan.replace.len(), 1);
        assert!(matches!(
            plan_ingest(vec![reading("a", 1, 6, 0)], stored, |_| true),
            Err(Error::ConflictingReading { .. })
        ));
    }
}
