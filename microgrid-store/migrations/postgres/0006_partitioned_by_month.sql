-- Readings and clearing results (timeframe summaries and allocations) are
-- partitioned by time: one partition per calendar month (UTC) of `start`,
-- so that a range's queries touch only its months' partitions and a month
-- settled and paid for can be detached and archived.
--
-- The store creates a month's partitions when it first writes there
-- (PostgresStore: a standalone table LIKE the parent, then ATTACH
-- PARTITION, under a SHARE UPDATE EXCLUSIVE lock of the parent), named
-- `<table>_y<year>m<month>`, bounded [first of the month, first of the
-- next) in UTC. This migration moves the rows stored before into such
-- partitions, in one transaction: while it runs, the database holds these
-- tables twice.
--
-- What held before holds after:
-- * readings: primary key (start, prosumer_id), which includes the
--   partition column; produced_wh and consumed_wh CHECKed >= 0; prosumer
--   ids compared byte by byte (COLLATE "C", migration 0002);
-- * timeframes: primary key (start); currency (migration 0005);
-- * allocations: primary key (start, prosumer_id), no index by prosumer
--   and no foreign key (migration 0003: written in bulk with their
--   summary, in one transaction);
-- * settlements are not partitioned (their exclusion constraint and
--   write-once trigger of migration 0004 are unchanged).
--
-- Months detached for archiving are listed in archived_months; the store
-- writes no reading or clearing into them again.

ALTER TABLE readings RENAME TO readings_before_0006;
ALTER INDEX readings_pkey RENAME TO readings_before_0006_pkey;
ALTER TABLE timeframes RENAME TO timeframes_before_0006;
ALTER INDEX timeframes_pkey RENAME TO timeframes_before_0006_pkey;
ALTER TABLE allocations RENAME TO allocations_before_0006;
ALTER INDEX allocations_pkey RENAME TO allocations_before_0006_pkey;

CREATE TABLE readings (
    start           TIMESTAMPTZ NOT NULL,
    prosumer_id     TEXT COLLATE "C" NOT NULL,   -- checked against the registry, which may live elsewhere
    length_minutes  INTEGER NOT NULL,
    produced_wh     BIGINT NOT NULL CONSTRAINT readings_produced_wh_check CHECK (produced_wh >= 0),
    consumed_wh     BIGINT NOT NULL CONSTRAINT readings_consumed_wh_check CHECK (consumed_wh >= 0),
    PRIMARY KEY (start, prosumer_id)
) PARTITION BY RANGE (start);

CREATE TABLE timeframes (
    start             TIMESTAMPTZ NOT NULL PRIMARY KEY,
    length_minutes    INTEGER NOT NULL,
    production_wh     BIGINT NOT NULL,
    consumption_wh    BIGINT NOT NULL,
    supply_wh         BIGINT NOT NULL,
    demand_wh         BIGINT NOT NULL,
    shared_wh         BIGINT NOT NULL,
    import_wh         BIGINT NOT NULL,
    export_wh         BIGINT NOT NULL,
    sellers           INTEGER NOT NULL,
    buyers            INTEGER NOT NULL,
    grid_import_price NUMERIC NOT NULL,
    grid_export_price NUMERIC NOT NULL,
    community_price   NUMERIC,             -- NULL: priced per billing period
    currency          TEXT                 -- NULL: cleared at bare grid prices
) PARTITION BY RANGE (start);

CREATE TABLE allocations (
    start           TIMESTAMPTZ NOT NULL,
    prosumer_id     TEXT COLLATE "C" NOT NULL,
    produced_wh     BIGINT NOT NULL,
    consumed_wh     BIGINT NOT NULL,
    community_wh    BIGINT NOT NULL,      -- + sold, − bought
    PRIMARY KEY (start, prosumer_id)
) PARTITION BY RANGE (start);

-- Months detached for archiving (first instant of the month, UTC).
CREATE TABLE archived_months (
    month           TIMESTAMPTZ PRIMARY KEY,
    detached_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    tables          TEXT[] NOT NULL        -- the detached partitions, as named then
);

-- A partition for every month that has rows, bounds as Unix seconds so
-- that the session's time zone plays no part.
DO $$
DECLARE
    parent TEXT;
    month  TIMESTAMP;   -- UTC
BEGIN
    FOR parent, month IN
        SELECT DISTINCT t, date_trunc('month', s AT TIME ZONE 'UTC') FROM (
            SELECT 'readings' AS t, start AS s FROM readings_before_0006
            UNION ALL SELECT 'timeframes', start FROM timeframes_before_0006
            UNION ALL SELECT 'allocations', start FROM allocations_before_0006
        ) AS stored
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (to_timestamp(%s)) TO (to_timestamp(%s))',
            parent || '_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM'),
            parent,
            extract(epoch FROM month)::bigint,
            extract(epoch FROM month + interval '1 month')::bigint);
    END LOOP;
END $$;

INSERT INTO readings SELECT start, prosumer_id, length_minutes, produced_wh, consumed_wh
    FROM readings_before_0006;
INSERT INTO timeframes SELECT start, length_minutes, production_wh, consumption_wh, supply_wh,
    demand_wh, shared_wh, import_wh, export_wh, sellers, buyers, grid_import_price,
    grid_export_price, community_price, currency
    FROM timeframes_before_0006;
INSERT INTO allocations SELECT start, prosumer_id, produced_wh, consumed_wh, community_wh
    FROM allocations_before_0006;

DROP TABLE readings_before_0006;
DROP TABLE timeframes_before_0006;
DROP TABLE allocations_before_0006;
