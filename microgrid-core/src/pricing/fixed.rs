//! Fixed internal price.

use super::{CommunityPrice, MarketState, PricingMechanism};
use crate::money::Price;

/// Shared energy changes hands at one fixed price per kWh, whatever S and D
/// are; the grid legs pass through at `r` and `e`.
///
/// The simplest community tariff (a "local energy price" set by the
/// operator). It is individually rational when `e ≤ p ≤ r`: then no buyer
/// pays more and no seller gets less than with the grid alone. With S = 0
/// or D = 0 nothing is shared and the price only shows in the summary.
///
/// ```
/// use microgrid_core::{pricing::*, GridPrices, Wh};
/// let grid = GridPrices::new("0.30".parse()?, "0.08".parse()?)?;
/// let m = FixedPrice("0.20".parse()?);
/// let market = MarketState { supply: Wh::new(500), demand: Wh::new(800), grid };
/// assert_eq!(m.community_price(&market), CommunityPrice::Known("0.20".parse()?));
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPrice(pub Price);

impl PricingMechanism for FixedPrice {
    fn name(&self) -> &str {
        "fixed"
    }

    fn community_price(&self, _market: &MarketState) -> CommunityPrice {
        CommunityPrice::Known(self.0)
    }
}
