"""adx_trend: the gate on ADX by hand, crossings on a crafted trend reversal."""

from __future__ import annotations

import numpy as np
import talib

from engine.domain import Bar, Timeframe
from engine.strategy import IndicatorView
from strategies.adx_trend import AdxTrend
from tests.strategies.series import START_NS, bars, crosses, signals

BAR = Bar("TEST", Timeframe.M5, START_NS, 100, 100, 100, 100, 1, 1)


def _view(plus: float, minus: float, adx: float, prev_plus: float, prev_minus: float) -> IndicatorView:
    return IndicatorView.from_values(
        {"plus_di_14": plus, "minus_di_14": minus, "adx_14": adx, "atr_14": 1.0},
        {"plus_di_14": prev_plus, "minus_di_14": prev_minus},
    )


def test_crossings_signal_only_above_the_threshold():
    s = AdxTrend()
    assert [i.signal_type.value for i in s.on_bar(BAR, _view(30, 20, 26, 20, 20))] == ["BUY"]
    assert s.on_bar(BAR, _view(30, 20, 25, 20, 20)) == []  # ADX must be strictly above 25
    assert [i.signal_type.value for i in s.on_bar(BAR, _view(20, 30, 40, 25, 25))] == ["SELL"]
    [buy] = s.on_bar(BAR, _view(30, 20, 50, 20, 20))
    assert buy.confidence == 0.95  # (50 - 25) / 25 = 1: full strength


def test_trend_reversal_buys_once_the_new_trend_is_strong():
    # 40 bars falling by 1 (strong downtrend, -DI above +DI), then 40 bars rising by 1.
    down = [200.0 - k for k in range(40)]
    closes = np.array(down + [down[-1] + k for k in range(1, 41)])
    highs, lows = closes + 0.5, closes - 0.5
    plus, minus, adx = (f(highs, lows, closes, 14) for f in (talib.PLUS_DI, talib.MINUS_DI, talib.ADX))
    up, flip = crosses(plus, minus)
    expected = [(k, "BUY") for k in up if adx[k] > 25] + [(k, "SELL") for k in flip if adx[k] > 25]
    got = signals(AdxTrend(), bars(list(closes), list(highs), list(lows)))
    assert got == sorted(expected)
    assert [t for _, t in got] == ["BUY"] and got[0][0] > 40
