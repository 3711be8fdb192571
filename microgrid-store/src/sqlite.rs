//! SQLite through `sqlx`: embedded and persistent, one file. Amounts and
//! prices are stored as the text of the exact decimal, times as Unix
//! seconds. Bulk writes are multi-row statements (up to 1,000 rows each)
//! in one transaction that holds the write lock from its start.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use microgrid_core::batch::{IngestCounts, ReadingRow, ValidReadings};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, ClearedRow, IngestPlan, Prosumer, ProsumerId, Reading, Registry, TimeRange,
    TimeframeClearing, TimeframeSummary,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqliteExecutor, Transaction};

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

/// Rows per multi-row statement: with at most 15 parameters a row, well
/// under SQLite's limit of 32,766 parameters a statement.
const ROWS_PER_STATEMENT: usize = 1_000;

/// A store in one SQLite file (or in memory with `sqlite::memory:`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (and creates, and migrates) the database at `url`:
    /// `sqlite:path/to/file.db` or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::bad_url(url, e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL keeps the file consistent on a crash; only the
            // last commits before a power loss can be lost.
            .synchronous(SqliteSynchronous::Normal)
            // 64 MiB of pages instead of 2: bulk writes touch index pages
            // all over the file.
            .pragma("cache_size", "-65536")
            .foreign_keys(true);
        // One connection, kept for the life of the store: SQLite has one
        // writer anyway, and `sqlite::memory:` lives only as long as its
        // connection (a pool that recycled an idle or old connection would
        // open an empty database).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db("opening the SQLite database"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(db("migrating the SQLite database"))?;
        Ok(SqliteStore { pool })
    }

    /// A transaction holding the write lock from its start, so that what
    /// it checks stays true until it commits (also against other
    /// processes on the same file).
    async fn begin_write(&self, operation: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db(operation))
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
    e: impl SqliteExecutor<'c>,
    range: &TimeRange,
) -> Result<Vec<TimeframeSummary>> {
    let rows: Vec<SummaryRecord<i64, i64, String>> = sqlx::query_as(sql::SUMMARIES)
        .bind(range.start().timestamp())
        .bind(range.end().timestamp())
        .fetch_all(e)
        .await
        .map_err(db("loading timeframe summaries"))?;
    rows.into_iter().map(SummaryRecord::load).collect()
}

async fn cleared_in<'c>(
    e: impl SqliteExecutor<'c>,
    range: &TimeRange,
) -> Result<BTreeSet<DateTime<Utc>>> {
    let starts: Vec<i64> = sqlx::query_scalar(sql::CLEARED)
        .bind(range.start().timestamp())
        .bind(range.end().timestamp())
        .fetch_all(e)
        .await
        .map_err(db("loading cleared timeframes"))?;
    starts.into_iter().map(sql::Load::load).collect()
}

/// Per timeframe of a range, its rows packed into one text: `values,id`
/// records (the integer columns before the id, comma-separated) joined by
/// the record separator. One row per timeframe instead of one per
/// prosumer and timeframe is several times faster to read through sqlx.
macro_rules! packed {
    ($values:literal, $table:literal) => {
        concat!(
            "SELECT start, group_concat(",
            $values,
            " || ',' || prosumer_id, char(30)) FROM ",
            $table,
            " WHERE start >= $1 AND start < $2 GROUP BY start"
        )
    };
}

/// Reads the rows of `statement` (see [`packed!`]) of `range`, handing
/// each record's start, integers and id to `add`.
async fn read_packed<'c, const N: usize>(
    e: impl SqliteExecutor<'c>,
    statement: &'static str,
    range: &TimeRange,
    operation: &'static str,
    mut add: impl FnMut(i64, [i64; N], &str) -> Result<()> + Send,
) -> Result<()> {
    let mut stream = sqlx::query_as::<_, (i64, String)>(statement)
        .bind(range.start().timestamp())
        .bind(range.end().timestamp())
        .fetch(e);
    while let Some((start, packed)) = stream.try_next().await.map_err(db(operation))? {
        for record in packed.split('\u{1e}') {
            let mut fields = record.splitn(N + 1, ',');
            let mut values = [0; N];
            for v in &mut values {
                *v = fields
                    .next()
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| corrupt("stored row", record))?;
            }
            let id = fields.next().ok_or_else(|| corrupt("stored row", record))?;
            add(start, values, id)?;
        }
    }
    Ok(())
}

