-- Readings and allocations clustered by their key (one B-tree per table
-- instead of a table and an index): bulk writes append in time order and
-- range reads scan one tree. Allocations lose their index by prosumer: it
-- made every bulk write of a month insert all over the file (6x slower);
-- a prosumer's allocations are read from the key's time range instead.

DROP INDEX allocations_by_prosumer;
CREATE TABLE readings_new (
    start           INTEGER NOT NULL,
    prosumer_id     TEXT NOT NULL,
    length_minutes  INTEGER NOT NULL,
    produced_wh     INTEGER NOT NULL CHECK (produced_wh >= 0),
    consumed_wh     INTEGER NOT NULL CHECK (consumed_wh >= 0),
    PRIMARY KEY (start, prosumer_id)
) WITHOUT ROWID;
INSERT INTO readings_new SELECT start, prosumer_id, length_minutes, produced_wh, consumed_wh FROM readings;
DROP TABLE readings;
ALTER TABLE readings_new RENAME TO readings;
CREATE TABLE allocations_new (
    start           INTEGER NOT NULL REFERENCES timeframes (start),
    prosumer_id     TEXT NOT NULL,
    produced_wh     INTEGER NOT NULL,
    consumed_wh     INTEGER NOT NULL,
    community_wh    INTEGER NOT NULL,
    PRIMARY KEY (start, prosumer_id)
) WITHOUT ROWID;
INSERT INTO allocations_new SELECT start, prosumer_id, produced_wh, consumed_wh, community_wh FROM allocations;
DROP TABLE allocations;
ALTER TABLE allocations_new RENAME TO allocations;
