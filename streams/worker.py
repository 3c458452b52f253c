"""The engine's Faust app: the hot tick agent and the sink agents.

Topology (one consumer group, ``sharewise-engine`` by default; workers split the partitions):

* ``ticks`` agent on ``market.ticks``: takes events in batches (``noack_take``), decodes tick
  packets, dead-letters bad ticks to ``market.ticks.dlq`` (original bytes, reason, source
  topic/partition/offset), runs the rest through :class:`engine.pipeline.SignalPipeline`, and
  sends closed bars to ``market.bars`` (one packet per partition and batch), signals to
  ``signals`` and owner notifications to ``notifications``, without awaiting each send.
* ``bars``, ``signals`` and ``notifications`` sink agents write their topic to PostgreSQL with
  :class:`sinks.postgres.CopySink` and acknowledge their input only after the rows are committed.

Recovery is checkpoint-and-replay (DESIGN.md): every ``checkpoint_interval`` the ticks agent
flushes the producer, writes each owned partition's state with its next input offset to
``engine.checkpoint``, and only then acknowledges those input events (so the Kafka commit never
passes the checkpoint). When it first sees a partition (start-up or rebalance) it restores that
partition's checkpoint and skips events below its offset; events after it are replayed and give
the same deterministic ids, which the sinks drop.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
import numpy as np
import orjson

import streams.transport  # noqa: F401  (registers the tuned transport)
from db.checkpoints import Checkpoint, heartbeat, load_checkpoints, save_checkpoints
from db.connect import connect
from engine import outputs
from engine.errors import EngineError
from engine.instruments import InstrumentRegistry
from engine.partitioner import partition_for
from engine.pipeline import SignalPipeline, Step
from engine.settings import Settings
from engine.ticks import Reject, decode_packets
from sinks.postgres import MARKETDATA, NOTIFICATIONS, SIGNALS, CopySink
from streams import metrics, topics
from streams.transport import SCHEME

log = logging.getLogger("sharewise.worker")

TICKS, DLQ, BARS = topics.MARKET_TICKS, topics.MARKET_TICKS_DLQ, topics.MARKET_BARS
SIGNALS_T, ORDERS, NOTIFICATIONS_T = topics.SIGNALS, topics.ORDERS, topics.NOTIFICATIONS
STATE_FORMAT = 1
STOP_STEP_S = 10.0  # longest wait for each step of a shutdown


@dataclass(slots=True)
class WorkerStats:
    """Counters of this worker since start (the live panel, heartbeats and ``--json`` read them)."""

    ticks: int = 0
    dlq: Counter = field(default_factory=Counter)
    bars: int = 0
    signals: int = 0
    notifications: int = 0
    failures: int = 0
    checkpoints: int = 0
    last_checkpoint: float = 0.0
    sink_rows: Counter = field(default_factory=Counter)
    sink_backlog: int = 0
    sink_errors: Counter = field(default_factory=Counter)  # rows a sink could not write, by cause

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks, "dlq": dict(self.dlq), "bars": self.bars, "signals": self.signals,
            "notifications": self.notifications, "strategy_failures": self.failures,
            "checkpoints": self.checkpoints, "sink_rows": dict(self.sink_rows), "sink_backlog": self.sink_backlog,
            "sink_errors": dict(self.sink_errors),
        }  # fmt: skip


@dataclass(slots=True)
class PartitionState:
    next_offset: int
    pending: list[Any] = field(default_factory=list)


class EngineWorker:
    """One worker process's Faust app. ``await start()``, ``await stop()``; or ``sharewise worker``."""

    def __init__(self, settings: Settings, bootstrap: str, dsn: str, registry: InstrumentRegistry,
                 make_pipeline: Callable[[], SignalPipeline], *, group_id: str = "sharewise-engine",
                 worker_id: str | None = None, checkpoint_interval: float = 2.0, batch_max: int = 512) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.dsn = dsn
        self.registry = registry
        self.pipeline = make_pipeline()
        self.group_id = group_id
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.checkpoint_interval = checkpoint_interval
        self.batch_max = batch_max
        self.stats = WorkerStats()
        self.positions: dict[str, dict[int, int]] = defaultdict(dict)  # topic -> partition -> next offset done
        self._owned: dict[int, PartitionState] = {}
        self._inst_of_partition = _instruments_by_partition(registry, settings.partitions)
        self._partition_of_inst = np.array([partition_for(s, settings.partitions) for s in registry.symbols])
        self._last_checkpoint = time.monotonic()
        self._lock = asyncio.Lock()
        self._conn: Any = None
        self.metrics_port: int | None = None  # of /metrics, when SHAREWISE_METRICS_PORT is set
        self.app = self._build_app(bootstrap)

    # --- Faust wiring ------------------------------------------------------------------------

    def _build_app(self, bootstrap: str) -> faust.App:
        app = faust.App(
            self.group_id, broker=f"{SCHEME}://{bootstrap}", value_serializer="raw", key_serializer="raw",
            store="memory://", web_enabled=False, topic_partitions=self.settings.partitions,
            topic_disable_leader=True, broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
            broker_commit_interval=1.0, consumer_auto_offset_reset="earliest", producer_linger=0.005,
            producer_max_batch_size=262144, consumer_max_fetch_size=4 * 1024 * 1024, loghandlers=[],
            # acks wait for checkpoints, so a rebalance must not wait for them (the next owner replays)
            stream_wait_empty=False,
        )  # fmt: skip
        topic = lambda name: app.topic(name, value_serializer="raw", key_serializer="raw")  # noqa: E731
        self.topics = {name: topic(name) for name in topics.ENGINE_TOPICS}
        app.agent(self.topics[TICKS], name="sharewise.ticks")(self._ticks_agent)
        self.sinks = {
            BARS: (CopySink(self.dsn, MARKETDATA), _bar_rows),
            SIGNALS_T: (CopySink(self.dsn, SIGNALS), _signal_rows),
            NOTIFICATIONS_T: (CopySink(self.dsn, NOTIFICATIONS), _notification_rows),
        }
        for name in self.sinks:
            app.agent(self.topics[name], name=f"sharewise.sink.{name}")(self._sink_agent(name))
        app.on_partitions_revoked.connect(self._on_revoked)
        return app

    async def start(self) -> None:
        self.pipeline.warm_up()  # load the compiled kernels now, not inside the first batch
        await self.app.start()
        self.metrics_port = metrics.attach(self)
        self._ticker = asyncio.create_task(self._checkpoint_timer(), name="sharewise.checkpoints")

    async def _checkpoint_timer(self) -> None:
        """Checkpoint (or just heartbeat) when input has gone quiet, so an idle worker still commits and looks alive."""
        while True:
            await asyncio.sleep(self.checkpoint_interval / 2)
            if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
                try:
                    await self.checkpoint()
                except Exception as exc:  # never let the timer die: the next round retries
                    log.warning("periodic checkpoint failed: %s", exc)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        metrics.detach(self)
        try:  # bounded: a stop must end even if the database or broker hangs
            await asyncio.wait_for(self.checkpoint(), STOP_STEP_S)
        except Exception as exc:  # the last checkpoint is an optimisation: replay covers its loss
            log.warning("final checkpoint not written (%s): the next owner replays from the previous one", exc)
        try:
            await asyncio.wait_for(self.app.stop(), STOP_STEP_S)
        except TimeoutError:
            log.warning("the Faust app did not stop within %.0fs; exiting anyway", STOP_STEP_S)
        for sink, _ in self.sinks.values():
            await sink.close()
        if self._conn is not None:
            await self._conn.close()

    async def _on_revoked(self, app: faust.App, revoked: set, **_: Any) -> None:
        for tp in revoked:
            if tp.topic == TICKS and self._owned.pop(tp.partition, None) is not None:
                log.info("partition %d revoked: its state is left to the next owner's checkpoint", tp.partition)

    # --- hot path ----------------------------------------------------------------------------

    async def _ticks_agent(self, stream: faust.Stream) -> None:
        async for events in stream.noack_take(self.batch_max, within=0.01):
            async with self._lock:
                await self._process(events)
                if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
                    await self._checkpoint_locked()

    async def _process(self, events: Sequence[Any]) -> None:
        values, origins = [], []
        for event in events:
            msg = event.message
            state = self._owned.get(msg.partition) or await self._assume(msg.partition)
            if msg.offset < state.next_offset:
                event.ack()  # already inside the restored state
                self.positions[TICKS][msg.partition] = msg.offset + 1
                continue
            values.append(msg.value or b"")
            origins.append(msg)
            state.next_offset = msg.offset + 1
            state.pending.append(event)
        if not values:
            return
        decoded = decode_packets(values, self.registry)
        status, step = self.pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
        self.stats.ticks += int(len(status) - np.count_nonzero(status))
        for msg in origins:  # processed: counters and positions move together (metrics read both)
            self.positions[TICKS][msg.partition] = msg.offset + 1
        await self._dead_letter(decoded.rejects + decoded.rejected_by(status), origins)
        await self._emit(step)

    async def _dead_letter(self, rejects: list[Reject], origins: list[Any]) -> None:
        for r in rejects:
            src = origins[r.message]
            record = {"reason": str(r.reason), "detail": r.detail, "topic": src.topic, "partition": src.partition,
                      "offset": src.offset, "line": r.line}
            try:
                record["original"] = r.raw.decode()
            except UnicodeDecodeError:
                record["original_b64"] = base64.b64encode(r.raw).decode()
            await self.topics[DLQ].send(key=src.key, value=orjson.dumps(record), partition=src.partition)
            self.stats.dlq[str(r.reason)] += 1

    async def _emit(self, step: Step) -> None:
        if step.bars:
            by_partition: dict[int, list[int]] = defaultdict(list)
            for i, bar in enumerate(step.bars):
                by_partition[int(self._partition_of_inst[self.registry.index[bar.symbol]])].append(i)
            for p, idx in by_partition.items():
                packet = outputs.bars_packet([step.bars[i] for i in idx], step.rows[idx], self.pipeline.default_positions)
                await self.topics[BARS].send(value=packet, partition=p)
            self.stats.bars += len(step.bars)
        for signal in step.signals:
            msg = outputs.signal_message(signal)
            key = (msg["user_id"] or "").encode()
            await self.topics[SIGNALS_T].send(key=key, value=orjson.dumps(msg))
            await self._notify(outputs.signal_notification(msg))
            self.stats.signals += 1
            metrics.SIGNALS.labels(msg["strategy_name"]).inc()
        for failure in step.failures:
            self.stats.failures += 1
            log.warning("strategy failure: %s", failure.message)
            if (note := outputs.failure_notification(failure)) is not None:
                await self._notify(note)

    async def _notify(self, note: dict[str, Any]) -> None:
        await self.topics[NOTIFICATIONS_T].send(key=note["user_id"].encode(), value=orjson.dumps(note))
        self.stats.notifications += 1

    # --- checkpoints -------------------------------------------------------------------------

    async def _db(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.dsn)
        return self._conn

    async def _assume(self, partition: int) -> PartitionState:
        """Take ownership of ``partition``: restore its checkpoint (or start it empty)."""
        inst = self._inst_of_partition[partition]
        while True:
            try:
                found = await load_checkpoints(await self._db(), self.group_id, TICKS, [partition])
                break
            except Exception as exc:  # database outage: nothing can be processed correctly without it
                self._conn = None
                log.warning("cannot load checkpoint of partition %d (%s); retrying", partition, exc)
                await asyncio.sleep(1.0)
        ckpt = found.get(partition)
        if ckpt is None:
            self.pipeline.clear(inst)
            state = PartitionState(next_offset=0)
        else:
            try:
                self.pipeline.restore(inst, ckpt.state)
            except EngineError as exc:  # e.g. the active strategies' indicators changed since it was taken
                log.warning("partition %d: its checkpoint does not fit this worker (%s); rebuilding the state from"
                            " the topic up to offset %d", partition, exc, ckpt.next_offset)
                self.pipeline.clear(inst)
                await self._rebuild(partition, ckpt.next_offset)
            state = PartitionState(next_offset=ckpt.next_offset)
        log.info("partition %d assumed at offset %d", partition, state.next_offset)
        self._owned[partition] = state
        return state

    async def _rebuild(self, partition: int, end: int) -> None:
        """Re-apply the partition's ticks below ``end`` to empty state, discarding what they produce.

        Those outputs were emitted before the checkpoint was taken; a strategy added since
        then starts emitting from ``end`` on, with its indicators already warm.
        """
        tp = TopicPartition(TICKS, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            position = await consumer.position(tp)
            if position > 0:
                log.warning("partition %d: ticks below offset %d are gone; state rebuilt from there", partition, position)
            while position < end:
                records = (await consumer.getmany(tp, timeout_ms=1000, max_records=1000)).get(tp, [])
                values = [r.value or b"" for r in records if r.offset < end]
                if values:
                    decoded = decode_packets(values, self.registry)
                    self.pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
                position = await consumer.position(tp)
        finally:
            await consumer.stop()

    async def checkpoint(self) -> None:
        """Write every owned partition's state and offset, then acknowledge the events it covers."""
        async with self._lock:
            await self._checkpoint_locked()

    async def _checkpoint_locked(self, *, every_partition: bool = False) -> None:
        """Checkpoint the partitions with unacknowledged input (or all owned ones), and heartbeat either way."""
        self._last_checkpoint = time.monotonic()
        owned = {p: st for p, st in self._owned.items() if st.pending or every_partition}
        if owned:
            await self.app.producer.flush()  # outputs of the covered ticks are in Kafka before we claim them
        rows = [Checkpoint(p, st.next_offset, self.pipeline.snapshot(self._inst_of_partition[p]), STATE_FORMAT)
                for p, st in owned.items()]
        try:
            conn = await self._db()
            if rows:
                await save_checkpoints(conn, self.group_id, TICKS, self.worker_id, rows)
            await heartbeat(conn, self.worker_id, self.group_id, socket.gethostname(), os.getpid(),
                            sorted(self._owned), orjson.dumps(self.stats.as_dict()).decode())
        except Exception as exc:
            self._conn = None
            log.warning("checkpoint not written (%s); input stays unacknowledged and will be retried", exc)
            return
        for st in owned.values():
            for event in st.pending:
                event.ack()
            st.pending.clear()
        self.stats.checkpoints += 1
        self.stats.last_checkpoint = time.time()

    async def flush_bars(self) -> None:
        """End of input: close every open bar of the owned partitions and emit what follows."""
        async with self._lock:
            if self._owned:
                inst = np.concatenate([self._inst_of_partition[p] for p in self._owned])
                await self._emit(self.pipeline.flush(inst))
            await self._checkpoint_locked(every_partition=True)  # the flushed state changed without new input

    # --- sinks -------------------------------------------------------------------------------

    def _sink_agent(self, topic: str) -> Callable[[faust.Stream], Any]:
        sink, to_rows = self.sinks[topic]

        async def agent(stream: faust.Stream) -> None:
            async for events in stream.noack_take(2000, within=0.02):
                rows = [row for ev in events for row in self._rows_of(topic, to_rows, ev.message)]
                self.stats.sink_backlog += len(rows)
                started = time.perf_counter()
                try:
                    inserted = await sink.write(rows)  # retries through outages; returns once committed
                except Exception as exc:  # the database refuses this batch: count it, say why, go on
                    inserted = 0
                    self.stats.sink_errors[f"refused:{topic}"] += len(rows)
                    log.error("sink %s refused %d rows (%s: %s); first row: %r", topic, len(rows),
                              type(exc).__name__, exc, rows[0] if rows else None)
                metrics.SINK_WRITE_SECONDS.labels(topic).observe(time.perf_counter() - started)
                self.stats.sink_backlog -= len(rows)
                self.stats.sink_rows[topic] += inserted
                for ev in events:
                    ev.ack()
                    part = self.positions[topic]
                    part[ev.message.partition] = max(part.get(ev.message.partition, 0), ev.message.offset + 1)

        agent.__name__ = f"sink_{topic.replace('.', '_')}"
        return agent

    def _rows_of(self, topic: str, to_rows: Callable[[bytes], list[tuple[Any, ...]]], msg: Any) -> list[tuple[Any, ...]]:
        """Rows of one output message; a message the engine did not write (unreadable) is counted and logged."""
        try:
            return to_rows(msg.value or b"")
        except (ValueError, KeyError, TypeError) as exc:
            self.stats.sink_errors[f"unreadable:{topic}"] += 1
            log.error("unreadable message on %s partition %d offset %d skipped: %s", topic, msg.partition, msg.offset, exc)
            return []


def _instruments_by_partition(registry: InstrumentRegistry, partitions: int) -> dict[int, np.ndarray]:
    groups: dict[int, list[int]] = {p: [] for p in range(partitions)}
    for i, symbol in enumerate(registry.symbols):
        groups[partition_for(symbol, partitions)].append(i)
    return {p: np.array(v, dtype=np.int64) for p, v in groups.items()}


def _lines(value: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in value.split(b"\n") if line.strip()]


def _bar_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [outputs.marketdata_record(m) for m in _lines(value)]


def _signal_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [outputs.signal_row(orjson.loads(value))]


def _notification_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [outputs.notification_row(orjson.loads(value))]
