//! Billing: each member's bill for a period of cleared timeframes.
//!
//! # Lines of a bill
//!
//! Positive amounts are charges, `total` is what the member owes (negative:
//! what it is owed):
//!
//! ```text
//! total = purchases − sales + imports − exports + grid_fee + network_charge + fixed_fee + operator_margin
//! ```
//!
//! - `purchases`, `sales`: energy bought and sold inside the community at
//!   the community price of each timeframe;
//! - `imports`, `exports`: the member's part of the community's grid legs,
//!   at the grid's prices `r` and `e` of each timeframe (with bill sharing,
//!   the member's share of the period's import cost and export revenue, and
//!   no community lines: under bill sharing shared energy is free);
//! - `grid_fee`: the tariff's fee per kWh imported;
//! - `network_charge`: the tariff's network charge per kWh bought inside the
//!   community (shared energy uses the local network too);
//! - `fixed_fee`: the tariff's fee per calendar month, prorated by the time
//!   the member was registered in the period (see [`crate::tariff`]: a
//!   member registered all month pays the fee exactly, however the month is
//!   split into periods);
//! - `operator_margin`: the tariff's margin per kWh bought in the community.
//!
//! The **baseline** is the same member's bill without sharing: all deficit
//! imported at `r` (with the grid fee), all surplus exported at `e`, no
//! network charge (nothing is shared), the same fixed fee. `saving =
//! baseline − total`.
//!
//! # Conservation
//!
//! Per timeframe the members pay exactly the community's grid bill (see
//! [`crate::pricing`]), so over the period, exactly,
//!
//! ```text
//! Σ totals = Σ (r·import − e·export) + Σ fees + Σ operator margin
//! ```
//!
//! where the fees are the grid fees on imports, the network charges on
//! shared energy and the members' fixed fees.
//!
//! [`PeriodBills::grid_leg`], [`PeriodBills::fees`] and
//! [`PeriodBills::operator_margin`] are computed from the timeframe
//! summaries, independently of the bills, and the property tests check the
//! equation for every mechanism.
//!
//! # Worked example
//!
//! One timeframe, r = 0.30, e = 0.10, SDR, grid fee 0.05 per kWh imported,
//! network charge 0.02 per kWh shared, no fixed fee, no margin. `a` has 1
//! kWh surplus, `b` 1.5 kWh deficit, `c` 0.5 kWh deficit: S = 1, D = 2, so
//! SDR = 0.5 and the community price is 0.15. `b` buys 0.75 kWh (0.1125,
//! network charge 0.015) and imports 0.75 kWh (0.225 + fee 0.0375): total
//! 0.39. `a` sells 1 kWh for 0.15: total −0.15. `c`: 0.0375 + 0.005 +
//! 0.075 + 0.0125 = 0.13. Σ = 0.37 = grid leg 0.30 + fees (0.05 on the
//! import, 0.02 on the shared kWh).
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use microgrid_core::{billing::bill_period, tariff::Tariff, *};
//!
//! let tf = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
//! let period = TimeRange::new(tf.start(), tf.end(), TimeframeLength::default())?;
//! let grid = GridPrices::new("0.30".parse()?, "0.10".parse()?)?;
//! let tariff = Tariff::new("EUR".parse()?, grid)
//!     .with_grid_fee("0.05".parse()?)
//!     .with_network_charge("0.02".parse()?);
//! let mut registry = Registry::default();
//! for id in ["a", "b", "c"] {
//!     registry.register(Prosumer::new(id, id, ProsumerKind::Household, NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())?)?;
//! }
//! let r = |id: &str, p, c| Reading::new(id.parse()?, tf, Wh::new(p), Wh::new(c));
//! let readings = [r("a", 1000, 0)?, r("b", 0, 1500)?, r("c", 0, 500)?];
//! let cleared = clear_range(&period, &readings, &tariff, &Mechanism::SupplyDemandRatio)?;
//!
//! let bills = bill_period(&period, &tariff, &registry, &cleared)?;
//! let totals: Vec<String> = bills.bills.iter().map(|b| b.total.normalize().to_string()).collect();
//! assert_eq!(totals, ["-0.15", "0.39", "0.13"]);
//! assert_eq!(bills.bills[1].network_charge.normalize().to_string(), "0.015");
//! assert_eq!(bills.bills[1].baseline.normalize().to_string(), "0.525"); // 1.5 kWh at 0.30 + fee 0.075
//! assert_eq!(bills.total(), bills.grid_leg + bills.fees + bills.operator_margin);
//! # Ok::<(), microgrid_core::Error>(())
//! ```
//!
//! # Worked example: four members, one month, billed and settled
//!
//! June 2026 (30 days) on hourly timeframes; r = 0.30 and e = 0.10 EUR per
//! kWh, SDR pricing; a grid fee of 0.05 per kWh imported, a fixed fee of
//! 2.00 per member and an operator margin of 0.01 per kWh bought inside the
//! community. To keep the arithmetic short every day is the same and only
//! two hours carry energy (kWh, + surplus, − deficit):
//!
//! | hour  | a (PV) | b (PV) | c  | d (wind) |
//! |-------|--------|--------|----|----------|
//! | 12–13 | +3     | +1     | −1 | −1       |
//! | 19–20 | −1     |        | −1 | +1       |
//!
//! - Noon: S = 4, D = 2, SDR = 2 > 1, so the community price is e = 0.10.
//!   c and d buy 1 kWh each (0.10); a sells 1.5 kWh and b 0.5 kWh (pro rata
//!   to their surplus) and the other 2 kWh are exported at e (a 1.5, b 0.5).
//! - Evening: S = 1, D = 2, SDR = 0.5, price e·r / ((r − e)·0.5 + e) =
//!   0.03 / 0.2 = 0.15. d sells 1 kWh (0.15); a and c each buy 0.5 kWh
//!   (0.075) and import 0.5 kWh (0.15, grid fee 0.025).
//!
//! Thirty such days, in EUR (baseline: every deficit kWh at 0.30 + 0.05 fee,
//! every surplus kWh at 0.10, plus the fixed fee):
//!
//! | member | purchases | sales | imports | exports | grid fee | fixed | margin | total | baseline | saving |
//! |--------|-----------|-------|---------|---------|----------|-------|--------|-------|----------|--------|
//! | a      | 2.25      | 4.50  | 4.50    | 4.50    | 0.75     | 2.00  | 0.15   | 0.65  | 3.50     | 2.85   |
//! | b      | 0         | 1.50  | 0       | 1.50    | 0        | 2.00  | 0      | −1.00 | −1.00    | 0      |
//! | c      | 5.25      | 0     | 4.50    | 0       | 0.75     | 2.00  | 0.45   | 12.95 | 23.00    | 10.05  |
//! | d      | 3.00      | 4.50  | 0       | 0       | 0        | 2.00  | 0.30   | 0.80  | 9.50     | 8.70   |
//!
//! Σ totals = 13.40 = grid leg 3.00 (30 kWh imported at 0.30 − 60 kWh
//! exported at 0.10) + fees 9.50 (30 kWh · 0.05 + 4 · 2.00) + margin 0.90
//! (90 kWh shared · 0.01). Self-sufficiency (120 − 30) / 120 = 0.75,
//! self-consumption (150 − 60) / 150 = 0.6.
//!
//! Settled at 50,000 EUR per BTC (1 EUR = 2,000 sat, so nothing rounds): a,
//! c and d get invoices of 1,300, 25,900 and 1,600 sat; b, owed 1.00 EUR, is
//! paid 2,000 sat to its P2PKH address. The grid leg is 6,000 sat and the
//! operator keeps 20,800 sat: 26,800 = 1,300 − 2,000 + 25,900 + 1,600. At
//! 1,000,000 EUR per BTC b would be owed only 100 sat, below the 546 sat
//! dust limit of P2PKH, and the balance would be carried to July instead;
//! so would a's and d's debts of 65 and 80 sat, below the 294 sat dust
//! limit of the operator's P2WPKH address.
//!
//! ```
//! use std::collections::BTreeMap;
//! use chrono::{Duration, NaiveDate, TimeZone, Utc};
//! use microgrid_core::{billing::bill_period, settlement::*, tariff::Tariff, *};
//! use rust_decimal::Decimal;
//!
//! let hourly = TimeframeLength::new(60)?;
//! let june = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
//! let period = TimeRange::new(june, Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(), hourly)?;
//! let tariff = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.10".parse()?)?)
//!     .with_grid_fee("0.05".parse()?)
//!     .with_fixed_fee(Decimal::from(2))?
//!     .with_operator_margin("0.01".parse()?);
//!
//! let mut readings = Vec::new();
//! for day in 0..30 {
//!     let noon = Timeframe::new(june + Duration::days(day) + Duration::hours(12), hourly)?;
//!     let evening = Timeframe::new(june + Duration::days(day) + Duration::hours(19), hourly)?;
//!     for (tf, id, produced, consumed) in [
//!         (noon, "a", 3_000, 0), (noon, "b", 1_000, 0), (noon, "c", 0, 1_000), (noon, "d", 0, 1_000),
//!         (evening, "a", 0, 1_000), (evening, "c", 0, 1_000), (evening, "d", 1_000, 0),
//!     ] {
//!         readings.push(Reading::new(id.parse()?, tf, Wh::new(produced), Wh::new(consumed))?);
//!     }
//! }
//! let cleared = clear_range(&period, &readings, &tariff, &Mechanism::SupplyDemandRatio)?;
//!
//! // Every member joined before June, so each pays the month's fixed fee in full.
//! let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
//! let mut registry = Registry::default();
//! for id in ["a", "c", "d"] {
//!     registry.register(Prosumer::new(id, id, ProsumerKind::Household, joined)?)?;
//! }
//! let b_address = PayoutAddress::new("mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs", Network::Regtest)?;
//! registry.register(Prosumer::new("b", "b", ProsumerKind::Household, joined)?.with_payout(b_address.clone()))?;
//! let bills = bill_period(&period, &tariff, &registry, &cleared)?;
//!
//! let eur = |d: Decimal| d.normalize().to_string();
//! let row = |id: &str| {
//!     let b = bills.bill(&id.parse().unwrap()).unwrap();
//!     [b.purchases, b.sales, b.imports, b.exports, b.grid_fee, b.fixed_fee, b.operator_margin, b.total, b.baseline, b.saving].map(eur)
//! };
//! assert_eq!(row("a"), ["2.25", "4.5", "4.5", "4.5", "0.75", "2", "0.15", "0.65", "3.5", "2.85"]);
//! assert_eq!(row("b"), ["0", "1.5", "0", "1.5", "0", "2", "0", "-1", "-1", "0"]);
//! assert_eq!(row("c"), ["5.25", "0", "4.5", "0", "0.75", "2", "0.45", "12.95", "23", "10.05"]);
//! assert_eq!(row("d"), ["3", "4.5", "0", "0", "0", "2", "0.3", "0.8", "9.5", "8.7"]);
//! assert_eq!(
//!     [bills.total(), bills.grid_leg, bills.fees, bills.operator_margin, bills.saving()].map(eur),
//!     ["13.4", "3", "9.5", "0.9", "21.6"]
//! );
//! assert_eq!(bills.metrics.self_sufficiency().map(eur).as_deref(), Some("0.75"));
//! assert_eq!(bills.metrics.self_consumption().map(eur).as_deref(), Some("0.6"));
//!
//! // Settlement: b has a P2PKH payout address; invoices are paid to the operator.
//! let operator = PayoutAddress::new("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network::Regtest)?;
//! let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
//! let rate = ExchangeRate::new(Decimal::from(50_000), "EUR".parse()?, "worked example", at)?;
//! let s = settle(&bills, &registry, &rate, Network::Regtest, &operator, &BTreeMap::new())?;
//!
//! let invoiced: Vec<(String, u64)> = s.invoices().into_iter().map(|i| (i.prosumer.to_string(), i.sats.to_sat())).collect();
//! assert_eq!(invoiced, [("a".into(), 1_300), ("c".into(), 25_900), ("d".into(), 1_600)]);
//! assert_eq!(s.payouts(), [(b_address.clone(), bitcoin::Amount::from_sat(2_000))]);
//! assert_eq!((s.grid_amount().to_sat(), s.operator_amount().to_sat()), (6_000, 20_800));
//! assert!(s.is_conserved());
//! assert_eq!(s.sendmany_json(), r#"{"mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs":0.00002000}"#);
//! assert_eq!(
//!     s.invoices()[1].uri,
//!     "bitcoin:bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080?amount=0.000259&label=c&message=Energy%20bill%202026-06-01%20to%202026-07-01"
//! );
//!
//! // At 1,000,000 EUR per BTC b's 100 sat are dust for P2PKH (546), and a's
//! // and d's debts are dust for the operator's P2WPKH (294): carried to July.
//! let dear = ExchangeRate::new(Decimal::from(1_000_000), "EUR".parse()?, "worked example", at)?;
//! let s = settle(&bills, &registry, &dear, Network::Regtest, &operator, &BTreeMap::new())?;
//! assert!(s.payouts().is_empty());
//! assert_eq!(s.invoices().len(), 1); // c's 1,295 sat
//! assert_eq!(
//!     s.carried_out().into_iter().map(|(id, sats)| (id, sats.to_sat())).collect::<BTreeMap<_, _>>(),
//!     BTreeMap::from([("a".parse()?, -65), ("b".parse()?, 100), ("d".parse()?, -80)])
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::batch::ReadingRow;
use crate::clearing::{TimeframeClearing, TimeframeSummary};
use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::matrix::ClearedRow;
use crate::metrics::CommunityMetrics;
use crate::money::{Currency, Price, AMOUNT_DECIMALS};
use crate::pricing::bill_sharing::BillSharingPeriod;
use crate::pricing::CommunityPrice;
use crate::registry::Registry;
use crate::registry::{ProsumerId, ProsumerKind};
use crate::tariff::Tariff;
use crate::timeframe::TimeRange;

