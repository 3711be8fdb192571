//! PostgreSQL through `sqlx`: TIMESTAMPTZ for time, NUMERIC for money and
//! prices. Readings and allocations are written with `COPY ... FROM STDIN`
//! in the binary format, a few MB per message, in one transaction.
//!
//! # Partitions by month
//!
//! `readings`, `timeframes` (the summaries) and `allocations` are
//! partitioned by range of `start`, one partition per calendar month in
//! UTC (migration 0006), named `<table>_y<year>m<month>`. Every range
//! query of the store bounds `start` by constants or parameters, so the
//! planner reads only the partitions of the range's months (a year's
//! bills touch twelve months of allocations, whatever else is stored).
//!
//! A writer creates the partitions of the months it writes in inside its
//! own transaction, after the locks it takes anyway: an ingest those of
//! its batch's span, a clearing those of its range. A missing partition is
//! made as a table `LIKE` its parent and attached under a SHARE UPDATE
//! EXCLUSIVE lock of the parent, which admits one creator at a time (the
//! next looks again and finds it) and lets reads and writes of other
//! months go on. A write of more than a few months (a clearing of years)
//! gets its partitions made ahead, a few per transaction of their own, so
//! that no transaction holds thousands of locks. The store never makes a
//! default partition: a row of a month without its partition is an error,
//! not a row in the wrong place.
//!
//! The table locks that keep ingests and clearings apart are taken on the
//! parents only (`LOCK TABLE ONLY`): every writer of the store writes
//! through the parent, which takes its ROW EXCLUSIVE lock, and the cost
//! of a lock does not grow with the months stored.
//!
//! [`PostgresStore::month_partitions`] lists the partitions, and
//! [`PostgresStore::detach_month`] detaches a month that paid settlements
//! cover for archiving.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Utc};
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
    ClearFn, LedgerStore, ReadingStore, RegistryStore, WalletIndices,
};

/// `url` without its query parameter `name`, and that parameter's value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((head, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(
            |kv| match kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                Some(v) => {
                    value = Some(v.to_owned());
                    false
                }
                None => true,
            },
        )
        .collect();
    if rest.is_empty() {
        (head.to_owned(), value)
    } else {
        (format!("{head}?{}", rest.join("&")), value)
    }
}

/// `url` without its `schema` query parameter, and that parameter's value.
fn take_schema(url: &str) -> (String, Option<String>) {
    take_param(url, "schema")
}

/// The connections a store keeps open to PostgreSQL unless its URL says
/// otherwise (`pool_size=N`).
pub const DEFAULT_POOL_SIZE: u32 = 4;

