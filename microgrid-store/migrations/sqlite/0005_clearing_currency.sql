-- The currency a timeframe was cleared in, so that billing it in another
-- currency is refused (same numbers, another label). NULL: cleared at bare
-- grid prices, which name no currency, or before this migration.
ALTER TABLE timeframes ADD COLUMN currency TEXT;
