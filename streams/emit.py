"""The worker's outputs to Kafka: every message under the size limit, every delivery checked.

Faust's ``topic.send`` reports a failed delivery only in a log line while the worker carries
on, which loses the output silently. :class:`OutputSender` sends through the app's producer
and keeps each delivery future: the first failure is reported to ``on_failure`` at once (the
worker stops), and :meth:`OutputSender.settle`, awaited before every checkpoint, raises
:class:`SendFailed` if any send since the last one failed. So a checkpoint, and the input
acknowledgements behind it, never covers an output that Kafka does not hold
(docs/architecture.md, "Recovery").

:class:`Outputs` turns what the pipeline produced into messages (docs/topics.md): bar packets
per ``market.bars`` partition, one message per signal and notification, dead-letter records,
and forwarded tick packets; batched outputs are cut with :func:`engine.messages.pack_lines`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import orjson

from engine import outputs
from engine.domain import Reason
from engine.errors import EngineError
from engine.domain import NS_PER_MIN, Timeframe
from engine.messages import dead_letter_record, pack_lines
from engine.orders.stage import clock_bar, clock_input, signal_input
from engine.partitioner import partition_for
from engine.pipeline import Step
from engine.routing import ORIGIN_HEADER, Origin
from engine.ticks import Reject
from streams import metrics, topics

log = logging.getLogger("sharewise.worker")

#: room left for a forwarded packet's header and record framing
_FORWARD_HEADROOM = 1024
#: deliveries awaited at once when this many are in flight (bounds memory in a long replay)
_MAX_IN_FLIGHT = 20_000
#: room kept per 1m bar in a clock message (a bar takes ~130 bytes), so a clock always fits a message
_CLOCK_BAR_BYTES = 400


class SendFailed(EngineError):
    """A message could not be handed to Kafka, or Kafka did not acknowledge it in time."""

    exit_code = 2

    def __init__(self, topic: str, exc: BaseException) -> None:
        super().__init__(f"send to {topic} failed: {type(exc).__name__}: {exc}")
        self.topic = topic


class OutputSender:
    """Sends through a Faust app's producer and tracks every delivery (see the module docstring)."""

    def __init__(self, producer: Callable[[], Any], on_failure: Callable[[BaseException], None]) -> None:
        self._producer = producer
        self._on_failure = on_failure
        self._pending: list[tuple[str, asyncio.Future, float]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes | None = None, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        """Hand one message to the producer; raise :class:`SendFailed` if it refuses it."""
        try:
            delivery = await self._producer().send(topic, key, value, partition, None, headers)
        except Exception as exc:  # e.g. MessageSizeTooLargeError, a producer that is stopping
            raise SendFailed(topic, exc) from exc
        delivery.add_done_callback(self._delivered(topic))
        self._pending.append((topic, delivery, time.monotonic()))
        if len(self._pending) >= _MAX_IN_FLIGHT:
            await self.settle()

    def _delivered(self, topic: str) -> Callable[[asyncio.Future], None]:
        def done(delivery: asyncio.Future) -> None:
            if not delivery.cancelled() and delivery.exception() is not None:
                self._on_failure(SendFailed(topic, delivery.exception()))

        return done

    async def settle(self) -> None:
        """Wait until Kafka acknowledged every message sent so far; raise :class:`SendFailed` if one failed."""
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*(delivery for _, delivery, _ in pending), return_exceptions=True)
        for (topic, _, _), result in zip(pending, results):
            if isinstance(result, BaseException):
                raise SendFailed(topic, result) from result

    def overdue(self, limit: float) -> SendFailed | None:
        """A :class:`SendFailed` for the oldest delivery still unanswered after ``limit`` seconds, else None.

        The producer's own timeout should have failed it already; this is the worker's guarantee
        that a send Kafka never answers still stops it (the caller checks it periodically).
        """
        now = time.monotonic()
        for topic, delivery, sent_at in self._pending:
            if not delivery.done():
                if now - sent_at > limit:
                    return SendFailed(topic, TimeoutError(f"no acknowledgement after {now - sent_at:.0f}s"))
                return None
        return None


