//! Clearing: from the readings of a timeframe to who shares how much with
//! whom, what goes to and comes from the grid, and at which prices.
//!
//! # The rules
//!
//! For each prosumer, `net = produced − consumed`. Sellers (net > 0) have
//! surplus, buyers (net < 0) deficit; `S` is the sum of surpluses, `D` the
//! sum of deficits. The community shares `shared = min(S, D)`:
//!
//! - the short side trades all of its energy inside the community;
//! - the long side shares `shared` pro rata to each member's surplus (or
//!   deficit), and the rest of it goes to the grid: `export = S − shared`,
//!   `import = D − shared`.
//!
//! # Rounding: systematic rounding with a low-discrepancy offset
//!
//! A pro rata share is rarely a whole number of Wh. The long side is
//! walked in ascending prosumer-id order with running total `c_i` of the
//! weights (surpluses or deficits) up to and including member `i`, and
//! member `i` gets
//!
//! ```text
//! share_i = ⌊c_i · shared / W + u_t⌋ − ⌊c_{i−1} · shared / W + u_t⌋     (W = S or D)
//! ```
//!
//! where `u_t ∈ [0, 1)` is the timeframe's *rounding offset*
//! ([`rounding_offset`]): with `d` the timeframe's day since 1970-01-01
//! UTC and `s` its index within the day,
//!
//! ```text
//! u_t = frac(d · (√5 − 1)/2 + s · (√2 − 1))
//! ```
//!
//! computed exactly in 64-bit fixed point (the two constants scaled to
//! 2^64, wrapping), and `share_i` exactly in integers as
//! `⌊(c_i · shared + m) / W⌋ − ⌊(c_{i−1} · shared + m) / W⌋` with
//! `m = ⌊u_t · W⌋`. Laid end to end, the exact shares fill `[0, shared)`;
//! each member gets the Wh whose points `k − u_t` (k whole) fall in its
//! stretch of it.
//!
//! *Per timeframe.* The sum telescopes to `⌊shared + u_t⌋ − ⌊u_t⌋ =
//! shared`: no Wh is created or lost. Each share is its exact value `x_i`
//! rounded down or up (`|share_i − x_i| < 1`), and the result depends only
//! on the readings and the timeframe, never on the order the readings
//! arrived in, on the other timeframes, or on the machine. It is one pass
//! without sorting, like the plain floor it replaces.
//!
//! *Over time.* Member `i` gets the odd Wh exactly when `u_t` falls in an
//! interval of length `frac(x_i)` (the interval's place depends on the
//! members before it). Were `u_t` uniformly random, that would happen with
//! probability `frac(x_i)`: the rule is unbiased, and which member comes
//! first in id order gives it no advantage. `u_t` is not random but a
//! two-dimensional Kronecker sequence: for a fixed time of day the offsets
//! of successive days follow the golden-ratio sequence, and within a day
//! successive timeframes follow the √2 sequence, both as evenly spread as
//! sequences get (the two numbers have small, bounded continued-fraction
//! terms). So a member whose share repeats (the same in every timeframe,
//! or the same at each time of day) gets the odd Wh in a fraction of
//! timeframes that tracks its fractional part closely, with no state
//! carried from one timeframe to the next. Measured over a thousand random
//! 30-day communities each, steady ones ended with every member within
//! 6 Wh of its exact pro rata total and daily-repeating ones within 15 Wh;
//! the plain floor in id order this rule replaces left members of such
//! communities up to 2,900 Wh off in a 15-minute month (6,300 Wh with
//! 5-minute timeframes).
//!
//! When shares vary at random from timeframe to timeframe, each member's
//! total deviation is a sum of independent errors of mean zero: a random
//! walk with standard deviation `√Σ frac(x)(1 − frac(x))`, at most `½√T`
//! for `T` timeframes. No rule that clears each timeframe on its own can
//! avoid it (its errors are independent when the readings are); rounding
//! to the nearest Wh takes shorter steps but favours members steadily (a
//! share that is always x.6 Wh always rounds up). In simulated 30-day
//! months the standard deviation is at most 16 Wh; the worst member of a
//! 10-household month ends 16.7 Wh from its exact total, of a
//! 1,000-household month 40.1 Wh (plain floor in id order: 121 Wh and
//! 689 Wh). Of 60,000 simulated member-months (`cargo run --release -p
//! microgrid-benches --example rounding_deviation -- 1000`), 2 ended
//! beyond 2 Wh a day (60 Wh), the furthest 66.4 Wh off, as often as a
//! normal distribution's tail would have it: 2 Wh a day holds there with
//! high probability, not by construction. Over all members the deviations
//! add up to exactly zero in every timeframe, so their mean is zero.
//! `microgrid-core/tests/rounding_fairness.rs` checks all of this.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use microgrid_core::{clear_timeframe, GridPrices, Mechanism, Reading, Timeframe, TimeframeLength, Wh};
//!
//! let tf = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
//! let reading = |id: &str, p, c| Reading::new(id.parse()?, tf, Wh::new(p), Wh::new(c));
//! let readings = [reading("a", 1_000, 0)?, reading("b", 0, 1_500)?, reading("c", 0, 500)?];
//! let grid = GridPrices::new("0.30".parse()?, "0.10".parse()?)?;
//!
//! let cleared = clear_timeframe(tf, &readings, grid, &Mechanism::SupplyDemandRatio)?;
//! let s = &cleared.summary;
//! assert_eq!((s.supply, s.demand, s.shared, s.import), (Wh::new(1_000), Wh::new(2_000), Wh::new(1_000), Wh::new(1_000)));
//! assert_eq!(s.sell_price(), Some("0.15".parse()?));
//! assert_eq!(cleared.allocations[1].bought, Wh::new(750)); // b: 1500 of 2000 of the deficit
//! assert_eq!(cleared.trades().len(), 2);
//! # Ok::<(), microgrid_core::Error>(())
//! ```

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::money::{Currency, Price};
use crate::pricing::{CommunityPrice, GridPrices, MarketState, PricingMechanism};
use crate::reading::Reading;
use crate::registry::ProsumerId;
use crate::timeframe::{TimeRange, Timeframe};
use crate::trades::{derive_trades, Trade};

