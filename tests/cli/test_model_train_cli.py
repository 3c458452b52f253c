"""``sharewise model train`` as a user runs it: a subprocess, a real database, a bars file with a weak pattern."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest

from db.seed_demo import DEMO_EMAIL, seed_demo
from engine.cli.model_train_cmd import ProgressLog, compute_cost
from engine.domain import IST
from tests.cli.test_broker_cli import query, sharewise

SYMBOLS = ("INFY", "TCS", "SBIN")
FEATURES = "close,volume,rsi_14"
PRICE = "12.50"  # SHAREWISE_CPU_HOUR_PRICE of these runs
METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc"}


@pytest.fixture
def demo(pg_dsn):
    asyncio.run(seed_demo(pg_dsn))
    return pg_dsn


def bars_csv(path: Path, bars: int, *, seed: int = 3) -> Path:
    """5m bars of three symbols: a hidden up/down regime drifts the price and lifts the volume when up,
    so volume (and RSI) carry a weak, learnable hint of the next bars' direction."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 5, 9, 15, tzinfo=IST)
    lines = ["time,symbol,open,high,low,close,volume"]
    for symbol in SYMBOLS:
        price, regime = 1000.0, 1
        for k in range(bars):
            if rng.random() < 0.1:
                regime = -regime
            day, slot = divmod(k, 75)
            when = start + timedelta(days=day, minutes=5 * slot)
            close = price * float(np.exp(0.0015 * regime + rng.normal(0.0, 0.003)))
            high, low = max(price, close) * 1.001, min(price, close) * 0.999
            volume = int(1000 + 600 * (regime > 0) + rng.integers(0, 400))
            lines.append(f"{when.isoformat()},{symbol},{price:.2f},{high:.2f},{low:.2f},{close:.2f},{volume}")
            price = close
    path.write_text("\n".join(lines) + "\n")
    return path


def train(home: Path, dsn: str, file: Path, *extra: str, algorithm: str = "LOGISTIC_REGRESSION",
          features: str = FEATURES, name: str = "regime"):
    return sharewise("model", "train", str(file), "--owner", DEMO_EMAIL, "--name", name, "--algorithm", algorithm,
                     "--features", features, "--timeframe", "5m", "--horizon", "5", *extra, home=home,
                     database_url=dsn, env={"SHAREWISE_CPU_HOUR_PRICE": PRICE})


