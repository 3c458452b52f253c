"""Tick -> bar aggregation checked against an independent pandas resample, and the rejection rules."""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd
import pytest

from engine.bars import BarAggregator, ClosedBars
from engine.domain import NS_PER_S, Reason, Timeframe
from engine.errors import ConfigError

SYMBOLS = ["ALPHA", "BETA", "GAMMA"]
DAYS = ["2026-01-02", "2026-01-03", "2026-01-05"]  # Friday, Saturday (weekends are accepted), Monday
FREQ = {Timeframe.M1: "1min", Timeframe.M5: "5min", Timeframe.M15: "15min", Timeframe.H1: "1h"}


def ist(text: str) -> int:
    return pd.Timestamp(text, tz="Asia/Kolkata").as_unit("ns").value


def make_ticks(seed: int, per_day: int = 1500) -> pd.DataFrame:
    """Ticks of several symbols over several days, sorted by time, unique times per symbol.

    Includes the session edges (09:15:00.000, 15:14:59.999, 15:15:00, 15:29:59.999)
    and ticks outside the session (before the open, at the close, evening).
    """
    rng = np.random.default_rng(seed)
    frames = []
    for inst, symbol in enumerate(SYMBOLS):
        for day in DAYS:
            start_ms = ist(f"{day}T08:30") // 10**6
            span_ms = (ist(f"{day}T16:30") - ist(f"{day}T08:30")) // 10**6
            ms = rng.choice(span_ms, size=per_day, replace=False) + start_ms
            edges = [ist(f"{day}T{t}") // 10**6 for t in ("09:15", "15:14:59.999", "15:15", "15:29:59.999", "15:30")]
            ms = np.unique(np.concatenate([ms, edges]))
            steps = rng.normal(0, 0.002, len(ms))
            frames.append(pd.DataFrame({
                "inst": inst, "symbol": symbol, "ts_ns": ms * 10**6,
                "price": np.round(1000 * np.exp(np.cumsum(steps)), 2), "qty": rng.integers(0, 500, len(ms)),
            }))  # fmt: skip
    return pd.concat(frames).sort_values("ts_ns", kind="stable").reset_index(drop=True)


def pandas_bars(ticks: pd.DataFrame, tf: Timeframe) -> pd.DataFrame:
    """The reference: tz-database IST times, session filter, pandas resample/groupby."""
    df = ticks.assign(t=pd.to_datetime(ticks.ts_ns, utc=True).dt.tz_convert("Asia/Kolkata"))
    clock = df.t.dt.time
    df = df[(clock >= time(9, 15)) & (clock < time(15, 30))]
    if tf is Timeframe.D1:
        key = df.t.dt.normalize() + pd.Timedelta(hours=9, minutes=15)
    else:
        key = pd.Grouper(key="t", freq=FREQ[tf], offset="15min" if tf is Timeframe.H1 else None)
    grouped = df.groupby(["symbol", key])
    out = grouped.agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
        volume=("qty", "sum"), ticks=("qty", "size"),
    )  # fmt: skip
    out = out[out.ticks > 0].reset_index()
    out.columns = ["symbol", "time", *out.columns[2:]]
    out["open_ns"] = out.time.map(lambda t: t.as_unit("ns").value)
    return out.drop(columns="time").sort_values(["symbol", "open_ns"]).reset_index(drop=True)


def engine_bars(closed: ClosedBars, tf: Timeframe) -> pd.DataFrame:
    sel = closed.select(closed.tf == tf)
    df = pd.DataFrame({
        "symbol": [SYMBOLS[i] for i in sel.inst], "open": sel.open, "high": sel.high, "low": sel.low,
        "close": sel.close, "volume": sel.volume, "ticks": sel.ticks, "open_ns": sel.open_ns,
    })  # fmt: skip
    return df.sort_values(["symbol", "open_ns"]).reset_index(drop=True)


def run(ticks: pd.DataFrame, lateness_s: float = 2.0) -> tuple[np.ndarray, ClosedBars]:
    agg = BarAggregator(len(SYMBOLS), lateness_s)
    status = agg.update(ticks.inst.to_numpy(), ticks.ts_ns.to_numpy(), ticks.price.to_numpy(), ticks.qty.to_numpy())
    during = agg.take_closed()
    agg.flush()
    after = agg.take_closed()
    return status, ClosedBars(*(np.concatenate([getattr(during, f), getattr(after, f)]) for f in ClosedBars.__slots__))


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    return make_ticks(seed=7)