/// Where the grid's prices of a timeframe come from: one pair of prices
/// for all timeframes, or a function of the timeframe (time of use).
pub trait GridTariff {
    /// The grid's prices in `tf`.
    fn grid_prices(&self, tf: &Timeframe) -> GridPrices;
    /// The currency of the prices, when the tariff knows it (a
    /// [`crate::tariff::Tariff`] does; bare prices do not). It is kept with
    /// each cleared timeframe, and billing refuses a tariff in another
    /// currency ([`Error::ClearedInOtherCurrency`]).
    fn price_currency(&self) -> Option<Currency> {
        None
    }
    /// Whether the tariff's prices can be looked up for timeframes of
    /// `length`: a [`crate::tariff::Tariff`] whose time-of-use windows (or
    /// time zone) do not fall on the timeframes' boundaries refuses
    /// ([`Error::TariffNotAligned`]). Clearing checks it first.
    fn check_timeframes(&self, _length: crate::timeframe::TimeframeLength) -> Result<()> {
        Ok(())
    }
}

impl GridTariff for GridPrices {
    fn grid_prices(&self, _tf: &Timeframe) -> GridPrices {
        *self
    }
}

impl<F: Fn(&Timeframe) -> GridPrices> GridTariff for F {
    fn grid_prices(&self, tf: &Timeframe) -> GridPrices {
        self(tf)
    }
}

/// The grid as a whole in one cleared timeframe ("smart grid info").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeframeSummary {
    /// The timeframe.
    pub timeframe: Timeframe,
    /// Σ produced.
    pub production: Wh,
    /// Σ consumed.
    pub consumption: Wh,
    /// S: Σ surplus of the sellers.
    pub supply: Wh,
    /// D: Σ deficit of the buyers.
    pub demand: Wh,
    /// min(S, D): energy shared inside the community.
    pub shared: Wh,
    /// D − shared: drawn from the grid.
    pub import: Wh,
    /// S − shared: fed into the grid.
    pub export: Wh,
    /// Number of prosumers with surplus.
    pub sellers: u32,
    /// Number of prosumers with deficit.
    pub buyers: u32,
    /// The grid's prices.
    pub grid: GridPrices,
    /// The mechanism's community price.
    pub community_price: CommunityPrice,
    /// The currency the timeframe was cleared in, if the tariff named one
    /// ([`GridTariff::price_currency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