#[path = "billing_parts.rs"]
pub mod parts;
pub use parts::BillingPart;

/// The energy of one member over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnergyLines {
    /// Σ produced.
    pub produced: Wh,
    /// Σ consumed.
    pub consumed: Wh,
    /// Σ bought inside the community.
    pub bought: Wh,
    /// Σ sold inside the community.
    pub sold: Wh,
    /// Σ imported (the member's part of the grid import).
    pub imported: Wh,
    /// Σ exported.
    pub exported: Wh,
    /// Σ deficit (bought + imported).
    pub deficit: Wh,
    /// Σ surplus (sold + exported).
    pub surplus: Wh,
}

/// One member's bill for one period. See the [module docs](self) for the
/// lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// The member.
    pub prosumer: ProsumerId,
    /// The energy over the period.
    pub energy: EnergyLines,
    /// Paid for energy bought in the community.
    pub purchases: Decimal,
    /// Received for energy sold in the community.
    pub sales: Decimal,
    /// Paid for imported energy.
    pub imports: Decimal,
    /// Received for exported energy.
    pub exports: Decimal,
    /// Grid fee on imported energy.
    pub grid_fee: Decimal,
    /// Network charge on energy bought inside the community (zero in bills
    /// written before it existed).
    #[serde(default)]
    pub network_charge: Decimal,
    /// The fixed fee for the member's registered time in the period.
    pub fixed_fee: Decimal,
    /// Operator margin on community purchases.
    pub operator_margin: Decimal,
    /// What the member owes (negative: is owed).
    pub total: Decimal,
    /// The total without sharing.
    pub baseline: Decimal,
    /// `baseline − total`.
    pub saving: Decimal,
}

