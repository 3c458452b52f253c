-- Paper trading (docs/orders.md): the Paper broker row the users' paper accounts live on, and
-- each user's trading state (schema "engine": the platform tables keep their definitions).

-- The paper broker, with the fixed id engine.orders.ids.PAPER_BROKER_ID: every paper account
-- (brokers_userbrokeraccount, id = paper_account_id(user)) points here.
INSERT INTO brokers_broker (id, name, display_name, api_base_url, is_active, supported_segments, configuration)
VALUES ('5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e10', 'Paper', 'Paper trading', NULL, TRUE, '["EQ"]', '{}')
ON CONFLICT (id) DO NOTHING;

-- Per user: the state set by hand (`sharewise risk halt|reduce|resume`: state, reason, changed_at),
-- loaded by the order stage when it starts, and the effective state the stage last reported in a
-- book (effective_state, effective_reason, as_of: market time), written by the portfolios sink.
CREATE TABLE engine.trading_state (
    user_id           UUID        PRIMARY KEY REFERENCES public.users_customuser(id) ON DELETE CASCADE,
    state             VARCHAR(10) NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'REDUCING', 'HALTED')),
    reason            TEXT,
    changed_at        TIMESTAMPTZ,
    effective_state   VARCHAR(10) CHECK (effective_state IN ('ACTIVE', 'REDUCING', 'HALTED')),
    effective_reason  TEXT,
    as_of             TIMESTAMPTZ
);
