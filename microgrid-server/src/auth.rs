//! Who is calling: the key of `Authorization: Bearer <secret>`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use microgrid_core::ProsumerId;

use crate::error::{Result, ServerError};
use crate::keys::{KeyInfo, Role};
use crate::AppState;

/// The verified key of a request. As an extractor, it answers 401 without
/// a valid key.
#[derive(Debug, Clone)]
pub struct Caller(pub KeyInfo);

impl Caller {
    /// Whether the key is the operator's.
    pub fn is_operator(&self) -> bool {
        self.0.role == Role::Operator
    }

    /// The prosumer of a prosumer key.
    pub fn prosumer(&self) -> Option<&ProsumerId> {
        self.0.role.prosumer()
    }

    /// Nothing, for the operator; else the 404 that a path the caller may
    /// not use answers (the same as for a path that does not exist, so that
    /// a prosumer key learns nothing of the operator's endpoints).
    pub fn operator_only(&self, path: &str) -> Result<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(no_route(path))
        }
    }

    /// Nothing if the caller may see prosumer `id`'s data (the operator, or
    /// that prosumer); else the 404 of an unknown prosumer, with the same
    /// body as for an id that is not registered.
    pub fn may_see(&self, id: &str) -> Result<()> {
        match self.prosumer() {
            Some(own) if own.as_str() != id => Err(ServerError::NotFound {
                what: "prosumer",
                key: id.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// The 404 of a path that is not there (or not for this caller).
pub fn no_route(path: &str) -> ServerError {
    ServerError::NotFound {
        what: "resource",
        key: path.to_owned(),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ServerError::Unauthorized {
                reason: "no key: send Authorization: Bearer <key>",
            })?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, secret) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
            })
            .filter(|s| !s.is_empty())
            .ok_or(ServerError::Unauthorized {
                reason: "the Authorization header is not Bearer <key>",
            })?
            .to_owned();
        if let Some(key) = state.keys.verified(&secret) {
            return Ok(Caller(key));
        }
        // The first time a secret is seen: argon2, off the async threads.
        let keys = state.keys.clone();
        let key = tokio::task::spawn_blocking(move || keys.verify(&secret))
            .await
            .map_err(|e| ServerError::Internal(format!("verifying a key: {e}")))?
            .ok_or(ServerError::Unauthorized {
                reason: "the key is not valid (unknown or revoked)",
            })?;
        Ok(Caller(key))
    }
}
