//! Supply-demand ratio.

use rust_decimal::Decimal;

use super::{CommunityPrice, MarketState, PricingMechanism};
use crate::money::Price;

/// Supply-demand ratio (SDR): the internal prices follow `SDR = S / D`.
///
/// Source: N. Liu, X. Yu, C. Wang, C. Li, L. Ma, J. Lei, "Energy-sharing
/// model with price-based demand response for microgrids of peer-to-peer
/// prosumers", IEEE Transactions on Power Systems 32(5), 2017.
///
/// For `0 ≤ SDR ≤ 1`:
/// ```text
/// sell = e·r / ((r − e)·SDR + e)        (= e·r·D / ((r − e)·S + e·D))
/// buy  = sell·SDR + r·(1 − SDR)
/// ```
/// for `SDR > 1` both are `e`, and with no supply (S = 0) both are `r`.
///
/// Here the community price is `sell` (so sellers, who are the short side,
/// get `sell` for everything), and buyers pay `sell` for their share of S
/// and `r` for the imported rest: on average exactly `buy` of the formula.
/// With S > D the community price is `e`; with D = 0, `e`; with S = 0, `r`
/// (where `e = 0`, `sell = 0` for every S > 0). `sell` is rounded to
/// [`crate::money::PRICE_DECIMALS`] decimals, half to even.
///
/// Worked example: r = 0.30, e = 0.10, S = 1 kWh, D = 2 kWh, so SDR = 0.5:
/// sell = 0.03 / (0.2·0.5 + 0.1) = 0.15, buy = 0.15·0.5 + 0.30·0.5 = 0.225.
/// Sellers get 0.15 for 1 kWh; buyers pay 0.15 + 0.30 = 0.45 for 2 kWh
/// (0.225 on average); the grid gets 0.30; 0.45 − 0.15 = 0.30 balances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupplyDemandRatio;

impl SupplyDemandRatio {
    /// The sell price of the formula, for `S ≤ D`, `D > 0`.
    fn sell_price(r: Decimal, e: Decimal, s: i64, d: i64) -> Decimal {
        let (s, d) = (Decimal::from(s), Decimal::from(d));
        let denominator = (r - e) * s + e * d;
        if denominator.is_zero() {
            // Only when e = 0 and S = 0: no supply, so the price is r.
            return r;
        }
        e * r * d / denominator
    }
}

impl PricingMechanism for SupplyDemandRatio {
    fn name(&self) -> &str {
        "sdr"
    }

    fn community_price(&self, market: &MarketState) -> CommunityPrice {
        let (s, d) = (market.supply.get(), market.demand.get());
        let (r, e) = (market.grid.import(), market.grid.export());
        let price = if s == 0 {
            r
        } else if d == 0 || s > d {
            e
        } else {
            Price::rounded(Self::sell_price(r.per_kwh(), e.per_kwh(), s, d))
        };
        CommunityPrice::Known(price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::Wh;
    use crate::pricing::GridPrices;

    fn price(s: i64, d: i64) -> String {
        let grid = GridPrices::new("0.30".parse().unwrap(), "0.10".parse().unwrap()).unwrap();
        let m = MarketState {
            supply: Wh::new(s),
            demand: Wh::new(d),
            grid,
        };
        SupplyDemandRatio
            .community_price(&m)
            .known()
            .unwrap()
            .per_kwh()
            .normalize()
            .to_string()
    }

    #[test]
    fn sdr_sell_price_matches_the_hand_computed_example() {
        assert_eq!(price(1000, 2000), "0.15");
    }

    #[test]
    fn sdr_prices_equal_export_price_when_supply_exceeds_demand() {
        assert_eq!(price(3000, 2000), "0.1");
        assert_eq!(price(3000, 0), "0.1");
    }

    #[test]
    fn sdr_prices_equal_import_price_with_no_supply() {
        assert_eq!(price(0, 2000), "0.3");
        assert_eq!(price(0, 0), "0.3");
    }

    #[test]
    fn sdr_sell_price_is_export_price_when_supply_equals_demand() {
        // SDR = 1: e·r / ((r − e) + e) = e.
        assert_eq!(price(2000, 2000), "0.1");
    }

    #[test]
    fn sdr_sell_price_is_rounded_to_six_decimals() {
        // 90 / 500 = 0.18 exactly; 210 / 900 = 0.2333… is rounded.
        assert_eq!(price(1000, 3000), "0.18");
        assert_eq!(price(1000, 7000), "0.233333");
    }
}
