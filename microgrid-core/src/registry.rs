//! The registry: who is connected to the microgrid, since when, and where
//! their bitcoin goes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::address::PayoutAddress;
use crate::error::{Error, Result};
use crate::lightning::PayoutOffer;
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
    /// A community battery ([`crate::battery::BatterySpec`]): its readings
    /// are not metered but computed by the battery's dispatch rule.
    Battery,
}

impl ProsumerKind {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProsumerKind::Household => "household",
            ProsumerKind::Company => "company",
            ProsumerKind::Public => "public",
            ProsumerKind::Other => "other",
            ProsumerKind::Battery => "battery",
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
            "battery" => Ok(ProsumerKind::Battery),
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
    /// A BOLT12 offer for payouts over Lightning (absent in records made
    /// before offers existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offer: Option<PayoutOffer>,
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
        if let Some(reason) = text_problem(&name) {
            return Err(Error::InvalidName { id: id.0, reason });
        }
        Ok(Prosumer {
            id,
            name,
            kind,
            joined,
            left: None,
            payout: None,
            offer: None,
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

    /// The same prosumer, with a BOLT12 offer that payouts below the
    /// policy's on-chain threshold are paid to over Lightning
    /// ([`crate::lightning`]). [`PayoutOffer::parse`] checks the offer's
    /// chain and expiry when it is made; [`crate::lightning::split_payouts`]
    /// checks them again when a payout is due.
    pub fn with_offer(mut self, offer: PayoutOffer) -> Prosumer {
        self.offer = Some(offer);
        self
    }

    /// The same prosumer without a BOLT12 offer.
    pub fn without_offer(mut self) -> Prosumer {
        self.offer = None;
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
    /// BOLT12 offer for Lightning payouts, if any.
    pub fn offer(&self) -> Option<&PayoutOffer> {
        self.offer.as_ref()
    }

    /// Whether the prosumer is a member during the whole of `tf`.
    pub fn is_active_in(&self, tf: &Timeframe) -> bool {
        let from = midnight(self.joined);
        let until = self.left.map(midnight);
        from <= tf.start() && until.is_none_or(|u| tf.end() <= u)
    }
}

/// What is wrong with a text shown to people (a display name, a rate's
/// source, a reason for voiding), if anything: empty, longer than 200
/// characters, or holding a control or bidirectional-override character.
pub(crate) fn text_problem(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("it is empty")
    } else if text.chars().count() > 200 {
        Some("it is longer than 200 characters")
    } else if text.chars().any(is_control_or_bidi) {
        Some("it holds a control or bidirectional-override character")
    } else {
        None
    }
}

/// Characters a display name must not hold: controls (NUL, newlines, ...)
/// and the bidirectional overrides that make a name read differently from
/// how it is stored.
fn is_control_or_bidi(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A prosumer's dense index in a [`Registry`]: its position in the order of
/// registration, `0..registry.len()`. Columnar data (readings, clearing
/// results, bills) is laid out by this index, so a string id is looked up
/// once per grid, not once per reading. Indices never change: prosumers are
/// never removed, only marked as having left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProsumerIndex(u32);

impl ProsumerIndex {
    /// The index as a `usize`, for indexing columns.
    pub fn get(self) -> usize {
        self.0 as usize
    }

    /// The index as stored in columns.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

/// All prosumers of a grid, each with a dense [`ProsumerIndex`] (the order
/// of registration), and iterable in id order (the order every
/// deterministic rule of clearing uses).
///
/// Registering is `O(log n)`; [`Registry::register_all`] takes a whole
/// registry at once and stores nothing if any of it is refused.
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
/// assert_eq!(reg.index_of(&"b".parse()?)?.get(), 0); // registered first
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// By dense index.
    prosumers: Vec<Prosumer>,
    /// Id to dense index, in id order.
    by_id: BTreeMap<ProsumerId, ProsumerIndex>,
}

impl Registry {
    /// Adds a prosumer at the next index; an error if its id is taken.
    pub fn register(&mut self, p: Prosumer) -> Result<ProsumerIndex> {
        if self.by_id.contains_key(&p.id) {
            return Err(Error::DuplicateProsumer(p.id.0));
        }
        let index = ProsumerIndex(
            u32::try_from(self.prosumers.len()).map_err(|_| Error::Overflow("registry size"))?,
        );
        self.by_id.insert(p.id.clone(), index);
        self.prosumers.push(p);
        Ok(index)
    }

    /// Adds every prosumer of `batch`, in order, or none of them: an error
    /// names the first id that is taken (by the registry or earlier in the
    /// batch).
    pub fn register_all(&mut self, batch: impl IntoIterator<Item = Prosumer>) -> Result<()> {
        let before = self.prosumers.len();
        for p in batch {
            if let Err(e) = self.register(p) {
                for gone in self.prosumers.drain(before..) {
                    self.by_id.remove(&gone.id);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Replaces the record of a registered prosumer (a new name, address or
    /// leaving date); an error if it is unknown.
    pub fn update(&mut self, p: Prosumer) -> Result<ProsumerIndex> {
        let index = self.index_of(&p.id)?;
        self.prosumers[index.get()] = p;
        Ok(index)
    }

    /// The prosumer with `id`.
    pub fn get(&self, id: &ProsumerId) -> Result<&Prosumer> {
        Ok(&self.prosumers[self.index_of(id)?.get()])
    }

    /// The dense index of `id`.
    pub fn index_of(&self, id: &ProsumerId) -> Result<ProsumerIndex> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| Error::UnknownProsumer(id.0.clone()))
    }

    /// The dense index of `id`, if it is registered.
    pub fn find(&self, id: &str) -> Option<ProsumerIndex> {
        // Ids are compared as strings; a string that is no valid id is not registered.
        ProsumerId::new(id)
            .ok()
            .and_then(|id| self.by_id.get(&id).copied())
    }

    /// The prosumer at dense index `index` (`None` past the end).
    pub fn at(&self, index: usize) -> Option<&Prosumer> {
        self.prosumers.get(index)
    }

    /// All prosumers in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Prosumer> {
        self.by_id.values().map(|i| &self.prosumers[i.get()])
    }

    /// All prosumers in index (registration) order.
    pub fn by_index(&self) -> &[Prosumer] {
        &self.prosumers
    }

    /// The dense indices in id order: the permutation that clearing walks.
    pub fn id_order(&self) -> Vec<u32> {
        self.by_id.values().map(|i| i.0).collect()
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

/// A registry serializes as its prosumers in index order, and deserializes
/// by registering them again (so a duplicate id is an error).
impl Serialize for Registry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.prosumers.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Registry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Registry, D::Error> {
        let prosumers = Vec::<Prosumer>::deserialize(d)?;
        prosumers
            .into_iter()
            .collect::<Result<Registry>>()
            .map_err(serde::de::Error::custom)
    }
}

impl FromIterator<Prosumer> for Result<Registry> {
    fn from_iter<I: IntoIterator<Item = Prosumer>>(iter: I) -> Self {
        let mut r = Registry::default();
        r.register_all(iter)?;
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
    fn a_refused_batch_registers_nobody() {
        let p = |id: &str| Prosumer::new(id, id, ProsumerKind::Household, day(1)).unwrap();
        let mut reg = Registry::default();
        reg.register(p("a")).unwrap();
        let err = reg.register_all([p("b"), p("c"), p("b")]).unwrap_err();
        assert_eq!(err, Error::DuplicateProsumer("b".into()));
        assert_eq!(reg.len(), 1);
        assert!(reg.find("b").is_none());
        reg.register_all([p("c"), p("b")]).unwrap();
        assert_eq!(reg.id_order(), [0, 2, 1]);
        assert_eq!(reg.at(1).unwrap().id().as_str(), "c");
    }

    #[test]
    fn names_with_control_or_bidi_characters_are_refused() {
        for name in [
            "nul\0",
            "line\nbreak",
            "evil\u{202E}cod.exe",
            "iso\u{2066}late",
        ] {
            assert!(
                matches!(
                    Prosumer::new("p", name, ProsumerKind::Other, day(1)),
                    Err(Error::InvalidName { .. })
                ),
                "{name:?}"
            );
        }
        assert!(Prosumer::new(
            "p",
            "Bäckerei Müller & Söhne",
            ProsumerKind::Company,
            day(1)
        )
        .is_ok());
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