@pytest.mark.parametrize("tf", list(Timeframe), ids=lambda tf: tf.label)
def test_bars_equal_pandas_resample_across_sessions(ticks: pd.DataFrame, tf: Timeframe) -> None:
    status, closed = run(ticks)
    expected = pandas_bars(ticks, tf)
    pd.testing.assert_frame_equal(engine_bars(closed, tf), expected, check_dtype=False)
    assert set(Reason.from_status(s) for s in status[status != 0]) == {Reason.OUT_OF_SESSION}
    assert (status == 0).sum() == expected.ticks.sum()


def test_hourly_bars_open_at_quarter_past_and_the_last_is_short(ticks: pd.DataFrame) -> None:
    _, closed = run(ticks)
    hourly = closed.select(closed.tf == Timeframe.H1)
    opens = sorted({str(pd.Timestamp(t, tz="UTC").tz_convert("Asia/Kolkata").time()) for t in hourly.open_ns})
    assert opens == [f"{h:02d}:15:00" for h in range(9, 16)]
    daily = closed.select(closed.tf == Timeframe.D1)
    assert len(daily) == len(SYMBOLS) * len(DAYS)
    assert {int(t) for t in daily.open_ns} == {ist(f"{d}T09:15") for d in DAYS}


def test_arrival_disorder_within_the_lateness_gives_the_same_bars(ticks: pd.DataFrame) -> None:
    lateness = 2.0
    jitter = np.random.default_rng(3).uniform(0, lateness * NS_PER_S * 0.999, len(ticks))
    shuffled = ticks.iloc[np.argsort(ticks.ts_ns.to_numpy() + jitter, kind="stable")]
    assert not shuffled.ts_ns.is_monotonic_increasing
    status, closed = run(shuffled, lateness)
    assert Reason.LATE.status not in status
    for tf in Timeframe:
        pd.testing.assert_frame_equal(engine_bars(closed, tf), pandas_bars(ticks, tf), check_dtype=False)


def one(agg: BarAggregator, when: str, price: float = 100.0, qty: float = 1.0, inst: int = 0) -> str:
    """Feed one tick; return its status as a reason code, or 'ok'."""
    status = agg.update(np.array([inst]), np.array([ist(when)]), np.array([price]), np.array([qty]))[0]
    return "ok" if status == 0 else Reason.from_status(int(status)).value


def test_late_and_within_lateness() -> None:
    agg = BarAggregator(1, lateness_s=2.0)
    assert one(agg, "2026-01-05T09:15:30") == "ok"
    assert one(agg, "2026-01-05T09:16:01", price=101) == "ok"  # 1m 09:15 stays open for 2 s more
    assert not len(agg.take_closed())
    assert one(agg, "2026-01-05T09:15:59.5", price=105, qty=4) == "ok"  # updates the still-open 09:15 bar
    assert one(agg, "2026-01-05T09:15:58.9") == "late"  # more than 2 s before 09:16:01
    assert one(agg, "2026-01-05T09:16:02", price=102) == "ok"  # now 09:15 ends <= 09:16:02 - 2 s
    bars = agg.take_closed()
    assert len(bars) == 1 and bars.tf[0] == Timeframe.M1
    assert (bars.open[0], bars.high[0], bars.close[0], bars.volume[0], bars.ticks[0]) == (100, 105, 105, 5, 2)
    assert one(agg, "2026-01-05T09:15:59.9") == "late"  # its bar has closed: late, never reopened


def test_zero_lateness_closes_on_the_first_tick_of_the_next_bar() -> None:
    agg = BarAggregator(1, lateness_s=0)
    one(agg, "2026-01-05T09:15:10")
    one(agg, "2026-01-05T09:16:00")
    assert agg.take_closed().open_ns.tolist() == [ist("2026-01-05T09:15")]
    assert one(agg, "2026-01-05T09:15:59.999") == "late"


