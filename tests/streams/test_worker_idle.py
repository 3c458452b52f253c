"""An idle worker still commits what it processed and heartbeats: ops see it OK, not STALL or down."""

from __future__ import annotations

import asyncio
import subprocess
import time

import orjson

from tests.streams.support import make_tick_file
from tests.streams.test_pipeline_e2e import SHAREWISE, _converged, _env, _feed, _reference, _stop, _worker
from db.seed_demo import seed_demo
from streams.admin import ensure_topics
from streams.topics import engine_topics


def test_after_input_stops_the_group_lag_reaches_zero_and_monitor_says_ok(kafka_broker_factory, pg_dsn, tmp_path):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(ensure_topics(broker.bootstrap, engine_topics(8)))
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=30)
    env = _env(tmp_path / "home", broker.bootstrap, pg_dsn)
    ref = _reference(ticks.path, pg_dsn, flush=False)
    worker = _worker(env, tmp_path / "worker.log")
    try:
        _feed(env, ticks.path)
        assert _converged(pg_dsn, ref, timeout=120)
        time.sleep(4)  # two checkpoint intervals with no input at all
        done = subprocess.run([*SHAREWISE, "monitor", "--once", "--json", "--window", "1", "-g", "sharewise-engine"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        snapshot = orjson.loads(done.stdout)
        lags = snapshot["groups"]["sharewise-engine"]["market.ticks"]
        assert lags and all(p["lag"] == 0 for p in lags.values()), lags
        assert snapshot["status"] == "OK", snapshot
        status = subprocess.run([*SHAREWISE, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        _stop(worker)
