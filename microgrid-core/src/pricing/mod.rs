//! Pricing mechanisms: how the community prices the energy its members
//! share, given the grid's import price `r` and export (feed-in) price `e`.
//!
//! Every mechanism here prices one thing, the **community price** `p` of a
//! timeframe: sellers receive `p` for each kWh they sell inside the
//! community and buyers pay `p` for each kWh they buy there. The grid legs
//! pass through at the grid's prices: a buyer pays `r` for the part of its
//! deficit the community imports for it, a seller receives `e` for the part
//! of its surplus the community exports for it (see
//! [`crate::clearing`] for how shared energy is split). So in every
//! timeframe, exactly,
//!
//! ```text
//! Σ buyers pay − Σ sellers receive = r·import − e·export
//! ```
//!
//! the community's bill from the grid: every mechanism is budget-balanced
//! by construction, and the property tests check it to the last decimal.
//! What differs is who gets the saving against trading with the grid: the
//! effective average prices ([`crate::TimeframeSummary::buy_price`],
//! [`crate::TimeframeSummary::sell_price`]) show it, and for
//! [`SupplyDemandRatio`] they are exactly the formulas of Liu et al.
//!
//! Community prices are rounded to [`crate::money::PRICE_DECIMALS`]
//! decimals (half to even) so that amounts stay exact decimals.
//!
//! [`BillSharing`] prices per billing period, not per timeframe: its
//! timeframes report [`CommunityPrice::PerPeriod`], and
//! [`bill_sharing::BillSharingPeriod`] computes the amounts once the
//! period's grid bill is known.

pub mod bill_sharing;
mod fixed;
mod mmr;
mod sdr;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use bill_sharing::BillSharing;
pub use fixed::FixedPrice;
pub use mmr::MidMarketRate;
pub use sdr::SupplyDemandRatio;

use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::money::Price;

/// The grid's prices in one timeframe: `import` (r), what the community
/// pays the grid per kWh it draws, and `export` (e), what the grid pays per
/// kWh fed in. Both non-negative, `export ≤ import` (otherwise buying from
/// the grid to sell back would pay).
///
/// ```
/// use microgrid_core::{GridPrices, Price};
/// let g = GridPrices::new("0.30".parse()?, "0.08".parse()?)?;
/// assert_eq!(g.mid().to_string(), "0.19/kWh");
/// assert!(GridPrices::new("0.08".parse()?, "0.30".parse()?).is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "GridPricesRepr", into = "GridPricesRepr")]
pub struct GridPrices {
    import: Price,
    export: Price,
}

#[derive(Serialize, Deserialize)]
struct GridPricesRepr {
    import: Price,
    export: Price,
}

impl TryFrom<GridPricesRepr> for GridPrices {
    type Error = Error;
    fn try_from(r: GridPricesRepr) -> Result<GridPrices> {
        GridPrices::new(r.import, r.export)
    }
}

impl From<GridPrices> for GridPricesRepr {
    fn from(g: GridPrices) -> GridPricesRepr {
        GridPricesRepr {
            import: g.import,
            export: g.export,
        }
    }
}

impl GridPrices {
    /// Grid prices; see the type's rules.
    pub fn new(import: Price, export: Price) -> Result<GridPrices> {
        if export.per_kwh().is_sign_negative() && !export.per_kwh().is_zero() {
            return Err(Error::InvalidPrice {
                what: "grid export price",
                value: export.per_kwh(),
                reason: "it is negative",
            });
        }
        if import < export {
            return Err(Error::InvalidPrice {
                what: "grid import price",
                value: import.per_kwh(),
                reason: "it is below the export price",
            });
        }
        Ok(GridPrices { import, export })
    }

    /// The import price `r`.
    pub fn import(&self) -> Price {
        self.import
    }

    /// The export price `e`.
    pub fn export(&self) -> Price {
        self.export
    }

    /// The mid-market rate `(r + e) / 2` (exact: halving adds one decimal,
    /// rounded half to even only past [`crate::money::PRICE_DECIMALS`]).
    pub fn mid(&self) -> Price {
        Price::rounded((self.import.per_kwh() + self.export.per_kwh()) / rust_decimal::Decimal::TWO)
    }
}

