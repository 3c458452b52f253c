"""NSE equity tick sizes (from 15 Apr 2025) and the rounding of prices sent to a broker.

==================  =========
price (₹)           tick (₹)
==================  =========
below 250           0.01
250 – 1,000         0.05
1,000 – 5,000       0.10
5,000 – 10,000      0.50
10,000 – 20,000     1.00
above 20,000        5.00
==================  =========

A band's lower bound belongs to it (₹250.00 trades in steps of 0.05). A price is rounded onto the tick
grid of its band, in the direction that never makes the order worse for the trader than asked: a buy
limit down, a sell limit up, and a stop trigger away from the market (a sell stop, below the market,
down; a buy stop, above it, up). Paper fills need no rounding: they happen at the bar's prices.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.errors import ConfigError

#: (lower bound of the band, tick) from the highest band down
BANDS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("20000"), Decimal("5.00")),
    (Decimal("10000"), Decimal("1.00")),
    (Decimal("5000"), Decimal("0.50")),
    (Decimal("1000"), Decimal("0.10")),
    (Decimal("250"), Decimal("0.05")),
    (Decimal("0"), Decimal("0.01")),
)


def tick_size(price: Decimal) -> Decimal:
    """The tick of ``price``'s band; ConfigError for a price that is not positive."""
    if not price > 0:
        raise ConfigError(f"a price must be positive, got {price}")
    return next(tick for bound, tick in BANDS if price >= bound)


def round_limit(price: Decimal, side: str) -> Decimal:
    """A LIMIT price on the grid: a BUY rounds down, a SELL up."""
    return _to_grid(price, ROUND_FLOOR if _side(side) == "BUY" else ROUND_CEILING)


def round_trigger(price: Decimal, side: str) -> Decimal:
    """A stop trigger on the grid, away from the market: the SELL stop of a long down, the BUY stop of a short up."""
    return _to_grid(price, ROUND_FLOOR if _side(side) == "SELL" else ROUND_CEILING)


def _to_grid(price: Decimal, rounding: str) -> Decimal:
    """Every band's bound is a multiple of the ticks on both sides of it, so a price rounded across a bound
    (999.99 up to 1,000.00) still lies on the grid of the band it lands in."""
    tick = tick_size(price)
    return ((price / tick).to_integral_value(rounding) * tick).quantize(Decimal("0.01"))


def _side(side: str) -> str:
    if side not in ("BUY", "SELL"):
        raise ConfigError(f"side must be BUY or SELL, got {side!r}")
    return side
