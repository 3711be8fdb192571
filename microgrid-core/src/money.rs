//! Money: currencies, prices per kWh and amounts, all exact decimals.
//!
//! Prices carry at most [`PRICE_DECIMALS`] decimals per kWh; an amount for a
//! whole number of watt-hours is then exact with at most
//! [`AMOUNT_DECIMALS`] decimals (`price × Wh / 1000`), so sums of amounts
//! never round.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::energy::Wh;
use crate::error::{Error, Result};

/// Decimals a price per kWh may have (1e-6 of the currency unit per kWh).
pub const PRICE_DECIMALS: u32 = 6;
/// Decimals an amount of money may have: a price times whole Wh.
pub const AMOUNT_DECIMALS: u32 = PRICE_DECIMALS + 3;

/// The largest price magnitude per kWh a [`Price`] accepts. Far above any
/// real tariff, and small enough that no product or sum of amounts in
/// clearing, billing or settlement can overflow.
pub const MAX_PRICE_PER_KWH: i64 = 1_000_000;

/// An ISO 4217-style currency code: three ASCII capital letters.
///
/// ```
/// use microgrid_core::Currency;
/// let eur: Currency = "EUR".parse()?;
/// assert_eq!(eur.as_str(), "EUR");
/// assert!("eur".parse::<Currency>().is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The code, e.g. `"EUR"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Currency> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(Error::InvalidCurrency(s.to_owned()))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A price per kWh in a tariff's currency, exact, with at most
/// [`PRICE_DECIMALS`] decimals. May be negative (grid prices sometimes are);
/// mechanisms that need a sign check it.
///
/// ```
/// use microgrid_core::{Price, Wh};
/// use rust_decimal::Decimal;
/// let r = Price::new(Decimal::new(2845, 4))?; // 0.2845 per kWh
/// assert_eq!(r.amount_for(Wh::new(1_500)).to_string(), "0.4267500");
/// assert!(Price::new(Decimal::new(1, 7)).is_err()); // 7 decimals
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Price(Decimal);

impl Price {
    /// Zero per kWh.
    pub const ZERO: Price = Price(Decimal::ZERO);

    /// A price per kWh; at most [`PRICE_DECIMALS`] decimals.
    pub fn new(per_kwh: Decimal) -> Result<Price> {
        let normal = per_kwh.normalize();
        if normal.scale() > PRICE_DECIMALS {
            return Err(Error::InvalidPrice {
                what: "price per kWh",
                value: per_kwh,
                reason: "more than 6 decimals",
            });
        }
        if per_kwh.abs() > Decimal::from(MAX_PRICE_PER_KWH) {
            return Err(Error::InvalidPrice {
                what: "price per kWh",
                value: per_kwh,
                reason: "its magnitude is above 1,000,000 per kWh",
            });
        }
        Ok(Price(per_kwh))
    }

    /// Rounds a computed price (for example the result of a division) to
    /// [`PRICE_DECIMALS`] decimals, half to even, so it can be used for
    /// exact amounts.
    pub fn rounded(per_kwh: Decimal) -> Price {
        Price(per_kwh.round_dp_with_strategy(
            PRICE_DECIMALS,
            rust_decimal::RoundingStrategy::MidpointNearestEven,
        ))
    }

    /// The price per kWh.
    pub fn per_kwh(self) -> Decimal {
        self.0
    }

    /// The price in millionths per kWh ([`PRICE_DECIMALS`] decimals), the
    /// integer unit columnar billing and the views compute in; below 2^62
    /// in magnitude (every [`Price`] is, being at most
    /// [`MAX_PRICE_PER_KWH`]).
    pub fn micros(self) -> Result<i64> {
        let mut d = self.0;
        d.rescale(PRICE_DECIMALS);
        // `rescale` keeps a smaller scale when the mantissa would not fit.
        if d.scale() != PRICE_DECIMALS || d.mantissa().abs() >= 1 << 62 {
            return Err(Error::Overflow("price in millionths"));
        }
        i64::try_from(d.mantissa()).map_err(|_| Error::Overflow("price in millionths"))
    }

