"""Momentum: RSI, MACD, ROC, MOM (TA-Lib semantics, bit for bit).

Step functions follow the convention of :mod:`engine.indicators.averages`.
"""

from __future__ import annotations

from engine.indicators.averages import ema
from engine.indicators.jit import fma, jit
from engine.indicators.window import NAN, ring_replace, ring_size


def rsi_size(n: int) -> int:
    """Previous close, average gain, average loss."""
    return 3


@jit
def rsi(s, o, n, x, t):
    """TA-Lib RSI: Wilder averages of gains and losses, seeded with their plain means.

    TA-Lib 0.8 order: the loss is ``gain − change`` (no branch), averages are scaled by a
    hoisted ``1/n``, and the index is 0 only when gain + loss is exactly 0 (a flat series).
    """
    prev = s[o]
    s[o] = x
    if t == 0:
        return NAN
    d = x - prev
    g = d if d > 0.0 else 0.0
    inv = 1.0 / n
    if t <= n:
        gain = s[o + 1] + g
        loss = s[o + 2] + (g - d)
        if t == n:
            gain *= inv
            loss *= inv
    else:
        gain = (s[o + 1] * (n - 1) + g) * inv
        loss = ((g - d) + s[o + 2] * (n - 1)) * inv
    s[o + 1] = gain
    s[o + 2] = loss
    if t < n:
        return NAN
    total = loss + gain
    return 100.0 * (gain / total) if total > 0.0 else 0.0


# macd slots: slow EMA, signal EMA (2 each, see ema_size), fast EMA and its factor, then a ring
# of the last ``fast`` closes for the fast seed
_SLOW, _SIGNAL, _FAST, _FAST_K, _SEED = 0, 2, 4, 5, 6


def macd_size(fast: int, slow: int, signal: int) -> int:
    return _SEED + min(fast, slow)


@jit
def macd(s, o, fast, slow, signal, x, t):
    """TA-Lib MACD: returns (macd, signal, histogram), all NaN until the signal exists.

    TA-Lib's quirk, kept: the fast EMA is not seeded at bar ``fast − 1`` but at bar
    ``slow − 1``, with the mean of the ``fast`` closes ending there, so both EMAs start together.
    EMA steps are fused multiply-adds as in :func:`~engine.indicators.averages.ema`.
    """
    if slow < fast:
        fast, slow = slow, fast
    start = slow - 1
    if t <= start:
        s[o + _SEED + t % fast] = x
    slow_ema = ema(s, o + _SLOW, slow, x, t)
    if t < start:
        return NAN, NAN, NAN
    if t == start:
        total = 0.0
        for age in range(fast - 1, -1, -1):
            total += s[o + _SEED + (t - age) % fast]
        fast_ema = total / fast
        s[o + _FAST_K] = 2.0 / (fast + 1)
    else:
        prev = s[o + _FAST]
        fast_ema = fma(x - prev, s[o + _FAST_K], prev)
    s[o + _FAST] = fast_ema
    line = fast_ema - slow_ema
    sig = ema(s, o + _SIGNAL, signal, line, t - start)
    if t < start + signal - 1:
        return NAN, NAN, NAN
    return line, sig, line - sig


def change_size(n: int) -> int:
    """A ring of the last ``n`` values."""
    return ring_size(n)


@jit
def change(s, o, n, x, t):
    """TA-Lib ROC and MOM of one period: ``((x / x[-n]) - 1) · 100`` (0 when ``x[-n]`` is 0) and
    ``x − x[-n]``; NaN for the first ``n`` bars."""
    _, old = ring_replace(s, o, n, x)
    if t < n:
        return NAN, NAN
    return (((x / old) - 1.0) * 100.0 if old != 0.0 else 0.0), x - old
