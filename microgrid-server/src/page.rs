//! The month page: `GET /` and its files under `GET /assets/*`, compiled
//! into the binary (nothing is read from disk or fetched from outside at
//! run time).
//!
//! The page reads `key`, `start` and `end` from its URL (query or
//! fragment; it moves them into the fragment so that a reload does not send
//! the key to the server), asks `/api/v1/me` whom the key belongs to and
//! then shows, for the operator, the grid per day (`/api/v1/grid/daily`) and
//! every member's bill (`/api/v1/bills`), for a prosumer its own day sums
//! (`/api/v1/prosumers/{id}/daily`) and its own bill. The chart is an SVG
//! drawn by the page's script; errors (a missing or revoked key, say) are
//! shown as text.
//!
//! Caching: the page itself is `no-cache` (revalidated with its `ETag`);
//! it names its files with a `?v=` version derived from their contents, and
//! a file asked for with the current version is cached for a year
//! (`immutable`), any other request for it is `no-cache`. Every answer
//! carries an `ETag` and honours `If-None-Match`.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One file served under `/assets/`.
struct Asset {
    /// The name after `/assets/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes, compiled in.
    body: &'static [u8],
}

/// The page's files.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
];

/// The page's HTML before its asset links get their version.
const INDEX_TEMPLATE: &str = include_str!("../assets/index.html");

/// What the page may load: only its own files and the API of this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// FNV-1a (64 bits) of `bytes`, continuing from `hash`: a fingerprint for
/// cache validation, not a security hash.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The FNV-1a offset basis.
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The version of the assets together: changes whenever one of them does.
const ASSET_VERSION: u64 = {
    let mut hash = FNV_START;
    let mut i = 0;
    while i < ASSETS.len() {
        hash = fnv1a(hash, ASSETS[i].body);
        i += 1;
    }
    hash
};

/// The page with its asset links versioned, and its `ETag`.
static INDEX: LazyLock<(String, String)> = LazyLock::new(|| {
    let html = INDEX_TEMPLATE.replace("{{ASSET_VERSION}}", &format!("{ASSET_VERSION:016x}"));
    let etag = format!("\"{:016x}\"", fnv1a(FNV_START, html.as_bytes()));
    (html, etag)
});

/// The routes of the page: `GET /` and `GET /assets/{name}` (HEAD too).
/// They need no key: the page sends the key itself with each API call.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/assets/{*name}", get(asset))
}

/// `GET /`: the page.
async fn index(request_headers: HeaderMap) -> Response {
    let (html, etag) = &*INDEX;
    let mut headers = common_headers(etag, "no-cache");
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    if not_modified(&request_headers, etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    (StatusCode::OK, headers, html.clone()).into_response()
}

/// The query of an asset request: `v` is the version the page asked for.
#[derive(serde::Deserialize)]
struct AssetQuery {
    /// The asset version named in the page's links.
    v: Option<String>,
}

/// `GET /assets/{name}`: one of the page's files, or a 404 problem.
async fn asset(
    Path(name): Path<String>,
    Query(query): Query<AssetQuery>,
    request_headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return not_found(&name);
    };
    let etag = format!("\"{:016x}\"", fnv1a(FNV_START, asset.body));
    let current = format!("{ASSET_VERSION:016x}");
    let cache = if query.v.as_deref() == Some(current.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut headers = common_headers(&etag, cache);
    if not_modified(&request_headers, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (StatusCode::OK, headers, asset.body).into_response()
}

/// `ETag`, `Cache-Control` and `X-Content-Type-Options` for a file.
fn common_headers(etag: &str, cache: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn not_modified(request_headers: &HeaderMap, etag: &str) -> bool {
    request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// A 404 problem (RFC 9457) naming the asset that does not exist.
fn not_found(name: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": format!("no asset named {name:?}"),
        "kind": "not_found",
    });
    (
        StatusCode::NOT_FOUND,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body.to_string(),
    )
        .into_response()
}
