-- No address of the operator's descriptor wallet is given out twice, even
-- by two processes settling with the same wallet at once: every receive
-- index (an invoice's address) and change index (a batch's change) a
-- settlement gives out is a row here, written in the transaction that
-- stores the settlement; the primary key refuses an index another
-- settlement, standing or voided, gave out already (a concurrent writer of
-- the same index waits for the first to commit). Rows are never changed or
-- deleted (a voided settlement keeps its addresses).

CREATE TABLE wallet_addresses (
    wallet          TEXT NOT NULL,          -- the wallet's id (its descriptor's checksum)
    keychain        TEXT NOT NULL CHECK (keychain IN ('receive', 'change')),
    idx             BIGINT NOT NULL CHECK (idx >= 0),
    settlement_id   TEXT NOT NULL REFERENCES settlements (id),
    PRIMARY KEY (wallet, keychain, idx)
);
CREATE INDEX wallet_addresses_by_settlement ON wallet_addresses (settlement_id);

CREATE FUNCTION wallet_addresses_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet address % % of wallet % stays given to settlement %',
        OLD.keychain, OLD.idx, OLD.wallet, OLD.settlement_id;
END $$;

CREATE TRIGGER wallet_addresses_kept BEFORE UPDATE OR DELETE ON wallet_addresses
    FOR EACH ROW EXECUTE FUNCTION wallet_addresses_kept();

-- The addresses of the settlements stored before: each settlement's
-- document records its wallet and index ranges. Were two of them given the
-- same index (two processes settling at once before this table existed),
-- the settlement of the earlier period keeps it; the other keeps its rows
-- for the indices no one else gave.
INSERT INTO wallet_addresses (wallet, keychain, idx, settlement_id)
SELECT s.document->'wallet'->>'wallet', r.keychain, i, s.id
FROM settlements s
CROSS JOIN LATERAL (VALUES
    ('receive', (s.document->'wallet'->>'first_index')::bigint,
                (s.document->'wallet'->>'next_index')::bigint),
    ('change', (s.document->'wallet'->>'first_change_index')::bigint,
               (s.document->'wallet'->>'next_change_index')::bigint)
) AS r (keychain, first, upto)
CROSS JOIN LATERAL generate_series(r.first, r.upto - 1) AS i
WHERE jsonb_typeof(s.document->'wallet') = 'object'
ORDER BY s.period_start, s.id, r.keychain DESC, i
ON CONFLICT DO NOTHING;
