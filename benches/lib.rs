//! Nothing here: this package exists for its `[[bench]]` targets (see
//! `Cargo.toml`), which keep criterion and the mongodb driver out of the
//! `microgrid` facade's dev-dependencies.
//!
//! ```sh
//! cargo bench -p microgrid-benches --bench month
//! ```
