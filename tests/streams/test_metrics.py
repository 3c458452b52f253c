"""``/metrics``: scraped over HTTP and parsed with prometheus_client's own parser.

The worker test runs the real ``sharewise worker`` on its own broker and database, replays a tick
file with known bad lines, and checks the scraped figures against what is independently known:
the file's good and bad lines, the database rows the sinks wrote, the topic's high watermarks.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.errors import ConfigError
from engine.settings import Settings
from streams import metrics
from streams.admin import ensure_topics, high_watermarks
from streams.broker import free_port
from streams.topics import engine_topics
from tests.fixtures.kafka import unique_topic
from tests.sinks.feed.support import SECRET, FeedClient, FeedEnv
from tests.streams.test_pipeline_e2e import _feed, _stop, _worker, world  # noqa: F401  (world is a fixture)

Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    """Every sample of ``http://127.0.0.1:port/metrics``: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by_label(samples: Samples, name: str, label: str, **where: str) -> dict[str, float]:
    """Values of metric ``name`` keyed by ``label``, among samples whose labels include ``where``."""
    return {dict(labels)[label]: v for (n, labels), v in samples.items()
            if n == name and set(where.items()) <= labels}


def test_settings_read_the_metrics_port():
    assert Settings.from_env({"SHAREWISE_HOME": "/x"}).metrics_port is None
    assert Settings.from_env({"SHAREWISE_HOME": "/x", "SHAREWISE_METRICS_PORT": "0"}).metrics_port == 0
    assert Settings.from_env({"SHAREWISE_HOME": "/x", "SHAREWISE_METRICS_PORT": "9464",
                              "SHAREWISE_METRICS_HOST": "0.0.0.0"}).describe()["metrics"] == "0.0.0.0:9464"
    with pytest.raises(ConfigError, match="SHAREWISE_METRICS_PORT"):
        Settings.from_env({"SHAREWISE_HOME": "/x", "SHAREWISE_METRICS_PORT": "nine"})


def test_one_endpoint_per_process_shared_until_its_last_user_releases_it(tmp_path):
    settings = Settings(home=tmp_path, metrics_port=0)
    assert metrics.serve(Settings(home=tmp_path)) is None  # not configured: no server
    port = metrics.serve(settings)
    assert port and metrics.serve(settings) == port
    try:
        metrics.WS_CLIENTS.set(3)
        metrics.WS_DROPPED.labels("4408").inc()
        samples = scrape(port)
        assert samples[("sharewise_ws_clients", frozenset())] == 3
        assert samples[("sharewise_ws_dropped_clients_total", frozenset({("code", "4408")}))] >= 1
        assert ("sharewise_ticks_total", frozenset()) in samples  # worker families exist with no worker attached
        assert any(name.startswith("process_") for name, _ in samples)
        metrics.release(settings)
        assert scrape(port)  # still one user
    finally:
        metrics.WS_CLIENTS.set(0)
        metrics.release(settings)
    with pytest.raises(urllib.error.URLError):
        scrape(port)


