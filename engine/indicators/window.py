"""Window primitives shared by the families: ring buffers and running extremes.

State lives in one float64 row per instrument; a primitive owns ``s[o : o + size]`` of it.
``t`` is the number of bars the instrument had before the current one (0 for its first bar).
All-zero state is the fresh state of every primitive.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

from engine.indicators.jit import jit

NAN = math.nan


@register_jitable
def extreme_size(n: int) -> int:
    """Slots of :func:`extreme`: the extreme, 1 + its bar index, a ring of ``n`` values."""
    return 2 + n


@jit
def extreme(s, o, n, x, t, is_max):
    """Highest (``is_max``) or lowest of the last ``n`` values, the current ``x`` included.

    TA-Lib MAX/MIN semantics: NaN until ``n`` values were seen. The extreme and the bar it came
    from are kept, and the ring is rescanned only when that bar leaves the window, so the
    amortised cost is O(1) on trending data and O(n) at worst.
    """
    ring = o + 2
    s[ring + t % n] = x
    if t < n - 1:
        return NAN
    best = s[o]
    if s[o + 1] - 1.0 < t - n + 1:
        best = x
        best_t = t
        for age in range(1, n):
            v = s[ring + (t - age) % n]
            if (v > best) if is_max else (v < best):
                best = v
                best_t = t - age
        s[o] = best
        s[o + 1] = best_t + 1.0
    elif (x >= best) if is_max else (x <= best):
        best = x
        s[o] = x
        s[o + 1] = t + 1.0
    return best


@jit
def is_zero(v):
    """TA-Lib 0.8's ``TA_IS_ZERO``: within 1e-14 of zero."""
    return -1e-14 < v < 1e-14


@jit
def is_flat(hi, lo):
    """TA-Lib 0.8's dead zone for a range: ``|hi − lo|`` within 1e-14 of ``|hi| + |lo|``."""
    return (abs(hi) + abs(lo)) * 1e-14 >= abs(hi - lo)


@jit
def true_range(high, low, prev_close):
    """TA-Lib's true range, in its order of comparisons."""
    greatest = high - low
    v = abs(prev_close - high)
    if v > greatest:
        greatest = v
    v = abs(prev_close - low)
    if v > greatest:
        greatest = v
    return greatest


@jit
def typical_price(high, low, close):
    """``(high + low + close) / 3`` evaluated left to right, as TA-Lib does."""
    return (high + low + close) / 3.0
