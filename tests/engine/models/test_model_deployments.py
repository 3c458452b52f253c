"""Model deployments in the pipeline (engine/models, engine.strategy.runner): permissions, lease windows in market
time, micro-batch evaluation, and live = offline (each bar's signal is what onnxruntime says for its features)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression

from engine.cli.files import load_instruments
from engine.domain import IST, Timeframe
from engine.models.features import feature_columns
from engine.models.runtime import Lease, ModelCatalog, ModelMeta, ModelRuntime
from engine.pipeline import SignalPipeline
from engine.settings import Settings
from engine.strategy import InvalidStrategyRow, deployment_from_row
from engine.strategy.runner import StrategyRunner
from engine.errors import ConfigError
from engine.ticks import decode_packets
from tests.streams.support import DAY, make_minute_history

OWNER = "00000000-0000-0000-0000-0000000000a1"
LESSEE = "00000000-0000-0000-0000-0000000000b2"
STRANGER = "00000000-0000-0000-0000-0000000000c3"
MODEL = "00000000-0000-0000-0000-00000000d0d0"
FEATURES = ("rsi_14", "ema(9)", "ema(21)", "close", "atr(14)", "macd(12,26,9).hist", "volume", "bbands(20,2).upper")
SYMBOLS = ("RELIANCE", "TCS", "INFY")


def classifier_bytes(seed: int = 1) -> bytes:
    """A small random forest over the features (labels -1/1 from a rule), exported by skl2onnx, probabilities as a
    tensor."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    y = np.where(x[:, 0] + 0.5 * x[:, 3] > 0, 1, -1)
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=seed).fit(x, y)
    return to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17).SerializeToString()


def row(user: str, *, rid: str = "00000000-0000-0000-0000-00000000e001", model: str = MODEL) -> dict:
    return {"id": rid, "user_id": user, "name": "ml row", "strategy_type": "ML", "is_active": True,
            "parameters": {"model": model, "symbols": list(SYMBOLS), "timeframe": "5m"},
            "entry_conditions": {}, "exit_conditions": {}, "risk_management": {"target_atr": 2, "stop_atr": 1}}


def catalog(data: bytes, leases: list[Lease]) -> ModelCatalog:
    meta = ModelMeta(MODEL, OWNER, "forest", hashlib.sha256(data).hexdigest(), "CLASSIFICATION", FEATURES)
    return ModelCatalog({MODEL: (meta, ModelRuntime(meta, data))}, leases)


def replay(tmp_path: Path, deployments) -> tuple[list, list, SignalPipeline]:
    """Two sessions of minute history replayed as ticks (every tick closes a 1m bar): signals and 5m bars+rows."""
    path = tmp_path / "history.jsonl"
    make_minute_history(path, SYMBOLS, sessions=2)
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    pipeline = SignalPipeline(registry, StrategyRunner(deployments), lateness_s=2.0)
    lines = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
    signals, bars = [], []
    for start in range(0, len(lines), 64):
        decoded = decode_packets(lines[start: start + 64], registry)
        _, step = pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
        signals += step.signals
        bars += [(b, r) for b, r in zip(step.bars, np.asarray(step.rows).tolist()) if b.timeframe is Timeframe.M5]
    return signals, bars, pipeline


def test_owner_and_lessee_may_deploy_and_a_stranger_may_not():
    models = catalog(classifier_bytes(), [Lease("l1", MODEL, LESSEE, DAY, DAY)])
    owner = deployment_from_row(row(OWNER), models)
    lessee = deployment_from_row(row(LESSEE, rid="00000000-0000-0000-0000-00000000e002"), models)
    assert owner.name == lessee.name == "forest"  # signals carry the model's name
    with pytest.raises(InvalidStrategyRow) as caught:
        deployment_from_row(row(STRANGER), models)
    assert caught.value.path == "parameters.model" and "nor holds a lease" in caught.value.problem
    with pytest.raises(InvalidStrategyRow, match="no model"):
        deployment_from_row(row(OWNER, model="00000000-0000-0000-0000-000000000bad"), models)


def test_a_tampered_model_file_and_an_unknown_feature_are_refused():
    data = classifier_bytes()
    meta = ModelMeta(MODEL, OWNER, "forest", hashlib.sha256(data).hexdigest(), "CLASSIFICATION", FEATURES)
    with pytest.raises(ConfigError, match="altered"):
        ModelRuntime(meta, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ConfigError, match="feature 'vibes' is unknown"):
        feature_columns(["rsi_14", "vibes"])