impl TimeframeSummary {
    /// What buyers pay on average per kWh of deficit:
    /// `(p·shared + r·import) / D`, rounded to 6 decimals; with no demand,
    /// the community price. `None` when prices are set per period.
    pub fn buy_price(&self) -> Option<Price> {
        let p = self.community_price.known()?;
        Some(average(
            p.amount_for(self.shared) + self.grid.import().amount_for(self.import),
            self.demand,
            p,
        ))
    }

    /// What sellers receive on average per kWh of surplus:
    /// `(p·shared + e·export) / S`, rounded to 6 decimals; with no supply,
    /// the community price. `None` when prices are set per period.
    pub fn sell_price(&self) -> Option<Price> {
        let p = self.community_price.known()?;
        Some(average(
            p.amount_for(self.shared) + self.grid.export().amount_for(self.export),
            self.supply,
            p,
        ))
    }

    /// What the community pays the grid: `r·import − e·export`.
    pub fn grid_amount(&self) -> Decimal {
        self.grid.import().amount_for(self.import) - self.grid.export().amount_for(self.export)
    }
}

fn average(amount: Decimal, energy: Wh, otherwise: Price) -> Price {
    if energy.get() == 0 {
        otherwise
    } else {
        Price::rounded(amount / energy.as_kwh())
    }
}

/// One prosumer in one cleared timeframe ("prosumer info"). Positive
/// amounts are paid by the prosumer, negative ones paid to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The prosumer.
    pub prosumer: ProsumerId,
    /// The timeframe.
    pub timeframe: Timeframe,
    /// Energy produced.
    pub produced: Wh,
    /// Energy consumed.
    pub consumed: Wh,
    /// Sold inside the community.
    pub sold: Wh,
    /// Bought inside the community.
    pub bought: Wh,
    /// The part of the surplus fed into the grid.
    pub exported: Wh,
    /// The part of the deficit drawn from the grid.
    pub imported: Wh,
    /// `(bought − sold) · p`; `None` while the price is set per period.
    pub community_amount: Option<Decimal>,
    /// `imported · r − exported · e`.
    pub grid_amount: Decimal,
}

impl Allocation {
    /// Builds the allocation of one prosumer from its readings and its
    /// signed community energy (+ sold, − bought), pricing it with the
    /// timeframe's summary.
    pub fn new(
        prosumer: ProsumerId,
        summary: &TimeframeSummary,
        produced: Wh,
        consumed: Wh,
        community: Wh,
    ) -> Allocation {
        let net = produced.get() - consumed.get();
        let (sold, bought) = (community.get().max(0), (-community.get()).max(0));
        let (exported, imported) = if net >= 0 {
            (net - sold, 0)
        } else {
            (0, -net - bought)
        };
        let (sold, bought, exported, imported) = (
            Wh::new(sold),
            Wh::new(bought),
            Wh::new(exported),
            Wh::new(imported),
        );
        Allocation {
            prosumer,
            timeframe: summary.timeframe,
            produced,
            consumed,
            sold,
            bought,
            exported,
            imported,
            community_amount: summary
                .community_price
                .known()
                .map(|p| p.amount_for(Wh::new(bought.get() - sold.get()))),
            grid_amount: summary.grid.import().amount_for(imported)
                - summary.grid.export().amount_for(exported),
        }
    }

    /// `produced − consumed`.
    pub fn net(&self) -> Wh {
        Wh::new(self.produced.get() - self.consumed.get())
    }

    /// What the prosumer pays (positive) or gets (negative) in this
    /// timeframe; `None` while the price is set per period.
    pub fn amount(&self) -> Option<Decimal> {
        self.community_amount.map(|c| c + self.grid_amount)
    }
}

