#![doc = include_str!("../README.md")]
//!
//! # This crate
//!
//! `microgrid` is a facade: it re-exports [`microgrid_core`] as [`core`]
//! (and its items at the top level) and [`microgrid_store`] as [`store`],
//! with the store's database features (`sqlite`, `postgres`, `mongodb`)
//! passed through, and, with the `server` feature, the HTTP service
//! `microgrid_server` as `server`.

pub use microgrid_core as core;
pub use microgrid_core::*;
/// The HTTP service (feature `server`): see [`microgrid_server`].
#[cfg(feature = "server")]
pub use microgrid_server as server;
pub use microgrid_store as store;
