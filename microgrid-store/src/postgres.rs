//! PostgreSQL through `sqlx`: TIMESTAMPTZ for time, NUMERIC for money and
//! prices. Readings and allocations are written with `COPY ... FROM STDIN`
//! in the binary format, a few MB per message, in one transaction.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use microgrid_core::batch::{IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, IngestPlan, Prosumer, ProsumerId, Reading, Registry, TimeRange,
    TimeframeClearing, TimeframeSummary, Wh,
};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor};

use crate::error::{Result, StoreError};
use crate::rows::{corrupt, db, registry};
use crate::sql::{
    self, AllocationRecord, AllocationValue, ClearedRows, DenseRows, ProsumerRecord, ReadingRecord,
    ReadingValue, SummaryRecord, ValueRecord,
};
use crate::traits::{
    clear_not_done, settled_or_conflict, unwritten_payment, unwritten_voiding, ClearCounts,
    ClearFn, LedgerStore, ReadingStore, RegistryStore,
};

/// `url` without its `schema` query parameter, and that parameter's value.
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((head, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(value) => {
                schema = Some(value.to_owned());
                false
            }
            None => true,
        })
        .collect();
    if rest.is_empty() {
        (head.to_owned(), schema)
    } else {
        (format!("{head}?{}", rest.join("&")), schema)
    }
}

/// A store in a PostgreSQL database (in one schema of it).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://user@host/db` or
    /// `postgres://postgres@localhost/postgres?host=/socket/dir`) and
    /// migrates the `public` schema.
    ///
    /// A `schema=NAME` query parameter opens that schema instead
    /// ([`PostgresStore::open_in_schema`]):
    /// `postgres://ann@db/books?schema=community_a`.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let (url, schema) = take_schema(url);
        PostgresStore::open_in_schema(&url, schema.as_deref().unwrap_or("public")).await
    }

    /// Like [`PostgresStore::open`], in `schema` (created if missing), so
    /// that several grids can share one database.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<PostgresStore> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::bad_url(
                url,
                format!("schema name {schema:?} must be lower-case letters, digits and '_'"),
            ));
        }
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::bad_url(url, e.to_string()))?;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db("connecting to PostgreSQL"))?;
        // The schema name was checked above: lower-case letters, digits, underscores.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&admin)
        .await
        .map_err(db("creating the schema"))?;
        admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.options([("search_path", schema)]))
            .await
            .map_err(db("connecting to PostgreSQL"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(db("migrating the PostgreSQL schema"))?;
        Ok(PostgresStore { pool })
    }

    /// The first stored id of `batch`, as the error of an insert that hit
    /// a unique key.
    async fn duplicate(&self, batch: &[Prosumer], error: StoreError) -> StoreError {
        match sqlx::query_scalar(sql::PROSUMER_IDS)
            .fetch_all(&self.pool)
            .await
        {
            Ok(ids) => sql::duplicate_prosumer(batch, &ids.into_iter().collect(), error),
            Err(_) => error,
        }
    }
}

async fn summaries_in<'c>(
    e: impl PgExecutor<'c>,
    range: &TimeRange,
) -> Result<Vec<TimeframeSummary>> {
    let rows: Vec<SummaryRecord<DateTime<Utc>, i32, Decimal>> = sqlx::query_as(sql::SUMMARIES)
        .bind(range.start())
        .bind(range.end())
        .fetch_all(e)
        .await
        .map_err(db("loading timeframe summaries"))?;
    rows.into_iter().map(SummaryRecord::load).collect()
}

async fn cleared_in<'c>(
    e: impl PgExecutor<'c>,
    range: &TimeRange,
) -> Result<BTreeSet<DateTime<Utc>>> {
    let starts: Vec<DateTime<Utc>> = sqlx::query_scalar(sql::CLEARED)
        .bind(range.start())
        .bind(range.end())
        .fetch_all(e)
        .await
        .map_err(db("loading cleared timeframes"))?;
    Ok(starts.into_iter().collect())
}

