//! The pure domain of a community microgrid: registry, readings, clearing,
//! pricing mechanisms, bilateral trades and community metrics. No I/O, no
//! async, no database: storage lives in `microgrid-store`.
//!
//! Units are types: energy is [`Wh`] (whole watt-hours), prices are
//! [`Price`] per kWh and money is exact [`rust_decimal::Decimal`], time is
//! `chrono` UTC on a grid of [`Timeframe`]s. Anything read from outside is
//! validated once, where it enters.
//!
//! # Example: clear one timeframe
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use microgrid_core::*;
//!
//! let joined = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
//! let mut registry = Registry::default();
//! for (id, kind) in [("bakery", ProsumerKind::Company), ("house-1", ProsumerKind::Household), ("house-2", ProsumerKind::Household)] {
//!     registry.register(Prosumer::new(id, id, kind, joined)?)?;
//! }
//!
//! let noon = Timeframe::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), TimeframeLength::default())?;
//! let batch = vec![
//!     Reading::new("house-1".parse()?, noon, Wh::new(2_000), Wh::new(300))?,
//!     Reading::new("house-2".parse()?, noon, Wh::new(1_200), Wh::new(400))?,
//!     Reading::new("bakery".parse()?, noon, Wh::new(0), Wh::new(3_000))?,
//! ];
//! let readings = validate_batch(&registry, TimeframeLength::default(), ReadingLimits::default(), batch)?;
//!
//! let grid = GridPrices::new("0.30".parse()?, "0.08".parse()?)?;
//! let cleared = clear_timeframe(noon, &readings, grid, &Mechanism::SupplyDemandRatio)?;
//! let s = &cleared.summary;
//! assert_eq!(s.shared, Wh::new(2_500));   // all of the houses' surplus
//! assert_eq!(s.import, Wh::new(500));     // the rest of the bakery's need
//! // Budget balance: members pay the community's grid bill, exactly.
//! let paid: rust_decimal::Decimal = cleared.allocations.iter().filter_map(|a| a.amount()).sum();
//! assert_eq!(paid, s.grid_amount());
//! for t in cleared.trades() {
//!     println!("{} → {}: {}", t.seller, t.buyer, t.energy);
//! }
//! # Ok::<(), microgrid_core::Error>(())
//! ```

#![warn(missing_docs)]

pub mod address;
pub mod batch;
pub mod battery;
pub mod billing;
pub mod clearing;
pub mod energy;
pub mod error;
pub mod lightning;
pub mod matrix;
pub mod metrics;
pub mod money;
pub mod pricing;
pub mod reading;
pub mod registry;
pub mod settlement;
pub mod simulate;
pub mod tariff;
pub mod timeframe;
pub mod trades;
pub mod views;

pub use address::{Network, OutputType, PayoutAddress};
pub use batch::{ReadingColumns, ReadingRow, ValidReadings};
pub use battery::{BatteryOwner, BatterySpec, BatteryStep, BatteryTotals};
pub use clearing::{
    clear_columns, clear_columns_in_order, clear_range, clear_timeframe, Allocation, EnergyTotals,
    GridTariff, TimeframeClearing, TimeframeSummary,
};
pub use energy::Wh;
pub use error::{Error, Result};
pub use matrix::{
    available_threads, clear_matrix, clear_matrix_into, clear_matrix_parallel, clear_reading_rows,
    ClearedMatrix, ClearedRow, ReadingMatrix,
};
pub use metrics::CommunityMetrics;
pub use money::{Currency, Price};
pub use pricing::{CommunityPrice, GridPrices, Mechanism, PricingMechanism};
pub use reading::{plan_ingest, validate_batch, IngestPlan, Reading, ReadingLimits};
pub use registry::{Prosumer, ProsumerId, ProsumerIndex, ProsumerKind, Registry};
pub use timeframe::{TimeRange, Timeframe, TimeframeLength};
pub use trades::{derive_trades, match_north_west, Trade};
