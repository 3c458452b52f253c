-- Engine bookkeeping (schema "engine", not part of the platform schema):
-- per-partition checkpoints of the hot agent and worker heartbeats.
CREATE SCHEMA IF NOT EXISTS engine;

-- One row per (consumer group, input topic, partition): the state of that partition's
-- instruments (bars, indicators, strategies) after every tick below next_offset was applied.
CREATE TABLE engine.checkpoint (
    group_id     TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    partition    INTEGER     NOT NULL,
    next_offset  BIGINT      NOT NULL CHECK (next_offset >= 0),
    state        BYTEA       NOT NULL,
    state_format INTEGER     NOT NULL,
    worker_id    TEXT        NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Liveness of workers, for `sharewise monitor` and `sharewise status`.
CREATE TABLE engine.worker_heartbeat (
    worker_id   TEXT        PRIMARY KEY,
    group_id    TEXT        NOT NULL,
    host        TEXT        NOT NULL,
    pid         INTEGER     NOT NULL,
    partitions  INTEGER[]   NOT NULL DEFAULT '{}',
    stats       JSONB       NOT NULL DEFAULT '{}',
    started_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