/// The rows of `table` in `range` with `COPY (SELECT columns ...) TO
/// STDOUT` in the binary format, each row's fields handed to `row`: much
/// less work per row than a query's rows through sqlx. COPY takes no
/// parameters; the range goes in as whole seconds.
async fn copy_out<const N: usize>(
    conn: &mut PgConnection,
    columns: &str,
    table: &str,
    range: &TimeRange,
    operation: &'static str,
    mut row: impl FnMut([&[u8]; N]) -> Result<()> + Send,
) -> Result<()> {
    let statement = format!(
        "COPY (SELECT {columns} FROM {table} WHERE start >= to_timestamp({}) AND start < to_timestamp({})) \
         TO STDOUT (FORMAT binary)",
        range.start().timestamp(),
        range.end().timestamp()
    );
    let mut stream = conn.copy_out_raw(&statement).await.map_err(db(operation))?;
    let mut pending: Vec<u8> = Vec::new();
    let mut header = true;
    let mut failed = None;
    while let Some(chunk) = stream.try_next().await.map_err(db(operation))? {
        if failed.is_some() {
            // The stream is read to its end even after an error: a
            // connection left in the middle of a COPY is out of step.
            continue;
        }
        // The server sends a message per row; rows split across messages
        // are put together in `pending`.
        let parsed = if pending.is_empty() {
            parse_rows(&chunk, &mut header, &mut row)
                .map(|used| pending.extend_from_slice(&chunk[used..]))
        } else {
            pending.extend_from_slice(&chunk);
            parse_rows(&pending, &mut header, &mut row).map(|used| {
                pending.drain(..used);
            })
        };
        failed = parsed.err();
    }
    match failed {
        Some(e) => Err(e),
        None if header || !pending.is_empty() => Err(corrupt("COPY data", "truncated")),
        None => Ok(()),
    }
}

/// Hands the complete rows of binary COPY `data` to `row` and returns the
/// bytes used (a row cut off at the end is left for the next message).
fn parse_rows<const N: usize>(
    data: &[u8],
    header: &mut bool,
    row: &mut impl FnMut([&[u8]; N]) -> Result<()>,
) -> Result<usize> {
    let mut at = 0;
    if *header {
        // Signature (11 bytes), flags, extension length, extension.
        let Some(extension) = be::<4>(data, 15) else {
            return Ok(0);
        };
        if !data.starts_with(SIGNATURE) {
            return Err(corrupt(
                "COPY signature",
                String::from_utf8_lossy(&data[..11]),
            ));
        }
        let end = 19 + i32::from_be_bytes(extension).max(0) as usize;
        if data.len() < end {
            return Ok(0);
        }
        at = end;
        *header = false;
    }
    'rows: while let Some(count) = be::<2>(data, at) {
        let count = i16::from_be_bytes(count);
        if count == -1 {
            at += 2; // the trailer
            continue;
        }
        if usize::try_from(count).ok() != Some(N) {
            return Err(corrupt("COPY row width", count));
        }
        let mut fields: [&[u8]; N] = [&[]; N];
        let mut next = at + 2;
        for field in &mut fields {
            let Some(len) = be::<4>(data, next) else {
                break 'rows;
            };
            let len = usize::try_from(i32::from_be_bytes(len))
                .map_err(|_| corrupt("COPY field", "NULL"))?;
            let Some(bytes) = data.get(next + 4..next + 4 + len) else {
                break 'rows;
            };
            *field = bytes;
            next += 4 + len;
        }
        row(fields)?;
        at = next;
    }
    Ok(at)
}

/// `N` bytes of `data` at `at`, if there are that many.
fn be<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at + N)?.try_into().ok()
}

/// A binary TIMESTAMPTZ as Unix seconds.
fn seconds(field: &[u8]) -> Result<i64> {
    let micros = i64::from_be_bytes(
        field
            .try_into()
            .map_err(|_| corrupt("timestamp", field.len()))?,
    );
    Ok(micros.div_euclid(1_000_000) + PG_EPOCH)
}

/// A binary BIGINT.
fn int8(field: &[u8]) -> Result<i64> {
    Ok(i64::from_be_bytes(
        field
            .try_into()
            .map_err(|_| corrupt("bigint", field.len()))?,
    ))
}

/// A binary TEXT.
fn text(field: &[u8]) -> Result<&str> {
    std::str::from_utf8(field).map_err(|_| corrupt("text", String::from_utf8_lossy(field)))
}

