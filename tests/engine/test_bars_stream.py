"""Streaming invariants of the bar aggregator: any batch split equals one batch; snapshot/restore
then continuing equals never stopping; every accepted tick is in exactly one bar per timeframe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine.bars import BarAggregator, ClosedBars
from engine.domain import NS_PER_S, N_TIMEFRAMES
from engine.errors import Inconsistency

N_INST = 3
# Near bar and session boundaries: 09:14..09:17, 10:14..10:16, 15:13..15:31 IST on two days.
WINDOWS = [
    pd.Timestamp(f"2026-01-0{d}T{t}", tz="Asia/Kolkata").as_unit("ns").value
    for d in (5, 6) for t in ("09:14:30", "10:14:50", "15:14:40", "15:29:40")
]  # fmt: skip

tick = st.tuples(
    st.integers(0, N_INST - 1),
    st.sampled_from(WINDOWS),
    st.integers(0, 90_000),  # ms into the window
    st.one_of(st.floats(1, 1000), st.sampled_from([0.0, -1.0, float("nan"), float("inf")])),
    st.one_of(st.integers(0, 100).map(float), st.sampled_from([-1.0, float("nan")])),
)


def columns(ticks: list[tuple]) -> tuple[np.ndarray, ...]:
    """Arrival order: by window, with each tick's ms offset; hypothesis permutes within a window."""
    inst = np.array([t[0] for t in ticks], dtype=np.int64)
    ts = np.array([t[1] + t[2] * 1_000_000 for t in ticks], dtype=np.int64)
    price = np.array([t[3] for t in ticks])
    qty = np.array([t[4] for t in ticks])
    return inst, ts, price, qty


def concat(parts: list[ClosedBars]) -> ClosedBars:
    return ClosedBars(*(np.concatenate([getattr(p, f) for p in parts]) for f in ClosedBars.__slots__))


def same(a: ClosedBars, b: ClosedBars) -> None:
    for f in ClosedBars.__slots__:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def run_split(cols: tuple[np.ndarray, ...], cuts: list[int], lateness: float, capacity: int,
              watermarks: dict[int, int] | None = None) -> tuple[np.ndarray, ClosedBars]:  # fmt: skip
    """Feed the ticks in batches ending at ``cuts``; optional watermark after some batches; then flush."""
    agg = BarAggregator(N_INST, lateness, capacity=capacity)
    bounds = [0, *sorted(set(cuts)), len(cols[0])]
    statuses, closed = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        statuses.append(agg.update(*(c[lo:hi] for c in cols)))
        if watermarks and hi in watermarks:
            agg.advance_watermark(watermarks[hi])
        closed.append(agg.take_closed())
    agg.flush()
    closed.append(agg.take_closed())
    return np.concatenate(statuses), concat(closed)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(tick, max_size=120),
    st.lists(st.integers(0, 120), max_size=8),
    st.sampled_from([0.0, 0.5, 2.0, 30.0]),
    st.integers(1, 64),
)
def test_any_batch_split_equals_one_batch(ticks: list[tuple], cuts: list[int], lateness: float, capacity: int) -> None:
    cols = columns(ticks)
    cuts = [c for c in cuts if c <= len(ticks)]
    whole_status, whole = run_split(cols, [], lateness, capacity=4096)
    split_status, split = run_split(cols, cuts, lateness, capacity)
    np.testing.assert_array_equal(whole_status, split_status)
    same(whole, split)
    conserved(cols, whole_status, whole)


def conserved(cols: tuple[np.ndarray, ...], status: np.ndarray, closed: ClosedBars) -> None:
    """Each accepted tick is in exactly one bar of every timeframe; bars of a series leave in time order."""
    ok = status == 0
    for tf in range(N_TIMEFRAMES):
        bars = closed.select(closed.tf == tf)
        assert bars.ticks.sum() == ok.sum()
        assert bars.volume.sum() == pytest.approx(cols[3][ok].sum())
        for i in range(N_INST):
            opens = bars.open_ns[bars.inst == i]
            assert (np.diff(opens) > 0).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(tick, min_size=1, max_size=80), st.data())
def test_watermarks_in_the_stream_keep_split_invariance(ticks: list[tuple], data: st.DataObject) -> None:
    cols = columns(ticks)
    cut = data.draw(st.integers(0, len(ticks)))
    wm = int(cols[1][:cut].max()) if cut else WINDOWS[0]
    mark = {cut: wm + data.draw(st.integers(0, 120)) * NS_PER_S}
    whole_status, whole = run_split(cols, [cut], 2.0, 4096, mark)
    split_status, split = run_split(cols, [cut, *data.draw(st.lists(st.integers(0, len(ticks))))], 2.0, 16, mark)
    np.testing.assert_array_equal(whole_status, split_status)
    same(whole, split)
    conserved(cols, whole_status, whole)


@settings(max_examples=60, deadline=None)
@given(st.lists(tick, max_size=100), st.data())
def test_snapshot_restore_then_continue_equals_uninterrupted(ticks: list[tuple], data: st.DataObject) -> None:
    cols = columns(ticks)
    cut = data.draw(st.integers(0, len(ticks)))
    status, expected = run_split(cols, [cut], 2.0, 4096)

    first = BarAggregator(N_INST, 2.0)
    s1 = first.update(*(c[:cut] for c in cols))
    before = first.take_closed()
    everyone = np.arange(N_INST)
    blob = first.snapshot(everyone)
    del first
    second = BarAggregator(N_INST, 2.0)
    second.restore(everyone, blob)
    s2 = second.update(*(c[cut:] for c in cols))
    second.flush()
    np.testing.assert_array_equal(np.concatenate([s1, s2]), status)
    same(concat([before, second.take_closed()]), expected)


def test_snapshot_of_some_instruments_restores_into_those_rows() -> None:
    ts = WINDOWS[0] + 60 * NS_PER_S
    agg = BarAggregator(N_INST)
    agg.update(np.array([0, 2]), np.array([ts, ts]), np.array([10.0, 20.0]), np.array([1.0, 2.0]))
    blob = agg.snapshot(np.array([2]))
    other = BarAggregator(N_INST)
    other.restore(np.array([2]), blob)
    other.flush()
    closed = other.take_closed()
    assert set(closed.inst.tolist()) == {2} and set(closed.close.tolist()) == {20.0}
    agg.clear(np.array([2]))
    agg.flush()
    assert set(agg.take_closed().inst.tolist()) == {0}


def test_bad_snapshots_are_refused() -> None:
    agg = BarAggregator(N_INST)
    blob = agg.snapshot(np.array([0, 1]))
    with pytest.raises(Inconsistency, match="does not fit"):
        agg.restore(np.array([0]), blob)
    with pytest.raises(Inconsistency, match="truncated"):
        agg.restore(np.array([0, 1]), blob[:10])
    with pytest.raises(Inconsistency, match="bytes"):
        agg.restore(np.array([0, 1]), blob[:-8])
    with pytest.raises(Inconsistency, match="does not fit"):
        agg.restore(np.array([0, 1]), b"PICKLE!!" + blob[8:])
    ts = WINDOWS[0] + 60 * NS_PER_S
    agg.update(np.array([0, 0]), np.array([ts, ts + 120 * NS_PER_S]), np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(Inconsistency, match="take_closed"):
        agg.snapshot(np.array([0]))
