"""bollinger_breakout on crafted series."""

from __future__ import annotations

import numpy as np
import talib

from strategies.bollinger_breakout import BollingerBreakout
from tests.strategies.series import bars, crosses, merged, signals


def test_breaking_out_of_flat_bands():
    # Flat at 100 for 25 bars: the bands are 100 exactly. A close of 101 (bar 25) gives
    # SMA 100.05 and sigma 0.218, upper band 100.49 < 101: BUY. Back to 100 for 25 bars, then 99
    # (bar 51): lower band 99.51 > 99: SELL.
    closes = [100.0] * 25 + [101.0] + [100.0] * 25 + [99.0]
    assert signals(BollingerBreakout(), bars(closes)) == [(25, "BUY"), (51, "SELL")]


def test_random_walk_matches_a_reference_on_talib_bbands():
    rng = np.random.default_rng(5)
    closes = 300 * np.exp(np.cumsum(rng.normal(0, 0.006, 800)))
    upper, _, lower = talib.BBANDS(closes, 15, 1.5, 1.5)
    up, _ = crosses(closes, upper)
    _, down = crosses(closes, lower)
    assert signals(BollingerBreakout(period=15, stddev=1.5), bars(list(closes))) == merged(up, down)