/// The stored readings of `range` as dense rows by `registry`'s indices.
async fn dense_rows<'r>(
    conn: &mut PgConnection,
    range: &TimeRange,
    registry: &'r Registry,
    strict: bool,
) -> Result<DenseRows<'r>> {
    let mut rows = DenseRows::new(range, registry);
    copy_out(
        conn,
        "start, prosumer_id, length_minutes::bigint, produced_wh, consumed_wh",
        "readings",
        range,
        "loading readings",
        |[start, id, m, p, c]| {
            let r = ValueRecord {
                start: seconds(start)?,
                prosumer_id: text(id)?,
                length_minutes: int8(m)?,
                produced_wh: int8(p)?,
                consumed_wh: int8(c)?,
            };
            rows.add(r, strict)
        },
    )
    .await?;
    Ok(rows)
}

/// Inserts prosumers in one statement, `tail` deciding what a taken id
/// does; `position` follows the order of `batch`.
async fn insert_prosumers_in<'c>(
    e: impl PgExecutor<'c>,
    batch: &[Prosumer],
    tail: &str,
) -> std::result::Result<(), sqlx::Error> {
    let statement = format!(
        "{}SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::text[], $7::text[]){tail}",
        sql::INSERT_PROSUMERS
    );
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(batch.iter().map(|p| p.id().as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.name()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.kind().as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|p| p.joined()).collect::<Vec<NaiveDate>>())
        .bind(batch.iter().map(|p| p.left()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|p| p.payout().map(|a| a.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| p.payout().map(|a| a.network().as_str()))
                .collect::<Vec<_>>(),
        )
        .execute(e)
        .await?;
    Ok(())
}

const COPY_READINGS: &str = "COPY readings (start, prosumer_id, length_minutes, produced_wh, consumed_wh) FROM STDIN (FORMAT binary)";
const COPY_INCOMING_READINGS: &str = "COPY incoming_readings (start, prosumer_id, length_minutes, produced_wh, consumed_wh) FROM STDIN (FORMAT binary)";
const COPY_ALLOCATIONS: &str = "COPY allocations (start, prosumer_id, produced_wh, consumed_wh, community_wh) FROM STDIN (FORMAT binary)";

/// Writes readings: with `COPY` straight into the table when none of them
/// is stored (`new`), else through a temporary table and one
/// `INSERT ... ON CONFLICT DO UPDATE`.
async fn write_readings_in<'a>(
    conn: &mut PgConnection,
    readings: impl Iterator<Item = ReadingValue<'a>> + Send,
    new: bool,
) -> Result<()> {
    if new {
        copy_in(conn, COPY_READINGS, readings, "writing readings").await?;
        return Ok(());
    }
    sqlx::raw_sql("CREATE TEMPORARY TABLE incoming_readings (LIKE readings) ON COMMIT DROP")
        .execute(&mut *conn)
        .await
        .map_err(db("creating a table for incoming readings"))?;
    copy_in(conn, COPY_INCOMING_READINGS, readings, "writing readings").await?;
    sqlx::query(
        "INSERT INTO readings (start, prosumer_id, length_minutes, produced_wh, consumed_wh) \
         SELECT start, prosumer_id, length_minutes, produced_wh, consumed_wh FROM incoming_readings \
         ON CONFLICT (start, prosumer_id) DO UPDATE SET produced_wh = excluded.produced_wh, \
         consumed_wh = excluded.consumed_wh",
    )
    .execute(&mut *conn)
    .await
    .map_err(db("writing readings"))?;
    Ok(())
}

