//! The server over real HTTP: the router served on 127.0.0.1:0, called by
//! a blocking client (ureq) from the test's thread, on memory and on
//! PostgreSQL (`MICROGRID_TEST_POSTGRES_URL`; the PostgreSQL tests fail,
//! never skip, without it). Every endpoint, each role, the 401 and 404
//! rules, bad bodies, money as strings and pagination; a few households
//! over a few days.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray, TimestampSecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{NaiveDate, SecondsFormat};
use microgrid_core::simulate::{regtest_address, Community};
use microgrid_core::tariff::Tariff;
use microgrid_core::{GridPrices, OutputType, Reading, TimeframeLength};
use microgrid_server::{router, AppState, KeyRing, Role};
use microgrid_store::{AnyStore, Grid};
use serde_json::{json, Value};

const START: &str = "2026-06-01";
const END: &str = "2026-06-04";
const HOUSEHOLDS: usize = 4;
const DAYS: u32 = 3;

/// A server on its own runtime, stopped when dropped.
struct Server {
    base: String,
    operator: String,
    agent: ureq::Agent,
    _rt: tokio::runtime::Runtime,
}

/// An answer: status, content type, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The problem of an error answer, checked to be RFC 9457.
    fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {kind}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["kind"], kind, "{p}");
        assert_eq!(p["type"], format!("urn:microgrid:problem:{kind}"));
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        assert!(p["details"]["message"].is_string(), "{p}");
        p
    }

    fn ok(&self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "{}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn tariff() -> Tariff {
    Tariff::new(
        "EUR".parse().unwrap(),
        GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap()).unwrap(),
    )
    .with_grid_fee("0.05".parse().unwrap())
}

impl Server {
    fn start<F>(store: F, body_limit: Option<usize>) -> Server
    where
        F: std::future::Future<Output = AnyStore>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(store);
        let keys = KeyRing::in_memory();
        let (_, secret) = keys.create(Role::Operator).unwrap();
        let mut state =
            AppState::new(Grid::new(store, TimeframeLength::default()), keys).with_tariff(tariff());
        if let Some(limit) = body_limit {
            state = state.with_body_limit(limit);
        }
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, router(state)).await });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            base: format!("http://{addr}"),
            operator: secret.expose().to_owned(),
            agent,
            _rt: rt,
        }
    }

    fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect::<Vec<_>>();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = r
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .unwrap();
        Answer {
            status: r.status().as_u16(),
            content_type,
            headers,
            body,
        }
    }

    fn get(&self, path: &str, key: Option<&str>) -> Answer {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::answer(req.call().unwrap())
    }

    fn delete(&self, path: &str, key: Option<&str>) -> Answer {
        let mut req = self.agent.delete(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::answer(req.call().unwrap())
    }

    fn post(&self, path: &str, key: Option<&str>, content_type: &str, body: &[u8]) -> Answer {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::answer(req.send(body).unwrap())
    }

    fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> Answer {
        self.post(path, key, "application/json", body.to_string().as_bytes())
    }

    fn op(&self) -> Option<&str> {
        Some(&self.operator)
    }

    /// Registers the community's households through the API, each with a
    /// regtest payout address but the last.
    fn register(&self, community: &Community) {
        for (i, id) in community.ids().iter().enumerate() {
            let mut p = json!({"id": id.as_str(), "name": format!("Household {i}"),
                "kind": "household", "joined": START});
            if i + 1 < HOUSEHOLDS {
                p["address"] = json!(regtest_address(i as u64, OutputType::P2wpkh).as_str());
                p["network"] = json!("regtest");
            }
            let a = self.post_json("/api/v1/prosumers", self.op(), &p);
            assert_eq!(a.status, 201, "{:?}", String::from_utf8_lossy(&a.body));
            assert_eq!(a.json()["id"], id.as_str());
        }
    }

    /// A prosumer key through the API.
    fn key_for(&self, prosumer: &str) -> String {
        let a = self.post_json(
            "/api/v1/keys",
            self.op(),
            &json!({"role": "prosumer", "prosumer": prosumer}),
        );
        assert_eq!(a.status, 201);
        a.json()["secret"].as_str().unwrap().to_owned()
    }
}

fn community() -> Community {
    Community::new(
        HOUSEHOLDS,
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        DAYS,
        11,
    )
}

fn day_of(r: &Reading) -> i64 {
    (r.timeframe().start().timestamp() - 1_780_272_000) / 86_400
}

fn json_body(readings: &[&Reading]) -> Vec<u8> {
    let rows: Vec<Value> = readings
        .iter()
        .map(|r| {
            json!({"prosumer": r.prosumer().as_str(),
                "start": r.timeframe().start().to_rfc3339_opts(SecondsFormat::Secs, true),
                "produced_wh": r.produced().get(), "consumed_wh": r.consumed().get()})
        })
        .collect();
    serde_json::to_vec(&rows).unwrap()
}

fn csv_body(readings: &[&Reading]) -> Vec<u8> {
    let mut out = String::from("prosumer,start,produced_wh,consumed_wh\n");
    for r in readings {
        out.push_str(&format!(
            "{},{},{},{}\n",
            r.prosumer(),
            r.timeframe()
                .start()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            r.produced().get(),
            r.consumed().get()
        ));
    }
    out.into_bytes()
}

fn arrow_body(readings: &[&Reading]) -> Vec<u8> {
    arrow_body_in(readings, Some("UTC"))
}