@pytest.mark.parametrize(
    ("price", "qty", "when", "reason"),
    [
        (float("nan"), 1, "2026-01-05T10:00", "bad_price"),
        (float("inf"), 1, "2026-01-05T10:00", "bad_price"),
        (0.0, 1, "2026-01-05T10:00", "bad_price"),
        (-5.0, 1, "2026-01-05T10:00", "bad_price"),
        (2e9, 1, "2026-01-05T10:00", "bad_price"),
        (100.0, 1e13, "2026-01-05T10:00", "bad_qty"),
        (100.0, -1, "2026-01-05T10:00", "bad_qty"),
        (100.0, float("nan"), "2026-01-05T10:00", "bad_qty"),
        (100.0, 1, "2026-01-05T09:14:59.999", "out_of_session"),
        (100.0, 1, "2026-01-05T15:30", "out_of_session"),
        (100.0, 1, "2026-01-06T02:00", "out_of_session"),
    ],
)
def test_bad_ticks_are_rejected_and_change_nothing(price: float, qty: float, when: str, reason: str) -> None:
    agg = BarAggregator(1)
    one(agg, "2026-01-05T09:30")
    assert one(agg, when, price, qty) == reason
    assert one(agg, "2026-01-05T09:31") == "ok"  # a rejected tick never advanced the clock
    agg.flush()
    bars = agg.take_closed()
    assert bars.ticks.sum() == 2 * len(Timeframe) and set(bars.high) == {100.0}


def test_watermark_closes_due_bars_and_makes_older_ticks_late() -> None:
    agg = BarAggregator(2, lateness_s=2.0)
    one(agg, "2026-01-05T09:15:10", inst=0)
    one(agg, "2026-01-05T09:17:30", inst=1)
    agg.advance_watermark(ist("2026-01-05T09:16:01.999"))
    assert not len(agg.take_closed())
    agg.advance_watermark(ist("2026-01-05T09:16:02"))
    closed = agg.take_closed()
    assert (closed.inst.tolist(), closed.tf.tolist()) == ([0], [Timeframe.M1])
    assert one(agg, "2026-01-05T09:15:59.999", inst=0) == "late"
    agg.advance_watermark(ist("2026-01-05T09:10"))  # going back changes nothing
    assert not len(agg.take_closed())


def test_watermark_can_target_some_instruments() -> None:
    agg = BarAggregator(2)
    one(agg, "2026-01-05T09:15:10", inst=0)
    one(agg, "2026-01-05T09:15:10", inst=1)
    agg.advance_watermark(ist("2026-01-05T16:00"), np.array([1]))
    closed = agg.take_closed()
    assert set(closed.inst.tolist()) == {1} and sorted(closed.tf.tolist()) == list(range(len(Timeframe)))


def test_flush_closes_everything_and_flushed_bars_never_reopen() -> None:
    agg = BarAggregator(1)
    one(agg, "2026-01-05T15:29:59")
    agg.flush()
    closed = agg.take_closed()
    assert sorted(closed.tf.tolist()) == list(range(len(Timeframe)))
    hourly = closed.select(closed.tf == Timeframe.H1)
    assert hourly.open_ns.tolist() == [ist("2026-01-05T15:15")]
    assert one(agg, "2026-01-05T15:29:59.5") == "late"
    assert one(agg, "2026-01-06T09:15") == "ok"  # the next session is fine
    agg.flush()
    agg.flush()
    assert len(agg.take_closed()) == len(Timeframe)


def test_series_index_and_columns() -> None:
    agg = BarAggregator(3)
    one(agg, "2026-01-05T09:15", inst=2)
    agg.flush()
    closed = agg.take_closed()
    assert closed.series.tolist() == [2 * len(Timeframe) + tf for tf in range(len(Timeframe))]
    assert closed.inst.dtype == np.int32 and closed.tf.dtype == np.int8 and closed.open_ns.dtype == np.int64
    bar = closed.to_bars(["X", "Y", "Z"])[0]
    assert (bar.symbol, bar.timeframe, bar.time.isoformat()) == ("Z", Timeframe.M1, "2026-01-05T09:15:00+05:30")


def test_grow_adds_empty_instruments() -> None:
    agg = BarAggregator(1)
    one(agg, "2026-01-05T09:15")
    agg.grow(3)
    assert one(agg, "2026-01-05T09:15", inst=2) == "ok"
    agg.flush()
    assert sorted(set(agg.take_closed().inst.tolist())) == [0, 2]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="lateness"):
        BarAggregator(1, lateness_s=60)
    agg = BarAggregator(2)
    with pytest.raises(ValueError, match="out of range"):
        agg.update(np.array([2]), np.array([ist("2026-01-05T10:00")]), np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="same length"):
        agg.update(np.array([0, 1]), np.array([1]), np.array([1.0]), np.array([1.0]))
