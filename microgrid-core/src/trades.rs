//! Bilateral trades: who sold how much to whom, at which price.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clearing::{Allocation, TimeframeSummary};
use crate::energy::Wh;
use crate::money::Price;
use crate::registry::ProsumerId;
use crate::timeframe::Timeframe;

/// Energy one seller sold to one buyer in one timeframe ("trader info").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// The timeframe.
    pub timeframe: Timeframe,
    /// Who sold.
    pub seller: ProsumerId,
    /// Who bought.
    pub buyer: ProsumerId,
    /// How much.
    pub energy: Wh,
    /// At which price per kWh; `None` while the price is set per billing
    /// period (bill sharing).
    pub price: Option<Price>,
}

impl Trade {
    /// `energy × price`, when the price is known.
    pub fn amount(&self) -> Option<Decimal> {
        self.price.map(|p| p.amount_for(self.energy))
    }
}

/// Derives the bilateral trades of a cleared timeframe from its
/// allocations (which must be in prosumer-id order, as clearing returns
/// them).
///
/// Rule: sellers and buyers are each taken in ascending id order and
/// matched greedily, the first seller's sales filling the first buyer's
/// purchases, then the next (the "north-west corner" of the transport
/// table). Each trade exhausts a seller or a buyer, so there are at most
/// `sellers + buyers − 1` trades, and each prosumer's trades add up exactly
/// to what it sold or bought in the community.
pub fn derive_trades(summary: &TimeframeSummary, allocations: &[Allocation]) -> Vec<Trade> {
    let price = summary.community_price.known();
    let sellers = allocations
        .iter()
        .filter(|a| a.sold.get() > 0)
        .map(|a| (a, a.sold.get()));
    let buyers = allocations
        .iter()
        .filter(|a| a.bought.get() > 0)
        .map(|a| (a, a.bought.get()));
    let mut trades = Vec::new();
    match_north_west(sellers, buyers, |s, b, energy| {
        trades.push(Trade {
            timeframe: summary.timeframe,
            seller: s.prosumer.clone(),
            buyer: b.prosumer.clone(),
            energy: Wh::new(energy),
            price,
        })
    });
    trades
}

/// The matching rule of [`derive_trades`] on its own: `sellers` and
/// `buyers` (each with a positive amount, in id order) are matched
/// greedily, and `trade(seller, buyer, energy)` is called for each trade.
pub fn match_north_west<K: Copy>(
    mut sellers: impl Iterator<Item = (K, i64)>,
    mut buyers: impl Iterator<Item = (K, i64)>,
    mut trade: impl FnMut(K, K, i64),
) {
    let (mut seller, mut buyer) = (sellers.next(), buyers.next());
    while let (Some((s, left_to_sell)), Some((b, left_to_buy))) = (seller, buyer) {
        let energy = left_to_sell.min(left_to_buy);
        trade(s, b, energy);
        seller = match left_to_sell - energy {
            0 => sellers.next(),
            left => Some((s, left)),
        };
        buyer = match left_to_buy - energy {
            0 => buyers.next(),
            left => Some((b, left)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clear_timeframe, GridPrices, Mechanism, Reading, TimeframeLength};
    use chrono::{TimeZone, Utc};

    #[test]
    fn north_west_corner_matches_sellers_and_buyers_in_id_order() {
        let tf = Timeframe::new(
            Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
            TimeframeLength::default(),
        )
        .unwrap();
        let r =
            |id: &str, p, c| Reading::new(id.parse().unwrap(), tf, Wh::new(p), Wh::new(c)).unwrap();
        // Sellers s1 (300), s2 (200); buyers b1 (100), b2 (400).
        let readings = [
            r("s1", 300, 0),
            r("s2", 200, 0),
            r("b1", 0, 100),
            r("b2", 0, 400),
        ];
        let grid = GridPrices::new("0.30".parse().unwrap(), "0.10".parse().unwrap()).unwrap();
        let cleared = clear_timeframe(tf, &readings, grid, &Mechanism::MidMarketRate).unwrap();
        let trades: Vec<(String, String, i64)> = cleared
            .trades()
            .into_iter()
            .map(|t| (t.seller.to_string(), t.buyer.to_string(), t.energy.get()))
            .collect();
        let expected = [("s1", "b1", 100), ("s1", "b2", 200), ("s2", "b2", 200)];
        assert_eq!(
            trades,
            expected.map(|(s, b, e)| (s.to_string(), b.to_string(), e))
        );
        assert_eq!(cleared.trades()[0].amount(), Some("0.02".parse().unwrap()));
    }
}
