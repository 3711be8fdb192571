//! SQLite through `sqlx`: embedded and persistent, one file. Amounts and
//! prices are stored as the text of the exact decimal, times as Unix
//! seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, IngestPlan, Price, Prosumer, ProsumerId, Reading, Registry, TimeRange, Timeframe,
    TimeframeClearing, TimeframeSummary, Wh,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Result, StoreError};
use crate::rows::{corrupt, date, db, length, registry, ProsumerRow, SummaryRow};
use crate::traits::{LedgerStore, ReadingStore, RegistryStore};

/// A store in one SQLite file (or in memory with `sqlite::memory:`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn time(secs: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| corrupt("timestamp", secs))
}

fn price(text: &str) -> Result<Price> {
    Price::from_str(text).map_err(|_| corrupt("price", text))
}

impl SqliteStore {
    /// Opens (and creates, and migrates) the database at `url`:
    /// `sqlite:path/to/file.db` or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL keeps the file consistent on a crash; only the
            // last commits before a power loss can be lost.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        // One connection: SQLite has one writer anyway, and it keeps
        // `sqlite::memory:` one database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db("opening the SQLite database"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(db("migrating the SQLite database"))?;
        Ok(SqliteStore { pool })
    }

    async fn summaries_in(&self, range: &TimeRange) -> Result<BTreeMap<i64, TimeframeSummary>> {
        type Row = (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            String,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, shared_wh, import_wh, \
             export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price \
             FROM timeframes WHERE start >= ? AND start < ? ORDER BY start",
        )
        .bind(range.start().timestamp())
        .bind(range.end().timestamp())
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading timeframe summaries"))?;
        rows.into_iter()
            .map(|r| {
                let row = SummaryRow {
                    start: time(r.0)?,
                    length_minutes: r.1,
                    energies: [r.2, r.3, r.4, r.5, r.6, r.7, r.8],
                    sellers: r.9,
                    buyers: r.10,
                    grid_import: price(&r.11)?,
                    grid_export: price(&r.12)?,
                    community_price: r.13.as_deref().map(price).transpose()?,
                };
                Ok((r.0, row.into_summary()?))
            })
            .collect()
    }
}

impl RegistryStore for SqliteStore {
    async fn save_prosumer(&self, p: &Prosumer) -> Result<()> {
        sqlx::query(
            "INSERT INTO prosumers (id, name, kind, joined, left_on, payout_address, payout_network) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, joined = excluded.joined, \
             left_on = excluded.left_on, payout_address = excluded.payout_address, payout_network = excluded.payout_network",
        )
        .bind(p.id().as_str())
        .bind(p.name())
        .bind(p.kind().as_str())
        .bind(p.joined().to_string())
        .bind(p.left().map(|d| d.to_string()))
        .bind(p.payout().map(|a| a.as_str().to_owned()))
        .bind(p.payout().map(|a| a.network().as_str()))
        .execute(&self.pool)
        .await
        .map_err(db("saving a prosumer"))?;
        Ok(())
    }

    async fn registry(&self) -> Result<Registry> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, kind, joined, left_on, payout_address, payout_network FROM prosumers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading the registry"))?;
        let rows = rows
            .into_iter()
            .map(|(id, name, kind, joined, left, address, network)| {
                Ok(ProsumerRow {
                    id,
                    name,
                    kind,
                    joined: date(&joined)?,
                    left: left.as_deref().map(date).transpose()?,
                    address,
                    network,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        registry(rows)
    }
}

impl ReadingStore for SqliteStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting an ingest transaction"))?;
        let all: Vec<&Reading> = plan.insert.iter().chain(&plan.replace).collect();
        // Many rows per statement (5 parameters each, well under SQLite's
        // limit of 32,766) instead of one statement per row.
        for chunk in all.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO readings (start, prosumer_id, length_minutes, produced_wh, consumed_wh) ",
            );
            q.push_values(chunk, |mut row, r| {
                row.push_bind(r.timeframe().start().timestamp())
                    .push_bind(r.prosumer().as_str())
                    .push_bind(i64::from(r.timeframe().length().minutes()))
                    .push_bind(r.produced().get())
                    .push_bind(r.consumed().get());
            });
            q.push(
                " ON CONFLICT (start, prosumer_id) DO UPDATE SET produced_wh = excluded.produced_wh, \
                 consumed_wh = excluded.consumed_wh",
            );
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(db("writing readings"))?;
        }
        tx.commit().await.map_err(db("committing readings"))
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT start, prosumer_id, length_minutes, produced_wh, consumed_wh FROM readings \
             WHERE start >= ? AND start < ? ORDER BY start, prosumer_id",
        )
        .bind(range.start().timestamp())
        .bind(range.end().timestamp())
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading readings"))?;
        rows.into_iter()
            .map(|(start, id, minutes, p, c)| {
                let tf = Timeframe::new(time(start)?, length(minutes)?)?;
                Ok(Reading::new(
                    ProsumerId::new(id)?,
                    tf,
                    Wh::new(p),
                    Wh::new(c),
                )?)
            })
            .collect()
    }
}