/// Inserts the summaries of timeframes not stored yet and returns their
/// starts. A concurrent writer of the same timeframe waits for this
/// transaction and then leaves it alone.
async fn insert_summaries(
    conn: &mut PgConnection,
    summaries: &[&TimeframeSummary],
) -> Result<HashSet<DateTime<Utc>>> {
    let wh = |energy: fn(&TimeframeSummary) -> Wh| -> Vec<i64> {
        summaries.iter().map(|s| energy(s).get()).collect()
    };
    let starts: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO timeframes (start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, \
         shared_wh, import_wh, export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price, \
         currency) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], \
         $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::int[], $11::int[], $12::numeric[], \
         $13::numeric[], $14::numeric[], $15::text[]) ON CONFLICT (start) DO NOTHING RETURNING start",
    )
    .bind(summaries.iter().map(|s| s.timeframe.start()).collect::<Vec<_>>())
    .bind(
        summaries
            .iter()
            .map(|s| sql::minutes(s.timeframe.length().minutes()))
            .collect::<Vec<_>>(),
    )
    .bind(wh(|s| s.production))
    .bind(wh(|s| s.consumption))
    .bind(wh(|s| s.supply))
    .bind(wh(|s| s.demand))
    .bind(wh(|s| s.shared))
    .bind(wh(|s| s.import))
    .bind(wh(|s| s.export))
    .bind(summaries.iter().map(|s| count(s.sellers)).collect::<Vec<_>>())
    .bind(summaries.iter().map(|s| count(s.buyers)).collect::<Vec<_>>())
    .bind(
        summaries
            .iter()
            .map(|s| s.grid.import().per_kwh())
            .collect::<Vec<_>>(),
    )
    .bind(
        summaries
            .iter()
            .map(|s| s.grid.export().per_kwh())
            .collect::<Vec<_>>(),
    )
    .bind(
        summaries
            .iter()
            .map(|s| s.community_price.known().map(|p| p.per_kwh()))
            .collect::<Vec<_>>(),
    )
    .bind(
        summaries
            .iter()
            .map(|s| s.currency.map(|c| c.to_string()))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db("saving timeframe summaries"))?;
    Ok(starts.into_iter().collect())
}

/// A count as PostgreSQL's INTEGER.
fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH: i64 = 946_684_800;
/// The first bytes of binary COPY data.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Bytes of COPY data per message.
const COPY_CHUNK: usize = 1 << 20;

/// Rows in PostgreSQL's binary COPY format.
struct Binary(Vec<u8>);

impl Binary {
    fn new() -> Binary {
        let mut buf = Vec::with_capacity(COPY_CHUNK + 1024);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension
        Binary(buf)
    }

    fn row(&mut self, fields: i16) -> &mut Binary {
        self.0.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Binary {
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// A TIMESTAMPTZ: microseconds since 2000-01-01 UTC.
    fn time(&mut self, unix_seconds: i64) -> &mut Binary {
        let micros = (unix_seconds - PG_EPOCH).saturating_mul(1_000_000);
        self.field(&micros.to_be_bytes())
    }

    fn text(&mut self, s: &str) -> &mut Binary {
        self.field(s.as_bytes())
    }

    fn int4(&mut self, v: i32) -> &mut Binary {
        self.field(&v.to_be_bytes())
    }

    fn int8(&mut self, v: i64) -> &mut Binary {
        self.field(&v.to_be_bytes())
    }
}

/// A row `COPY` can write.
trait CopyRow {
    fn encode(&self, out: &mut Binary);
}

impl CopyRow for ReadingValue<'_> {
    fn encode(&self, out: &mut Binary) {
        out.row(5)
            .time(self.start)
            .text(self.id)
            .int4(self.minutes)
            .int8(self.produced)
            .int8(self.consumed);
    }
}

impl CopyRow for AllocationValue<'_> {
    fn encode(&self, out: &mut Binary) {
        out.row(5)
            .time(self.start)
            .text(self.id)
            .int8(self.produced)
            .int8(self.consumed)
            .int8(self.community);
    }
}

/// Streams `rows` with `statement` (a `COPY ... FROM STDIN (FORMAT
/// binary)`); returns how many were written.
async fn copy_in<R: CopyRow>(
    conn: &mut PgConnection,
    statement: &str,
    rows: impl Iterator<Item = R> + Send,
    operation: &'static str,
) -> Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await.map_err(db(operation))?;
    let mut out = Binary::new();
    for row in rows {
        row.encode(&mut out);
        if out.0.len() >= COPY_CHUNK {
            copy.send(out.0.as_slice()).await.map_err(db(operation))?;
            out.0.clear();
        }
    }
    out.0.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(out.0.as_slice()).await.map_err(db(operation))?;
    copy.finish().await.map_err(db(operation))
}

impl RegistryStore for PostgresStore {
    async fn save_prosumer(&self, p: &Prosumer) -> Result<()> {
        insert_prosumers_in(&self.pool, std::slice::from_ref(p), sql::UPDATE_PROSUMER)
            .await
            .map_err(db("saving a prosumer"))
    }

    async fn registry(&self) -> Result<Registry> {
        let rows: Vec<ProsumerRecord<NaiveDate>> = sqlx::query_as(sql::REGISTRY)
            .fetch_all(&self.pool)
            .await
            .map_err(db("loading the registry"))?;
        registry(
            rows.into_iter()
                .map(ProsumerRecord::load)
                .collect::<Result<Vec<_>>>()?,
        )
    }