def test_live_equals_offline_and_a_lease_runs_only_inside_its_window(tmp_path):
    data = classifier_bytes()
    day2 = DAY + dt.timedelta(days=1)
    while day2.weekday() >= 5:
        day2 += dt.timedelta(days=1)
    models = catalog(data, [Lease("lease-1", MODEL, LESSEE, day2, day2 + dt.timedelta(days=30))])
    owner = deployment_from_row(row(OWNER), models)
    lessee = deployment_from_row(row(LESSEE, rid="00000000-0000-0000-0000-00000000e002"), models)
    signals, bars, pipeline = replay(tmp_path, [owner, lessee])
    runtime = models.models[MODEL][1]

    # offline: the same model, one bar at a time, on each 5m bar's features as the pipeline computed them
    columns = feature_columns(FEATURES)
    index = [pipeline.columns.index(c) if c in pipeline.columns else None for c in columns]
    offline = ModelRuntime(runtime.meta, data)
    expected = {}
    for bar, values in bars:
        feats = [getattr(bar, c) if i is None else values[i] for c, i in zip(columns, index)]
        if any(np.isnan(v) for v in feats):
            continue
        [(side, confidence)] = offline.predict(np.asarray([feats], dtype=np.float32))
        if side is not None:
            expected[(bar.symbol, bar.open_ns)] = (side, round(confidence, 6))
    got_owner = {(s.bar.symbol, s.bar.open_ns): (str(s.intent.signal_type), round(s.intent.confidence, 6))
                 for s in signals if s.user_id == OWNER}
    assert len(expected) > 50 and got_owner == expected
    # the lessee: exactly the owner's signals on bars dated inside the lease (IST), none before its start
    inside = {k: v for k, v in expected.items()
              if dt.datetime.fromtimestamp(k[1] / 1e9, IST).date() >= day2}
    got_lessee = {(s.bar.symbol, s.bar.open_ns): (str(s.intent.signal_type), round(s.intent.confidence, 6))
                  for s in signals if s.user_id == LESSEE}
    assert got_lessee == inside and 0 < len(inside) < len(expected)
    # the signal's market data: model, file, lease and the features it read
    lessee_signal = next(s for s in signals if s.user_id == LESSEE)
    md = lessee_signal.intent.market_data
    assert md["model_id"] == MODEL and md["model_sha256"] == runtime.meta.sha256 and md["lease_id"] == "lease-1"
    assert list(md["features"]) == list(FEATURES)
    assert all(s.intent.market_data["lease_id"] is None for s in signals if s.user_id == OWNER)
    # micro-batches: far fewer runs than bars evaluated (one per model per batch, both deployments together)
    assert runtime.runs < len(expected) / 5


def test_a_regression_model_uses_its_threshold():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    model = LinearRegression().fit(x, x[:, 0] * 0.01)
    data = to_onnx(model, x[:1], target_opset=17).SerializeToString()
    meta = ModelMeta(MODEL, OWNER, "lin", hashlib.sha256(data).hexdigest(), "REGRESSION", ("close", "volume"),
                     threshold=0.004)
    runtime = ModelRuntime(meta, data)
    rows = np.asarray([[1.0, 0.0], [-1.0, 0.0], [0.1, 0.0]], dtype=np.float32)
    out = runtime.predict(rows)
    assert [side for side, _ in out] == ["BUY", "SELL", None]
    assert out[0][1] == pytest.approx(1.0) and out[2][1] == pytest.approx(0.001 / 0.008, rel=1e-3)
    with pytest.raises(ConfigError, match="threshold"):
        ModelRuntime(ModelMeta(MODEL, OWNER, "lin", meta.sha256, "REGRESSION", ("close", "volume")), data)


def test_a_model_failing_at_run_time_is_counted_notified_to_owner_and_lessee_and_disabled_after_five(tmp_path):
    models = catalog(classifier_bytes(), [Lease("l1", MODEL, LESSEE, DAY, DAY + dt.timedelta(days=30))])
    lessee = deployment_from_row(row(LESSEE, rid="00000000-0000-0000-0000-00000000e002"), models)
    runtime = models.models[MODEL][1]

    def broken(rows):
        raise RuntimeError("onnxruntime: shape mismatch")

    runtime.predict = broken  # what a model whose graph fails on real data does at run time
    signals, _, pipeline = replay(tmp_path, [lessee])
    assert signals == []
    status = pipeline.runner.status()
    assert status[0]["disabled"] and status[0]["failures"] == 5
    # the failures were taken by the pipeline's steps: recount them from a fresh runner on one batch
    runner = StrategyRunner([deployment_from_row(row(LESSEE, rid="00000000-0000-0000-0000-00000000e003"),
                                                 catalog(classifier_bytes(), models.leases))])
    runner._slots[next(iter(runner._slots))].deployment.strategy.model_runtime.predict = broken
    _feed_one_batch(runner, pipeline)
    told = {f.user_id for f in runner.take_failures()}
    assert told == {LESSEE, OWNER}


def _feed_one_batch(runner, pipeline) -> None:
    """Evaluate the runner on 40 warm 5m bars of one symbol (the indicators of ``pipeline``'s last rows)."""
    from engine.domain import Bar

    start = int(dt.datetime(2026, 1, 5, 9, 15, tzinfo=IST).timestamp()) * 10**9
    bars = [Bar("RELIANCE", Timeframe.M5, start + i * 300 * 10**9, 100.0, 101.0, 99.0, 100.5, 1000.0, 5)
            for i in range(40)]
    rows = np.full((40, len(pipeline.columns)), 50.0)
    runner.on_bars(bars, rows, pipeline.columns)
