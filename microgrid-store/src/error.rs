//! The one error type of `microgrid-store`.

/// What can go wrong when storing or loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The domain refused an input (a bad reading, a conflict, ...); nothing
    /// was stored.
    #[error(transparent)]
    Domain(#[from] microgrid_core::Error),
    /// The database failed; `operation` says what the store was doing and
    /// `message` is the database's own message.
    #[error("{operation} failed: {message}")]
    Database {
        /// What the store was doing.
        operation: &'static str,
        /// The database's message.
        message: String,
    },
    /// A stored value does not read back as a valid domain value.
    #[error("stored {what} is not valid: {value:?}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What was found.
        value: String,
    },
    /// A store URL has an unknown scheme or names a feature not compiled in.
    #[error("cannot open store {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why not.
        reason: String,
    },
    /// Something looked up by key does not exist.
    #[error("{what} {key} not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its key.
        key: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