    async fn insert_prosumers(&self, batch: &[Prosumer]) -> Result<()> {
        if let Some(id) = sql::repeated_id(batch) {
            return Err(microgrid_core::Error::DuplicateProsumer(id.to_string()).into());
        }
        // One statement: all of it or nothing.
        if let Err(e) = insert_prosumers_in(&self.pool, batch, "").await {
            let unique = e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation());
            let error = db("inserting prosumers")(e);
            return Err(if unique {
                self.duplicate(batch, error).await
            } else {
                error
            });
        }
        Ok(())
    }
}

impl ReadingStore for PostgresStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting an ingest transaction"))?;
        let all: Vec<ReadingValue> = plan
            .insert
            .iter()
            .chain(&plan.replace)
            .map(ReadingValue::from)
            .collect();
        write_readings_in(&mut tx, all.into_iter(), false).await?;
        tx.commit().await.map_err(db("committing readings"))
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let rows: Vec<ReadingRecord<DateTime<Utc>, i32>> = sqlx::query_as(sql::READINGS)
            .bind(range.start())
            .bind(range.end())
            .fetch_all(&self.pool)
            .await
            .map_err(db("loading readings"))?;
        rows.into_iter().map(ReadingRecord::load).collect()
    }

    async fn ingest(
        &self,
        batch: &ValidReadings,
        registry: &Registry,
        cleared: &BTreeSet<DateTime<Utc>>,
    ) -> Result<IngestCounts> {
        let Some(span) = batch.try_span() else {
            return Ok(IngestCounts::default());
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting an ingest transaction"))?;
        // What is checked below stays true until this commits: ingests of
        // this store take turns (reads go on), and no timeframe is cleared
        // meanwhile.
        sqlx::raw_sql(
            "LOCK TABLE readings IN SHARE ROW EXCLUSIVE MODE; LOCK TABLE timeframes IN SHARE MODE",
        )
        .execute(&mut *tx)
        .await
        .map_err(db("locking readings for an ingest"))?;
        let own = cleared_in(&mut *tx, &span).await?;
        let is_cleared: Vec<bool> = span
            .timeframes()
            .map(|tf| cleared.contains(&tf.start()) || own.contains(&tf.start()))
            .collect();
        let stored = dense_rows(&mut tx, &span, registry, false)
            .await?
            .into_stored();
        let nothing_stored = stored.iter().all(Option::is_none);
        let (counts, writes) = sql::plan_writes(batch, registry, &stored, |k| is_cleared[k])?;
        if counts.inserted + counts.replaced > 0 {
            write_readings_in(&mut tx, writes, nothing_stored).await?;
        }
        tx.commit().await.map_err(db("committing readings"))?;
        Ok(counts)
    }

    async fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<Arc<ReadingRow>>> {
        let mut conn = self.pool.acquire().await.map_err(db("loading readings"))?;
        Ok(dense_rows(&mut conn, range, registry, true)
            .await?
            .into_rows())
    }
}

