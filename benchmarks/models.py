"""Evaluating a leased model per bar: the ONNX export under onnxruntime against scikit-learn, in one run.

Run: ``python benchmarks/models.py [--rows 20000 --bars 100000 --sklearn-bars 500] [--quick]``.

One 100-tree ``RandomForestClassifier`` (the training core's settings) is fitted on 8 synthetic
features and exported by :func:`engine.models.training.export_onnx`. Then, on the same rows:

* onnxruntime on one thread (``intra_op_num_threads=1``, the session the training core checks
  with) in micro-batches of 1, 64 and 1,024 rows — one ``run`` per batch, the way a stream batch
  of closed bars would be scored;
* the peer: scikit-learn's ``predict_proba`` called once per bar with one row, which is what a
  strategy calling the fitted estimator on each closed bar would pay.

Then the pipeline: ticks/s of :class:`engine.pipeline.SignalPipeline` replaying minute history of the 50
NIFTY equities (every tick closes a 1m bar: the sparse case, where model evaluation weighs most), with the
demo's ``ema_cross`` alone and with 50 model deployments added (50 lessees of that forest on 1m bars of every
symbol, evaluated in micro-batches), in the same run.

Times are the process's CPU time per bar (``time.process_time``), so other load on the machine
inflates them less than wall time would. Target (printed, never asserted): onnxruntime at 1,024
rows costs at most 1/20 of scikit-learn's per-bar call. ``--quick`` runs small sizes (a smoke check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from engine.cli.files import load_instruments
from engine.domain import Timeframe
from engine.feeds.synth import SESSION_SECONDS, SyntheticFeed
from engine.models.runtime import Lease, ModelMeta, ModelRuntime
from engine.models.strategy import ModelStrategy
from engine.models.training import INPUT_NAME, export_onnx, onnx_session
from engine.pipeline import SignalPipeline
from engine.settings import Settings
from engine.strategy.api import Risk
from engine.strategy.discovery import create
from engine.strategy.runner import Deployment, StrategyRunner

FEATURES = 8
TARGET = 20.0
#: the 8 features of the pipeline's deployments: what the forest is fed on every closed 1m bar
PIPELINE_FEATURES = ("close", "volume", "ema(9)", "ema(21)", "rsi(14)", "atr(14)", "adx(14)", "obv")


def make_rows(rows: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Features on price-like scales and a noisy label two of them explain."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)) * np.array([1, 10, 100, 0.01, 1, 5, 50, 1000.0])
    score = x[:, 0] + 0.05 * x[:, 1] + rng.normal(0.0, 1.0, rows)
    return x, np.where(score > 0, 1, -1)


def onnx_us(blob: bytes, x: np.ndarray, batch: int) -> float:
    """µs per bar of one onnxruntime ``run`` per micro-batch of ``batch`` rows."""
    session = onnx_session(blob)
    rows = np.ascontiguousarray(x, dtype=np.float32)
    session.run(None, {INPUT_NAME: rows[:batch]})  # first run allocates; not timed
    started = time.process_time()
    for i in range(0, len(rows), batch):
        session.run(None, {INPUT_NAME: rows[i : i + batch]})
    return (time.process_time() - started) / len(rows) * 1e6


def sklearn_us(forest: RandomForestClassifier, x: np.ndarray) -> float:
    """µs per bar of ``predict_proba`` on one row at a time."""
    forest.predict_proba(x[:1])
    started = time.process_time()
    for i in range(len(x)):
        forest.predict_proba(x[i : i + 1])
    return (time.process_time() - started) / len(x) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="training rows (20,000)")
    parser.add_argument("--bars", type=int, default=None, help="bars scored by onnxruntime per batch size (102,400)")
    parser.add_argument("--single-bars", type=int, default=None, help="bars scored in batches of 1 (5,000)")
    parser.add_argument("--sklearn-bars", type=int, default=None, help="bars scored by scikit-learn (500)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    args = parser.parse_args()
    train_rows = args.rows or (2_000 if args.quick else 20_000)
    bars = args.bars or (10_240 if args.quick else 102_400)
    single = args.single_bars or (500 if args.quick else 5_000)
    sk_bars = args.sklearn_bars or (50 if args.quick else 500)

    x, y = make_rows(train_rows + bars)
    forest = RandomForestClassifier(n_estimators=100, random_state=7, n_jobs=1).fit(x[:train_rows], y[:train_rows])
    blob = export_onnx(forest, FEATURES)
    scored = x[train_rows:]
    rows = {
        f"scikit-learn predict_proba, 1 row per call ({sk_bars:,} bars)": sklearn_us(forest, scored[:sk_bars]),
        f"onnxruntime, micro-batches of 1 ({single:,} bars)": onnx_us(blob, scored[:single], 1),
        f"onnxruntime, micro-batches of 64 ({bars:,} bars)": onnx_us(blob, scored, 64),
        f"onnxruntime, micro-batches of 1024 ({bars:,} bars)": onnx_us(blob, scored, 1024),
    }
    peer = next(iter(rows.values()))
    depth = max(e.tree_.max_depth for e in forest.estimators_)
    print(f"RandomForestClassifier: 100 trees (max depth {depth}), {FEATURES} features, fitted on "
          f"{train_rows:,} rows; ONNX model {len(blob):,} bytes; CPU time per bar")
    print(f"  {'':62s} {'µs/bar':>10s} {'vs sklearn':>11s}")
    for name, us in rows.items():
        print(f"  {name:62s} {us:10.2f} {us / peer:10.4f}x")
    best = rows[f"onnxruntime, micro-batches of 1024 ({bars:,} bars)"]
    verdict = "met" if peer / best >= TARGET else "NOT met"
    print(f"  sklearn per bar / onnxruntime(1024)  {peer / best:8.1f}x   (target >= {TARGET:.0f}: {verdict})")
    print()
    pipeline_section(args.quick)


def minute_ticks(sessions: int) -> tuple[list[np.ndarray], int]:
    """Minute history as ticks (one tick per symbol and minute), in feed-sized chunks, from the synthetic feed."""
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    equities = [i for i in registry.instruments if i.kind == "equity"]
    prices = np.array([i.typical_price for i in equities])
    feed = SyntheticFeed(prices, seed=3, start_day=dt.date(2026, 1, 5), ticks_per_market_second=len(equities) / 60)
    chunks = []
    for _ in range(sessions):
        batch = feed.advance(SESSION_SECONDS)
        index = np.array([registry.index[equities[k].symbol] for k in batch.inst.tolist()], dtype=np.int64)
        chunks.append((index, batch.ts_ns, batch.price, batch.qty))
    return chunks, sum(len(c[0]) for c in chunks)


def pipeline_ticks_per_s(blob: bytes, chunks: list, total: int, models: int,
                         threshold: float | None = None) -> tuple[float, int, int]:
    """(ticks/s of CPU time, signals, model runs) of one replay of ``chunks`` with ``models`` model deployments
    (``threshold``: the classifier's minimum probability for a signal; None: a signal on every bar)."""
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    demo = Deployment(create("ema_cross", {}, Risk()), "ema_cross", frozenset({Timeframe.M1}), None, "demo")
    meta = ModelMeta("m1", "owner", "forest", hashlib.sha256(blob).hexdigest(), "CLASSIFICATION", PIPELINE_FEATURES,
                     threshold=threshold)
    runtime = ModelRuntime(meta, blob)
    lessees = [f"lessee-{i}" for i in range(models)]
    leases = [Lease(f"l{i}", "m1", user, dt.date(2020, 1, 1), dt.date(2030, 1, 1)) for i, user in enumerate(lessees)]
    deployments = [demo] + [Deployment(ModelStrategy(meta, runtime, [lease], Risk()), "forest",
                                       frozenset({Timeframe.M1}), None, user, f"row-{i}")
                            for i, (user, lease) in enumerate(zip(lessees, leases))]
    pipeline = SignalPipeline(registry, StrategyRunner(deployments), lateness_s=2.0)
    pipeline.warm_up()
    signals = 0
    started = time.process_time()
    for inst, ts, price, qty in chunks:
        for i in range(0, len(inst), 4096):
            _, step = pipeline.feed(inst[i: i + 4096], ts[i: i + 4096], price[i: i + 4096], qty[i: i + 4096])
            signals += len(step.signals)
    return total / (time.process_time() - started), signals, runtime.runs


def pipeline_section(quick: bool) -> None:
    x, y = make_rows(4_000)
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=7, n_jobs=1).fit(x, y)
    blob = export_onnx(forest, FEATURES)
    chunks, total = minute_ticks(1 if quick else 5)
    base, base_signals, _ = pipeline_ticks_per_s(blob, chunks, total, 0)
    print(f"SignalPipeline, minute history of 50 equities as ticks ({total:,} ticks, every tick closes a 1m bar);"
          " CPU time")
    print(f"  ema_cross only                                            {base:10,.0f} ticks/s  ({base_signals:,} signals)")
    for threshold in (0.9, None):
        rate, signals, runs = pipeline_ticks_per_s(blob, chunks, total, 50, threshold)
        which = "a signal on every bar" if threshold is None else f"min probability {threshold}"
        print(f"  + 50 model deployments (100 trees, 8 features; {which:21s}) {rate:10,.0f} ticks/s  ({signals:,}"
              f" signals, {runs:,} onnxruntime runs)")


if __name__ == "__main__":
    main()
