//! The one error type of `microgrid-server`, and how it becomes an RFC 9457
//! `application/problem+json` response.
//!
//! Every response of an error has the body
//!
//! ```json
//! {"type": "urn:microgrid:problem:late_reading", "title": "Conflict", "status": 409,
//!  "detail": "reading of prosumer house-0001 for 2026-10-01 00:00:00 UTC is late: ...",
//!  "kind": "late_reading", "details": {"id": "house-0001", "start": "2026-10-01T00:00:00Z", "row": 3}}
//! ```
//!
//! `kind` is the library's stable error kind ([`microgrid_core::Error::kind`],
//! [`microgrid_store::StoreError::kind`]) for a refusal of the library, or one
//! of the server's own (`unauthorized`, `not_found`, `invalid_body`,
//! `invalid_query`, `bad_row`, `method_not_allowed`, `unsupported_media_type`, `too_large`,
//! `key_store`, `internal`). `details` holds the offending values by name
//! (`row` and `field` for a reading of a bulk body).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use microgrid_core::Error as CoreError;
use microgrid_store::StoreError;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// Everything that can go wrong in the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The library refused the request or failed (a bad reading, a
    /// conflicting settlement, a database error...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A reading of a posted batch was refused by the library; `row` is its
    /// position in the batch (from 0).
    #[error("reading at row {row}: {error}")]
    Reading {
        /// The reading's position in the batch, from 0.
        row: usize,
        /// What the library said.
        error: CoreError,
    },
    /// No key, or one that is not valid (unknown, revoked, malformed).
    #[error("{reason}")]
    Unauthorized {
        /// Why: which of the cases.
        reason: &'static str,
    },
    /// Something looked up does not exist, or the caller may not see it
    /// (the two look the same).
    #[error("{what} {key} not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its key, as the caller gave it.
        key: String,
    },
    /// A request body cannot be read (bad JSON, a missing field).
    #[error("invalid {what}: {reason}")]
    InvalidBody {
        /// Which body or field.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A query or path parameter cannot be read.
    #[error("invalid query parameter {parameter}: {reason}")]
    InvalidQuery {
        /// Which parameter (or `query` when the query as a whole is wrong).
        parameter: String,
        /// What is wrong.
        reason: String,
    },
    /// One row of a bulk body (CSV, Arrow, JSON) cannot be read.
    #[error("row {row}, field {field}: {reason}")]
    BadRow {
        /// The reading's position in the batch, from 0.
        row: usize,
        /// The line of a CSV body (the header is line 1), if it is one.
        line: Option<u64>,
        /// Which field (column).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The path exists, the method does not.
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// The body's content type is not one the endpoint takes.
    #[error("unsupported content type {content_type:?} (expected {expected})")]
    UnsupportedMediaType {
        /// What was sent.
        content_type: String,
        /// What is taken.
        expected: &'static str,
    },
    /// The body is larger than the server's limit.
    #[error("request body larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The key file cannot be read or written.
    #[error("key file {path}: {reason}")]
    KeyStore {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A bug or a failed task: nothing the caller can fix.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<CoreError> for ServerError {
    fn from(e: CoreError) -> ServerError {
        ServerError::Store(StoreError::Domain(e))
    }
}

/// Results of this crate.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// An RFC 9457 problem, the body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, `urn:microgrid:problem:<kind>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, naming the offending input.
    pub detail: String,
    /// The stable, snake-case kind of the error (the library's error kind
    /// for a refusal of the library).
    pub kind: String,
    /// The offending values by name; always has `message`.
    #[schema(value_type = Object)]
    pub details: Map<String, Value>,
}

impl ServerError {
    /// The stable, snake-case kind of the error: the library's kind for a
    /// refusal of the library, else the server's own.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerError::Store(e) => e.kind(),
            ServerError::Reading { error, .. } => error.kind(),
            ServerError::Unauthorized { .. } => "unauthorized",
            ServerError::NotFound { .. } => "not_found",
            ServerError::InvalidBody { .. } => "invalid_body",
            ServerError::InvalidQuery { .. } => "invalid_query",
            ServerError::BadRow { .. } => "bad_row",
            ServerError::MethodNotAllowed { .. } => "method_not_allowed",
            ServerError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ServerError::TooLarge { .. } => "too_large",
            ServerError::KeyStore { .. } => "key_store",
            ServerError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::Store(e) => store_status(e),
            ServerError::Reading { error, .. } => match core_status(error) {
                StatusCode::NOT_FOUND => StatusCode::UNPROCESSABLE_ENTITY,
                s => s,
            },
            ServerError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ServerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServerError::InvalidBody { .. } | ServerError::InvalidQuery { .. } => {
                StatusCode::BAD_REQUEST
            }
            ServerError::BadRow { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::KeyStore { .. } | ServerError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The problem this error is shown as. A database's own message is not
    /// shown (it is logged): the detail says which operation failed.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let kind = self.kind();
        let detail = match self {
            ServerError::Store(StoreError::Database { operation, .. }) => {
                format!("{operation} failed (the database's message is in the server's log)")
            }
            ServerError::KeyStore { .. } => "the key file cannot be read or written".to_owned(),
            other => other.to_string(),
        };
        let mut details = Map::new();
        details.insert("message".into(), Value::String(detail.clone()));
        match self {
            ServerError::Store(StoreError::Domain(e)) => core_details(e, &mut details),
            ServerError::Store(e) => store_details(e, &mut details),
            ServerError::Reading { row, error } => {
                core_details(error, &mut details);
                details.insert("row".into(), json!(row));
            }
            ServerError::NotFound { what, key } => {
                details.insert("what".into(), json!(what));
                details.insert("key".into(), json!(key));
            }
            ServerError::InvalidBody { what, reason } => {
                details.insert("what".into(), json!(what));
                details.insert("reason".into(), json!(reason));
            }
            ServerError::InvalidQuery { parameter, reason } => {
                details.insert("parameter".into(), json!(parameter));
                details.insert("reason".into(), json!(reason));
            }
            ServerError::BadRow {
                row,
                line,
                field,
                reason,
            } => {
                details.insert("row".into(), json!(row));
                if let Some(line) = line {
                    details.insert("line".into(), json!(line));
                }
                details.insert("field".into(), json!(field));
                details.insert("reason".into(), json!(reason));
            }
            ServerError::UnsupportedMediaType {
                content_type,
                expected,
            } => {
                details.insert("content_type".into(), json!(content_type));
                details.insert("expected".into(), json!(expected));
            }
            ServerError::TooLarge { limit } => {
                details.insert("limit".into(), json!(limit));
            }
            _ => {}
        }
        Problem {
            type_: format!("urn:microgrid:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            kind: kind.to_owned(),
            details,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(kind = self.kind(), "{self}");
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"microgrid\""),
            );
        }
        response
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::Domain(e) => core_status(e),
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::Url { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::MonthArchived { .. }
        | StoreError::MonthNotDetachable { .. }
        | StoreError::WalletAddressTaken { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of a refusal of the domain: conflicts with what is stored
/// (a conflicting or late reading, a duplicate id, a settled or paid
/// period, a period not cleared yet or not ended) are 409, an unknown
/// prosumer 404, every other refused input 422.
fn core_status(e: &CoreError) -> StatusCode {
    use CoreError as E;
    match e {
        E::ConflictingReading { .. }
        | E::LateReading { .. }
        | E::AlreadyPaid { .. }
        | E::SettlementConflict { .. }
        | E::CannotVoidPaid { .. }
        | E::ClearedInOtherCurrency { .. }
        | E::DuplicateProsumer(_)
        | E::PeriodNotCleared { .. }
        | E::TimeframeNotEnded { .. }
        | E::SettlementVoided { .. } => StatusCode::CONFLICT,
        E::UnknownProsumer(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn time(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The fields of a domain error, by name (as the Python binding's
/// `details`): ids, times, values, limits and reasons.
fn core_details(e: &CoreError, d: &mut Map<String, Value>) {
    use CoreError as E;
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_owned(), v);
    };
    match e {
        E::InvalidProsumerId { id, reason } | E::InvalidName { id, reason } => {
            put("id", json!(id));
            put("reason", json!(reason));
        }
        E::InvalidText { what, reason } => {
            put("what", json!(what));
            put("reason", json!(reason));
        }
        E::UnknownProsumerKind(v) | E::UnknownNetwork(v) | E::InvalidCurrency(v) => {
            put("value", json!(v))
        }
        E::LeftBeforeJoined { id, joined, left } => {
            put("id", json!(id));
            put("joined", json!(joined.to_string()));
            put("left", json!(left.to_string()));
        }
        E::DuplicateProsumer(id) | E::UnknownProsumer(id) => put("id", json!(id)),
        E::InactiveProsumer { id, start }
        | E::DuplicateReading { id, start }
        | E::ConflictingReading { id, start }
        | E::LateReading { id, start } => {
            put("id", json!(id));
            put("start", time(start));
        }
        E::InvalidAddress { address, reason } => {
            put("address", json!(address));
            put("reason", json!(reason));
        }
        E::InvalidOffer { offer, reason } => {
            put("offer", json!(offer));
            put("reason", json!(reason));
        }
        E::WrongNetwork { address, network } => {
            put("address", json!(address));
            put("network", json!(network));
        }
        E::InvalidTimeframeLength { minutes } => put("minutes", json!(minutes)),
        E::MisalignedTimeframe { start, minutes } => {
            put("start", time(start));
            put("minutes", json!(minutes));
        }
        E::InvalidRange { start, end, reason } => {
            put("start", time(start));
            put("end", time(end));
            put("reason", json!(reason));
        }
        E::NegativeEnergy {
            id,
            start,
            what,
            value,
        } => {
            put("id", json!(id));
            put("start", time(start));
            put("what", json!(what));
            put("value", json!(value));
        }
        E::ImplausibleEnergy {
            id,
            start,
            what,
            value,
            limit,
        } => {
            put("id", json!(id));
            put("start", time(start));
            put("what", json!(what));
            put("value", json!(value));
            put("limit", json!(limit));
        }
        E::TimeframeNotEnded { start, now } => {
            put("start", time(start));
            put("now", time(now));
        }
        E::AlreadyPaid { id, paid, txid } => {
            put("id", json!(id));
            put("paid", json!(paid));
            put("txid", json!(txid));
        }
        E::SettlementConflict {
            start,
            end,
            existing,
            differs,
        } => {
            put("start", time(start));
            put("end", time(end));
            put("existing", json!(existing));
            put("differs", json!(differs));
        }
        E::CannotVoidPaid { id, txid } => {
            put("id", json!(id));
            put("txid", json!(txid));
        }
        E::SettlementVoided { id, reason } | E::InvalidSettlement { id, reason } => {
            put("id", json!(id));
            put("reason", json!(reason));
        }
        E::MixedTimeframeLength {
            id,
            start,
            expected,
            found,
        } => {
            put("id", json!(id));
            put("start", time(start));
            put("expected", json!(expected));
            put("found", json!(found));
        }
        E::InvalidPrice {
            what,
            value,
            reason,
        }
        | E::InvalidAmount {
            what,
            value,
            reason,
        } => {
            put("what", json!(what));
            put("value", json!(value.to_string()));
            put("reason", json!(reason));
        }
        E::TooLarge { what, found, max } => {
            put("what", json!(what));
            put("found", json!(found));
            put("max", json!(max));
        }
        E::Overflow(what) => put("what", json!(what)),
        E::ShapeMismatch(reason) | E::Psbt(reason) => put("reason", json!(reason)),
        E::PeriodNotCleared { start }
        | E::MixedMechanisms { start }
        | E::DuplicateClearing { start } => put("start", time(start)),
        E::RateOutOfRange { rate, currency } => {
            put("rate", json!(rate.to_string()));
            put("currency", json!(currency));
        }
        E::CurrencyMismatch { bills, rate } => {
            put("bills", json!(bills));
            put("rate", json!(rate));
        }
        E::MixedNetworks {
            id,
            expected,
            found,
        } => {
            put("id", json!(id));
            put("expected", json!(expected));
            put("found", json!(found));
        }
        E::InsufficientInputs { needed, available } => {
            put("needed", json!(needed));
            put("available", json!(available));
        }
        E::InvalidTxid(txid) => put("txid", json!(txid)),
        E::Parse { what, input } => {
            put("what", json!(what));
            put("input", json!(input));
        }
        E::UnknownTimeZone(name) => put("value", json!(name)),
        E::TariffNotAligned { what, minutes } => {
            put("what", json!(what));
            put("minutes", json!(minutes));
        }
        _ => {}
    }
}

fn store_details(e: &StoreError, d: &mut Map<String, Value>) {
    match e {
        StoreError::NotFound { what, key } => {
            d.insert("what".into(), json!(what));
            d.insert("key".into(), json!(key));
        }
        StoreError::Database { operation, .. } => {
            d.insert("operation".into(), json!(operation));
        }
        StoreError::Corrupt { what, .. } => {
            d.insert("what".into(), json!(what));
        }
        StoreError::MonthArchived { month } => {
            d.insert("month".into(), json!(month));
        }
        StoreError::MonthNotDetachable { month, reason } => {
            d.insert("month".into(), json!(month));
            d.insert("reason".into(), json!(reason));
        }
        StoreError::WalletAddressTaken {
            settlement,
            wallet,
            keychain,
            index,
            address,
            holder,
        } => {
            d.insert("settlement".into(), json!(settlement));
            d.insert("wallet".into(), json!(wallet));
            d.insert("keychain".into(), json!(keychain));
            d.insert("index".into(), json!(index));
            if let Some(a) = address {
                d.insert("address".into(), json!(a));
            }
            d.insert("holder".into(), json!(holder));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_message_is_logged_not_shown() {
        let e = ServerError::from(StoreError::Database {
            operation: "inserting readings",
            message: "connection to postgres://ann:hunter2@db failed".into(),
        });
        let p = e.problem();
        assert_eq!((p.status, p.kind.as_str()), (500, "database"));
        let shown = serde_json::to_string(&p).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("inserting readings"));
    }

    #[test]
    fn domain_refusals_keep_their_kind_and_fields() {
        let start = DateTime::from_timestamp(1_780_272_000, 0).unwrap();
        let e = ServerError::Reading {
            row: 7,
            error: CoreError::LateReading {
                id: "a".into(),
                start,
            },
        };
        let p = e.problem();
        assert_eq!((p.status, p.kind.as_str()), (409, "late_reading"));
        assert_eq!(p.type_, "urn:microgrid:problem:late_reading");
        assert_eq!(p.details["row"], 7);
        assert_eq!(p.details["id"], "a");
        assert_eq!(p.details["start"], "2026-06-01T00:00:00Z");
        let unknown = ServerError::from(CoreError::UnknownProsumer("x".into()));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        // In a posted batch, an unknown prosumer is a bad input (422).
        let in_batch = ServerError::Reading {
            row: 0,
            error: CoreError::UnknownProsumer("x".into()),
        };
        assert_eq!(in_batch.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn a_wallet_address_given_already_is_a_conflict_naming_it() {
        let e = ServerError::from(StoreError::WalletAddressTaken {
            settlement: "s2".into(),
            wallet: "w".into(),
            keychain: "receive",
            index: 12,
            address: Some("bcrt1qexample".into()),
            holder: "s1".into(),
        });
        let p = e.problem();
        assert_eq!((p.status, p.kind.as_str()), (409, "wallet_address_taken"));
        for (k, v) in [
            ("settlement", json!("s2")),
            ("keychain", json!("receive")),
            ("index", json!(12)),
            ("address", json!("bcrt1qexample")),
            ("holder", json!("s1")),
        ] {
            assert_eq!(p.details[k], v, "{k}");
        }
    }
}
