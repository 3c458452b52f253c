"""The engine's Faust app: wiring, lifecycle and failure of one worker process.

One consumer group (``sharewise-engine`` by default; workers split the partitions) runs the
``ticks`` agent on ``market.ticks`` (streams.hot, outputs through streams.emit) and one sink agent
per output topic (streams.sink_agents, writing through the :class:`engine.ports.OutputSink`\\ s
it is handed). Checkpoints come before acks (streams.recovery). Anything that escapes an agent, a
send that finally fails, a batch the database refuses or a crashed Faust app stops the worker:
:attr:`EngineWorker.failed` is set, :attr:`EngineWorker.failure` says why, and nothing is
checkpointed after that (docs/architecture.md, "Failures").
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import time
from collections import defaultdict
from typing import Any, Callable, Mapping

import faust
import numpy as np
from faust.types import TP

from db.connect import connect
from engine.instruments import InstrumentRegistry
from engine.pipeline import SignalPipeline
from engine.ports import CheckpointStore, OutputSink
from engine.routing import owners
from engine.settings import Settings
from streams import metrics, topics
from streams.admin import cluster_id, list_topics
from streams.emit import OutputSender, Outputs
from streams.failure import FailureLatch, WorkerFailed
from streams.hot import HotPath
from engine.indicators.registry import as_spec
from streams.live import OpenAccount
from streams.orders import OrderStage
from streams.recovery import Recovery
from streams.sink_agents import Rows, SinkAgents
from streams.state import PartitionState, WorkerStats
from streams.transport import faust_app

log = logging.getLogger("sharewise.worker")

TICKS = topics.MARKET_TICKS
STOP_STEP_S = 10.0  # longest wait for each step of a shutdown
STUCK_S = 3.0  # longest wait for a part that should stop at once (the checkpoint timer, a close)
#: a ticks partition caught up and silent this long is reported idle to the order stage (docs/orders.md),
#: counted from the first data this worker saw, or from IDLE_AFTER_START_S after its start if none came
IDLE_S = 2.0
IDLE_AFTER_START_S = 10.0


class EngineWorker:
    """One worker process's Faust app. ``await start()``, watch :attr:`failed`, ``await stop()``."""

    def __init__(self, settings: Settings, bootstrap: str, dsn: str, registry: InstrumentRegistry,
                 make_pipeline: Callable[..., SignalPipeline], *, sinks: Mapping[str, tuple[OutputSink, Rows]],
                 checkpoints: CheckpointStore, group_id: str = "sharewise-engine", worker_id: str | None = None,
                 checkpoint_interval: float = 2.0, batch_max: int = 512, track_outputs: bool = False,
                 brokers: OpenAccount | None = None) -> None:
        self.settings, self.bootstrap, self.dsn, self.registry = settings, bootstrap, dsn, registry
        self.make_pipeline = make_pipeline  # make_pipeline(deployments=None): a fresh pipeline (a reload)
        self.pipeline = make_pipeline()
        self.group_id = group_id
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.checkpoint_interval, self.batch_max = checkpoint_interval, batch_max
        self.stats = WorkerStats()
        self.positions: dict[str, dict[int, int]] = defaultdict(dict)  # topic -> partition -> next offset done
        # after a failure no offset may be committed: a late commit would skip ticks never checkpointed
        self.latch = FailureLatch(lambda: setattr(self.app.consumer, "commits_frozen", True))
        self.cluster_id = ""
        self._owned: dict[int, PartitionState] = {}
        self._last_checkpoint = time.monotonic()
        self._started = time.monotonic()
        self._lock = asyncio.Lock()
        self.lock = self._lock  # the order router applies brokers' answers under it (streams.orders)
        self._ticker: asyncio.Task | None = None
        self.metrics_port: int | None = None  # of /metrics, when SHAREWISE_METRICS_PORT is set
        self.sink_agents = SinkAgents(self.stats, self.positions, sinks)
        self.sinks = self.sink_agents.sinks
        self.app = self._build_app(bootstrap)
        self.sender = OutputSender(lambda: self.app.producer, lambda exc: self.latch.trip("kafka producer", exc))
        self.outputs = Outputs(self.sender, self.stats, max_bytes=settings.max_message_bytes,
                               bar_partitions=settings.partitions, track=track_outputs)
        self.recovery = Recovery(self, checkpoints)
        self.order_stage = OrderStage(self, settings.paper_cash, brokers)
        self.hot = HotPath(registry, self.pipeline, self.outputs, self.stats, self.positions, self._owned,
                           self._assume)
        self.hot.owner = owners(registry.symbols, settings.partitions)

    def _build_app(self, bootstrap: str) -> faust.App:
        app = faust_app(self.settings, self.group_id, bootstrap)
        topic = lambda name: app.topic(name, value_serializer="raw", key_serializer="raw")  # noqa: E731
        self.topics = {name: topic(name) for name in topics.ENGINE_TOPICS}
        app.agent(self.topics[TICKS], name="sharewise.ticks")(self.latch.guarded("ticks agent", self._ticks_agent))
        app.agent(self.topics[topics.ORDERS_INPUTS], name="sharewise.orders")(
            self.latch.guarded("order stage", self._orders_agent))
        for name in self.sinks:
            app.agent(self.topics[name], name=f"sharewise.sink.{name}")(
                self.latch.guarded(f"sink agent {name}", self.sink_agents.agent(name)))
        app.on_partitions_revoked.connect(self._on_revoked)
        return app

    @property
    def failed(self) -> asyncio.Event:
        return self.latch.failed

    @property
    def failure(self) -> WorkerFailed | None:
        return self.latch.failure

    async def start(self) -> None:
        """Read the log's identity and the topic's real partition count, then join the group."""
        self.cluster_id = await cluster_id(self.bootstrap)
        counts = await list_topics(self.bootstrap)
        real = counts.get(TICKS, self.settings.partitions)
        if real != self.settings.partitions:
            log.warning("topic %s has %d partitions, not SHAREWISE_PARTITIONS=%d: the topic's count is used", TICKS,
                        real, self.settings.partitions)
        self.hot.owner = owners(self.registry.symbols, real)
        self.outputs.bar_partitions = counts.get(topics.MARKET_BARS, real)
        self.outputs.tick_partitions = real
        self.outputs.order_partitions = counts.get(topics.ORDERS_INPUTS, self.settings.partitions)
        index = {symbol: i for i, symbol in enumerate(self.registry.symbols)}
        self.outputs.source_of = lambda symbol: int(self.hot.owner[index[symbol]])
        self.pipeline.warm_up()  # load the compiled kernels now, not inside the first batch
        self.outputs.orders = self.pipeline.runner.trades  # known before the first signal is sent
        self._started = time.monotonic()
        await self.app.start()
        self.metrics_port = metrics.attach(self)
        self._ticker = asyncio.create_task(self._timer(), name="sharewise.checkpoints")

    async def _timer(self) -> None:
        """Checkpoint (or just heartbeat) when input has gone quiet; notice a crashed app or an unanswered send."""
        while not self.failed.is_set():
            await asyncio.sleep(min(self.checkpoint_interval / 2, 0.5))
            if self.app.crashed:
                self.latch.trip("faust", self.app.crash_reason or RuntimeError("the Faust app crashed"))
            elif (late := self.sender.overdue(2 * self.settings.send_timeout_s)) is not None:
                self.latch.trip("kafka producer", late)
            else:
                try:
                    idle = await self._idle_ticks()  # outside the lock: it asks the broker
                    async with self._lock:
                        await self._report_sources(idle)
                        if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
                            await self._checkpoint_locked()
                except Exception as exc:  # noqa: BLE001 - outages are handled inside; anything else is fatal
                    self.latch.trip("checkpoint", exc)

    async def stop(self) -> None:
        """Stop the app; write a last checkpoint only if nothing failed (bounded: a stop always ends)."""
        stuck = False
        if self._ticker is not None:
            self._ticker.cancel()
            _, pending = await asyncio.wait([self._ticker], timeout=STUCK_S)
            if pending:  # a database call that does not give way to the cancel: the stop goes on without it
                stuck = True
                log.warning("the checkpoint timer did not stop within %.0fs (a database call hangs); stopping without"
                            " a final checkpoint: the next owner replays from the previous one. It waits in:\n%s%s",
                            STUCK_S, _stack(self._ticker), await _waits(self.dsn))
        metrics.detach(self)
        if self.failure is None and not stuck:  # a stuck timer holds the lock the final checkpoint needs
            try:
                await asyncio.wait_for(self.checkpoint(), STOP_STEP_S)
            except Exception as exc:  # noqa: BLE001 - the last checkpoint is an optimisation: replay covers it
                log.warning("final checkpoint not written (%s): the next owner replays from the previous one", exc)
        self.latch.stopping = True
        try:
            await asyncio.wait_for(self.app.stop(), STOP_STEP_S)
        except TimeoutError:
            log.warning("the Faust app did not stop within %.0fs; exiting anyway", STOP_STEP_S)
        for what, closing in (("order router", self.order_stage.close()), ("sinks", self.sink_agents.close()),
                              ("checkpoint store", self.recovery.close())):
            try:
                await asyncio.wait_for(closing, STUCK_S)
            except TimeoutError:
                log.warning("the %s did not close within %.0fs; exiting anyway", what, STUCK_S)

    def _assigned_ticks(self) -> list[int]:
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == TICKS)

    async def _idle_ticks(self) -> set[int]:
        """The assigned ticks partitions silent for :data:`IDLE_S` and consumed to their end (a fresh high
        watermark: one whose data has not reached this worker yet is not idle)."""
        if not self.outputs.orders or self.failure is not None:
            return set()
        now = time.monotonic()
        first = self.hot.first_data
        if (first is None or now - first < IDLE_S) and now - self._started < IDLE_AFTER_START_S:
            return set()  # a feed that starts with this worker writes every partition it has data for by then
        silent = [p for p in self._assigned_ticks() if now - self.hot.heard.setdefault(p, now) >= IDLE_S]
        if not silent:
            return set()
        highs = await self.app.consumer.highwaters(*(TP(TICKS, p) for p in silent))
        idle = set()
        for p in silent:
            done = self.positions[TICKS].get(p)
            if done is None:
                done = await self.app.consumer.position(TP(TICKS, p))  # nothing delivered yet: where it reads
            if done is not None and done >= highs.get(TP(TICKS, p), 0):
                idle.add(p)
        return idle

    async def _report_sources(self, idle: set[int]) -> None:
        """Report every assigned ticks partition to the order stage: its clock, or idle (``idle``, still silent),
        so a partition without ticks never holds the stage back (docs/orders.md)."""
        if not self.outputs.orders or self.failure is not None:
            return
        now, throughs = time.monotonic(), {}
        for p in self._assigned_ticks():
            if p in idle and now - self.hot.heard.setdefault(p, now) >= IDLE_S:
                throughs[p] = None
            else:
                clock = self.pipeline.closed_through(self.instruments_of(p)) if p in self._owned else None
                throughs[p] = -1 if clock is None else clock
        await self.outputs.clocks(throughs)

    async def _on_revoked(self, app: faust.App, revoked: set, **_: Any) -> None:
        for tp in revoked:
            if tp.topic == TICKS and self._owned.pop(tp.partition, None) is not None:
                log.info("partition %d revoked: its state is left to the next owner's checkpoint", tp.partition)
            elif tp.topic == topics.ORDERS_INPUTS:
                self.order_stage.revoke(tp.partition)

    def instruments_of(self, partition: int) -> np.ndarray:
        """Indexes of the instruments whose state ``partition`` owns."""
        return np.flatnonzero(self.hot.owner == partition).astype(np.int64)

    async def _ticks_agent(self, stream: faust.Stream) -> None:
        async for events in stream.noack_take(self.batch_max, within=0.01):
            if self.failed.is_set():
                return
            async with self._lock:
                await self.hot.process(events)
                if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
                    await self._checkpoint_locked()

    async def _orders_agent(self, stream: faust.Stream) -> None:
        async for events in stream.noack_take(self.batch_max, within=0.01):
            if self.failed.is_set():
                return
            async with self._lock:
                await self.order_stage.process(events)

    async def _assume(self, partition: int) -> PartitionState:
        state = await self.recovery.assume(partition)
        self._owned[partition] = state
        return state

    async def checkpoint(self) -> None:
        """Write every owned partition's state and offset, then acknowledge the events it covers."""
        async with self._lock:
            await self._checkpoint_locked()

    async def _checkpoint_locked(self, *, every_partition: bool = False) -> None:
        """Checkpoint the partitions with unacknowledged input (or all owned ones), and heartbeat either way.

        Raises :class:`streams.emit.SendFailed` (and writes nothing) if an output never reached Kafka.
        """
        if self.failure is not None:
            return  # state past a lost output must never be saved
        self._last_checkpoint = time.monotonic()
        owned = {p: st for p, st in self._owned.items() if st.pending or every_partition}
        books = self.order_stage.checkpoints(every_partition)
        await self.sender.settle()  # outputs of the covered ticks are in Kafka before we claim them
        if not await self.recovery.save(owned, books):
            return
        for st in owned.values():
            for event in st.pending:
                event.ack()
            st.pending.clear()
        self.order_stage.acknowledge()
        self.stats.checkpoints += 1
        self.stats.last_checkpoint = time.time()

    async def reload(self, deployments: list[Any]) -> str:
        """Make the running deployments exactly ``deployments`` (rows and leases changed in PostgreSQL), at once.

        When every indicator they read is already computed, the runner swaps them (new ones start warm). Else a
        fresh pipeline computes the new set: each owned partition's state is rebuilt from the ticks it has
        applied (streams.recovery, outputs discarded), so new deployments start warm too. Returns what was done.
        """
        async with self._lock:
            runner = self.pipeline.runner
            wanted = {c for d in deployments for spec in d.strategy.required_indicators() for c in as_spec(spec).columns}
            if wanted <= set(self.pipeline.columns):
                runner.replace(deployments)
                self.outputs.orders = self.outputs.orders or runner.trades
                return "replaced"
            old = self.pipeline
            self.pipeline = self.hot.pipeline = self.make_pipeline(deployments)
            self.pipeline.warm_up()
            for partition, state in self._owned.items():
                done = self.positions[TICKS].get(partition, state.next_offset)
                await self.recovery.rebuild(partition, done)
            old.runner.stop()
            self.outputs.orders = self.outputs.orders or self.pipeline.runner.trades
            return "rebuilt"

    async def flush_bars(self) -> None:
        """End of input: close every open bar of the owned partitions, emit what follows, checkpoint."""
        async with self._lock:
            if self._owned:
                inst = np.concatenate([self.instruments_of(p) for p in self._owned])
                await self.outputs.step(self.pipeline.flush(inst), self.pipeline.default_positions)
            await self.hot.clocks(set(self._owned) | set(self._assigned_ticks()), end=True)  # nothing more comes
            await self._checkpoint_locked(every_partition=True)  # the flushed state changed without new input


def _stack(task: asyncio.Task[Any]) -> str:
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


async def _waits(dsn: str) -> str:
    """What the database's sessions wait on, and who blocks them (for the log of a stuck stop)."""
    try:
        conn = await asyncio.wait_for(connect(dsn), STUCK_S)
        try:
            rows = await asyncio.wait_for(conn.fetch(
                "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid) AS blocked_by,"
                " now() - xact_start AS in_xact, left(query, 160) AS query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"), STUCK_S)
        finally:
            conn.terminate()
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        return f"(database sessions not read: {exc})"
    return "database sessions:\n" + "\n".join(f"  {dict(r)}" for r in rows)
