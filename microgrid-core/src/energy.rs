//! Energy in whole watt-hours.

use std::fmt;
use std::iter::Sum;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An amount of energy in whole watt-hours.
///
/// Signed, because net positions and grid legs have a direction; readings
/// check that their values are not negative. Arithmetic is checked: an
/// overflow is an [`Error::Overflow`], never a wrap.
///
/// ```
/// use microgrid_core::Wh;
/// let produced = Wh::new(1_500);
/// let consumed: Wh = "400".parse()?;
/// assert_eq!(produced.checked_sub(consumed)?, Wh::new(1_100));
/// assert_eq!(Wh::new(2_500).to_string(), "2500 Wh");
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Wh(i64);

impl Wh {
    /// No energy.
    pub const ZERO: Wh = Wh(0);

    /// Energy of `wh` watt-hours.
    pub const fn new(wh: i64) -> Wh {
        Wh(wh)
    }

    /// The number of watt-hours.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, or an overflow error.
    pub fn checked_add(self, other: Wh) -> Result<Wh> {
        self.0
            .checked_add(other.0)
            .map(Wh)
            .ok_or(Error::Overflow("energy sum"))
    }

    /// `self - other`, or an overflow error.
    pub fn checked_sub(self, other: Wh) -> Result<Wh> {
        self.0
            .checked_sub(other.0)
            .map(Wh)
            .ok_or(Error::Overflow("energy difference"))
    }

    /// The energy as a [`rust_decimal::Decimal`] number of kilowatt-hours
    /// (exact: 1 Wh = 0.001 kWh).
    pub fn as_kwh(self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::new(self.0, 3)
    }

    /// Adds energies, failing on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Wh>>(items: I) -> Result<Wh> {
        items.into_iter().try_fold(Wh::ZERO, Wh::checked_add)
    }
}

/// Panics on overflow, like integer addition in debug builds; use
/// [`Wh::checked_sum`] on values from outside.
impl Sum for Wh {
    fn sum<I: Iterator<Item = Wh>>(iter: I) -> Wh {
        Wh(iter.map(|w| w.0).sum())
    }
}

impl fmt::Display for Wh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Wh", self.0)
    }
}

/// Parses `"1500"` or `"1500 Wh"`.
impl FromStr for Wh {
    type Err = Error;
    fn from_str(s: &str) -> Result<Wh> {
        let digits = s.trim().trim_end_matches("Wh").trim_end();
        digits.parse::<i64>().map(Wh).map_err(|_| Error::Parse {
            what: "watt-hours",
            input: s.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for v in [0, 1, -7, i64::MAX, i64::MIN] {
            let w = Wh::new(v);
            assert_eq!(w.to_string().parse::<Wh>().unwrap(), w);
        }
    }

    #[test]
    fn parse_rejects_fractions_and_words() {
        assert!("1.5".parse::<Wh>().is_err());
        assert!("kWh".parse::<Wh>().is_err());
        assert!("".parse::<Wh>().is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            Wh::new(i64::MAX).checked_add(Wh::new(1)),
            Err(Error::Overflow("energy sum"))
        );
        assert!(Wh::new(i64::MIN).checked_sub(Wh::new(1)).is_err());
    }

    #[test]
    fn kwh_is_exact() {
        assert_eq!(Wh::new(1234).as_kwh().to_string(), "1.234");
    }
}
