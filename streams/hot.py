"""The hot path of the ticks agent: one batch of ``market.ticks`` events in, outputs to the producer.

For each event it takes the owned partition over on first sight (streams.recovery), skips what
the restored state already covers and forwarded packets already applied, then decodes the batch
once, routes it (engine.routing: ticks owned elsewhere are forwarded, never applied here), feeds
the pipeline once, and sends the dead letters, forwards, bars, signals and notifications
(streams.emit). Positions move only after that, so no one sees progress whose outputs are not in
the producer (docs/architecture.md, "Recovery").
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

from engine.domain import Reason
from engine.instruments import InstrumentRegistry
from engine.orders.stage import END_OF_TIME
from engine.pipeline import SignalPipeline
from engine.routing import Origin, origin_of, route
from engine.ticks import DecodedTicks, Reject, decode_packets
from streams.emit import Outputs
from streams.state import PartitionState, WorkerStats
from streams.topics import MARKET_TICKS

_MISROUTED = "a forwarded tick whose owner is yet another partition (workers disagree on the partition count)"
Taken = tuple[Any, PartitionState, Origin | None]


class HotPath:
    """Applies batches of tick events for the partitions in ``owned`` (taken over through ``assume``)."""

    def __init__(self, registry: InstrumentRegistry, pipeline: SignalPipeline, outputs: Outputs, stats: WorkerStats,
                 positions: dict[str, dict[int, int]], owned: dict[int, PartitionState],
                 assume: Callable[[int], Awaitable[PartitionState]]) -> None:
        self.registry, self.pipeline, self.outputs, self.stats = registry, pipeline, outputs, stats
        self.positions, self.owned, self.assume = positions, owned, assume
        self.owner = np.empty(0, np.int64)  # partition of each instrument; set once the topic's count is known
        self.heard: dict[int, float] = {}  # partition -> when a message of it last arrived (monotonic)
        self.first_data: float | None = None  # when the first message of any partition arrived

    async def process(self, events: Sequence[Any]) -> None:
        """Apply a batch; positions move only once its outputs are in the producer."""
        taken: list[Taken] = []
        self.outputs.orders = self.outputs.orders or self.pipeline.runner.trades  # before any signal is sent
        now = time.monotonic()
        if self.first_data is None and events:
            self.first_data = now
        for event in events:
            msg = event.message
            self.heard[msg.partition] = now
            state = self.owned.get(msg.partition) or await self.assume(msg.partition)
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
            self.positions[MARKET_TICKS][event.message.partition] = event.message.offset + 1

    async def clocks(self, partitions: set[int], *, end: bool = False) -> None:
        """When a deployment trades: close earlier days' bars of these sources once they reached a new day, then
        send their clocks (docs/orders.md); ``end``: input has ended, they will never emit again."""
        if not self.outputs.orders:
            return  # only the order stage needs the clocks (and the prompt close of a finished day's bars)
        throughs: dict[int, int | None] = {}
        for p in sorted(partitions):
            inst = np.flatnonzero(self.owner == p)
            rolled = self.pipeline.roll_day(inst)
            if rolled.bars:
                await self.outputs.step(rolled, self.pipeline.default_positions)
            clock = self.pipeline.closed_through(inst)
            throughs[p] = END_OF_TIME if end else -1 if clock is None else clock  # -1: wait for its first bar
        await self.outputs.clocks(throughs)

    async def _apply(self, taken: list[Taken]) -> None:
        msgs = [msg for msg, _, _ in taken]
        decoded = decode_packets([msg.value or b"" for msg in msgs], self.registry)
        forwarded = np.array([origin is not None for _, _, origin in taken], dtype=bool)
        routed = route(decoded, np.array([msg.partition for msg in msgs], dtype=np.int64), forwarded, self.owner)
        local = decoded.select(routed.local)
        status, step = self.pipeline.feed(local.inst, local.ts_ns, local.price, local.qty)
        self.stats.ticks += int(len(status) - np.count_nonzero(status))
        self.stats.rerouted += int(np.count_nonzero(forwarded[local.message][status == 0]))
        for (m, owner), lines in routed.forwards.items():
            await self.outputs.forward(lines, msgs[m], owner)
        misrouted = [_misrouted(decoded, k) for k in routed.misrouted]
        await self.outputs.dead_letters(decoded.rejects + local.rejected_by(status) + misrouted, msgs)
        await self.outputs.step(step, self.pipeline.default_positions)
        await self.clocks({msg.partition for msg in msgs})
        for _, state, origin in taken:
            if origin is not None:
                state.origins.applied(origin)


def _misrouted(decoded: DecodedTicks, k: int) -> Reject:
    m, n = int(decoded.message[k]), int(decoded.line[k])
    return Reject(m, n, bytes(decoded.lines[m][n]), Reason.MISROUTED, _MISROUTED)
