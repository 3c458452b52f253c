"""The sink agents: ``market.bars``, ``signals`` and ``notifications`` into PostgreSQL.

Each agent takes batches of its topic, writes their rows with :class:`sinks.postgres.CopySink`
(which retries through database outages until the batch is committed) and only then
acknowledges the batch and moves its positions. A batch the database refuses is not an outage:
retrying cannot help and skipping it would lose rows, so it raises
:class:`engine.errors.Inconsistency`, which stops the worker. A message on these topics that
the engine cannot read (not written by the engine) is counted in ``sink_errors`` and skipped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import faust
import orjson

from engine import outputs
from engine.errors import Inconsistency
from sinks.postgres import MARKETDATA, NOTIFICATIONS, SIGNALS, CopySink
from streams import metrics, topics

if TYPE_CHECKING:
    from streams.worker import EngineWorker

log = logging.getLogger("sharewise.worker")

Rows = Callable[[bytes], list[tuple[Any, ...]]]


class SinkAgents:
    """One :class:`CopySink` per output topic, and the Faust agent body that drives it."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker
        self.sinks: dict[str, tuple[CopySink, Rows]] = {
            topics.MARKET_BARS: (CopySink(worker.dsn, MARKETDATA), _bar_rows),
            topics.SIGNALS: (CopySink(worker.dsn, SIGNALS), _signal_rows),
            topics.NOTIFICATIONS: (CopySink(worker.dsn, NOTIFICATIONS), _notification_rows),
        }

    def agent(self, topic: str) -> Callable[[faust.Stream], Any]:
        sink, to_rows = self.sinks[topic]
        stats, positions = self.worker.stats, self.worker.positions

        async def agent(stream: faust.Stream) -> None:
            async for events in stream.noack_take(2000, within=0.02):
                rows = [row for ev in events for row in self._rows_of(topic, to_rows, ev.message)]
                stats.sink_backlog += len(rows)
                started = time.perf_counter()
                try:
                    inserted = await sink.write(rows)  # retries through outages; returns once committed
                except Exception as exc:
                    first = (str(exc).splitlines() or [""])[0]  # the details (a whole row) stay in the log
                    raise Inconsistency(f"the database refused a batch of {len(rows)} {topic} rows"
                                        f" ({type(exc).__name__}: {first})") from exc
                metrics.SINK_WRITE_SECONDS.labels(topic).observe(time.perf_counter() - started)
                stats.sink_backlog -= len(rows)
                stats.sink_rows[topic] += inserted
                for ev in events:
                    ev.ack()
                    part = positions[topic]
                    part[ev.message.partition] = max(part.get(ev.message.partition, 0), ev.message.offset + 1)

        return agent

    def _rows_of(self, topic: str, to_rows: Rows, msg: Any) -> list[tuple[Any, ...]]:
        """Rows of one output message; a message the engine did not write (unreadable) is counted and logged."""
        try:
            return to_rows(msg.value or b"")
        except (ValueError, KeyError, TypeError) as exc:
            self.worker.stats.sink_errors[f"unreadable:{topic}"] += 1
            log.error("unreadable message on %s partition %d offset %d skipped: %s", topic, msg.partition, msg.offset, exc)
            return []

    async def close(self) -> None:
        for sink, _ in self.sinks.values():
            await sink.close()


def _lines(value: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in value.split(b"\n") if line.strip()]


def _bar_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [outputs.marketdata_record(m) for m in _lines(value)]


def _signal_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [outputs.signal_row(orjson.loads(value))]


def _notification_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [outputs.notification_row(orjson.loads(value))]
