-- Websocket feed bookkeeping (schema "engine"): durable per-user, per-channel message
-- history with its seq numbers, the Kafka positions of the feed servers, and API tokens.
CREATE SCHEMA IF NOT EXISTS engine;

-- The latest seq handed out per (user, channel). Bars use the nil UUID as user:
-- one sequence shared by every client of the bars channel.
CREATE TABLE engine.feed_cursor (
    user_id   UUID    NOT NULL,
    channel   TEXT    NOT NULL,
    last_seq  BIGINT  NOT NULL CHECK (last_seq >= 0),
    PRIMARY KEY (user_id, channel)
);

-- Every message sent on the feed, retained for resume (since_seq). A message id appears
-- once per stream whatever Kafka redelivers; seq is 1, 2, 3, ... with no hole except the
-- oldest ones removed by retention (always a prefix).
CREATE TABLE engine.feed_message (
    user_id     UUID        NOT NULL,
    channel     TEXT        NOT NULL,
    seq         BIGINT      NOT NULL CHECK (seq > 0),
    message_id  TEXT        NOT NULL,
    symbol      TEXT,
    payload     TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, channel, seq),
    UNIQUE (user_id, channel, message_id)
);
CREATE INDEX feed_message_created_at ON engine.feed_message (created_at);

-- Where the feed servers have read each topic partition to (shared: a new server starts
-- here; everything before it already has its seq).
CREATE TABLE engine.feed_offset (
    topic        TEXT    NOT NULL,
    partition    INTEGER NOT NULL,
    next_offset  BIGINT  NOT NULL CHECK (next_offset >= 0),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (topic, partition)
);

-- Tokens issued by `sharewise token create`. A token opens a session only while its row
-- exists, is not revoked and has not expired (the JWT's own exp is checked too).
CREATE TABLE engine.api_token (
    jti         UUID        PRIMARY KEY,
    user_id     UUID        NOT NULL REFERENCES public.users_customuser(id) ON DELETE CASCADE,
    channels    TEXT[]      NOT NULL,
    issued_at   TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_token_user ON engine.api_token (user_id);

-- Give each message of a batch its seq: the existing one if the (user, channel, message id)
-- was seen before, else the next numbers of that stream in batch order (a repeat inside the
-- batch gets the seq of its first occurrence). Every stream of the batch is locked first
-- (transaction-level advisory locks, taken in one global order so two servers never
-- deadlock), so concurrent servers agree on every seq and a stream's seqs commit in order.
-- Returns one row per input element: its 1-based position, its seq, and whether this call
-- assigned it. Set-based: one statement for the whole batch after the locks. The Kafka
-- positions reached (p_topic/p_partition/p_offset) are saved in the same transaction, last
-- writer wins: a lagging server moving a position back only costs a deduplicated re-read.
CREATE FUNCTION engine.feed_append(p_user UUID[], p_channel TEXT[], p_message TEXT[],
                                   p_symbol TEXT[], p_payload TEXT[],
                                   p_topic TEXT[], p_partition INTEGER[], p_offset BIGINT[])
RETURNS TABLE (ord INTEGER, seq BIGINT, fresh BOOLEAN)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    lock_key BIGINT;
BEGIN
    FOR lock_key IN
        SELECT DISTINCT hashtextextended(k.u::text || '/' || k.c, 0)
        FROM unnest(p_user, p_channel) AS k(u, c) ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    -- A new statement, so a new snapshot: it sees every seq committed before our locks.
    RETURN QUERY
    WITH input AS (
        SELECT i.ord::INTEGER AS ord, i.u, i.c, i.m, i.s, i.p
        FROM unnest(p_user, p_channel, p_message, p_symbol, p_payload) WITH ORDINALITY AS i(u, c, m, s, p, ord)
    ), known AS (  -- one index probe per message (LIMIT 1 keeps it from becoming a scan of the history)
        SELECT i.ord, f.seq FROM input i
        CROSS JOIN LATERAL (SELECT f.seq FROM engine.feed_message f
                            WHERE f.user_id = i.u AND f.channel = i.c AND f.message_id = i.m LIMIT 1) f
    ), first_seen AS (
        SELECT DISTINCT ON (i.u, i.c, i.m) i.* FROM input i
        WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.ord = i.ord)
        ORDER BY i.u, i.c, i.m, i.ord
    ), numbered AS (
        SELECT f.*, coalesce(cur.last_seq, 0) + row_number() OVER (PARTITION BY f.u, f.c ORDER BY f.ord) AS seq
        FROM first_seen f LEFT JOIN engine.feed_cursor cur ON cur.user_id = f.u AND cur.channel = f.c
    ), inserted AS (
        INSERT INTO engine.feed_message (user_id, channel, seq, message_id, symbol, payload)
        SELECT n.u, n.c, n.seq, n.m, n.s, n.p FROM numbered n
    ), bumped AS (
        INSERT INTO engine.feed_cursor AS cur (user_id, channel, last_seq)
        SELECT n.u, n.c, max(n.seq) FROM numbered n GROUP BY n.u, n.c
        ON CONFLICT (user_id, channel) DO UPDATE SET last_seq = EXCLUDED.last_seq
    )
    SELECT i.ord, coalesce(k.seq, n.seq), n.ord IS NOT DISTINCT FROM i.ord
    FROM input i
    LEFT JOIN known k ON k.ord = i.ord
    LEFT JOIN numbered n ON k.ord IS NULL AND n.u = i.u AND n.c = i.c AND n.m = i.m
    ORDER BY i.ord;
    INSERT INTO engine.feed_offset AS o (topic, partition, next_offset)
    SELECT * FROM unnest(p_topic, p_partition, p_offset)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = NOW();
END
$$;