/// The bills of a period and the community's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodBills {
    /// The billing period.
    pub period: TimeRange,
    /// The currency of every amount.
    pub currency: Currency,
    /// One bill per member with readings in the period, in id order.
    pub bills: Vec<Bill>,
    /// The community's grid bill: Σ (r·import − e·export).
    pub grid_leg: Decimal,
    /// Σ grid fees on imports, network charges on shared energy and
    /// fixed fees.
    pub fees: Decimal,
    /// Σ operator margin.
    pub operator_margin: Decimal,
    /// Energy metrics of the period, with the charge and discharge of the
    /// battery members ([`ProsumerKind::Battery`]) kept apart, so its
    /// ratios are the members' (see [`CommunityMetrics`]).
    pub metrics: CommunityMetrics,
}

impl PeriodBills {
    /// Σ of the bills' totals.
    pub fn total(&self) -> Decimal {
        self.bills.iter().map(|b| b.total).sum()
    }

    /// Σ of the savings against the no-sharing baseline.
    pub fn saving(&self) -> Decimal {
        self.bills.iter().map(|b| b.saving).sum()
    }

    /// The bill of one member.
    pub fn bill(&self, id: &ProsumerId) -> Option<&Bill> {
        self.bills.iter().find(|b| &b.prosumer == id)
    }
}

