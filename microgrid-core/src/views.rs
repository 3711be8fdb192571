//! The three views as columns: the grid per timeframe ("smart grid
//! info"), each prosumer per timeframe ("prosumer info") and the trades
//! ("trader info"), built from cleared rows without a struct per row.
//!
//! Column units are in the names. Times are seconds since the Unix epoch
//! (UTC); prosumers are dense registry indices; prices are integers in
//! millionths per kWh ([`crate::money::PRICE_DECIMALS`] decimals) and
//! amounts integers in units of 10⁻⁹ ([`crate::money::AMOUNT_DECIMALS`]
//! decimals), exact until they are shown (Arrow's decimal128 takes them as
//! they are).
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use microgrid_core::batch::ReadingRow;
//! use microgrid_core::views::{AllocationColumns, SummaryColumns, TradeColumns};
//! use microgrid_core::*;
//!
//! let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
//! let mut registry = Registry::default();
//! registry.register(Prosumer::new("b", "B", ProsumerKind::Household, day)?)?;
//! registry.register(Prosumer::new("a", "A", ProsumerKind::Household, day)?)?;
//! let tf = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
//! let row = ReadingRow::from_values([Some((Wh::new(0), Wh::new(400))), Some((Wh::new(1_000), Wh::new(0)))]);
//! let grid = GridPrices::new("0.30".parse()?, "0.10".parse()?)?;
//! let cleared = clear_reading_rows(&[(tf, &row)], &registry.id_order(), &grid, &Mechanism::MidMarketRate, 1)?;
//! let rows = [(&row, &cleared[0])];
//!
//! let s = SummaryColumns::from_rows(&rows)?;
//! assert_eq!((s.shared_wh[0], s.export_wh[0], s.community_price[0]), (400, 600, Some(200_000)));
//! let a = AllocationColumns::from_rows(&rows, &registry, None);
//! assert_eq!(a.prosumer, [1, 0]); // "a" then "b": id order
//! assert_eq!(a.sold_wh, [400, 0]);
//! assert_eq!(a.grid_amount[0], -60_000_000); // 0.6 kWh exported at 0.10: 0.06 paid out
//! let t = TradeColumns::from_rows(&rows, &registry, None);
//! assert_eq!((t.seller[0], t.buyer[0], t.energy_wh[0]), (1, 0, 400));
//! # Ok::<(), microgrid_core::Error>(())
//! ```

use crate::batch::ReadingRow;
use crate::clearing::TimeframeSummary;
use crate::error::Result;
use crate::matrix::ClearedRow;
use crate::money::Price;
use crate::registry::Registry;
use crate::trades::match_north_west;

/// The grid as a whole, one entry per cleared timeframe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryColumns {
    /// Start of the timeframe, seconds since the epoch.
    pub start: Vec<i64>,
    /// Σ produced.
    pub production_wh: Vec<i64>,
    /// Σ consumed.
    pub consumption_wh: Vec<i64>,
    /// S.
    pub supply_wh: Vec<i64>,
    /// D.
    pub demand_wh: Vec<i64>,
    /// min(S, D).
    pub shared_wh: Vec<i64>,
    /// Drawn from the grid.
    pub import_wh: Vec<i64>,
    /// Fed into the grid.
    pub export_wh: Vec<i64>,
    /// Prosumers with surplus.
    pub sellers: Vec<u32>,
    /// Prosumers with deficit.
    pub buyers: Vec<u32>,
    /// The grid's import price r, millionths per kWh.
    pub grid_import_price: Vec<i64>,
    /// The grid's export price e, millionths per kWh.
    pub grid_export_price: Vec<i64>,
    /// The community price; `None` when set per billing period.
    pub community_price: Vec<Option<i64>>,
    /// What buyers pay on average per kWh ([`TimeframeSummary::buy_price`]).
    pub buy_price: Vec<Option<i64>>,
    /// What sellers get on average per kWh ([`TimeframeSummary::sell_price`]).
    pub sell_price: Vec<Option<i64>>,
}

