"""Moving averages: SMA, EMA, WMA, DEMA, TEMA (TA-Lib 0.8 semantics, bit for bit).

Each step function takes the state ``s`` and the offset ``o`` of its slots (see
:mod:`engine.indicators.window`), the period, the new value and ``t`` (bars seen before this
one), updates the slots and returns the value for this bar (NaN during TA-Lib's warm-up). The
``*_size`` functions give the slot count.
"""

from __future__ import annotations

from numba.extending import register_jitable

from engine.indicators.jit import fma, jit
from engine.indicators.window import NAN, ring_at, ring_replace, ring_size


@register_jitable
def sma_size(n: int) -> int:
    """Running sum and a ring of ``n`` values."""
    return 1 + ring_size(n)


@jit
def sma(s, o, n, x, t):
    """TA-Lib SMA: a running total (add the new value, divide, then drop the oldest)."""
    k, _ = ring_replace(s, o + 1, n, x)
    total = s[o] + x
    if t < n - 1:
        s[o] = total
        return NAN
    s[o] = total - ring_at(s, o + 1, n, k, n - 1)
    return total / n


def ema_size(n: int) -> int:
    """The seed sum during warm-up, then the previous EMA; and the smoothing factor, kept
    because a division per bar is measurable here."""
    return 2


@jit
def ema(s, o, n, x, t):
    """TA-Lib EMA: seeded with the mean of the first ``n`` values, then
    ``fma(x − prev, 2 / (n + 1), prev)``; period 1 copies the input.
    """
    if n == 1:
        return x
    if t < n - 1:
        s[o] += x
        return NAN
    if t == n - 1:
        v = (s[o] + x) / n
        s[o + 1] = 2.0 / (n + 1)
    else:
        prev = s[o]
        v = fma(x - prev, s[o + 1], prev)
    s[o] = v
    return v


# wma slots: weighted sum, plain sum, outputs until the next re-anchoring, then the ring
_WSUM, _PSUM, _RESEED, _WRING = range(4)


def wma_size(n: int) -> int:
    return _WRING + ring_size(n)


@jit
def wma(s, o, n, x, t):
    """TA-Lib WMA: weights 1..n kept as a running weighted sum minus a running plain sum.

    Like TA-Lib, both sums are rebuilt from the window every ``8·n`` outputs, so rounding
    residue cannot pile up over a long series.
    """
    k, trailing = ring_replace(s, o + _WRING, n, x)
    if t < n - 1:
        s[o + _PSUM] += x
        s[o + _WSUM] += x * (t + 1)
        return NAN
    if t == n - 1:
        trailing = 0.0
        s[o + _RESEED] = 8 * n
    sub = s[o + _PSUM] + x
    sub -= trailing
    total = s[o + _WSUM] + x * n
    s[o + _RESEED] -= 1
    if s[o + _RESEED] <= 0:
        s[o + _RESEED] = 8 * n
        sub = 0.0
        total = 0.0
        for age in range(n - 1, -1, -1):
            v = ring_at(s, o + _WRING, n, k, age)
            sub += v
            total += v * (n - age)
    s[o + _PSUM] = sub
    s[o + _WSUM] = total - sub
    return total / ((n * (n + 1.0)) / 2.0)


def cascade_size(n: int) -> int:
    """Three chained EMAs."""
    return 3 * ema_size(n)


@jit
def cascade(s, o, n, x, t, depth):
    """TA-Lib EMA, DEMA and TEMA of one period from one chain of ``depth`` EMAs: returns
    (EMA, DEMA = 2·EMA − EMA², TEMA = EMA³ + (3·EMA − 3·EMA²)). Level ``d`` seeds after
    ``d·(n − 1)`` bars; outputs not computed (deeper than ``depth``, or in warm-up) are NaN.
    """
    e1 = ema(s, o, n, x, t)
    if depth < 2 or t < 2 * (n - 1):
        if depth > 1 and t >= n - 1:
            ema(s, o + 2, n, e1, t - (n - 1))
        return e1, NAN, NAN
    e2 = ema(s, o + 2, n, e1, t - (n - 1))
    double = (2.0 * e1) - e2
    if depth < 3:
        return e1, double, NAN
    e3 = ema(s, o + 4, n, e2, t - 2 * (n - 1))
    triple = e3 + ((3.0 * e1) - (3.0 * e2)) if t >= 3 * (n - 1) else NAN
    return e1, double, triple
