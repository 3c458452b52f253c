"""The runner: isolation of misbehaving strategies, previous rows per series, checkpoints."""

from __future__ import annotations

import math
import socket
import subprocess
import time

import numpy as np
import pytest

from engine.domain import NS_PER_MIN, Bar, Timeframe
from engine.errors import ConfigError
from engine.strategy import (
    Deployment,
    FailureKind,
    IndicatorView,
    SignalIntent,
    SignalType,
    Strategy,
    StrategyRunner,
)

START = 1_767_584_700_000_000_000
COLUMNS = ("x",)


def _bars(symbol: str, n: int, tf: Timeframe = Timeframe.M5) -> list[Bar]:
    return [Bar(symbol, tf, START + k * 5 * NS_PER_MIN, 10.0, 11.0, 9.0, 10.0 + k, 100.0, 3) for k in range(n)]


class Echo(Strategy):
    """BUY every bar; remembers what it saw of ``x`` and of the previous bar."""

    name = "echo"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[tuple[str, float, float]] = []

    def indicators(self) -> list[str]:
        return ["ema(3)"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        self.seen.append((bar.symbol, ind["x"], ind.prev("x")))
        return [SignalIntent(SignalType.BUY, 0.5, bar.close)]


class Raises(Echo):
    name = "raises"

    def on_bar(self, bar, ind):
        raise ZeroDivisionError("boom")


class Garbage(Echo):
    name = "garbage"

    def __init__(self, result, **kw):
        super().__init__(**kw)
        self.result = result

    def on_bar(self, bar, ind):
        return self.result


class Slow(Echo):
    name = "slow"

    def on_bar(self, bar, ind):
        time.sleep(0.03)
        return super().on_bar(bar, ind)


class Exits(Echo):
    name = "exits"

    def on_bar(self, bar, ind):
        raise SystemExit(3)


def _deploy(strategy: Strategy, key: str, **kw) -> Deployment:
    return Deployment(strategy, key, frozenset({Timeframe.M5}), user_id="u1", strategy_id=key, **kw)


def _run(runner: StrategyRunner, bars: list[Bar]):
    rows = np.arange(len(bars), dtype=np.float64).reshape(-1, 1)
    return runner.on_bars(bars, rows, COLUMNS)


def test_previous_row_is_per_series_and_prices_are_in_the_view():
    echo = Echo()
    runner = StrategyRunner([_deploy(echo, "e")])
    bars = [b for pair in zip(_bars("A", 3), _bars("B", 3)) for b in pair]
    _run(runner, bars)
    xs = [(s, x, p) for s, x, p in echo.seen]
    assert xs[:2] == [("A", 0.0, pytest.approx(math.nan, nan_ok=True)), ("B", 1.0, pytest.approx(math.nan, nan_ok=True))]
    assert xs[2:] == [("A", 2.0, 0.0), ("B", 3.0, 1.0), ("A", 4.0, 2.0), ("B", 5.0, 3.0)]
    view_close = []

    class Close(Echo):
        def on_bar(self, bar, ind):
            view_close.append((ind["close"], ind.prev("close"), ind["volume"]))
            return []

    runner.add(_deploy(Close(), "c"))
    _run(runner, _bars("A", 4)[3:])
    assert view_close == [(13.0, 12.0, 100.0)]


@pytest.mark.parametrize(
    ("bad", "kind", "detail"),
    [
        (Raises(), FailureKind.ERROR, "ZeroDivisionError: boom"),
        (Exits(), FailureKind.ERROR, "SystemExit"),
        (Garbage(None), FailureKind.GARBAGE, "must return a list"),
        (Garbage([1]), FailureKind.GARBAGE, "not a SignalIntent"),
        (Garbage([SignalIntent(SignalType.BUY, 1.5, 10.0)]), FailureKind.GARBAGE, "confidence 1.5"),
        (Garbage([SignalIntent(SignalType.BUY, 0.5, math.nan)]), FailureKind.GARBAGE, "entry nan"),
        (Garbage([SignalIntent(SignalType.BUY, 0.5, 10.0, stop_loss=-1.0)]), FailureKind.GARBAGE, "stop_loss -1.0"),
        (Garbage([SignalIntent("BUY", 0.5, 10.0)]), FailureKind.GARBAGE, "not a SignalType"),  # type: ignore[arg-type]
    ],
)
def test_a_failing_strategy_is_counted_reported_disabled_and_never_disturbs_the_others(bad, kind, detail):
    good = Echo()
    runner = StrategyRunner([_deploy(bad, "bad"), _deploy(good, "good")], max_failures=3)
    signals = _run(runner, _bars("A", 5))
    assert [s.strategy_name for s in signals] == ["good"] * 5
    failures = runner.take_failures()
    assert [f.kind for f in failures] == [kind] * 3
    assert detail in failures[0].detail
    assert [f.failures for f in failures] == [1, 2, 3]
    assert [f.disabled for f in failures] == [False, False, True]
    assert failures[0].user_id == "u1" and failures[0].strategy_id == "bad" and failures[0].symbol == "A"
    assert "disabled" in failures[2].message
    assert runner.take_failures() == []
    assert {s["key"]: s["disabled"] for s in runner.status()} == {"u1/bad": True, "u1/good": False}


def test_a_slow_call_is_a_failure_but_its_valid_signals_stand():
    runner = StrategyRunner([_deploy(Slow(), "slow")], max_failures=2, budget_ms=5)
    signals = _run(runner, _bars("A", 3))
    assert len(signals) == 2  # the second slow call disables it
    assert [f.kind for f in runner.take_failures()] == [FailureKind.SLOW] * 2


class Dials(Echo):
    name = "dials"

    def on_bar(self, bar, ind):
        with socket.socket() as sock:
            sock.connect(("127.0.0.1", 9))
        return []


class Spawns(Echo):
    name = "spawns"

    def on_bar(self, bar, ind):
        subprocess.run(["true"], check=False)
        return []


class Writes(Echo):
    name = "writes"

    def on_bar(self, bar, ind):
        try:
            open("/tmp/sharewise-strategy-io-test", "w").close()  # noqa: SIM115
        except Exception:  # noqa: BLE001 - a strategy hiding the refusal is still caught
            pass
        return [SignalIntent(SignalType.BUY, 0.5, bar.close)]


@pytest.mark.parametrize(("strategy", "event"), [(Dials(), "socket."), (Spawns(), "subprocess.Popen"), (Writes(), "open")])
def test_io_inside_on_bar_is_refused_and_reported(strategy, event, tmp_path):
    runner = StrategyRunner([_deploy(strategy, "io")])
    assert _run(runner, _bars("A", 1)) == []
    [failure] = runner.take_failures()
    assert failure.kind is FailureKind.IO
    assert event in failure.detail


def test_io_outside_strategies_is_untouched(tmp_path):
    runner = StrategyRunner([_deploy(Writes(), "io")])
    _run(runner, _bars("A", 1))
    (tmp_path / "ok").write_text("still allowed")
    assert (tmp_path / "ok").read_text() == "still allowed"


def test_deployments_filter_symbols_and_timeframes():
    a = Echo()
    runner = StrategyRunner([_deploy(a, "a", symbols=frozenset({"B"}))])
    _run(runner, _bars("A", 2) + _bars("B", 2) + _bars("B", 1, Timeframe.M1))
    assert [s for s, _, _ in a.seen] == ["B", "B"]


def test_indicator_specs_are_the_union_with_the_risk_atr():
    runner = StrategyRunner([_deploy(Echo(), "a"), _deploy(Echo(), "b")])
    assert runner.indicator_specs() == ["ema(3)", "atr(14)"]


class Counter(Strategy):
    """Counts bars per series in series_state and in total in save_state."""

    name = "counter"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.total = 0

    def indicators(self):
        return []

    def on_bar(self, bar, ind):
        state = self.series_state(bar)
        state["n"] = state.get("n", 0) + 1
        self.total += 1
        if state["n"] % 3 == 0 and ind.prev("x") >= 0:
            return [SignalIntent(SignalType.SELL, 0.6, bar.close, note=f"{state['n']}")]
        return []

    def save_state(self):
        return {"total": self.total}

    def load_state(self, state):
        self.total = state.get("total", 0)


def _signals(emitted):
    return [(s.bar.symbol, s.bar.open_ns, s.intent.note) for s in emitted]


def test_snapshot_per_partition_then_restore_equals_an_uninterrupted_run():
    bars = [b for pair in zip(_bars("A", 10), _bars("B", 10)) for b in pair]
    whole = StrategyRunner([_deploy(Counter(), "c")])
    expected = _signals(_run(whole, bars))

    first = StrategyRunner([_deploy(Counter(), "c")])
    _run(first, bars[:9])
    part_a, part_b = first.snapshot(["A"]), first.snapshot(["B"])
    second = StrategyRunner([_deploy(Counter(), "c")])
    second.restore(part_a)
    second.restore(part_b)
    rest = _signals(_run(second, bars[9:]))
    assert _signals(_run(StrategyRunner([_deploy(Counter(), "c")]), bars[:9])) + rest == expected


def test_forget_drops_a_partitions_series():
    runner = StrategyRunner([_deploy(Counter(), "c")])
    _run(runner, _bars("A", 2) + _bars("B", 2))
    runner.forget(["A"])
    blob = runner.snapshot()
    assert b'"A|5m"' not in blob and b'"B|5m"' in blob


def test_restore_rejects_what_is_not_a_snapshot_and_remaps_columns():
    runner = StrategyRunner([_deploy(Echo(), "e")])
    with pytest.raises(ConfigError):
        runner.restore(b"not json")
    with pytest.raises(ConfigError):
        runner.restore(b'{"format": 99}')
    _run(runner, _bars("A", 1))
    blob = runner.snapshot()
    echo = Echo()
    other = StrategyRunner([_deploy(echo, "e")])
    other.restore(blob)
    other.on_bars(_bars("A", 2)[1:], np.array([[7.0, 8.0]]), ("y", "x"))
    assert echo.seen == [("A", 8.0, 0.0)]


def test_a_failing_on_start_disables_at_once():
    class BadStart(Echo):
        def on_start(self):
            raise RuntimeError("no")

    runner = StrategyRunner([_deploy(BadStart(), "s")])
    [failure] = runner.take_failures()
    assert failure.disabled and "on_start raised RuntimeError: no" in failure.detail
    assert _run(runner, _bars("A", 2)) == []


def test_a_signal_carries_the_indicator_values_its_strategy_read_at_the_decision():
    class Reads(Echo):
        def indicators(self):
            return ["ema(3)", "macd(12,26,9)"]

        def on_bar(self, bar, ind):
            return [SignalIntent(SignalType.BUY, 0.5, bar.close, market_data={"note": "mine"})]

    columns = ("ema_3", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9", "atr_14", "sma_50")
    runner = StrategyRunner([_deploy(Reads(), "r")])
    bars = _bars("A", 2)
    rows = np.array([[1.5, 0.25, 0.5, -0.25, 2.0, 9.0], [1.75, math.nan, 0.5, -0.5, 2.5, 9.0]])
    first, second = runner.on_bars(bars, rows, columns)
    read = {"ema_3": 1.5, "macd_12_26_9": 0.25, "macd_signal_12_26_9": 0.5, "macd_hist_12_26_9": -0.25, "atr_14": 2.0}
    assert first.intent.market_data == {"note": "mine", "indicators": read}  # sma_50 was not asked for
    assert second.intent.market_data["indicators"]["macd_12_26_9"] is None  # unknown yet: null, never NaN
