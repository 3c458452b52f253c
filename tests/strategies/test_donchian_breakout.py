"""donchian_breakout: the channel is the previous N bars, the current one excluded."""

from __future__ import annotations

from strategies.donchian_breakout import DonchianBreakout
from tests.strategies.series import bars, signals


def test_every_new_high_after_the_first_full_channel_buys():
    # Rising closes (high = close): from bar 20 on each close beats the previous 20 highs.
    closes = [100.0 + k for k in range(30)]
    assert signals(DonchianBreakout(), bars(closes)) == [(k, "BUY") for k in range(20, 30)]


def test_a_close_equal_to_the_channel_is_no_breakout_and_lows_sell():
    closes = [100.0] * 20 + [100.0, 101.0, 100.5, 99.0] + [99.5] * 3 + [95.0]
    # bar 20 ties the high (no signal), bar 21 breaks it, bar 23 and bar 27 break the low.
    highs = closes
    assert signals(DonchianBreakout(), bars(closes, highs)) == [(21, "BUY"), (23, "SELL"), (27, "SELL")]


def test_period_parameter():
    closes = [100.0, 100.0, 100.0, 101.0, 100.0, 102.0]
    assert signals(DonchianBreakout(period=2), bars(closes)) == [(3, "BUY"), (5, "BUY")]
