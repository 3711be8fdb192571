//! Mid-market rate.

use super::{CommunityPrice, MarketState, PricingMechanism};

/// Mid-market rate (MMR): shared energy is priced at `mid = (r + e) / 2`.
///
/// Source: C. Long, J. Wu, C. Zhang, L. Thomas, M. Cheng, N. Jenkins,
/// "Peer-to-peer energy trading in a community microgrid", IEEE PES General
/// Meeting 2017; compared with SDR and bill sharing in Y. Zhou, J. Wu,
/// C. Long, "Evaluation of peer-to-peer energy sharing mechanisms based on a
/// multiagent simulation framework", Applied Energy 222 (2018).
///
/// The short side pays or gets `mid` for all of its energy; the long side
/// trades the shared part at `mid` and absorbs the grid leg:
/// - S < D: sellers get `mid` per kWh; buyers pay `mid` for their share of
///   S and `r` for the rest, i.e. on average `(mid·S + r·(D − S)) / D`.
/// - S > D: buyers pay `mid` per kWh; sellers get `mid` for their share of D
///   and `e` for the rest, i.e. on average `(mid·D + e·(S − D)) / S`.
/// - S = D: everyone trades at `mid`; S = 0 or D = 0: nothing is shared and
///   everyone trades with the grid at `r` or `e`.
///
/// Worked example: r = 0.30, e = 0.10, so mid = 0.20; S = 1 kWh, D = 2 kWh.
/// Sellers get 0.20; buyers pay 0.20 + 0.30 = 0.50 for 2 kWh, 0.25 on
/// average; the community pays the grid 0.30 for 1 kWh imported, and
/// 0.50 − 0.20 = 0.30 balances it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MidMarketRate;

impl PricingMechanism for MidMarketRate {
    fn name(&self) -> &str {
        "mmr"
    }

    fn community_price(&self, market: &MarketState) -> CommunityPrice {
        CommunityPrice::Known(market.grid.mid())
    }
}
