"""Durable feed history in PostgreSQL: seq assignment, resume reads, Kafka positions, retention.

The seq of a message is decided once, in the database, by whichever feed server sees
it first (``engine.feed_append``, see ``db/migrations/0100_feed.sql``); every other
server, and the same server after a restart or a Kafka redelivery, gets the same
number back. So seq is identical across servers and restarts, with no gap and no
duplicate.

Retention keeps history bounded: the oldest bars beyond a count, and personal
messages older than an age. It always removes a prefix of a stream, so "seq N+1 is
still kept" proves that everything after N is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Sequence

import asyncpg

from engine.errors import EngineError
from sinks.feed.records import MARKET_USER, FeedRecord


class HistoryGone(EngineError):
    """The messages after the requested seq are no longer kept (or the history was reset)."""


@dataclass(frozen=True, slots=True)
class Sequenced:
    """A record with its seq; ``fresh`` when this call assigned it (False: seen before)."""

    record: FeedRecord
    seq: int
    fresh: bool


@dataclass(frozen=True, slots=True)
class Page:
    """History after some seq: ``rows`` as (seq, symbol, payload) in seq order; ``latest`` is the stream's last seq."""

    latest: int
    rows: list[tuple[int, str | None, bytes]]


async def append(conn: asyncpg.Connection, records: Sequence[FeedRecord],
                 offsets: dict[tuple[str, int], int], cluster_id: str = "") -> list[Sequenced]:
    """Give every record its seq and save the Kafka positions reached, in one transaction.

    Idempotent per (user, channel, message id). ``offsets`` maps (topic, partition) to the
    next offset to read; saved with the seqs, so a restart never skips a message, and marked
    with the log (``cluster_id``) they belong to.
    """
    positions = list(offsets.items())
    topics, partitions = [t for (t, _), _ in positions], [p for (_, p), _ in positions]
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT ord, seq, fresh FROM engine.feed_append($1::uuid[], $2::text[], $3::text[], $4::text[],"
            " $5::text[], $6::text[], $7::int[], $8::bigint[])",
            [r.user_id for r in records], [r.channel for r in records], [r.message_id for r in records],
            [r.symbol for r in records], [r.payload.decode() for r in records],
            topics, partitions, [o for _, o in positions],
        )
        if positions:
            await conn.execute(
                "UPDATE engine.feed_offset SET cluster_id = $3 FROM unnest($1::text[], $2::int[]) AS k(t, p)"
                " WHERE topic = k.t AND partition = k.p AND cluster_id <> $3", topics, partitions, cluster_id)
    return [Sequenced(records[row["ord"] - 1], row["seq"], row["fresh"]) for row in rows]


async def load_offsets(conn: asyncpg.Connection, topics: Iterable[str],
                       cluster_id: str | None = None) -> dict[tuple[str, int], int]:
    """Saved positions of ``topics``; with ``cluster_id``, only those saved in that log (or before logs were named)."""
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset, cluster_id FROM engine.feed_offset WHERE topic = ANY($1::text[])",
        list(topics),
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows
            if cluster_id is None or r["cluster_id"] in ("", cluster_id)}


async def latest_seq(conn: asyncpg.Connection, user_id: str, channel: str) -> int:
    """The last seq handed out on (user, channel); 0 before the first message."""
    value = await conn.fetchval(
        "SELECT last_seq FROM engine.feed_cursor WHERE user_id = $1 AND channel = $2", user_id, channel
    )
    return value or 0


async def read_after(conn: asyncpg.Connection, user_id: str, channel: str, after: int,
                     symbols: frozenset[str] | None, limit: int) -> Page:
    """Up to ``limit`` messages with seq > ``after`` (matching ``symbols`` if given), in one snapshot.

    Raises :class:`HistoryGone` when a message after ``after`` has been removed by
    retention, or when ``after`` lies beyond the stream (its history was reset).
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        latest = await latest_seq(conn, user_id, channel)
        if after > latest or (after < latest and not await _kept(conn, user_id, channel, after + 1)):
            raise HistoryGone(f"{channel} history after seq {after} is no longer kept")
        rows = await conn.fetch(
            "SELECT seq, symbol, payload FROM engine.feed_message WHERE user_id = $1 AND channel = $2 AND seq > $3"
            " AND ($4::text[] IS NULL OR symbol = ANY($4::text[])) ORDER BY seq LIMIT $5",
            user_id, channel, after, sorted(symbols) if symbols is not None else None, limit,
        )
    return Page(latest, [(r["seq"], r["symbol"], r["payload"].encode()) for r in rows])


async def _kept(conn: asyncpg.Connection, user_id: str, channel: str, seq: int) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM engine.feed_message WHERE user_id = $1 AND channel = $2 AND seq = $3)",
        user_id, channel, seq,
    )


async def prune(conn: asyncpg.Connection, *, bars_kept: int, personal_age: timedelta) -> int:
    """Apply retention; return how many messages were removed. Safe to run from every server at once."""
    bars = await conn.execute(
        "DELETE FROM engine.feed_message WHERE user_id = $1 AND channel = 'bars' AND seq <= "
        "(SELECT last_seq - $2 FROM engine.feed_cursor WHERE user_id = $1 AND channel = 'bars')",
        MARKET_USER, bars_kept,
    )
    personal = await conn.execute(
        "DELETE FROM engine.feed_message m USING ("
        "  SELECT user_id, channel, max(seq) AS upto FROM engine.feed_message"
        "  WHERE user_id <> $1 AND created_at < clock_timestamp() - $2::interval GROUP BY user_id, channel"
        ") old WHERE m.user_id = old.user_id AND m.channel = old.channel AND m.seq <= old.upto",
        MARKET_USER, personal_age,
    )
    return int(bars.split()[-1]) + int(personal.split()[-1])
