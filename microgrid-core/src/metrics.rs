//! Community metrics over a range of cleared timeframes.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clearing::TimeframeSummary;
use crate::energy::Wh;
use crate::error::Result;

/// How well a community supplies itself over a range of timeframes.
///
/// ```
/// use microgrid_core::CommunityMetrics;
/// let m = CommunityMetrics::from_summaries(&[])?;
/// assert_eq!(m.self_sufficiency(), None); // no consumption, no ratio
/// # Ok::<(), microgrid_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityMetrics {
    /// Σ produced.
    pub production: Wh,
    /// Σ consumed.
    pub consumption: Wh,
    /// Σ shared inside the community.
    pub shared: Wh,
    /// Σ drawn from the grid.
    pub import: Wh,
    /// Σ fed into the grid.
    pub export: Wh,
}

impl CommunityMetrics {
    /// Adds up the summaries.
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
                })
            })
    }

    /// Self-sufficiency: the share of consumption not drawn from the grid,
    /// `(consumption − import) / consumption`; `None` without consumption.
    pub fn self_sufficiency(&self) -> Option<Decimal> {
        ratio(
            self.consumption.get() - self.import.get(),
            self.consumption.get(),
        )
    }

    /// Self-consumption: the share of production used inside the
    /// community, `(production − export) / production`; `None` without
    /// production.
    pub fn self_consumption(&self) -> Option<Decimal> {
        ratio(
            self.production.get() - self.export.get(),
            self.production.get(),
        )
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
        };
        assert_eq!(m.self_sufficiency(), Some(Decimal::new(75, 2)));
        assert_eq!(m.self_consumption(), Some(Decimal::new(6, 1)));
    }
}
