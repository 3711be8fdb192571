//! PostgreSQL through `sqlx`: TIMESTAMPTZ for time, NUMERIC for money and
//! prices, readings and allocations written in bulk with `UNNEST` arrays
//! (one statement per 10,000 rows, not one per row).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use microgrid_core::settlement::Settlement;
use microgrid_core::{
    Allocation, IngestPlan, Price, Prosumer, ProsumerId, Reading, Registry, TimeRange, Timeframe,
    TimeframeClearing, TimeframeSummary, Wh,
};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::{Result, StoreError};
use crate::rows::{corrupt, db, length, registry, ProsumerRow, SummaryRow};
use crate::traits::{LedgerStore, ReadingStore, RegistryStore};

const CHUNK: usize = 10_000;

/// A store in a PostgreSQL database (in one schema of it).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn price(value: Decimal) -> Result<Price> {
    Price::new(value).map_err(|_| corrupt("price", value))
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://user@host/db` or
    /// `postgres://postgres@localhost/postgres?host=/socket/dir`) and
    /// migrates the `public` schema.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        PostgresStore::open_in_schema(url, "public").await
    }

    /// Like [`PostgresStore::open`], in `schema` (created if missing), so
    /// that several grids can share one database.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<PostgresStore> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Url {
                url: url.to_owned(),
                reason: format!(
                    "schema name {schema:?} must be lower-case letters, digits and '_'"
                ),
            });
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
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

    async fn summaries_in(
        &self,
        range: &TimeRange,
    ) -> Result<BTreeMap<DateTime<Utc>, TimeframeSummary>> {
        type Row = (
            DateTime<Utc>,
            i32,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i32,
            i32,
            Decimal,
            Decimal,
            Option<Decimal>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, shared_wh, import_wh, \
             export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price \
             FROM timeframes WHERE start >= $1 AND start < $2 ORDER BY start",
        )
        .bind(range.start())
        .bind(range.end())
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading timeframe summaries"))?;
        rows.into_iter()
            .map(|r| {
                let row = SummaryRow {
                    start: r.0,
                    length_minutes: i64::from(r.1),
                    energies: [r.2, r.3, r.4, r.5, r.6, r.7, r.8],
                    sellers: i64::from(r.9),
                    buyers: i64::from(r.10),
                    grid_import: price(r.11)?,
                    grid_export: price(r.12)?,
                    community_price: r.13.map(price).transpose()?,
                };
                Ok((r.0, row.into_summary()?))
            })
            .collect()
    }
}

impl RegistryStore for PostgresStore {
    async fn save_prosumer(&self, p: &Prosumer) -> Result<()> {
        sqlx::query(
            "INSERT INTO prosumers (id, name, kind, joined, left_on, payout_address, payout_network) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, joined = excluded.joined, \
             left_on = excluded.left_on, payout_address = excluded.payout_address, payout_network = excluded.payout_network",
        )
        .bind(p.id().as_str())
        .bind(p.name())
        .bind(p.kind().as_str())
        .bind(p.joined())
        .bind(p.left())
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
            NaiveDate,
            Option<NaiveDate>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, kind, joined, left_on, payout_address, payout_network FROM prosumers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading the registry"))?;
        registry(
            rows.into_iter().map(
                |(id, name, kind, joined, left, address, network)| ProsumerRow {
                    id,
                    name,
                    kind,
                    joined,
                    left,
                    address,
                    network,
                },
            ),
        )
    }
}

impl ReadingStore for PostgresStore {
    async fn write_readings(&self, plan: &IngestPlan) -> Result<()> {
        let all: Vec<&Reading> = plan.insert.iter().chain(&plan.replace).collect();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting an ingest transaction"))?;
        for chunk in all.chunks(CHUNK) {
            let starts: Vec<DateTime<Utc>> = chunk.iter().map(|r| r.timeframe().start()).collect();
            let ids: Vec<String> = chunk.iter().map(|r| r.prosumer().to_string()).collect();
            let lengths: Vec<i32> = chunk
                .iter()
                .map(|r| r.timeframe().length().minutes() as i32)
                .collect();
            let produced: Vec<i64> = chunk.iter().map(|r| r.produced().get()).collect();
            let consumed: Vec<i64> = chunk.iter().map(|r| r.consumed().get()).collect();
            sqlx::query(
                "INSERT INTO readings (start, prosumer_id, length_minutes, produced_wh, consumed_wh) \
                 SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::int[], $4::bigint[], $5::bigint[]) \
                 ON CONFLICT (start, prosumer_id) DO UPDATE SET produced_wh = excluded.produced_wh, \
                 consumed_wh = excluded.consumed_wh",
            )
            .bind(starts)
            .bind(ids)
            .bind(lengths)
            .bind(produced)
            .bind(consumed)
            .execute(&mut *tx)
            .await
            .map_err(db("writing readings"))?;
        }
        tx.commit().await.map_err(db("committing readings"))
    }