/// What a mechanism sees of one timeframe: total surplus `supply` (S),
/// total deficit `demand` (D) and the grid's prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketState {
    /// S: the sum of the sellers' surpluses.
    pub supply: Wh,
    /// D: the sum of the buyers' deficits.
    pub demand: Wh,
    /// The grid's prices in the timeframe.
    pub grid: GridPrices,
}

/// The community price a mechanism sets for one timeframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommunityPrice {
    /// Shared energy changes hands at this price per kWh.
    Known(Price),
    /// The price is set per billing period (bill sharing).
    PerPeriod,
}

impl CommunityPrice {
    /// The price, when it is known per timeframe.
    pub fn known(self) -> Option<Price> {
        match self {
            CommunityPrice::Known(p) => Some(p),
            CommunityPrice::PerPeriod => None,
        }
    }
}

/// A pricing mechanism. Implement it to plug in another rule: it only sets
/// the community price, so budget balance holds for any implementation.
pub trait PricingMechanism: fmt::Debug + Send + Sync {
    /// A short name, e.g. `"sdr"`.
    fn name(&self) -> &str;

    /// The community price of one timeframe. Called for every timeframe,
    /// including those with no supply (S = 0) or no demand (D = 0).
    fn community_price(&self, market: &MarketState) -> CommunityPrice;
}

/// The built-in mechanisms, by name (`fixed:<price>`, `mmr`, `sdr`,
/// `bill_sharing`).
///
/// ```
/// use microgrid_core::Mechanism;
/// let m: Mechanism = "sdr".parse()?;
/// assert_eq!(m.to_string(), "sdr");
/// assert_eq!("fixed:0.15".parse::<Mechanism>()?.to_string(), "fixed:0.15");
/// assert!("auction".parse::<Mechanism>().is_err());
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// [`FixedPrice`].
    Fixed(Price),
    /// [`MidMarketRate`].
    MidMarketRate,
    /// [`SupplyDemandRatio`].
    SupplyDemandRatio,
    /// [`BillSharing`].
    BillSharing,
}

impl PricingMechanism for Mechanism {
    fn name(&self) -> &str {
        match self {
            Mechanism::Fixed(_) => "fixed",
            Mechanism::MidMarketRate => "mmr",
            Mechanism::SupplyDemandRatio => "sdr",
            Mechanism::BillSharing => "bill_sharing",
        }
    }

    fn community_price(&self, market: &MarketState) -> CommunityPrice {
        match self {
            Mechanism::Fixed(p) => FixedPrice(*p).community_price(market),
            Mechanism::MidMarketRate => MidMarketRate.community_price(market),
            Mechanism::SupplyDemandRatio => SupplyDemandRatio.community_price(market),
            Mechanism::BillSharing => BillSharing.community_price(market),
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mechanism::Fixed(p) => write!(f, "fixed:{}", p.per_kwh()),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Mechanism {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mechanism> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "mmr" | "mid_market_rate" | "mid-market-rate" => Ok(Mechanism::MidMarketRate),
            "sdr" | "supply_demand_ratio" | "supply-demand-ratio" => {
                Ok(Mechanism::SupplyDemandRatio)
            }
            "bs" | "bill_sharing" | "bill-sharing" => Ok(Mechanism::BillSharing),
            _ => match lower.strip_prefix("fixed:") {
                Some(price) => {
                    let price: Price = price.parse()?;
                    if price.per_kwh().is_sign_negative() && !price.per_kwh().is_zero() {
                        return Err(Error::InvalidPrice {
                            what: "fixed community price",
                            value: price.per_kwh(),
                            reason: "it is negative",
                        });
                    }
                    Ok(Mechanism::Fixed(price))
                }
                None => Err(Error::Parse {
                    what: "pricing mechanism (fixed:<price>, mmr, sdr or bill_sharing)",
                    input: s.to_owned(),
                }),
            },
        }
    }
}