class Outputs:
    """Messages of the hot agent, sent through one :class:`OutputSender`.

    ``track`` (for ``up --until-drained``): remember the id of every bar, signal and
    notification emitted, so the caller can check PostgreSQL holds each of them.
    """

    def __init__(self, sender: OutputSender, stats: Any, *, max_bytes: int, bar_partitions: int,
                 track: bool = False, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.sender = sender
        self.clock = clock  # stamps created_at only: ids and decisions follow market time
        self.stats = stats
        self.max_bytes = max_bytes
        self.bar_partitions = bar_partitions
        #: order stage inputs (docs/orders.md): on when a deployment trades; ``source_of`` maps a symbol to
        #: the market.ticks partition that owns it, ``order_partitions`` is orders.inputs' partition count
        self.orders = False
        self.source_of: Callable[[str], int] = lambda symbol: 0
        self.order_partitions = bar_partitions
        self.tick_partitions = bar_partitions
        self._minute_bars: list[dict[str, Any]] = []
        self._sent_through: dict[int, int | None] = {}  # last reported (minute-floored) through; None = idle
        self.emitted: dict[str, set[uuid.UUID]] | None = (
            {topics.MARKET_BARS: set(), topics.SIGNALS: set(), topics.ORDERS: set(), topics.NOTIFICATIONS: set()}
            if track else None)

    async def step(self, step: Step, default_positions: np.ndarray) -> None:
        """Send what one pipeline call produced: bars, signals with their notifications, failure notices."""
        if step.bars:
            await self._bars(step, default_positions)
        for signal in step.signals:
            msg = outputs.signal_message(signal, self.clock())
            await self.sender.send(topics.SIGNALS, orjson.dumps(msg), key=(msg["user_id"] or "").encode())
            self.track(topics.SIGNALS, msg["id"])
            if self.orders and signal.execution is not None:
                order_input = signal_input(self.source_of(msg["symbol"]), signal.execution, msg)
                await self.sender.send(topics.ORDERS_INPUTS, orjson.dumps(order_input), key=msg["user_id"].encode())
            await self.notify(outputs.signal_notification(msg))
            self.stats.signals += 1
            metrics.SIGNALS.labels(msg["strategy_name"]).inc()
        for failure in step.failures:
            self.stats.failures += 1
            log.warning("strategy failure: %s", failure.message)
            if (note := outputs.failure_notification(failure, self.clock())) is not None:
                await self.notify(note)

    async def _bars(self, step: Step, default_positions: np.ndarray) -> None:
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for bar, row in zip(step.bars, step.rows):
            by_partition[partition_for(bar.symbol, self.bar_partitions)].append(
                orjson.dumps(outputs.bar_message(bar, row, default_positions)))
            self.track(topics.MARKET_BARS, outputs.bar_id(bar))
            if self.orders and bar.timeframe is Timeframe.M1:
                self._minute_bars.append(clock_bar(bar.symbol, bar.open_ns, bar.open, bar.high, bar.low, bar.close))
        for p, lines in by_partition.items():
            for packet in pack_lines(lines, self.max_bytes):
                await self.sender.send(topics.MARKET_BARS, packet, partition=p)
        self.stats.bars += len(step.bars)

    async def clocks(self, throughs: dict[int, int | None]) -> None:
        """Tell every ``orders.inputs`` partition how far these sources have emitted (``None``: caught up and
        silent, so not to be waited for), with the 1m bars since the last clock (docs/orders.md, "Market time
        and the watermark"). Sent after the batch's signals, so a clock never overtakes a signal it covers.
        Nothing is sent when no source crossed a minute or changed idleness and no bar closed.
        """
        if not self.orders:
            return
        changed = False
        for source, through in throughs.items():
            minute = None if through is None else through - through % NS_PER_MIN
            last = self._sent_through.get(source, -2)
            if source not in self._sent_through or (minute is None) != (last is None) or (
                    minute is not None and last is not None and minute > last):
                self._sent_through[source] = minute
                changed = True
        if not changed and not self._minute_bars:
            return
        bars, self._minute_bars = self._minute_bars, []
        per_message = max(1, self.max_bytes // _CLOCK_BAR_BYTES)
        chunks = [bars[i : i + per_message] for i in range(0, len(bars), per_message)] or [[]]
        sources = {s: self._sent_through[s] for s in throughs}
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            value = orjson.dumps(clock_input(sources if last else {}, chunk, self.tick_partitions))
            for p in range(self.order_partitions):
                await self.sender.send(topics.ORDERS_INPUTS, value, partition=p)

    async def notify(self, note: dict[str, Any]) -> None:
        await self.sender.send(topics.NOTIFICATIONS, orjson.dumps(note), key=note["user_id"].encode())
        self.track(topics.NOTIFICATIONS, note["id"])
        self.stats.notifications += 1

    async def dead_letters(self, rejects: list[Reject], sources: list[Any]) -> None:
        """One ``market.ticks.dlq`` record per reject, on its source message's partition."""
        for r in rejects:
            src = sources[r.message]
            record = dead_letter_record(str(r.reason), r.detail, r.raw, topic=src.topic, partition=src.partition,
                                        offset=src.offset, line=r.line, max_bytes=self.max_bytes)
            await self.sender.send(topics.MARKET_TICKS_DLQ, record, key=src.key, partition=src.partition)
            self.stats.dlq[str(r.reason)] += 1

    async def forward(self, lines: list[bytes], source: Any, owner: int) -> None:
        """Send misrouted ticks (their original lines) to their owner partition, marked with their origin.

        A line too large for any message is dead-lettered (``too_large``) instead.
        """
        limit = self.max_bytes - _FORWARD_HEADROOM
        for raw in (line for line in lines if len(line) > limit):
            await self._too_large(raw, source)
        lines = [line for line in lines if len(line) <= limit]
        for chunk, packet in enumerate(pack_lines(lines, limit)):
            origin = Origin(source.partition, source.offset, chunk)
            await self.sender.send(topics.MARKET_TICKS, packet, partition=owner,
                                   headers=[(ORIGIN_HEADER, origin.encode())])
        self.stats.forwarded += len(lines)

    async def _too_large(self, raw: bytes, source: Any) -> None:
        detail = f"{len(raw)} bytes: larger than a message may be ({self.max_bytes})"
        record = dead_letter_record(str(Reason.TOO_LARGE), detail, raw, topic=source.topic,
                                    partition=source.partition, offset=source.offset, line=None,
                                    max_bytes=self.max_bytes)
        await self.sender.send(topics.MARKET_TICKS_DLQ, record, partition=source.partition)
        self.stats.dlq[str(Reason.TOO_LARGE)] += 1

    def track(self, topic: str, ident: uuid.UUID | str) -> None:
        if self.emitted is not None:
            self.emitted[topic].add(ident if isinstance(ident, uuid.UUID) else uuid.UUID(ident))
