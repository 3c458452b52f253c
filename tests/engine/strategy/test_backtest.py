"""`sharewise backtest`: the JSON contract, ticks equal their bars, statistics by hand, errors, --save."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
import math
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli.app import app
from engine.cli.files import backtest_file
from engine.domain import IST, Timeframe
from engine.strategy import create
from engine.strategy.backtest import BARS_PER_SESSION

BIN = Path(sys.executable).parent
SIGNAL_KEYS = ["time", "symbol", "signal_type", "entry_price", "target_price", "stop_loss", "confidence_score"]
TOP_KEYS = ["signals", "trades", "win_rate", "avg_return", "max_drawdown", "sharpe", "exposure", "orders", "pnl"]


@pytest.fixture(scope="module")
def ticks_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two symbols, two sessions, a tick every 20 s (random walks), in time order."""
    rng = np.random.default_rng(42)
    path = tmp_path_factory.mktemp("backtest") / "ticks.csv"
    prices = {"RELIANCE": 2900.0, "INFY": 1500.0}
    lines = ["time,symbol,price,qty"]
    for day in (5, 6):
        start = datetime(2026, 1, day, 9, 15, tzinfo=IST)
        for k in range(375 * 3):
            for symbol in prices:
                prices[symbol] *= math.exp(rng.normal(0, 0.0015))
                when = start + timedelta(seconds=20 * k + (7 if symbol == "INFY" else 0))
                lines.append(f"{when.isoformat()},{symbol},{prices[symbol]:.2f},{int(rng.integers(1, 500))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "sharewise"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_json_contract_and_determinism(ticks_csv):
    first = _cli("backtest", "--strategy", "ema_cross", str(ticks_csv), "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert list(doc) == TOP_KEYS
    assert doc["signals"], "the random walk should cross"
    for signal in doc["signals"]:
        assert list(signal) == SIGNAL_KEYS
        assert signal["signal_type"] in ("BUY", "SELL") and signal["symbol"] in ("RELIANCE", "INFY")
        assert datetime.fromisoformat(signal["time"]).utcoffset() == timedelta(hours=5, minutes=30)
        assert round(signal["entry_price"], 2) == signal["entry_price"] and 0.5 <= signal["confidence_score"] <= 0.95
    assert isinstance(doc["trades"], int) and 0 <= doc["win_rate"] <= 1 and 0 <= doc["exposure"] <= 1
    # traded on paper by the live order code: entries fill at the signal's close, one share (the default)
    entries = [o for o in doc["orders"] if o["executes_signal"] and o["status"] == "COMPLETE"]
    assert entries and all(o["quantity"] == 1 and o["product"] == "MIS" for o in entries)
    closes = {s["entry_price"] for s in doc["signals"]}
    assert all(float(o["average_price"]) in closes for o in entries)
    pnl = {k: Decimal(v) for k, v in doc["pnl"].items()}
    charges = sum(Decimal(o["fees"]) + Decimal(o["taxes"]) for o in doc["orders"])
    assert pnl["charges"] == charges > 0 and pnl["gross"] - pnl["charges"] == pnl["net"]
    again = _cli("backtest", "--strategy", "ema_cross", str(ticks_csv), "--json")
    assert again.stdout == first.stdout


def test_ticks_give_what_their_bars_give(ticks_csv, tmp_path):
    bars_csv = tmp_path / "bars.csv"
    made = _cli("bars", str(ticks_csv), "--timeframe", "15m", "--out", str(bars_csv))
    assert made.returncode == 0, made.stderr
    for name in ("ema_cross", "rsi_reversion", "donchian_breakout"):
        from_ticks = backtest_file(create(name), ticks_csv, Timeframe.M15).as_json()
        from_bars = backtest_file(create(name), bars_csv, Timeframe.M15).as_json()
        assert from_ticks == from_bars


def test_statistics_by_hand(tmp_path):
    # ema_cross buys the step to 110 at bar 30 and sells the drop to 90 at bar 60.
    closes = [100.0] * 30 + [110.0] * 30 + [90.0] * 30
    path = tmp_path / "nifty.csv"
    start = datetime(2026, 1, 5, 9, 15, tzinfo=IST)
    rows = [f"{(start + timedelta(minutes=5 * k)).isoformat()},{c},{c},{c},{c},1000" for k, c in enumerate(closes)]
    path.write_text("time,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    result = backtest_file(create("ema_cross"), path, Timeframe.M5).as_json()
    assert [(s["symbol"], s["signal_type"], s["entry_price"]) for s in result["signals"]] == [
        ("NIFTY", "BUY", 110.0), ("NIFTY", "SELL", 90.0)
    ]
    loss = 90 / 110 - 1
    curve = np.zeros(89)
    curve[59] = loss  # the only bar return while long that is not zero: bar 60
    sharpe = curve.mean() / curve.std(ddof=1) * math.sqrt(252 * BARS_PER_SESSION[Timeframe.M5])
    assert result["trades"] == 1 and result["win_rate"] == 0.0
    assert result["avg_return"] == round(loss, 6) and result["max_drawdown"] == round(-loss, 6)
    assert result["exposure"] == round(30 / 89, 6) and result["sharpe"] == round(sharpe, 6)


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--strategy", "nope"], None, "unknown strategy 'nope'"),
        (["--strategy", "ema_cross", "--params", "{bad"], None, "--params is not valid JSON"),
        (["--strategy", "ema_cross", "--params", '{"fast": 0}'], None, "'fast' must be >= 2"),
        (["--strategy", "ema_cross", "--timeframe", "7m"], None, "unknown timeframe '7m'"),
        (["--strategy", "ema_cross"], "when,price\n", "header must hold"),
        (["--strategy", "ema_cross"], "time,open,high,low,close,volume\n2026-01-05T09:15:00+05:30,1,2,1,x,3\n",
         ":2: close 'x' is not a number"),
        (["--strategy", "ema_cross"], "time,open,high,low,close,volume\n2026-01-05 09:15,1,2,1,1,3\n",
         "not ISO 8601 with an offset"),
    ],
)
def test_errors_exit_2_with_one_clear_line(tmp_path, args, content, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    else:
        path.write_text("time,open,high,low,close,volume\n")
    result = CliRunner().invoke(app, ["backtest", *args, str(path)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["backtest", "--strategy", "ema_cross", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_save_writes_backtest_results_into_the_demo_row(ticks_csv, pg_dsn):
    from db.connect import connect
    from db.seed_demo import seed_demo

    asyncio.run(seed_demo(pg_dsn))
    env = {"SHAREWISE_DATABASE_URL": pg_dsn}
    result = _cli("backtest", "--strategy", "ema_cross", "--params", '{"fast": 5}', str(ticks_csv), "--save", env=env)
    assert result.returncode == 0, result.stderr

    async def stored() -> dict:
        conn = await connect(pg_dsn)
        try:
            text = await conn.fetchval("SELECT backtest_results FROM strategies_strategy WHERE name = 'ema_cross'")
        finally:
            await conn.close()
        return json.loads(text)

    saved = asyncio.run(stored())
    expected = backtest_file(create("ema_cross", {"fast": 5}), ticks_csv, Timeframe.M5)
    assert saved == {"strategy": "ema_cross", "params": {"fast": 5}, "timeframe": "5m", "file": "ticks.csv",
                     "bars": expected.bars, "signals": len(expected.signals), **expected.stats}  # fmt: skip
    missing = _cli("backtest", "--strategy", "macd_cross", str(ticks_csv), "--save", env=env)
    assert missing.returncode == 2 and "no strategy row named 'macd_cross'" in missing.stderr
