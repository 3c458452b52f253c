"""Incremental updates: any micro-batching, any interleaving, any checkpoint gives one answer."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.indicators import DEFAULT_SPECS, IndicatorSet
from tests.engine.indicators.series import Bars, random_walk

#: every family, so that each kernel's state is exercised across batch boundaries
SPECS = (*DEFAULT_SPECS, "wma(3)", "macd(5,35,1)", "bbands(5,1.5,2.5)", "stddev(4,2)", "atr(1)",
         "stoch(1,1,1)", "highest(5)", "lowest(5)", "highest_high(7)", "lowest_low(1)")
BARS = 400


@functools.cache
def instruments() -> tuple[Bars, ...]:
    """Three short series: WMA's re-anchoring (every 8n bars) and the variance's fire inside."""
    return (random_walk(BARS, seed=11), random_walk(BARS, seed=12, scale=3.0, tick=0.01),
            random_walk(BARS, seed=13, scale=1e5))


def feed(iset: IndicatorSet, inst: np.ndarray, rows: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Feed bars (instrument ``inst[k]``, its bar ``rows[k]``) in batches of ``sizes`` (cycled)."""
    out, start, k = [np.empty((0, len(iset.columns)))], 0, 0
    while start < len(inst):
        stop = min(len(inst), start + sizes[k % len(sizes)])
        series = [instruments()[i] for i in inst[start:stop]]
        cols = [np.array([getattr(s, f)[r] for s, r in zip(series, rows[start:stop])])
                for f in ("open", "high", "low", "close", "volume")]
        out.append(iset.update(inst[start:stop], *cols))
        start, k = stop, k + 1
    return np.concatenate(out)


def alone(i: int) -> np.ndarray:
    """Instrument ``i`` fed on its own, one call."""
    s = instruments()[i]
    return IndicatorSet(SPECS, 1).update(np.zeros(BARS, np.int64), s.open, s.high, s.low, s.close, s.volume)


@functools.cache
def alone_all() -> tuple[np.ndarray, ...]:
    return tuple(alone(i) for i in range(3))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 97), min_size=1, max_size=8))
def test_any_micro_batching_equals_one_batch(sizes: list[int]) -> None:
    rows = np.arange(BARS)
    got = feed(IndicatorSet(SPECS, 3), np.zeros(BARS, np.int64), rows, sizes)
    assert same(got, alone_all()[0])


@settings(max_examples=25, deadline=None)
@given(order=st.permutations([0, 1, 2] * BARS), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4))
def test_interleaved_instruments_equal_each_alone(order: list[int], sizes: list[int]) -> None:
    inst = np.array(order, dtype=np.int64)
    rows = np.zeros_like(inst)
    for i in range(3):
        rows[inst == i] = np.arange(BARS)  # each instrument's bars stay in time order
    got = feed(IndicatorSet(SPECS, 3), inst, rows, sizes)
    for i in range(3):
        assert same(got[inst == i], alone_all()[i])


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(0, BARS), target=st.integers(0, 4))
def test_snapshot_restore_then_continue_equals_uninterrupted(cut: int, target: int) -> None:
    rows = np.arange(BARS)
    first = IndicatorSet(SPECS, 3)
    head = feed(first, np.zeros(cut, np.int64), rows[:cut], [64])
    blob = first.snapshot(np.array([0]))
    second = IndicatorSet(SPECS, 5)  # a fresh process, another slot
    second.restore(np.array([target]), blob)
    tail = feed_into_slot(second, target, rows[cut:])
    assert same(np.concatenate([head, tail]), alone_all()[0])


def feed_into_slot(iset: IndicatorSet, slot: int, rows: np.ndarray) -> np.ndarray:
    s = instruments()[0]
    inst = np.full(len(rows), slot, dtype=np.int64)
    return iset.update(inst, s.open[rows], s.high[rows], s.low[rows], s.close[rows], s.volume[rows])


def test_reset_forgets_one_instrument_only() -> None:
    iset = IndicatorSet(SPECS, 3)
    rows = np.arange(BARS)
    feed(iset, np.zeros(BARS, np.int64), rows, [BARS])
    feed(iset, np.ones(BARS, np.int64), rows, [BARS])
    iset.reset(0)
    assert same(feed_into_slot(iset, 0, rows), alone_all()[0])
    assert iset.snapshot(1) != IndicatorSet(SPECS, 3).snapshot(1)  # instrument 1 kept its state


def test_state_is_fixed_size_whatever_the_history() -> None:
    iset = IndicatorSet(SPECS, 2)
    size = len(iset.snapshot(np.array([0, 1])))
    feed(iset, np.zeros(BARS, np.int64), np.arange(BARS), [BARS])
    assert len(iset.snapshot(np.array([0, 1]))) == size
    assert iset.state_bytes_per_instrument * 2 < size <= iset.state_bytes_per_instrument * 2 + 64
