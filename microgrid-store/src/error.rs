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
    /// Built with [`StoreError::bad_url`], it keeps no secret of the URL:
    /// `url` is redacted ([`redact_url`]), and so is `reason`.
    #[error("cannot open store {:?}: {reason}", redact_url(.url))]
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
    /// A month of a partitioned store cannot be detached for archiving
    /// (PostgreSQL: it is not wholly covered by paid settlements, or it was
    /// detached already).
    #[error("month {month} cannot be detached: {reason}")]
    MonthNotDetachable {
        /// The month, as `YYYY-MM` (UTC).
        month: String,
        /// Why not.
        reason: String,
    },
    /// A write falls in a month that was detached for archiving: its
    /// readings and clearing results are no longer in the store, and none
    /// are written there again.
    #[error("month {month} is archived: no readings or clearings are written in it")]
    MonthArchived {
        /// The month, as `YYYY-MM` (UTC).
        month: String,
    },
    /// A settlement gives out an address of the operator's descriptor
    /// wallet that another stored settlement (standing or voided) gave
    /// out already: an address is never reused. Nothing was stored.
    /// [`crate::Grid`] settling with a wallet reads the next indices again
    /// and retries (another process settled with the same wallet
    /// meanwhile).
    #[error(
        "settlement {settlement} gives {keychain} index {index}{} of wallet {wallet}, \
         which settlement {holder} gave already",
        .address.as_ref().map(|a| format!(" (address {a})")).unwrap_or_default()
    )]
    WalletAddressTaken {
        /// The settlement refused.
        settlement: String,
        /// The wallet's id ([`microgrid_core::settlement::OperatorWallet::id`]).
        wallet: String,
        /// `"receive"` (an invoice's address) or `"change"` (a batch's
        /// change).
        keychain: &'static str,
        /// The index on that chain (the lowest one taken).
        index: u32,
        /// The address at that index, when the refused settlement records
        /// it (every invoice address; the change address of its first
        /// batch).
        address: Option<String>,
        /// The stored settlement that gave it out.
        holder: String,
    },
}

impl StoreError {
    /// A [`StoreError::Url`] that keeps no secret of `url`: the URL is kept
    /// redacted ([`redact_url`]), and every secret of it (the password, a
    /// `password=` parameter) that `reason` repeats is replaced by `***`.
    ///
    /// ```
    /// use microgrid_store::StoreError;
    /// let e = StoreError::bad_url("postgres://ann:hunter2@db/x", "bad port in postgres://ann:hunter2@db/x");
    /// assert!(!format!("{e} {e:?}").contains("hunter2"));
    /// ```
    pub fn bad_url(url: &str, reason: impl Into<String>) -> StoreError {
        let mut reason = reason.into();
        for secret in url_secrets(url) {
            reason = reason.replace(&secret, "***");
        }
        StoreError::Url {
            url: redact_url(url),
            reason,
        }
    }

    /// A stable, machine-readable name of the error in snake case: the
    /// domain's [`microgrid_core::Error::kind`] for a refused input, else
    /// `"database"`, `"corrupt"`, `"url"`, `"not_found"`,
    /// `"month_not_detachable"`, `"month_archived"` or
    /// `"wallet_address_taken"`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Domain(e) => e.kind(),
            StoreError::Database { .. } => "database",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Url { .. } => "url",
            StoreError::NotFound { .. } => "not_found",
            StoreError::MonthNotDetachable { .. } => "month_not_detachable",
            StoreError::MonthArchived { .. } => "month_archived",
            StoreError::WalletAddressTaken { .. } => "wallet_address_taken",
        }
    }
}

/// `url` with its secrets replaced by `***`: the password of the user
/// info (`scheme://user:***@host`) and the values of query parameters
/// named like a secret (`password`, `pass`, `pwd`, `secret`, `token`,
/// `key`). For messages and logs; never print a store URL without it.
///
/// ```
/// use microgrid_store::error::redact_url;
/// assert_eq!(redact_url("postgres://ann:hunter2@db/x?sslmode=require&password=hunter2"),
///            "postgres://ann:***@db/x?sslmode=require&password=***");
/// assert_eq!(redact_url("sqlite:books.db"), "sqlite:books.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => match user_info.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{user_info}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret(k) => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// The secrets [`redact_url`] removes from `url`, as they appear in it.
fn url_secrets(url: &str) -> Vec<String> {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    let mut secrets = Vec::new();
    if let Some((_, rest)) = head.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some((user_info, _)) = authority.rsplit_once('@') {
            if let Some((_, password)) = user_info.split_once(':') {
                secrets.push(password.to_owned());
            }
        }
    }
    for kv in query.split('&') {
        if let Some((k, v)) = kv.split_once('=') {
            if is_secret(k) {
                secrets.push(v.to_owned());
            }
        }
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|s| key.contains(s))
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
