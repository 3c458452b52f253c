"""The pure SignalPipeline: batch splits do not matter, checkpoints are exact, clear forgets a partition."""

from __future__ import annotations

import struct
from datetime import datetime

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.feeds.synth import IST, SyntheticFeed, latest_session_day
from engine.instruments import InstrumentRegistry
from engine.outputs import signal_message
from tests.streams.support import STAMP
from engine.pipeline import SignalPipeline
from engine.strategy.discovery import create
from engine.strategy.runner import Deployment, StrategyRunner
from engine.domain import Timeframe

SYMBOLS = ("RELIANCE", "TCS", "INFY")
REGISTRY = InstrumentRegistry.from_symbols(SYMBOLS)


def _ticks(minutes: float = 240, seed: int = 3):
    today = latest_session_day(datetime.now(IST))
    feed = SyntheticFeed(np.array([2900.0, 3500.0, 1500.0]), start_day=today, seed=seed, ticks_per_market_second=2.0)
    return feed.advance(minutes * 60)


TICKS = _ticks()


def _pipeline() -> SignalPipeline:
    deployments = [
        Deployment(create("ema_cross", {}), "ema_cross", frozenset({Timeframe.M1, Timeframe.M5}), user_id="u1"),
        Deployment(create("rsi_reversion", {}), "rsi_reversion", frozenset({Timeframe.M1}), user_id="u2"),
    ]
    return SignalPipeline(REGISTRY, StrategyRunner(deployments), lateness_s=1.0)


def _run(cuts: list[int], pipeline: SignalPipeline | None = None, start: int = 0, stop: int | None = None):
    pipeline = pipeline or _pipeline()
    stop = len(TICKS) if stop is None else stop
    edges = sorted({start, stop, *[c for c in cuts if start < c < stop]})
    bars, signals, statuses = [], [], []
    for a, b in zip(edges, edges[1:]):
        status, step = pipeline.feed(TICKS.inst[a:b], TICKS.ts_ns[a:b], TICKS.price[a:b], TICKS.qty[a:b])
        statuses.append(status)
        bars += [(b_.symbol, b_.timeframe, b_.open_ns, b_.close) for b_ in step.bars]
        signals += [signal_message(s, STAMP)["id"] for s in step.signals]
    return bars, signals, np.concatenate(statuses) if statuses else np.empty(0), pipeline


BASELINE = _run([])


def test_the_reference_run_produces_bars_and_signals():
    bars, signals, status, _ = BASELINE
    assert len(bars) > 500 and len(signals) > 10
    assert not status.any()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(TICKS)), max_size=40))
def test_any_split_into_batches_gives_the_same_outputs(cuts):
    bars, signals, status, _ = _run(cuts)
    assert (bars, signals) == BASELINE[:2]
    assert np.array_equal(status, BASELINE[2])


@settings(max_examples=10, deadline=None)
@given(st.integers(1, len(TICKS) - 1))
def test_snapshot_restore_mid_stream_equals_uninterrupted(cut):
    first_bars, first_signals, _, before = _run([], stop=cut)
    all_inst = np.arange(len(REGISTRY))
    blob = before.snapshot(all_inst)
    after = _pipeline()
    after.restore(all_inst, blob)
    rest_bars, rest_signals, _, _ = _run([], pipeline=after, start=cut)
    assert (first_bars + rest_bars, first_signals + rest_signals) == BASELINE[:2]


def test_clear_forgets_only_the_given_instruments():
    _, _, _, pipeline = _run([], stop=len(TICKS) // 2)
    inst = np.array([1])
    pipeline.clear(inst)
    fresh = _pipeline()
    assert _state(pipeline, inst) == _state(fresh, inst)
    assert _state(pipeline, np.array([0])) != _state(fresh, np.array([0]))


def _state(pipeline: SignalPipeline, inst: np.ndarray) -> tuple[bytes, dict]:
    """Bar and indicator bytes, and the runner's state without its column layout (a fresh runner has none yet)."""
    head = struct.calcsize("<8sQQQ")
    _, n_bars, n_ind, _ = struct.unpack_from("<8sQQQ", blob := pipeline.snapshot(inst))
    runner = orjson.loads(blob[head + n_bars + n_ind :])
    runner.pop("columns")
    return blob[head : head + n_bars + n_ind], runner
