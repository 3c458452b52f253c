"""Window primitives shared by the families: ring buffers and running extremes.

Every step function of the package gets ``s``, the state of all instruments as one flat
float64 array, and ``o``, the absolute offset of its slots ``s[o : o + size]`` (inside its
instrument's row). ``t`` is the number of bars the instrument had before the current one (0
for its first bar). All-zero state is the fresh state of every primitive.
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from engine.indicators.jit import jit

NAN = math.nan


@register_jitable
def ring_size(n: int) -> int:
    """Slots of a ring of ``n`` values: a cursor (the next slot to write), then the values.

    The cursor wraps by comparison, not by ``t % n``: an integer division per access was the
    largest single cost of the kernels. Bar ``t`` lands in slot ``t mod n`` all the same.
    """
    return 1 + n


@jit
def ring_replace(s, r, n, x):
    """Store ``x`` as the newest value; returns (its slot, the value it replaced).

    Once the ring is full, the replaced value is the one ``n`` bars older than ``x``.
    """
    k = np.int64(s[r])
    old = s[r + 1 + k]
    s[r + 1 + k] = x
    s[r] = k + 1 if k + 1 < n else 0
    return k, old


@jit
def ring_at(s, r, n, k, age):
    """The value ``age`` (< n) writes older than the one in slot ``k``."""
    slot = k - age
    if slot < 0:
        slot += n
    return s[r + 1 + slot]


@register_jitable
def extreme_size(n: int) -> int:
    """Slots of :func:`extreme`: the extreme, 1 + its bar index, a ring of ``n`` values."""
    return 2 + ring_size(n)


@jit
def extreme(s, o, n, x, t, is_max):
    """Highest (``is_max``) or lowest of the last ``n`` values, the current ``x`` included.

    TA-Lib MAX/MIN semantics: NaN until ``n`` values were seen. The extreme and the bar it came
    from are kept, and the ring is rescanned only when that bar leaves the window, so the
    amortised cost is O(1) on trending data and O(n) at worst. The update is written as
    selects, not branches: whether a bar makes a new extreme is a coin flip on real data.
    """
    k, _ = ring_replace(s, o + 2, n, x)
    if t < n - 1:
        return NAN
    if s[o + 1] - 1.0 < t - n + 1:
        values = o + 3
        best = s[values]
        slot = 0
        for j in range(1, n):
            v = s[values + j]
            better = (v > best) if is_max else (v < best)
            best = v if better else best
            slot = j if better else slot
        age = k - slot if k >= slot else k - slot + n
        s[o] = best
        s[o + 1] = t - age + 1.0
        return best
    best = s[o]
    newer = (x >= best) if is_max else (x <= best)
    s[o] = x if newer else best
    s[o + 1] = t + 1.0 if newer else s[o + 1]
    return x if newer else best


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
