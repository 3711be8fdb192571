//! `microgrid`: the books of a community microgrid, from meter readings to a
//! bitcoin payout batch.
//!
//! This facade re-exports [`microgrid_core`] as [`core`] (and its items at the
//! top level) and [`microgrid_store`] as [`store`].
pub use microgrid_core as core;
pub use microgrid_core::*;
pub use microgrid_store as store;
