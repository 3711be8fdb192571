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
    let mut sellers = allocations.iter().filter(|a| a.sold.get() > 0);
    let mut buyers = allocations.iter().filter(|a| a.bought.get() > 0);
    let mut trades = Vec::new();
    let (mut seller, mut buyer) = (sellers.next(), buyers.next());
    let (mut left_to_sell, mut left_to_buy) = (
        seller.map_or(0, |s| s.sold.get()),
        buyer.map_or(0, |b| b.bought.get()),
    );
    while let (Some(s), Some(b)) = (seller, buyer) {
        let energy = left_to_sell.min(left_to_buy);
        trades.push(Trade {
            timeframe: summary.timeframe,
            seller: s.prosumer.clone(),
            buyer: b.prosumer.clone(),
            energy: Wh::new(energy),
            price,
        });
        left_to_sell -= energy;
        left_to_buy -= energy;
        if left_to_sell == 0 {
            seller = sellers.next();
            left_to_sell = seller.map_or(0, |s| s.sold.get());
        }
        if left_to_buy == 0 {
            buyer = buyers.next();
            left_to_buy = buyer.map_or(0, |b| b.bought.get());
        }
    }
    trades
}
