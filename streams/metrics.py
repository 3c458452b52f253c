"""Prometheus metrics of the engine's processes and their ``/metrics`` HTTP endpoint.

One registry per process (:data:`REGISTRY`): a worker and a feed server running in the same
process share one endpoint. The endpoint is off unless ``SHAREWISE_METRICS_PORT`` is set
(``0`` picks a free port); it listens on ``SHAREWISE_METRICS_HOST`` (default 127.0.0.1) and
serves the text exposition format from its own thread, so a scrape never waits for the
event loop and a busy loop never delays a scrape.

Worker figures are read at scrape time from each attached worker (:func:`attach`): its
``WorkerStats`` counters, its consumer lag per partition (fetch high watermark known to the
consumer minus the position the worker has processed — never ListOffsets, wrong on Tansu)
and the age of its last checkpoint. Names follow kafka-lag-exporter where they overlap:

=========================================  =======  ==========================================
metric                                     type     labels
=========================================  =======  ==========================================
``sharewise_ticks_total``                  counter  ticks accepted by the hot agent
``sharewise_dlq_messages_total``           counter  ``reason``
``sharewise_bars_total``                   counter  closed bars emitted
``sharewise_signals_total``                counter  ``strategy``
``sharewise_notifications_total``          counter  notifications emitted
``sharewise_strategy_failures_total``      counter  strategy calls that raised
``sharewise_checkpoints_total``            counter  checkpoints written
``sharewise_ticks_rerouted_total``         counter  misrouted ticks applied at their owner partition
``sharewise_ticks_forwarded_total``        counter  misrouted ticks forwarded to their owner partition
``sharewise_log_resets_total``             counter  checkpoints of another log (partition resumed from its start)
``sharewise_checkpoint_age_seconds``       gauge    ``group``, ``worker``
``sharewise_sink_rows_total``              counter  ``topic`` (rows inserted, duplicates not)
``sharewise_sink_write_seconds``           histo    ``topic`` (one batch: COPY + commit)
``sharewise_sink_backlog_rows``            gauge    rows read from Kafka, not committed yet
``kafka_consumergroup_group_lag``          gauge    ``group``, ``topic``, ``partition``
``kafka_consumergroup_group_max_lag``      gauge    ``group``
``kafka_consumergroup_group_sum_lag``      gauge    ``group``
``kafka_partition_latest_offset``          gauge    ``topic``, ``partition``
``sharewise_ws_clients``                   gauge    connected websocket clients
``sharewise_ws_dropped_clients_total``     counter  ``code``: close code (4401, 4403, 4408)
``process_*``                              various  CPU, memory, open files of the process
=========================================  =======  ==========================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.errors import ConfigError
from engine.settings import Settings

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

SIGNALS = Counter("sharewise_signals", "Signals emitted, by strategy.", ["strategy"], registry=REGISTRY)
SINK_WRITE_SECONDS = Histogram(
    "sharewise_sink_write_seconds", "Seconds to write and commit one sink batch to PostgreSQL.", ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=REGISTRY,
)
WS_CLIENTS = Gauge("sharewise_ws_clients", "Websocket feed clients connected.", registry=REGISTRY)
WS_DROPPED = Counter("sharewise_ws_dropped_clients", "Websocket clients the server closed, by close code.", ["code"],
                     registry=REGISTRY)


class _WorkerCollector:
    """Scrape-time figures of the workers attached in this process (summed when several)."""

    def __init__(self) -> None:
        self.workers: dict[int, Any] = {}

    def collect(self) -> Iterator[Metric]:
        workers = list(self.workers.values())
        yield from _stat_families(workers)
        lag = GaugeMetricFamily("kafka_consumergroup_group_lag", "Messages behind the high watermark, per partition.",
                                labels=["group", "topic", "partition"])
        latest = GaugeMetricFamily("kafka_partition_latest_offset", "High watermark of a partition the worker reads.",
                                   labels=["topic", "partition"])
        max_lag = GaugeMetricFamily("kafka_consumergroup_group_max_lag", "Largest partition lag of a group.",
                                    labels=["group"])
        sum_lag = GaugeMetricFamily("kafka_consumergroup_group_sum_lag", "Total lag of a group.", labels=["group"])
        by_group: dict[str, list[int]] = {}
        for w in workers:
            for topic, partition, high, position in _positions(w):
                lag.add_metric([w.group_id, topic, str(partition)], max(high - position, 0))
                latest.add_metric([topic, str(partition)], high)
                by_group.setdefault(w.group_id, []).append(max(high - position, 0))
        for group, lags in sorted(by_group.items()):
            max_lag.add_metric([group], max(lags))
            sum_lag.add_metric([group], sum(lags))
        yield from (lag, latest, max_lag, sum_lag)
        age = GaugeMetricFamily("sharewise_checkpoint_age_seconds", "Seconds since the worker's last checkpoint.",
                                labels=["group", "worker"])
        for w in workers:
            if w.stats.last_checkpoint:
                age.add_metric([w.group_id, w.worker_id], max(time.time() - w.stats.last_checkpoint, 0.0))
        yield age


_STAT_COUNTERS = (
    ("sharewise_ticks", "ticks", "Ticks accepted by the hot agent."),
    ("sharewise_bars", "bars", "Closed bars emitted."),
    ("sharewise_notifications", "notifications", "Notifications emitted."),
    ("sharewise_strategy_failures", "failures", "Strategy calls that raised."),
    ("sharewise_checkpoints", "checkpoints", "Checkpoints written."),
    ("sharewise_ticks_rerouted", "rerouted", "Misrouted ticks applied at their owner partition after a forward."),
    ("sharewise_ticks_forwarded", "forwarded", "Misrouted ticks forwarded to their owner partition."),
    ("sharewise_log_resets", "log_resets", "Partitions whose checkpoint belonged to another log (resumed from its start)."),
)
_STAT_TALLIES = (
    ("sharewise_dlq_messages", "Ticks dead-lettered, by reason.", "reason", "dlq"),
    ("sharewise_sink_rows", "Rows inserted by the sinks, by topic.", "topic", "sink_rows"),
)


def _stat_families(workers: list[Any]) -> Iterator[Metric]:
    """Counters kept by ``WorkerStats``, summed over ``workers``."""
    for name, attr, doc in _STAT_COUNTERS:
        yield CounterMetricFamily(name, doc, value=sum(getattr(w.stats, attr) for w in workers))
    for name, doc, label, attr in _STAT_TALLIES:
        family = CounterMetricFamily(name, doc, labels=[label])
        for key, value in sorted(sum((Tally(dict(getattr(w.stats, attr))) for w in workers), Tally()).items()):
            family.add_metric([key], value)
        yield family
    yield GaugeMetricFamily("sharewise_sink_backlog_rows", "Rows read from Kafka and not yet committed to PostgreSQL.",
                            value=sum(w.stats.sink_backlog for w in workers))


def _positions(worker: Any) -> list[tuple[str, int, int, int]]:
    """(topic, partition, high watermark, processed position) of the worker's assigned partitions.

    Read from another thread while the worker runs: a partition being reassigned is skipped.
    """
    out = []
    try:
        consumer = worker.app.consumer
        for tp in sorted(consumer.assignment()):
            position = dict(worker.positions.get(tp.topic, {})).get(tp.partition)
            high = consumer.highwater(tp)
            if position is not None and high is not None:
                out.append((tp.topic, tp.partition, high, position))
    except (AssertionError, RuntimeError, KeyError, AttributeError) as exc:
        log.debug("consumer positions not readable now: %s", exc)
    return out


_workers = _WorkerCollector()
REGISTRY.register(_workers)


class _Endpoint:
    """The process's one ``/metrics`` HTTP server, shared by everyone who asked for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._users = 0

    def acquire(self, host: str, port: int) -> int:
        """Start serving on ``host:port`` (0: any free port) unless already serving; return the bound port."""
        with self._lock:
            if self._server is None:
                try:
                    self._server, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
                except OSError as exc:
                    raise ConfigError(f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}") from exc
                log.info("metrics on http://%s:%d/metrics", host, self._server.server_port)
            self._users += 1
            return int(self._server.server_port)

    def release(self) -> None:
        """Stop serving once the last user has released it."""
        with self._lock:
            self._users = max(self._users - 1, 0)
            if self._users or self._server is None:
                return
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)


_endpoint = _Endpoint()


def serve(settings: Settings) -> int | None:
    """Serve ``/metrics`` as configured (``SHAREWISE_METRICS_PORT``); return the port, ``None`` when off.

    Every call that returned a port must be paired with :func:`release`.
    """
    if settings.metrics_port is None:
        return None
    return _endpoint.acquire(settings.metrics_host, settings.metrics_port)


def release(settings: Settings) -> None:
    """Undo one :func:`serve` with the same settings."""
    if settings.metrics_port is not None:
        _endpoint.release()


def attach(worker: Any) -> int | None:
    """Export ``worker``'s figures from now on and serve ``/metrics`` if configured; return the port.

    Call from ``EngineWorker.start()`` once its Faust app runs; pair with :func:`detach`.
    """
    _workers.workers[id(worker)] = worker
    return serve(worker.settings)


def detach(worker: Any) -> None:
    """Stop exporting ``worker`` (its counters leave the sums) and release the endpoint."""
    if _workers.workers.pop(id(worker), None) is not None:
        release(worker.settings)
