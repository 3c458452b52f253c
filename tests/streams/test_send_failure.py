"""A send that finally fails stops the worker loudly, and a restart resumes with nothing lost.

The broker is frozen under a busy worker (a proxy in front of it stops forwarding: the broker and its
in-memory log survive, as after a network partition) while it works through a backlog of several
seconds: the worker's outputs are not acknowledged within ``SHAREWISE_SEND_TIMEOUT``, so it must
exit non-zero with one red line naming the cause, and must not checkpoint past the lost outputs.
Once the broker runs again, a restarted worker resumes from the last checkpoint and the database
equals the offline reference, no row missing, none doubled.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from db.seed_demo import seed_demo
from streams.admin import ensure_topics
from streams.broker import EmbeddedBroker
from streams.topics import engine_topics
from tests.fixtures.proxy import FreezingProxy
from tests.streams.support import (
    SHAREWISE, SYMBOLS_20, database_rows, engine_env, make_session_file, reference_of, wait_for,
)


def _worker(env: dict[str, str], log) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen([*SHAREWISE, "worker", "--checkpoint-interval", "0.5"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


@pytest.fixture
def proxied_broker(tmp_path):
    """(proxy, broker): a broker that tells clients to reach it through a :class:`FreezingProxy`."""
    proxy = FreezingProxy()
    broker = EmbeddedBroker.start(tmp_path / "broker", advertised_port=proxy.port)
    proxy.target = broker.port
    try:
        yield proxy, broker
    finally:
        broker.stop()
        proxy.close()


def test_a_broker_frozen_under_the_worker_stops_it_non_zero_and_a_restart_loses_nothing(
        tmp_path, proxied_broker, pg_dsn):
    proxy, _ = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(ensure_topics(bootstrap, engine_topics(8)))
    path = tmp_path / "ticks.jsonl"
    make_session_file(path, SYMBOLS_20[:10], sessions=1, ticks=300_000, seed=13)
    env = engine_env(tmp_path / "home", bootstrap, pg_dsn, SHAREWISE_SEND_TIMEOUT="3")
    feed = subprocess.run([*SHAREWISE, "feed", "replay", str(path)], env=env, capture_output=True, timeout=120)
    assert feed.returncode == 0, feed.stderr[-2000:]
    log = tmp_path / "worker.log"
    worker = _worker(env, log)  # a backlog of seconds of work: it is busy sending when the broker freezes
    try:
        deadline = time.monotonic() + 60
        while "assumed at offset" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)  # the first batch is being applied: the rest of the backlog is seconds of work
        proxy.freeze()  # mid-stream: sends in flight are never acknowledged
        try:
            code = worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError("the worker did not stop: " + log.read_text()[-3000:]) from None
        finally:
            proxy.thaw()
        errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
        assert code != 0 and len(errors) == 1, log.read_text()[-3000:]
        assert "send to" in errors[0] and "failed" in errors[0]
        assert log.read_text().splitlines()[-1] == errors[0]  # the last word is the cause

        time.sleep(12)  # as a supervisor's restart delay: the failed worker's group session (10 s) expires first
        worker = _worker(env, log)
        ref = reference_of(path, pg_dsn, flush=False, chunk=500)

        async def converged() -> bool:
            bars, signals, _ = await database_rows(pg_dsn)
            return len(bars) >= len(ref.bars) and len(signals) >= len(ref.signals)

        if not wait_for(converged, timeout=180):
            bars, signals, _ = asyncio.run(database_rows(pg_dsn))
            missing = sorted({(b[1], b[8]) for b in ref.bars - set(bars)})
            seen = subprocess.run([*SHAREWISE, "monitor", "--once", "--json", "--window", "0"], env=env,
                                  capture_output=True, text=True, timeout=60).stdout
            raise AssertionError(f"after the restart: {len(bars)}/{len(ref.bars)} bars, {len(signals)}/"
                                 f"{len(ref.signals)} signals; missing {missing[:20]}\n{seen}\n"
                                 + log.read_text()[-3000:])
        time.sleep(1.5)
        bars, signals, notifications = asyncio.run(database_rows(pg_dsn))
        assert set(bars) == ref.bars and len(bars) == len(ref.bars)
        assert set(signals) == ref.signals and len(signals) == len(ref.signals)
        assert notifications == len(signals)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