/// The most connections a URL may ask for.
pub const MAX_POOL_SIZE: u32 = 64;

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
    /// `postgres://ann@db/books?schema=community_a`. A `pool_size=N`
    /// parameter (1 to [`MAX_POOL_SIZE`], default [`DEFAULT_POOL_SIZE`])
    /// sets how many connections the store keeps open: more serve more
    /// concurrent requests (the HTTP service), fewer leave the server's
    /// `max_connections` to others.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let (rest, schema) = take_schema(url);
        let (rest, pool_size) = take_param(&rest, "pool_size");
        let pool_size = match pool_size {
            None => DEFAULT_POOL_SIZE,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_POOL_SIZE).contains(&n) => n,
                _ => {
                    return Err(StoreError::bad_url(
                        url,
                        format!(
                        "pool_size must be a whole number from 1 to {MAX_POOL_SIZE}, not {text:?}"
                    ),
                    ))
                }
            },
        };
        PostgresStore::connect(&rest, schema.as_deref().unwrap_or("public"), pool_size).await
    }

    /// Like [`PostgresStore::open`], in `schema` (created if missing), so
    /// that several grids can share one database.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<PostgresStore> {
        PostgresStore::connect(url, schema, DEFAULT_POOL_SIZE).await
    }

    async fn connect(url: &str, schema: &str, pool_size: u32) -> Result<PostgresStore> {
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
            .max_connections(pool_size)
            .connect_with(options.options([("search_path", schema)]))
            .await
            .map_err(db("connecting to PostgreSQL"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(db("migrating the PostgreSQL schema"))?;
        Ok(PostgresStore { pool })
    }

    /// The monthly partitions of readings, timeframe summaries and
    /// allocations, by month and then table (`readings`, `timeframes`,
    /// `allocations`). The store creates a month's partitions when it
    /// first writes in that month; detached months are not listed (see
    /// [`PostgresStore::archived_months`]).
    pub async fn month_partitions(&self) -> Result<Vec<MonthPartition>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db("listing partitions"))?;
        let mut out = Vec::new();
        for table in PARTITIONED {
            for (month, partition) in partitions_of(&mut conn, table).await? {
                out.push(MonthPartition {
                    table,
                    month: month.date_naive(),
                    partition,
                });
            }
        }
        // Stable: the tables stay in PARTITIONED order within a month.
        out.sort_by_key(|p| p.month);
        Ok(out)
    }

    /// The months detached by [`PostgresStore::detach_month`], in time
    /// order.
    pub async fn archived_months(&self) -> Result<Vec<ArchivedMonth>> {
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>, Vec<String>)> =
            sqlx::query_as("SELECT month, detached_at, tables FROM archived_months ORDER BY month")
                .fetch_all(&self.pool)
                .await
                .map_err(db("loading archived months"))?;
        Ok(rows
            .into_iter()
            .map(|(month, detached_at, tables)| ArchivedMonth {
                month: month.date_naive(),
                detached_at,
                tables,
            })
            .collect())
    }

    /// Detaches the month of `month` (any day of it; months are UTC) from
    /// readings, summaries and allocations for archiving
    /// (`ALTER TABLE ... DETACH PARTITION`), and returns the partitions
    /// detached: they stay in the schema as standalone tables, to be
    /// dumped and dropped by the operator. The month's rows are then gone
    /// from every view and from billing, and the store writes no reading
    /// or clearing in that month again ([`StoreError::MonthArchived`]);
    /// [`PostgresStore::archived_months`] lists it.
    ///
    /// Only a month that is done with is detached: every instant of it
    /// must lie in a standing settlement of this database that is paid.
    /// Else [`StoreError::MonthNotDetachable`] names the month and the
    /// first part of it that is not settled, or the unpaid settlement
    /// over it (a period billed in local time may need the next or
    /// previous period paid too). A month detached already is not
    /// detachable either; a month without partitions (nothing was ever
    /// written in it) is [`StoreError::NotFound`].
    ///
    /// It locks the three tables (ACCESS EXCLUSIVE) for the moment it
    /// takes: reads and writes wait, and it waits for those under way.
    pub async fn detach_month(&self, month: NaiveDate) -> Result<Vec<MonthPartition>> {
        let start = month_of(month.and_time(NaiveTime::MIN).and_utc());
        let label = month_label(start);
        let refused = |reason: String| StoreError::MonthNotDetachable {
            month: label.clone(),
            reason,
        };
        let end = start
            .checked_add_months(Months::new(1))
            .ok_or_else(|| refused("it ends past the last representable time".into()))?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting to detach a month"))?;
        sqlx::raw_sql(
            "LOCK TABLE ONLY readings, ONLY timeframes, ONLY allocations IN ACCESS EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await
        .map_err(db("locking the partitioned tables"))?;
        let detached: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT detached_at FROM archived_months WHERE month = $1")
                .bind(start)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("loading archived months"))?;
        if let Some(at) = detached {
            return Err(refused(format!("it was detached at {at}")));
        }
        let mut out = Vec::new();
        for table in PARTITIONED {
            if let Some(partition) = partitions_of(&mut tx, table).await?.remove(&start) {
                out.push(MonthPartition {
                    table,
                    month: start.date_naive(),
                    partition,
                });
            }
        }
        if out.is_empty() {
            return Err(StoreError::NotFound {
                what: "partitions of month",
                key: label.clone(),
            });
        }
        let standing: Vec<Standing> = sqlx::query_as(
            "SELECT id, period_start, period_end, paid_txid FROM settlements \
                 WHERE voided_at IS NULL AND period_start < $2 AND period_end > $1 \
                 ORDER BY period_start",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("loading settlements"))?;
        if let Some(reason) = unpaid_part(start, end, &standing) {
            return Err(refused(reason));
        }
        for p in &out {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {} DETACH PARTITION {}",
                p.table,
                quoted(&p.partition)
            )))
            .execute(&mut *tx)
            .await
            .map_err(db("detaching a partition"))?;
        }
        sqlx::query("INSERT INTO archived_months (month, tables) VALUES ($1, $2)")
            .bind(start)
            .bind(out.iter().map(|p| p.partition.clone()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(db("recording an archived month"))?;
        tx.commit().await.map_err(db("detaching a month"))?;
        Ok(out)
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

/// The tables partitioned by month (migration 0006), in the order they are
/// locked: readings, then clearing results.
const PARTITIONED: [&str; 3] = ["readings", "timeframes", "allocations"];
/// The tables of clearing results, partitioned by month.
const CLEARING_TABLES: [&str; 2] = ["timeframes", "allocations"];

/// A monthly partition of one of the tables PostgreSQL keeps partitioned
/// by time (`readings`, `timeframes`, `allocations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthPartition {
    /// The partitioned table: `"readings"`, `"timeframes"` (summaries) or
    /// `"allocations"`.
    pub table: &'static str,
    /// The first day of the month (UTC).
    pub month: NaiveDate,
    /// The partition's own table, in the store's schema.
    pub partition: String,
}

/// A month detached for archiving by [`PostgresStore::detach_month`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMonth {
    /// The first day of the month (UTC).
    pub month: NaiveDate,
    /// When it was detached.
    pub detached_at: DateTime<Utc>,
    /// The tables it was detached as (standalone tables of the store's
    /// schema, until the operator archives and drops them).
    pub tables: Vec<String>,
}

/// The first instant (UTC) of the month of `t`.
fn month_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let day = t.date_naive();
    day.with_day(1)
        .unwrap_or(day)
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// The first instants of the months that `[start, end)` touches.
fn months_between(start: DateTime<Utc>, end: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
    let mut months = BTreeSet::new();
    let mut month = month_of(start);
    while month < end {
        months.insert(month);
        match month.checked_add_months(Months::new(1)) {
            Some(next) => month = next,
            None => break,
        }
    }
    months
}

/// A standing settlement: its id, period and payment.
type Standing = (String, DateTime<Utc>, DateTime<Utc>, Option<String>);

/// What of `[start, end)` is not covered by paid settlements, as the
/// reason a month is not detachable; `None` if all of it is. `standing`
/// holds the standing settlements overlapping it (id, period, payment) in
/// time order; standing settlements never overlap.
fn unpaid_part(start: DateTime<Utc>, end: DateTime<Utc>, standing: &[Standing]) -> Option<String> {
    let mut covered = start;
    for (id, from, to, paid) in standing {
        if *from > covered {
            return Some(format!("it is not settled from {covered} to {from}"));
        }
        if paid.is_none() {
            return Some(format!("settlement {id} over it is not paid"));
        }
        covered = covered.max(*to);
    }
    (covered < end).then(|| format!("it is not settled from {covered} to {end}"))
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A month as `YYYY-MM`, for errors.
fn month_label(month: DateTime<Utc>) -> String {
    month.format("%Y-%m").to_string()
}

/// The partitions of `table` (one of [`PARTITIONED`]) by the first
/// instant of their month. A partition is known by its bounds, not its
/// name: the lower bound is read back from the catalog.
async fn partitions_of(
    conn: &mut PgConnection,
    table: &str,
) -> Result<BTreeMap<DateTime<Utc>, String>> {
    let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT c.relname::text, \
         substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)')::timestamptz \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = $1::text::regclass",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("listing partitions"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, month)| Some((month?, name)))
        .collect())
}