/// Bills every member of `period` from the period's cleared timeframes
/// (one per timeframe of the period, in any order; a missing one is
/// [`Error::PeriodNotCleared`]). `registry` gives each member's
/// registration, which prorates its fixed fee; a member it does not know
/// is [`Error::UnknownProsumer`].
pub fn bill_period(
    period: &TimeRange,
    tariff: &Tariff,
    registry: &Registry,
    clearings: &[TimeframeClearing],
) -> Result<PeriodBills> {
    tariff.check()?;
    let ordered = in_period_order(period, clearings)?;
    let summaries: Vec<&TimeframeSummary> = ordered.iter().map(|c| &c.summary).collect();
    for s in &summaries {
        in_tariff_currency(s, tariff)?;
    }
    let per_period = pricing_kind(&summaries)?;
    let (fee, margin) = (
        tariff.grid_fee().micros()?,
        tariff.operator_margin().micros()?,
    );
    let members = accumulate(&ordered)?;
    let bills = members
        .into_iter()
        .map(|(id, lines)| lines.into_bill(id.clone(), fee, margin))
        .collect::<Result<Vec<Bill>>>()?;
    complete(period, tariff, registry, &summaries, per_period, bills)
}

/// [`bill_period`] from the period's timeframes as columns: for each
/// timeframe of `period`, in order, its readings and its clearing (as
/// stored by a columnar store). Accumulates in integer units on up to
/// `threads` threads; the bills equal [`bill_period`]'s to the last decimal.
pub fn bill_rows(
    period: &TimeRange,
    tariff: &Tariff,
    registry: &Registry,
    rows: &[(&ReadingRow, &ClearedRow)],
    threads: usize,
) -> Result<PeriodBills> {
    let mut billing = RowBilling::new(period, tariff, registry, threads)?;
    billing.add(rows)?;
    billing.finish()
}

/// [`bill_rows`] a chunk of timeframes at a time, so that a store can bill
/// a long period without holding all of it: [`RowBilling::add`] the
/// period's rows in time order, then [`RowBilling::finish`].
pub struct RowBilling<'a> {
    period: TimeRange,
    tariff: &'a Tariff,
    registry: &'a Registry,
    threads: usize,
    fee: i64,
    margin: i64,
    summaries: Vec<TimeframeSummary>,
    lines: Vec<Lines>,
    member: Vec<bool>,
}

