"""A strategy's parameters change between two runs of a worker: the old checkpoint no longer fits the new
indicator set, so the worker rebuilds the state from the topic instead of crashing, and goes on exactly."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import orjson

from db.seed_demo import seed_demo
from streams.admin import ensure_topics
from streams.topics import engine_topics
from tests.streams.support import database_rows, make_tick_file, wait_for
from tests.streams.test_pipeline_e2e import _converged, _env, _feed, _reference, _stop, _worker


async def _set_params(dsn: str, name: str, params: dict) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE strategies_strategy SET parameters = jsonb_set(parameters, '{params}', $2::jsonb)"
                           " WHERE name = $1", name, orjson.dumps(params).decode())
    finally:
        await conn.close()


async def _latest_bar(dsn: str) -> dt.datetime:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT max(timestamp) FROM analytics_marketdata")
    finally:
        await conn.close()


def test_changed_strategy_parameters_rebuild_state_and_the_new_strategy_runs(kafka_broker_factory, pg_dsn, tmp_path):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(ensure_topics(broker.bootstrap, engine_topics(8)))
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=120, late=False)
    lines = ticks.path.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    env = _env(tmp_path / "home", broker.bootstrap, pg_dsn)

    worker = _worker(env, tmp_path / "a.log")
    try:
        _feed(env, first)
        assert _converged(pg_dsn, _reference(first, pg_dsn, flush=False), timeout=120)
    finally:
        _stop(worker)
    cut = asyncio.run(_latest_bar(pg_dsn))

    asyncio.run(_set_params(pg_dsn, "ema_cross", {"fast": 5, "slow": 13}))
    new_ref = _reference(ticks.path, pg_dsn, flush=False)  # the whole file under the new parameters
    worker = _worker(env, tmp_path / "b.log")
    try:
        _feed(env, second)

        async def all_bars() -> bool:
            bars, _, _ = await database_rows(pg_dsn)
            return len(bars) >= len(new_ref.bars)

        assert wait_for(all_bars, timeout=120), (tmp_path / "b.log").read_text()[-3000:]
        assert worker.poll() is None
        assert "rebuilding the state from the topic" in (tmp_path / "b.log").read_text()
        bars, signals, _ = asyncio.run(database_rows(pg_dsn))
        assert sorted(bars) == sorted(new_ref.bars)  # bars do not depend on strategies: nothing lost or doubled
        later = dt.timedelta(minutes=1)
        after = {s for s in signals if s[3] == "ema_cross" and s[1] > cut + later}
        expected = {s for s in new_ref.signals if s[3] == "ema_cross" and s[1] > cut + later}
        assert after == expected and after, "after the restart, ema_cross runs with its new parameters, warm"
    finally:
        _stop(worker)