impl LedgerStore for PostgresStore {
    async fn save_clearing(&self, c: &TimeframeClearing) -> Result<bool> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        if insert_summaries(&mut tx, &[&c.summary]).await?.is_empty() {
            return Ok(false);
        }
        let allocations: Vec<AllocationValue> =
            c.allocations.iter().map(AllocationValue::from).collect();
        copy_in(
            &mut tx,
            COPY_ALLOCATIONS,
            allocations.into_iter(),
            "saving allocations",
        )
        .await?;
        tx.commit().await.map_err(db("committing a clearing"))?;
        Ok(true)
    }

    async fn save_cleared(
        &self,
        rows: &[(Arc<ReadingRow>, Arc<ClearedRow>)],
        registry: &Registry,
    ) -> Result<usize> {
        let rows = sql::first_of_each(rows);
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        let stored = store_new_clearings(&mut tx, rows, registry).await?;
        tx.commit().await.map_err(db("committing clearings"))?;
        Ok(stored)
    }

    async fn cleared_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>> {
        // One snapshot for summaries and allocations.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db("starting to load clearings"))?;
        let summaries = summaries_in(&mut *tx, range).await?;
        let mut rows = ClearedRows::new(range, registry, summaries)?;
        copy_out(
            &mut tx,
            "start, prosumer_id, produced_wh, consumed_wh, community_wh",
            "allocations",
            range,
            "loading allocations",
            |[start, id, p, c, community]| {
                rows.add(AllocationRecord {
                    start: seconds(start)?,
                    prosumer_id: text(id)?,
                    produced_wh: int8(p)?,
                    consumed_wh: int8(c)?,
                    community_wh: int8(community)?,
                })
            },
        )
        .await?;
        tx.commit().await.map_err(db("loading clearings"))?;
        Ok(rows.finish())
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        cleared_in(&self.pool, range).await
    }

    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        summaries_in(&self.pool, range).await
    }

    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        let summaries: HashMap<DateTime<Utc>, TimeframeSummary> = summaries_in(&self.pool, range)
            .await?
            .into_iter()
            .map(|s| (s.timeframe.start(), s))
            .collect();
        let rows = sqlx::query(sql::ALLOCATIONS)
            .bind(range.start())
            .bind(range.end())
            .bind(prosumer.map(|p| p.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(db("loading allocations"))?;
        rows.iter()
            .map(|row| {
                AllocationRecord::<DateTime<Utc>>::from_row(row)
                    .map_err(db("loading allocations"))?
                    .load(&summaries)
            })
            .collect()
    }

    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        let document = serde_json::to_value(s).map_err(db("encoding a settlement"))?;
        let inserted = sqlx::query(sql::SAVE_SETTLEMENT)
            .bind(&s.id)
            .bind(s.period.start())
            .bind(s.period.end())
            .bind(s.content_hash())
            .bind(s.paid_txid.as_deref())
            .bind(Json(document))
            .execute(&self.pool)
            .await;
        match inserted {
            Ok(_) => {}
            // exclusion_violation: settlements_one_per_period (migration 0004).
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23P01") => {}
            Err(e) => return Err(db("saving a settlement")(e)),
        }
        let by_id = self.settlement(&s.id).await?;
        if by_id.as_ref().is_some_and(Settlement::stands) {
            return Ok(by_id.unwrap_or_else(|| s.clone()));
        }
        let overlapping: Option<Json<Settlement>> = sqlx::query_scalar(sql::STANDING_OVERLAP)
            .bind(s.period.start())
            .bind(s.period.end())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("loading a settlement"))?;
        settled_or_conflict(s, by_id, overlapping.map(|d| d.0))
    }

    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        let doc: Option<Json<Settlement>> = sqlx::query_scalar(sql::SETTLEMENT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("loading a settlement"))?;
        Ok(doc.map(|d| d.0))
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        let doc: Option<Json<Settlement>> = sqlx::query_scalar(sql::LAST_SETTLEMENT)
            .bind(before)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("loading the last settlement"))?;
        Ok(doc.map(|d| d.0))
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_value(paid).map_err(db("encoding a settlement"))?;
        let written = sqlx::query(sql::SAVE_PAYMENT)
            .bind(paid.paid_txid.as_deref())
            .bind(Json(document))
            .bind(&paid.id)
            .execute(&self.pool)
            .await
            .map_err(db("marking a settlement paid"))?
            .rows_affected();
        if written == 1 {
            return Ok(());
        }
        unwritten_payment(self.settlement(&paid.id).await?, paid)
    }

    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        let Some(voiding) = &voided.voided else {
            return Ok(());
        };
        let document = serde_json::to_value(voided).map_err(db("encoding a settlement"))?;
        let written = sqlx::query(sql::SAVE_VOIDING)
            .bind(voiding.at)
            .bind(Json(document))
            .bind(&voided.id)
            .execute(&self.pool)
            .await
            .map_err(db("voiding a settlement"))?
            .rows_affected();
        if written == 1 {
            return Ok(());
        }
        unwritten_voiding(self.settlement(&voided.id).await?, voided)
    }

    async fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> Result<ClearCounts> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        // Readings stay as read until this commits: an ingest takes SHARE
        // ROW EXCLUSIVE on readings, which waits for this SHARE lock (other
        // clears and reads go on).
        sqlx::raw_sql("LOCK TABLE readings IN SHARE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db("locking readings for a clearing"))?;
        let done = cleared_in(&mut *tx, range).await?;
        let rows = dense_rows(&mut tx, range, registry, true)
            .await?
            .into_rows();
        let (pairs, already_cleared) = clear_not_done(range, rows, &done, clear)?;
        // A concurrent clear of the same range may have stored some first.
        let cleared = store_new_clearings(&mut tx, pairs.iter().collect(), registry).await?;
        tx.commit().await.map_err(db("committing clearings"))?;
        Ok(ClearCounts {
            cleared,
            already_cleared: already_cleared + pairs.len() - cleared,
        })
    }
}