/// A cleared timeframe: the summary and one allocation per prosumer with a
/// reading, in prosumer-id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeframeClearing {
    /// The grid as a whole.
    pub summary: TimeframeSummary,
    /// Each prosumer, in id order.
    pub allocations: Vec<Allocation>,
}

impl TimeframeClearing {
    /// The bilateral trades of the timeframe ("trader info"); see
    /// [`derive_trades`].
    pub fn trades(&self) -> Vec<Trade> {
        derive_trades(&self.summary, &self.allocations)
    }
}

/// The energy totals of one timeframe, from the first pass over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnergyTotals {
    /// Σ produced.
    pub production: Wh,
    /// Σ consumed.
    pub consumption: Wh,
    /// S.
    pub supply: Wh,
    /// D.
    pub demand: Wh,
    /// Prosumers with surplus.
    pub sellers: u32,
    /// Prosumers with deficit.
    pub buyers: u32,
}

impl EnergyTotals {
    /// `min(S, D)`.
    pub fn shared(&self) -> Wh {
        self.supply.min(self.demand)
    }
}

/// `2^64 · (√5 − 1)/2`, rounded down: the golden-ratio step of the
/// rounding offset from one day to the next.
const GOLDEN_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
/// `2^64 · (√2 − 1)`, rounded down: the step of the rounding offset from
/// one timeframe of a day to the next.
const SQRT2_STEP: u64 = 0x6A09_E667_F3BC_C908;

/// The rounding offset `u_t` of `timeframe`, as `u_t · 2^64`: with `d` the
/// timeframe's day since 1970-01-01 UTC and `s` its index within the day,
/// `u_t = frac(d · (√5 − 1)/2 + s · (√2 − 1))`. See the module docs for the
/// rounding rule it drives and why it favours no member over time.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use microgrid_core::{clearing::rounding_offset, Timeframe, TimeframeLength};
/// let midnight = Timeframe::new(Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(), TimeframeLength::default())?;
/// assert_eq!(rounding_offset(&midnight), 0);
/// assert_eq!(rounding_offset(&midnight.next()), 0x6A09_E667_F3BC_C908); // frac(√2) · 2^64
/// # Ok::<(), microgrid_core::Error>(())
/// ```
pub fn rounding_offset(timeframe: &Timeframe) -> u64 {
    let length = timeframe.length();
    let seconds = timeframe.start().timestamp();
    let day = seconds.div_euclid(86_400);
    let slot = seconds.rem_euclid(86_400) / length.seconds();
    (day as u64)
        .wrapping_mul(GOLDEN_STEP)
        .wrapping_add((slot as u64).wrapping_mul(SQRT2_STEP))
}

/// Running pro rata shares with the rounding rule of this module.
struct ProRata {
    shared: u64,
    weight_sum: u64,
    /// `⌊u_t · W⌋`, below `W`.
    offset: u64,
    running: u64,
    handed_out: u64,
    wide: bool,
}

impl ProRata {
    fn new(shared: u64, weight_sum: u64, rounding_offset: u64) -> ProRata {
        let offset = ((u128::from(rounding_offset) * u128::from(weight_sum)) >> 64) as u64;
        ProRata {
            shared,
            weight_sum,
            offset,
            running: 0,
            handed_out: 0,
            // The largest numerator is W · shared + offset < W · (shared + 1).
            wide: u128::from(shared) * u128::from(weight_sum) + u128::from(offset)
                > u128::from(u64::MAX),
        }
    }

    #[inline]
    fn take(&mut self, weight: u64) -> u64 {
        if self.shared == self.weight_sum {
            return weight;
        }
        self.running += weight;
        // ⌊(c_i · shared + m) / W⌋; at c_0 = 0 it is 0, as m < W.
        let upto = if self.wide {
            ((u128::from(self.running) * u128::from(self.shared) + u128::from(self.offset))
                / u128::from(self.weight_sum)) as u64
        } else {
            (self.running * self.shared + self.offset) / self.weight_sum
        };
        let part = upto - self.handed_out;
        self.handed_out = upto;
        part
    }
}

