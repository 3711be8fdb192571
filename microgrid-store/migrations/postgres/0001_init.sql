-- microgrid on PostgreSQL: TIMESTAMPTZ for time, NUMERIC for money and
-- prices, BIGINT whole Wh.

CREATE TABLE prosumers (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    joined          DATE NOT NULL,
    left_on         DATE,
    payout_address  TEXT,
    payout_network  TEXT
);

CREATE TABLE readings (
    start           TIMESTAMPTZ NOT NULL,
    prosumer_id     TEXT NOT NULL,          -- checked against the registry, which may live elsewhere
    length_minutes  INTEGER NOT NULL,
    produced_wh     BIGINT NOT NULL CHECK (produced_wh >= 0),
    consumed_wh     BIGINT NOT NULL CHECK (consumed_wh >= 0),
    PRIMARY KEY (start, prosumer_id)
);

CREATE TABLE timeframes (
    start             TIMESTAMPTZ PRIMARY KEY,
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
    community_price   NUMERIC              -- NULL: priced per billing period
);

CREATE TABLE allocations (
    start           TIMESTAMPTZ NOT NULL REFERENCES timeframes (start),
    prosumer_id     TEXT NOT NULL,
    produced_wh     BIGINT NOT NULL,
    consumed_wh     BIGINT NOT NULL,
    community_wh    BIGINT NOT NULL,      -- + sold, − bought
    PRIMARY KEY (start, prosumer_id)
);
CREATE INDEX allocations_by_prosumer ON allocations (prosumer_id, start);

CREATE TABLE settlements (
    id              TEXT PRIMARY KEY,
    period_start    TIMESTAMPTZ NOT NULL,
    period_end      TIMESTAMPTZ NOT NULL,
    content_hash    TEXT NOT NULL,
    paid_txid       TEXT,
    document        JSONB NOT NULL
);
CREATE INDEX settlements_by_end ON settlements (period_end);