/// Readings as an Arrow IPC stream, `start` in time zone `tz` (none: a
/// naive timestamp).
fn arrow_body_in(readings: &[&Reading], tz: Option<&str>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("prosumer", DataType::Utf8, false),
        Field::new(
            "start",
            DataType::Timestamp(TimeUnit::Second, tz.map(Into::into)),
            false,
        ),
        Field::new("produced_wh", DataType::Int64, false),
        Field::new("consumed_wh", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                readings.iter().map(|r| r.prosumer().as_str().to_owned()),
            )),
            Arc::new(
                TimestampSecondArray::from_iter_values(
                    readings.iter().map(|r| r.timeframe().start().timestamp()),
                )
                .with_timezone_opt(tz),
            ),
            Arc::new(Int64Array::from_iter_values(
                readings.iter().map(|r| r.produced().get()),
            )),
            Arc::new(Int64Array::from_iter_values(
                readings.iter().map(|r| r.consumed().get()),
            )),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    out
}

/// Registers, records the three days (day 0 as JSON, day 1 as CSV, day 2
/// as Arrow) and clears them through the API.
fn month(s: &Server) -> Community {
    let c = community();
    s.register(&c);
    let readings = c.readings().unwrap();
    let day = |d: i64| {
        readings
            .iter()
            .filter(|r| day_of(r) == d)
            .collect::<Vec<_>>()
    };
    let per_day = HOUSEHOLDS * 96;
    for (d, (ctype, body)) in [
        ("application/json", json_body(&day(0))),
        ("text/csv; charset=utf-8", csv_body(&day(1))),
        ("application/vnd.apache.arrow.stream", arrow_body(&day(2))),
    ]
    .into_iter()
    .enumerate()
    {
        let a = s.post("/api/v1/readings", s.op(), ctype, &body).ok();
        assert_eq!(
            a,
            json!({"received": per_day, "inserted": per_day, "replaced": 0, "unchanged": 0}),
            "day {d} as {ctype}"
        );
    }
    let a = s
        .post_json(
            "/api/v1/clear",
            s.op(),
            &json!({"start": START, "end": END, "mechanism": "sdr"}),
        )
        .ok();
    assert_eq!(a, json!({"cleared": 288, "already_cleared": 0}));
    c
}

/// Every item of a paginated view, following `next`, checking the pages.
fn all_pages(s: &Server, first: &str, key: Option<&str>) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    loop {
        let page = s.get(&path, key).ok();
        let n = page["items"].as_array().unwrap().len();
        assert!(n <= page["limit"].as_u64().unwrap() as usize);
        assert_eq!(page["offset"].as_u64().unwrap() as usize, items.len());
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => {
                assert_eq!(page["total"].as_u64().unwrap() as usize, items.len());
                return items;
            }
        }
    }
}

fn is_decimal_string(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.parse::<rust_decimal::Decimal>().is_ok())
}

// ---------------------------------------------------------------- tests

fn service_endpoints(s: Server) {
    let a = s.get("/healthz", None);
    assert_eq!(a.ok(), json!({"status": "ok"}));
    let doc = s.get("/openapi.json", None).ok();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/api/v1/me",
        "/api/v1/prosumers",
        "/api/v1/prosumers/{id}",
        "/api/v1/prosumers/{id}/timeframes",
        "/api/v1/prosumers/{id}/daily",
        "/api/v1/readings",
        "/api/v1/clear",
        "/api/v1/grid",
        "/api/v1/grid/daily",
        "/api/v1/trades",
        "/api/v1/bills",
        "/api/v1/settlements",
        "/api/v1/settlements/{id}",
        "/api/v1/settlements/{id}/sendmany",
        "/api/v1/settlements/{id}/psbt",
        "/api/v1/settlements/{id}/invoices",
        "/api/v1/settlements/{id}/paid",
        "/api/v1/keys",
        "/api/v1/keys/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} not documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let docs = s.get("/docs/", None);
    assert_eq!(docs.status, 200);
    assert!(String::from_utf8_lossy(&docs.body).contains("swagger"));
    let init = s.get("/docs/swagger-initializer.js", None);
    assert_eq!(init.status, 200);
    let init = String::from_utf8_lossy(&init.body);
    assert!(init.contains("/openapi.json"), "{init}");
    // No online validator: nothing is fetched from outside.
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    assert_eq!(s.get("/", None).status, 200);
    // A method a path does not take: 405 with Allow.
    let put = s
        .agent
        .put(format!("{}/api/v1/grid", s.base))
        .header("Authorization", format!("Bearer {}", s.operator))
        .send(&b""[..])
        .unwrap();
    let put = Server::answer(put);
    put.problem(405, "method_not_allowed");
    assert!(put.header("allow").unwrap().contains("GET"));
    // An unknown path is a problem too.
    let p = s.get("/api/v1/nothing", s.op()).problem(404, "not_found");
    assert_eq!(p["detail"], "resource /api/v1/nothing not found");
}

fn unauthorized(s: Server) {
    for key in [None, Some("mgk_0123456789abcdef_nope"), Some("")] {
        let a = s.get("/api/v1/me", key);
        a.problem(401, "unauthorized");
        assert!(a.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    // Another scheme.
    let a = s
        .agent
        .get(format!("{}/api/v1/me", s.base))
        .header("Authorization", format!("Basic {}", s.operator))
        .call()
        .unwrap();
    Server::answer(a).problem(401, "unauthorized");
    // A revoked key.
    let key = s
        .post_json("/api/v1/keys", s.op(), &json!({"role": "operator"}))
        .ok();
    let secret = key["secret"].as_str().unwrap();
    assert_eq!(s.get("/api/v1/me", Some(secret)).ok()["role"], "operator");
    let id = key["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/api/v1/keys/{id}"), s.op()).status, 204);
    s.get("/api/v1/me", Some(secret))
        .problem(401, "unauthorized");
    s.get("/api/v1/grid?start=2026-06-01&end=2026-06-02", Some(secret))
        .problem(401, "unauthorized");
    // Every API endpoint wants a key.
    for path in [
        "/api/v1/prosumers",
        "/api/v1/grid/daily?start=2026-06-01&end=2026-06-02",
        "/api/v1/keys",
        "/api/v1/settlements/x",
    ] {
        s.get(path, None).problem(401, "unauthorized");
    }
    s.post_json("/api/v1/readings", None, &json!([]))
        .problem(401, "unauthorized");
}