    async fn readings(&self, range: &TimeRange) -> Result<Vec<Reading>> {
        let rows: Vec<(DateTime<Utc>, String, i32, i64, i64)> = sqlx::query_as(
            "SELECT start, prosumer_id, length_minutes, produced_wh, consumed_wh FROM readings \
             WHERE start >= $1 AND start < $2 ORDER BY start, prosumer_id",
        )
        .bind(range.start())
        .bind(range.end())
        .fetch_all(&self.pool)
        .await
        .map_err(db("loading readings"))?;
        rows.into_iter()
            .map(|(start, id, minutes, p, c)| {
                let tf = Timeframe::new(start, length(i64::from(minutes))?)?;
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

impl LedgerStore for PostgresStore {
    async fn save_clearing(&self, c: &TimeframeClearing) -> Result<bool> {
        let s = &c.summary;
        let start = s.timeframe.start();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a clearing transaction"))?;
        let inserted = sqlx::query(
            "INSERT INTO timeframes (start, length_minutes, production_wh, consumption_wh, supply_wh, demand_wh, shared_wh, \
             import_wh, export_wh, sellers, buyers, grid_import_price, grid_export_price, community_price) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (start) DO NOTHING",
        )
        .bind(start)
        .bind(s.timeframe.length().minutes() as i32)
        .bind(s.production.get())
        .bind(s.consumption.get())
        .bind(s.supply.get())
        .bind(s.demand.get())
        .bind(s.shared.get())
        .bind(s.import.get())
        .bind(s.export.get())
        .bind(s.sellers as i32)
        .bind(s.buyers as i32)
        .bind(s.grid.import().per_kwh())
        .bind(s.grid.export().per_kwh())
        .bind(s.community_price.known().map(|p| p.per_kwh()))
        .execute(&mut *tx)
        .await
        .map_err(db("saving a timeframe summary"))?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(false);
        }
        for chunk in c.allocations.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|a| a.prosumer.to_string()).collect();
            let produced: Vec<i64> = chunk.iter().map(|a| a.produced.get()).collect();
            let consumed: Vec<i64> = chunk.iter().map(|a| a.consumed.get()).collect();
            let community: Vec<i64> = chunk
                .iter()
                .map(|a| a.sold.get() - a.bought.get())
                .collect();
            sqlx::query(
                "INSERT INTO allocations (start, prosumer_id, produced_wh, consumed_wh, community_wh) \
                 SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[])",
            )
            .bind(start)
            .bind(ids)
            .bind(produced)
            .bind(consumed)
            .bind(community)
            .execute(&mut *tx)
            .await
            .map_err(db("saving allocations"))?;
        }
        tx.commit().await.map_err(db("committing a clearing"))?;
        Ok(true)
    }

    async fn cleared(&self, range: &TimeRange) -> Result<BTreeSet<DateTime<Utc>>> {
        let rows: Vec<(DateTime<Utc>,)> =
            sqlx::query_as("SELECT start FROM timeframes WHERE start >= $1 AND start < $2")
                .bind(range.start())
                .bind(range.end())
                .fetch_all(&self.pool)
                .await
                .map_err(db("loading cleared timeframes"))?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
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
        let rows: Vec<(DateTime<Utc>, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT start, prosumer_id, produced_wh, consumed_wh, community_wh FROM allocations \
             WHERE start >= $1 AND start < $2 AND ($3::text IS NULL OR prosumer_id = $3) ORDER BY start, prosumer_id",
        )
        .bind(range.start())
        .bind(range.end())
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
        let document = serde_json::to_value(s).map_err(db("encoding a settlement"))?;
        sqlx::query(
            "INSERT INTO settlements (id, period_start, period_end, content_hash, paid_txid, document) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&s.id)
        .bind(s.period.start())
        .bind(s.period.end())
        .bind(s.content_hash())
        .bind(s.paid_txid.as_deref())
        .bind(sqlx::types::Json(document))
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
        let row: Option<(sqlx::types::Json<Settlement>,)> =
            sqlx::query_as("SELECT document FROM settlements WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("loading a settlement"))?;
        Ok(row.map(|(doc,)| doc.0))
    }

    async fn last_settlement(&self, before: DateTime<Utc>) -> Result<Option<Settlement>> {
        let row: Option<(sqlx::types::Json<Settlement>,)> = sqlx::query_as(
            "SELECT document FROM settlements WHERE period_end <= $1 ORDER BY period_end DESC, id DESC LIMIT 1",
        )
        .bind(before)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("loading the last settlement"))?;
        Ok(row.map(|(doc,)| doc.0))
    }

    async fn save_payment(&self, paid: &Settlement) -> Result<()> {
        let document = serde_json::to_value(paid).map_err(db("encoding a settlement"))?;
        let updated =
            sqlx::query("UPDATE settlements SET paid_txid = $1, document = $2 WHERE id = $3")
                .bind(paid.paid_txid.as_deref())
                .bind(sqlx::types::Json(document))
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