def _wait(predicate, timeout: float, interval: float = 0.25):  # noqa: ANN001, ANN202
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` passes (last value)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError):
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


async def _rows_by_table(dsn: str) -> tuple[int, dict[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        bars = await conn.fetchval("SELECT count(*) FROM analytics_marketdata")
        signals = dict(await conn.fetch("SELECT strategy_name, count(*) FROM trading_signal GROUP BY 1"))
    finally:
        await conn.close()
    return bars, signals


def test_worker_metrics_match_the_file_the_database_and_the_topic(world, tmp_path: Path):
    env, bootstrap, dsn, ticks = world
    port = free_port()
    env["SHAREWISE_METRICS_PORT"] = str(port)
    asyncio.run(ensure_topics(bootstrap, engine_topics(8)))
    worker = _worker(env, tmp_path / "worker.log")
    try:
        _feed(env, ticks.path)
        done = lambda s: s[("sharewise_ticks_total", frozenset())] + sum(  # noqa: E731
            by_label(s, "sharewise_dlq_messages_total", "reason").values()) == ticks.lines
        samples = _wait(lambda: (s := scrape(port)) and done(s) and s, timeout=120)
        assert samples, (tmp_path / "worker.log").read_text()[-3000:]
        assert samples[("sharewise_ticks_total", frozenset())] == ticks.good
        assert by_label(samples, "sharewise_dlq_messages_total", "reason") == Counter(r for r, _ in ticks.bad)

        marks = asyncio.run(high_watermarks(bootstrap, "market.ticks"))
        latest = by_label(samples, "kafka_partition_latest_offset", "partition", topic="market.ticks")
        assert latest == {str(p): h for p, h in marks.items() if h > 0}
        lag = by_label(samples, "kafka_consumergroup_group_lag", "partition", group="sharewise-engine",
                       topic="market.ticks")
        assert set(lag) == set(latest)

        def lag_gone() -> Samples | None:  # the consumer's high watermark may trail by a fetch
            s = scrape(port)
            return s if set(by_label(s, "kafka_consumergroup_group_lag", "partition", group="sharewise-engine",
                                     topic="market.ticks").values()) == {0} else None

        assert _wait(lag_gone, timeout=30), by_label(scrape(port), "kafka_consumergroup_group_lag", "partition")

        def sinks_settled() -> Samples | None:
            s = scrape(port)
            bars, signals = asyncio.run(_rows_by_table(dsn))
            rows = by_label(s, "sharewise_sink_rows_total", "topic").get("market.bars", 0)
            return s if bars > 0 and rows == bars and by_label(s, "sharewise_signals_total", "strategy") == signals \
                else None

        settled = _wait(sinks_settled, timeout=60)
        assert settled, (tmp_path / "worker.log").read_text()[-3000:]
        assert sum(by_label(settled, "sharewise_signals_total", "strategy").values()) > 0  # the check above bit
        assert by_label(settled, "sharewise_sink_write_seconds_count", "topic")["market.bars"] >= 1
        ages = by_label(settled, "sharewise_checkpoint_age_seconds", "group")
        assert set(ages) == {"sharewise-engine"} and ages["sharewise-engine"] >= 0
    finally:
        _stop(worker)
    with pytest.raises(urllib.error.URLError):
        scrape(port)  # the endpoint goes with the worker


def test_feed_server_counts_its_clients_and_the_ones_it_closes(pg_dsn, kafka_bootstrap, tmp_path):
    settings = Settings.from_env({"SHAREWISE_HOME": str(tmp_path), "SHAREWISE_JWT_SECRET": SECRET,
                                  "SHAREWISE_PARTITIONS": "1", "SHAREWISE_METRICS_PORT": "0"})
    env = FeedEnv(settings, pg_dsn, kafka_bootstrap, {c: unique_topic(f"m-{c}") for c in
                                                      ("signals", "orders", "notifications", "bars")})
    port = metrics.serve(settings)
    assert port is not None
    clients = lambda: scrape(port)[("sharewise_ws_clients", frozenset())]  # noqa: E731
    dropped = lambda: by_label(scrape(port), "sharewise_ws_dropped_clients_total", "code").get("4401", 0)  # noqa: E731

    async def scenario() -> tuple[float, float, float]:
        async with env.server() as server:
            before = dropped()
            first, second = await FeedClient.connect(server.address), await FeedClient.connect(server.address)
            connected = await asyncio.to_thread(_wait, lambda: clients() == 2 and 2.0, 10)
            await second.send({"op": "auth", "token": "not-a-token"})
            assert (await second.close_code())[0] == 4401
            left = await asyncio.to_thread(_wait, lambda: clients() == 1 and 1.0, 10)
            await first.ws.close()
            return connected, left, dropped() - before

    try:
        assert asyncio.run(scenario()) == (2.0, 1.0, 1.0)
        assert _wait(lambda: clients() == 0 and 1, 10)
    finally:
        metrics.release(settings)
