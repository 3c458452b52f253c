"""ema_cross on crafted series: signals known by hand, levels from TA-Lib's ATR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.strategy import IndicatorView, SignalType, round_price
from strategies.ema_cross import EmaCross
from tests.strategies.series import START_NS, bars, crosses, emitted, merged, signals


def test_step_up_then_down_buys_at_the_step_and_sells_at_the_drop():
    closes = [100.0] * 30 + [110.0] * 30 + [90.0] * 30
    # Before bar 30 both EMAs are exactly 100 (equal counts as "<="); at 30 the fast one
    # moves 2/10 of the way to 110, the slow one 2/22: a cross above. The drop at 60 mirrors it.
    assert signals(EmaCross(), bars(closes)) == [(30, "BUY"), (60, "SELL")]


def test_target_and_stop_are_two_and_one_atr_from_the_close():
    closes = [100.0] * 30 + [110.0] * 30
    series = bars(closes)
    [signal] = emitted(EmaCross(), series)
    c = np.array(closes)
    atr = talib.ATR(c, c, c, 14)[30]
    assert signal.intent.entry == 110.0
    assert round_price(signal.intent.target) == round_price(110.0 + 2 * atr)
    assert round_price(signal.intent.stop_loss) == round_price(110.0 - atr)
    assert signal.intent.confidence == pytest.approx(0.5 + 0.45 * min(1.0, abs(_ema(c, 9) - _ema(c, 21)) / atr))


def _ema(c: np.ndarray, n: int) -> float:
    return float(talib.EMA(c, n)[30])


def test_random_walk_matches_a_reference_crossing_of_talib_emas():
    rng = np.random.default_rng(7)
    closes = 1000 * np.exp(np.cumsum(rng.normal(0, 0.004, 600)))
    fast, slow = talib.EMA(closes, 5), talib.EMA(closes, 13)
    assert signals(EmaCross(fast=5, slow=13), bars(list(closes))) == merged(*crosses(fast, slow))


def test_hand_made_views():
    bar = Bar("TEST", Timeframe.M5, START_NS, 100, 100, 100, 100, 1, 1)
    s = EmaCross()
    cross = IndicatorView.from_values({"ema_9": 101, "ema_21": 100, "atr_14": 1}, {"ema_9": 99, "ema_21": 100})
    assert [i.signal_type for i in s.on_bar(bar, cross)] == [SignalType.BUY]
    touching = IndicatorView.from_values({"ema_9": 100, "ema_21": 100}, {"ema_9": 99, "ema_21": 100})
    assert s.on_bar(bar, touching) == []  # equal is not above
    first_bar = IndicatorView.from_values({"ema_9": 101, "ema_21": 100})
    assert s.on_bar(bar, first_bar) == []  # no previous bar: NaN never crosses
    [intent] = s.on_bar(bar, IndicatorView.from_values({"ema_9": 101, "ema_21": 100, "atr_14": math.nan},
                                                       {"ema_9": 99, "ema_21": 100}))  # fmt: skip
    assert (intent.target, intent.stop_loss, intent.confidence) == (None, None, 0.5)


def test_parameters_are_validated_by_name():
    with pytest.raises(ConfigError, match="'fast'"):
        EmaCross(fast=21, slow=9)
    with pytest.raises(ConfigError, match="'slow' must be int"):
        EmaCross(slow="21")
    with pytest.raises(ConfigError, match="unknown parameter 'period'"):
        EmaCross(period=3)
    assert EmaCross(fast=5.0).config["fast"] == 5
