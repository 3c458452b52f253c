"""Checkpoint-and-replay for the hot agent (docs/architecture.md, "Recovery").

:meth:`Recovery.assume` takes a partition over: it loads its checkpoint, restores the state
and says from which offset to apply ticks. A checkpoint of another log (its cluster id differs
from the broker's, or its offset lies beyond the partition's high watermark: an embedded broker
restarted empty, a topic recreated) keeps its state but not its offsets: the partition resumes
from the log's start, with one WARNING, ``sharewise_log_resets_total`` counted, and ``monitor``
saying WARN until the next checkpoint replaces it. A checkpoint that no longer fits the worker
(the active strategies' indicators changed) is rebuilt by re-reading the partition's ticks up
to its offset. :meth:`Recovery.save` writes the owned partitions' checkpoints and the heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from db.connect import retryable
from engine.errors import EngineError
from engine.ports import Checkpoint, CheckpointStore
from engine.routing import AppliedOrigins, Origin, origin_of, route
from engine.ticks import decode_packets
from streams.topics import MARKET_TICKS as TICKS
from streams.topics import ORDERS_INPUTS

from streams.admin import high_watermarks
from streams.state import PartitionState

if TYPE_CHECKING:
    from streams.worker import EngineWorker

log = logging.getLogger("sharewise.worker")

STATE_FORMAT = 1


class Recovery:
    """The database side of a worker's partitions: checkpoints in, checkpoints and heartbeats out."""

    def __init__(self, worker: EngineWorker, store: CheckpointStore) -> None:
        self.worker = worker
        self.store = store

    async def close(self) -> None:
        await self.store.close()

    async def assume(self, partition: int) -> PartitionState:
        """Restore ``partition``'s checkpoint (or start it empty) and return where to resume."""
        w = self.worker
        inst = w.instruments_of(partition)
        ckpt = await self.load(TICKS, partition)
        if ckpt is None:
            w.pipeline.clear(inst)
            state = PartitionState(next_offset=0)
        elif (other_log := await self.other_log(ckpt, partition)) is not None:
            self._restore_or_clear(partition, inst, ckpt)
            log.warning("partition %d: the checkpoint at offset %d belongs to another log (%s): state kept, resuming"
                        " from the log's start", partition, ckpt.next_offset, other_log)
            w.stats.log_resets += 1
            state = PartitionState(next_offset=0)
        else:
            if not self._restore_or_clear(partition, inst, ckpt):
                log.warning("partition %d: its checkpoint does not fit this worker; rebuilding the state from the"
                            " topic up to offset %d", partition, ckpt.next_offset)
                await self._rebuild(partition, ckpt.next_offset)
            state = PartitionState(ckpt.next_offset, AppliedOrigins.from_json(orjson.loads(ckpt.origins)))
        log.info("partition %d assumed at offset %d", partition, state.next_offset)
        return state

    async def load(self, topic: str, partition: int) -> Checkpoint | None:
        """The checkpoint of ``topic``'s ``partition`` (None when there is none), retried through outages."""
        while True:
            try:
                return (await self.store.load(self.worker.group_id, topic, [partition])).get(partition)
            except Exception as exc:  # noqa: BLE001 - classified below
                if not retryable(exc):
                    raise
                # a database outage: nothing can be applied correctly without it
                log.warning("cannot load checkpoint of partition %d (%s); retrying", partition, exc)
                await asyncio.sleep(1.0)

    async def other_log(self, ckpt: Checkpoint, partition: int, topic: str = TICKS) -> str | None:
        """Why ``ckpt``'s offsets mean nothing in the current log, or ``None`` when they do.

        The consumer's own high watermark may be stale (fetched before another worker moved the
        checkpoint on), so one below the checkpoint is confirmed by a fresh fetch before it counts.
        """
        w = self.worker
        if ckpt.cluster_id and ckpt.cluster_id != w.cluster_id:
            return f"cluster {ckpt.cluster_id}, the broker's is {w.cluster_id or 'unnamed'}"
        cached = w.app.consumer.highwater(TopicPartition(topic, partition))
        if cached is None or ckpt.next_offset <= cached:
            return None
        high = (await high_watermarks(w.bootstrap, topic)).get(partition, 0)
        return f"offset {ckpt.next_offset} lies beyond the high watermark {high}" if ckpt.next_offset > high else None

    def _restore_or_clear(self, partition: int, inst: np.ndarray, ckpt: Checkpoint) -> bool:
        """Restore the saved state; on a misfit, clear it and return False."""
        try:
            self.worker.pipeline.restore(inst, ckpt.state)
            return True
        except EngineError as exc:  # e.g. the active strategies' indicators changed since it was taken
            log.warning("partition %d: checkpoint does not fit (%s)", partition, exc)
            self.worker.pipeline.clear(inst)
            return False

    async def rebuild(self, partition: int, end: int) -> None:
        """:meth:`_rebuild` for a live reload of the deployments (EngineWorker.reload): a fresh pipeline is warmed
        with the partition's ticks it has already applied."""
        await self._rebuild(partition, end)

    async def _rebuild(self, partition: int, end: int) -> None:
        """Re-apply the partition's ticks below ``end`` to empty state, discarding what they produce.

        The same routing as the hot path: ticks owned elsewhere are skipped, forwarded packets are
        applied once. Those outputs were emitted before the checkpoint was taken; a strategy added
        since then starts emitting from ``end`` on, with its indicators already warm.
        """
        w = self.worker
        tp = TopicPartition(TICKS, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=w.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        origins = AppliedOrigins()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            position = await consumer.position(tp)
            if position > 0:
                log.warning("partition %d: ticks below offset %d are gone; state rebuilt from there", partition, position)
            while position < end:
                records = (await consumer.getmany(tp, timeout_ms=1000, max_records=1000)).get(tp, [])
                self._reapply([r for r in records if r.offset < end], origins)
                position = await consumer.position(tp)
        finally:
            await consumer.stop()

    def _reapply(self, records: list[Any], origins: AppliedOrigins) -> None:
        fresh: list[tuple[Any, Origin | None]] = []
        for r in records:
            origin = origin_of(r.headers)
            if origin is None or origins.is_new(origin):
                fresh.append((r, origin))
                if origin is not None:
                    origins.applied(origin)
        if not fresh:
            return
        decoded = decode_packets([r.value or b"" for r, _ in fresh], self.worker.registry)
        arrival = np.array([r.partition for r, _ in fresh], dtype=np.int64)
        forwarded = np.array([o is not None for _, o in fresh], dtype=bool)
        local = decoded.select(route(decoded, arrival, forwarded, self.worker.hot.owner).local)
        self.worker.pipeline.feed(local.inst, local.ts_ns, local.price, local.qty)

    async def save(self, owned: dict[int, PartitionState], orders: list[Checkpoint]) -> bool:
        """Checkpoint ``owned`` and the order stage's ``orders``, and heartbeat; False (logged, nothing acked)
        when the database is away."""
        w = self.worker
        rows = [Checkpoint(p, st.next_offset, w.pipeline.snapshot(w.instruments_of(p)), STATE_FORMAT, w.cluster_id,
                           orjson.dumps(st.origins.to_json()).decode())
                for p, st in owned.items()]
        try:
            if rows:
                await self.store.save(w.group_id, TICKS, w.worker_id, rows)
            if orders:
                await self.store.save(w.group_id, ORDERS_INPUTS, w.worker_id, orders)
            await self.store.heartbeat(w.worker_id, w.group_id, sorted(w._owned), w.stats.as_dict())
        except Exception as exc:  # noqa: BLE001 - classified below
            if not retryable(exc):
                raise
            log.warning("checkpoint not written (%s); input stays unacknowledged and will be retried", exc)
            return False
        return True