impl LedgerStore for SqliteStore {
    async fn save_clearing(&self, c: &TimeframeClearing) -> Result<bool> {
        let s = &c.summary;
        let start = s.timeframe.start().timestamp();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        let inserted = sqlx::query(
            "INSERT INTO timeframes (start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, shared_wh, \
             import_wh, export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (start) DO NOTHING",
        )
        .bind(start)
        .bind(i64::from(s.timeframe.length().minutes()))
        .bind(s.production.get())
        .bind(s.consumption.get())
        .bind(s.supply.get())
        .bind(s.demand.get())
        .bind(s.shared.get())
        .bind(s.import.get())
        .bind(s.export.get())
        .bind(i64::from(s.sellers))
        .bind(i64::from(s.buyers))
        .bind(s.grid.import().per_kwh().to_string())
        .bind(s.grid.export().per_kwh().to_string())
        .bind(s.community_price.known().map(|p| p.per_kwh().to_string()))
        .execute(&mut *tx)
        .await
        .map_err(db("saving a timeframe summary"))?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(false);
        }
        for a in &c.allocations {
            sqlx::query(
                "INSERT INTO allocations (start, prosumer_id, produced_wh, consumed_wh, community_wh) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(start)
            .bind(a.prosumer.as_str())
            .bind(a.produced.get())
            .bind(a.consumed.get())
            .bind(a.sold.get() - a.bought.get())
            .execute(&mut *tx)
            .await
            .map_err(db("saving allocations"))?;
        }
        tx.commit().await.map_err(db("committing a clearing"))?;
        Ok(true)
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT start FROM timeframes WHERE start >= ? AND start < ?")
                .bind(range.start().timestamp())
                .bind(range.end().timestamp())
                .fetch_all(&self.pool)
                .await
                .map_err(db("loading cleared timeframes"))?;
        rows.into_iter().map(|(s,)| time(s)).collect()
    }

    async fn summaries(&self, range: &TimeRange) -> Result<Vec<TimeframeSummary>> {
        Ok(self.summaries_in(range).await?.into_values().collect())
    }

    async fn allocations(
        &self,
        range: &TimeRange,
        prosumer: Option<&ProsumerId>,
    ) -> Result<Vec<Allocation>> {
        let summaries = self.summaries_in(range).await?;
        let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT start, prosumer_id, produced_wh, consumed_wh, community_wh FROM allocations \
             WHERE start >= ? AND start < ? AND (? IS NULL OR prosumer_id = ?) ORDER BY start, prosumer_id",
        )
        .bind(range.start().timestamp())
        .bind(range.end().timestamp())
        .bind(prosumer.map(|p| p.as_str()))
        .bind(prosumer.map(|p| p.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading allocations"))?;
        rows.into_iter()
            .map(|(start, id, p, c, community)| {
                let summary = summaries
                    .get(&start)
                    .ok_or_else(|| corrupt("allocation without summary", start))?;
                Ok(Allocation::new(
                    ProsumerId::new(id)?,
                    summary,
                    Wh::new(p),
                    Wh::new(c),
                    Wh::new(community),
                ))
            })
            .collect()
    }

    async fn save_settlement(&self, s: &Settlement) -> Result<Settlement> {
        let document = serde_json::to_string(s).map_err(db("encoding a settlement"))?;
        sqlx::query(
            "INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&s.id)
        .bind(s.period.start().timestamp())
        .bind(s.period.end().timestamp())
        .bind(s.content_hash())
        .bind(s.paid_txid.as_deref())
        .bind(document)
        .execute(&self.pool)
        .await
        .map_err(db("saving a settlement"))?;
        self.settlement(&s.id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "settlement",
                key: s.id.clone(),
            })
    }

    async fn settlement(&self, id: &str) -> Result<Option<Settlement>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT document FROM settlements WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("loading a settlement"))?;
        row.map(|(doc,)| serde_json::from_str(&doc).map_err(|e| corrupt("settlement", e)))
            .transpose()
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT document FROM settlements WHERE period_end <= ? ORDER BY period_end DESC, id DESC LIMIT 1",
        )
        .bind(before.timestamp())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("loading the last settlement"))?;
        row.map(|(doc,)| serde_json::from_str(&doc).map_err(|e| corrupt("settlement", e)))
            .transpose()
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_string(paid).map_err(db("encoding a settlement"))?;
        let updated =
            sqlx::query("UPDATE settlements SET paid_txid = ?, document = ? WHERE id = ?")
                .bind(paid.paid_txid.as_deref())
                .bind(document)
                .bind(&paid.id)
                .execute(&self.pool)
                .await
                .map_err(db("marking a settlement paid"))?
                .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound {
                what: "settlement",
                key: paid.id.clone(),
            });
        }
        Ok(())
    }
}