impl<'a> RowBilling<'a> {
    /// Starts billing `period` for the members of `registry`.
    pub fn new(
        period: &TimeRange,
        tariff: &'a Tariff,
        registry: &'a Registry,
        threads: usize,
    ) -> Result<RowBilling<'a>> {
        tariff.check()?;
        Ok(RowBilling {
            period: *period,
            tariff,
            registry,
            threads: threads.max(1),
            fee: tariff.grid_fee().micros()?,
            margin: tariff.operator_margin().micros()?,
            summaries: Vec::with_capacity(period.len()),
            lines: vec![Lines::default(); registry.len()],
            member: vec![false; registry.len()],
        })
    }

    /// Adds the next timeframes of the period (in order, none skipped:
    /// a gap is [`Error::PeriodNotCleared`], a repeat
    /// [`Error::DuplicateClearing`]).
    pub fn add(&mut self, rows: &[(&ReadingRow, &ClearedRow)]) -> Result<()> {
        let length = self.period.length().duration();
        for (_, cleared) in rows {
            let tf = cleared.summary.timeframe;
            let k =
                i32::try_from(self.summaries.len()).map_err(|_| Error::Overflow("timeframes"))?;
            let want = self.period.start() + length * k;
            if want >= self.period.end() || tf.start() < want {
                return Err(Error::DuplicateClearing { start: tf.start() });
            }
            if tf.start() > want || tf.length() != self.period.length() {
                return Err(Error::PeriodNotCleared { start: want });
            }
            in_tariff_currency(&cleared.summary, self.tariff)?;
            self.summaries.push(cleared.summary.clone());
        }
        let rates = rows
            .iter()
            .map(|(_, c)| Rates::of(&c.summary))
            .collect::<Result<Vec<Rates>>>()?;
        let n = self.registry.len();
        let block = |(block, rates): (&[(&ReadingRow, &ClearedRow)], &[Rates])| -> Result<(Vec<Lines>, Vec<bool>)> {
            let mut lines = vec![Lines::default(); n];
            let mut member = vec![false; n];
            for ((readings, cleared), rates) in block.iter().zip(rates) {
                let (p, c) = (readings.produced(), readings.consumed());
                // Slots past the registry (prosumers it does not know) are not billed.
                for (i, &present) in readings.present().iter().enumerate().take(n) {
                    if present {
                        member[i] = true;
                        lines[i].add(rates, p[i].get(), c[i].get(), cleared.community[i].get())?;
                    }
                }
            }
            Ok((lines, member))
        };
        let per_thread = rows.len().div_ceil(self.threads).max(1);
        let parts: Vec<Result<(Vec<Lines>, Vec<bool>)>> = if per_thread >= rows.len() {
            vec![block((rows, &rates))]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = rows
                    .chunks(per_thread)
                    .zip(rates.chunks(per_thread))
                    .map(|part| scope.spawn(move || block(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        for part in parts {
            let (part_lines, part_member) = part?;
            for (i, l) in part_lines.iter().enumerate() {
                self.lines[i].merge(l)?;
                self.member[i] |= part_member[i];
            }
        }
        Ok(())
    }

    /// The bills, once every timeframe of the period was added.
    pub fn finish(mut self) -> Result<PeriodBills> {
        if self.summaries.len() < self.period.len() {
            let k =
                i32::try_from(self.summaries.len()).map_err(|_| Error::Overflow("timeframes"))?;
            return Err(Error::PeriodNotCleared {
                start: self.period.start() + self.period.length().duration() * k,
            });
        }
        let summaries: Vec<&TimeframeSummary> = self.summaries.iter().collect();
        let per_period = pricing_kind(&summaries)?;
        let bills = self
            .registry
            .id_order()
            .into_iter()
            .map(|i| i as usize)
            .filter(|&i| self.member[i])
            .map(|i| {
                let id = self
                    .registry
                    .at(i)
                    .ok_or_else(|| Error::UnknownProsumer(format!("#{i}")))?
                    .id()
                    .clone();
                std::mem::take(&mut self.lines[i]).into_bill(id, self.fee, self.margin)
            })
            .collect::<Result<Vec<Bill>>>()?;
        complete(
            &self.period,
            self.tariff,
            self.registry,
            &summaries,
            per_period,
            bills,
        )
    }
}

/// Fixed fees (prorated by each member's registration in `registry`),
/// network charges, bill sharing, totals and the community's sums: the
/// part of billing after each member's lines are summed.
fn complete(
    period: &TimeRange,
    tariff: &Tariff,
    registry: &Registry,
    summaries: &[&TimeframeSummary],
    per_period: bool,
    mut bills: Vec<Bill>,
) -> Result<PeriodBills> {
    if per_period {
        share_the_grid_bill(summaries, &mut bills)?;
    }
    let mut fixed_fees = Decimal::ZERO;
    // The battery members' charge and discharge, kept apart in the metrics.
    let (mut charged, mut discharged) = (Wh::ZERO, Wh::ZERO);
    for b in &mut bills {
        let member = registry.get(&b.prosumer)?;
        if member.kind() == ProsumerKind::Battery {
            charged = charged.checked_add(b.energy.consumed)?;
            discharged = discharged.checked_add(b.energy.produced)?;
        }
        b.fixed_fee = tariff.fixed_fee_for(period, member)?;
        fixed_fees += b.fixed_fee;
        b.network_charge = tariff.network_charge().amount_for(b.energy.bought);
        b.baseline += b.fixed_fee;
        b.total = b.purchases - b.sales + b.imports - b.exports
            + b.grid_fee
            + b.network_charge
            + b.fixed_fee
            + b.operator_margin;
        b.saving = b.baseline - b.total;
    }
    let summaries = summaries.iter().copied();
    Ok(PeriodBills {
        period: *period,
        currency: tariff.currency(),
        grid_leg: summaries.clone().map(|s| s.grid_amount()).sum(),
        fees: summaries
            .clone()
            .map(|s| {
                tariff.grid_fee().amount_for(s.import)
                    + tariff.network_charge().amount_for(s.shared)
            })
            .sum::<Decimal>()
            + fixed_fees,
        operator_margin: summaries
            .clone()
            .map(|s| tariff.operator_margin().amount_for(s.shared))
            .sum(),
        metrics: CommunityMetrics::from_summaries(summaries)?.with_battery(charged, discharged),
        bills,
    })
}

/// The lines of one member summed over the period, money in units of
/// 10⁻⁹ ([`AMOUNT_DECIMALS`]): a price in 10⁻⁶ per kWh times Wh. Integer
/// sums are exact like `Decimal` ones and much cheaper per allocation.
///
/// Only the lines whose price changes per timeframe are summed per
/// allocation; the grid fee and the operator margin, one price for the
/// whole period, are applied to the energy sums at the end.
#[derive(Default, Clone)]
struct Lines {
    /// Σ produced, consumed, bought, sold, imported, exported (Wh; an
    /// `i128` of `i64` terms cannot overflow).
    energy: [i128; 6],
    purchases: i128,
    sales: i128,
    imports: i128,
    exports: i128,
    /// Σ r · deficit.
    deficit_at_import_price: i128,
    /// Σ e · surplus.
    surplus_at_export_price: i128,
}

/// The prices of one timeframe in millionths per kWh.
struct Rates {
    import: i64,
    export: i64,
    /// The community price; `None` when it is set per period.
    community: Option<i64>,
}

impl Rates {
    fn of(summary: &TimeframeSummary) -> Result<Rates> {
        Ok(Rates {
            import: summary.grid.import().micros()?,
            export: summary.grid.export().micros()?,
            community: summary
                .community_price
                .known()
                .map(Price::micros)
                .transpose()?,
        })
    }
}

impl Lines {
    /// Adds one allocation, given as the reading and the signed community
    /// energy (+ sold, − bought), as [`crate::Allocation::new`] splits it.
    #[inline]
    fn add(&mut self, rates: &Rates, produced: i64, consumed: i64, community: i64) -> Result<()> {
        let net = i128::from(produced) - i128::from(consumed);
        let community = i128::from(community);
        self.energy[0] += i128::from(produced);
        self.energy[1] += i128::from(consumed);
        let p = rates.community.unwrap_or(0);
        if net > 0 {
            let (sold, exported) = (community, net - community);
            self.energy[3] += sold;
            self.energy[5] += exported;
            add(&mut self.sales, p, sold)?;
            add(&mut self.exports, rates.export, exported)?;
            add(&mut self.surplus_at_export_price, rates.export, net)?;
        } else if net < 0 {
            let (bought, imported) = (-community, -net + community);
            self.energy[2] += bought;
            self.energy[4] += imported;
            add(&mut self.purchases, p, bought)?;
            add(&mut self.imports, rates.import, imported)?;
            add(&mut self.deficit_at_import_price, rates.import, -net)?;
        }
        Ok(())
    }

    /// Adds the sums of another part of the period.
    fn merge(&mut self, other: &Lines) -> Result<()> {
        for (a, b) in self.energy.iter_mut().zip(other.energy) {
            *a += b;
        }
        for (a, b) in [
            (&mut self.purchases, other.purchases),
            (&mut self.sales, other.sales),
            (&mut self.imports, other.imports),
            (&mut self.exports, other.exports),
            (
                &mut self.deficit_at_import_price,
                other.deficit_at_import_price,
            ),
            (
                &mut self.surplus_at_export_price,
                other.surplus_at_export_price,
            ),
        ] {
            *a = a
                .checked_add(b)
                .ok_or(Error::Overflow("amount of a bill"))?;
        }
        Ok(())
    }

    /// The bill, with the period's grid fee and margin (millionths per kWh)
    /// applied to the energy sums. Under bill sharing (`per_period`) the
    /// community and grid lines are set later.
    fn into_bill(self, prosumer: ProsumerId, fee: i64, margin: i64) -> Result<Bill> {
        let wh = |sum: i128| {
            i64::try_from(sum)
                .map(Wh::new)
                .map_err(|_| Error::Overflow("energy sum"))
        };
        let [produced, consumed, bought, sold, imported, exported] = self.energy;
        let mut grid_fee = 0;
        add(&mut grid_fee, fee, imported)?;
        let mut operator_margin = 0;
        add(&mut operator_margin, margin, bought)?;
        let mut baseline = self.deficit_at_import_price;
        add(&mut baseline, fee, bought + imported)?;
        baseline = baseline
            .checked_sub(self.surplus_at_export_price)
            .ok_or(Error::Overflow("amount of a bill"))?;
        Ok(Bill {
            energy: EnergyLines {
                produced: wh(produced)?,
                consumed: wh(consumed)?,
                bought: wh(bought)?,
                sold: wh(sold)?,
                imported: wh(imported)?,
                exported: wh(exported)?,
                deficit: wh(bought + imported)?,
                surplus: wh(sold + exported)?,
            },
            purchases: amount(self.purchases)?,
            sales: amount(self.sales)?,
            imports: amount(self.imports)?,
            exports: amount(self.exports)?,
            grid_fee: amount(grid_fee)?,
            operator_margin: amount(operator_margin)?,
            baseline: amount(baseline)?,
            ..empty_bill(prosumer)
        })
    }
}

/// `sum += micros · energy`, exactly, or an overflow error. With
/// |micros| < 2^62 and |energy| ≤ 2^64 (a sum of two `i64`) the product is
/// below 2^126 and cannot overflow an `i128`.
#[inline]
fn add(sum: &mut i128, micros: i64, energy: i128) -> Result<()> {
    match sum.checked_add(i128::from(micros) * energy) {
        Some(total) => {
            *sum = total;
            Ok(())
        }
        None => Err(Error::Overflow("amount of a bill")),
    }
}

fn amount(nanos: i128) -> Result<Decimal> {
    Decimal::try_from_i128_with_scale(nanos, AMOUNT_DECIMALS)
        .map_err(|_| Error::Overflow("amount of a bill"))
}

/// Each member's summed lines over the period, in id order, before fixed
/// fees and bill sharing.
fn accumulate<'a>(ordered: &[&'a TimeframeClearing]) -> Result<Vec<(&'a ProsumerId, Lines)>> {
    let mut index: HashMap<&ProsumerId, usize> = HashMap::new();
    let mut members: Vec<(&ProsumerId, Lines)> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    for c in ordered {
        let rates = Rates::of(&c.summary)?;
        for (k, a) in c.allocations.iter().enumerate() {
            // Timeframes usually list the members in the same order: try the
            // slot the k-th allocation had last time before hashing the id.
            let i = match slots.get(k) {
                Some(&i) if members[i].0 == &a.prosumer => i,
                _ => {
                    let i = *index.entry(&a.prosumer).or_insert_with(|| {
                        members.push((&a.prosumer, Lines::default()));
                        members.len() - 1
                    });
                    match slots.get_mut(k) {
                        Some(slot) => *slot = i,
                        None => slots.push(i),
                    }
                    i
                }
            };
            let community = a.sold.get() - a.bought.get();
            members[i]
                .1
                .add(&rates, a.produced.get(), a.consumed.get(), community)?;
        }
    }
    members.sort_unstable_by(|x, y| x.0.cmp(y.0));
    Ok(members)
}

fn empty_bill(prosumer: ProsumerId) -> Bill {
    Bill {
        prosumer,
        energy: EnergyLines::default(),
        purchases: Decimal::ZERO,
        sales: Decimal::ZERO,
        imports: Decimal::ZERO,
        exports: Decimal::ZERO,
        grid_fee: Decimal::ZERO,
        network_charge: Decimal::ZERO,
        fixed_fee: Decimal::ZERO,
        operator_margin: Decimal::ZERO,
        total: Decimal::ZERO,
        baseline: Decimal::ZERO,
        saving: Decimal::ZERO,
    }
}

/// A timeframe cleared in a known currency is billed in that currency
/// only: the numbers are the same, the label is not.
fn in_tariff_currency(summary: &TimeframeSummary, tariff: &Tariff) -> Result<()> {
    match summary.currency {
        Some(cleared) if cleared != tariff.currency() => Err(Error::ClearedInOtherCurrency {
            start: summary.timeframe.start(),
            cleared: cleared.to_string(),
            billed: tariff.currency().to_string(),
        }),
        _ => Ok(()),
    }
}

/// The clearings of every timeframe of the period, in time order.
fn in_period_order<'a>(
    period: &TimeRange,
    clearings: &'a [TimeframeClearing],
) -> Result<Vec<&'a TimeframeClearing>> {
    let mut by_start = BTreeMap::new();
    for c in clearings
        .iter()
        .filter(|c| period.contains(&c.summary.timeframe))
    {
        let start = c.summary.timeframe.start();
        // Two results for one timeframe (say, before and after a correction)
        // would otherwise bill whichever came last, silently.
        if by_start.insert(start, c).is_some() {
            return Err(Error::DuplicateClearing { start });
        }
    }
    period
        .timeframes()
        .map(|tf| {
            by_start
                .get(&tf.start())
                .copied()
                .ok_or(Error::PeriodNotCleared { start: tf.start() })
        })
        .collect()
}