/// The most partitions a writer's transaction creates. Each holds about
/// eight locks (the table, its index and TOAST table) until the commit,
/// and the server's lock table is shared by all sessions (sized for 64
/// per connection by default), so a transaction should not take
/// thousands.
const PARTITIONS_PER_TRANSACTION: usize = 24;

/// Before a write of many months (a clearing of years at once): creates
/// the missing partitions of `months` in transactions of their own, a few
/// at a time, so that the write's own transaction has at most
/// [`PARTITIONS_PER_TRANSACTION`] to create. Partitions made here stay
/// (empty) if the write then fails; that changes nothing stored.
async fn create_partitions_ahead(
    pool: &PgPool,
    tables: &[&str],
    months: &BTreeSet<DateTime<Utc>>,
) -> Result<()> {
    if months.len() * tables.len() <= PARTITIONS_PER_TRANSACTION {
        return Ok(());
    }
    let months: Vec<DateTime<Utc>> = months.iter().copied().collect();
    let per = (PARTITIONS_PER_TRANSACTION / tables.len().max(1)).max(1);
    for some in months.chunks(per) {
        let mut tx = pool.begin().await.map_err(db("adding partitions"))?;
        ensure_partitions(&mut tx, tables, &some.iter().copied().collect()).await?;
        tx.commit().await.map_err(db("adding partitions"))?;
    }
    Ok(())
}

/// Makes sure that each of `tables` (in [`PARTITIONED`] order) has a
/// partition for each of `months` (first instants, UTC), creating the
/// missing ones; [`StoreError::MonthArchived`] if one of the months was
/// detached for archiving.
///
/// Runs in the writer's transaction, after it locked what it writes (a
/// detach waits for it, or it for the detach). A missing partition is
/// created as a standalone table and attached, under a SHARE UPDATE
/// EXCLUSIVE lock of the parent: that lock lets reads and writes of the
/// other months go on (CREATE TABLE ... PARTITION OF would lock them out
/// with ACCESS EXCLUSIVE until the writer commits) and admits one creator
/// at a time, which looks again under the lock.
async fn ensure_partitions(
    conn: &mut PgConnection,
    tables: &[&str],
    months: &BTreeSet<DateTime<Utc>>,
) -> Result<()> {
    if months.is_empty() {
        return Ok(());
    }
    let wanted: Vec<DateTime<Utc>> = months.iter().copied().collect();
    let archived: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT month FROM archived_months WHERE month = ANY($1) ORDER BY month LIMIT 1",
    )
    .bind(&wanted)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("loading archived months"))?;
    if let Some(month) = archived {
        return Err(StoreError::MonthArchived {
            month: month_label(month),
        });
    }
    for table in tables {
        let existing = partitions_of(conn, table).await?;
        if months.iter().all(|m| existing.contains_key(m)) {
            continue;
        }
        // The table names are the constants of PARTITIONED.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE ONLY {table} IN SHARE UPDATE EXCLUSIVE MODE"
        )))
        .execute(&mut *conn)
        .await
        .map_err(db("locking a table to add partitions"))?;
        let existing = partitions_of(conn, table).await?;
        for &month in months.iter().filter(|m| !existing.contains_key(m)) {
            // The last month chrono can write is open-ended.
            let end = month
                .checked_add_months(Months::new(1))
                .map_or("MAXVALUE".to_owned(), |end| {
                    format!("to_timestamp({})", end.timestamp())
                });
            let name = quoted(&format!(
                "{table}_y{:04}m{:02}",
                month.year(),
                month.month()
            ));
            // The name is made of the table's name and numbers; the bounds
            // go in as Unix seconds, whatever the session's time zone.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS); \
                 ALTER TABLE {table} ATTACH PARTITION {name} \
                 FOR VALUES FROM (to_timestamp({})) TO ({end})",
                month.timestamp(),
            )))
            .execute(&mut *conn)
            .await
            .map_err(db("adding a partition"))?;
        }
    }
    Ok(())
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

