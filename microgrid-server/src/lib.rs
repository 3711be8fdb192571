//! The HTTP service of `microgrid`: a router any Rust application can
//! mount ([`router`]), over a [`Grid`] on any store, with the grid,
//! prosumer and trade views, readings in JSON, CSV and Arrow IPC, clearing,
//! bills, settlement (`sendmany`, PSBTs, BIP21 invoices) and API keys per
//! role; an OpenAPI 3.1 document at `/openapi.json` generated from the
//! types and Swagger UI at `/docs`, both served from the binary.
//!
//! # Endpoints
//!
//! | method and path | who | what |
//! | --- | --- | --- |
//! | `GET /healthz` | anyone | `{"status":"ok"}` |
//! | `GET /openapi.json`, `GET /docs/` | anyone | the OpenAPI document, Swagger UI |
//! | `GET /`, `GET /assets/*` | anyone | the page (it sends the key it is given) |
//! | `GET /api/v1/me` | any key | the key's role and prosumer |
//! | `POST /api/v1/prosumers` | operator | register a prosumer |
//! | `GET /api/v1/prosumers` | any key | operator: all; prosumer: itself |
//! | `GET /api/v1/prosumers/{id}` | operator, that prosumer | one prosumer |
//! | `POST /api/v1/readings` | operator | JSON, CSV or Arrow IPC readings |
//! | `POST /api/v1/clear` | operator | clear a range |
//! | `GET /api/v1/grid` | any key | the grid per timeframe |
//! | `GET /api/v1/grid/daily` | any key | the grid per day |
//! | `GET /api/v1/prosumers/{id}/timeframes` | operator, that prosumer | the prosumer per timeframe |
//! | `GET /api/v1/prosumers/{id}/daily` | operator, that prosumer | the prosumer per day |
//! | `GET /api/v1/trades` | any key | operator: all; prosumer: its own |
//! | `GET`, `POST /api/v1/bills` | any key | operator: all bills; prosumer: its own |
//! | `POST /api/v1/settlements` | operator | settle a period |
//! | `GET /api/v1/settlements/{id}` | operator | a settlement |
//! | `GET /api/v1/settlements/{id}/sendmany` | operator | its `sendmany` outputs |
//! | `GET /api/v1/settlements/{id}/psbt` | operator | its batches and PSBTs |
//! | `GET /api/v1/settlements/{id}/lightning` | operator | its Lightning payouts (offer, msat, payer note) |
//! | `GET /api/v1/settlements/{id}/invoices` | any key | operator: all; prosumer: its own |
//! | `POST /api/v1/settlements/{id}/paid` | operator | mark it paid |
//! | `POST /api/v1/keys`, `GET /api/v1/keys` | operator | create (secret shown once), list |
//! | `DELETE /api/v1/keys/{id}` | operator | revoke |
//!
//! Money is a decimal string, energy whole Wh, bitcoin whole sats, times
//! RFC 3339 UTC (a query's `start` and `end` may be dates, for midnight
//! UTC). Lists are pages (`limit`, default 1000, at most 10000; `offset`;
//! `next` is the path of the next page).
//!
//! # Keys and roles
//!
//! Every `/api/v1` call needs `Authorization: Bearer <secret>`; without a
//! valid key (none, unknown, revoked) it is 401. An operator key does
//! everything. A prosumer key reads that prosumer's own data: another
//! prosumer's is 404 with the same body as an id that does not exist, and
//! an operator-only endpoint is 404 too, like a path that does not exist
//! (so a prosumer key learns no ids and no operator endpoints).
//!
//! Keys are stored as argon2id hashes in a [`KeyRing`]: a JSON file or
//! memory, **not in the microgrid's store** (a limitation: two servers on
//! one database keep their own keys). Verifying an argon2 hash is slow on
//! purpose, so a verified secret's SHA-256 is cached in memory with its
//! key id, and dropped when the key is revoked. Secrets are never logged;
//! the request log has method, path (without the query), status and time.
//!
//! # Errors
//!
//! Every error is an RFC 9457 `application/problem+json` body with the
//! library's error kind: see [`error`].
//!
//! # Example
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use microgrid_server::{router, AppState, KeyRing, Role};
//! use microgrid_store::Grid;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let grid = Grid::open("memory:").await?;
//! let keys = KeyRing::in_memory();
//! let (_, secret) = keys.create(Role::Operator)?;
//! let app = router(AppState::new(grid, keys));
//!
//! let request = Request::get("/api/v1/me")
//!     .header("authorization", format!("Bearer {}", secret.expose()))
//!     .body(Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
//! assert_eq!(serde_json::from_slice::<serde_json::Value>(&body)?["role"], "operator");
//!
//! // No key: 401, as a problem.
//! let response = app.oneshot(Request::get("/api/v1/me").body(Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod dto;
pub mod error;
mod ingest;
pub mod keys;
pub mod page;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use microgrid_core::tariff::Tariff;
use microgrid_store::{AnyStore, Grid};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

