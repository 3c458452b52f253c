"""Leased models as users run them: ``sharewise model import`` and ``model lease``, ML strategy rows, then
``sharewise up --replay`` on a real Kafka-protocol broker and PostgreSQL (docs/models.md).

* the model's signals in PostgreSQL are the offline reference's (the pure core with onnxruntime, same bars);
* the lessee's signals stop at the lease's end date, in market time, and none come before its start;
* the lease's usage counters equal its signals when ``--until-drained`` exits, and a second replay of the same
  file adds no signal and leaves them unchanged;
* a lease and a row added while ``sharewise up`` runs start signals within a minute, without a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import time
from pathlib import Path

import asyncpg
import numpy as np
import orjson
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

from db.seed_demo import DEMO_EMAIL, seed_demo
from engine.cli.assemble import active_deployments
from engine.cli.files import load_instruments
from engine.domain import IST
from engine.settings import Settings
from tests.sinks.feed.support import add_user
from tests.streams.support import (
    DAY, LATENESS, SHAREWISE, database_rows, engine_env, make_minute_history, offline_reference, up_until_drained,
)

SYMBOLS = ("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN")
FEATURES = ("close", "volume", "ema(9)", "rsi(14)", "atr(14)")


def _model(path: Path) -> Path:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, len(FEATURES))).astype(np.float32) * [500, 1000, 500, 20, 5] + [2000, 500, 2000, 50, 5]
    y = np.where((x[:, 3] > 50) ^ (x[:, 1] > 500), 1, -1)
    forest = RandomForestClassifier(n_estimators=8, max_depth=3, random_state=5).fit(x, y)
    path.write_bytes(to_onnx(forest, x[:1].astype(np.float32), options={id(forest): {"zipmap": False}},
                             target_opset=17).SerializeToString())
    return path


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*SHAREWISE, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


async def _q(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _ml_row(dsn: str, user_id: str, model_id: str, timeframe: str = "5m") -> None:
    params = {"model": model_id, "symbols": list(SYMBOLS), "timeframe": timeframe}
    await _q(dsn, "INSERT INTO strategies_strategy (user_id, name, strategy_type, parameters, entry_conditions,"
                  " exit_conditions, risk_management, is_active) VALUES ($1, 'forest row', 'ML', $2::jsonb, '{}',"
                  " '{}', '{\"target_atr\": 2, \"stop_atr\": 1}', TRUE)", user_id, orjson.dumps(params).decode())


def _setup(tmp_path: Path, pg_dsn: str, bootstrap: str | None, **extra: str):
    demo = asyncio.run(seed_demo(pg_dsn))
    lessee = asyncio.run(add_user(pg_dsn))
    env = engine_env(tmp_path / "home", bootstrap, pg_dsn, **extra)
    model = _model(tmp_path / "forest.onnx")
    imported = _cli(env, "model", "import", str(model), "--owner", DEMO_EMAIL, "--name", "forest", "--features",
                    ",".join(FEATURES), "--json")
    model_id = orjson.loads(imported.stdout)["id"]
    return env, str(demo["user_id"]), lessee, model_id


def test_a_replay_with_an_owner_and_a_lessee_equals_the_reference_and_counts_usage(tmp_path, kafka_broker_factory,
                                                                                    pg_dsn):
    broker = kafka_broker_factory()
    env, owner, lessee, model_id = _setup(tmp_path, pg_dsn, broker.bootstrap)
    history = tmp_path / "history.jsonl"
    make_minute_history(history, SYMBOLS, sessions=3)
    day2 = DAY + dt.timedelta(days=1)  # 2026-01-06, the second session
    _cli(env, "model", "lease", model_id, "--to", f"{lessee}@test.local", "--start", DAY.isoformat(), "--end",
         day2.isoformat(), "--price", "999")
    asyncio.run(_ml_row(pg_dsn, owner, model_id))
    asyncio.run(_ml_row(pg_dsn, lessee, model_id))

    summary = up_until_drained(env, history)
    deployments, errors = asyncio.run(active_deployments(pg_dsn, home=tmp_path / "home"))
    assert not errors and sum(d.name == "forest" for d in deployments) == 2
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    ref = offline_reference(history, registry, deployments, lateness_s=LATENESS, flush=True)
    _, signals, _ = asyncio.run(database_rows(pg_dsn))
    ours = sorted(s for s in signals if s[3] == "forest")
    theirs = sorted(s for s in ref.signals if s[3] == "forest")
    assert len(theirs) > 100 and ours == theirs and summary["signals"] == len(signals)

    rows = asyncio.run(_q(pg_dsn, "SELECT user_id::text AS user_id, timestamp, market_data FROM trading_signal"
                                  " WHERE strategy_name = 'forest'"))
    leased = [r for r in rows if r["user_id"] == lessee]
    days = {r["timestamp"].astimezone(IST).date() for r in leased}
    assert days == {DAY, day2}  # the third session is after the lease's end: nothing
    assert {r["timestamp"].astimezone(IST).date() for r in rows if r["user_id"] == owner} == {
        DAY, day2, day2 + dt.timedelta(days=1)}
    md = orjson.loads(leased[0]["market_data"])
    assert md["model_id"] == model_id and len(md["model_sha256"]) == 64 and md["lease_id"]
    assert set(md["features"]) == {"close", "volume", "ema_9", "rsi_14", "atr_14"}

    def usage():
        [lease] = asyncio.run(_q(pg_dsn, "SELECT total_signals_generated, usage_stats FROM ai_studio_modellease"))
        return lease["total_signals_generated"], orjson.loads(lease["usage_stats"])

    total, stats = usage()
    assert total == len(leased) == stats["signals"] and stats["symbols"] == sorted({r for r in SYMBOLS})
    assert stats["last_signal_at"] is not None

    up_until_drained(env, history)  # the same file again: no new signal, the same usage
    _, signals_again, _ = asyncio.run(database_rows(pg_dsn))
    assert sorted(signals_again) == sorted(signals) and usage() == (total, stats)


def test_a_lease_added_while_up_runs_starts_signals_within_a_minute(tmp_path, pg_dsn):
    env, owner, lessee, model_id = _setup(tmp_path, pg_dsn, None, SHAREWISE_RELOAD_S="2")
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen([*SHAREWISE, "up", "--speed", "600", "--rate", "3000"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        def count() -> int:
            [row] = asyncio.run(_q(pg_dsn, "SELECT count(*) AS n FROM trading_signal WHERE user_id = $1::uuid",
                                   lessee))
            return row["n"]

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not asyncio.run(_q(pg_dsn, "SELECT 1 FROM analytics_marketdata LIMIT 1")):
            time.sleep(1)  # the engine is up and writing bars
        assert proc.poll() is None and count() == 0
        today = dt.datetime.now(IST).date()
        _cli(env, "model", "lease", model_id, "--to", f"{lessee}@test.local", "--start",
             (today - dt.timedelta(days=400)).isoformat(), "--end", (today + dt.timedelta(days=400)).isoformat(),
             "--price", "10")
        asyncio.run(_ml_row(pg_dsn, lessee, model_id, timeframe="1m"))
        added = time.monotonic()
        while count() == 0 and time.monotonic() - added < 60 and proc.poll() is None:
            time.sleep(1)
        assert count() > 0, (tmp_path / "up.log").read_text()[-3000:]
        assert "strategies reloaded" in (tmp_path / "home" / "logs" / "up.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
