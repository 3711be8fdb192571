//! The registry: who is connected to the microgrid, since when, and where
//! their bitcoin goes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::address::PayoutAddress;
use crate::error::{Error, Result};
use crate::timeframe::Timeframe;

/// A prosumer's stable key, chosen by the operator: 1 to 64 ASCII letters,
/// digits, `-`, `_` or `.`.
///
/// ```
/// use microgrid_core::ProsumerId;
/// let id: ProsumerId = "house-07".parse()?;
/// assert_eq!(id.as_str(), "house-07");
/// assert!("two words".parse::<ProsumerId>().is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProsumerId(String);

impl ProsumerId {
    /// Longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<ProsumerId> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > Self::MAX_LEN {
            Some("it is longer than 64 characters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidProsumerId { id, reason }),
            None => Ok(ProsumerId(id)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProsumerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<ProsumerId> {
        ProsumerId::new(s)
    }
}

impl TryFrom<String> for ProsumerId {
    type Error = Error;
    fn try_from(s: String) -> Result<ProsumerId> {
        ProsumerId::new(s)
    }
}

impl From<ProsumerId> for String {
    fn from(id: ProsumerId) -> String {
        id.0
    }
}

impl fmt::Display for ProsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of participant a prosumer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProsumerKind {
    /// A private household.
    Household,
    /// A company or farm.
    Company,
    /// A public building (school, town hall, ...).
    Public,
    /// Anything else.
    Other,
}

impl ProsumerKind {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProsumerKind::Household => "household",
            ProsumerKind::Company => "company",
            ProsumerKind::Public => "public",
            ProsumerKind::Other => "other",
        }
    }
}

impl fmt::Display for ProsumerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProsumerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<ProsumerKind> {
        match s.to_ascii_lowercase().as_str() {
            "household" => Ok(ProsumerKind::Household),
            "company" => Ok(ProsumerKind::Company),
            "public" => Ok(ProsumerKind::Public),
            "other" => Ok(ProsumerKind::Other),
            _ => Err(Error::UnknownProsumerKind(s.to_owned())),
        }
    }
}

/// A participant of the microgrid.
///
/// Membership runs from `joined` (inclusive, from midnight UTC) to `left`
/// (exclusive, from midnight UTC), so a prosumer that leaves on the 1st of
/// July is billed for all of June.
///
/// ```
/// use chrono::NaiveDate;
/// use microgrid_core::{Network, PayoutAddress, Prosumer, ProsumerKind};
/// let p = Prosumer::new("house-1", "The Millers", ProsumerKind::Household,
///                       NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())?
///     .with_payout(PayoutAddress::new("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network::Regtest)?);
/// assert_eq!(p.id().as_str(), "house-1");
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prosumer {
    id: ProsumerId,
    name: String,
    kind: ProsumerKind,
    joined: NaiveDate,
    left: Option<NaiveDate>,
    payout: Option<PayoutAddress>,
}

impl Prosumer {
    /// A prosumer that joined on `joined` and has not left; no payout
    /// address yet.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        kind: ProsumerKind,
        joined: NaiveDate,
    ) -> Result<Prosumer> {
        let id = ProsumerId::new(id)?;
        let name = name.into();
        let bad_name = if name.trim().is_empty() {
            Some("it is empty")
        } else if name.chars().count() > 200 {
            Some("it is longer than 200 characters")
        } else {
            None
        };
        if let Some(reason) = bad_name {
            return Err(Error::InvalidName { id: id.0, reason });
        }
        Ok(Prosumer {
            id,
            name,
            kind,
            joined,
            left: None,
            payout: None,
        })
    }

    /// The same prosumer, leaving on `left`.
    pub fn with_left(mut self, left: NaiveDate) -> Result<Prosumer> {
        if left < self.joined {
            return Err(Error::LeftBeforeJoined {
                id: self.id.0,
                joined: self.joined,
                left,
            });
        }
        self.left = Some(left);
        Ok(self)
    }

    /// The same prosumer, paid out to `address`.
    pub fn with_payout(mut self, address: PayoutAddress) -> Prosumer {
        self.payout = Some(address);
        self
    }

    /// Stable id.
    pub fn id(&self) -> &ProsumerId {
        &self.id
    }
    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Kind.
    pub fn kind(&self) -> ProsumerKind {
        self.kind
    }
    /// Date it joined.
    pub fn joined(&self) -> NaiveDate {
        self.joined
    }
    /// Date it left, if it did.
    pub fn left(&self) -> Option<NaiveDate> {
        self.left
    }
    /// Payout address, if any.
    pub fn payout(&self) -> Option<&PayoutAddress> {
        self.payout.as_ref()
    }

    /// Whether the prosumer is a member during the whole of `tf`.
    pub fn is_active_in(&self, tf: &Timeframe) -> bool {
        let from = midnight(self.joined);
        let until = self.left.map(midnight);
        from <= tf.start() && until.is_none_or(|u| tf.end() <= u)
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// All prosumers of a grid, by id (in id order, which is the order every
/// deterministic rule of clearing uses).
///
/// ```
/// use chrono::NaiveDate;
/// use microgrid_core::{Prosumer, ProsumerKind, Registry};
/// let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
/// let mut reg = Registry::default();
/// reg.register(Prosumer::new("b", "B", ProsumerKind::Company, day)?)?;
/// reg.register(Prosumer::new("a", "A", ProsumerKind::Household, day)?)?;
/// assert!(reg.register(Prosumer::new("a", "again", ProsumerKind::Household, day)?).is_err());
/// let ids: Vec<_> = reg.iter().map(|p| p.id().as_str()).collect();
/// assert_eq!(ids, ["a", "b"]);
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    prosumers: BTreeMap<ProsumerId, Prosumer>,
}

