"""Checkpoints of the hot agent: partition state + the input offset it corresponds to.

A checkpoint row says: "applying every tick of ``topic``/``partition`` below
``next_offset`` of the log ``cluster_id`` to empty state gives ``state``", and ``origins``
holds the highest forwarded chunk applied per origin partition (engine.routing). Writes are
upserts guarded so a checkpoint never moves backwards within one log (a stale worker after
a rebalance cannot overwrite a newer one with an older offset); a checkpoint of a new log
(another cluster id) always replaces one of an old log.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

import asyncpg
import orjson

from db.connect import connect
from engine.ports import Checkpoint


async def load_checkpoints(conn: asyncpg.Connection, group_id: str, topic: str,
                           partitions: list[int]) -> dict[int, Checkpoint]:
    rows = await conn.fetch(
        "SELECT partition, next_offset, state, state_format, cluster_id, origins::text FROM engine.checkpoint"
        " WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])",
        group_id, topic, partitions,
    )
    return {r["partition"]: Checkpoint(r["partition"], r["next_offset"], bytes(r["state"]), r["state_format"],
                                       r["cluster_id"], r["origins"]) for r in rows}


async def save_checkpoints(conn: asyncpg.Connection, group_id: str, topic: str, worker_id: str,
                           checkpoints: list[Checkpoint]) -> None:
    """Upsert in one transaction; within one log an older offset never replaces a newer one."""
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO engine.checkpoint (group_id, topic, partition, next_offset, state, state_format, worker_id,"
            " cluster_id, origins) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"
            " ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
            " state = EXCLUDED.state, state_format = EXCLUDED.state_format, worker_id = EXCLUDED.worker_id,"
            " cluster_id = EXCLUDED.cluster_id, origins = EXCLUDED.origins, updated_at = NOW()"
            " WHERE engine.checkpoint.next_offset <= EXCLUDED.next_offset"
            " OR engine.checkpoint.cluster_id <> EXCLUDED.cluster_id",
            [(group_id, topic, c.partition, c.next_offset, c.state, c.state_format, worker_id, c.cluster_id,
              c.origins) for c in checkpoints],
        )


class PostgresCheckpointStore:
    """:class:`engine.ports.CheckpointStore` on PostgreSQL (``engine.checkpoint``, ``engine.worker_heartbeat``).

    One connection, opened on first use and dropped after any failure (the next call reconnects);
    every failure is raised to the caller, which decides whether it is an outage (db.connect.retryable).
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.dsn)
        return self._conn

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await fn(await self._db(), *args)
        except Exception:
            self._conn = None
            raise

    async def load(self, group_id: str, topic: str, partitions: list[int]) -> dict[int, Checkpoint]:
        return await self._call(load_checkpoints, group_id, topic, partitions)

    async def save(self, group_id: str, topic: str, worker_id: str, checkpoints: list[Checkpoint]) -> None:
        await self._call(save_checkpoints, group_id, topic, worker_id, checkpoints)

    async def heartbeat(self, worker_id: str, group_id: str, partitions: list[int], stats: Mapping[str, Any]) -> None:
        await self._call(heartbeat, worker_id, group_id, socket.gethostname(), os.getpid(), partitions,
                         orjson.dumps(stats).decode())

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def heartbeat(conn: asyncpg.Connection, worker_id: str, group_id: str, host: str, pid: int,
                    partitions: list[int], stats_json: str) -> None:
    await conn.execute(
        "INSERT INTO engine.worker_heartbeat (worker_id, group_id, host, pid, partitions, stats)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
        " ON CONFLICT (worker_id) DO UPDATE SET partitions = EXCLUDED.partitions, stats = EXCLUDED.stats,"
        " last_seen = NOW()",
        worker_id, group_id, host, pid, partitions, stats_json,
    )
