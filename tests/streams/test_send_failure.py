"""A send that finally fails stops the worker loudly, and a restart resumes with nothing lost.

The broker is frozen under a busy worker (SIGSTOP: its log survives, unlike a kill of the in-memory
broker): the worker's outputs are not acknowledged within ``SHAREWISE_SEND_TIMEOUT``, so it must
exit non-zero with one red line naming the cause, and must not checkpoint past the lost outputs.
Once the broker runs again, a restarted worker resumes from the last checkpoint and the database
equals the offline reference, no row missing, none doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

from db.seed_demo import seed_demo
from streams.admin import ensure_topics
from streams.topics import engine_topics
from tests.streams.support import (
    SHAREWISE, SYMBOLS_20, database_rows, engine_env, make_session_file, reference_of, wait_for,
)


def _worker(env: dict[str, str], log) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen([*SHAREWISE, "worker", "--checkpoint-interval", "0.5"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


async def _some_bars(dsn: str) -> bool:
    bars, _, _ = await database_rows(dsn)
    return len(bars) > 0


def test_a_broker_frozen_under_the_worker_stops_it_non_zero_and_a_restart_loses_nothing(
        tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(ensure_topics(broker.bootstrap, engine_topics(8)))
    path = tmp_path / "ticks.jsonl"
    make_session_file(path, SYMBOLS_20[:10], sessions=1, ticks=150_000, seed=13)
    env = engine_env(tmp_path / "home", broker.bootstrap, pg_dsn, SHAREWISE_SEND_TIMEOUT="3")
    log = tmp_path / "worker.log"
    worker = _worker(env, log)
    try:
        time.sleep(8)  # joined
        feeder = subprocess.Popen([*SHAREWISE, "feed", "replay", str(path)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert wait_for(lambda: _some_bars(pg_dsn), timeout=60), log.read_text()[-2000:]
        os.kill(broker.pid, signal.SIGSTOP)  # mid-stream: sends in flight are never acknowledged
        try:
            code = worker.wait(timeout=120)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
        assert code != 0 and len(errors) == 1, log.read_text()[-3000:]
        assert "send to" in errors[0] and "failed" in errors[0]
        assert log.read_text().splitlines()[-1] == errors[0]  # the last word is the cause
        assert feeder.wait(timeout=120) == 0

        worker = _worker(env, log)
        ref = reference_of(path, pg_dsn, flush=False, chunk=500)

        async def converged() -> bool:
            bars, signals, _ = await database_rows(pg_dsn)
            return len(bars) >= len(ref.bars) and len(signals) >= len(ref.signals)

        assert wait_for(converged, timeout=180), log.read_text()[-3000:]
        time.sleep(1.5)
        bars, signals, notifications = asyncio.run(database_rows(pg_dsn))
        assert set(bars) == ref.bars and len(bars) == len(ref.bars)
        assert set(signals) == ref.signals and len(signals) == len(ref.signals)
        assert notifications == len(signals)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
