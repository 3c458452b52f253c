-- The 13 indexes of the platform schema (seed/database_schema.md, "Indexes and Performance"),
-- including the partial unique index that allows one active subscription per user.

-- Performance indexes
CREATE INDEX idx_trading_signal_user_timestamp ON trading_signal(user_id, timestamp DESC);
CREATE INDEX idx_trading_signal_symbol_timestamp ON trading_signal(symbol, timestamp DESC);
CREATE INDEX idx_trading_order_user_status ON trading_order(user_id, status);
CREATE INDEX idx_marketdata_symbol_timeframe_timestamp ON analytics_marketdata(symbol, timeframe, timestamp DESC);
CREATE INDEX idx_notifications_user_created ON notifications_notification(user_id, created_at DESC);

-- AI Studio indexes
CREATE INDEX idx_mlmodel_user_status ON ai_studio_mlmodel(user_id, status);
CREATE INDEX idx_mlmodel_published ON ai_studio_mlmodel(is_published, published_at DESC);
CREATE INDEX idx_trainingjob_user_status ON ai_studio_trainingjob(user_id, status);
CREATE INDEX idx_trainingjob_model_created ON ai_studio_trainingjob(model_id, created_at DESC);
CREATE INDEX idx_modellease_lessee_active ON ai_studio_modellease(lessee_id, is_active);
CREATE INDEX idx_marketplacelisting_active_featured ON ai_studio_marketplacelisting(is_active, is_featured);
CREATE INDEX idx_computeusage_user_date ON ai_studio_computeusage(user_id, usage_date DESC);

-- Unique constraints
CREATE UNIQUE INDEX idx_unique_active_subscription ON subscriptions_subscription(user_id)
WHERE is_active = TRUE;
