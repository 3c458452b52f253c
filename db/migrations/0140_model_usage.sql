-- Leased models' usage (docs/models.md): a lease's signals are counted from trading_signal by the lease id
-- the signal's market_data carries, so this index keeps the recount cheap.
CREATE INDEX IF NOT EXISTS engine_trading_signal_lease_idx ON trading_signal ((market_data ->> 'lease_id'))
    WHERE market_data ? 'lease_id';
