"""NSE tick sizes and the rounding of prices sent to a broker (engine/orders/tick_size.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.orders.tick_size import round_limit, round_trigger, tick_size

D = Decimal


@pytest.mark.parametrize("price, tick", [
    ("0.05", "0.01"), ("249.99", "0.01"), ("250", "0.05"), ("999.95", "0.05"), ("1000", "0.10"), ("4999.9", "0.10"),
    ("5000", "0.50"), ("9999.5", "0.50"), ("10000", "1.00"), ("19999", "1.00"), ("20000", "5.00"), ("85000", "5.00"),
])  # fmt: skip
def test_the_band_of_a_price_its_lower_bound_included(price, tick):
    assert tick_size(D(price)) == D(tick)


def test_limits_round_in_the_traders_favour_and_triggers_away_from_the_market():
    assert round_limit(D("2501.23"), "BUY") == D("2501.20") and round_limit(D("2501.23"), "SELL") == D("2501.30")
    assert round_limit(D("312.47"), "BUY") == D("312.45") and round_limit(D("312.47"), "SELL") == D("312.50")
    assert round_trigger(D("2480.07"), "SELL") == D("2480.00")  # a long's stop, below the market: lower
    assert round_trigger(D("2480.07"), "BUY") == D("2480.10")  # a short's stop, above the market: higher
    assert round_limit(D("999.99"), "SELL") == D("1000.00")  # across a band's bound, still on the grid
    assert round_limit(D("5000.30"), "BUY") == D("5000.00") and round_limit(D("20001"), "SELL") == D("20005.00")


def test_bad_input_is_refused():
    with pytest.raises(ConfigError):
        tick_size(D("0"))
    with pytest.raises(ConfigError):
        round_limit(D("100"), "HOLD")


@given(st.decimals(min_value=D("0.01"), max_value=D("99999"), places=2), st.sampled_from(["BUY", "SELL"]))
def test_rounded_prices_lie_on_their_band_grid_within_one_tick(price, side):
    for rounded in (round_limit(price, side), round_trigger(price, side)):
        assert rounded % tick_size(rounded) == 0
        assert abs(rounded - price) < tick_size(price) + tick_size(rounded)
    assert (round_limit(price, side) <= price) == (side == "BUY") or round_limit(price, side) == price
