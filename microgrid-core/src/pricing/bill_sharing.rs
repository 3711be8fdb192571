//! Bill sharing: prices set per billing period from the community's actual
//! grid bill.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{CommunityPrice, MarketState, PricingMechanism};
use crate::error::Result;
use crate::money::{split_pro_rata, Price};

/// Bill sharing (BS): the community's grid bill of a billing period is
/// shared among its members.
///
/// Source: Y. Zhou, J. Wu, C. Long, "Evaluation of peer-to-peer energy
/// sharing mechanisms based on a multiagent simulation framework", Applied
/// Energy 222 (2018), after C. Long et al., IEEE PES GM 2017.
///
/// Over the period, with `C = Σ r_t·import_t` the community's import cost
/// and `R = Σ e_t·export_t` its export revenue:
/// ```text
/// buy  = C / Σ demand       (every buyer pays this per kWh of deficit)
/// sell = R / Σ supply       (every seller gets this per kWh of surplus)
/// ```
/// so buyers pay exactly `C` and sellers receive exactly `R`: budget
/// balanced. Shared energy itself costs nothing; sharing lowers `C` per
/// kWh of demand, so the saving goes to buyers, and sellers get at most `e`.
/// With no demand in the period `C = 0` and nothing is charged; with no
/// supply `R = 0` and nothing is paid out.
///
/// Amounts are split pro rata to each member's deficit (surplus) with the
/// exact cumulative rounding of [`split_pro_rata`], so they add up to `C`
/// (`R`) to the last decimal; the per-kWh prices are only for display.
///
/// Worked example: one month, r = 0.30, e = 0.10 throughout; demand 100
/// kWh, supply 60 kWh, of which 50 kWh are shared, so import = 50 kWh and
/// export = 10 kWh. C = 15.00, R = 1.00: buyers pay 0.15 per kWh of
/// deficit (half of `r`), sellers get 0.0166… per kWh of surplus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillSharing;

impl PricingMechanism for BillSharing {
    fn name(&self) -> &str {
        "bill_sharing"
    }

    fn community_price(&self, _market: &MarketState) -> CommunityPrice {
        CommunityPrice::PerPeriod
    }
}

/// The grid bill of a billing period, from which bill sharing prices it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillSharingPeriod {
    /// `C`: what the community paid the grid for imports.
    pub import_cost: Decimal,
    /// `R`: what the grid paid the community for exports.
    pub export_revenue: Decimal,
}

impl BillSharingPeriod {
    /// The period bill from the timeframes' summaries (each timeframe's
    /// import at its `r`, export at its `e`).
    pub fn from_summaries<'a>(
        summaries: impl IntoIterator<Item = &'a crate::clearing::TimeframeSummary>,
    ) -> BillSharingPeriod {
        summaries
            .into_iter()
            .fold(BillSharingPeriod::default(), |acc, s| BillSharingPeriod {
                import_cost: acc.import_cost + s.grid.import().amount_for(s.import),
                export_revenue: acc.export_revenue + s.grid.export().amount_for(s.export),
            })
    }

    /// What each buyer pays, given each member's total deficit over the
    /// period in Wh (in the same order); adds up to `import_cost` exactly.
    pub fn buyer_amounts(&self, deficits_wh: &[u64]) -> Result<Vec<Decimal>> {
        Ok(split_pro_rata(self.import_cost, deficits_wh)?
            .unwrap_or_else(|| vec![Decimal::ZERO; deficits_wh.len()]))
    }

    /// What each seller receives, given each member's total surplus over the
    /// period in Wh; adds up to `export_revenue` exactly.
    pub fn seller_amounts(&self, surpluses_wh: &[u64]) -> Result<Vec<Decimal>> {
        Ok(split_pro_rata(self.export_revenue, surpluses_wh)?
            .unwrap_or_else(|| vec![Decimal::ZERO; surpluses_wh.len()]))
    }

    /// The buy price for display: `C / Σ demand`, or `None` without demand.
    pub fn buy_price(&self, total_demand_wh: u64) -> Option<Price> {
        per_kwh(self.import_cost, total_demand_wh)
    }

    /// The sell price for display: `R / Σ supply`, or `None` without supply.
    pub fn sell_price(&self, total_supply_wh: u64) -> Option<Price> {
        per_kwh(self.export_revenue, total_supply_wh)
    }
}

fn per_kwh(amount: Decimal, wh: u64) -> Option<Price> {
    (wh > 0).then(|| Price::rounded(amount * Decimal::from(1000) / Decimal::from(wh)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_sharing_worked_example() {
        let bill = BillSharingPeriod {
            import_cost: "15.00".parse().unwrap(),
            export_revenue: "1.00".parse().unwrap(),
        };
        assert_eq!(
            bill.buy_price(100_000)
                .unwrap()
                .per_kwh()
                .normalize()
                .to_string(),
            "0.15"
        );
        assert_eq!(
            bill.sell_price(60_000).unwrap().per_kwh().to_string(),
            "0.016667"
        );
        let pays = bill.buyer_amounts(&[70_000, 30_000]).unwrap();
        assert_eq!(pays, vec![Decimal::new(105, 1), Decimal::new(45, 1)]);
        let gets = bill.seller_amounts(&[20_000, 40_000, 0]).unwrap();
        assert_eq!(gets.iter().sum::<Decimal>(), Decimal::ONE);
        assert_eq!(gets[0].to_string(), "0.333333333");
    }

    #[test]
    fn bill_sharing_without_demand_or_supply_charges_nothing() {
        let bill = BillSharingPeriod::default();
        assert_eq!(bill.buyer_amounts(&[0, 0]).unwrap(), vec![Decimal::ZERO; 2]);
        assert_eq!(bill.buy_price(0), None);
    }
}