impl SummaryColumns {
    /// The columns of these summaries, in their order.
    pub fn from_summaries<'a>(
        summaries: impl IntoIterator<Item = &'a TimeframeSummary>,
    ) -> Result<SummaryColumns> {
        let mut c = SummaryColumns::default();
        for s in summaries {
            c.start.push(s.timeframe.start().timestamp());
            c.production_wh.push(s.production.get());
            c.consumption_wh.push(s.consumption.get());
            c.supply_wh.push(s.supply.get());
            c.demand_wh.push(s.demand.get());
            c.shared_wh.push(s.shared.get());
            c.import_wh.push(s.import.get());
            c.export_wh.push(s.export.get());
            c.sellers.push(s.sellers);
            c.buyers.push(s.buyers);
            c.grid_import_price.push(s.grid.import().micros()?);
            c.grid_export_price.push(s.grid.export().micros()?);
            c.community_price
                .push(s.community_price.known().map(Price::micros).transpose()?);
            c.buy_price
                .push(s.buy_price().map(Price::micros).transpose()?);
            c.sell_price
                .push(s.sell_price().map(Price::micros).transpose()?);
        }
        Ok(c)
    }

    /// The columns of cleared rows.
    pub fn from_rows(rows: &[(&ReadingRow, &ClearedRow)]) -> Result<SummaryColumns> {
        SummaryColumns::from_summaries(rows.iter().map(|(_, c)| &c.summary))
    }

    /// Number of timeframes.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }
}

/// Each prosumer with a reading, per cleared timeframe: by time, then in
/// id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationColumns {
    /// Start of the timeframe, seconds since the epoch.
    pub start: Vec<i64>,
    /// The prosumer's dense index.
    pub prosumer: Vec<u32>,
    /// Produced.
    pub produced_wh: Vec<i64>,
    /// Consumed.
    pub consumed_wh: Vec<i64>,
    /// Sold inside the community.
    pub sold_wh: Vec<i64>,
    /// Bought inside the community.
    pub bought_wh: Vec<i64>,
    /// Fed into the grid.
    pub exported_wh: Vec<i64>,
    /// Drawn from the grid.
    pub imported_wh: Vec<i64>,
    /// `(bought − sold) · p` in 10⁻⁹ units; `None` when priced per period.
    pub community_amount: Vec<Option<i128>>,
    /// `imported · r − exported · e` in 10⁻⁹ units.
    pub grid_amount: Vec<i128>,
}

impl AllocationColumns {
    /// The allocations of cleared rows, of the prosumers `only` (dense
    /// indices) or of everyone. Prices that do not fit millionths cannot
    /// occur in a cleared row (clearing keeps 6 decimals).
    pub fn from_rows(
        rows: &[(&ReadingRow, &ClearedRow)],
        registry: &Registry,
        only: Option<&[u32]>,
    ) -> AllocationColumns {
        let order: Vec<u32> = match only {
            Some(only) => {
                let mut o: Vec<u32> = registry
                    .id_order()
                    .into_iter()
                    .filter(|i| only.contains(i))
                    .collect();
                o.dedup();
                o
            }
            None => registry.id_order(),
        };
        let mut c = AllocationColumns::default();
        for (readings, cleared) in rows {
            let s = &cleared.summary;
            let start = s.timeframe.start().timestamp();
            let (r, e) = (
                s.grid.import().micros().unwrap_or_default(),
                s.grid.export().micros().unwrap_or_default(),
            );
            let p = s.community_price.known().and_then(|p| p.micros().ok());
            for &i in &order {
                let Some((produced, consumed)) = readings.get(i as usize) else {
                    continue;
                };
                let community = cleared.community.get(i as usize).map_or(0, |w| w.get());
                let net = produced.get() - consumed.get();
                let (sold, bought) = (community.max(0), (-community).max(0));
                let (exported, imported) = if net >= 0 {
                    (net - sold, 0)
                } else {
                    (0, -net - bought)
                };
                c.start.push(start);
                c.prosumer.push(i);
                c.produced_wh.push(produced.get());
                c.consumed_wh.push(consumed.get());
                c.sold_wh.push(sold);
                c.bought_wh.push(bought);
                c.exported_wh.push(exported);
                c.imported_wh.push(imported);
                c.community_amount
                    .push(p.map(|p| i128::from(p) * i128::from(bought - sold)));
                c.grid_amount.push(
                    i128::from(r) * i128::from(imported) - i128::from(e) * i128::from(exported),
                );
            }
        }
        c
    }