/// Stores the clearings of `rows` whose timeframes are not stored yet
/// (summaries, then their allocations); returns how many. Only this
/// transaction writes allocations of the timeframes it inserted: they go
/// straight into the table.
async fn store_new_clearings(
    tx: &mut PgConnection,
    rows: Vec<&(Arc<ReadingRow>, Arc<ClearedRow>)>,
    registry: &Registry,
) -> Result<usize> {
    let summaries: Vec<&TimeframeSummary> = rows.iter().map(|(_, c)| &c.summary).collect();
    let new = insert_summaries(tx, &summaries).await?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(_, c)| new.contains(&c.summary.timeframe.start()))
        .collect();
    copy_in(
        tx,
        COPY_ALLOCATIONS,
        sql::allocation_values(&rows, registry),
        "saving allocations",
    )
    .await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_copy_rows_split_across_messages_are_put_together() {
        let mut data = Binary::new();
        for (id, v) in [("a", 1), ("bb", -2)] {
            data.row(2).text(id).int8(v);
        }
        data.0.extend_from_slice(&(-1i16).to_be_bytes());
        // Every split point: rows are parsed once, whole.
        for cut in 0..data.0.len() {
            let mut rows = Vec::new();
            let mut header = true;
            let mut add = |[id, v]: [&[u8]; 2]| {
                rows.push((text(id)?.to_owned(), int8(v)?));
                Ok(())
            };
            let used = parse_rows(&data.0[..cut], &mut header, &mut add).unwrap();
            let mut rest = data.0[used..cut].to_vec();
            rest.extend_from_slice(&data.0[cut..]);
            let used = parse_rows(&rest, &mut header, &mut add).unwrap();
            assert_eq!(used, rest.len(), "cut at {cut}");
            assert_eq!(rows, [("a".to_owned(), 1), ("bb".to_owned(), -2)]);
        }
        assert_eq!(seconds(&(-PG_EPOCH * 1_000_000).to_be_bytes()).unwrap(), 0);
    }

    /// Needs the test server (./scripts/databases run -- cargo test ...).
    #[tokio::test]
    async fn sql_store_rules() {
        let url = std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
            "MICROGRID_TEST_POSTGRES_URL is not set: run under ./scripts/databases run -- ...",
        );
        let schema = format!(
            "rules_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let store = PostgresStore::open_in_schema(&url, &schema).await.unwrap();
        sql::tests::sql_store_rules(store).await;
    }

    /// The rules of migration 0004 hold for raw SQL too.
    #[tokio::test]
    async fn the_database_itself_keeps_one_settlement_per_period() {
        let url = std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
            "MICROGRID_TEST_POSTGRES_URL is not set: run under ./scripts/databases run -- ...",
        );
        let schema = format!(
            "settled_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let joint = if url.contains('?') { '&' } else { '?' };
        let store = PostgresStore::open(&format!("{url}{joint}schema={schema}"))
            .await
            .unwrap();
        let pool = &store.pool;
        sql::tests::settlement_rules_hold_for_any_writer(
            |statement| async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(pool)
                    .await
                    .is_ok()
            },
            |t| format!("to_timestamp({t})"),
            || async {
                sqlx::query_scalar("SELECT COUNT(*) FROM settlements")
                    .fetch_one(pool)
                    .await
                    .unwrap()
            },
        )
        .await;
    }

    #[test]
    fn the_schema_parameter_is_taken_from_the_url() {
        assert_eq!(
            take_schema("postgres://a@h/db?host=/s&schema=x_1&sslmode=disable"),
            (
                "postgres://a@h/db?host=/s&sslmode=disable".to_owned(),
                Some("x_1".to_owned())
            )
        );
        assert_eq!(
            take_schema("postgres://a@h/db?schema=x"),
            ("postgres://a@h/db".to_owned(), Some("x".to_owned()))
        );
        assert_eq!(
            take_schema("postgres://a@h/db"),
            ("postgres://a@h/db".to_owned(), None)
        );
    }
}