@pytest.mark.parametrize("algorithm", ["LOGISTIC_REGRESSION", "RANDOM_FOREST"])
def test_a_model_trains_stores_and_bills(demo, tmp_path, algorithm):
    home = tmp_path / "home"
    done = train(home, demo, bars_csv(tmp_path / "bars.csv", 600), "--json", algorithm=algorithm)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {"model_id", "job_id", "sha256", "metrics", "rows", "compute_hours", "cost"}
    assert set(doc["metrics"]) == METRICS and doc["metrics"]["accuracy"] > 0.55  # the pattern was learnt
    assert doc["rows"]["train"] >= 50 and doc["rows"]["validation"] >= 20

    stored = home / "models" / f"{doc['sha256']}.onnx"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == doc["sha256"]

    (model,) = query(demo, "SELECT m.*, u.email FROM ai_studio_mlmodel m JOIN users_customuser u ON u.id = m.user_id")
    assert (str(model["id"]), model["email"], model["status"], model["model_type"], model["algorithm"],
            model["file_path"], model["model_size"]) == (
        doc["model_id"], DEMO_EMAIL, "COMPLETED", "CLASSIFICATION", algorithm, f"models/{doc['sha256']}.onnx",
        stored.stat().st_size)
    assert json.loads(model["features"]) == ["close", "volume", "rsi_14"]
    assert json.loads(model["hyperparameters"]) == {"threshold": None, "labels": {"1": "BUY", "-1": "SELL"},
                                                     "horizon": 5, "timeframe": "5m"}
    assert set(json.loads(model["performance_metrics"])) == METRICS
    assert set(json.loads(model["feature_importance"])) == {"close", "volume", "rsi_14"}
    config = json.loads(model["training_config"])
    assert config["sha256"] == doc["sha256"] and config["format"] == "onnx"
    calls = json.loads(model["backtest_results"])
    assert calls["buy"] + calls["sell"] == calls["rows"] == doc["rows"]["validation"]
    # the same model through the backtest code: a signal on each validation bar it can evaluate (the calls' rows,
    # plus the last `horizon` bars of each symbol, which have no label to be a row of)
    backtest = calls["backtest"]
    assert 0 <= backtest["signals"] - calls["rows"] <= 5 * 3 and backtest["buy"] + backtest["sell"] == backtest["signals"]
    assert backtest["buy"] >= calls["buy"] and backtest["bars"] >= backtest["signals"]
    # the split is by time: the whole validation period comes after the last training bar
    assert datetime.fromisoformat(calls["first_bar"]) == datetime.fromisoformat(config["split_at"])
    assert datetime.fromisoformat(config["train_last_bar"]) < datetime.fromisoformat(calls["first_bar"])
    assert datetime.fromisoformat(config["train_label_end"]) < datetime.fromisoformat(calls["first_bar"])

    (job,) = query(demo, "SELECT * FROM ai_studio_trainingjob")
    assert (str(job["id"]), str(job["model_id"]), job["status"], job["progress"], job["error_message"]) == (
        doc["job_id"], doc["model_id"], "COMPLETED", 100, None)
    assert job["started_at"] <= job["completed_at"] and str(job["compute_hours"]) == doc["compute_hours"]
    usage = json.loads(job["resource_usage"])
    assert set(usage) == {"cpu_seconds", "peak_rss_bytes", "rows_train", "rows_validation"}
    assert usage["cpu_seconds"] > 0 and usage["peak_rss_bytes"] > 0 and usage["rows_train"] == doc["rows"]["train"]
    assert set(json.loads(job["validation_metrics"])) == METRICS and set(json.loads(job["training_metrics"])) == METRICS
    logs = json.loads(job["logs"])
    assert all({"at", "message"} <= set(entry) for entry in logs)
    steps = [entry["progress"] for entry in logs if "progress" in entry]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 100  # rises 0 -> 100, never back
    assert len({s for s in steps if 0 < s < 100}) >= 4  # features, split, fit, scoring, export … in between

    (bill,) = query(demo, "SELECT * FROM ai_studio_computeusage")
    assert (str(bill["training_job_id"]), bill["user_id"], bill["resource_type"]) == (
        doc["job_id"], model["user_id"], "CPU")
    assert bill["usage_date"] == datetime.now(IST).date()
    assert bill["compute_hours"] == job["compute_hours"] == Decimal(doc["compute_hours"])
    billed = (bill["compute_hours"] * Decimal(PRICE)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert bill["cost"] == billed == Decimal(doc["cost"])

    shown = sharewise("model", "show", doc["model_id"], home=home, database_url=demo)
    assert shown.returncode == 0 and doc["sha256"] in shown.stdout, shown.stderr


def test_an_unknown_feature_is_refused_before_any_row(demo, tmp_path):
    refused = train(tmp_path / "home", demo, bars_csv(tmp_path / "bars.csv", 50), features="close,moon_phase")
    assert refused.returncode == 2 and "'moon_phase' is unknown" in refused.stderr, refused.stderr
    assert query(demo, "SELECT id FROM ai_studio_mlmodel") == []


@pytest.mark.parametrize("content, says", [
    (None, "too few rows to train"),
    ("time,symbol,price\n2026-01-05T09:15:00+05:30,INFY,1\n", "header must hold"),
])
def test_a_short_or_bad_file_fails_the_run(demo, tmp_path, content, says):
    file = tmp_path / "bars.csv"
    if content is None:
        bars_csv(file, 40)
    else:
        file.write_text(content)
    failed = train(tmp_path / "home", demo, file)
    assert failed.returncode == 2 and says in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    (model,) = query(demo, "SELECT status FROM ai_studio_mlmodel")
    (job,) = query(demo, "SELECT status, error_message, completed_at FROM ai_studio_trainingjob")
    assert model["status"] == "FAILED" and job["status"] == "FAILED" and says in job["error_message"]
    assert job["completed_at"] is not None
    assert query(demo, "SELECT id FROM ai_studio_computeusage") == []


def test_progress_is_written_every_ten_percent_or_half_second():
    now = [0.0]
    writes: list[tuple[int, list[int]]] = []
    log = ProgressLog(write=lambda p, logs: writes.append((p, [e["progress"] for e in logs])),
                      show=lambda p, m: None, clock=lambda: now[0])
    for percent, at in ((0, 0.0), (3, 0.1), (5, 0.2), (12, 0.3), (14, 0.4), (15, 0.95), (16, 1.0), (40, 1.1)):
        now[0] = at
        log(percent, "step")
    assert writes == [(0, [0]), (12, [3, 5, 12]), (15, [14, 15]), (40, [16, 40])]
    assert log.drain() == []


def test_compute_cost_rounds_half_up_to_the_paisa():
    assert compute_cost(1800.0, Decimal("10.00")) == (Decimal("0.5000"), Decimal("5.00"))
    assert compute_cost(0.36, Decimal("10.00")) == (Decimal("0.0001"), Decimal("0.00"))  # ₹0.001 rounds to 0
    assert compute_cost(18.0, Decimal("12.50")) == (Decimal("0.0050"), Decimal("0.06"))  # 0.0625 -> 0.06
    assert compute_cost(18.0, Decimal("13.00")) == (Decimal("0.0050"), Decimal("0.07"))  # 0.065 -> 0.07


def test_ctrl_c_cancels_the_job_and_fails_the_model(demo, tmp_path):
    file = bars_csv(tmp_path / "bars.csv", 3000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env |= {"SHAREWISE_HOME": str(tmp_path / "home"), "SHAREWISE_DATABASE_URL": demo}
    script = Path(sys.executable).with_name("sharewise")
    run = subprocess.Popen([str(script), "model", "train", str(file), "--owner", DEMO_EMAIL, "--name", "slow",
                            "--algorithm", "GRADIENT_BOOSTING", "--features", FEATURES], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the features are done: the fit is under way
            rows = query(demo, "SELECT progress FROM ai_studio_trainingjob")
            if rows and rows[0]["progress"] >= 40:
                break
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr
    (model,) = query(demo, "SELECT status FROM ai_studio_mlmodel")
    (job,) = query(demo, "SELECT status, error_message, completed_at FROM ai_studio_trainingjob")
    assert (model["status"], job["status"], job["error_message"]) == ("FAILED", "CANCELLED", "cancelled")
    assert job["completed_at"] is not None and query(demo, "SELECT id FROM ai_studio_computeusage") == []