/// The stored readings of `range` as dense rows by `registry`'s indices.
async fn dense_rows<'c, 'r>(
    e: impl SqliteExecutor<'c>,
    range: &TimeRange,
    registry: &'r Registry,
    strict: bool,
) -> Result<DenseRows<'r>> {
    let mut rows = DenseRows::new(range, registry);
    let statement = packed!(
        "length_minutes || ',' || produced_wh || ',' || consumed_wh",
        "readings"
    );
    read_packed(
        e,
        statement,
        range,
        "loading readings",
        |start, [minutes, p, c], id| {
            let r = ValueRecord {
                start,
                prosumer_id: id,
                length_minutes: minutes,
                produced_wh: p,
                consumed_wh: c,
            };
            rows.add(r, strict)
        },
    )
    .await?;
    Ok(rows)
}

/// Inserts prosumers, `tail` deciding what a taken id does.
async fn insert_prosumers_in(
    conn: &mut SqliteConnection,
    batch: &[Prosumer],
    tail: &str,
) -> std::result::Result<(), sqlx::Error> {
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(sql::INSERT_PROSUMERS);
        q.push_values(chunk, |mut row, p| {
            row.push_bind(p.id().as_str())
                .push_bind(p.name())
                .push_bind(p.kind().as_str())
                .push_bind(p.joined().to_string())
                .push_bind(p.left().map(|d| d.to_string()))
                .push_bind(p.payout().map(|a| a.as_str()))
                .push_bind(p.payout().map(|a| a.network().as_str()))
                .push_bind(p.offer().map(|o| o.as_str()));
        });
        q.push(tail).build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts or replaces readings.
async fn write_readings_in<'a>(
    conn: &mut SqliteConnection,
    readings: impl Iterator<Item = ReadingValue<'a>> + Send,
) -> Result<()> {
    let mut readings = readings.peekable();
    while readings.peek().is_some() {
        let mut q = QueryBuilder::new(sql::INSERT_READINGS);
        q.push_values(readings.by_ref().take(ROWS_PER_STATEMENT), |mut row, r| {
            row.push_bind(r.start)
                .push_bind(r.id)
                .push_bind(r.minutes)
                .push_bind(r.produced)
                .push_bind(r.consumed);
        });
        q.push(sql::ON_CONFLICT_REPLACE_READING)
            .build()
            .execute(&mut *conn)
            .await
            .map_err(db("writing readings"))?;
    }
    Ok(())
}

/// Inserts the summaries of timeframes not stored yet and returns their
/// starts.
async fn insert_summaries(
    conn: &mut SqliteConnection,
    summaries: &[&TimeframeSummary],
) -> Result<HashSet<DateTime<Utc>>> {
    let mut stored = HashSet::with_capacity(summaries.len());
    for chunk in summaries.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(sql::INSERT_SUMMARIES);
        q.push_values(chunk, |mut row, s| {
            row.push_bind(s.timeframe.start().timestamp())
                .push_bind(sql::minutes(s.timeframe.length().minutes()));
            for wh in [
                s.production,
                s.consumption,
                s.supply,
                s.demand,
                s.shared,
                s.import,
                s.export,
            ] {
                row.push_bind(wh.get());
            }
            row.push_bind(i64::from(s.sellers))
                .push_bind(i64::from(s.buyers))
                .push_bind(s.grid.import().per_kwh().to_string())
                .push_bind(s.grid.export().per_kwh().to_string())
                .push_bind(s.community_price.known().map(|p| p.per_kwh().to_string()))
                .push_bind(s.currency.map(|c| c.to_string()));
        });
        let starts: Vec<i64> = q
            .push(" ON CONFLICT (start) DO NOTHING RETURNING start")
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(db("saving timeframe summaries"))?;
        for s in starts {
            stored.insert(sql::Load::load(s)?);
        }
    }
    Ok(stored)
}