/// `SELECT columns FROM table` in `range`, the range as constants (Unix
/// seconds) so that the planner keeps only the range's partitions.
fn range_select(columns: &str, table: &str, range: &TimeRange) -> String {
    format!(
        "SELECT {columns} FROM {table} WHERE start >= to_timestamp({}) AND start < to_timestamp({})",
        range.start().timestamp(),
        range.end().timestamp()
    )
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
        "COPY ({}) TO STDOUT (FORMAT binary)",
        range_select(columns, table, range)
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
        "{}SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::text[], $7::text[], $8::text[]){tail}",
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
        .bind(
            batch
                .iter()
                .map(|p| p.offer().map(|o| o.as_str()))
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
        let months = plan
            .insert
            .iter()
            .chain(&plan.replace)
            .map(|r| month_of(r.timeframe().start()))
            .collect();
        create_partitions_ahead(&self.pool, &["readings"], &months).await?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting an ingest transaction"))?;
        // A detach waits for this, or this for it (then the month is archived).
        sqlx::raw_sql("LOCK TABLE ONLY readings IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db("locking readings for an ingest"))?;
        ensure_partitions(&mut tx, &["readings"], &months).await?;
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
        // meanwhile. The parents only: every writer of the store writes
        // through them (ROW EXCLUSIVE on the parent), and locking every
        // month's partition would cost a lock per month stored.
        sqlx::raw_sql(
            "LOCK TABLE ONLY readings IN SHARE ROW EXCLUSIVE MODE; \
             LOCK TABLE ONLY timeframes IN SHARE MODE",
        )
        .execute(&mut *tx)
        .await
        .map_err(db("locking readings for an ingest"))?;
        ensure_partitions(
            &mut tx,
            &["readings"],
            &months_between(span.start(), span.end()),
        )
        .await?;
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
        lock_clearings(&mut tx).await?;
        let month = month_of(c.summary.timeframe.start());
        ensure_partitions(&mut tx, &CLEARING_TABLES, &BTreeSet::from([month])).await?;
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
        let months = rows
            .iter()
            .map(|(_, c)| month_of(c.summary.timeframe.start()))
            .collect();
        create_partitions_ahead(&self.pool, &CLEARING_TABLES, &months).await?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        lock_clearings(&mut tx).await?;
        ensure_partitions(&mut tx, &CLEARING_TABLES, &months).await?;
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

    /// In one transaction: the settlement and the wallet indices it gives
    /// out (migration 0008), unless a standing settlement overlaps it or
    /// another settlement gave one of the indices.
    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        let document = serde_json::to_value(s).map_err(db("encoding a settlement"))?;
        let mut tx = self.pool.begin().await.map_err(db("saving a settlement"))?;
        let inserted = sqlx::query(sql::SAVE_SETTLEMENT)
            .bind(s.id())
            .bind(s.period().start())
            .bind(s.period().end())
            .bind(s.content_hash())
            .bind(s.paid_by().map(|t| t.to_string()))
            .bind(Json(document))
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(done) if done.rows_affected() == 1 => {
                if let Err(e) = give_wallet_indices(&mut tx, s).await {
                    tx.rollback().await.ok();
                    return Err(e);
                }
                tx.commit().await.map_err(db("saving a settlement"))?;
            }
            Ok(_) => tx.rollback().await.map_err(db("saving a settlement"))?,
            // exclusion_violation: settlements_one_per_period (migration 0004).
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23P01") => {
                tx.rollback().await.ok();
            }
            Err(e) => return Err(db("saving a settlement")(e)),
        }
        let by_id = self.settlement(s.id()).await?;
        if by_id.as_ref().is_some_and(Settlement::stands) {
            return Ok(by_id.unwrap_or_else(|| s.clone()));
        }
        let overlapping: Option<Json<Settlement>> = sqlx::query_scalar(sql::STANDING_OVERLAP)
            .bind(s.period().start())
            .bind(s.period().end())
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

    async fn voided_settlements(&self) -> Result<Vec<Settlement>> {
        let documents: Vec<Json<Settlement>> = sqlx::query_scalar(sql::VOIDED_SETTLEMENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(db("loading the voided settlements"))?;
        Ok(documents.into_iter().map(|d| d.0).collect())
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_value(paid).map_err(db("encoding a settlement"))?;
        let written = sqlx::query(sql::SAVE_PAYMENT)
            .bind(paid.paid_by().map(|t| t.to_string()))
            .bind(Json(document))
            .bind(paid.id())
            .execute(&self.pool)
            .await
            .map_err(db("marking a settlement paid"))?
            .rows_affected();
        if written == 1 {
            return Ok(());
        }
        unwritten_payment(self.settlement(paid.id()).await?, paid)
    }

    async fn save_voiding(&self, voided: &Settlement) -> Result<()> {
        let Some(voiding) = &voided.voided() else {
            return Ok(());
        };
        let document = serde_json::to_value(voided).map_err(db("encoding a settlement"))?;
        let written = sqlx::query(sql::SAVE_VOIDING)
            .bind(voiding.at)
            .bind(Json(document))
            .bind(voided.id())
            .execute(&self.pool)
            .await
            .map_err(db("voiding a settlement"))?
            .rows_affected();
        if written == 1 {
            return Ok(());
        }
        unwritten_voiding(self.settlement(voided.id()).await?, voided)
    }

    async fn clear_with(
        &self,
        range: &TimeRange,
        registry: &Registry,
        clear: &ClearFn<'_>,
    ) -> Result<ClearCounts> {
        let months = months_between(range.start(), range.end());
        create_partitions_ahead(&self.pool, &CLEARING_TABLES, &months).await?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        // Readings stay as read until this commits: an ingest takes SHARE
        // ROW EXCLUSIVE on readings, which waits for this SHARE lock (other
        // clears and reads go on). The parent only, as in an ingest.
        sqlx::raw_sql("LOCK TABLE ONLY readings IN SHARE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db("locking readings for a clearing"))?;
        lock_clearings(&mut tx).await?;
        ensure_partitions(&mut tx, &CLEARING_TABLES, &months).await?;
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

/// Locks the tables of clearing results as their writers do (ROW
/// EXCLUSIVE, the parents only), before [`ensure_partitions`]: a detach
/// waits for this transaction, or it for the detach.
async fn lock_clearings(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("LOCK TABLE ONLY timeframes, ONLY allocations IN ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await
        .map_err(db("locking clearings"))?;
    Ok(())
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

/// Gives out wallet `$1`'s receive indices `[$2, $3)` and change indices
/// `[$4, $5)` to settlement `$6`, skipping those given already (a
/// concurrent transaction giving one of them is waited for). Rows go in
/// key order, so two such transactions never wait for each other both.
const GIVE_WALLET_INDICES: &str = "INSERT INTO wallet_addresses (wallet, keychain, idx, settlement_id) \
     SELECT $1::text, 'receive', i, $6::text FROM generate_series($2::bigint, $3::bigint - 1) AS i \
     UNION ALL SELECT $1::text, 'change', i, $6::text FROM generate_series($4::bigint, $5::bigint - 1) AS i \
     ON CONFLICT DO NOTHING";

/// Writes the wallet indices `s` gives out (if it was made with a wallet)
/// in the transaction that stores it:
/// [`StoreError::WalletAddressTaken`] if another settlement gave one.
async fn give_wallet_indices(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    s: &Settlement,
) -> Result<()> {
    let Some(w) = WalletIndices::of(s) else {
        return Ok(());
    };
    let given = sqlx::query(GIVE_WALLET_INDICES)
        .bind(w.wallet)
        .bind(i64::from(w.receive.start))
        .bind(i64::from(w.receive.end))
        .bind(i64::from(w.change.start))
        .bind(i64::from(w.change.end))
        .bind(s.id())
        .execute(&mut **tx)
        .await
        .map_err(db("giving out wallet addresses"))?
        .rows_affected();
    if given == w.count() {
        return Ok(());
    }
    let holder: Option<(String, i64, String)> = sqlx::query_as(sql::WALLET_INDEX_HOLDER)
        .bind(w.wallet)
        .bind(i64::from(w.receive.start))
        .bind(i64::from(w.receive.end))
        .bind(i64::from(w.change.start))
        .bind(i64::from(w.change.end))
        .bind(s.id())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("looking up wallet addresses"))?;
    Err(sql::taken(s, holder, given, w.count()))
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

    /// Needs the test server (./scripts/databases run -- cargo test ...).
    fn test_url() -> String {
        std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
            "MICROGRID_TEST_POSTGRES_URL is not set: run under ./scripts/databases run -- ...",
        )
    }

    /// A schema name of its own for a test.
    fn schema_for(tag: &str) -> String {
        format!(
            "{tag}_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        )
    }

    fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_time(NaiveTime::MIN)
            .and_utc()
    }

    fn quarters(from: DateTime<Utc>, to: DateTime<Utc>) -> TimeRange {
        TimeRange::new(from, to, microgrid_core::TimeframeLength::default()).unwrap()
    }

    fn tariff() -> microgrid_core::tariff::Tariff {
        microgrid_core::tariff::Tariff::new(
            "EUR".parse().unwrap(),
            microgrid_core::GridPrices::new("0.30".parse().unwrap(), "0.08".parse().unwrap())
                .unwrap(),
        )
    }

    /// A grid of `households` on a new schema, registered with payout
    /// addresses, its clock well after the spring of 2026, and the
    /// community's readings from `start` for `days` recorded.
    async fn spring_grid(
        tag: &str,
        households: usize,
        start: NaiveDate,
        days: u32,
    ) -> (crate::Grid<PostgresStore>, TimeRange) {
        use microgrid_core::simulate::{regtest_address, Community};
        let store = PostgresStore::open_in_schema(&test_url(), &schema_for(tag))
            .await
            .unwrap();
        let community = Community::new(households, start, days, 7);
        let later = utc(2026, 9, 1);
        let grid = crate::Grid::new(store, microgrid_core::TimeframeLength::default())
            .with_clock(crate::Clock::from_fn(move || later));
        for (i, p) in community.registry().unwrap().iter().enumerate() {
            grid.register(p.clone().with_payout(regtest_address(
                i as u64,
                microgrid_core::OutputType::P2wpkh,
            )))
            .await
            .unwrap();
        }
        grid.record(community.readings().unwrap()).await.unwrap();
        (grid, community.range().unwrap())
    }

    /// (table, month) of each partition.
    async fn partition_months(store: &PostgresStore) -> Vec<(&'static str, String)> {
        store
            .month_partitions()
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.table, p.month.format("%Y-%m").to_string()))
            .collect()
    }

    #[test]
    fn months_are_utc_calendar_months() {
        let months = months_between(utc(2026, 1, 31), utc(2026, 3, 1));
        assert_eq!(
            months.into_iter().collect::<Vec<_>>(),
            [utc(2026, 1, 1), utc(2026, 2, 1)]
        );
        assert_eq!(
            months_between(
                utc(2026, 2, 1),
                utc(2026, 2, 1) + chrono::Duration::minutes(15)
            ),
            BTreeSet::from([utc(2026, 2, 1)])
        );
        assert_eq!(
            month_of(utc(2199, 12, 31) + chrono::Duration::hours(23)),
            utc(2199, 12, 1)
        );
        assert_eq!(month_label(utc(1970, 1, 1)), "1970-01");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn a_month_is_detachable_when_paid_settlements_cover_it() {
        let (start, end) = (utc(2026, 3, 1), utc(2026, 4, 1));
        let s = |id: &str, from, to, paid: bool| {
            (id.to_owned(), from, to, paid.then(|| "tx".to_owned()))
        };
        assert_eq!(
            unpaid_part(start, end, &[]).unwrap(),
            format!("it is not settled from {start} to {end}")
        );
        let covered = [
            s("a", utc(2026, 2, 20), utc(2026, 3, 10), true),
            s("b", utc(2026, 3, 10), utc(2026, 4, 5), true),
        ];
        assert_eq!(unpaid_part(start, end, &covered), None);
        let gap = [
            s("a", utc(2026, 2, 20), utc(2026, 3, 10), true),
            s("b", utc(2026, 3, 11), utc(2026, 4, 5), true),
        ];
        assert_eq!(
            unpaid_part(start, end, &gap).unwrap(),
            format!(
                "it is not settled from {} to {}",
                utc(2026, 3, 10),
                utc(2026, 3, 11)
            )
        );
        let unpaid = [
            s("a", utc(2026, 3, 1), utc(2026, 3, 10), true),
            s("b", utc(2026, 3, 10), utc(2026, 4, 1), false),
        ];
        assert_eq!(
            unpaid_part(start, end, &unpaid).unwrap(),
            "settlement b over it is not paid"
        );
        let short = [s("a", utc(2026, 3, 1), utc(2026, 3, 31), true)];
        assert_eq!(
            unpaid_part(start, end, &short).unwrap(),
            format!("it is not settled from {} to {end}", utc(2026, 3, 31))
        );
    }

    /// Writes create the partitions of the months they touch, and only
    /// those; concurrent clears of a new month create its partitions once.
    #[tokio::test]
    async fn partitions_appear_on_demand_across_a_month_boundary() {
        // 2026-03-30 to 2026-04-02: readings in March and April.
        let start = NaiveDate::from_ymd_opt(2026, 3, 30).unwrap();
        let (grid, range) = spring_grid("ondemand", 3, start, 3).await;
        let store = grid.store().clone();
        assert_eq!(
            partition_months(&store).await,
            [
                ("readings", "2026-03".into()),
                ("readings", "2026-04".into())
            ]
        );
        // Three clears at once, all of them the first in April.
        let march = quarters(utc(2026, 3, 30), utc(2026, 4, 1));
        let t = tariff();
        let mech = microgrid_core::Mechanism::SupplyDemandRatio;
        let april = |d: u32| {
            quarters(
                utc(2026, 4, 1) + chrono::Duration::hours(i64::from(d) * 8),
                utc(2026, 4, 1) + chrono::Duration::hours(i64::from(d + 1) * 8),
            )
        };
        let thirds = [april(0), april(1), april(2)];
        let (a, b, c) = tokio::join!(
            grid.clear(&thirds[0], &t, &mech),
            grid.clear(&thirds[1], &t, &mech),
            grid.clear(&thirds[2], &t, &mech),
        );
        for r in [a, b, c] {
            assert_eq!(r.unwrap().cleared, 32);
        }
        assert_eq!(
            partition_months(&store).await,
            [
                ("readings", "2026-03".into()),
                ("readings", "2026-04".into()),
                ("timeframes", "2026-04".into()),
                ("allocations", "2026-04".into()),
            ]
        );
        grid.clear(&range, &t, &mech).await.unwrap();
        let months = partition_months(&store).await;
        assert_eq!(months.len(), 6, "{months:?}");
        // Every row is in its month's partition, and the views see them all.
        let mut conn = store.pool.acquire().await.unwrap();
        for table in PARTITIONED {
            let misplaced: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} WHERE tableoid::regclass::text <> \
                 '{table}_y' || to_char(start AT TIME ZONE 'UTC', 'YYYY\"m\"MM')"
            )))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(misplaced, 0, "{table}");
        }
        assert_eq!(grid.summaries(&range).await.unwrap().len(), 3 * 96);
        assert_eq!(grid.summaries(&march).await.unwrap().len(), 2 * 96);
        assert_eq!(store.readings(&range).await.unwrap().len(), 3 * 3 * 96);
        // Partitions have their parent's rules.
        let negative =
            sqlx::raw_sql("INSERT INTO readings VALUES ('2026-04-01 00:00:00+00', 'x', 15, -1, 0)")
                .execute(&mut *conn)
                .await;
        assert!(negative.is_err());
        let collation: String = sqlx::query_scalar(
            "SELECT collname::text FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation \
             WHERE a.attrelid = 'allocations_y2026m04'::regclass AND a.attname = 'prosumer_id'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(collation, "C");
    }

    /// A write of decades (here 40 years: 960 partitions, some 7,700
    /// locks if made in one transaction) gets its partitions created a few
    /// at a time ahead of it.
    #[tokio::test]
    async fn partitions_of_decades_are_created_a_few_at_a_time() {
        let store = PostgresStore::open_in_schema(&test_url(), &schema_for("decades"))
            .await
            .unwrap();
        let months = months_between(utc(2000, 1, 1), utc(2040, 1, 1));
        assert_eq!(months.len(), 480);
        create_partitions_ahead(&store.pool, &CLEARING_TABLES, &months)
            .await
            .unwrap();
        let made = store.month_partitions().await.unwrap();
        assert_eq!(made.len(), 960);
        assert_eq!(
            (made[0].partition.as_str(), made[959].partition.as_str()),
            ("timeframes_y2000m01", "allocations_y2039m12")
        );
        // The writer's own transaction finds them all.
        let mut tx = store.pool.begin().await.unwrap();
        lock_clearings(&mut tx).await.unwrap();
        ensure_partitions(&mut tx, &CLEARING_TABLES, &months)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.month_partitions().await.unwrap().len(), 960);
    }

    /// EXPLAIN of the store's range queries (the views, ingest's and
    /// billing's reads) names only the partitions of the range's months.
    #[tokio::test]
    async fn range_queries_touch_only_their_months() {
        let start = NaiveDate::from_ymd_opt(2026, 2, 27).unwrap();
        let (grid, range) = spring_grid("pruning", 2, start, 36).await;
        grid.clear(
            &range,
            &tariff(),
            &microgrid_core::Mechanism::SupplyDemandRatio,
        )
        .await
        .unwrap();
        let store = grid.store();
        assert_eq!(partition_months(store).await.len(), 9);
        let pool = &store.pool;
        let plan = |statement: String, range: TimeRange, prosumer: Option<&'static str>| async move {
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "EXPLAIN {statement}"
            )));
            if statement.contains("$1") {
                q = q.bind(range.start()).bind(range.end());
            }
            if statement.contains("$3") {
                q = q.bind(prosumer);
            }
            q.fetch_all(pool).await.unwrap().join("\n")
        };
        let mid_march = quarters(utc(2026, 3, 10), utc(2026, 3, 12));
        let over_april = quarters(utc(2026, 3, 31), utc(2026, 4, 2));
        for (range, touched, untouched) in [
            (mid_march, &["2026m03"][..], &["2026m02", "2026m04"][..]),
            (over_april, &["2026m03", "2026m04"][..], &["2026m02"][..]),
        ] {
            let statements = [
                ("readings", sql::READINGS.to_owned(), None),
                ("timeframes", sql::SUMMARIES.to_owned(), None),
                ("timeframes", sql::CLEARED.to_owned(), None),
                ("allocations", sql::ALLOCATIONS.to_owned(), None),
                ("allocations", sql::ALLOCATIONS.to_owned(), Some("h0001")),
                (
                    "readings",
                    range_select("start, prosumer_id, produced_wh", "readings", &range),
                    None,
                ),
                (
                    "allocations",
                    range_select("start, community_wh", "allocations", &range),
                    None,
                ),
            ];
            for (table, statement, prosumer) in statements {
                let text = plan(statement.clone(), range, prosumer).await;
                for month in touched {
                    assert!(
                        text.contains(&format!("{table}_y{month}")),
                        "{statement}\n{text}"
                    );
                }
                for month in untouched {
                    assert!(!text.contains(&format!("_y{month}")), "{statement}\n{text}");
                }
            }
        }
    }

    /// A month wholly settled and paid is detached: its rows leave the
    /// views and stay in the detached tables, and nothing is written in
    /// it again.
    #[tokio::test]
    async fn a_paid_month_is_detached_for_archiving() {
        use microgrid_core::settlement::ExchangeRate;
        use microgrid_core::simulate::regtest_address;
        let start = NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        let (grid, range) = spring_grid("detach", 3, start, 33).await;
        let t = tariff();
        grid.clear(&range, &t, &microgrid_core::Mechanism::SupplyDemandRatio)
            .await
            .unwrap();
        let store = grid.store().clone();
        let march = quarters(utc(2026, 3, 1), utc(2026, 4, 1));
        let mid_march = NaiveDate::from_ymd_opt(2026, 3, 15).unwrap();
        let refused_in = |e: StoreError, expected: &str, why: &str| match e {
            StoreError::MonthNotDetachable { month, reason } => {
                assert_eq!(month, expected);
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{other}"),
        };
        let refused = |e: StoreError, why: &str| refused_in(e, "2026-03", why);
        refused(
            store.detach_month(mid_march).await.unwrap_err(),
            "not settled from 2026-03-01 00:00:00 UTC to 2026-04-01 00:00:00 UTC",
        );
        let rate =
            ExchangeRate::new(Decimal::from(90_000), t.currency(), "test", march.end()).unwrap();
        let operator = regtest_address(77, microgrid_core::OutputType::P2wpkh);
        let s = grid
            .settle(
                &march,
                &t,
                &rate,
                microgrid_core::Network::Regtest,
                &operator,
            )
            .await
            .unwrap();
        refused(
            store.detach_month(mid_march).await.unwrap_err(),
            &format!("settlement {} over it is not paid", s.id()),
        );
        grid.mark_paid(s.id(), &"ab".repeat(32)).await.unwrap();
        let before = grid.summaries(&range).await.unwrap().len();
        let allocations_before = store.allocations(&range, None).await.unwrap().len();

        let detached = store.detach_month(mid_march).await.unwrap();
        let names: Vec<&str> = detached.iter().map(|p| p.partition.as_str()).collect();
        assert_eq!(
            names,
            [
                "readings_y2026m03",
                "timeframes_y2026m03",
                "allocations_y2026m03"
            ]
        );
        assert!(!partition_months(&store)
            .await
            .iter()
            .any(|(_, m)| m == "2026-03"));
        let archived = store.archived_months().await.unwrap();
        assert_eq!(archived.len(), 1);
        assert_eq!(
            archived[0].month,
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(archived[0].tables, names);

        // Gone from the views and billing reads ...
        assert!(grid.summaries(&march).await.unwrap().is_empty());
        assert!(store.allocations(&march, None).await.unwrap().is_empty());
        assert!(store.readings(&march).await.unwrap().is_empty());
        let registry = store.registry().await.unwrap();
        assert!(store
            .cleared_rows(&march, &registry)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            grid.summaries(&range).await.unwrap().len(),
            before - 31 * 96
        );
        assert_eq!(
            store.allocations(&range, None).await.unwrap().len(),
            allocations_before - 31 * 96 * 3
        );
        // ... and all there in the detached tables.
        for (table, rows) in [
            ("readings_y2026m03", 31 * 96 * 3),
            ("timeframes_y2026m03", 31 * 96),
            ("allocations_y2026m03", 31 * 96 * 3),
        ] {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} WHERE start >= '2026-03-01 00:00:00+00' \
                 AND start < '2026-04-01 00:00:00+00'"
            )))
            .fetch_one(&store.pool)
            .await
            .unwrap();
            assert_eq!(n, rows, "{table}");
        }

        // Nothing is written in the month again; the months beside it go on.
        let archived_month = |e: StoreError| {
            assert!(
                matches!(&e, StoreError::MonthArchived { month } if month == "2026-03"),
                "{e}"
            );
            assert_eq!(e.kind(), "month_archived");
        };
        let march_reading = store.readings(&range).await.unwrap()[0].clone();
        let in_march = Reading::new(
            march_reading.prosumer().clone(),
            microgrid_core::Timeframe::new(utc(2026, 3, 5), Default::default()).unwrap(),
            Wh::new(1),
            Wh::new(1),
        )
        .unwrap();
        archived_month(grid.record(vec![in_march]).await.unwrap_err());
        archived_month(
            grid.clear(&march, &t, &microgrid_core::Mechanism::SupplyDemandRatio)
                .await
                .unwrap_err(),
        );
        refused(
            store.detach_month(mid_march).await.unwrap_err(),
            "it was detached at",
        );
        let april = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
        refused_in(
            store.detach_month(april).await.unwrap_err(),
            "2026-04",
            "not settled from 2026-04-01",
        );
        let nothing = store
            .detach_month(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap())
            .await;
        assert!(matches!(nothing, Err(StoreError::NotFound { .. })));
        assert_eq!(
            grid.summaries(&range).await.unwrap().len(),
            before - 31 * 96
        );
    }

    /// Migration 0006 moves the rows stored before into monthly
    /// partitions, and what held before holds after.
    #[tokio::test]
    async fn migration_0006_partitions_stored_rows() {
        let url = test_url();
        let schema = schema_for("before0006");
        let options = PgConnectOptions::from_str(&url).unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await
            .unwrap();
        sqlx::migrate!("./migrations/postgres")
            .run_to(5, &pool)
            .await
            .unwrap();
        // Two prosumers, two quarter hours either side of 2026-03-01, one
        // cleared; a timeframe in 1970; a settlement.
        sqlx::raw_sql(
            "INSERT INTO prosumers (id, name, kind, joined) VALUES ('a', 'A', 'household', '2026-01-01'), \
             ('b', 'B', 'household', '2026-01-01'); \
             INSERT INTO readings SELECT t, id, 15, 10, 4 FROM \
             unnest(ARRAY['2026-02-28 23:45:00+00', '2026-03-01 00:00:00+00', '1970-01-01 00:00:00+00']::timestamptz[]) t, \
             unnest(ARRAY['a', 'b']) id; \
             INSERT INTO timeframes VALUES ('2026-02-28 23:45:00+00', 15, 20, 8, 12, 0, 0, 0, 12, 2, 0, 0.3, 0.1, NULL, 'EUR'); \
             INSERT INTO allocations VALUES ('2026-02-28 23:45:00+00', 'a', 10, 4, 0), ('2026-02-28 23:45:00+00', 'b', 10, 4, 0); \
             INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
             VALUES ('s', '2026-02-01 00:00:00+00', '2026-03-01 00:00:00+00', 'h', NULL, '{}')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = PostgresStore::open_in_schema(&url, &schema).await.unwrap();
        assert_eq!(
            partition_months(&store).await,
            [
                ("readings", "1970-01".into()),
                ("readings", "2026-02".into()),
                ("timeframes", "2026-02".into()),
                ("allocations", "2026-02".into()),
                ("readings", "2026-03".into()),
            ]
        );
        let around = quarters(
            utc(2026, 2, 28) + chrono::Duration::hours(23),
            utc(2026, 3, 1) + chrono::Duration::hours(1),
        );
        assert_eq!(store.readings(&around).await.unwrap().len(), 4);
        assert_eq!(store.summaries(&around).await.unwrap().len(), 1);
        assert_eq!(store.allocations(&around, None).await.unwrap().len(), 2);
        let epoch = quarters(utc(1970, 1, 1), utc(1970, 1, 2));
        assert_eq!(store.readings(&epoch).await.unwrap().len(), 2);
        let p = &store.pool;
        let count = |table: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(p)
            .await
            .unwrap()
        };
        assert_eq!(count("readings").await, 6);
        assert_eq!(count("settlements").await, 1);
        // No table of before is left.
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class WHERE relname LIKE '%before_0006%' \
             AND relnamespace = current_schema()::regnamespace",
        )
        .fetch_one(p)
        .await
        .unwrap();
        assert_eq!(left, 0);
        // The keys and checks hold on the partitioned tables.
        for refused in [
            "INSERT INTO readings VALUES ('2026-03-01 00:00:00+00', 'a', 15, 1, 1)",
            "INSERT INTO readings VALUES ('2026-02-01 00:00:00+00', 'a', 15, 1, -1)",
            "INSERT INTO timeframes SELECT * FROM timeframes",
            "INSERT INTO allocations SELECT * FROM allocations",
            // No partition for a month the store did not write in.
            "INSERT INTO readings VALUES ('2030-01-01 00:00:00+00', 'a', 15, 1, 1)",
            // Settlements keep their rules (migration 0004).
            "DELETE FROM settlements",
        ] {
            assert!(
                sqlx::raw_sql(refused).execute(p).await.is_err(),
                "{refused}"
            );
        }
        // Ids compare byte by byte.
        sqlx::raw_sql(
            "INSERT INTO readings VALUES ('2026-02-01 00:00:00+00', 'B', 15, 1, 1), \
             ('2026-02-01 00:00:00+00', 'a', 15, 1, 1)",
        )
        .execute(p)
        .await
        .unwrap();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT prosumer_id FROM readings WHERE start = '2026-02-01 00:00:00+00' ORDER BY prosumer_id",
        )
        .fetch_all(p)
        .await
        .unwrap();
        assert_eq!(ids, ["B", "a"]);
    }

    #[test]
    fn the_pool_size_parameter_is_taken_and_checked() {
        assert_eq!(
            take_param("postgres://a@h/db?pool_size=16&schema=x", "pool_size"),
            (
                "postgres://a@h/db?schema=x".to_owned(),
                Some("16".to_owned())
            )
        );
        // A parameter whose name only starts like it is left alone.
        assert_eq!(
            take_param("postgres://a@h/db?pool_sizes=2", "pool_size"),
            ("postgres://a@h/db?pool_sizes=2".to_owned(), None)
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for bad in ["0", "65", "many", ""] {
            let url = format!("postgres://ann:hunter2@127.0.0.1:1/db?pool_size={bad}");
            let err = rt.block_on(PostgresStore::open(&url)).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), "url", "{text}");
            assert!(text.contains("pool_size"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
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
