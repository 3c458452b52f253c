"""A failure anywhere stops the process with a non-zero exit and one clear line; never "Agent crashed" and exit 0.

Here the database refuses the bar sink's rows (a constraint the engine's rows break): retrying cannot
help and skipping would lose them, so ``up --replay --until-drained`` and ``sharewise worker`` must
both stop, name the cause, and leave no row counted as written that is not.
"""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg

from db.seed_demo import seed_demo
from tests.streams.support import SHAREWISE, SYMBOLS_20, engine_env, make_session_file


async def _refuse_bars_of(dsn: str, symbol: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE analytics_marketdata ADD CONSTRAINT no_{symbol.lower()}"
                           f" CHECK (symbol <> '{symbol}') NOT VALID")
    finally:
        await conn.close()


def test_a_sink_the_database_refuses_stops_up_until_drained_non_zero_naming_the_cause(tmp_path, kafka_broker_factory,
                                                                                      pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(_refuse_bars_of(pg_dsn, "TCS"))
    path = tmp_path / "ticks.jsonl"
    make_session_file(path, SYMBOLS_20[:5], sessions=1, ticks=10_000)
    done = subprocess.run([*SHAREWISE, "up", "--replay", str(path), "--until-drained", "--json"],
                          env=engine_env(tmp_path / "home", broker.bootstrap, pg_dsn), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode != 0 and done.stdout.strip() == "", done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused" in errors[0] and "market.bars" in errors[0], done.stderr[-3000:]
    assert "Agent crashed" not in done.stderr
    log = (tmp_path / "home" / "logs" / "up.log").read_text()
    assert "no_tcs" in log  # the database's own words, in the log with the traceback


def test_a_worker_whose_sink_is_refused_exits_non_zero(tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(_refuse_bars_of(pg_dsn, "INFY"))
    path = tmp_path / "ticks.jsonl"
    make_session_file(path, SYMBOLS_20[:5], sessions=1, ticks=10_000)
    env = engine_env(tmp_path / "home", broker.bootstrap, pg_dsn)
    worker = subprocess.Popen([*SHAREWISE, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        feed = subprocess.run([*SHAREWISE, "feed", "replay", str(path)], env=env, capture_output=True, timeout=120)
        assert feed.returncode == 0
        _, stderr = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode not in (0, None)
    assert stderr.splitlines()[-1].startswith("error: sink agent market.bars: the database refused"), stderr[-2000:]
