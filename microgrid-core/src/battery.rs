//! A community battery as a clearing participant.
//!
//! The battery is registered as a member of its own (kind
//! [`ProsumerKind::Battery`]), so every pricing mechanism prices it like any
//! other member and billing gives it its own bill. Its readings are not
//! metered but computed, timeframe by timeframe, by the **dispatch rule**
//! below, and then cleared like a meter's: `produced` is what it
//! discharged, `consumed` what it charged.
//!
//! # The dispatch rule
//!
//! In timeframe `t`, let `S_t` be the community's net surplus before the
//! battery: the sum over all other members with a reading of
//! `produced − consumed`. With `SoC_t` the state of charge at the start of
//! `t` (whole Wh), `C` the capacity and `η` the round-trip efficiency:
//!
//! ```text
//! charged_t    = min(S_t⁺, charge limit,    largest c with ⌊c·η⌋ ≤ C − SoC_t)
//! discharged_t = min(S_t⁻, discharge limit, SoC_t)
//! stored_t     = ⌊charged_t · η⌋           (rounded down to whole Wh)
//! loss_t       = charged_t − stored_t
//! SoC_{t+1}    = SoC_t + stored_t − discharged_t
//! ```
//!
//! where `S⁺ = max(S, 0)` and `S⁻ = max(−S, 0)`. So the battery charges
//! from the surplus the community would otherwise export, and discharges
//! into the deficit it would otherwise import; it never charges from the
//! grid nor discharges into it, and never both in one timeframe. The whole
//! round-trip loss is taken when charging (what is stored can be
//! discharged in full), rounded in the battery's disfavour: the fraction of
//! a Wh below `⌊c·η⌋` is a loss. The limits per timeframe are the power
//! limits over the timeframe's length, rounded down to whole Wh:
//! `⌊W · minutes / 60⌋`. Hence always `0 ≤ SoC ≤ C`,
//! `charged = stored + loss`, and over any period
//! `SoC_end − SoC_start = Σ stored − Σ discharged`.
//!
//! With the battery's reading in the timeframe, clearing is the usual rule
//! ([`crate::clearing`]): charging, the battery is a buyer whose whole
//! deficit is met inside the community (`charged ≤ S_t⁺`, so the buyers are
//! the short side); discharging, it is a seller whose whole surplus is sold
//! inside the community. Per timeframe
//! `Σ produced + import = Σ consumed + export` still holds with the battery
//! counted (its discharge is production, its charge consumption).
//!
//! Dispatch is sequential in time (the state of charge carries over) and
//! costs `O(timeframes)`; clearing stays parallel per timeframe once the
//! battery's readings are in place. The row path
//! ([`clear_range_with_battery`]) and the columnar path ([`dispatch_rows`]
//! then [`crate::clear_reading_rows`]) give the same result.
//!
//! # State across clears
//!
//! The state of charge is never stored: it is the starting state plus, over
//! the battery's earlier cleared timeframes, `⌊charged·η⌋ − discharged`,
//! recomputed from its stored readings ([`BatterySpec::replay`]). A grid
//! with a battery therefore clears in time order (see
//! `microgrid_store::Grid::with_battery`).
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use microgrid_core::{BatterySpec, Timeframe, TimeframeLength, Wh};
//!
//! // 10 kWh, 5 kW both ways, 90 % round trip, starting half full.
//! let battery = BatterySpec::new("battery", 10_000, 5_000, 5_000, rust_decimal::Decimal::new(9, 1), 5_000)?;
//! let noon = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
//! // A surplus of 3 kWh in 15 minutes: at most 1,250 Wh (5 kW × ¼ h) go in.
//! let step = battery.step(noon, Wh::new(5_000), 3_000)?;
//! assert_eq!((step.charged, step.stored, step.loss), (Wh::new(1_250), Wh::new(1_125), Wh::new(125)));
//! assert_eq!(step.soc_end, Wh::new(6_125));
//! // A deficit of 400 Wh next: the battery covers it.
//! let next = battery.step(noon.next(), step.soc_end, -400)?;
//! assert_eq!((next.discharged, next.soc_end), (Wh::new(400), Wh::new(5_725)));
//! # Ok::<(), microgrid_core::Error>(())
//! ```

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::batch::ReadingRow;
use crate::clearing::{clear_range, GridTariff, TimeframeClearing};
use crate::energy::Wh;
use crate::error::{Error, Result};
use crate::pricing::PricingMechanism;
use crate::reading::Reading;
use crate::registry::{Prosumer, ProsumerId, ProsumerKind};
use crate::timeframe::{TimeRange, Timeframe, TimeframeLength};