fn workflow(s: Server) {
    let c = month(&s);
    let q = format!("start={START}&end={END}");
    assert_eq!(s.get("/api/v1/me", s.op()).ok()["role"], "operator");
    // Recording again changes nothing.
    let readings = c.readings().unwrap();
    let all: Vec<&Reading> = readings.iter().collect();
    let a = s
        .post("/api/v1/readings", s.op(), "text/csv", &csv_body(&all))
        .ok();
    assert_eq!(a["unchanged"], 288 * HOUSEHOLDS);
    assert_eq!(a["inserted"], 0);
    // Clearing again too.
    let a = s
        .post_json(
            "/api/v1/clear",
            s.op(),
            &json!({"start": START, "end": END, "mechanism": "sdr"}),
        )
        .ok();
    assert_eq!(a, json!({"cleared": 0, "already_cleared": 288}));

    // Prosumers.
    let list = all_pages(&s, "/api/v1/prosumers?limit=3", s.op());
    assert_eq!(list.len(), HOUSEHOLDS);
    let one = s.get("/api/v1/prosumers/house-0001", s.op()).ok();
    assert_eq!(one["kind"], "household");
    assert_eq!(one["network"], "regtest");
    assert_eq!(one["joined"], START);

    // The grid per timeframe, in pages of 100.
    let grid = all_pages(&s, &format!("/api/v1/grid?{q}&limit=100"), s.op());
    assert_eq!(grid.len(), 288);
    assert_eq!(grid[0]["start"], "2026-06-01T00:00:00Z");
    assert_eq!(grid[0]["end"], "2026-06-01T00:15:00Z");
    assert!(is_decimal_string(&grid[0]["import_price"]));
    for g in &grid {
        assert_eq!(
            g["shared_wh"].as_i64().unwrap() + g["import_wh"].as_i64().unwrap(),
            g["demand_wh"].as_i64().unwrap()
        );
    }
    // An offset skips, a limit bounds.
    let page = s
        .get(&format!("/api/v1/grid?{q}&limit=10&offset=280"), s.op())
        .ok();
    assert_eq!(page["items"].as_array().unwrap().len(), 8);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["items"][0], grid[280]);

    // Per day: the sums of the timeframes.
    let days = s.get(&format!("/api/v1/grid/daily?{q}"), s.op()).ok();
    let days = days["items"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    for (d, day) in days.iter().enumerate() {
        assert_eq!(day["date"], format!("2026-06-0{}", d + 1));
        assert_eq!(day["timeframes"], 96);
        for (k, kt) in [
            ("production_wh", "production_wh"),
            ("consumption_wh", "consumption_wh"),
            ("shared_wh", "shared_wh"),
            ("import_wh", "import_wh"),
            ("export_wh", "export_wh"),
        ] {
            let sum: i64 = grid[d * 96..(d + 1) * 96]
                .iter()
                .map(|g| g[kt].as_i64().unwrap())
                .sum();
            assert_eq!(day[k], sum, "{k} of day {d}");
        }
    }

    // One prosumer.
    let tfs = all_pages(
        &s,
        &format!("/api/v1/prosumers/house-0002/timeframes?{q}&limit=1000"),
        s.op(),
    );
    assert_eq!(tfs.len(), 288);
    assert!(tfs.iter().all(|t| t["prosumer"] == "house-0002"));
    assert!(tfs.iter().all(|t| is_decimal_string(&t["grid_amount"])));
    let pdays = s
        .get(&format!("/api/v1/prosumers/house-0002/daily?{q}"), s.op())
        .ok();
    let produced: i64 = pdays["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["produced_wh"].as_i64().unwrap())
        .sum();
    let expected: i64 = readings
        .iter()
        .filter(|r| r.prosumer().as_str() == "house-0002")
        .map(|r| r.produced().get())
        .sum();
    assert_eq!(produced, expected);

    // Trades: every trade's energy adds up to what was shared.
    let trades = all_pages(&s, &format!("/api/v1/trades?{q}&limit=500"), s.op());
    let traded: i64 = trades
        .iter()
        .map(|t| t["energy_wh"].as_i64().unwrap())
        .sum();
    let shared: i64 = grid.iter().map(|g| g["shared_wh"].as_i64().unwrap()).sum();
    assert_eq!(traded, shared);
    assert!(trades
        .iter()
        .all(|t| is_decimal_string(&t["price_per_kwh"])));
    let mine = all_pages(
        &s,
        &format!("/api/v1/trades?{q}&prosumer=house-0001"),
        s.op(),
    );
    assert!(mine
        .iter()
        .all(|t| t["seller"] == "house-0001" || t["buyer"] == "house-0001"));

    // Bills: the server's tariff, a tariff in the query, one in a body.
    let bills = s.get(&format!("/api/v1/bills?{q}"), s.op()).ok();
    assert_eq!(bills["currency"], "EUR");
    assert_eq!(bills["bills"].as_array().unwrap().len(), HOUSEHOLDS);
    for b in bills["bills"].as_array().unwrap() {
        for k in [
            "total",
            "baseline",
            "saving",
            "grid_fee",
            "fixed_fee",
            "purchases",
        ] {
            assert!(is_decimal_string(&b[k]), "{k}: {}", b[k]);
        }
        let (total, baseline, saving) = (
            b["total"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
            b["baseline"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
            b["saving"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap(),
        );
        assert_eq!(baseline - total, saving);
    }
    assert!(is_decimal_string(&bills["totals"]["total"]));
    let with_fee = s
        .get(
            &format!("/api/v1/bills?{q}&import_price=0.30&export_price=0.08&grid_fee=0.05&fixed_fee=3.00"),
            s.op(),
        )
        .ok();
    assert_ne!(with_fee["totals"]["total"], bills["totals"]["total"]);
    let posted = s
        .post_json(
            "/api/v1/bills",
            s.op(),
            &json!({"start": START, "end": END, "tariff": {"import_price": "0.30", "export_price": "0.08", "grid_fee": "0.05", "fixed_fee": "3.00"}}),
        )
        .ok();
    assert_eq!(posted, with_fee);
    s.get(&format!("/api/v1/bills?{q}&import_price=0.30"), s.op())
        .problem(400, "invalid_body");
    s.get(
        &format!("/api/v1/bills?start={START}&end=2026-06-05"),
        s.op(),
    )
    .problem(409, "period_not_cleared");

    // Settle.
    let operator = regtest_address(99, OutputType::P2wpkh);
    let body = json!({"start": START, "end": END, "rate": "60000", "rate_source": "test",
        "operator_address": operator.as_str(), "network": "regtest"});
    let a = s.post_json("/api/v1/settlements", s.op(), &body);
    assert_eq!(a.status, 201);
    let settlement = a.json();
    let id = settlement["id"].as_str().unwrap().to_owned();
    assert_eq!(settlement["start"], "2026-06-01T00:00:00Z");
    assert_eq!(settlement["rate"]["per_btc"], "60000");
    assert!(settlement["entries"].as_array().unwrap().len() == HOUSEHOLDS);
    assert!(settlement["grid_sats"].is_i64());
    // The same inputs: the same settlement.
    let again = s.post_json("/api/v1/settlements", s.op(), &body).ok();
    assert_eq!(again["id"], id.as_str());
    // Another rate for the same period conflicts.
    let mut other = body.clone();
    other["rate"] = json!("61000");
    s.post_json("/api/v1/settlements", s.op(), &other)
        .problem(409, "settlement_conflict");
    assert_eq!(
        s.get(&format!("/api/v1/settlements/{id}"), s.op()).ok(),
        settlement
    );
    s.get("/api/v1/settlements/nope", s.op())
        .problem(404, "not_found");

    let sendmany = s.get(&format!("/api/v1/settlements/{id}/sendmany"), s.op());
    assert_eq!(sendmany.status, 200);
    let sendmany = sendmany.json();
    let payouts = settlement["payouts_sats"].as_u64().unwrap();
    let btc: f64 = sendmany
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!((btc * 1e8).round() as u64, payouts);

    // Batches without inputs, then a PSBT paying them from one UTXO.
    let batches = s
        .get(
            &format!("/api/v1/settlements/{id}/psbt?sat_per_vb=2"),
            s.op(),
        )
        .ok();
    let b = &batches["batches"];
    if payouts > 0 {
        assert_eq!(b.as_array().unwrap().len(), 1);
        assert_eq!(b[0]["psbt"], Value::Null);
        assert_eq!(b[0]["sendmany"], sendmany);
        let funding = regtest_address(100, OutputType::P2wpkh);
        let txid = "aa".repeat(32);
        let utxo = format!("{txid}:0:{}:{}", payouts + 100_000, funding.as_str());
        let with = s
            .get(
                &format!("/api/v1/settlements/{id}/psbt?sat_per_vb=2&utxos={utxo}"),
                s.op(),
            )
            .ok();
        let psbt = with["batches"][0]["psbt"].as_str().unwrap();
        assert!(psbt.starts_with("cHNidP8"), "base64 of 'psbt\\xff': {psbt}");
        assert_eq!(
            with["batches"][0]["psbt_inputs"],
            json!([format!("{txid}:0")])
        );
        // Not enough: 422 naming what is needed.
        let poor = format!("{txid}:0:1000:{}", funding.as_str());
        s.get(
            &format!("/api/v1/settlements/{id}/psbt?utxos={poor}"),
            s.op(),
        )
        .problem(422, "insufficient_inputs");
        s.get(
            &format!("/api/v1/settlements/{id}/psbt?utxos=nonsense"),
            s.op(),
        )
        .problem(400, "invalid_query");
    }

    let invoices = s
        .get(&format!("/api/v1/settlements/{id}/invoices"), s.op())
        .ok();
    let invoiced: u64 = invoices
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert!(i["uri"].as_str().unwrap().starts_with("bitcoin:"));
            i["sats"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(invoiced, settlement["invoices_sats"].as_u64().unwrap());

    // Paid, once.
    let txid = "ab".repeat(32);
    let paid = s
        .post_json(
            &format!("/api/v1/settlements/{id}/paid"),
            s.op(),
            &json!({"txid": txid}),
        )
        .ok();
    assert_eq!(paid["paid_txid"], txid.as_str());
    assert_eq!(
        s.post_json(
            &format!("/api/v1/settlements/{id}/paid"),
            s.op(),
            &json!({"txid": txid})
        )
        .status,
        200
    );
    s.post_json(
        &format!("/api/v1/settlements/{id}/paid"),
        s.op(),
        &json!({"txid": "cd".repeat(32)}),
    )
    .problem(409, "already_paid");
    s.post_json(
        &format!("/api/v1/settlements/{id}/paid"),
        s.op(),
        &json!({"txid": "xyz"}),
    )
    .problem(422, "invalid_txid");
    s.post_json(
        "/api/v1/settlements/nope/paid",
        s.op(),
        &json!({"txid": txid}),
    )
    .problem(404, "not_found");
}

fn prosumer_role(s: Server) {
    let _ = month(&s);
    let q = format!("start={START}&end={END}");
    let key = s.key_for("house-0002");
    let k = Some(key.as_str());
    assert_eq!(
        s.get("/api/v1/me", k).ok(),
        json!({"role": "prosumer", "prosumer": "house-0002",
            "key_id": key.split('_').nth(1).unwrap()})
    );
    // Only itself.
    let list = s.get("/api/v1/prosumers", k).ok();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], "house-0002");
    assert_eq!(
        s.get("/api/v1/prosumers/house-0002", k).ok()["id"],
        "house-0002"
    );
    // Another prosumer's data is 404, with the body of an unknown id.
    for suffix in ["", "/timeframes?", "/daily?"] {
        let sep = if suffix.is_empty() { "" } else { &q };
        let other = s.get(&format!("/api/v1/prosumers/house-0001{suffix}{sep}"), k);
        let other_problem = other.problem(404, "not_found");
        let unknown = s.get(&format!("/api/v1/prosumers/house-9999{suffix}{sep}"), k);
        let unknown_problem = unknown.problem(404, "not_found");
        assert_eq!(
            other_problem["detail"]
                .as_str()
                .unwrap()
                .replace("house-0001", "X"),
            unknown_problem["detail"]
                .as_str()
                .unwrap()
                .replace("house-9999", "X")
        );
        // And the operator sees the same body for an unknown id.
        let op_unknown = s.get(
            &format!("/api/v1/prosumers/house-9999{suffix}{sep}"),
            s.op(),
        );
        assert_eq!(op_unknown.body, unknown.body);
    }
    // Its own views.
    let own = s
        .get(&format!("/api/v1/prosumers/house-0002/daily?{q}"), k)
        .ok();
    assert_eq!(own["items"].as_array().unwrap().len(), 3);
    assert_eq!(
        s.get(&format!("/api/v1/grid/daily?{q}"), k).ok(),
        s.get(&format!("/api/v1/grid/daily?{q}"), s.op()).ok()
    );
    let trades = all_pages(&s, &format!("/api/v1/trades?{q}"), k);
    assert!(!trades.is_empty());
    assert!(trades
        .iter()
        .all(|t| t["seller"] == "house-0002" || t["buyer"] == "house-0002"));
    s.get(&format!("/api/v1/trades?{q}&prosumer=house-0001"), k)
        .problem(404, "not_found");
    let bills = s.get(&format!("/api/v1/bills?{q}"), k).ok();
    assert_eq!(bills["bills"].as_array().unwrap().len(), 1);
    assert_eq!(bills["bills"][0]["prosumer"], "house-0002");
    assert_eq!(bills["totals"], Value::Null);

    // Operator-only endpoints are 404, like a path that is not there.
    let operator = regtest_address(99, OutputType::P2wpkh);
    let settlement = s
        .post_json(
            "/api/v1/settlements",
            s.op(),
            &json!({"start": START, "end": END, "rate": "60000",
                "operator_address": operator.as_str()}),
        )
        .ok();
    let id = settlement["id"].as_str().unwrap();
    for path in [
        "/api/v1/keys".to_owned(),
        format!("/api/v1/settlements/{id}"),
        format!("/api/v1/settlements/{id}/sendmany"),
        format!("/api/v1/settlements/{id}/psbt"),
    ] {
        let p = s.get(&path, k).problem(404, "not_found");
        assert_eq!(p["detail"], format!("resource {path} not found"));
    }
    for path in [
        "/api/v1/readings",
        "/api/v1/clear",
        "/api/v1/prosumers",
        "/api/v1/settlements",
        "/api/v1/keys",
    ] {
        let p = s.post_json(path, k, &json!({})).problem(404, "not_found");
        assert_eq!(p["detail"], format!("resource {path} not found"));
    }
    s.delete("/api/v1/keys/whatever", k)
        .problem(404, "not_found");
    // Invoices: only its own.
    let all = s
        .get(&format!("/api/v1/settlements/{id}/invoices"), s.op())
        .ok();
    let own: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["prosumer"] == "house-0002")
        .cloned()
        .collect();
    assert_eq!(
        s.get(&format!("/api/v1/settlements/{id}/invoices"), k).ok(),
        Value::Array(own)
    );
}

fn bad_bodies(s: Server) {
    let c = community();
    s.register(&c);
    let readings = c.readings().unwrap();
    let few: Vec<&Reading> = readings.iter().take(6).collect();
    let post = |ctype: &str, body: &[u8]| s.post("/api/v1/readings", s.op(), ctype, body);

    // Bad JSON; a bad field of row 1.
    post("application/json", b"[{").problem(400, "invalid_body");
    let mut rows: Value = serde_json::from_slice(&json_body(&few)).unwrap();
    rows[1]["produced_wh"] = json!(1.5);
    let p = post("application/json", rows.to_string().as_bytes()).problem(422, "bad_row");
    assert_eq!(
        (p["details"]["row"].clone(), p["details"]["field"].clone()),
        (json!(1), json!("produced_wh"))
    );
    // A CSV row naming its row, line and field.
    let mut csv = String::from_utf8(csv_body(&few)).unwrap();
    csv.push_str("house-0001,2026-06-01T02:00:00Z,12,lots\n");
    let p = post("text/csv", csv.as_bytes()).problem(422, "bad_row");
    assert_eq!(p["details"]["row"], 6);
    assert_eq!(p["details"]["line"], 8);
    assert_eq!(p["details"]["field"], "consumed_wh");
    let p = post("text/csv", b"prosumer,start,produced_wh\n").problem(400, "invalid_body");
    assert!(p["detail"].as_str().unwrap().contains("consumed_wh"));
    let p = post(
        "text/csv",
        b"prosumer,start,produced_wh,consumed_wh\nhouse-0001,yesterday,1,2\n",
    )
    .problem(422, "bad_row");
    assert_eq!(p["details"]["field"], "start");
    // Bad Arrow.
    post("application/vnd.apache.arrow.stream", b"not arrow").problem(400, "invalid_body");
    // Refused by the library, with the row: an unknown prosumer, a
    // negative value, a misaligned start.
    let mut rows: Value = serde_json::from_slice(&json_body(&few)).unwrap();
    rows[3]["prosumer"] = json!("house-0404");
    let p = post("application/json", rows.to_string().as_bytes()).problem(422, "unknown_prosumer");
    assert_eq!(p["details"]["row"], 3);
    let mut csv = String::from_utf8(csv_body(&few)).unwrap();
    csv.push_str("house-0002,2026-06-01T05:00:00Z,-5,2\n");
    let p = post("text/csv", csv.as_bytes()).problem(422, "negative_energy");
    assert_eq!(p["details"]["row"], 6);
    assert_eq!(p["details"]["id"], "house-0002");
    let mut rows: Value = serde_json::from_slice(&json_body(&few)).unwrap();
    rows[2]["start"] = json!("2026-06-01T00:07:00Z");
    let p =
        post("application/json", rows.to_string().as_bytes()).problem(422, "misaligned_timeframe");
    assert_eq!(p["details"]["row"], 2);
    // Nothing of a refused batch was stored.
    let a = post("application/json", &json_body(&few)).ok();
    assert_eq!(a["inserted"], 6);
    // Naive Arrow timestamps only with assume_utc.
    let next: Vec<&Reading> = readings.iter().skip(6).take(6).collect();
    let naive = arrow_body_in(&next, None);
    let p = post("application/vnd.apache.arrow.stream", &naive).problem(422, "bad_row");
    assert_eq!(p["details"]["field"], "start");
    let a = s
        .post(
            "/api/v1/readings?assume_utc=true",
            s.op(),
            "application/vnd.apache.arrow.stream",
            &naive,
        )
        .ok();
    assert_eq!(a["inserted"], 6);
    // The same readings as JSON with prosumer_id: unchanged.
    let rows: Value = serde_json::from_slice(&json_body(&next)).unwrap();
    let renamed: Vec<Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let id = r.as_object_mut().unwrap().remove("prosumer").unwrap();
            r["prosumer_id"] = id;
            r
        })
        .collect();
    let a = post("application/json", &serde_json::to_vec(&renamed).unwrap()).ok();
    assert_eq!(a["unchanged"], 6);
    // Another content type.
    post("application/xml", b"<readings/>").problem(415, "unsupported_media_type");
    // A reading that differs from a cleared one.
    let day: Vec<&Reading> = readings
        .iter()
        .filter(|r| r.timeframe().start().timestamp() < 1_780_272_000 + 3600)
        .collect();
    post("application/json", &json_body(&day)).ok();
    s.post_json(
        "/api/v1/clear",
        s.op(),
        &json!({"start": "2026-06-01T00:00:00Z", "end": "2026-06-01T01:00:00Z", "mechanism": "mmr"}),
    )
    .ok();
    let mut rows: Value = serde_json::from_slice(&json_body(&day)).unwrap();
    rows[5]["consumed_wh"] = json!(rows[5]["consumed_wh"].as_i64().unwrap() + 1);
    let p =
        post("application/json", rows.to_string().as_bytes()).problem(409, "conflicting_reading");
    assert_eq!(p["details"]["row"], 5);
    // Other bodies: JSON naming the field.
    let p = s
        .post_json(
            "/api/v1/clear",
            s.op(),
            &json!({"start": START, "end": END}),
        )
        .problem(400, "invalid_body");
    assert!(p["detail"].as_str().unwrap().contains("mechanism"), "{p}");
    s.post_json(
        "/api/v1/clear",
        s.op(),
        &json!({"start": START, "end": END, "mechanism": "auction"}),
    )
    .problem(422, "parse");
    s.post_json(
        "/api/v1/clear",
        s.op(),
        &json!({"start": "2026-06-01", "end": "2126-06-01", "mechanism": "sdr"}),
    )
    .problem(409, "timeframe_not_ended");
    s.post_json(
        "/api/v1/prosumers",
        s.op(),
        &json!({"id": "house-0001", "name": "again", "kind": "household", "joined": START}),
    )
    .problem(409, "duplicate_prosumer");
    s.post_json(
        "/api/v1/prosumers",
        s.op(),
        &json!({"id": "x y", "name": "bad", "kind": "household", "joined": START}),
    )
    .problem(422, "invalid_prosumer_id");
    s.post_json(
        "/api/v1/prosumers",
        s.op(),
        &json!({"id": "z", "name": "z", "kind": "castle", "joined": START}),
    )
    .problem(422, "unknown_prosumer_kind");
    // Queries.
    s.get("/api/v1/grid?start=2026-06-01", s.op())
        .problem(400, "invalid_query");
    s.get("/api/v1/grid?start=June&end=2026-06-02", s.op())
        .problem(400, "invalid_query");
    s.get("/api/v1/grid?start=2026-06-02&end=2026-06-01", s.op())
        .problem(422, "invalid_range");
    s.get(
        "/api/v1/grid?start=2026-06-01&end=2026-06-02&limit=0",
        s.op(),
    )
    .problem(400, "invalid_query");
    s.get(
        "/api/v1/grid?start=2026-06-01&end=2026-06-02&limit=10001",
        s.op(),
    )
    .problem(400, "invalid_query");
    s.get(
        "/api/v1/grid?start=2026-06-01&end=2026-06-02&limit=ten",
        s.op(),
    )
    .problem(400, "invalid_query");
}

