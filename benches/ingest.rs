//! Ingest 1 M readings into each store, next to PostgreSQL's own `COPY` of
//! the same rows through `psql`, in one run.
//!
//! Needs the database servers (it reads MICROGRID_TEST_POSTGRES_URL and
//! MICROGRID_TEST_MONGODB_URL):
//!
//! ```sh
//! ./scripts/databases run -- cargo bench -p microgrid-benches --bench ingest --features postgres,mongodb
//! ```
//!
//! Each store gets a fresh database; the time covers the whole `Grid::record`
//! call (validation against the registry, the ingest plan, the write).

use std::io::Write;
use std::time::Instant;

use chrono::NaiveDate;
use microgrid::simulate::Community;
use microgrid::store::{AnyStore, Grid, MongoStore, PostgresStore, Store};
use microgrid::TimeframeLength;

const HOUSEHOLDS: usize = 1_000;
const DAYS: u32 = 11; // 1,000 × 1,056 timeframes ≈ 1.06 M readings

async fn ingest<S: Store>(
    name: &str,
    grid: Grid<S>,
    community: &Community,
) -> Result<(), Box<dyn std::error::Error>> {
    for p in community.registry()?.iter() {
        grid.register(p.clone()).await?;
    }
    let readings = community.readings()?;
    let n = readings.len();
    let t = Instant::now();
    let report = grid.record(readings).await?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(report.inserted, n);
    println!(
        "{name:<28} {n:>9} readings {secs:>8.2} s {:>12.0} readings/s",
        n as f64 / secs
    );
    Ok(())
}

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: run under ./scripts/databases run -- ...").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let community = Community::new(
        HOUSEHOLDS,
        NaiveDate::from_ymd_opt(2026, 6, 1).ok_or("date")?,
        DAYS,
        5,
    );
    let length = TimeframeLength::default();
    let tag = format!("ingest_{}", std::process::id());
    ingest(
        "memory",
        Grid::new(AnyStore::open("memory:").await?, length),
        &community,
    )
    .await?;
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    let sqlite = format!("sqlite:{}", dir.join("ingest.db").display());
    ingest(
        "sqlite (file, WAL)",
        Grid::new(AnyStore::open(&sqlite).await?, length),
        &community,
    )
    .await?;
    let pg_url = env("MICROGRID_TEST_POSTGRES_URL")?;
    let pg = PostgresStore::open_in_schema(&pg_url, &tag).await?;
    ingest(
        "postgres (UNNEST batches)",
        Grid::new(pg, length),
        &community,
    )
    .await?;
    let mongo = mongodb::Client::with_uri_str(&env("MICROGRID_TEST_MONGODB_URL")?).await?;
    ingest(
        "mongodb (insert_many)",
        Grid::new(MongoStore::open_database(mongo, &tag).await?, length),
        &community,
    )
    .await?;

    // The floor for PostgreSQL: COPY of the same rows from a CSV file.
    let csv = dir.join("readings.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    for r in community.readings()? {
        writeln!(
            out,
            "{},{},15,{},{}",
            r.timeframe().start().to_rfc3339(),
            r.prosumer(),
            r.produced().get(),
            r.consumed().get()
        )?;
    }
    out.flush()?;
    let psql_url = pg_url.replacen("postgres://", "postgresql://", 1);
    let setup = format!(
        "CREATE TABLE {tag}.copied (start TIMESTAMPTZ, prosumer_id TEXT, length_minutes INT, produced_wh BIGINT, consumed_wh BIGINT, PRIMARY KEY (start, prosumer_id))"
    );
    let status = std::process::Command::new("psql")
        .arg(&psql_url)
        .arg("-qc")
        .arg(&setup)
        .status()?;
    if !status.success() {
        return Err("psql could not create the COPY table".into());
    }
    let t = Instant::now();
    let status = std::process::Command::new("psql")
        .arg(&psql_url)
        .arg("-qc")
        .arg(format!("\\copy {tag}.copied FROM '{}' CSV", csv.display()))
        .status()?;
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        return Err("psql \\copy failed".into());
    }
    let n = HOUSEHOLDS as f64 * f64::from(DAYS) * 96.0;
    println!(
        "{:<28} {n:>9} readings {secs:>8.2} s {:>12.0} readings/s",
        "postgres COPY via psql",
        n / secs
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