/// Who a community battery belongs to, and so whose its bill is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "owner", content = "member")]
pub enum BatteryOwner {
    /// The community's operator (the default).
    Operator,
    /// A member of the community.
    Member(ProsumerId),
}

/// Most decimal places of a round-trip efficiency: `⌊c·η⌋` is then exact
/// in integers for any charge.
const EFFICIENCY_DECIMALS: u32 = 6;

/// A community battery: capacity, power limits, round-trip efficiency and
/// starting state of charge, validated where it is made. See the module
/// docs for the dispatch rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatterySpec {
    id: ProsumerId,
    capacity: Wh,
    max_charge_w: i64,
    max_discharge_w: i64,
    efficiency: Decimal,
    initial_soc: Wh,
    owner: BatteryOwner,
}

impl BatterySpec {
    /// A battery registered as prosumer `id`: `capacity_wh` (positive),
    /// power limits `max_charge_w` and `max_discharge_w` in watts (not
    /// negative), `round_trip_efficiency` in (0, 1] with at most 6
    /// decimals, and the state of charge at the start of its first
    /// timeframe, `initial_soc_wh`, in `[0, capacity_wh]`. Owned by the
    /// operator; see [`BatterySpec::with_owner`].
    pub fn new(
        id: impl Into<String>,
        capacity_wh: i64,
        max_charge_w: i64,
        max_discharge_w: i64,
        round_trip_efficiency: Decimal,
        initial_soc_wh: i64,
    ) -> Result<BatterySpec> {
        let id = ProsumerId::new(id)?;
        let invalid = |input: &'static str, reason: String| Error::InvalidBattery {
            id: id.to_string(),
            input,
            reason,
        };
        if capacity_wh <= 0 {
            return Err(invalid(
                "capacity_wh",
                format!("must be positive, not {capacity_wh}"),
            ));
        }
        for (input, w) in [
            ("max_charge_w", max_charge_w),
            ("max_discharge_w", max_discharge_w),
        ] {
            if w < 0 {
                return Err(invalid(input, format!("must not be negative, not {w}")));
            }
        }
        let efficiency = round_trip_efficiency.normalize();
        if efficiency <= Decimal::ZERO || efficiency > Decimal::ONE {
            return Err(invalid(
                "round_trip_efficiency",
                format!("must be above 0 and at most 1, not {round_trip_efficiency}"),
            ));
        }
        if efficiency.scale() > EFFICIENCY_DECIMALS {
            return Err(invalid(
                "round_trip_efficiency",
                format!("has more than {EFFICIENCY_DECIMALS} decimals: {round_trip_efficiency}"),
            ));
        }
        if !(0..=capacity_wh).contains(&initial_soc_wh) {
            return Err(invalid(
                "initial_soc_wh",
                format!("must lie in [0, capacity_wh = {capacity_wh}], not {initial_soc_wh}"),
            ));
        }
        Ok(BatterySpec {
            id,
            capacity: Wh::new(capacity_wh),
            max_charge_w,
            max_discharge_w,
            efficiency,
            initial_soc: Wh::new(initial_soc_wh),
            owner: BatteryOwner::Operator,
        })
    }

    /// The same battery owned by `owner`; a battery cannot own itself.
    pub fn with_owner(mut self, owner: BatteryOwner) -> Result<BatterySpec> {
        if owner == BatteryOwner::Member(self.id.clone()) {
            return Err(Error::InvalidBattery {
                id: self.id.to_string(),
                input: "owner",
                reason: "a battery cannot own itself".into(),
            });
        }
        self.owner = owner;
        Ok(self)
    }

    /// The battery's prosumer id.
    pub fn id(&self) -> &ProsumerId {
        &self.id
    }
    /// Capacity.
    pub fn capacity(&self) -> Wh {
        self.capacity
    }
    /// Charge power limit in watts.
    pub fn max_charge_w(&self) -> i64 {
        self.max_charge_w
    }
    /// Discharge power limit in watts.
    pub fn max_discharge_w(&self) -> i64 {
        self.max_discharge_w
    }
    /// Round-trip efficiency η, in (0, 1].
    pub fn round_trip_efficiency(&self) -> Decimal {
        self.efficiency
    }
    /// State of charge at the start of the battery's first timeframe.
    pub fn initial_soc(&self) -> Wh {
        self.initial_soc
    }
    /// Who owns the battery.
    pub fn owner(&self) -> &BatteryOwner {
        &self.owner
    }

    /// The battery as a prosumer to register: kind
    /// [`ProsumerKind::Battery`], member from `joined` (its state of charge
    /// is [`BatterySpec::initial_soc`] at midnight UTC of that day).
    pub fn prosumer(&self, name: impl Into<String>, joined: NaiveDate) -> Result<Prosumer> {
        Prosumer::new(self.id.as_str(), name, ProsumerKind::Battery, joined)
    }

    /// Most energy charged in one timeframe of `length`:
    /// `⌊max_charge_w · minutes / 60⌋` Wh.
    pub fn charge_limit(&self, length: TimeframeLength) -> Wh {
        per_timeframe(self.max_charge_w, length)
    }

    /// Most energy discharged in one timeframe of `length`:
    /// `⌊max_discharge_w · minutes / 60⌋` Wh.
    pub fn discharge_limit(&self, length: TimeframeLength) -> Wh {
        per_timeframe(self.max_discharge_w, length)
    }

    /// `(n, 10^s)` with `η = n / 10^s`.
    fn ratio(&self) -> (i128, i128) {
        (
            self.efficiency.mantissa(),
            10i128.pow(self.efficiency.scale()),
        )
    }

    /// What a charge of `charged` adds to the state of charge:
    /// `⌊charged · η⌋`.
    pub fn stored(&self, charged: Wh) -> Wh {
        let (n, d) = self.ratio();
        // Both fit: charged < 2^63, n ≤ 10^6.
        Wh::new((i128::from(charged.get()) * n / d) as i64)
    }

    /// The largest charge `c` with `⌊c · η⌋ ≤ room` (for `room ≥ 0`).
    pub fn max_charge_for_room(&self, room: Wh) -> Wh {
        let (n, d) = self.ratio();
        let room = i128::from(room.get().max(0));
        // ⌊c·n/d⌋ ≤ room ⇔ c·n < (room + 1)·d ⇔ c ≤ ((room + 1)·d − 1) / n.
        let c = ((room + 1) * d - 1) / n;
        Wh::new(c.min(i128::from(i64::MAX)) as i64)
    }

    /// The dispatch rule in one timeframe: the battery at `soc_start` and
    /// the community's net surplus before the battery `net_surplus`
    /// (`Σ produced − Σ consumed` of the other members; negative for a
    /// deficit). An error if `soc_start` lies outside `[0, capacity]`.
    pub fn step(
        &self,
        timeframe: Timeframe,
        soc_start: Wh,
        net_surplus: i128,
    ) -> Result<BatteryStep> {
        self.check_soc(timeframe, soc_start)?;
        let length = timeframe.length();
        let clamp = |v: i128| Wh::new(v.clamp(0, i128::from(i64::MAX)) as i64);
        let room = Wh::new(self.capacity.get() - soc_start.get());
        let charged = clamp(net_surplus)
            .min(self.charge_limit(length))
            .min(self.max_charge_for_room(room));
        let discharged = clamp(-net_surplus)
            .min(self.discharge_limit(length))
            .min(soc_start);
        self.replay(timeframe, soc_start, charged, discharged)
    }

    /// A timeframe in which the battery `charged` and `discharged` (its
    /// stored reading), from `soc_start`: an error
    /// ([`Error::BatteryHistory`]) if a limit is exceeded or the state of
    /// charge would leave `[0, capacity]`.
    pub fn replay(
        &self,
        timeframe: Timeframe,
        soc_start: Wh,
        charged: Wh,
        discharged: Wh,
    ) -> Result<BatteryStep> {
        self.check_soc(timeframe, soc_start)?;
        let length = timeframe.length();
        let history = |reason: String| Error::BatteryHistory {
            id: self.id.to_string(),
            start: timeframe.start(),
            reason,
        };
        if charged.get() < 0 || charged > self.charge_limit(length) {
            return Err(history(format!(
                "charged {charged} outside [0, charge limit {}]",
                self.charge_limit(length)
            )));
        }
        if discharged.get() < 0 || discharged > self.discharge_limit(length) {
            return Err(history(format!(
                "discharged {discharged} outside [0, discharge limit {}]",
                self.discharge_limit(length)
            )));
        }
        let stored = self.stored(charged);
        let soc_end =
            i128::from(soc_start.get()) + i128::from(stored.get()) - i128::from(discharged.get());
        if soc_end < 0 || soc_end > i128::from(self.capacity.get()) {
            return Err(history(format!(
                "state of charge {soc_start} + stored {stored} − discharged {discharged} \
                 leaves [0, capacity {}]",
                self.capacity
            )));
        }
        Ok(BatteryStep {
            timeframe,
            soc_start,
            charged,
            stored,
            loss: Wh::new(charged.get() - stored.get()),
            discharged,
            soc_end: Wh::new(soc_end as i64),
        })
    }

    fn check_soc(&self, timeframe: Timeframe, soc: Wh) -> Result<()> {
        if soc.get() < 0 || soc > self.capacity {
            return Err(Error::BatteryHistory {
                id: self.id.to_string(),
                start: timeframe.start(),
                reason: format!(
                    "state of charge {soc} outside [0, capacity {}]",
                    self.capacity
                ),
            });
        }
        Ok(())
    }

    /// The dispatch rule over consecutive timeframes, each with the
    /// community's net surplus before the battery, from `soc_start`.
    pub fn dispatch(
        &self,
        soc_start: Wh,
        nets: impl IntoIterator<Item = (Timeframe, i128)>,
    ) -> Result<Vec<BatteryStep>> {
        let mut soc = soc_start;
        nets.into_iter()
            .map(|(tf, net)| {
                let step = self.step(tf, soc, net)?;
                soc = step.soc_end;
                Ok(step)
            })
            .collect()
    }
}