/// Shares `total` among `weights` (which sum to `weight_sum`) with the
/// cumulative floor, in the order given: part `i` is
/// `⌊c_i · total / W⌋ − ⌊c_{i−1} · total / W⌋` for running weight `c_i`
/// (the rounding rule of energy with offset zero; amounts split once per
/// period, where no member can be favoured from timeframe to timeframe).
/// `None` if an intermediate product does not fit in 128 bits.
pub(crate) fn cumulative_floor_shares_u128(
    total: u128,
    weights: &[u64],
    weight_sum: u128,
) -> Option<Vec<u128>> {
    let mut running: u128 = 0;
    let mut handed_out: u128 = 0;
    weights
        .iter()
        .map(|&w| {
            running += u128::from(w);
            let upto = running.checked_mul(total)? / weight_sum;
            let part = upto - handed_out;
            handed_out = upto;
            Some(part)
        })
        .collect()
}

/// The clearing kernel: for one timeframe given as columns (one entry per
/// prosumer, in prosumer-id order), writes each prosumer's signed community
/// energy (+ sold, − bought) into `community` and returns the totals. The
/// shares are rounded with `timeframe`'s [`rounding_offset`] (see the
/// module docs).
///
/// Values must be non-negative (readings guarantee it); the columns must
/// have the same length.
pub fn clear_columns(
    timeframe: &Timeframe,
    produced: &[Wh],
    consumed: &[Wh],
    community: &mut [Wh],
) -> Result<EnergyTotals> {
    check_shape(produced, consumed, community)?;
    let totals = energy_totals(produced, consumed)?;
    share(
        &totals,
        rounding_offset(timeframe),
        produced,
        consumed,
        0..produced.len(),
        community,
    );
    Ok(totals)
}

/// [`clear_columns`] for columns in any order (say, by dense prosumer
/// index): `order` lists the positions in prosumer-id order, which is the
/// order the rounding rule walks, and must name every position. Positions
/// past the columns' end are skipped (prosumers registered after the row
/// was written), and a zero entry (no reading) takes no part. Same result,
/// position by position, as [`clear_columns`] on the columns sorted by id.
pub fn clear_columns_in_order(
    timeframe: &Timeframe,
    produced: &[Wh],
    consumed: &[Wh],
    order: &[u32],
    community: &mut [Wh],
) -> Result<EnergyTotals> {
    check_shape(produced, consumed, community)?;
    let totals = energy_totals(produced, consumed)?;
    community.fill(Wh::ZERO);
    let width = produced.len();
    let positions = order.iter().map(|&i| i as usize).filter(|&i| i < width);
    share(
        &totals,
        rounding_offset(timeframe),
        produced,
        consumed,
        positions,
        community,
    );
    Ok(totals)
}

fn check_shape(produced: &[Wh], consumed: &[Wh], community: &[Wh]) -> Result<()> {
    if produced.len() != consumed.len() || produced.len() != community.len() {
        return Err(Error::ShapeMismatch(format!(
            "columns of {} produced, {} consumed and {} community values",
            produced.len(),
            consumed.len(),
            community.len()
        )));
    }
    Ok(())
}

/// The first pass: sums, S, D and the number of sellers and buyers. Sums
/// run in `i64` with the overflows noted (cheap, and enough for any real
/// readings); only if one overflowed are they summed again in `i128`.
fn energy_totals(produced: &[Wh], consumed: &[Wh]) -> Result<EnergyTotals> {
    let (mut production, mut consumption, mut supply, mut demand) = (0i64, 0i64, 0i64, 0i64);
    let (mut sellers, mut buyers) = (0u32, 0u32);
    let mut overflowed = false;
    for (p, c) in produced.iter().zip(consumed) {
        let (p, c) = (p.get(), c.get());
        let (sum, o1) = production.overflowing_add(p);
        production = sum;
        let (sum, o2) = consumption.overflowing_add(c);
        consumption = sum;
        // Both values are non-negative, so `p − c` cannot overflow.
        let net = p - c;
        let (sum, o3) = supply.overflowing_add(net.max(0));
        supply = sum;
        let (sum, o4) = demand.overflowing_add((-net).max(0));
        demand = sum;
        overflowed |= o1 | o2 | o3 | o4;
        sellers += u32::from(net > 0);
        buyers += u32::from(net < 0);
    }
    if overflowed {
        return energy_totals_wide(produced, consumed);
    }
    Ok(EnergyTotals {
        production: Wh::new(production),
        consumption: Wh::new(consumption),
        supply: Wh::new(supply),
        demand: Wh::new(demand),
        sellers,
        buyers,
    })
}