/// Whether the period is priced per period (bill sharing); an error if it
/// mixes both kinds.
fn pricing_kind(summaries: &[&TimeframeSummary]) -> Result<bool> {
    let is_per_period = |s: &&TimeframeSummary| s.community_price == CommunityPrice::PerPeriod;
    let per_period = summaries.first().is_some_and(is_per_period);
    match summaries.iter().find(|s| is_per_period(s) != per_period) {
        Some(s) => Err(Error::MixedMechanisms {
            start: s.timeframe.start(),
        }),
        None => Ok(per_period),
    }
}

/// Bill sharing: the period's import cost is shared by deficit, the export
/// revenue by surplus (see [`BillSharingPeriod`]).
fn share_the_grid_bill(summaries: &[&TimeframeSummary], bills: &mut [Bill]) -> Result<()> {
    let grid_bill = BillSharingPeriod::from_summaries(summaries.iter().copied());
    let deficits: Vec<u64> = bills
        .iter()
        .map(|b| b.energy.deficit.get().unsigned_abs())
        .collect();
    let surpluses: Vec<u64> = bills
        .iter()
        .map(|b| b.energy.surplus.get().unsigned_abs())
        .collect();
    let pays = grid_bill.buyer_amounts(&deficits)?;
    let gets = grid_bill.seller_amounts(&surpluses)?;
    for ((b, pay), get) in bills.iter_mut().zip(pays).zip(gets) {
        b.imports = pay;
        b.exports = get;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clear_range, GridPrices, GridTariff, Mechanism, Reading, TimeframeLength};
    use chrono::{TimeZone, Utc};

    fn members() -> Registry {
        let joined = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let mut registry = Registry::default();
        for id in ["a", "b", "c"] {
            registry
                .register(
                    crate::Prosumer::new(id, id, crate::ProsumerKind::Household, joined).unwrap(),
                )
                .unwrap();
        }
        registry
    }

    fn setup(m: Mechanism) -> (TimeRange, Tariff, Vec<TimeframeClearing>) {
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let period = TimeRange::new(
            start,
            start + chrono::Duration::minutes(30),
            TimeframeLength::default(),
        )
        .unwrap();
        let tariff = Tariff::new(
            "EUR".parse().unwrap(),
            GridPrices::new("0.30".parse().unwrap(), "0.10".parse().unwrap()).unwrap(),
        );
        let tfs: Vec<_> = period.timeframes().collect();
        let r = |id: &str, t: usize, p, c| {
            Reading::new(id.parse().unwrap(), tfs[t], Wh::new(p), Wh::new(c)).unwrap()
        };
        let readings = [
            r("a", 0, 1000, 0),
            r("b", 0, 0, 2000),
            r("a", 1, 0, 500),
            r("b", 1, 1500, 0),
        ];
        let cleared = clear_range(&period, &readings, &tariff, &m).unwrap();
        (period, tariff, cleared)
    }

    #[test]
    fn a_missing_timeframe_means_the_period_is_not_cleared() {
        let (period, tariff, mut cleared) = setup(Mechanism::MidMarketRate);
        let missing = cleared.remove(1).summary.timeframe.start();
        assert_eq!(
            bill_period(&period, &tariff, &members(), &cleared),
            Err(Error::PeriodNotCleared { start: missing })
        );
    }

    #[test]
    fn bill_sharing_bills_the_period_grid_bill() {
        // t0: S = 1, D = 2 → import 1 kWh (0.30). t1: S = 1.5, D = 0.5 → export 1 kWh (0.10).
        let (period, tariff, cleared) = setup(Mechanism::BillSharing);
        let bills = bill_period(&period, &tariff, &members(), &cleared).unwrap();
        // Deficits: a 0.5, b 2 → a pays 0.06, b 0.24. Surpluses: a 1, b 1.5 → a gets 0.04, b 0.06.
        let a = bills.bill(&"a".parse().unwrap()).unwrap();
        let b = bills.bill(&"b".parse().unwrap()).unwrap();
        assert_eq!(
            (a.imports, a.exports),
            (Decimal::new(6, 2), Decimal::new(4, 2))
        );
        assert_eq!(
            (b.imports, b.exports),
            (Decimal::new(24, 2), Decimal::new(6, 2))
        );
        assert_eq!(bills.total(), Decimal::new(20, 2));
        assert_eq!(bills.grid_leg, Decimal::new(20, 2));
    }

    #[test]
    fn members_are_summed_right_when_timeframes_list_different_members() {
        let start = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let period = TimeRange::new(
            start,
            start + chrono::Duration::minutes(45),
            TimeframeLength::default(),
        )
        .unwrap();
        let tariff = Tariff::new(
            "EUR".parse().unwrap(),
            GridPrices::new("0.30".parse().unwrap(), "0.10".parse().unwrap()).unwrap(),
        );
        let tfs: Vec<_> = period.timeframes().collect();
        let r = |id: &str, t: usize, p, c| {
            Reading::new(id.parse().unwrap(), tfs[t], Wh::new(p), Wh::new(c)).unwrap()
        };
        // t0: a, c; t1: b, c; t2: a, b, c — the k-th allocation changes member.
        let readings = [
            r("a", 0, 1000, 0),
            r("c", 0, 0, 400),
            r("b", 1, 0, 700),
            r("c", 1, 300, 0),
            r("a", 2, 0, 100),
            r("b", 2, 0, 200),
            r("c", 2, 600, 0),
        ];
        let cleared = clear_range(&period, &readings, &tariff, &Mechanism::MidMarketRate).unwrap();
        let bills = bill_period(&period, &tariff, &members(), &cleared).unwrap();
        let ids: Vec<&str> = bills.bills.iter().map(|b| b.prosumer.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        for b in &bills.bills {
            let mine = cleared
                .iter()
                .flat_map(|c| &c.allocations)
                .filter(|a| a.prosumer == b.prosumer);
            let (produced, consumed, amount) = mine.fold((0, 0, Decimal::ZERO), |(p, c, m), a| {
                (
                    p + a.produced.get(),
                    c + a.consumed.get(),
                    m + a.amount().unwrap(),
                )
            });
            assert_eq!(
                (b.energy.produced.get(), b.energy.consumed.get()),
                (produced, consumed)
            );
            assert_eq!(
                b.purchases - b.sales + b.imports - b.exports,
                amount,
                "{}",
                b.prosumer
            );
        }
        assert_eq!(bills.total(), bills.grid_leg);
    }

    #[test]
    fn absurd_prices_are_refused_and_the_largest_price_bills_exactly() {
        let (period, tariff, cleared) = setup(Mechanism::MidMarketRate);
        assert!(matches!(
            Price::new(Decimal::from(5_000_000_000_000i64)),
            Err(Error::InvalidPrice { .. })
        ));
        let largest = Price::new(Decimal::from(crate::money::MAX_PRICE_PER_KWH)).unwrap();
        let bills = bill_period(
            &period,
            &tariff.with_grid_fee(largest),
            &members(),
            &cleared,
        )
        .unwrap();
        // 1 kWh imported in the first timeframe: a fee of 1,000,000.
        assert_eq!(bills.fees, Decimal::from(1_000_000));
        assert_eq!(bills.total(), bills.grid_leg + bills.fees);
    }

    #[test]
    fn negative_fees_and_absurd_fixed_fees_are_refused() {
        let (period, tariff, cleared) = setup(Mechanism::MidMarketRate);
        let minus = Price::new(Decimal::new(-1, 2)).unwrap();
        for bad in [
            tariff.clone().with_grid_fee(minus),
            tariff.clone().with_operator_margin(minus),
        ] {
            assert!(matches!(
                bill_period(&period, &bad, &members(), &cleared),
                Err(Error::InvalidPrice { .. })
            ));
        }
        assert!(matches!(
            tariff
                .clone()
                .with_fixed_fee(Decimal::new(5, 0) * Decimal::from(10u64.pow(18))),
            Err(Error::InvalidAmount { .. })
        ));
    }

    #[test]
    fn two_clearings_of_one_timeframe_are_refused() {
        let (period, tariff, mut cleared) = setup(Mechanism::MidMarketRate);
        let again = cleared[0].clone();
        let start = again.summary.timeframe.start();
        cleared.push(again);
        assert_eq!(
            bill_period(&period, &tariff, &members(), &cleared),
            Err(Error::DuplicateClearing { start })
        );
    }

    #[test]
    fn a_period_cleared_in_one_currency_is_not_billed_in_another() {
        let (period, tariff, cleared) = setup(Mechanism::MidMarketRate);
        assert_eq!(cleared[0].summary.currency, Some(tariff.currency()));
        let dollars = Tariff::new(
            "USD".parse().unwrap(),
            tariff.grid_prices(&cleared[0].summary.timeframe),
        );
        assert_eq!(
            bill_period(&period, &dollars, &members(), &cleared),
            Err(Error::ClearedInOtherCurrency {
                start: period.start(),
                cleared: "EUR".into(),
                billed: "USD".into(),
            })
        );
        // Cleared at bare prices (no currency), any tariff bills it.
        let mut bare = cleared.clone();
        for c in &mut bare {
            c.summary.currency = None;
        }
        assert!(bill_period(&period, &dollars, &members(), &bare).is_ok());
    }

    #[test]
    fn mixing_per_period_and_per_timeframe_pricing_is_refused() {
        let (period, tariff, mut cleared) = setup(Mechanism::BillSharing);
        let (_, _, mmr) = setup(Mechanism::MidMarketRate);
        cleared[1] = mmr[1].clone();
        assert!(matches!(
            bill_period(&period, &tariff, &members(), &cleared),
            Err(Error::MixedMechanisms { .. })
        ));
    }
}
