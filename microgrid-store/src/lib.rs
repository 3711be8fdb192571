//! Storage for `microgrid`: traits per concern ([`RegistryStore`],
//! [`ReadingStore`], [`LedgerStore`]), the in-memory default
//! ([`MemoryStore`]), SQLite (feature `sqlite`), and [`Grid`], the pipeline
//! that runs on any of them.
//!
//! # Example
//!
//! ```
//! use chrono::NaiveDate;
//! use microgrid_core::{simulate::Community, tariff::Tariff, GridPrices, Mechanism};
//! use microgrid_store::{Grid, MemoryStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let community = Community::new(5, NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), 1, 1);
//! let grid = Grid::new(MemoryStore::new(), Default::default());
//! for p in community.registry()?.iter() {
//!     grid.register(p.clone()).await?;
//! }
//! let report = grid.record(community.readings()?).await?;
//! assert_eq!(report.inserted, 5 * 96);
//! assert_eq!(grid.record(community.readings()?).await?.unchanged, 5 * 96); // idempotent
//!
//! let tariff = Tariff::new("EUR".parse()?, GridPrices::new("0.30".parse()?, "0.08".parse()?)?);
//! let day = community.range()?;
//! grid.clear(&day, &tariff, &Mechanism::SupplyDemandRatio).await?;
//! assert_eq!(grid.summaries(&day).await?.len(), 96);
//! let bills = grid.bill(&day, &tariff).await?;
//! assert_eq!(bills.total(), bills.grid_leg + bills.fees + bills.operator_margin);
//! # Ok::<(), microgrid_store::StoreError>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

pub mod any;
pub mod error;
pub mod grid;
pub mod memory;
#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mongodb"))]
mod rows;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod traits;

pub use any::{AnyStore, RoutedStore};
pub use error::{Result, StoreError};
pub use grid::{ClearReport, ClearedRows, Clock, Grid, IngestReport};
pub use memory::MemoryStore;
#[cfg(feature = "mongodb")]
pub use mongo::MongoStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use traits::{ClearCounts, ClearFn, LedgerStore, ReadingStore, RegistryStore, Store};
