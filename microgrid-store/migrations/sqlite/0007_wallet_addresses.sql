-- No address of the operator's descriptor wallet is given out twice, even
-- by two processes settling with the same wallet at once: every receive
-- index (an invoice's address) and change index (a batch's change) a
-- settlement gives out is a row here, written in the transaction that
-- stores the settlement; the primary key refuses an index another
-- settlement, standing or voided, gave out already. Rows are never
-- changed or deleted (a voided settlement keeps its addresses).

CREATE TABLE wallet_addresses (
    wallet          TEXT NOT NULL,          -- the wallet's id (its descriptor's checksum)
    keychain        TEXT NOT NULL CHECK (keychain IN ('receive', 'change')),
    idx             INTEGER NOT NULL CHECK (idx >= 0),
    settlement_id   TEXT NOT NULL REFERENCES settlements (id),
    PRIMARY KEY (wallet, keychain, idx)
) WITHOUT ROWID;
CREATE INDEX wallet_addresses_by_settlement ON wallet_addresses (settlement_id);

CREATE TRIGGER wallet_addresses_kept BEFORE UPDATE ON wallet_addresses
BEGIN
    SELECT RAISE(ABORT, 'wallet_address_kept: a wallet address given out stays given');
END;

CREATE TRIGGER wallet_addresses_never_deleted BEFORE DELETE ON wallet_addresses
BEGIN
    SELECT RAISE(ABORT, 'wallet_address_kept: a wallet address given out stays given');
END;

-- The addresses of the settlements stored before: each settlement's
-- document records its wallet and index ranges. Were two of them given the
-- same index (two processes settling at once before this table existed),
-- the settlement of the earlier period keeps it; the other keeps its rows
-- for the indices no one else gave.
WITH RECURSIVE given (settlement_id, period_start, wallet, keychain, idx, upto) AS (
    SELECT id, period_start, json_extract(document, '$.wallet.wallet'), 'receive',
           json_extract(document, '$.wallet.first_index'), json_extract(document, '$.wallet.next_index')
    FROM settlements
    WHERE CASE WHEN json_valid(document) THEN json_type(document, '$.wallet') END = 'object'
    UNION ALL
    SELECT id, period_start, json_extract(document, '$.wallet.wallet'), 'change',
           json_extract(document, '$.wallet.first_change_index'), json_extract(document, '$.wallet.next_change_index')
    FROM settlements
    WHERE CASE WHEN json_valid(document) THEN json_type(document, '$.wallet') END = 'object'
    UNION ALL
    SELECT settlement_id, period_start, wallet, keychain, idx + 1, upto FROM given WHERE idx + 1 < upto
)
INSERT OR IGNORE INTO wallet_addresses (wallet, keychain, idx, settlement_id)
SELECT wallet, keychain, idx, settlement_id FROM given
WHERE idx < upto
ORDER BY period_start, settlement_id, keychain DESC, idx;
