"""The streaming pipeline end to end on the embedded broker and PostgreSQL (real servers, real processes).

Every test gets its own broker (so topics start empty) and its own database, and compares
what the engine wrote with the offline reference: the pure core run tick by tick on the same file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from db.embedded import start_postgres, stop_postgres
from db.seed_demo import seed_demo
from engine.settings import Settings
from streams.admin import ensure_topics
from streams.topics import engine_topics
from tests.fixtures.postgres import private_home
from tests.streams.support import (
    SHAREWISE, assert_books_equal, database_books, database_rows, engine_env, make_tick_file, reference_books,
    reference_of, up_until_drained, wait_for,
)

_env = engine_env
_up = up_until_drained


def _reference(path: Path, dsn: str, *, flush: bool):
    return reference_of(path, dsn, flush=flush)


async def _dlq(bootstrap: str) -> list[dict]:
    consumer = AIOKafkaConsumer("market.ticks.dlq", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        records = []
        while batch := await consumer.getmany(timeout_ms=1500):
            records += [orjson.loads(r.value) for rs in batch.values() for r in rs]
        return records
    finally:
        await consumer.stop()


DECLARATIVE = {
    "name": "fast_ema_rule",
    "entry_conditions": {"timeframe": "1m", "all": [{"left": "ema(5)", "op": "crosses_above", "right": "ema(13)"}]},
    "exit_conditions": {"any": [{"left": "ema(5)", "op": "crosses_below", "right": "ema(13)"}]},
    "parameters": {"symbols": ["TCS", "INFY", "SBIN"], "confidence": 0.65},
}


async def _add_declarative_strategy(dsn: str, user_id: str) -> None:
    """A JSON-rule strategy row of the demo user, as a trader would save it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO strategies_strategy (user_id, name, strategy_type, parameters, entry_conditions,"
            " exit_conditions, is_active) VALUES ($1, $2, 'TECHNICAL', $3::jsonb, $4::jsonb, $5::jsonb, TRUE)",
            user_id, DECLARATIVE["name"], orjson.dumps(DECLARATIVE["parameters"]).decode(),
            orjson.dumps(DECLARATIVE["entry_conditions"]).decode(), orjson.dumps(DECLARATIVE["exit_conditions"]).decode())
    finally:
        await conn.close()


@pytest.fixture
def world(tmp_path, kafka_broker_factory, pg_dsn):
    """(env, bootstrap, dsn, tick file) with the demo tenant seeded, plus one declarative strategy of its user."""
    broker = kafka_broker_factory()
    demo = asyncio.run(seed_demo(pg_dsn))
    asyncio.run(_add_declarative_strategy(pg_dsn, demo["user_id"]))
    ticks = make_tick_file(tmp_path / "ticks.jsonl")
    return _env(tmp_path / "home", broker.bootstrap, pg_dsn), broker.bootstrap, pg_dsn, ticks


def test_replay_until_drained_holds_its_contract_and_equals_the_offline_reference(world):
    env, bootstrap, dsn, ticks = world
    summary = _up(env, ticks.path)
    assert set(summary) == {"ticks", "dlq", "bars", "signals", "orders"}
    assert summary["ticks"] + summary["dlq"] == ticks.lines
    assert summary["dlq"] == len(ticks.bad)

    ref = _reference(ticks.path, dsn, flush=True)
    bars, signals, notifications = asyncio.run(database_rows(dsn))
    assert len(ref.signals) > 5 and len(ref.bars) > 100
    _diff(bars, ref.bars)
    assert sorted(bars) == sorted(ref.bars) and len(bars) == summary["bars"]
    assert sorted(signals) == sorted(ref.signals) and len(signals) == summary["signals"]
    assert notifications == len(signals)
    by_strategy = Counter(s[3] for s in signals)
    assert by_strategy["fast_ema_rule"] > 0 and by_strategy["ema_cross"] > 0, by_strategy  # rules run live too
    # the demo's ema_cross row trades on paper: live orders and books are the backtest's, row for row
    assert_books_equal(dsn, ref)
    assert summary["orders"] == len(reference_books(ref)[0])

    dead = asyncio.run(_dlq(bootstrap))
    assert Counter(d["reason"] for d in dead) == Counter(reason for reason, _ in ticks.bad)
    assert sorted(d["original"].encode() for d in dead) == sorted(raw for _, raw in ticks.bad)
    assert all(d["topic"] == "market.ticks" and d["offset"] >= 0 for d in dead)


def test_replaying_the_same_file_twice_writes_no_duplicate_row(world):
    env, _, dsn, ticks = world
    first = _up(env, ticks.path)
    rows_first = asyncio.run(database_rows(dsn))
    second = _up(env, ticks.path)
    rows_second = asyncio.run(database_rows(dsn))
    assert sorted(rows_first[0]) == sorted(rows_second[0]) and sorted(rows_first[1]) == sorted(rows_second[1])
    assert rows_first[2] == rows_second[2]
    assert first["bars"] > 0 and second["ticks"] + second["dlq"] == ticks.lines
    assert first["orders"] > 0
    assert_books_equal(dsn, _reference(ticks.path, dsn, flush=True))  # the second replay added no order