async fn insert_allocations<'a>(
    conn: &mut SqliteConnection,
    allocations: impl Iterator<Item = AllocationValue<'a>> + Send,
) -> Result<()> {
    let mut allocations = allocations.peekable();
    while allocations.peek().is_some() {
        let mut q = QueryBuilder::new(sql::INSERT_ALLOCATIONS);
        q.push_values(
            allocations.by_ref().take(ROWS_PER_STATEMENT),
            |mut row, a| {
                row.push_bind(a.start)
                    .push_bind(a.id)
                    .push_bind(a.produced)
                    .push_bind(a.consumed)
                    .push_bind(a.community);
            },
        );
        q.build()
            .execute(&mut *conn)
            .await
            .map_err(db("saving allocations"))?;
    }
    Ok(())
}

fn settlement(document: Option<String>) -> Result<Option<Settlement>> {
    document
        .map(|doc| serde_json::from_str(&doc).map_err(|e| corrupt("settlement", e)))
        .transpose()
}

impl RegistryStore for SqliteStore {
    async fn save_prosumer(&self, p: &Prosumer) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db("saving a prosumer"))?;
        insert_prosumers_in(&mut conn, std::slice::from_ref(p), sql::UPDATE_PROSUMER)
            .await
            .map_err(db("saving a prosumer"))
    }

    async fn registry(&self) -> Result<Registry> {
        let rows: Vec<ProsumerRecord<String>> = sqlx::query_as(sql::REGISTRY)
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
        let mut tx = self.begin_write("starting to insert prosumers").await?;
        if let Err(e) = insert_prosumers_in(&mut tx, batch, "").await {
            let unique = e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation());
            tx.rollback()
                .await
                .map_err(db("rolling back inserted prosumers"))?;
            let error = db("inserting prosumers")(e);
            return Err(if unique {
                self.duplicate(batch, error).await
            } else {
                error
            });
        }
        tx.commit().await.map_err(db("committing prosumers"))
    }
}

impl ReadingStore for SqliteStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let mut tx = self.begin_write("starting an ingest transaction").await?;
        let all: Vec<ReadingValue> = plan
            .insert
            .iter()
            .chain(&plan.replace)
            .map(ReadingValue::from)
            .collect();
        write_readings_in(&mut tx, all.into_iter()).await?;
        tx.commit().await.map_err(db("committing readings"))
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let rows: Vec<ReadingRecord<i64, i64>> = sqlx::query_as(sql::READINGS)
            .bind(range.start().timestamp())
            .bind(range.end().timestamp())
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
        let mut tx = self.begin_write("starting an ingest transaction").await?;
        let own = cleared_in(&mut *tx, &span).await?;
        let is_cleared: Vec<bool> = span
            .timeframes()
            .map(|tf| cleared.contains(&tf.start()) || own.contains(&tf.start()))
            .collect();
        let stored = dense_rows(&mut *tx, &span, registry, false)
            .await?
            .into_stored();
        let (counts, writes) = sql::plan_writes(batch, registry, &stored, |k| is_cleared[k])?;
        write_readings_in(&mut tx, writes).await?;
        tx.commit().await.map_err(db("committing readings"))?;
        Ok(counts)
    }

    async fn reading_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<Arc<ReadingRow>>> {
        Ok(dense_rows(&self.pool, range, registry, true)
            .await?
            .into_rows())
    }
}

impl LedgerStore for SqliteStore {
    async fn save_clearing(&self, c: &TimeframeClearing) -> Result<bool> {
        let mut tx = self.begin_write("starting a clearing transaction").await?;
        if insert_summaries(&mut tx, &[&c.summary]).await?.is_empty() {
            return Ok(false);
        }
        let allocations: Vec<AllocationValue> =
            c.allocations.iter().map(AllocationValue::from).collect();
        insert_allocations(&mut tx, allocations.into_iter()).await?;
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
        let mut tx = self.begin_write("starting a clearing transaction").await?;
        let stored = store_new_clearings(&mut tx, rows, registry).await?;
        tx.commit().await.map_err(db("committing clearings"))?;
        Ok(stored)
    }

