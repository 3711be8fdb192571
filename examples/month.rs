//! A month end to end on any store, at any community size: register N
//! households, record June's readings day by day as columns, clear with
//! SDR, bill, settle on regtest, mark paid, and print the time and the
//! peak memory of each stage.
//!
//! ```sh
//! cargo run --release --example month -- memory: 10000
//! cargo run --release --example month -- sqlite:june.db 1000
//! cargo run --release --example month --features postgres -- 'postgres://postgres@localhost/postgres?host=/tmp/pgsocket' 1000
//! cargo run --release --example month --features mongodb -- mongodb://127.0.0.1:27017/microgrid 100
//! ```
//!
//! Arguments: the store URL (default `memory:`), the number of households
//! (default 20), and `--json` to print one line of measurements for
//! `benches/month_compare.py`. The URL is not printed (it may hold a
//! password).

use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use microgrid::settlement::ExchangeRate;
use microgrid::simulate::{regtest_address, Community};
use microgrid::store::Grid;
use microgrid::tariff::Tariff;
use microgrid::{GridPrices, Mechanism, Network, OutputType};
use rust_decimal::Decimal;

/// Peak resident memory of this process so far, in MB (Linux), else 0.
fn peak_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

struct Stages(Vec<(&'static str, Duration, u64)>);

impl Stages {
    fn done(&mut self, stage: &'static str, took: Duration, detail: String) {
        let peak = peak_mb();
        eprintln!(
            "{stage:>8}: {:>9.3} s  peak {peak:>6} MB  {detail}",
            took.as_secs_f64()
        );
        self.0.push((stage, took, peak));
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let url = positional
        .next()
        .cloned()
        .unwrap_or_else(|| "memory:".into());
    let households: usize = match positional.next() {
        Some(n) => n
            .parse()
            .map_err(|_| format!("not a number of households: {n}"))?,
        None => 20,
    };
    let grid = Grid::open(&url).await?;
    let mut stages = Stages(Vec::new());
    eprintln!(
        "{households} households × 30 days on a {} store",
        url.split(':').next().unwrap_or("?")
    );

    let june = NaiveDate::from_ymd_opt(2026, 6, 1).ok_or("bad date")?;
    let community = Community::new(households, june, 30, 2026);
    let known = grid.registry().await?;
    let new: Vec<_> = community
        .registry()?
        .iter()
        .enumerate()
        .filter(|(_, p)| known.get(p.id()).is_err())
        .map(|(i, p)| {
            p.clone()
                .with_payout(regtest_address(i as u64, OutputType::P2wpkh))
        })
        .collect();
    let t0 = Instant::now();
    let registered = new.len();
    grid.register_all(new).await?;
    stages.done("register", t0.elapsed(), format!("{registered} new"));

    // Meter data arrives day by day; only the store calls are timed.
    let registry = grid.shared_registry().await?;
    let (mut inserted, mut unchanged, mut took) = (0, 0, Duration::ZERO);
    for day in 0..30 {
        let columns = community.columns(&registry, day..day + 1)?;
        let t0 = Instant::now();
        let report = grid.record_columns(columns).await?;
        took += t0.elapsed();
        inserted += report.inserted;
        unchanged += report.unchanged;
    }
    stages.done(
        "record",
        took,
        format!("{inserted} readings ({unchanged} already stored)"),
    );

    let period = community.range()?;
    let tariff = Tariff::new(
        "EUR".parse()?,
        GridPrices::new("0.30".parse()?, "0.08".parse()?)?,
    )
    .with_grid_fee("0.02".parse()?)
    .with_fixed_fee(Decimal::new(150, 2))?;
    let t0 = Instant::now();
    let cleared = grid
        .clear(&period, &tariff, &Mechanism::SupplyDemandRatio)
        .await?;
    stages.done(
        "clear",
        t0.elapsed(),
        format!(
            "{} timeframes ({} already)",
            cleared.cleared, cleared.already_cleared
        ),
    );

    let t0 = Instant::now();
    let bills = grid.bill(&period, &tariff).await?;
    stages.done(
        "bill",
        t0.elapsed(),
        format!(
            "total {:.2} EUR = grid {:.2} + fees {:.2}; saving {:.2} EUR",
            bills.total(),
            bills.grid_leg,
            bills.fees,
            bills.saving()
        ),
    );

    let at = Utc
        .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
        .single()
        .ok_or("bad time")?;
    let rate = ExchangeRate::new(Decimal::from(90_000), tariff.currency(), "example", at)?;
    let operator = regtest_address(999_999_999, OutputType::P2wpkh);
    let t0 = Instant::now();
    let s = grid
        .settle(&period, &tariff, &rate, Network::Regtest, &operator)
        .await?;
    stages.done(
        "settle",
        t0.elapsed(),
        format!(
            "{}: {} payouts, {} invoices, conserved: {}",
            s.id(),
            s.payouts().len(),
            s.invoices().len(),
            s.is_conserved()
        ),
    );

    let t0 = Instant::now();
    let summaries = grid.summary_columns(&period).await?;
    let (mine, _) = grid
        .allocation_columns(&period, Some(&[community.ids()[0].clone()]))
        .await?;
    let day = microgrid::TimeRange::new(
        period.start(),
        period.start() + chrono::Duration::days(1),
        period.length(),
    )?;
    let (trades, _) = grid.trade_columns(&day, None).await?;
    stages.done(
        "views",
        t0.elapsed(),
        format!(
            "{} timeframes, {} rows of one prosumer, {} trades on day one",
            summaries.len(),
            mine.len(),
            trades.len()
        ),
    );
    let paid = grid.mark_paid(s.id(), &"0f".repeat(32)).await?;
    eprintln!(
        "marked paid by {}",
        paid.paid_by().map_or("-".to_owned(), |t| t.to_string())
    );

    // The memory floor: the month's readings (produced and consumed, i64)
    // copied once, into fresh memory and into buffers already touched.
    let cells = households * period.len();
    let source: Vec<i64> = (0..2 * cells as i64).collect();
    let t0 = Instant::now();
    let fresh = source.clone();
    let copy_fresh = t0.elapsed();
    let mut warm = vec![1i64; source.len()];
    let t0 = Instant::now();
    warm.copy_from_slice(&source);
    let copy_warm = t0.elapsed();
    eprintln!(
        "   floor: copying the {cells} readings once takes {:.3} s into fresh memory, {:.3} s into touched buffers",
        copy_fresh.as_secs_f64(),
        copy_warm.as_secs_f64()
    );
    drop((source, fresh, warm));

    let pipeline: f64 = stages
        .0
        .iter()
        .filter(|(name, _, _)| *name != "views")
        .map(|(_, d, _)| d.as_secs_f64())
        .sum();
    // Peak before the floor measurement's own buffers are counted.
    let peak = stages.0.iter().map(|s| s.2).max().unwrap_or(0);
    eprintln!("register + record + clear + bill + settle: {pipeline:.3} s, peak {peak} MB");
    if json {
        let fields: Vec<String> = stages
            .0
            .iter()
            .map(|(name, d, peak)| {
                format!(
                    "\"{name}_s\": {:.6}, \"{name}_peak_mb\": {peak}",
                    d.as_secs_f64()
                )
            })
            .collect();
        println!(
            "{{\"households\": {households}, \"pipeline_s\": {pipeline:.6}, \"peak_mb\": {peak}, \"copy_fresh_s\": {:.6}, \"copy_warm_s\": {:.6}, {}}}",
            copy_fresh.as_secs_f64(),
            copy_warm.as_secs_f64(),
            fields.join(", ")
        );
    }
    Ok(())
}