def _feed(env: dict[str, str], path: Path) -> None:
    done = subprocess.run([*SHAREWISE, "feed", "replay", str(path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([*SHAREWISE, "worker", "--checkpoint-interval", "0.5"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def _converged(dsn: str, ref, timeout: float) -> bool:
    async def done() -> bool:
        bars, signals, _ = await database_rows(dsn)
        return len(bars) >= len(ref.bars) and len(signals) >= len(ref.signals)

    return wait_for(done, timeout)


def _assert_equal_to(dsn: str, ref) -> None:
    want = reference_books(ref)

    async def books_done() -> bool:
        return await database_books(dsn) == want

    wait_for(books_done, 60)  # the order stage decides once the slowest source's clock has passed
    time.sleep(1.5)  # anything extra would arrive now
    bars, signals, notifications = asyncio.run(database_rows(dsn))
    assert sorted(bars) == sorted(ref.bars)
    assert sorted(signals) == sorted(ref.signals)
    assert notifications == len(signals)
    assert_books_equal(dsn, ref)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=30)


def test_kill_9_the_worker_at_random_points_then_restart_loses_and_doubles_nothing(world, tmp_path):
    env, bootstrap, dsn, ticks = world
    asyncio.run(ensure_topics(bootstrap, engine_topics(8)))
    ref = _reference(ticks.path, dsn, flush=False)
    rng = random.Random(int(os.environ.get("SHAREWISE_TEST_SEED", time.time())))
    feeder = subprocess.Popen([*SHAREWISE, "feed", "replay", str(ticks.path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(3):
        worker = _worker(env, tmp_path / "worker.log")
        time.sleep(rng.uniform(4.0, 9.0))
        worker.kill()  # SIGKILL: no checkpoint, no commit, no goodbye
        worker.wait()
    assert feeder.wait(timeout=120) == 0
    worker = _worker(env, tmp_path / "worker.log")
    try:
        assert _converged(dsn, ref, timeout=120), (tmp_path / "worker.log").read_text()[-3000:]
        _assert_equal_to(dsn, ref)
    finally:
        _stop(worker)


def test_two_workers_split_the_partitions_and_one_stopping_loses_nothing(world, tmp_path):
    env, bootstrap, dsn, ticks = world
    asyncio.run(ensure_topics(bootstrap, engine_topics(8)))
    ref = _reference(ticks.path, dsn, flush=False)
    a, b = _worker(env, tmp_path / "a.log"), _worker(env, tmp_path / "b.log")
    try:
        time.sleep(8)  # both joined
        _feed(env, ticks.path)
        time.sleep(1.0)
        _stop(a)  # mid-run: b takes a's partitions over from their checkpoints
        assert _converged(dsn, ref, timeout=120), (tmp_path / "b.log").read_text()[-3000:]
        _assert_equal_to(dsn, ref)
        assert b.poll() is None
    finally:
        _stop(a)
        _stop(b)
    conn_rows = asyncio.run(_heartbeats(dsn))
    assert len(conn_rows) == 2  # two distinct workers took part


async def _any_rows(dsn: str) -> bool:
    bars, _, _ = await database_rows(dsn)
    return len(bars) > 0


async def _heartbeats(dsn: str) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch("SELECT worker_id, partitions FROM engine.worker_heartbeat")
    finally:
        await conn.close()


def test_database_stopped_for_10_seconds_mid_run_loses_nothing_and_the_worker_survives(kafka_broker_factory,
                                                                                        tmp_path):
    broker = kafka_broker_factory()
    ticks = make_tick_file(tmp_path / "ticks.jsonl")
    with private_home("sharewise-outage-") as pg_home:
        db_settings = Settings(home=pg_home)
        dsn = start_postgres(db_settings, keep_running=True)
        env = _env(tmp_path / "home", broker.bootstrap, dsn)
        from db.migrate import migrate

        asyncio.run(migrate(dsn))
        asyncio.run(seed_demo(dsn))
        asyncio.run(ensure_topics(broker.bootstrap, engine_topics(8)))
        ref = _reference(ticks.path, dsn, flush=False)
        lines = ticks.path.read_bytes().splitlines(keepends=True)
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        first.write_bytes(b"".join(lines[: len(lines) // 2]))
        second.write_bytes(b"".join(lines[len(lines) // 2 :]))
        worker = _worker(env, tmp_path / "worker.log")
        try:
            _feed(env, first)
            assert wait_for(lambda: _any_rows(dsn), timeout=60)
            stop_postgres(db_settings)  # mid-run: the sinks and the checkpoints lose their database
            _feed(env, second)
            time.sleep(10)
            assert worker.poll() is None, "the worker died during the outage"
            assert start_postgres(db_settings, keep_running=True) == dsn
            assert _converged(dsn, ref, timeout=120), (tmp_path / "worker.log").read_text()[-3000:]
            _assert_equal_to(dsn, ref)
            assert worker.poll() is None
            log = (tmp_path / "worker.log").read_text()  # the outage is in the log, whichever part met it first
            assert any(said in log for said in ("database unavailable", "cannot load checkpoint", "checkpoint not written",
                                                "order stage cannot read PostgreSQL"))
        finally:
            _stop(worker)


def _diff(got, want) -> None:
    got, want = set(got), set(want)
    for a in sorted(got - want)[:2]:
        b = next((w for w in want if w[0] == a[0]), None)
        print("GOT ", a)
        print("WANT", b)