impl Registry {
    /// Adds a prosumer; an error if its id is taken.
    pub fn register(&mut self, p: Prosumer) -> Result<()> {
        if self.prosumers.contains_key(&p.id) {
            return Err(Error::DuplicateProsumer(p.id.0));
        }
        self.prosumers.insert(p.id.clone(), p);
        Ok(())
    }

    /// Replaces the record of a registered prosumer (a new name, address or
    /// leaving date); an error if it is unknown.
    pub fn update(&mut self, p: Prosumer) -> Result<()> {
        match self.prosumers.get_mut(&p.id) {
            Some(slot) => {
                *slot = p;
                Ok(())
            }
            None => Err(Error::UnknownProsumer(p.id.0)),
        }
    }

    /// The prosumer with `id`.
    pub fn get(&self, id: &ProsumerId) -> Result<&Prosumer> {
        self.prosumers
            .get(id)
            .ok_or_else(|| Error::UnknownProsumer(id.0.clone()))
    }

    /// All prosumers in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Prosumer> {
        self.prosumers.values()
    }

    /// Number of prosumers.
    pub fn len(&self) -> usize {
        self.prosumers.len()
    }

    /// Whether no prosumer is registered.
    pub fn is_empty(&self) -> bool {
        self.prosumers.is_empty()
    }
}

impl FromIterator<Prosumer> for Result<Registry> {
    fn from_iter<I: IntoIterator<Item = Prosumer>>(iter: I) -> Self {
        let mut r = Registry::default();
        for p in iter {
            r.register(p)?;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeframe::TimeframeLength;
    use chrono::TimeZone;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn membership_is_half_open_by_day() {
        let p = Prosumer::new("p", "P", ProsumerKind::Household, day(2))
            .unwrap()
            .with_left(day(4))
            .unwrap();
        let tf = |d, h| {
            Timeframe::new(
                Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap(),
                TimeframeLength::default(),
            )
            .unwrap()
        };
        assert!(!p.is_active_in(&tf(1, 23)));
        assert!(p.is_active_in(&tf(2, 0)));
        assert!(p.is_active_in(&tf(3, 23)));
        assert!(!p.is_active_in(&tf(4, 0)));
    }

    #[test]
    fn leaving_before_joining_is_refused() {
        let p = Prosumer::new("p", "P", ProsumerKind::Household, day(5)).unwrap();
        assert!(matches!(
            p.with_left(day(4)),
            Err(Error::LeftBeforeJoined { .. })
        ));
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert!(ProsumerId::new("").is_err());
        assert!(ProsumerId::new("x".repeat(65)).is_err());
        assert!(ProsumerId::new("ok.id_1-2").is_ok());
        assert!(matches!(
            Prosumer::new("p", "  ", ProsumerKind::Other, day(1)),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!(
            "Company".parse::<ProsumerKind>().unwrap(),
            ProsumerKind::Company
        );
        assert!("factory".parse::<ProsumerKind>().is_err());
    }
}
