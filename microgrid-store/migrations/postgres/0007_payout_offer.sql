-- A member's BOLT12 offer (`lno1...`) for payouts over Lightning below the
-- payout policy's on-chain threshold. NULL: no offer (every member stored
-- before this migration).
ALTER TABLE prosumers ADD COLUMN payout_offer TEXT;
