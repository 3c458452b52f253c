"""Read side of the engine's bookkeeping for ops: worker heartbeats and checkpoint ages.

The worker writes both (:mod:`db.checkpoints`); ``sharewise monitor`` and ``sharewise status``
read them here. Ages are computed by the server (``now() - last_seen``), so clocks of the
reading machine do not matter. A database without the engine schema has no workers yet:
both readers return nothing rather than fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from engine.ops.status import WorkerBeat


@dataclass(frozen=True, slots=True)
class CheckpointAge:
    group: str
    topic: str
    partition: int
    next_offset: int
    worker_id: str
    age: float
    cluster_id: str = ""


async def worker_beats(conn: asyncpg.Connection) -> list[WorkerBeat]:
    """Every worker's last heartbeat, freshest first, with the stats it reported."""
    rows = await _rows(conn, "SELECT worker_id, group_id, partitions, stats::text AS stats,"
                             " EXTRACT(EPOCH FROM clock_timestamp() - last_seen)::float8 AS age"
                             " FROM engine.worker_heartbeat ORDER BY last_seen DESC, worker_id")
    return [WorkerBeat(r["worker_id"], r["group_id"], max(r["age"], 0.0), tuple(r["partitions"]), _stats(r["stats"]))
            for r in rows]


async def checkpoint_ages(conn: asyncpg.Connection) -> list[CheckpointAge]:
    """Every checkpoint with its age in seconds, ordered by group, topic and partition."""
    rows = await _rows(conn, "SELECT group_id, topic, partition, next_offset, worker_id, cluster_id,"
                             " EXTRACT(EPOCH FROM clock_timestamp() - updated_at)::float8 AS age"
                             " FROM engine.checkpoint ORDER BY group_id, topic, partition")
    return [CheckpointAge(r["group_id"], r["topic"], r["partition"], r["next_offset"], r["worker_id"],
                          max(r["age"], 0.0), r["cluster_id"]) for r in rows]


async def _rows(conn: asyncpg.Connection, sql: str) -> list[asyncpg.Record]:
    """Rows of ``sql``; none while the engine schema does not exist yet."""
    try:
        return await conn.fetch(sql)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return []


def _stats(text: str | None) -> dict[str, Any]:
    try:
        doc = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}
