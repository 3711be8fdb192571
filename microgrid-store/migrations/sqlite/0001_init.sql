-- microgrid on SQLite. Times are Unix seconds (UTC); energies whole Wh;
-- money and prices are the exact decimal's text, never REAL.

CREATE TABLE prosumers (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    joined          TEXT NOT NULL,          -- YYYY-MM-DD
    left_on         TEXT,                   -- YYYY-MM-DD
    payout_address  TEXT,
    payout_network  TEXT
);

CREATE TABLE readings (
    start           INTEGER NOT NULL,
    prosumer_id     TEXT NOT NULL,          -- checked against the registry, which may live elsewhere
    length_minutes  INTEGER NOT NULL,
    produced_wh     INTEGER NOT NULL CHECK (produced_wh >= 0),
    consumed_wh     INTEGER NOT NULL CHECK (consumed_wh >= 0),
    PRIMARY KEY (start, prosumer_id)
);

CREATE TABLE timeframes (
    start            INTEGER PRIMARY KEY,
    length_minutes   INTEGER NOT NULL,
    production_wh    INTEGER NOT NULL,
    consumption_wh   INTEGER NOT NULL,
    supply_wh        INTEGER NOT NULL,
    demand_wh        INTEGER NOT NULL,
    shared_wh        INTEGER NOT NULL,
    import_wh        INTEGER NOT NULL,
    export_wh        INTEGER NOT NULL,
    sellers          INTEGER NOT NULL,
    buyers           INTEGER NOT NULL,
    grid_import_price TEXT NOT NULL,
    grid_export_price TEXT NOT NULL,
    community_price   TEXT                  -- NULL: priced per billing period
);

CREATE TABLE allocations (
    start           INTEGER NOT NULL REFERENCES timeframes (start),
    prosumer_id     TEXT NOT NULL,
    produced_wh     INTEGER NOT NULL,
    consumed_wh     INTEGER NOT NULL,
    community_wh    INTEGER NOT NULL,       -- + sold, − bought
    PRIMARY KEY (start, prosumer_id)
);
CREATE INDEX allocations_by_prosumer ON allocations (prosumer_id, start);

CREATE TABLE settlements (
    id              TEXT PRIMARY KEY,
    period_start    INTEGER NOT NULL,
    period_end      INTEGER NOT NULL,
    content_hash    TEXT NOT NULL,
    paid_txid       TEXT,
    document        TEXT NOT NULL           -- the settlement as JSON
);
CREATE INDEX settlements_by_end ON settlements (period_end);