fn per_timeframe(watts: i64, length: TimeframeLength) -> Wh {
    let wh = i128::from(watts) * i128::from(length.minutes()) / 60;
    Wh::new(wh.min(i128::from(i64::MAX)) as i64)
}

/// The battery in one timeframe: its state of charge at the start and the
/// end, and what it charged (from the community's surplus), stored, lost
/// and discharged (into the community's deficit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatteryStep {
    /// The timeframe.
    pub timeframe: Timeframe,
    /// State of charge at the start.
    pub soc_start: Wh,
    /// Taken from the community (the battery's `consumed`).
    pub charged: Wh,
    /// Added to the state of charge: `⌊charged · η⌋`.
    pub stored: Wh,
    /// `charged − stored`.
    pub loss: Wh,
    /// Given to the community (the battery's `produced`).
    pub discharged: Wh,
    /// State of charge at the end: `soc_start + stored − discharged`.
    pub soc_end: Wh,
}

impl BatteryStep {
    /// The battery's reading of the timeframe: `produced` = discharged,
    /// `consumed` = charged.
    pub fn reading(&self, battery: &ProsumerId) -> Result<Reading> {
        Reading::new(
            battery.clone(),
            self.timeframe,
            self.discharged,
            self.charged,
        )
    }
}

/// The battery's totals over consecutive steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatteryTotals {
    /// State of charge at the start of the first step.
    pub soc_start: Wh,
    /// State of charge at the end of the last step.
    pub soc_end: Wh,
    /// Σ charged.
    pub charged: Wh,
    /// Σ stored.
    pub stored: Wh,
    /// Σ loss.
    pub loss: Wh,
    /// Σ discharged.
    pub discharged: Wh,
}

