-- A period is settled once, a settlement is paid once, and only an unpaid
-- settlement can be voided (to be replaced). The database enforces it,
-- whatever code writes to it (SQLite has no exclusion constraints; these
-- triggers run inside the writing transaction, and SQLite has one writer
-- at a time):
-- * no two standing (not voided) settlements overlap in time;
-- * a settlement's id, period and hash are written once; its payment is
--   set once; its voiding is set once; a paid settlement is never voided;
-- * no settlement is deleted.

ALTER TABLE settlements ADD COLUMN voided_at INTEGER;

CREATE TRIGGER settlements_one_per_period BEFORE INSERT ON settlements
WHEN NEW.voided_at IS NULL AND EXISTS (
    SELECT 1 FROM settlements s
    WHERE s.voided_at IS NULL AND s.period_start < NEW.period_end AND NEW.period_start < s.period_end)
BEGIN
    SELECT RAISE(ABORT, 'settlement_overlap: the period overlaps a standing settlement');
END;

CREATE TRIGGER settlements_written_once BEFORE UPDATE ON settlements
WHEN NEW.id IS NOT OLD.id OR NEW.period_start IS NOT OLD.period_start
    OR NEW.period_end IS NOT OLD.period_end OR NEW.content_hash IS NOT OLD.content_hash
    OR (OLD.paid_txid IS NOT NULL AND NEW.paid_txid IS NOT OLD.paid_txid)
    OR (OLD.voided_at IS NOT NULL AND NEW.voided_at IS NOT OLD.voided_at)
    OR (NEW.paid_txid IS NOT NULL AND NEW.voided_at IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'settlement_written_once: a settlement is written, paid and voided once, and never both paid and voided');
END;

CREATE TRIGGER settlements_never_deleted BEFORE DELETE ON settlements
BEGIN
    SELECT RAISE(ABORT, 'settlement_never_deleted: void a settlement instead');
END;
