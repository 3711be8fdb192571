//! The handlers of `/api/v1`.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use microgrid_core::lightning::{split_payouts, PayoutOffer};
use microgrid_core::settlement::bitcoin::{Amount, OutPoint};
use microgrid_core::settlement::psbt::{FeeRate, Utxo};
use microgrid_core::settlement::{BatchOptions, ExchangeRate, FeePayer, PayoutPolicy, Settlement};
use microgrid_core::tariff::{time_zone, Tariff};
use microgrid_core::{
    Currency, Error as CoreError, GridPrices, Mechanism, Network, PayoutAddress, Price, Prosumer,
    ProsumerId, ProsumerKind, TimeRange,
};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{no_route, Caller};
use crate::dto::*;
use crate::error::{Problem, Result, ServerError};
use crate::ingest;
use crate::keys::Role;
use crate::AppState;

/// The default number of items of a page.
pub const DEFAULT_LIMIT: usize = 1000;
/// The most items a page may hold.
pub const MAX_LIMIT: usize = 10_000;

// ---------------------------------------------------------------- helpers

fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(t)| t).map_err(|e| ServerError::InvalidQuery {
        parameter: "query".into(),
        reason: e.body_text(),
    })
}

fn path<T>(p: std::result::Result<Path<T>, PathRejection>) -> Result<T> {
    p.map(|Path(t)| t).map_err(|e| ServerError::InvalidQuery {
        parameter: "path".into(),
        reason: e.body_text(),
    })
}

fn bytes(state: &AppState, b: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::TooLarge {
                limit: state.body_limit,
            }
        } else {
            ServerError::InvalidBody {
                what: "body".into(),
                reason: e.body_text(),
            }
        }
    })
}

/// A JSON body, its errors naming the field.
fn json<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ServerError::InvalidBody {
            what: if path == "." {
                what.to_owned()
            } else {
                format!("{what} field {path}")
            },
            reason: e.inner().to_string(),
        }
    })
}

fn instant(name: &str, value: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>> {
    let value = value.ok_or_else(|| ServerError::InvalidQuery {
        parameter: name.to_owned(),
        reason: "required (RFC 3339, or a date YYYY-MM-DD for its midnight UTC)".into(),
    })?;
    ingest::parse_instant(value).map_err(|reason| ServerError::InvalidQuery {
        parameter: name.to_owned(),
        reason,
    })
}

fn range(state: &AppState, start: Option<&str>, end: Option<&str>) -> Result<TimeRange> {
    let (start, end) = (instant("start", start)?, instant("end", end)?);
    Ok(TimeRange::new(start, end, state.grid.length())?)
}

fn decimal(name: &str, value: &str) -> Result<Decimal> {
    Decimal::from_str(value.trim()).map_err(|e| ServerError::InvalidBody {
        what: name.to_owned(),
        reason: format!("{value:?} is not a decimal number ({e})"),
    })
}

fn price(name: &str, value: &str) -> Result<Price> {
    Ok(Price::new(decimal(name, value)?)?)
}

/// The tariff `t` describes, or the server's default when it gives no
/// prices.
fn tariff(state: &AppState, t: Option<&TariffIn>) -> Result<Tariff> {
    let t = t.cloned().unwrap_or_default();
    let (import, export) = match (&t.import_price, &t.export_price) {
        (Some(i), Some(e)) => (i, e),
        (None, None) => {
            let given = t.currency.is_some()
                || t.grid_fee.is_some()
                || t.fixed_fee.is_some()
                || t.operator_margin.is_some()
                || t.network_charge.is_some()
                || t.time_zone.is_some();
            return match (&state.tariff, given) {
                (Some(default), false) => Ok(default.clone()),
                _ => Err(ServerError::InvalidBody {
                    what: "tariff".into(),
                    reason: "give import_price and export_price (the server has no default tariff, or other tariff fields were given)".into(),
                }),
            };
        }
        _ => {
            return Err(ServerError::InvalidBody {
                what: "tariff".into(),
                reason: "give both import_price and export_price".into(),
            })
        }
    };
    let currency: Currency = t.currency.as_deref().unwrap_or("EUR").parse()?;
    let grid = GridPrices::new(
        price("import_price", import)?,
        price("export_price", export)?,
    )?;
    let mut tariff = Tariff::new(currency, grid).for_timeframes(state.grid.length())?;
    if let Some(f) = &t.grid_fee {
        tariff = tariff.with_grid_fee(price("grid_fee", f)?);
    }
    if let Some(f) = &t.network_charge {
        tariff = tariff.with_network_charge(price("network_charge", f)?);
    }
    if let Some(m) = &t.operator_margin {
        tariff = tariff.with_operator_margin(price("operator_margin", m)?);
    }
    if let Some(f) = &t.fixed_fee {
        tariff = tariff.with_fixed_fee(decimal("fixed_fee", f)?)?;
    }
    if let Some(z) = &t.time_zone {
        tariff = tariff.in_time_zone(time_zone(z)?)?;
    }
    tariff.check()?;
    Ok(tariff)
}

/// Pagination of a view.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start of the range: RFC 3339, or a date for its midnight UTC.
    pub start: Option<String>,
    /// End of the range, exclusive.
    pub end: Option<String>,
    /// Items per page (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// Items to skip (the `next` link sets it).
    pub offset: Option<usize>,
}