    async fn cleared_rows(
        &self,
        range: &TimeRange,
        registry: &Registry,
    ) -> Result<Vec<(Arc<ReadingRow>, Arc<ClearedRow>)>> {
        // One read transaction: summaries and allocations of one state.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting to load clearings"))?;
        let summaries = summaries_in(&mut *tx, range).await?;
        let mut rows = ClearedRows::new(range, registry, summaries)?;
        let statement = packed!(
            "produced_wh || ',' || consumed_wh || ',' || community_wh",
            "allocations"
        );
        read_packed(
            &mut *tx,
            statement,
            range,
            "loading allocations",
            |start, [p, c, community], id| {
                rows.add(AllocationRecord {
                    start,
                    prosumer_id: id,
                    produced_wh: p,
                    consumed_wh: c,
                    community_wh: community,
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
            .bind(range.start().timestamp())
            .bind(range.end().timestamp())
            .bind(prosumer.map(|p| p.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(db("loading allocations"))?;
        rows.iter()
            .map(|row| {
                AllocationRecord::<i64>::from_row(row)
                    .map_err(db("loading allocations"))?
                    .load(&summaries)
            })
            .collect()
    }

    /// In one write transaction: the settlement and the wallet indices it
    /// gives out (migration 0007), unless a standing settlement overlaps
    /// it or another settlement gave one of the indices.
    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        let document = serde_json::to_string(s).map_err(db("encoding a settlement"))?;
        let mut tx = self.begin_write("saving a settlement").await?;
        let inserted = sqlx::query(sql::SAVE_SETTLEMENT)
            .bind(s.id())
            .bind(s.period().start().timestamp())
            .bind(s.period().end().timestamp())
            .bind(s.content_hash())
            .bind(s.paid_by().map(|t| t.to_string()))
            .bind(document)
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
            // The trigger of migration 0004: a standing settlement overlaps.
            Err(e) if e.to_string().contains("settlement_overlap") => {
                tx.rollback().await.ok();
            }
            Err(e) => return Err(db("saving a settlement")(e)),
        }
        let by_id = self.settlement(s.id()).await?;
        if by_id.as_ref().is_some_and(Settlement::stands) {
            return Ok(by_id.unwrap_or_else(|| s.clone()));
        }
        let overlapping = settlement(
            sqlx::query_scalar(sql::STANDING_OVERLAP)
                .bind(s.period().start().timestamp())
                .bind(s.period().end().timestamp())
                .fetch_optional(&self.pool)
                .await
                .map_err(db("loading a settlement"))?,
        )?;
        settled_or_conflict(s, by_id, overlapping)
    }

    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        settlement(
            sqlx::query_scalar(sql::SETTLEMENT)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("loading a settlement"))?,
        )
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        settlement(
            sqlx::query_scalar(sql::LAST_SETTLEMENT)
                .bind(before.timestamp())
                .fetch_optional(&self.pool)
                .await
                .map_err(db("loading the last settlement"))?,
        )
    }

    async fn voided_settlements(&self) -> Result<Vec<Settlement>> {
        let documents: Vec<String> = sqlx::query_scalar(sql::VOIDED_SETTLEMENTS)
            .fetch_all(&self.pool)
            .await
            .map_err(db("loading the voided settlements"))?;
        documents
            .into_iter()
            .map(|doc| serde_json::from_str(&doc).map_err(|e| corrupt("settlement", e)))
            .collect()
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_string(paid).map_err(db("encoding a settlement"))?;
        let written = sqlx::query(sql::SAVE_PAYMENT)
            .bind(paid.paid_by().map(|t| t.to_string()))
            .bind(document)
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
        let document = serde_json::to_string(voided).map_err(db("encoding a settlement"))?;
        let written = sqlx::query(sql::SAVE_VOIDING)
            .bind(voiding.at.timestamp())
            .bind(document)
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
        // One write transaction from reading to storing: SQLite has one
        // writer at a time, so no ingest comes in between.
        let mut tx = self.begin_write("starting a clearing transaction").await?;
        let done = cleared_in(&mut *tx, range).await?;
        let rows = dense_rows(&mut *tx, range, registry, true)
            .await?
            .into_rows();
        let (pairs, already_cleared) = clear_not_done(range, rows, &done, clear)?;
        let cleared = store_new_clearings(&mut tx, pairs.iter().collect(), registry).await?;
        tx.commit().await.map_err(db("committing clearings"))?;
        Ok(ClearCounts {
            cleared,
            already_cleared,
        })
    }
}

/// Stores the clearings of `rows` whose timeframes are not stored yet
/// (summaries, then their allocations); returns how many.
async fn store_new_clearings(
    tx: &mut Transaction<'static, Sqlite>,
    rows: Vec<&(Arc<ReadingRow>, Arc<ClearedRow>)>,
    registry: &Registry,
) -> Result<usize> {
    let summaries: Vec<&TimeframeSummary> = rows.iter().map(|(_, c)| &c.summary).collect();
    let new = insert_summaries(tx, &summaries).await?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(_, c)| new.contains(&c.summary.timeframe.start()))
        .collect();
    insert_allocations(tx, sql::allocation_values(&rows, registry)).await?;
    Ok(rows.len())
}

/// Gives out wallet `$1`'s receive indices `[$2, $3)` and change indices
/// `[$4, $5)` to settlement `$6`, skipping those given already.
const GIVE_WALLET_INDICES: &str = "WITH RECURSIVE given (keychain, idx, upto) AS ( \
     SELECT 'receive', $2, $3 WHERE $2 < $3 \
     UNION ALL SELECT 'change', $4, $5 WHERE $4 < $5 \
     UNION ALL SELECT keychain, idx + 1, upto FROM given WHERE idx + 1 < upto) \
     INSERT INTO wallet_addresses (wallet, keychain, idx, settlement_id) \
     SELECT $1, keychain, idx, $6 FROM given WHERE true ON CONFLICT DO NOTHING";

/// Writes the wallet indices `s` gives out (if it was made with a wallet)
/// in the transaction that stores it:
/// [`StoreError::WalletAddressTaken`] if another settlement gave one.
async fn give_wallet_indices(tx: &mut Transaction<'static, Sqlite>, s: &Settlement) -> Result<()> {
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

    #[tokio::test]
    async fn sql_store_rules() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("rules.db").display());
        sql::tests::sql_store_rules(SqliteStore::open(&url).await.unwrap()).await;
    }

    /// The rules of migration 0004 hold for raw SQL too.
    #[tokio::test]
    async fn the_database_itself_keeps_one_settlement_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("settled.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let pool = &store.pool;
        sql::tests::settlement_rules_hold_for_any_writer(
            |statement| async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(pool)
                    .await
                    .is_ok()
            },
            |t| t.to_string(),
            || async {
                sqlx::query_scalar("SELECT COUNT(*) FROM settlements")
                    .fetch_one(pool)
                    .await
                    .unwrap()
            },
        )
        .await;
    }

    /// `sqlite::memory:` is one database for the life of the store: its
    /// only connection is never closed for being idle or old.
    #[tokio::test]
    async fn an_in_memory_database_keeps_its_one_connection() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let options = store.pool.options();
        assert_eq!(options.get_max_connections(), 1);
        assert_eq!(options.get_idle_timeout(), None);
        assert_eq!(options.get_max_lifetime(), None);
        store
            .insert_prosumers(&[Prosumer::new(
                "a",
                "A",
                microgrid_core::ProsumerKind::Other,
                chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            )
            .unwrap()])
            .await
            .unwrap();
        assert_eq!(store.registry().await.unwrap().len(), 1);
    }
}
