"""Crafted bar series for the built-in strategy tests, run through the production replay path."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.domain import NS_PER_MIN, Bar, Timeframe
from engine.strategy import Deployment, EmittedSignal, Strategy, StrategyRunner
from engine.strategy.backtest import replay_bars

#: 2026-01-05 09:15 IST
START_NS = 1_767_584_700_000_000_000


def bars(closes: Sequence[float], highs: Sequence[float] | None = None, lows: Sequence[float] | None = None,
         symbol: str = "TEST") -> list[Bar]:  # fmt: skip
    """5-minute bars with these closes (open = close; high/low default to the close)."""
    highs = closes if highs is None else highs
    lows = closes if lows is None else lows
    return [
        Bar(symbol, Timeframe.M5, START_NS + k * 5 * NS_PER_MIN, c, h, lo, c, 1000.0, 1)
        for k, (c, h, lo) in enumerate(zip(closes, highs, lows))
    ]


def emitted(strategy: Strategy, series: Sequence[Bar]) -> list[EmittedSignal]:
    """The signals of ``strategy`` over ``series`` through the real indicators and runner."""
    runner = StrategyRunner([Deployment(strategy, strategy.name, frozenset({Timeframe.M5}))])
    out = replay_bars(runner, series)
    assert runner.take_failures() == []
    return out


def signals(strategy: Strategy, series: Sequence[Bar]) -> list[tuple[int, str]]:
    """``(bar index, signal type)`` of every signal."""
    index = {b.open_ns: k for k, b in enumerate(series)}
    return [(index[s.bar.open_ns], str(s.intent.signal_type)) for s in emitted(strategy, series)]


def crosses(left: np.ndarray, right: np.ndarray) -> tuple[list[int], list[int]]:
    """Independent reference: indices where ``left`` crosses above / below ``right`` (NaN never crosses)."""
    up = [k for k in range(1, len(left)) if left[k - 1] <= right[k - 1] and left[k] > right[k]]
    down = [k for k in range(1, len(left)) if left[k - 1] >= right[k - 1] and left[k] < right[k]]
    return up, down


def merged(up: list[int], down: list[int], up_type: str = "BUY", down_type: str = "SELL") -> list[tuple[int, str]]:
    return sorted([(k, up_type) for k in up] + [(k, down_type) for k in down])