/// Trades: a range, a page, and optionally one prosumer.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TradesQuery {
    /// Start of the range: RFC 3339, or a date for its midnight UTC.
    pub start: Option<String>,
    /// End of the range, exclusive.
    pub end: Option<String>,
    /// Items per page (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// Items to skip (the `next` link sets it).
    pub offset: Option<usize>,
    /// Only the trades of this prosumer (a prosumer key: its own always).
    pub prosumer: Option<String>,
}

/// A page only.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// Items to skip (the `next` link sets it).
    pub offset: Option<usize>,
}

fn paginate<T>(
    items: Vec<T>,
    limit: Option<usize>,
    offset: Option<usize>,
    uri: &Uri,
) -> Result<Page<T>> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ServerError::InvalidQuery {
            parameter: "limit".into(),
            reason: format!("{limit} is not between 1 and {MAX_LIMIT}"),
        });
    }
    let offset = offset.unwrap_or(0);
    let total = items.len();
    let next = (offset.saturating_add(limit) < total).then(|| {
        let mut params: Vec<String> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("offset="))
            .map(str::to_owned)
            .collect();
        params.push(format!("offset={}", offset + limit));
        format!("{}?{}", uri.path(), params.join("&"))
    });
    let items = items.into_iter().skip(offset).take(limit).collect();
    Ok(Page {
        items,
        total,
        offset,
        limit,
        next,
    })
}

/// The prosumer `id` if the caller may see it and it is registered; else
/// the same 404 either way.
async fn visible_prosumer(state: &AppState, caller: &Caller, id: &str) -> Result<ProsumerId> {
    let not_found = || ServerError::NotFound {
        what: "prosumer",
        key: id.to_owned(),
    };
    caller.may_see(id)?;
    let pid = ProsumerId::new(id).map_err(|_| not_found())?;
    if state.grid.shared_registry().await?.find(id).is_some()
        || state.grid.refresh_registry().await?.find(id).is_some()
    {
        Ok(pid)
    } else {
        Err(not_found())
    }
}

async fn stored_settlement(state: &AppState, id: &str) -> Result<Settlement> {
    state
        .grid
        .settlement(id)
        .await?
        .ok_or_else(|| ServerError::NotFound {
            what: "settlement",
            key: id.to_owned(),
        })
}

fn network(name: Option<&str>) -> Result<Network> {
    Ok(name.unwrap_or("regtest").parse()?)
}

// ---------------------------------------------------------------- health

/// Whether the server is up (no key needed).
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The server is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Who the key belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "keys", security(("bearer" = [])),
    responses(
        (status = 200, description = "The key's role", body = Me),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        role: caller.0.role.name().to_owned(),
        prosumer: caller.prosumer().map(|p| p.to_string()),
        key_id: caller.0.id.clone(),
    })
}

// ---------------------------------------------------------------- prosumers

