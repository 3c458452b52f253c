"""Volatility: STDDEV, Bollinger bands (SMA), ATR (TA-Lib 0.8 semantics, bit for bit).

Step functions follow the convention of :mod:`engine.indicators.averages`.
"""

from __future__ import annotations

import math

from engine.indicators.jit import fma, jit
from engine.indicators.window import NAN, ring_at, ring_replace, ring_size, true_range

# moments slots: SMA running sum, variance shift, shifted sum, shifted sum of squares,
# bars until the next forced re-anchoring, then a ring of n values
_MA, _SHIFT, _SUM1, _SUM2, _RESEED, _RING = range(6)


def moments_size(n: int) -> int:
    return _RING + ring_size(n)


@jit
def _reanchor(s, o, n, k):
    """TA-Lib 0.8's re-anchoring: shift to the window mean and rebuild the sums (two-pass).

    Returns the window's variance, floored to 0 where it is below 1e-12 of the mean squared
    deviation (no spread the shift can resolve).
    """
    inv = 1.0 / n
    ring = o + _RING
    total = 0.0
    for age in range(n - 1, -1, -1):
        total += ring_at(s, ring, n, k, age)
    shift = total * inv
    sum1 = 0.0
    sum2 = 0.0
    for age in range(n - 1, -1, -1):
        d = ring_at(s, ring, n, k, age) - shift
        sum1 += d
        sum2 += d * d
    mean = sum1 * inv
    variance = sum2 * inv - mean * mean
    if variance < 0.000000000001 * (sum2 * inv):
        variance = 0.0
    d = ring_at(s, ring, n, k, n - 1) - shift
    s[o + _SHIFT] = shift
    s[o + _SUM1] = sum1 - d
    s[o + _SUM2] = sum2 - d * d
    s[o + _RESEED] = 32 * n
    return variance


@jit
def moments(s, o, n, x, t):
    """(mean, population variance) of the last ``n`` values, as TA-Lib 0.8 computes them.

    The mean is TA-Lib's SMA (a running total). The variance comes from sums of deviations
    from a shift near the window (cancellation-free), re-anchored at the window mean when the
    variance loses digits, when a far outlier leaves the window, or every ``32·n`` bars.
    """
    if t == 0:
        s[o + _SHIFT] = x
    s[o + _MA] += x
    d = x - s[o + _SHIFT]
    s[o + _SUM1] += d
    s[o + _SUM2] += d * d
    k, _ = ring_replace(s, o + _RING, n, x)
    if t < n - 1:
        return NAN, NAN
    if t == n - 1:
        s[o + _RESEED] = 32 * n
    inv = 1.0 / n
    mean1 = s[o + _SUM1] * inv
    variance = s[o + _SUM2] * inv - mean1 * mean1
    total = s[o + _MA]
    old = ring_at(s, o + _RING, n, k, n - 1)
    s[o + _MA] = total - old
    d = old - s[o + _SHIFT]
    s[o + _SUM1] -= d
    sq = d * d
    sum2 = s[o + _SUM2] - sq
    s[o + _SUM2] = sum2
    s[o + _RESEED] -= 1
    if variance < 0.000001 * (sum2 * inv) or sq > 1000000.0 * sum2 or s[o + _RESEED] <= 0:
        variance = _reanchor(s, o, n, k)
    return total / n, variance


@jit
def stddev(s, o, n, nbdev, x, t):
    """TA-Lib STDDEV(n, nbdev): population standard deviation times ``nbdev``."""
    _, variance = moments(s, o, n, x, t)
    if t < n - 1:
        return NAN
    return math.sqrt(variance) * nbdev if nbdev != 1.0 else math.sqrt(variance)


@jit
def bbands(s, o, n, up, down, x, t):
    """TA-Lib BBANDS(n, up, down, SMA): returns (upper, middle, lower)."""
    middle, variance = moments(s, o, n, x, t)
    if t < n - 1:
        return NAN, NAN, NAN
    dev = math.sqrt(variance) if variance != 0.0 else 0.0
    if up == down:
        width = dev * up
        return middle + width, middle, middle - width
    return fma(dev, up, middle), middle, middle - dev * down


def atr_size(n: int) -> int:
    """Previous close, and the seed sum then the previous ATR."""
    return 2


@jit
def atr(s, o, n, high, low, close, t):
    """TA-Lib ATR: Wilder-smoothed true range, seeded with the mean of the first ``n`` ranges.

    TA-Lib 0.8's step: ``fma(β, prev, α · tr)`` with ``β = (n − 1) / n`` and ``α = 1 − β``.
    """
    prev_close = s[o]
    s[o] = close
    if t == 0:
        return NAN
    tr = true_range(high, low, prev_close)
    if t < n:
        s[o + 1] += tr
        return NAN
    if t == n:
        v = (s[o + 1] + tr) / n
    else:
        beta = (n - 1) / n
        v = fma(beta, s[o + 1], (1.0 - beta) * tr)
    s[o + 1] = v
    return v
