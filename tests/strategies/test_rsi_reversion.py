"""rsi_reversion on crafted series whose RSI crossings follow from Wilder's smoothing by hand."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.strategy import IndicatorView
from strategies.rsi_reversion import RsiReversion
from tests.strategies.series import START_NS, bars, crosses, merged, signals


def test_leaving_overbought_sells_and_leaving_oversold_buys():
    # 21 bars rising by 1 (RSI 100), 30 falling by 10, then one jump of +100 and a flat tail.
    # First fall (bar 21): avg gain 13/14, avg loss 10/14 -> RSI = 100*13/23 = 56.5 < 70: SELL.
    # After 30 falls RSI is ~1; the jump (bar 51) gives avg gain ~100/14 vs loss ~130/14: RSI ~43 > 30: BUY.
    closes = [1000.0 + k for k in range(21)] + [1020.0 - 10 * k for k in range(1, 31)]
    closes += [closes[-1] + 100.0] * 10
    assert signals(RsiReversion(), bars(closes)) == [(21, "SELL"), (51, "BUY")]


def test_random_walk_matches_a_reference_on_talib_rsi():
    rng = np.random.default_rng(3)
    closes = 500 * np.exp(np.cumsum(rng.normal(0, 0.01, 800)))
    rsi = talib.RSI(closes, 9)
    up, _ = crosses(rsi, np.full(len(rsi), 35.0))
    _, down = crosses(rsi, np.full(len(rsi), 65.0))
    assert signals(RsiReversion(period=9, lower=35, upper=65), bars(list(closes))) == merged(up, down)


def test_levels_are_crossed_strictly():
    bar = Bar("TEST", Timeframe.M5, START_NS, 100, 100, 100, 100, 1, 1)
    s = RsiReversion()
    at_level = IndicatorView.from_values({"rsi_14": 30.0}, {"rsi_14": 25.0})
    assert s.on_bar(bar, at_level) == []
    [buy] = s.on_bar(bar, IndicatorView.from_values({"rsi_14": 35.0, "atr_14": 2}, {"rsi_14": 30.0}))
    assert buy.confidence == pytest.approx(0.5 + 0.45 * 0.5)


def test_lower_must_be_below_upper():
    with pytest.raises(ConfigError, match="'lower'"):
        RsiReversion(lower=70, upper=30)
    with pytest.raises(ConfigError, match="'upper' must be <= 100"):
        RsiReversion(upper=120)