impl BatteryTotals {
    /// Adds up `steps` (consecutive, in time order); zero for none.
    pub fn of(steps: &[BatteryStep]) -> BatteryTotals {
        let sum = |f: fn(&BatteryStep) -> Wh| steps.iter().map(f).sum();
        BatteryTotals {
            soc_start: steps.first().map_or(Wh::ZERO, |s| s.soc_start),
            soc_end: steps.last().map_or(Wh::ZERO, |s| s.soc_end),
            charged: sum(|s| s.charged),
            stored: sum(|s| s.stored),
            loss: sum(|s| s.loss),
            discharged: sum(|s| s.discharged),
        }
    }
}

/// The community's net surplus before the battery in one row of readings:
/// `Σ produced − Σ consumed` of every slot with a reading except
/// `battery`'s.
pub fn net_surplus_of_row(row: &ReadingRow, battery: Option<usize>) -> i128 {
    row.produced()
        .iter()
        .zip(row.consumed())
        .enumerate()
        .filter(|(i, _)| Some(*i) != battery)
        .map(|(_, (p, c))| i128::from(p.get()) - i128::from(c.get()))
        .sum()
}

/// The columnar path: dispatches the battery over `rows` (consecutive
/// timeframes, in time order) from `soc_start` and writes its readings into
/// the rows at index `battery`, for [`crate::clear_reading_rows`]. Rows
/// where `active` is false get no battery reading (the battery is idle).
pub fn dispatch_rows(
    spec: &BatterySpec,
    rows: &mut [(Timeframe, ReadingRow)],
    battery: usize,
    soc_start: Wh,
    active: impl Fn(&Timeframe) -> bool,
) -> Result<Vec<BatteryStep>> {
    let mut soc = soc_start;
    let mut steps = Vec::with_capacity(rows.len());
    for (tf, row) in rows.iter_mut() {
        if !active(tf) {
            continue;
        }
        let step = spec.step(*tf, soc, net_surplus_of_row(row, Some(battery)))?;
        row.set(battery, step.discharged, step.charged);
        soc = step.soc_end;
        steps.push(step);
    }
    Ok(steps)
}

