-- Allocations are written in bulk (28.8 M rows for a month of 10,000
-- prosumers). The index by prosumer made each bulk write insert all over
-- that index (3x slower), and the foreign key checked every row with a
-- trigger (3x slower again). The store writes allocations only together
-- with their summary, in one transaction; a prosumer's allocations are
-- read from the key's time range.

DROP INDEX allocations_by_prosumer;
ALTER TABLE allocations DROP CONSTRAINT allocations_start_fkey;
