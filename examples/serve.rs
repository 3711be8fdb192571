//! Serve the books of a microgrid over HTTP: the API under `/api/v1`, its
//! OpenAPI document at `/openapi.json`, Swagger UI at `/docs/` and the
//! page at `/`.
//!
//! On an empty store it first simulates a month (20 households by default,
//! the last full calendar month: registered with regtest payout
//! addresses, recorded and cleared with SDR) and creates a key for the
//! first household. It creates an operator key when there is none. It
//! prints each new key once, and the page's URL with the key and the month
//! in its fragment (`/#key=...&start=...&end=...`: a browser never sends
//! the fragment, so the key stays out of request lines and proxy logs).
//!
//! Run:
//!
//! ```text
//! cargo run --example serve --features server -- [STORE_URL] [--listen 127.0.0.1:8080]
//!     [--keys FILE] [--simulate N] [--month YYYY-MM] [--body-limit-mib 64]
//! ```
//!
//! (`--features server,postgres` for a `postgres://` store.) Ctrl-C stops it
//! gracefully. Requests are logged (method, path, status, time) to stderr,
//! never with a key.

use std::net::SocketAddr;

use chrono::{Datelike, Months, NaiveDate, Utc};
use clap::Parser;
use microgrid::server::axum;
use microgrid::server::{router, AppState, KeyRing, Role};
use microgrid::simulate::{regtest_address, Community};
use microgrid::store::error::redact_url;
use microgrid::store::Grid;
use microgrid::tariff::Tariff;
use microgrid::{GridPrices, Mechanism, OutputType};

/// Serve a microgrid's books over HTTP.
#[derive(Debug, Parser)]
#[command(name = "serve")]
struct Args {
    /// The store: memory:, sqlite:FILE, postgres://..., mongodb://...
    #[arg(default_value = "memory:")]
    store: String,
    /// The address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Keep the API keys in this JSON file (default: in memory only).
    #[arg(long)]
    keys: Option<std::path::PathBuf>,
    /// Simulate a month of N households first (default 20 when the store
    /// has no prosumers; 0: never).
    #[arg(long)]
    simulate: Option<usize>,
    /// The simulated month, YYYY-MM (default: the last full calendar month).
    #[arg(long)]
    month: Option<String>,
    /// The largest request body, MiB.
    #[arg(long, default_value_t = 64)]
    body_limit_mib: usize,
}

/// The tariff of the simulation, and the server's default for bills.
fn tariff() -> Result<Tariff, microgrid::Error> {
    Tariff::new(
        "EUR".parse()?,
        GridPrices::new("0.30".parse()?, "0.08".parse()?)?,
    )
    .with_grid_fee("0.05".parse()?)
    .with_fixed_fee("3.00".parse().unwrap_or_default())
}

/// The first day of `--month`, or of the last full calendar month.
fn month_start(month: Option<&str>) -> Result<NaiveDate, String> {
    match month {
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
            .map_err(|e| format!("--month {m:?} is not YYYY-MM: {e}")),
        None => {
            let today = Utc::now().date_naive();
            let this = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)
                .ok_or("no first day of this month")?;
            this.checked_sub_months(Months::new(1))
                .ok_or_else(|| "no last month".to_owned())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let grid = Grid::open(&args.store).await?;
    let keys = match &args.keys {
        Some(path) => KeyRing::open(path)?,
        None => KeyRing::in_memory(),
    };
    let tariff = tariff()?;

    // A simulated month on an empty store.
    let registered = grid.refresh_registry().await?.len();
    let households = match args.simulate {
        Some(n) => n,
        None if registered == 0 => 20,
        None => 0,
    };
    let mut month = None;
    let mut first_member = None;
    if households > 0 && registered > 0 {
        println!(
            "not simulating: the store has {registered} prosumers already (--simulate needs an empty store)"
        );
    } else if households > 0 {
        let start = month_start(args.month.as_deref())?;
        let end = start
            .checked_add_months(Months::new(1))
            .ok_or("no next month")?;
        let days = u32::try_from((end - start).num_days())?;
        let community = Community::new(households, start, days, 42);
        let members: Vec<_> = community
            .registry()?
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.clone()
                    .with_payout(regtest_address(i as u64, OutputType::P2wpkh))
            })
            .collect();
        first_member = members.first().map(|p| p.id().clone());
        grid.register_all(members).await?;
        let registry = grid.shared_registry().await?;
        let mut readings = 0;
        // A week at a time: bounded batches for any community size.
        for week in (0..days).step_by(7) {
            let columns = community.columns(&registry, week..(week + 7).min(days))?;
            readings += grid.record_columns(columns).await?.inserted;
        }
        let range = community.range()?;
        let cleared = grid
            .clear(&range, &tariff, &Mechanism::SupplyDemandRatio)
            .await?;
        println!(
            "simulated {households} households, {start} to {end}: {readings} readings, {} timeframes cleared (sdr)",
            cleared.cleared
        );
        month = Some((start, end));
    }

    // Keys, each secret printed once.
    let mut operator_key = None;
    if !keys.has_operator() {
        let (_, secret) = keys.create(Role::Operator)?;
        println!("operator key: {}", secret.expose());
        operator_key = Some(secret);
    } else {
        println!(
            "operator key: the one(s) in {} (not shown again)",
            args.keys
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let member_key = match &first_member {
        Some(id) => {
            let (_, secret) = keys.create(Role::Prosumer(id.clone()))?;
            println!("prosumer key ({id}): {}", secret.expose());
            Some((id.clone(), secret))
        }
        None => None,
    };

    let state = AppState::new(grid, keys)
        .with_tariff(tariff)
        .with_body_limit(args.body_limit_mib << 20);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("serving {} on {url}", redact_url(&args.store));
    if let (Some((id, secret)), Some((start, end))) = (&member_key, month) {
        println!(
            "page ({id}): {url}/#key={}&start={start}&end={end}",
            secret.expose()
        );
    }
    if let (Some(secret), Some((start, end))) = (&operator_key, month) {
        println!(
            "page (operator): {url}/#key={}&start={start}&end={end}",
            secret.expose()
        );
    }
    println!("API docs: {url}/docs/");
    println!("OpenAPI: {url}/openapi.json");

    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping");
        })
        .await?;
    Ok(())
}
