"""Checkpoints of the hot agent: partition state + the input offset it corresponds to.

A checkpoint row says: "applying every tick of ``topic``/``partition`` below
``next_offset`` of the log ``cluster_id`` to empty state gives ``state``", and ``origins``
holds the highest forwarded chunk applied per origin partition (engine.routing). Writes are
upserts guarded so a checkpoint never moves backwards within one log (a stale worker after
a rebalance cannot overwrite a newer one with an older offset); a checkpoint of a new log
(another cluster id) always replaces one of an old log.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class Checkpoint:
    partition: int
    next_offset: int
    state: bytes
    state_format: int
    cluster_id: str = ""
    origins: str = "{}"  # JSON: engine.routing.AppliedOrigins.to_json()


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


async def heartbeat(conn: asyncpg.Connection, worker_id: str, group_id: str, host: str, pid: int,
                    partitions: list[int], stats_json: str) -> None:
    await conn.execute(
        "INSERT INTO engine.worker_heartbeat (worker_id, group_id, host, pid, partitions, stats)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
        " ON CONFLICT (worker_id) DO UPDATE SET partitions = EXCLUDED.partitions, stats = EXCLUDED.stats,"
        " last_seen = NOW()",
        worker_id, group_id, host, pid, partitions, stats_json,
    )
