//! What every database adapter shares: error helpers and the translation
//! of rows (or documents) to the core's types, written once.

use chrono::{DateTime, NaiveDate, Utc};
use microgrid_core::lightning::PayoutOffer;
use microgrid_core::{
    CommunityPrice, GridPrices, Network, PayoutAddress, Price, Prosumer, ProsumerKind, Registry,
    Timeframe, TimeframeLength, TimeframeSummary, Wh,
};

use crate::error::{Result, StoreError};

/// Wraps a database error with the operation that failed.
pub(crate) fn db<E: std::fmt::Display>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Database {
        operation,
        message: e.to_string(),
    }
}

/// A stored value that does not read back as a domain value.
pub(crate) fn corrupt(what: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        value: value.to_string(),
    }
}

/// A stored timeframe length.
pub(crate) fn length(minutes: i64) -> Result<TimeframeLength> {
    u32::try_from(minutes)
        .ok()
        .and_then(|m| TimeframeLength::new(m).ok())
        .ok_or_else(|| corrupt("timeframe length", minutes))
}

/// A stored date (`YYYY-MM-DD`); PostgreSQL has a DATE type instead.
#[cfg_attr(not(any(feature = "sqlite", feature = "mongodb")), allow(dead_code))]
pub(crate) fn date(text: &str) -> Result<NaiveDate> {
    text.parse().map_err(|_| corrupt("date", text))
}

/// A prosumer as the databases store it.
pub(crate) struct ProsumerRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub joined: NaiveDate,
    pub left: Option<NaiveDate>,
    pub address: Option<String>,
    pub network: Option<String>,
    /// A BOLT12 offer (`lno1…`), checked again as it is read (its chain
    /// and expiry are checked when a payout is due, not here: an offer
    /// that has expired since stays on the record).
    pub offer: Option<String>,
}

/// The registry from its rows, every record checked again.
pub(crate) fn registry(rows: impl IntoIterator<Item = ProsumerRow>) -> Result<Registry> {
    let mut registry = Registry::default();
    for r in rows {
        let mut p = Prosumer::new(r.id, r.name, r.kind.parse::<ProsumerKind>()?, r.joined)?;
        if let Some(left) = r.left {
            p = p.with_left(left)?;
        }
        if let (Some(a), Some(n)) = (r.address, r.network) {
            p = p.with_payout(PayoutAddress::new(&a, n.parse::<Network>()?)?);
        }
        if let Some(offer) = r.offer {
            p = p.with_offer(offer.parse::<PayoutOffer>()?);
        }
        registry.register(p)?;
    }
    Ok(registry)
}

/// A timeframe summary as the databases store it (prices already read
/// back as exact decimals).
pub(crate) struct SummaryRow {
    pub start: DateTime<Utc>,
    pub length_minutes: i64,
    /// production, consumption, supply, demand, shared, import, export
    pub energies: [i64; 7],
    pub sellers: i64,
    pub buyers: i64,
    pub grid_import: Price,
    pub grid_export: Price,
    pub community_price: Option<Price>,
    /// The currency code it was cleared in, if known.
    pub currency: Option<String>,
}

impl SummaryRow {
    /// Back to the core's summary, checked.
    pub(crate) fn into_summary(self) -> Result<TimeframeSummary> {
        let count = |v: i64| u32::try_from(v).map_err(|_| corrupt("count", v));
        let [production, consumption, supply, demand, shared, import, export] =
            self.energies.map(Wh::new);
        Ok(TimeframeSummary {
            timeframe: Timeframe::new(self.start, length(self.length_minutes)?)?,
            production,
            consumption,
            supply,
            demand,
            shared,
            import,
            export,
            sellers: count(self.sellers)?,
            buyers: count(self.buyers)?,
            grid: GridPrices::new(self.grid_import, self.grid_export)?,
            community_price: self
                .community_price
                .map_or(CommunityPrice::PerPeriod, CommunityPrice::Known),
            currency: self
                .currency
                .map(|c| c.parse().map_err(|_| corrupt("currency", c)))
                .transpose()?,
        })
    }
}