/// The row path: dispatches the battery over every timeframe of `range`
/// from `soc_start`, with the community's net surplus from `readings`
/// (none of them the battery's), and the battery's readings added to them.
pub fn battery_readings(
    spec: &BatterySpec,
    range: &TimeRange,
    readings: &[Reading],
    soc_start: Wh,
) -> Result<(Vec<Reading>, Vec<BatteryStep>)> {
    let mut nets: BTreeMap<Timeframe, i128> = BTreeMap::new();
    for r in readings {
        if r.prosumer() == spec.id() {
            return Err(Error::BatteryHistory {
                id: spec.id().to_string(),
                start: r.timeframe().start(),
                reason: "the battery's readings are computed by its dispatch rule, not given"
                    .into(),
            });
        }
        *nets.entry(r.timeframe()).or_default() +=
            i128::from(r.produced().get()) - i128::from(r.consumed().get());
    }
    let steps = spec.dispatch(
        soc_start,
        range
            .timeframes()
            .map(|tf| (tf, nets.get(&tf).copied().unwrap_or(0))),
    )?;
    let mut all = readings.to_vec();
    for step in &steps {
        all.push(step.reading(spec.id())?);
    }
    Ok((all, steps))
}

/// Clears every timeframe of `range` with the battery taking part: its
/// readings computed by the dispatch rule from `soc_start` (see
/// [`battery_readings`]), then [`clear_range`]. Returns the clearings and
/// the battery's steps.
pub fn clear_range_with_battery(
    range: &TimeRange,
    readings: &[Reading],
    tariff: &dyn GridTariff,
    mechanism: &dyn PricingMechanism,
    spec: &BatterySpec,
    soc_start: Wh,
) -> Result<(Vec<TimeframeClearing>, Vec<BatteryStep>)> {
    let (all, steps) = battery_readings(spec, range, readings, soc_start)?;
    Ok((clear_range(range, &all, tariff, mechanism)?, steps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn tf() -> Timeframe {
        Timeframe::new(
            Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
            TimeframeLength::default(),
        )
        .unwrap()
    }

    fn spec(eta: &str) -> BatterySpec {
        BatterySpec::new("bat", 10_000, 4_000, 4_000, eta.parse().unwrap(), 0).unwrap()
    }

    #[test]
    fn each_refused_input_is_named() {
        let e = |r: Result<BatterySpec>| match r {
            Err(Error::InvalidBattery { input, .. }) => input,
            other => panic!("{other:?}"),
        };
        let eta = Decimal::new(9, 1);
        assert_eq!(e(BatterySpec::new("b", 0, 1, 1, eta, 0)), "capacity_wh");
        assert_eq!(e(BatterySpec::new("b", 10, -1, 1, eta, 0)), "max_charge_w");
        assert_eq!(
            e(BatterySpec::new("b", 10, 1, -1, eta, 0)),
            "max_discharge_w"
        );
        for bad in [
            Decimal::ZERO,
            Decimal::new(11, 1),
            Decimal::new(-1, 0),
            Decimal::new(1, 7),
        ] {
            assert_eq!(
                e(BatterySpec::new("b", 10, 1, 1, bad, 0)),
                "round_trip_efficiency"
            );
        }
        assert_eq!(
            e(BatterySpec::new("b", 10, 1, 1, eta, 11)),
            "initial_soc_wh"
        );
        assert_eq!(
            e(BatterySpec::new("b", 10, 1, 1, eta, -1)),
            "initial_soc_wh"
        );
        let b = BatterySpec::new("b", 10, 1, 1, Decimal::new(1_000_000, 6), 10).unwrap();
        assert_eq!(b.round_trip_efficiency(), Decimal::ONE);
        assert_eq!(
            e(b.with_owner(BatteryOwner::Member("b".parse().unwrap()))),
            "owner"
        );
    }

    #[test]
    fn losses_are_taken_at_charge_rounded_down() {
        let b = spec("0.9");
        assert_eq!(b.stored(Wh::new(1_001)), Wh::new(900));
        for room in 0..200 {
            let c = b.max_charge_for_room(Wh::new(room));
            assert!(b.stored(c).get() <= room);
            assert!(b.stored(Wh::new(c.get() + 1)).get() > room);
        }
        // 4 kW over 15 minutes is 1,000 Wh.
        assert_eq!(b.charge_limit(TimeframeLength::default()), Wh::new(1_000));
        let s = b.step(tf(), Wh::new(9_500), 5_000).unwrap();
        assert_eq!(
            (s.charged, s.stored, s.loss, s.soc_end),
            (Wh::new(556), Wh::new(500), Wh::new(56), Wh::new(10_000))
        );
        let s = b.step(tf(), Wh::new(300), -5_000).unwrap();
        assert_eq!((s.discharged, s.soc_end), (Wh::new(300), Wh::ZERO));
    }

    #[test]
    fn a_history_that_does_not_fit_is_refused() {
        let b = spec("1");
        assert!(matches!(
            b.replay(tf(), Wh::new(100), Wh::ZERO, Wh::new(101)),
            Err(Error::BatteryHistory { .. })
        ));
        assert!(matches!(
            b.replay(tf(), Wh::new(100), Wh::new(1_001), Wh::ZERO),
            Err(Error::BatteryHistory { .. })
        ));
        assert!(matches!(
            b.step(tf(), Wh::new(10_001), 0),
            Err(Error::BatteryHistory { .. })
        ));
    }
}