pub use auth::Caller;
pub use error::{Problem, Result, ServerError};
pub use keys::{KeyInfo, KeyRing, Role, Secret};

/// The default limit of a request body: 64 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 << 20;

/// What the handlers share: the grid, the keys, the default tariff and
/// the body limit. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The books.
    pub grid: Arc<Grid<AnyStore>>,
    /// The keys.
    pub keys: KeyRing,
    /// The tariff of clearing, bills and settlements that give none.
    pub tariff: Option<Tariff>,
    /// The largest request body in bytes (larger: 413).
    pub body_limit: usize,
}

impl AppState {
    /// The state of a server on `grid` with `keys`, no default tariff and
    /// a body limit of [`DEFAULT_BODY_LIMIT`].
    pub fn new(grid: Grid<AnyStore>, keys: KeyRing) -> AppState {
        AppState {
            grid: Arc::new(grid),
            keys,
            tariff: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// The same state with a default tariff (the page's bills use it).
    pub fn with_tariff(mut self, tariff: Tariff) -> AppState {
        self.tariff = Some(tariff);
        self
    }

    /// The same state with another body limit, in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> AppState {
        self.body_limit = bytes;
        self
    }
}

/// The OpenAPI document of the API (OpenAPI 3.1).
#[derive(OpenApi)]
#[openapi(
    info(title = "microgrid", description = "The books of a community microgrid over HTTP: readings, clearing, the grid, prosumer and trade views, bills and bitcoin settlement. Money is a decimal string, energy whole Wh, bitcoin whole sats. Errors are RFC 9457 problems with the library's error kind."),
    paths(
        api::healthz,
        api::me,
        api::create_prosumer,
        api::list_prosumers,
        api::get_prosumer,
        api::post_readings,
        api::clear,
        api::grid,
        api::grid_daily,
        api::prosumer_timeframes,
        api::prosumer_daily,
        api::trades,
        api::bills,
        api::bills_post,
        api::settle,
        api::get_settlement,
        api::sendmany,
        api::psbt,
        api::lightning,
        api::invoices,
        api::paid,
        api::create_key,
        api::list_keys,
        api::delete_key,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "Health"),
        (name = "keys", description = "API keys and who the caller is"),
        (name = "prosumers", description = "The registry"),
        (name = "readings", description = "Meter readings"),
        (name = "clearing", description = "Clearing timeframes"),
        (name = "views", description = "The grid, prosumer and trade views"),
        (name = "bills", description = "Bills of a period"),
        (name = "settlements", description = "Settlement in bitcoin"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer <secret>`"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Logs each request: method, path (never the query, which may hold a
/// key), status and latency.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let began = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        target: "microgrid_server::request",
        "{method} {path} {} {:.1} ms",
        response.status().as_u16(),
        began.elapsed().as_secs_f64() * 1e3
    );
    response
}

/// The whole service: the API under `/api/v1`, `/healthz`,
/// `/openapi.json`, Swagger UI at `/docs`, and the page at `/`.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    let api = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/api/v1/me", get(api::me))
        .route(
            "/api/v1/prosumers",
            post(api::create_prosumer).get(api::list_prosumers),
        )
        .route("/api/v1/prosumers/{id}", get(api::get_prosumer))
        .route(
            "/api/v1/prosumers/{id}/timeframes",
            get(api::prosumer_timeframes),
        )
        .route("/api/v1/prosumers/{id}/daily", get(api::prosumer_daily))
        .route("/api/v1/readings", post(api::post_readings))
        .route("/api/v1/clear", post(api::clear))
        .route("/api/v1/grid", get(api::grid))
        .route("/api/v1/grid/daily", get(api::grid_daily))
        .route("/api/v1/trades", get(api::trades))
        .route("/api/v1/bills", get(api::bills).post(api::bills_post))
        .route("/api/v1/settlements", post(api::settle))
        .route("/api/v1/settlements/{id}", get(api::get_settlement))
        .route("/api/v1/settlements/{id}/sendmany", get(api::sendmany))
        .route("/api/v1/settlements/{id}/psbt", get(api::psbt))
        .route("/api/v1/settlements/{id}/lightning", get(api::lightning))
        .route("/api/v1/settlements/{id}/invoices", get(api::invoices))
        .route("/api/v1/settlements/{id}/paid", post(api::paid))
        .route("/api/v1/keys", post(api::create_key).get(api::list_keys))
        .route("/api/v1/keys/{id}", axum::routing::delete(api::delete_key))
        .fallback(api::fallback)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    Router::new()
        .merge(
            SwaggerUi::new("/docs")
                .url("/openapi.json", openapi())
                // Swagger UI would otherwise link (and load a badge from)
                // an online validator, handing it the document's URL.
                .config(utoipa_swagger_ui::Config::default().validator_url("none")),
        )
        .merge(page::routes())
        .merge(api)
        .layer(middleware::from_fn(log_request))
}

/// The [`axum`](https://docs.rs/axum/0.8) crate the router is built with
/// (to serve it: `axum::serve`).
pub use axum;
