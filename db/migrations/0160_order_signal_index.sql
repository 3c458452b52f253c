-- Removing a signal makes PostgreSQL find the orders pointing to it (trading_order.signal_id, ON DELETE SET
-- NULL), and retention asks the same question for every candidate row (README.md, "Data retention"). The seed
-- has no index on that column, so each was a scan of trading_order; this one makes it a lookup.
CREATE INDEX IF NOT EXISTS engine_trading_order_signal_idx ON trading_order (signal_id);
