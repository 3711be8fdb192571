-- The registry in registration order: `position` is the rowid, so a new
-- prosumer gets the next one; prosumers stored before are numbered in id
-- order, the order they were read back in so far.

CREATE TABLE prosumers_in_order (
    position        INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    joined          TEXT NOT NULL,          -- YYYY-MM-DD
    left_on         TEXT,                   -- YYYY-MM-DD
    payout_address  TEXT,
    payout_network  TEXT
);
INSERT INTO prosumers_in_order (id, name, kind, joined, left_on, payout_address, payout_network)
SELECT id, name, kind, joined, left_on, payout_address, payout_network FROM prosumers ORDER BY id;
DROP TABLE prosumers;
ALTER TABLE prosumers_in_order RENAME TO prosumers;