fn too_large(s: Server) {
    let c = community();
    s.register(&c);
    let readings = c.readings().unwrap();
    let many: Vec<&Reading> = readings.iter().take(200).collect();
    let body = csv_body(&many);
    assert!(body.len() > 4096);
    let p = s
        .post("/api/v1/readings", s.op(), "text/csv", &body)
        .problem(413, "too_large");
    assert_eq!(p["details"]["limit"], 4096);
    let few: Vec<&Reading> = readings.iter().take(10).collect();
    assert_eq!(
        s.post("/api/v1/readings", s.op(), "text/csv", &csv_body(&few))
            .ok()["inserted"],
        10
    );
}

/// An amount-less regtest BOLT12 offer (`OFFER_A` of the Python tests,
/// made with the `lightning` crate's `OfferBuilder` from a fixed key).
const REGTEST_OFFER: &str = "lno1qgsqvgnwgcg35z6ee2h3yczraddm72xrfua9uve2rlrm9deu7xyfzrc2z3cxz7t0w468xgr0vcsx6etdvfjhygpjxytzzq7hjd334aa2pecfgwwagl7qqxkdpvrjwectvecw5552eq7tqynlfg";
/// A minimal mainnet offer (a test vector of the `lightning` crate).
const MAINNET_OFFER: &str = "lno1zcss9mk8y3wkklfvevcrszlmu23kfrxh49px20665dqwmn4p72pksese";

