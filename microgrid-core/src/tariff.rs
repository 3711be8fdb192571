//! Tariffs: what the grid charges and pays, and the community's fees.

use chrono::Timelike;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clearing::GridTariff;
use crate::error::{Error, Result};
use crate::money::{Currency, Price, AMOUNT_DECIMALS};
use crate::pricing::GridPrices;
use crate::timeframe::Timeframe;

/// Grid prices that apply from `from_minute` (inclusive) to `to_minute`
/// (exclusive) of each UTC day, e.g. a cheaper night tariff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeOfUse {
    /// First minute of the day (0..1440) the prices apply.
    pub from_minute: u32,
    /// Minute of the day they stop applying (exclusive, up to 1440).
    pub to_minute: u32,
    /// The grid prices in that window.
    pub grid: GridPrices,
}

/// What members pay and get besides the community price: the grid's import
/// and export prices (optionally by time of use), a per-kWh grid fee on
/// imported energy, a fixed fee per member and period, and an optional
/// operator margin per kWh bought inside the community.
///
/// ```
/// use microgrid_core::{tariff::Tariff, GridPrices};
/// let t = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.08".parse()?)?)
///     .with_grid_fee("0.05".parse()?)
///     .with_fixed_fee("4.50".parse().unwrap())?
///     .with_operator_margin("0.01".parse()?);
/// assert_eq!(t.currency().as_str(), "EUR");
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTariff")]
pub struct Tariff {
    currency: Currency,
    grid: GridPrices,
    time_of_use: Vec<TimeOfUse>,
    grid_fee: Price,
    fixed_fee: Decimal,
    operator_margin: Price,
}

impl Tariff {
    /// A tariff with these grid prices at all times and no fees.
    pub fn new(currency: Currency, grid: GridPrices) -> Tariff {
        Tariff {
            currency,
            grid,
            time_of_use: Vec::new(),
            grid_fee: Price::ZERO,
            fixed_fee: Decimal::ZERO,
            operator_margin: Price::ZERO,
        }
    }

    /// Adds a time-of-use window (checked: inside one day, not empty, not
    /// overlapping an earlier window).
    pub fn with_time_of_use(mut self, window: TimeOfUse) -> Result<Tariff> {
        let bad = window.from_minute >= window.to_minute
            || window.to_minute > 1440
            || self
                .time_of_use
                .iter()
                .any(|w| window.from_minute < w.to_minute && w.from_minute < window.to_minute);
        if bad {
            return Err(Error::Parse {
                what: "time-of-use window (from < to ≤ 1440, not overlapping)",
                input: format!("{}..{}", window.from_minute, window.to_minute),
            });
        }
        self.time_of_use.push(window);
        Ok(self)
    }

    /// Sets the network fee per kWh of energy imported from the grid.
    pub fn with_grid_fee(mut self, per_kwh: Price) -> Tariff {
        self.grid_fee = per_kwh;
        self
    }

    /// Sets the fixed fee each member pays per billing period (not
    /// negative, at most 9 decimals).
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

    /// Checks the per-kWh fees: the grid fee and the operator margin must
    /// not be negative (a negative fee would pay members for importing).
    /// Billing calls it; so can anyone building a tariff from user input.
    pub fn check(&self) -> Result<()> {
        for (what, price) in [
            ("grid fee", self.grid_fee),
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
    /// Grid fee per kWh imported.
    pub fn grid_fee(&self) -> Price {
        self.grid_fee
    }
    /// Fixed fee per member and period.
    pub fn fixed_fee(&self) -> Decimal {
        self.fixed_fee
    }
    /// Operator margin per kWh bought in the community.
    pub fn operator_margin(&self) -> Price {
        self.operator_margin
    }
}

/// A [`Tariff`] as read, before the checks of its builder methods.
#[derive(Deserialize)]
struct RawTariff {
    currency: Currency,
    grid: GridPrices,
    time_of_use: Vec<TimeOfUse>,
    grid_fee: Price,
    fixed_fee: Decimal,
    operator_margin: Price,
}

impl TryFrom<RawTariff> for Tariff {
    type Error = Error;
    fn try_from(r: RawTariff) -> Result<Tariff> {
        let tariff = Tariff::new(r.currency, r.grid)
            .with_grid_fee(r.grid_fee)
            .with_operator_margin(r.operator_margin)
            .with_fixed_fee(r.fixed_fee)?;
        r.time_of_use
            .into_iter()
            .try_fold(tariff, |t, window| t.with_time_of_use(window))
    }
}

/// The largest fixed fee per member and period: far above any real fee,
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
        let minute = tf.start().hour() * 60 + tf.start().minute();
        self.time_of_use
            .iter()
            .find(|w| w.from_minute <= minute && minute < w.to_minute)
            .map_or(self.grid, |w| w.grid)
    }
    fn price_currency(&self) -> Option<Currency> {
        Some(self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimeframeLength;
    use chrono::{TimeZone, Utc};

    fn prices(r: &str, e: &str) -> GridPrices {
        GridPrices::new(r.parse().unwrap(), e.parse().unwrap()).unwrap()
    }

    #[test]
    fn time_of_use_windows_pick_the_grid_prices() {
        let night = TimeOfUse {
            from_minute: 0,
            to_minute: 6 * 60,
            grid: prices("0.20", "0.05"),
        };
        let t = Tariff::new("EUR".parse().unwrap(), prices("0.30", "0.08"))
            .with_time_of_use(night)
            .unwrap();
        let at = |h| {
            Timeframe::new(
                Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap(),
                TimeframeLength::default(),
            )
            .unwrap()
        };
        assert_eq!(t.grid_prices(&at(5)), prices("0.20", "0.05"));
        assert_eq!(t.grid_prices(&at(6)), prices("0.30", "0.08"));
        assert!(t
            .clone()
            .with_time_of_use(TimeOfUse {
                from_minute: 300,
                to_minute: 400,
                grid: prices("1", "0")
            })
            .is_err());
    }

    #[test]
    fn a_tariff_read_back_is_checked_like_a_built_one() {
        let t = Tariff::new("EUR".parse().unwrap(), prices("0.30", "0.08"))
            .with_fixed_fee(Decimal::new(450, 2))
            .unwrap()
            .with_time_of_use(TimeOfUse {
                from_minute: 0,
                to_minute: 360,
                grid: prices("0.20", "0.05"),
            })
            .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Tariff>(&json).unwrap(), t);
        let negative_fee = json.replace("\"4.50\"", "\"-4.50\"");
        assert_ne!(negative_fee, json);
        assert!(serde_json::from_str::<Tariff>(&negative_fee).is_err());
        let empty_window = json.replace("\"to_minute\":360", "\"to_minute\":0");
        assert_ne!(empty_window, json);
        assert!(serde_json::from_str::<Tariff>(&empty_window).is_err());
    }

    #[test]
    fn fixed_fees_must_be_exact_and_not_negative() {
        let t = Tariff::new("EUR".parse().unwrap(), prices("0.30", "0.08"));
        assert!(t.clone().with_fixed_fee(Decimal::new(-1, 0)).is_err());
        assert!(t.clone().with_fixed_fee(Decimal::new(1, 10)).is_err());
        assert!(t.with_fixed_fee(Decimal::new(450, 2)).is_ok());
    }
}