    /// Number of allocations.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }
}

/// The bilateral trades of cleared rows, by the rule of
/// [`crate::derive_trades`] (north-west corner in id order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradeColumns {
    /// Start of the timeframe, seconds since the epoch.
    pub start: Vec<i64>,
    /// The seller's dense index.
    pub seller: Vec<u32>,
    /// The buyer's dense index.
    pub buyer: Vec<u32>,
    /// Energy traded.
    pub energy_wh: Vec<i64>,
    /// Price in millionths per kWh; `None` when set per billing period.
    pub price: Vec<Option<i64>>,
}

impl TradeColumns {
    /// The trades of cleared rows, of one prosumer (as seller or buyer) or
    /// all.
    pub fn from_rows(
        rows: &[(&ReadingRow, &ClearedRow)],
        registry: &Registry,
        prosumer: Option<u32>,
    ) -> TradeColumns {
        let order = registry.id_order();
        let mut c = TradeColumns::default();
        for (readings, cleared) in rows {
            let signed = |i: u32| -> i64 {
                if readings.get(i as usize).is_none() {
                    return 0;
                }
                cleared.community.get(i as usize).map_or(0, |w| w.get())
            };
            let sellers = order
                .iter()
                .map(|&i| (i, signed(i)))
                .filter(|&(_, w)| w > 0);
            let buyers = order
                .iter()
                .map(|&i| (i, -signed(i)))
                .filter(|&(_, w)| w > 0);
            let start = cleared.summary.timeframe.start().timestamp();
            let price = cleared
                .summary
                .community_price
                .known()
                .and_then(|p| p.micros().ok());
            match_north_west(sellers, buyers, |s, b, energy| {
                if prosumer.is_none_or(|p| p == s || p == b) {
                    c.start.push(start);
                    c.seller.push(s);
                    c.buyer.push(b);
                    c.energy_wh.push(energy);
                    c.price.push(price);
                }
            });
        }
        c
    }

    /// Number of trades.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }
}

/// A community battery, one entry per timeframe in which it took part
/// ([`crate::battery::BatteryStep`]s as columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatteryColumns {
    /// Start of the timeframe, seconds since the epoch.
    pub start: Vec<i64>,
    /// State of charge at the start.
    pub soc_start_wh: Vec<i64>,
    /// Taken from the community's surplus.
    pub charged_wh: Vec<i64>,
    /// Added to the state of charge, `⌊charged · η⌋`.
    pub stored_wh: Vec<i64>,
    /// `charged − stored`.
    pub loss_wh: Vec<i64>,
    /// Given to the community's deficit.
    pub discharged_wh: Vec<i64>,
    /// State of charge at the end.
    pub soc_end_wh: Vec<i64>,
}

impl BatteryColumns {
    /// The columns of these steps, in their order.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use microgrid_core::views::BatteryColumns;
    /// use microgrid_core::{BatterySpec, Timeframe, TimeframeLength, Wh};
    /// let b = BatterySpec::new("battery", 10_000, 4_000, 4_000, rust_decimal::Decimal::new(9, 1), 0)?;
    /// let tf = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
    /// let steps = b.dispatch(Wh::ZERO, [(tf, 2_000), (tf.next(), -300)])?;
    /// let c = BatteryColumns::from_steps(&steps);
    /// assert_eq!((c.charged_wh, c.stored_wh, c.discharged_wh, c.soc_end_wh), (vec![1_000, 0], vec![900, 0], vec![0, 300], vec![900, 600]));
    /// # Ok::<(), microgrid_core::Error>(())
    /// ```
    pub fn from_steps(steps: &[crate::battery::BatteryStep]) -> BatteryColumns {
        let mut c = BatteryColumns::default();
        for s in steps {
            c.start.push(s.timeframe.start().timestamp());
            c.soc_start_wh.push(s.soc_start.get());
            c.charged_wh.push(s.charged.get());
            c.stored_wh.push(s.stored.get());
            c.loss_wh.push(s.loss.get());
            c.discharged_wh.push(s.discharged.get());
            c.soc_end_wh.push(s.soc_end.get());
        }
        c
    }

    /// Number of timeframes.
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }
}