/// [`energy_totals`] in `i128`, for sums past `i64` (an error if a total
/// does not fit an `i64`).
fn energy_totals_wide(produced: &[Wh], consumed: &[Wh]) -> Result<EnergyTotals> {
    let (mut production, mut consumption, mut supply, mut demand) = (0i128, 0i128, 0i128, 0i128);
    let (mut sellers, mut buyers) = (0u32, 0u32);
    for (p, c) in produced.iter().zip(consumed) {
        let (p, c) = (i128::from(p.get()), i128::from(c.get()));
        production += p;
        consumption += c;
        let net = p - c;
        if net > 0 {
            supply += net;
            sellers += 1;
        } else if net < 0 {
            demand -= net;
            buyers += 1;
        }
    }
    let to_wh = |v: i128, what| {
        i64::try_from(v)
            .map(Wh::new)
            .map_err(|_| Error::Overflow(what))
    };
    Ok(EnergyTotals {
        production: to_wh(production, "production of a timeframe")?,
        consumption: to_wh(consumption, "consumption of a timeframe")?,
        supply: to_wh(supply, "supply of a timeframe")?,
        demand: to_wh(demand, "demand of a timeframe")?,
        sellers,
        buyers,
    })
}

/// The second pass: each position's share with the rounding rule of this
/// module at `offset` ([`rounding_offset`]), walking `positions` in
/// prosumer-id order.
fn share(
    totals: &EnergyTotals,
    offset: u64,
    produced: &[Wh],
    consumed: &[Wh],
    positions: impl Iterator<Item = usize>,
    community: &mut [Wh],
) {
    let shared = totals.shared().get() as u64;
    let mut sell = ProRata::new(shared, totals.supply.get() as u64, offset);
    let mut buy = ProRata::new(shared, totals.demand.get() as u64, offset);
    for i in positions {
        let net = produced[i].get() - consumed[i].get();
        community[i] = if net > 0 {
            Wh::new(sell.take(net as u64) as i64)
        } else if net < 0 {
            Wh::new(-(buy.take(net.unsigned_abs()) as i64))
        } else {
            Wh::ZERO
        };
    }
}

/// The summary of a timeframe from its totals, priced by `mechanism` at
/// `tariff`'s prices, in its currency.
pub fn summarize_at<T: GridTariff + ?Sized>(
    timeframe: Timeframe,
    totals: &EnergyTotals,
    tariff: &T,
    mechanism: &dyn PricingMechanism,
) -> TimeframeSummary {
    let mut summary = summarize(timeframe, totals, tariff.grid_prices(&timeframe), mechanism);
    summary.currency = tariff.price_currency();
    summary
}

/// The summary of a timeframe from its totals, priced by `mechanism`; no
/// currency.
pub fn summarize(
    timeframe: Timeframe,
    totals: &EnergyTotals,
    grid: GridPrices,
    mechanism: &dyn PricingMechanism,
) -> TimeframeSummary {
    let shared = totals.shared();
    let market = MarketState {
        supply: totals.supply,
        demand: totals.demand,
        grid,
    };
    TimeframeSummary {
        timeframe,
        production: totals.production,
        consumption: totals.consumption,
        supply: totals.supply,
        demand: totals.demand,
        shared,
        import: Wh::new(totals.demand.get() - shared.get()),
        export: Wh::new(totals.supply.get() - shared.get()),
        sellers: totals.sellers,
        buyers: totals.buyers,
        grid,
        community_price: mechanism.community_price(&market),
        currency: None,
    }
}

