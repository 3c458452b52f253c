"""macd_cross on crafted series."""

from __future__ import annotations

import numpy as np
import talib

from strategies.macd_cross import MacdCross
from tests.strategies.series import bars, crosses, merged, signals


def test_step_up_buys_at_the_step():
    # Flat at 100: MACD and its signal are both exactly 0. At the step MACD jumps above 0
    # and the signal line moves only 2/10 of the way: a cross above at bar 40.
    closes = [100.0] * 40 + [110.0] * 3
    assert signals(MacdCross(), bars(closes)) == [(40, "BUY")]


def test_fading_step_sells_when_macd_falls_back_under_its_signal():
    # After the step MACD peaks and decays towards 0 while the lagging signal line is still
    # rising: MACD crosses below it, once, and stays below while both decay.
    closes = np.array([100.0] * 40 + [110.0] * 60)
    macd, signal, _ = talib.MACD(closes, 12, 26, 9)
    up, down = crosses(macd, signal)
    assert up == [40] and len(down) == 1 and down[0] > 40
    assert signals(MacdCross(), bars(list(closes))) == merged(up, down)


def test_random_walk_matches_a_reference_on_talib_macd():
    rng = np.random.default_rng(11)
    closes = 2000 * np.exp(np.cumsum(rng.normal(0, 0.005, 700)))
    macd, signal, _ = talib.MACD(closes, 8, 17, 5)
    assert signals(MacdCross(fast=8, slow=17, signal=5), bars(list(closes))) == merged(*crosses(macd, signal))