/// A member registered with a BOLT12 offer and no address, producing in
/// every timeframe: settled without `lightning_below_sats` its balance is
/// carried (no address); settled with it, paid over Lightning.
fn lightning(s: Server) {
    let c = community();
    s.register(&c);
    // Offers are checked when registering: for the network, and parsed.
    let member = |id: &str, offer: &str| {
        json!({"id": id, "name": "Lightning house", "kind": "household",
            "joined": START, "network": "regtest", "offer": offer})
    };
    let p = s
        .post_json("/api/v1/prosumers", s.op(), &member("ln-x", MAINNET_OFFER))
        .problem(422, "invalid_offer");
    assert_eq!(p["details"]["offer"], MAINNET_OFFER);
    assert!(
        p["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("not for regtest"),
        "{p}"
    );
    let p = s
        .post_json(
            "/api/v1/prosumers",
            s.op(),
            &member("ln-x", "lno1notanoffer"),
        )
        .problem(422, "invalid_offer");
    assert_eq!(p["details"]["offer"], "lno1notanoffer");
    s.get("/api/v1/prosumers/ln-x", s.op())
        .problem(404, "not_found");
    let registered = s
        .post_json(
            "/api/v1/prosumers",
            s.op(),
            &member("ln-house", REGTEST_OFFER),
        )
        .ok();
    assert_eq!(registered["offer"], REGTEST_OFFER);
    assert_eq!(registered["address"], Value::Null);
    assert_eq!(
        s.get("/api/v1/prosumers/ln-house", s.op()).ok()["offer"],
        REGTEST_OFFER
    );
    assert_eq!(
        s.get(&format!("/api/v1/prosumers/{}", c.ids()[0]), s.op())
            .ok()["offer"],
        Value::Null
    );

    // The community's readings and the member's: 1 kWh produced in each
    // timeframe, nothing consumed.
    let readings = c.readings().unwrap();
    let mut rows: Value =
        serde_json::from_slice(&json_body(&readings.iter().collect::<Vec<_>>())).unwrap();
    let first = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap();
    for i in 0..(DAYS as i64 * 96) {
        let start = first + chrono::Duration::minutes(15 * i);
        rows.as_array_mut()
            .unwrap()
            .push(json!({"prosumer": "ln-house",
            "start": start.to_rfc3339_opts(SecondsFormat::Secs, true),
            "produced_wh": 1000, "consumed_wh": 0}));
    }
    let a = s.post_json("/api/v1/readings", s.op(), &rows).ok();
    assert_eq!(a["inserted"], (HOUSEHOLDS + 1) * DAYS as usize * 96);
    s.post_json(
        "/api/v1/clear",
        s.op(),
        &json!({"start": START, "end": END, "mechanism": "sdr"}),
    )
    .ok();

    let operator = regtest_address(99, OutputType::P2wpkh);
    let settle = |start: &str, end: &str, threshold: Option<i64>| {
        let mut body = json!({"start": start, "end": end, "rate": "60000",
            "rate_source": "test", "operator_address": operator.as_str()});
        if let Some(t) = threshold {
            body["lightning_below_sats"] = json!(t);
        }
        s.post_json("/api/v1/settlements", s.op(), &body)
    };
    let entry = |settlement: &Value, id: &str| -> Value {
        settlement["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["prosumer"] == id)
            .unwrap_or_else(|| panic!("no entry of {id}: {settlement}"))
            .clone()
    };
    // A threshold that is not a whole number of sats: 400 naming it.
    let p = settle(START, "2026-06-02", Some(-1)).problem(400, "invalid_body");
    assert!(
        p["details"]["what"]
            .as_str()
            .unwrap()
            .contains("lightning_below_sats"),
        "{p}"
    );

    // Day 0 without a threshold: carried, no Lightning.
    let day0 = settle(START, "2026-06-02", None).ok();
    let e = entry(&day0, "ln-house");
    assert!(e["due"].as_i64().unwrap() > 0, "{e}");
    assert_eq!(e["action"], "carry");
    assert_eq!(e["reason"], "no_address");
    assert_eq!(e["carried_out"], e["due"]);
    assert!(e.get("offer").is_none(), "{e}");
    assert_eq!(day0["lightning_sats"], 0);
    assert_eq!(day0["lightning_payouts"], 0);
    let id0 = day0["id"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/api/v1/settlements/{id0}/lightning"), s.op())
            .ok(),
        json!({"settlement": id0, "payouts": [], "total_msat": 0})
    );
    let carried = e["carried_out"].as_i64().unwrap();

    // Days 1 and 2 with a threshold: the balance, the carried one
    // included, is paid over Lightning to the offer.
    let rest = settle("2026-06-02", END, Some(1)).ok();
    let e = entry(&rest, "ln-house");
    assert_eq!(e["carried_in"], carried);
    let due = e["due"].as_i64().unwrap();
    assert!(due > carried, "{e}");
    assert_eq!(e["action"], "lightning");
    assert_eq!(e["offer"], REGTEST_OFFER);
    assert_eq!(e["sats"], due);
    assert_eq!(e["address"], Value::Null);
    assert_eq!(e["reason"], Value::Null);
    assert_eq!(e["carried_out"], 0);
    assert_eq!(rest["lightning_sats"], due);
    assert_eq!(rest["lightning_payouts"], 1);
    // On-chain payouts are the `payout` entries only: the sendmany object
    // and payouts_sats leave the Lightning payout out.
    let onchain: u64 = rest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "payout")
        .map(|e| e["sats"].as_u64().unwrap())
        .sum();
    assert_eq!(rest["payouts_sats"], onchain);
    let id = rest["id"].as_str().unwrap();
    let sendmany = s
        .get(&format!("/api/v1/settlements/{id}/sendmany"), s.op())
        .json();
    let btc: f64 = sendmany
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!((btc * 1e8).round() as u64, onchain);
    // Stored as answered.
    assert_eq!(
        s.get(&format!("/api/v1/settlements/{id}"), s.op()).ok(),
        rest
    );
    // The same inputs again: the same settlement; without the threshold
    // it would pay otherwise, so it conflicts.
    assert_eq!(settle("2026-06-02", END, Some(1)).ok()["id"], id);
    settle("2026-06-02", END, None).problem(409, "settlement_conflict");

    // The Lightning payouts for the operator's node.
    let ln = s
        .get(&format!("/api/v1/settlements/{id}/lightning"), s.op())
        .ok();
    let msat = due as u64 * 1000;
    assert_eq!(
        ln,
        json!({"settlement": id, "total_msat": msat, "payouts": [{
            "prosumer": "ln-house", "offer": REGTEST_OFFER, "amount_msat": msat,
            "payer_note": "microgrid 2026-06-02..2026-06-04 payout ln-house"}]})
    );
    let key = s.key_for("ln-house");
    s.get(&format!("/api/v1/settlements/{id}/lightning"), Some(&key))
        .problem(404, "not_found");
    s.get("/api/v1/settlements/nope/lightning", s.op())
        .problem(404, "not_found");
    s.get(&format!("/api/v1/settlements/{id}/lightning"), None)
        .problem(401, "unauthorized");
}

fn keys_api(s: Server) {
    let c = community();
    s.register(&c);
    let created = s.post_json(
        "/api/v1/keys",
        s.op(),
        &json!({"role": "prosumer", "prosumer": "house-0003"}),
    );
    assert_eq!(created.status, 201);
    let created = created.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["prosumer"], "house-0003");
    let list = s.get("/api/v1/keys", s.op());
    let text = String::from_utf8_lossy(&list.body).into_owned();
    assert!(!text.contains(&secret) && !text.contains("argon2") && !text.contains(&s.operator));
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["role"], "operator");
    assert_eq!(list[1], {
        let mut k = created.clone();
        k.as_object_mut().unwrap().remove("secret");
        k
    });
    s.post_json(
        "/api/v1/keys",
        s.op(),
        &json!({"role": "prosumer", "prosumer": "house-0404"}),
    )
    .problem(400, "invalid_body");
    s.post_json("/api/v1/keys", s.op(), &json!({"role": "prosumer"}))
        .problem(400, "invalid_body");
    s.post_json("/api/v1/keys", s.op(), &json!({"role": "admin"}))
        .problem(400, "invalid_body");
    let id = created["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/api/v1/keys/{id}"), s.op()).status, 204);
    s.delete(&format!("/api/v1/keys/{id}"), s.op())
        .problem(404, "not_found");
    s.get("/api/v1/me", Some(&secret))
        .problem(401, "unauthorized");
}