/// Registers a prosumer (operator).
#[utoipa::path(post, path = "/api/v1/prosumers", tag = "prosumers", security(("bearer" = [])),
    request_body = NewProsumer,
    responses(
        (status = 201, description = "Registered", body = ProsumerOut),
        (status = 400, description = "Unreadable body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused value", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_prosumer(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.operator_only(uri.path())?;
    let body = bytes(&state, body)?;
    let p: NewProsumer = json("prosumer", &body)?;
    let kind: ProsumerKind = p.kind.parse()?;
    let mut prosumer = Prosumer::new(p.id, p.name, kind, p.joined)?;
    if let Some(left) = p.left {
        prosumer = prosumer.with_left(left)?;
    }
    if let Some(address) = p.address {
        let net = network(p.network.as_deref())?;
        prosumer = prosumer.with_payout(PayoutAddress::new(&address, net)?);
    }
    if let Some(offer) = p.offer {
        let net = network(p.network.as_deref())?;
        prosumer = prosumer.with_offer(PayoutOffer::parse(&offer, net, chrono::Utc::now())?);
    }
    let out = ProsumerOut::from(&prosumer);
    state.grid.register(prosumer).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The registered prosumers (operator: all; a prosumer: itself).
#[utoipa::path(get, path = "/api/v1/prosumers", tag = "prosumers", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of prosumers", body = Page<ProsumerOut>),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_prosumers(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    q: std::result::Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Page<ProsumerOut>>> {
    let q = query(q)?;
    let registry = state.grid.refresh_registry().await?;
    let items: Vec<ProsumerOut> = registry
        .iter()
        .filter(|p| caller.prosumer().is_none_or(|own| p.id() == own))
        .map(ProsumerOut::from)
        .collect();
    Ok(Json(paginate(items, q.limit, q.offset, &uri)?))
}

/// One prosumer (operator, or that prosumer; else 404).
#[utoipa::path(get, path = "/api/v1/prosumers/{id}", tag = "prosumers", security(("bearer" = [])),
    params(("id" = String, Path, description = "The prosumer's id")),
    responses(
        (status = 200, description = "The prosumer", body = ProsumerOut),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such prosumer, or not the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_prosumer(
    State(state): State<AppState>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<ProsumerOut>> {
    let id = path(id)?;
    let pid = visible_prosumer(&state, &caller, &id).await?;
    let registry = state.grid.shared_registry().await?;
    Ok(Json(ProsumerOut::from(registry.get(&pid)?)))
}

// ---------------------------------------------------------------- readings

/// Query of `POST /api/v1/readings`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadingsQuery {
    /// Read Arrow timestamps without a time zone as UTC.
    pub assume_utc: Option<bool>,
}

/// Records readings (operator): a JSON array, a CSV body or an Arrow IPC
/// stream, through the library's columnar ingest. The batch is checked
/// whole; nothing of a refused batch is stored.
#[utoipa::path(post, path = "/api/v1/readings", tag = "readings", security(("bearer" = [])),
    params(ReadingsQuery),
    request_body(description = "Readings: `application/json` (an array of objects), `text/csv` (header `prosumer,start,produced_wh,consumed_wh`) or `application/vnd.apache.arrow.stream` (the same columns; `start` a timestamp with a time zone)",
        content(
            (Vec<ReadingIn> = "application/json"),
            (String = "text/csv"),
            (ArrowStream = "application/vnd.apache.arrow.stream"),
        )),
    responses(
        (status = 200, description = "Recorded", body = IngestOut),
        (status = 400, description = "An unreadable body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A reading conflicts with a cleared one", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Another content type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad row, named", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_readings(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    q: std::result::Result<Query<ReadingsQuery>, QueryRejection>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<IngestOut>> {
    caller.operator_only(uri.path())?;
    let q = query(q)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let expected = "application/json, text/csv or application/vnd.apache.arrow.stream";
    if !matches!(
        media.as_str(),
        "application/json" | "text/csv" | "application/vnd.apache.arrow.stream"
    ) {
        return Err(ServerError::UnsupportedMediaType {
            content_type,
            expected,
        });
    }
    let body = bytes(&state, body)?;
    let rows = tokio::task::spawn_blocking(move || match media.as_str() {
        "application/json" => ingest::from_json(&body),
        "text/csv" => ingest::from_csv(&body),
        _ => ingest::from_arrow(&body, q.assume_utc.unwrap_or(false)),
    })
    .await
    .map_err(|e| ServerError::Internal(format!("reading a body: {e}")))??;
    let registry = state.grid.shared_registry().await?;
    let columns = match ingest::to_columns(&rows, &registry) {
        Ok(c) => c,
        Err(_) => {
            let registry = state.grid.refresh_registry().await?;
            ingest::to_columns(&rows, &registry).map_err(|row| ServerError::Reading {
                row,
                error: CoreError::UnknownProsumer(rows[row].prosumer.clone()),
            })?
        }
    };
    let received = rows.len();
    let report = match state.grid.record_columns(columns).await {
        Ok(r) => r,
        Err(microgrid_store::StoreError::Domain(e)) => return Err(ingest::locate(&rows, e)),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(IngestOut {
        received,
        inserted: report.inserted,
        replaced: report.replaced,
        unchanged: report.unchanged,
    }))
}

// ---------------------------------------------------------------- clearing

/// Clears every timeframe of a range not cleared yet (operator).
#[utoipa::path(post, path = "/api/v1/clear", tag = "clearing", security(("bearer" = [])),
    request_body = ClearIn,
    responses(
        (status = 200, description = "Cleared", body = ClearOut),
        (status = 400, description = "An unreadable body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The range has not ended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused value", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ClearOut>> {
    caller.operator_only(uri.path())?;
    let body = bytes(&state, body)?;
    let c: ClearIn = json("clear request", &body)?;
    let r = range(&state, Some(&c.start), Some(&c.end))?;
    let mechanism: Mechanism = c.mechanism.parse()?;
    let t = tariff(&state, c.tariff.as_ref())?;
    let report = state.grid.clear(&r, &t, &mechanism).await?;
    Ok(Json(ClearOut {
        cleared: report.cleared,
        already_cleared: report.already_cleared,
    }))
}

// ---------------------------------------------------------------- views

/// The grid per cleared timeframe (every role: aggregates only).
#[utoipa::path(get, path = "/api/v1/grid", tag = "views", security(("bearer" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "A page of timeframes", body = Page<GridTimeframe>),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn grid(
    State(state): State<AppState>,
    _caller: Caller,
    OriginalUri(uri): OriginalUri,
    q: std::result::Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Page<GridTimeframe>>> {
    let q = query(q)?;
    let r = range(&state, q.start.as_deref(), q.end.as_deref())?;
    let rows = state.grid.summaries(&r).await?;
    let items = rows.iter().map(GridTimeframe::from).collect();
    Ok(Json(paginate(items, q.limit, q.offset, &uri)?))
}

/// The grid per UTC day: sums of production, consumption, shared, import
/// and export (every role).
#[utoipa::path(get, path = "/api/v1/grid/daily", tag = "views", security(("bearer" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "A page of days", body = Page<GridDay>),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn grid_daily(
    State(state): State<AppState>,
    _caller: Caller,
    OriginalUri(uri): OriginalUri,
    q: std::result::Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Page<GridDay>>> {
    let q = query(q)?;
    let r = range(&state, q.start.as_deref(), q.end.as_deref())?;
    let rows = state.grid.summaries(&r).await?;
    let mut days: BTreeMap<NaiveDate, GridDay> = BTreeMap::new();
    for s in &rows {
        let date = s.timeframe.start().date_naive();
        let d = days.entry(date).or_insert_with(|| GridDay {
            date,
            ..GridDay::default()
        });
        d.timeframes += 1;
        d.production_wh += s.production.get();
        d.consumption_wh += s.consumption.get();
        d.shared_wh += s.shared.get();
        d.import_wh += s.import.get();
        d.export_wh += s.export.get();
    }
    Ok(Json(paginate(
        days.into_values().collect(),
        q.limit,
        q.offset,
        &uri,
    )?))
}

/// One prosumer per cleared timeframe (operator or that prosumer).
#[utoipa::path(get, path = "/api/v1/prosumers/{id}/timeframes", tag = "views", security(("bearer" = [])),
    params(("id" = String, Path, description = "The prosumer's id"), RangeQuery),
    responses(
        (status = 200, description = "A page of timeframes", body = Page<ProsumerTimeframe>),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such prosumer, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn prosumer_timeframes(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Page<ProsumerTimeframe>>> {
    let id = path(id)?;
    let pid = visible_prosumer(&state, &caller, &id).await?;
    let q = query(q)?;
    let r = range(&state, q.start.as_deref(), q.end.as_deref())?;
    let rows = state.grid.prosumer(&pid, &r).await?;
    let items = rows.iter().map(ProsumerTimeframe::from).collect();
    Ok(Json(paginate(items, q.limit, q.offset, &uri)?))
}

/// One prosumer per UTC day: produced, consumed, sold (shared out), bought
/// (shared in), imported, exported (operator or that prosumer).
#[utoipa::path(get, path = "/api/v1/prosumers/{id}/daily", tag = "views", security(("bearer" = [])),
    params(("id" = String, Path, description = "The prosumer's id"), RangeQuery),
    responses(
        (status = 200, description = "A page of days", body = Page<ProsumerDay>),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such prosumer, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn prosumer_daily(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Page<ProsumerDay>>> {
    let id = path(id)?;
    let pid = visible_prosumer(&state, &caller, &id).await?;
    let q = query(q)?;
    let r = range(&state, q.start.as_deref(), q.end.as_deref())?;
    let rows = state.grid.prosumer(&pid, &r).await?;
    let mut days: BTreeMap<NaiveDate, ProsumerDay> = BTreeMap::new();
    for a in &rows {
        let date = a.timeframe.start().date_naive();
        let d = days.entry(date).or_insert_with(|| ProsumerDay {
            date,
            ..ProsumerDay::default()
        });
        d.timeframes += 1;
        d.produced_wh += a.produced.get();
        d.consumed_wh += a.consumed.get();
        d.sold_wh += a.sold.get();
        d.bought_wh += a.bought.get();
        d.imported_wh += a.imported.get();
        d.exported_wh += a.exported.get();
    }
    Ok(Json(paginate(
        days.into_values().collect(),
        q.limit,
        q.offset,
        &uri,
    )?))
}

/// The bilateral trades (operator: all, or one prosumer's; a prosumer:
/// those where it is buyer or seller).
#[utoipa::path(get, path = "/api/v1/trades", tag = "views", security(("bearer" = [])),
    params(TradesQuery),
    responses(
        (status = 200, description = "A page of trades", body = Page<TradeOut>),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such prosumer, or not the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn trades(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    q: std::result::Result<Query<TradesQuery>, QueryRejection>,
) -> Result<Json<Page<TradeOut>>> {
    let q = query(q)?;
    let only = match (caller.prosumer(), q.prosumer.as_deref()) {
        (Some(own), _) => Some(
            visible_prosumer(
                &state,
                &caller,
                q.prosumer.as_deref().unwrap_or(own.as_str()),
            )
            .await?,
        ),
        (None, Some(id)) => Some(visible_prosumer(&state, &caller, id).await?),
        (None, None) => None,
    };
    let r = range(&state, q.start.as_deref(), q.end.as_deref())?;
    let rows = state.grid.trades(&r, only.as_ref()).await?;
    let items = rows.iter().map(TradeOut::from).collect();
    Ok(Json(paginate(items, q.limit, q.offset, &uri)?))
}

// ---------------------------------------------------------------- bills

/// Query of `GET /api/v1/bills`: the period and, optionally, a tariff.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillsQuery {
    /// Start of the period: RFC 3339, or a date for its midnight UTC.
    pub start: Option<String>,
    /// End of the period, exclusive.
    pub end: Option<String>,
    /// The grid's import price per kWh (with `export_price`; else the
    /// server's default tariff).
    pub import_price: Option<String>,
    /// The grid's export price per kWh.
    pub export_price: Option<String>,
    /// ISO 4217 code (default `EUR`).
    pub currency: Option<String>,
    /// Grid fee per kWh imported.
    pub grid_fee: Option<String>,
    /// Fixed fee per member and calendar month.
    pub fixed_fee: Option<String>,
    /// Operator margin per kWh bought in the community.
    pub operator_margin: Option<String>,
    /// Network charge per kWh bought in the community.
    pub network_charge: Option<String>,
    /// IANA time zone of the tariff (default `UTC`).
    pub time_zone: Option<String>,
}

async fn bills_of(
    state: &AppState,
    caller: &Caller,
    r: TimeRange,
    t: Option<&TariffIn>,
) -> Result<Json<BillsOut>> {
    let t = tariff(state, t)?;
    let bills = state.grid.bill(&r, &t).await?;
    Ok(Json(BillsOut::new(&bills, caller.prosumer())))
}

/// The bills of a period (operator: all, with the community's totals; a
/// prosumer: its own), with each member's saving.
#[utoipa::path(get, path = "/api/v1/bills", tag = "bills", security(("bearer" = [])),
    params(BillsQuery),
    responses(
        (status = 200, description = "The bills", body = BillsOut),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The period is not cleared", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused value", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn bills(
    State(state): State<AppState>,
    caller: Caller,
    q: std::result::Result<Query<BillsQuery>, QueryRejection>,
) -> Result<Json<BillsOut>> {
    let q = query(q)?;
    let r = range(&state, q.start.as_deref(), q.end.as_deref())?;
    let t = TariffIn {
        import_price: q.import_price,
        export_price: q.export_price,
        currency: q.currency,
        grid_fee: q.grid_fee,
        fixed_fee: q.fixed_fee,
        operator_margin: q.operator_margin,
        network_charge: q.network_charge,
        time_zone: q.time_zone,
    };
    bills_of(&state, &caller, r, Some(&t)).await
}

/// The bills of a period with the tariff in a JSON body (as `GET`).
#[utoipa::path(post, path = "/api/v1/bills", tag = "bills", security(("bearer" = [])),
    request_body = BillsIn,
    responses(
        (status = 200, description = "The bills", body = BillsOut),
        (status = 400, description = "An unreadable body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The period is not cleared", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused value", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn bills_post(
    State(state): State<AppState>,
    caller: Caller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<BillsOut>> {
    let body = bytes(&state, body)?;
    let b: BillsIn = json("bills request", &body)?;
    let r = range(&state, Some(&b.start), Some(&b.end))?;
    bills_of(&state, &caller, r, b.tariff.as_ref()).await
}

// ---------------------------------------------------------------- settlements

/// Bills and settles a period (operator); the same inputs again return
/// the stored settlement.
#[utoipa::path(post, path = "/api/v1/settlements", tag = "settlements", security(("bearer" = [])),
    request_body = SettleIn,
    responses(
        (status = 201, description = "Settled (or the stored settlement of the same inputs)", body = SettlementOut),
        (status = 400, description = "An unreadable body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Settled otherwise, or not cleared", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refused value", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn settle(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.operator_only(uri.path())?;
    let body = bytes(&state, body)?;
    let s: SettleIn = json("settlement request", &body)?;
    let r = range(&state, Some(&s.start), Some(&s.end))?;
    let t = tariff(&state, s.tariff.as_ref())?;
    let net = network(s.network.as_deref())?;
    let operator = PayoutAddress::new(&s.operator_address, net)?;
    let rate = ExchangeRate::new(
        decimal("rate", &s.rate)?,
        t.currency(),
        s.rate_source.as_deref().unwrap_or("manual"),
        r.end(),
    )?;
    let mut policy = match s.minimum_payout_sats {
        None => PayoutPolicy::default(),
        Some(sats) => PayoutPolicy::with_minimum_payout(Amount::from_sat(sats))?,
    };
    if let Some(sats) = s.lightning_below_sats {
        policy = policy.with_lightning_below(Amount::from_sat(sats))?;
    }
    let settlement = state
        .grid
        .settle_with_policy(&r, &t, &rate, net, &operator, &policy)
        .await?;
    Ok((StatusCode::CREATED, Json(SettlementOut::from(&settlement))).into_response())
}

/// A stored settlement (operator).
#[utoipa::path(get, path = "/api/v1/settlements/{id}", tag = "settlements", security(("bearer" = [])),
    params(("id" = String, Path, description = "The settlement's id")),
    responses(
        (status = 200, description = "The settlement", body = SettlementOut),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement, or not the operator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_settlement(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<SettlementOut>> {
    caller.operator_only(uri.path())?;
    let id = path(id)?;
    Ok(Json(SettlementOut::from(
        &stored_settlement(&state, &id).await?,
    )))
}

/// The settlement's payouts as Bitcoin Core's `sendmany` outputs object,
/// `{"address": BTC amount, ...}` (operator).
#[utoipa::path(get, path = "/api/v1/settlements/{id}/sendmany", tag = "settlements", security(("bearer" = [])),
    params(("id" = String, Path, description = "The settlement's id")),
    responses(
        (status = 200, description = "The outputs object (amounts in BTC, 8 decimals)", body = Object),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement, or not the operator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sendmany(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    caller.operator_only(uri.path())?;
    let id = path(id)?;
    let s = stored_settlement(&state, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        s.sendmany_json(),
    )
        .into_response())
}

/// The settlement's Lightning payouts (its `lightning` entries) for the
/// operator's Lightning node: each member's offer, the amount in
/// millisatoshis and the payer note, as the library's `split_payouts`
/// gives them (operator). An offer that has expired since the period was
/// settled is 422 (`invalid_offer`): void the settlement and settle the
/// period again.
#[utoipa::path(get, path = "/api/v1/settlements/{id}/lightning", tag = "settlements", security(("bearer" = [])),
    params(("id" = String, Path, description = "The settlement's id")),
    responses(
        (status = 200, description = "The Lightning payouts (none for a settlement made without `lightning_below_sats`)", body = LightningOut),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement, or not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An offer can no longer be paid (expired)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn lightning(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<LightningOut>> {
    caller.operator_only(uri.path())?;
    let id = path(id)?;
    let s = stored_settlement(&state, &id).await?;
    let registry = state.grid.refresh_registry().await?;
    // Without a threshold the split moves no on-chain payout: its
    // Lightning part is exactly the settlement's Lightning actions.
    let split = split_payouts(&s, &registry, &PayoutPolicy::default(), chrono::Utc::now())?;
    Ok(Json(LightningOut {
        settlement: s.id().to_string(),
        total_msat: split.lightning_total_msat(),
        payouts: split
            .lightning
            .iter()
            .map(LightningPayoutOut::from)
            .collect(),
    }))
}

/// Query of `GET /api/v1/settlements/{id}/psbt`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PsbtQuery {
    /// Fee rate in sat/vB, a decimal (default 1).
    pub sat_per_vb: Option<String>,
    /// A cap on each transaction's size in vbytes (default the standard
    /// limit, 100000).
    pub max_vbytes: Option<u64>,
    /// Who pays the fee: `operator` (default) or `members`.
    pub fee_payer: Option<String>,
    /// The change address (default the operator's address).
    pub change: Option<String>,
    /// The operator's unspent outputs, comma-separated
    /// `txid:vout:sats:address`; taken in order, each batch as many as
    /// cover it. Without them the batches come without PSBTs.
    pub utxos: Option<String>,
}

fn utxos(text: &str, net: Network) -> Result<Vec<Utxo>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, u)| {
            let bad = |reason: String| ServerError::InvalidQuery {
                parameter: format!("utxos[{i}]"),
                reason,
            };
            let parts: Vec<&str> = u.trim().split(':').collect();
            let [txid, vout, sats, address] = parts[..] else {
                return Err(bad(format!("{u:?} is not txid:vout:sats:address")));
            };
            let outpoint = OutPoint::from_str(&format!("{txid}:{vout}"))
                .map_err(|e| bad(format!("outpoint {txid}:{vout}: {e}")))?;
            let sats: u64 = sats
                .parse()
                .map_err(|_| bad(format!("{sats:?} is not a whole number of sats")))?;
            let address = PayoutAddress::new(address, net)?;
            Ok(Utxo::new(outpoint, Amount::from_sat(sats), address))
        })
        .collect()
}

/// The settlement's payouts split into transactions under the standard
/// size, each with its fee, `sendmany` object and, given the operator's
/// inputs, an unsigned PSBT (base64) (operator).
#[utoipa::path(get, path = "/api/v1/settlements/{id}/psbt", tag = "settlements", security(("bearer" = [])),
    params(("id" = String, Path, description = "The settlement's id"), PsbtQuery),
    responses(
        (status = 200, description = "The batches", body = PsbtOut),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement, or not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The inputs do not cover a batch, or a refused value", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn psbt(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<PsbtQuery>, QueryRejection>,
) -> Result<Json<PsbtOut>> {
    caller.operator_only(uri.path())?;
    let id = path(id)?;
    let q = query(q)?;
    let s = stored_settlement(&state, &id).await?;
    let rate = match &q.sat_per_vb {
        Some(r) => FeeRate::from_sat_per_vb_decimal(decimal("sat_per_vb", r)?)?,
        None => FeeRate::new(1)?,
    };
    let mut options = BatchOptions::new(rate);
    if let Some(max) = q.max_vbytes {
        options = options.max_vbytes(max)?;
    }
    if let Some(payer) = &q.fee_payer {
        options = options.fee_payer(payer.parse::<FeePayer>()?);
    }
    let change = match &q.change {
        Some(c) => PayoutAddress::new(c, s.network())?,
        None => s.operator_address().clone(),
    };
    options = options.change(change.clone());
    let batches = s.batches(&options)?;
    let mut pool = match &q.utxos {
        Some(text) => utxos(text, s.network())?,
        None => Vec::new(),
    }
    .into_iter();
    let with_inputs = q.utxos.is_some();
    let mut out = Vec::with_capacity(batches.len());
    for b in &batches {
        let mut o = BatchOut::new(b);
        if with_inputs {
            let mut taken: Vec<Utxo> = Vec::new();
            let unsigned = loop {
                match b.psbt(&taken, &change) {
                    Ok(u) if !taken.is_empty() => break u,
                    Ok(_) | Err(CoreError::InsufficientInputs { .. }) if pool.len() > 0 => {
                        taken.extend(pool.next());
                    }
                    Ok(_) => {
                        return Err(CoreError::InsufficientInputs {
                            needed: b.outputs_total().to_sat() + b.fee.to_sat(),
                            available: 0,
                        }
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            o.psbt = Some(unsigned.psbt_base64);
            o.psbt_fee_sats = Some(unsigned.fee_sats.to_sat());
            o.psbt_change_sats = Some(unsigned.change_sats.to_sat());
            o.psbt_inputs = taken.iter().map(|u| u.outpoint.to_string()).collect();
        }
        out.push(o);
    }
    Ok(Json(PsbtOut {
        settlement: s.id().to_string(),
        batches: out,
    }))
}

/// The settlement's BIP21 invoices (operator: all; a prosumer: its own).
#[utoipa::path(get, path = "/api/v1/settlements/{id}/invoices", tag = "settlements", security(("bearer" = [])),
    params(("id" = String, Path, description = "The settlement's id")),
    responses(
        (status = 200, description = "The invoices", body = Vec<InvoiceOut>),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn invoices(
    State(state): State<AppState>,
    caller: Caller,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<InvoiceOut>>> {
    let id = path(id)?;
    let s = stored_settlement(&state, &id).await?;
    Ok(Json(
        s.invoices()
            .iter()
            .filter(|i| caller.prosumer().is_none_or(|own| &i.prosumer == own))
            .map(InvoiceOut::from)
            .collect(),
    ))
}

/// Records the transaction that paid a settlement (operator); the same
/// txid again changes nothing.
#[utoipa::path(post, path = "/api/v1/settlements/{id}/paid", tag = "settlements", security(("bearer" = [])),
    params(("id" = String, Path, description = "The settlement's id")),
    request_body = PaidIn,
    responses(
        (status = 200, description = "The paid settlement", body = SettlementOut),
        (status = 400, description = "An unreadable body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement, or not the operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Paid by another transaction, or voided", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a txid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn paid(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<SettlementOut>> {
    caller.operator_only(uri.path())?;
    let id = path(id)?;
    let body = bytes(&state, body)?;
    let p: PaidIn = json("payment", &body)?;
    let s = state
        .grid
        .mark_paid(&id, &p.txid)
        .await
        .map_err(|e| match e {
            microgrid_store::StoreError::NotFound { .. } => ServerError::NotFound {
                what: "settlement",
                key: id.clone(),
            },
            other => other.into(),
        })?;
    Ok(Json(SettlementOut::from(&s)))
}

// ---------------------------------------------------------------- keys

/// Creates a key (operator); its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])),
    request_body = NewKey,
    responses(
        (status = 201, description = "The key and its secret", body = NewKeyOut),
        (status = 400, description = "An unreadable body, or an unknown prosumer", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.operator_only(uri.path())?;
    let body = bytes(&state, body)?;
    let k: NewKey = json("key request", &body)?;
    let role = match (k.role.as_str(), k.prosumer) {
        ("operator", None) => Role::Operator,
        ("prosumer", Some(p)) => {
            let registered = state.grid.refresh_registry().await?.find(&p).is_some();
            if !registered {
                return Err(ServerError::InvalidBody {
                    what: "key request field prosumer".into(),
                    reason: format!("prosumer {p} is not registered"),
                });
            }
            Role::Prosumer(ProsumerId::new(p)?)
        }
        (role, prosumer) => {
            return Err(ServerError::InvalidBody {
                what: "key request field role".into(),
                reason: format!(
                    "role {role:?} with prosumer {prosumer:?}: expected operator without a prosumer, or prosumer with one"
                ),
            })
        }
    };
    let keys = state.keys.clone();
    let (info, secret) = tokio::task::spawn_blocking(move || keys.create(role))
        .await
        .map_err(|e| ServerError::Internal(format!("creating a key: {e}")))??;
    let k = KeyOut::from(&info);
    Ok((
        StatusCode::CREATED,
        Json(NewKeyOut {
            id: k.id,
            role: k.role,
            prosumer: k.prosumer,
            created: k.created,
            secret: secret.expose().to_owned(),
        }),
    )
        .into_response())
}

/// The keys (operator): ids, roles, prosumers, creation times; never
/// secrets or hashes.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = Vec<KeyOut>),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not the operator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Vec<KeyOut>>> {
    caller.operator_only(uri.path())?;
    Ok(Json(state.keys.list().iter().map(KeyOut::from).collect()))
}

/// Revokes a key (operator).
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key, or not the operator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Result<StatusCode> {
    caller.operator_only(uri.path())?;
    let id = path(id)?;
    let keys = state.keys.clone();
    let key = id.clone();
    let revoked = tokio::task::spawn_blocking(move || keys.revoke(&key))
        .await
        .map_err(|e| ServerError::Internal(format!("revoking a key: {e}")))??;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServerError::NotFound {
            what: "key",
            key: id,
        })
    }
}

/// The answer of a path that does not exist.
pub async fn fallback(OriginalUri(uri): OriginalUri) -> ServerError {
    no_route(uri.path())
}

/// The answer of a method a path does not take.
pub async fn method_not_allowed(
    method: axum::http::Method,
    OriginalUri(uri): OriginalUri,
) -> ServerError {
    ServerError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
