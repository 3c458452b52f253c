"""Price channels for breakout rules (Donchian): highest high and lowest low.

* ``highest(n)`` / ``lowest(n)``: TA-Lib ``MAX(high, n)`` / ``MIN(low, n)`` — the window ends
  with the current bar (first value at bar ``n − 1``).
* ``highest_high(n)`` / ``lowest_low(n)``: the same over the *previous* ``n`` bars, the current
  bar excluded (first value at bar ``n``) — the level a close must break.

Step functions follow the convention of :mod:`engine.indicators.averages`.
"""

from __future__ import annotations

from engine.indicators.jit import jit
from engine.indicators.window import NAN, extreme, extreme_size


def channel_size(n: int) -> int:
    """The running extreme, and the value it had at the previous bar."""
    return 1 + extreme_size(n)


@jit
def channel(s, o, n, x, t, is_max, previous):
    """The extreme of the window ending now, or (``previous``) of the window ending one bar ago."""
    before = s[o] if t >= n else NAN
    now = extreme(s, o + 1, n, x, t, is_max)
    s[o] = now
    return before if previous else now