/// Clears one timeframe from its readings (in any order; at most one per
/// prosumer, all of `timeframe`).
pub fn clear_timeframe(
    timeframe: Timeframe,
    readings: &[Reading],
    grid: GridPrices,
    mechanism: &dyn PricingMechanism,
) -> Result<TimeframeClearing> {
    let mut sorted: Vec<&Reading> = readings.iter().collect();
    sorted.sort_unstable_by(|a, b| a.prosumer().cmp(b.prosumer()));
    for r in &sorted {
        if r.timeframe() != timeframe {
            return Err(Error::ShapeMismatch(format!(
                "reading of {} for {} given to clear {}",
                r.prosumer(),
                r.timeframe(),
                timeframe
            )));
        }
    }
    if let Some(w) = sorted
        .windows(2)
        .find(|w| w[0].prosumer() == w[1].prosumer())
    {
        return Err(Error::DuplicateReading {
            id: w[0].prosumer().to_string(),
            start: timeframe.start(),
        });
    }
    let produced: Vec<Wh> = sorted.iter().map(|r| r.produced()).collect();
    let consumed: Vec<Wh> = sorted.iter().map(|r| r.consumed()).collect();
    let mut community = vec![Wh::ZERO; sorted.len()];
    let totals = clear_columns(&timeframe, &produced, &consumed, &mut community)?;
    let summary = summarize(timeframe, &totals, grid, mechanism);
    let allocations = sorted
        .iter()
        .zip(&community)
        .map(|(r, &c)| {
            Allocation::new(
                r.prosumer().clone(),
                &summary,
                r.produced(),
                r.consumed(),
                c,
            )
        })
        .collect();
    Ok(TimeframeClearing {
        summary,
        allocations,
    })
}