    /// The exact amount for `energy` at this price: `price × Wh / 1000`.
    pub fn amount_for(self, energy: Wh) -> Decimal {
        self.0 * energy.as_kwh()
    }
}

impl TryFrom<Decimal> for Price {
    type Error = Error;
    fn try_from(d: Decimal) -> Result<Price> {
        Price::new(d)
    }
}

impl From<Price> for Decimal {
    fn from(p: Price) -> Decimal {
        p.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/kWh", self.0)
    }
}

impl FromStr for Price {
    type Err = Error;
    fn from_str(s: &str) -> Result<Price> {
        let d = Decimal::from_str_exact(s.trim().trim_end_matches("/kWh")).map_err(|_| {
            Error::Parse {
                what: "price per kWh",
                input: s.to_owned(),
            }
        })?;
        Price::new(d)
    }
}

/// Splits `total` into parts proportional to `weights`, exactly.
///
/// `total` is counted in units of 10^-[`AMOUNT_DECIMALS`] and must have at
/// most that many decimals. Rounding rule: cumulative floor in the order
/// given (energy's rule of [`crate::clearing`] with a zero offset: an
/// amount is split once per period, not timeframe after timeframe), so the
/// parts add up to `total` exactly and each is within one unit of its exact
/// pro rata share. Returns `None` when all weights are zero.
pub fn split_pro_rata(total: Decimal, weights: &[u64]) -> Result<Option<Vec<Decimal>>> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return Ok(None);
    }
    let mut units = total;
    units.rescale(AMOUNT_DECIMALS);
    if units != total {
        return Err(Error::InvalidPrice {
            what: "amount to split",
            value: total,
            reason: "more than 9 decimals",
        });
    }
    let negative = units.is_sign_negative();
    let mantissa = units.mantissa().unsigned_abs();
    let shares = crate::clearing::cumulative_floor_shares_u128(mantissa, weights, sum)
        .ok_or(Error::Overflow("pro rata split of an amount"))?;
    Ok(Some(
        shares
            .into_iter()
            .map(|u| {
                let v = Decimal::from_i128_with_scale(u as i128, AMOUNT_DECIMALS);
                if negative {
                    -v
                } else {
                    v
                }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_amounts_are_exact() {
        let p: Price = "0.123456".parse().unwrap();
        assert_eq!(p.amount_for(Wh::new(1)).to_string(), "0.000123456");
        assert_eq!(p.amount_for(Wh::new(-1000)), Decimal::new(-123456, 6));
    }

    #[test]
    fn price_with_seven_decimals_is_rejected_but_trailing_zeros_are_fine() {
        assert!("0.1234567".parse::<Price>().is_err());
        assert!("0.1234560".parse::<Price>().is_ok());
    }

    #[test]
    fn rounded_price_is_half_even() {
        assert_eq!(
            Price::rounded(Decimal::new(12345625, 8)).per_kwh(),
            Decimal::new(123456, 6)
        );
    }

    #[test]
    fn split_pro_rata_conserves_the_total() {
        let parts = split_pro_rata(Decimal::new(100, 0), &[1, 1, 1])
            .unwrap()
            .unwrap();
        assert_eq!(parts.iter().sum::<Decimal>(), Decimal::new(100, 0));
        assert_eq!(parts[0].to_string(), "33.333333333");
        assert_eq!(parts[2].to_string(), "33.333333334");
        assert!(split_pro_rata(Decimal::ONE, &[0, 0]).unwrap().is_none());
    }

    #[test]
    fn currency_serde_round_trip() {
        let c: Currency = serde_json::from_str("\"CHF\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"CHF\"");
        assert!(serde_json::from_str::<Currency>("\"chf\"").is_err());
    }
}
