"""The engine's Faust app: the hot tick agent and the sink agents.

Topology (one consumer group, ``sharewise-engine`` by default; workers split the partitions):

* ``ticks`` agent on ``market.ticks``: takes events in batches (``noack_take``), decodes tick
  packets, dead-letters bad ticks to ``market.ticks.dlq``, forwards ticks that belong to another
  partition to it (engine.routing), runs its own ticks through
  :class:`engine.pipeline.SignalPipeline`, and sends closed bars, signals and notifications
  (streams.emit) without awaiting each delivery.
* ``bars``, ``signals`` and ``notifications`` sink agents write their topic to PostgreSQL
  (streams.sink_agents) and acknowledge their input only after the rows are committed.

Progress moves only with the outputs: positions and counters advance after the outputs of an
input are in the producer, and acks only after a checkpoint, which first waits until Kafka
holds every output sent so far. Anything that escapes an agent, a send that finally fails, a
batch the database refuses or a crashed Faust app stops the worker: :attr:`EngineWorker.failed`
is set and :attr:`EngineWorker.failure` says why; no checkpoint is written after that, so a
restart resumes from the last good one (docs/architecture.md, "Recovery").
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import faust
import numpy as np

import streams.transport  # noqa: F401  (registers the tuned transport)
from engine.errors import EngineError
from engine.instruments import InstrumentRegistry
from engine.pipeline import SignalPipeline
from engine.routing import AppliedOrigins, Origin, origin_of, owners, route
from engine.settings import Settings
from engine.ticks import Reject, decode_packets
from engine.domain import Reason
from streams import metrics, topics
from streams.admin import cluster_id, list_topics
from streams.emit import OutputSender, Outputs
from streams.recovery import Recovery
from streams.sink_agents import SinkAgents
from streams.transport import SCHEME

log = logging.getLogger("sharewise.worker")

TICKS = topics.MARKET_TICKS
STOP_STEP_S = 10.0  # longest wait for each step of a shutdown
_MISROUTED = "a forwarded tick whose owner is yet another partition (workers disagree on the partition count)"


class WorkerFailed(EngineError):
    """The worker stopped on an error it cannot recover from; the cause is chained."""

    exit_code = 1


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
    sink_errors: Counter = field(default_factory=Counter)  # messages a sink could not read, by cause
    forwarded: int = 0  # misrouted ticks sent on to their owner partition
    rerouted: int = 0  # forwarded ticks applied here, at their owner
    repeated_forwards: int = 0  # forwarded packets dropped as already applied (a repeat after a crash)
    log_resets: int = 0  # partitions whose checkpoint belonged to another log

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks, "dlq": dict(self.dlq), "bars": self.bars, "signals": self.signals,
            "notifications": self.notifications, "strategy_failures": self.failures,
            "checkpoints": self.checkpoints, "sink_rows": dict(self.sink_rows), "sink_backlog": self.sink_backlog,
            "sink_errors": dict(self.sink_errors), "forwarded": self.forwarded, "rerouted": self.rerouted,
            "repeated_forwards": self.repeated_forwards, "log_resets": self.log_resets,
        }  # fmt: skip


@dataclass(slots=True)
class PartitionState:
    """An owned partition of ``market.ticks``: next offset to apply, unacked events, applied forwards."""

    next_offset: int
    origins: AppliedOrigins = field(default_factory=AppliedOrigins)
    pending: list[Any] = field(default_factory=list)


class EngineWorker:
    """One worker process's Faust app. ``await start()``, watch :attr:`failed`, ``await stop()``."""

    def __init__(self, settings: Settings, bootstrap: str, dsn: str, registry: InstrumentRegistry,
                 make_pipeline: Callable[[], SignalPipeline], *, group_id: str = "sharewise-engine",
                 worker_id: str | None = None, checkpoint_interval: float = 2.0, batch_max: int = 512,
                 track_outputs: bool = False) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.dsn = dsn
        self.registry = registry
        self.pipeline = make_pipeline()
        self.group_id = group_id
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.checkpoint_interval = checkpoint_interval
        self.batch_max = batch_max
        self.track_outputs = track_outputs
        self.stats = WorkerStats()
        self.positions: dict[str, dict[int, int]] = defaultdict(dict)  # topic -> partition -> next offset done
        self.failed = asyncio.Event()
        self.failure: WorkerFailed | None = None
        self.cluster_id = ""
        self.partitions = settings.partitions
        self._owned: dict[int, PartitionState] = {}
        self._owner = owners(registry.symbols, self.partitions)
        self._last_checkpoint = time.monotonic()
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task | None = None
        self._stopping = False
        self.metrics_port: int | None = None  # of /metrics, when SHAREWISE_METRICS_PORT is set
        self.app = self._build_app(bootstrap)
        self.sender = OutputSender(lambda: self.app.producer, lambda exc: self._fail("kafka producer", exc))
        self.outputs = Outputs(self.sender, self.stats, max_bytes=settings.max_message_bytes,
                               bar_partitions=self.partitions, track=track_outputs)
        self.recovery = Recovery(self)

    # --- Faust wiring ------------------------------------------------------------------------

    def _build_app(self, bootstrap: str) -> faust.App:
        max_request = max(1_048_576, self.settings.max_message_bytes + 65_536)
        app = faust.App(
            self.group_id, broker=f"{SCHEME}://{bootstrap}", value_serializer="raw", key_serializer="raw",
            store="memory://", web_enabled=False, topic_partitions=self.settings.partitions,
            topic_disable_leader=True, broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
            broker_commit_interval=1.0, consumer_auto_offset_reset="earliest", producer_linger=0.005,
            producer_max_batch_size=262144, consumer_max_fetch_size=4 * 1024 * 1024, loghandlers=[],
            producer_max_request_size=max_request, producer_request_timeout=self.settings.send_timeout_s,
            # acks wait for checkpoints, so a rebalance must not wait for them (the next owner replays)
            stream_wait_empty=False,
        )  # fmt: skip
        topic = lambda name: app.topic(name, value_serializer="raw", key_serializer="raw")  # noqa: E731
        self.topics = {name: topic(name) for name in topics.ENGINE_TOPICS}
        app.agent(self.topics[TICKS], name="sharewise.ticks")(self._guarded("ticks agent", self._ticks_agent))
        self.sink_agents = SinkAgents(self)
        self.sinks = self.sink_agents.sinks
        for name in self.sinks:
            app.agent(self.topics[name], name=f"sharewise.sink.{name}")(
                self._guarded(f"sink agent {name}", self.sink_agents.agent(name)))
        app.on_partitions_revoked.connect(self._on_revoked)
        return app

    def _guarded(self, what: str, body: Callable[[faust.Stream], Awaitable[None]]) -> Callable[[faust.Stream], Any]:
        """``body`` as a Faust agent whose escaping exception stops the worker (Faust would log and carry on)."""

        async def agent(stream: faust.Stream) -> None:
            try:
                await body(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure stops the worker, with its cause
                self._fail(what, exc)

        agent.__name__ = what.replace(" ", "_").replace(".", "_")
        return agent

    def _fail(self, where: str, exc: BaseException) -> None:
        """Record the first fatal error and wake whoever waits on :attr:`failed`; later ones add nothing."""
        if self.failure is not None or self._stopping:
            return  # during a stop, an agent cut short is not a failure: its input stays unacknowledged
        self.failure = WorkerFailed(f"{where}: {exc}")
        self.failure.__cause__ = exc
        log.error("worker failed: %s", self.failure, exc_info=not isinstance(exc, EngineError),
                  extra={"file_only": True})  # the CLI prints it as its one red line
        self.failed.set()

    async def start(self) -> None:
        """Read the log's identity and the topic's real partition count, then join the group."""
        self.cluster_id = await cluster_id(self.bootstrap)
        counts = await list_topics(self.bootstrap)
        real = counts.get(TICKS, self.settings.partitions)
        if real != self.settings.partitions:
            log.warning("topic %s has %d partitions, not SHAREWISE_PARTITIONS=%d: the topic's count is used", TICKS,
                        real, self.settings.partitions)
        self.partitions = real
        self._owner = owners(self.registry.symbols, real)
        self.outputs.bar_partitions = counts.get(topics.MARKET_BARS, real)
        self.pipeline.warm_up()  # load the compiled kernels now, not inside the first batch
        await self.app.start()
        self.metrics_port = metrics.attach(self)
        self._ticker = asyncio.create_task(self._timer(), name="sharewise.checkpoints")

    async def _timer(self) -> None:
        """Checkpoint (or just heartbeat) when input has gone quiet; notice a crashed Faust app."""
        while not self.failed.is_set():
            await asyncio.sleep(min(self.checkpoint_interval / 2, 0.5))
            if self.app.crashed:
                self._fail("faust", self.app.crash_reason or RuntimeError("the Faust app crashed"))
            elif (late := self.sender.overdue(2 * self.settings.send_timeout_s)) is not None:
                self._fail("kafka producer", late)
            elif time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
                try:
                    await self.checkpoint()
                except Exception as exc:  # noqa: BLE001 - outages are handled inside; anything else is fatal
                    self._fail("checkpoint", exc)

    async def stop(self) -> None:
        """Stop the app; write a last checkpoint only if nothing failed (bounded: a stop always ends)."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        metrics.detach(self)
        if self.failure is None:
            try:
                await asyncio.wait_for(self.checkpoint(), STOP_STEP_S)
            except Exception as exc:  # noqa: BLE001 - the last checkpoint is an optimisation: replay covers it
                log.warning("final checkpoint not written (%s): the next owner replays from the previous one", exc)
        self._stopping = True
        try:
            await asyncio.wait_for(self.app.stop(), STOP_STEP_S)
        except TimeoutError:
            log.warning("the Faust app did not stop within %.0fs; exiting anyway", STOP_STEP_S)
        await self.sink_agents.close()
        await self.recovery.close()

    async def _on_revoked(self, app: faust.App, revoked: set, **_: Any) -> None:
        for tp in revoked:
            if tp.topic == TICKS and self._owned.pop(tp.partition, None) is not None:
                log.info("partition %d revoked: its state is left to the next owner's checkpoint", tp.partition)

    def instruments_of(self, partition: int) -> np.ndarray:
        """Indexes of the instruments whose state ``partition`` owns."""
        return np.flatnonzero(self._owner == partition).astype(np.int64)

    # --- hot path ----------------------------------------------------------------------------

    async def _ticks_agent(self, stream: faust.Stream) -> None:
        async for events in stream.noack_take(self.batch_max, within=0.01):
            if self.failed.is_set():
                return
            async with self._lock:
                await self._process(events)
                if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
                    await self._checkpoint_locked()

    async def _process(self, events: Sequence[Any]) -> None:
        """Apply a batch; positions move only once its outputs are in the producer."""
        taken: list[tuple[Any, PartitionState, Origin | None]] = []
        for event in events:
            msg = event.message
            state = self._owned.get(msg.partition) or await self._assume(msg.partition)
            if msg.offset < state.next_offset:
                event.ack()  # already inside the restored state
                continue
            state.next_offset = msg.offset + 1
            state.pending.append(event)
            origin = origin_of(msg.headers)
            if origin is not None and not state.origins.is_new(origin):
                self.stats.repeated_forwards += 1  # forwarded again after a crash: applied already
                continue
            taken.append((msg, state, origin))
        if taken:
            await self._apply(taken)
        for event in events:
            self.positions[TICKS][event.message.partition] = event.message.offset + 1

    async def _apply(self, taken: list[tuple[Any, PartitionState, Origin | None]]) -> None:
        msgs = [msg for msg, _, _ in taken]
        decoded = decode_packets([msg.value or b"" for msg in msgs], self.registry)
        forwarded = np.array([origin is not None for _, _, origin in taken], dtype=bool)
        routed = route(decoded, np.array([msg.partition for msg in msgs], dtype=np.int64), forwarded, self._owner)
        local = decoded.select(routed.local)
        status, step = self.pipeline.feed(local.inst, local.ts_ns, local.price, local.qty)
        self.stats.ticks += int(len(status) - np.count_nonzero(status))
        self.stats.rerouted += int(np.count_nonzero(forwarded[local.message][status == 0]))
        for (m, owner), lines in routed.forwards.items():
            await self.outputs.forward(lines, msgs[m], owner)
        misrouted = [Reject(int(decoded.message[k]), int(decoded.line[k]),
                            bytes(decoded.lines[decoded.message[k]][decoded.line[k]]), Reason.MISROUTED, _MISROUTED)
                     for k in routed.misrouted]
        await self.outputs.dead_letters(decoded.rejects + local.rejected_by(status) + misrouted, msgs)
        await self.outputs.step(step, self.pipeline.default_positions)
        for _, state, origin in taken:
            if origin is not None:
                state.origins.applied(origin)

    async def _assume(self, partition: int) -> PartitionState:
        """Take ownership of ``partition``: restore its checkpoint (or start it empty)."""
        state = await self.recovery.assume(partition)
        self._owned[partition] = state
        return state

    # --- checkpoints -------------------------------------------------------------------------

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
        await self.sender.settle()  # outputs of the covered ticks are in Kafka before we claim them
        if not await self.recovery.save(owned):
            return
        for st in owned.values():
            for event in st.pending:
                event.ack()
            st.pending.clear()
        self.stats.checkpoints += 1
        self.stats.last_checkpoint = time.time()

    async def flush_bars(self) -> None:
        """End of input: close every open bar of the owned partitions, emit what follows, checkpoint."""
        async with self._lock:
            if self._owned:
                inst = np.concatenate([self.instruments_of(p) for p in self._owned])
                await self.outputs.step(self.pipeline.flush(inst), self.pipeline.default_positions)
            await self._checkpoint_locked(every_partition=True)  # the flushed state changed without new input