/// Clears every timeframe of `range` (timeframes without readings clear
/// to zero). Every reading must lie in the range.
pub fn clear_range(
    range: &TimeRange,
    readings: &[Reading],
    tariff: &dyn GridTariff,
    mechanism: &dyn PricingMechanism,
) -> Result<Vec<TimeframeClearing>> {
    tariff.check_timeframes(range.length())?;
    let mut by_timeframe: BTreeMap<Timeframe, Vec<Reading>> = BTreeMap::new();
    for r in readings {
        if !range.contains(&r.timeframe()) {
            return Err(Error::ShapeMismatch(format!(
                "reading of {} for {} lies outside the range [{}, {})",
                r.prosumer(),
                r.timeframe(),
                range.start(),
                range.end()
            )));
        }
        by_timeframe
            .entry(r.timeframe())
            .or_default()
            .push(r.clone());
    }
    range
        .timeframes()
        .map(|tf| {
            let rs = by_timeframe.remove(&tf).unwrap_or_default();
            let mut clearing = clear_timeframe(tf, &rs, tariff.grid_prices(&tf), mechanism)?;
            clearing.summary.currency = tariff.price_currency();
            Ok(clearing)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[i64]) -> Vec<Wh> {
        values.iter().map(|&v| Wh::new(v)).collect()
    }

    fn at(hour: u32, minute: u32) -> Timeframe {
        use chrono::TimeZone;
        Timeframe::new(
            chrono::Utc
                .with_ymd_and_hms(2026, 6, 1, hour, minute, 0)
                .unwrap(),
            crate::TimeframeLength::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_offset_decides_who_gets_the_odd_wh() {
        // Three equal sellers share 2 Wh: exact shares 2/3 each. With
        // u = 0 (1970-01-01 00:00) the rule is the plain cumulative floor
        // ⌊c·2/3⌋ − ⌊(c − 1)·2/3⌋: 0, 1, 1.
        let produced = column(&[1, 1, 1, 0]);
        let consumed = column(&[0, 0, 0, 2]);
        let mut community = vec![Wh::ZERO; 4];
        let midnight_1970 = Timeframe::new(
            chrono::DateTime::UNIX_EPOCH,
            crate::TimeframeLength::default(),
        )
        .unwrap();
        assert_eq!(rounding_offset(&midnight_1970), 0);
        let totals = clear_columns(&midnight_1970, &produced, &consumed, &mut community).unwrap();
        assert_eq!(community, column(&[0, 1, 1, -2]));
        assert_eq!(
            (totals.supply, totals.demand, totals.sellers, totals.buyers),
            (Wh::new(3), Wh::new(2), 3, 1)
        );
        // 2026-06-01 12:00 UTC: day 20605, slot 48, u ≈ 0.4726 (m = ⌊3u⌋ = 1):
        // ⌊(1·2 + 1)/3⌋ = 1, ⌊(2·2 + 1)/3⌋ − 1 = 0, ⌊(3·2 + 1)/3⌋ − 1 = 1.
        let noon = at(12, 0);
        assert_eq!(rounding_offset(&noon), 0x78FB_9AD8_218A_D7C1);
        clear_columns(&noon, &produced, &consumed, &mut community).unwrap();
        assert_eq!(community, column(&[1, 0, 1, -2]));
    }

    #[test]
    fn over_a_day_each_equal_member_gets_its_share_of_odd_wh() {
        // Three equal sellers share 2 Wh in each of 96 timeframes: each
        // should get 2/3 · 96 = 64 Wh; the rounding keeps them within 1 Wh.
        let produced = column(&[1, 1, 1, 0]);
        let consumed = column(&[0, 0, 0, 2]);
        let mut totals = [0i64; 3];
        let mut community = vec![Wh::ZERO; 4];
        let mut tf = at(0, 0);
        for _ in 0..96 {
            clear_columns(&tf, &produced, &consumed, &mut community).unwrap();
            assert_eq!(community[..3].iter().map(|w| w.get()).sum::<i64>(), 2);
            for (total, share) in totals.iter_mut().zip(&community) {
                *total += share.get();
            }
            tf = tf.next();
        }
        for total in totals {
            assert!((total - 64).abs() <= 1, "{totals:?}");
        }
    }

    #[test]
    fn the_offset_is_below_one_whole_wh_of_any_weight() {
        for w in [1u64, 2, 3, 1_000, u64::MAX / 3, u64::MAX] {
            let p = ProRata::new(0, w, u64::MAX);
            assert!(p.offset < w);
        }
    }

    #[test]
    fn columns_of_different_lengths_are_refused() {
        let mut out = vec![Wh::ZERO; 1];
        assert!(matches!(
            clear_columns(&at(0, 0), &column(&[1, 2]), &column(&[1]), &mut out),
            Err(Error::ShapeMismatch(_))
        ));
    }

    #[test]
    fn huge_values_use_the_wide_path_and_still_conserve() {
        let big = 4_000_000_000_000_000;
        let produced = column(&[big, big, 0]);
        let consumed = column(&[0, 0, big + 1]);
        let mut community = vec![Wh::ZERO; 3];
        clear_columns(&at(0, 15), &produced, &consumed, &mut community).unwrap();
        assert_eq!(community[0].get() + community[1].get(), big + 1);
        assert_eq!(community[2].get(), -(big + 1));
    }

    #[test]
    fn totals_that_overflow_are_an_error() {
        let mut out = vec![Wh::ZERO; 2];
        let err = clear_columns(
            &at(0, 0),
            &column(&[i64::MAX, i64::MAX]),
            &column(&[0, 0]),
            &mut out,
        );
        assert!(matches!(err, Err(Error::Overflow(_))));
    }

    #[test]
    fn readings_of_another_timeframe_or_twice_the_same_prosumer_are_refused() {
        use chrono::TimeZone;
        let length = crate::TimeframeLength::default();
        let tf = Timeframe::new(
            chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            length,
        )
        .unwrap();
        let grid = GridPrices::new(Price::ZERO, Price::ZERO).unwrap();
        let r = |t: Timeframe| Reading::new("a".parse().unwrap(), t, Wh::new(1), Wh::ZERO).unwrap();
        let m = crate::Mechanism::MidMarketRate;
        assert!(matches!(
            clear_timeframe(tf, &[r(tf.next())], grid, &m),
            Err(Error::ShapeMismatch(_))
        ));
        assert!(matches!(
            clear_timeframe(tf, &[r(tf), r(tf)], grid, &m),
            Err(Error::DuplicateReading { .. })
        ));
    }
}
