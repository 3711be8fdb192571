//! Community metrics over a range of cleared timeframes.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clearing::TimeframeSummary;
use crate::energy::Wh;
use crate::error::Result;

/// How well a community supplies itself over a range of timeframes.
///
/// `production`, `consumption`, `shared`, `import` and `export` add up
/// every meter of the community, a community battery's among them (its
/// discharge is production, its charge consumption). The battery's own
/// totals are kept apart in `battery_charged` and `battery_discharged`
/// (zero without a battery, and in metrics stored before they existed),
/// so that the members' figures exclude it:
///
/// - members' consumption = `consumption − battery_charged`,
/// - members' production = `production − battery_discharged`,
///
/// and the energy balance reads: members' production + import +
/// discharged = members' consumption + export + charged. The ratios
/// ([`self_sufficiency`](CommunityMetrics::self_sufficiency),
/// [`self_consumption`](CommunityMetrics::self_consumption)) are the
/// members': without a battery they are the plain ratios of all meters.
///
/// ```
/// use microgrid_core::CommunityMetrics;
/// let m = CommunityMetrics::from_summaries(&[])?;
/// assert_eq!(m.self_sufficiency(), None); // no consumption, no ratio
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityMetrics {
    /// Σ produced by every meter, a battery's discharge included.
    pub production: Wh,
    /// Σ consumed by every meter, a battery's charge included.
    pub consumption: Wh,
    /// Σ shared inside the community.
    pub shared: Wh,
    /// Σ drawn from the grid.
    pub import: Wh,
    /// Σ fed into the grid.
    pub export: Wh,
    /// Σ charged by the community's battery members
    /// ([`ProsumerKind::Battery`](crate::ProsumerKind::Battery)), part of
    /// `consumption`; zero when absent from serialized metrics.
    #[serde(default)]
    pub battery_charged: Wh,
    /// Σ discharged by the community's battery members, part of
    /// `production`; zero when absent from serialized metrics.
    #[serde(default)]
    pub battery_discharged: Wh,
}

impl CommunityMetrics {
    /// Adds up the summaries; the battery totals are zero (set them with
    /// [`with_battery`](CommunityMetrics::with_battery)).
    pub fn from_summaries<'a>(
        summaries: impl IntoIterator<Item = &'a TimeframeSummary>,
    ) -> Result<CommunityMetrics> {
        summaries
            .into_iter()
            .try_fold(CommunityMetrics::default(), |m, s| {
                Ok(CommunityMetrics {
                    production: m.production.checked_add(s.production)?,
                    consumption: m.consumption.checked_add(s.consumption)?,
                    shared: m.shared.checked_add(s.shared)?,
                    import: m.import.checked_add(s.import)?,
                    export: m.export.checked_add(s.export)?,
                    battery_charged: m.battery_charged,
                    battery_discharged: m.battery_discharged,
                })
            })
    }

    /// The metrics with the battery members' totals over the same range:
    /// `charged` (part of `consumption`) and `discharged` (part of
    /// `production`).
    ///
    /// ```
    /// use microgrid_core::{CommunityMetrics, Wh};
    /// let mut m = CommunityMetrics::default();
    /// m.consumption = Wh::new(1_000); // 200 of it charged the battery
    /// m.import = Wh::new(200);
    /// let m = m.with_battery(Wh::new(200), Wh::ZERO);
    /// assert_eq!(m.members_consumption(), Wh::new(800));
    /// assert_eq!(m.self_sufficiency(), Some("0.75".parse().unwrap())); // (800 − 200) / 800
    /// ```
    pub fn with_battery(self, charged: Wh, discharged: Wh) -> CommunityMetrics {
        CommunityMetrics {
            battery_charged: charged,
            battery_discharged: discharged,
            ..self
        }
    }

    /// The members' consumption, the battery's charge left out:
    /// `consumption − battery_charged`.
    pub fn members_consumption(&self) -> Wh {
        Wh::new(
            self.consumption
                .get()
                .saturating_sub(self.battery_charged.get()),
        )
    }

    /// The members' production, the battery's discharge left out:
    /// `production − battery_discharged`.
    pub fn members_production(&self) -> Wh {
        Wh::new(
            self.production
                .get()
                .saturating_sub(self.battery_discharged.get()),
        )
    }

    /// Self-sufficiency: the share of the members' consumption not drawn
    /// from the grid, `(members' consumption − import) / members'
    /// consumption` with members' consumption = `consumption −
    /// battery_charged` (without a battery: `(consumption − import) /
    /// consumption`); `None` without consumption.
    pub fn self_sufficiency(&self) -> Option<Decimal> {
        let consumed = self.members_consumption().get();
        ratio(consumed.saturating_sub(self.import.get()), consumed)
    }

    /// Self-consumption: the share of the members' production used inside
    /// the community, the battery included, `(members' production −
    /// export) / members' production` with members' production =
    /// `production − battery_discharged` (without a battery: `(production
    /// − export) / production`); `None` without production.
    pub fn self_consumption(&self) -> Option<Decimal> {
        let produced = self.members_production().get();
        ratio(produced.saturating_sub(self.export.get()), produced)
    }
}

fn ratio(part: i64, whole: i64) -> Option<Decimal> {
    (whole != 0).then(|| Decimal::from(part) / Decimal::from(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_their_definitions() {
        let m = CommunityMetrics {
            production: Wh::new(1000),
            consumption: Wh::new(800),
            shared: Wh::new(500),
            import: Wh::new(200),
            export: Wh::new(400),
            ..CommunityMetrics::default()
        };
        assert_eq!(m.self_sufficiency(), Some(Decimal::new(75, 2)));
        assert_eq!(m.self_consumption(), Some(Decimal::new(6, 1)));
    }

    #[test]
    fn the_ratios_leave_the_battery_out() {
        // Members produce 1000 and consume 800; the battery charges 300
        // from the surplus and discharges 100 into the deficit.
        // Balance: 1000 + import + 100 = 800 + export + 300.
        let m = CommunityMetrics {
            production: Wh::new(1100),
            consumption: Wh::new(1100),
            shared: Wh::new(600),
            import: Wh::new(100),
            export: Wh::new(100),
            ..CommunityMetrics::default()
        }
        .with_battery(Wh::new(300), Wh::new(100));
        assert_eq!(m.members_consumption(), Wh::new(800));
        assert_eq!(m.members_production(), Wh::new(1000));
        assert_eq!(
            m.members_production().get() + m.import.get() + m.battery_discharged.get(),
            m.members_consumption().get() + m.export.get() + m.battery_charged.get()
        );
        // (800 − 100) / 800 and (1000 − 100) / 1000.
        assert_eq!(m.self_sufficiency(), Some(Decimal::new(875, 3)));
        assert_eq!(m.self_consumption(), Some(Decimal::new(9, 1)));
        // Counting the battery as a member would give (1100 − 100) / 1100.
        assert_ne!(
            m.self_sufficiency(),
            Some(Decimal::from(1000) / Decimal::from(1100))
        );
    }

    #[test]
    fn metrics_without_battery_fields_still_read() {
        let old = r#"{"production":1000,"consumption":800,"shared":500,"import":200,"export":400}"#;
        let m: CommunityMetrics = serde_json::from_str(old).unwrap();
        assert_eq!(
            (m.battery_charged, m.battery_discharged),
            (Wh::ZERO, Wh::ZERO)
        );
        assert_eq!(m.self_sufficiency(), Some(Decimal::new(75, 2)));
        let back: CommunityMetrics =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
