-- A period is settled once, a settlement is paid once, and only an unpaid
-- settlement can be voided (to be replaced). The database enforces it,
-- whatever code writes to it:
-- * no two standing (not voided) settlements overlap in time;
-- * a settlement's content (id, period, hash, document's amounts) is
--   written once; its payment is set once; its voiding is set once;
-- * a paid settlement is never voided, and no settlement is deleted.

ALTER TABLE settlements ADD COLUMN voided_at TIMESTAMPTZ;
ALTER TABLE settlements ADD CONSTRAINT settlements_period_not_empty
    CHECK (period_start < period_end);
ALTER TABLE settlements ADD CONSTRAINT settlements_paid_or_voided
    CHECK (paid_txid IS NULL OR voided_at IS NULL);
ALTER TABLE settlements ADD CONSTRAINT settlements_one_per_period
    EXCLUDE USING gist (tstzrange(period_start, period_end) WITH &&)
    WHERE (voided_at IS NULL);

CREATE FUNCTION settlements_written_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'settlement % cannot be deleted; void it instead', OLD.id;
    END IF;
    IF NEW.id <> OLD.id OR NEW.period_start <> OLD.period_start
       OR NEW.period_end <> OLD.period_end OR NEW.content_hash <> OLD.content_hash THEN
        RAISE EXCEPTION 'settlement %: its content is written once', OLD.id;
    END IF;
    IF OLD.paid_txid IS NOT NULL AND NEW.paid_txid IS DISTINCT FROM OLD.paid_txid THEN
        RAISE EXCEPTION 'settlement % is paid by % already', OLD.id, OLD.paid_txid;
    END IF;
    IF OLD.voided_at IS NOT NULL AND NEW.voided_at IS DISTINCT FROM OLD.voided_at THEN
        RAISE EXCEPTION 'settlement % is voided already', OLD.id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER settlements_written_once BEFORE UPDATE OR DELETE ON settlements
    FOR EACH ROW EXECUTE FUNCTION settlements_written_once();
