"""The sink agents: each output topic (``market.bars``, ``signals``, ``notifications``, ``orders``,
``portfolios``) into its tables.

Each agent takes batches of its topic, turns them into rows and writes them with the
:class:`engine.ports.OutputSink` it is handed (sinks.rows.output_sinks: COPY into PostgreSQL, or the
order and book upserts of sinks.orders, retried through database outages until the batch is committed) and only then
acknowledges the batch and moves its positions. A batch the database refuses is not an outage:
retrying cannot help and skipping it would lose rows, so it raises
:class:`engine.errors.Inconsistency`, which stops the worker. A message on these topics that
the engine cannot read (not written by the engine) is counted in ``sink_errors`` and skipped.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

import faust

from engine.errors import Inconsistency
from engine.ports import OutputSink
from streams import metrics
from streams.state import WorkerStats

log = logging.getLogger("sharewise.worker")

#: the rows of one message of a topic; raises ValueError, KeyError or TypeError for one it cannot read
Rows = Callable[[bytes], list[tuple[Any, ...]]]


class SinkAgents:
    """The Faust agent body that drives each output topic's sink."""

    def __init__(self, stats: WorkerStats, positions: dict[str, dict[int, int]],
                 sinks: Mapping[str, tuple[OutputSink, Rows]]) -> None:
        self.stats, self.positions = stats, positions
        self.sinks = dict(sinks)

    def agent(self, topic: str) -> Callable[[faust.Stream], Any]:
        sink, to_rows = self.sinks[topic]
        stats, positions = self.stats, self.positions

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
            self.stats.sink_errors[f"unreadable:{topic}"] += 1
            log.error("unreadable message on %s partition %d offset %d skipped: %s", topic, msg.partition, msg.offset, exc)
            return []

    async def close(self) -> None:
        for sink, _ in self.sinks.values():
            await sink.close()