// ---------------------------------------------------------------- backends

async fn memory() -> AnyStore {
    AnyStore::open("memory:").await.unwrap()
}

#[cfg(feature = "postgres")]
async fn postgres() -> AnyStore {
    static SCHEMAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let url = std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
        "MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/test-all, or ./scripts/databases run -- cargo test --all-features",
    );
    let n = SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let schema = format!(
        "srv{}_{}_{}",
        std::process::id(),
        n,
        chrono::Utc::now().timestamp_micros()
    );
    AnyStore::Postgres(
        microgrid_store::PostgresStore::open_in_schema(&url, &schema)
            .await
            .unwrap(),
    )
}

macro_rules! backend {
    ($name:ident, $store:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn service_endpoints() {
                super::service_endpoints(Server::start($store, None));
            }
            #[test]
            fn unauthorized() {
                super::unauthorized(Server::start($store, None));
            }
            #[test]
            fn workflow() {
                super::workflow(Server::start($store, None));
            }
            #[test]
            fn prosumer_role() {
                super::prosumer_role(Server::start($store, None));
            }
            #[test]
            fn bad_bodies() {
                super::bad_bodies(Server::start($store, None));
            }
            #[test]
            fn too_large() {
                super::too_large(Server::start($store, Some(4096)));
            }
            #[test]
            fn lightning() {
                super::lightning(Server::start($store, None));
            }
            #[test]
            fn keys_api() {
                super::keys_api(Server::start($store, None));
            }
        }
    };
}

backend!(on_memory, memory());
#[cfg(feature = "postgres")]
backend!(on_postgres, postgres());
