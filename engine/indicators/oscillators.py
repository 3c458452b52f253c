"""Range oscillators: STOCH (slow, SMA-smoothed), WILLR, CCI (TA-Lib semantics, bit for bit).

Step functions follow the convention of :mod:`engine.indicators.averages`.
"""

from __future__ import annotations

from engine.indicators.averages import sma, sma_size
from engine.indicators.jit import jit
from engine.indicators.window import NAN, extreme, extreme_size, is_flat, ring_replace, ring_size, typical_price


def stoch_size(fastk: int, slowk: int, slowd: int) -> int:
    """Highest-high and lowest-low windows, then the two SMA smoothers."""
    return 2 * extreme_size(fastk) + sma_size(slowk) + sma_size(slowd)


@jit
def stoch(s, o, fastk, slowk, slowd, high, low, close, t):
    """TA-Lib STOCH(fastk, slowk, SMA, slowd, SMA): returns (slow %K, slow %D).

    Fast %K is ``((close − lowest) / (highest − lowest)) · 100``, and 0 on a flat window
    (see :func:`~engine.indicators.window.is_flat`). Both outputs are NaN until %D exists.
    """
    size = extreme_size(fastk)
    hi = extreme(s, o, fastk, high, t, True)
    lo = extreme(s, o + size, fastk, low, t, False)
    if t < fastk - 1:
        return NAN, NAN
    fast = 0.0 if is_flat(hi, lo) else ((close - lo) / (hi - lo)) * 100.0
    o_k = o + 2 * size
    k = sma(s, o_k, slowk, fast, t - (fastk - 1))
    if t < fastk + slowk - 2:
        return NAN, NAN
    d = sma(s, o_k + sma_size(slowk), slowd, k, t - (fastk + slowk - 2))
    if t < fastk + slowk + slowd - 3:
        return NAN, NAN
    return k, d


def willr_size(n: int) -> int:
    return 2 * extreme_size(n)


@jit
def willr(s, o, n, high, low, close, t):
    """TA-Lib WILLR: ``((highest − close) / (highest − lowest)) · −100`` clamped to [−100, 0];
    0 on a flat window (see :func:`~engine.indicators.window.is_flat`).
    """
    hi = extreme(s, o, n, high, t, True)
    lo = extreme(s, o + extreme_size(n), n, low, t, False)
    if t < n - 1:
        return NAN
    if is_flat(hi, lo):
        return 0.0
    v = ((hi - close) / (hi - lo)) * -100.0
    if v > 0.0:
        return 0.0
    return v if not -100.0 > v else -100.0


def cci_size(n: int) -> int:
    """A ring of ``n`` typical prices."""
    return ring_size(n)


@jit
def cci(s, o, n, high, low, close, t):
    """TA-Lib CCI: ``(tp − mean) / ((mean absolute deviation) · 0.015)``.

    0 when ``tp − mean`` or the deviation is within 1e-14 of ``|mean|`` (TA-Lib 0.8's
    scale-relative dead zone), or the denominator is 0. TA-Lib sums its circular buffer in slot
    order, not in time order; the ring here has the same layout (bar ``t`` in slot ``t mod n``),
    so the sums round the same way.
    """
    tp = typical_price(high, low, close)
    ring_replace(s, o, n, tp)
    if t < n - 1:
        return NAN
    values = o + 1
    mean = 0.0
    for j in range(n):
        mean += s[values + j]
    mean /= n
    dev = 0.0
    for j in range(n):
        dev += abs(s[values + j] - mean)
    num = tp - mean
    floor = abs(mean) * 1e-14
    if floor >= abs(num):
        return 0.0
    dev /= n
    if floor >= abs(dev):
        return 0.0
    dev *= 0.015
    return 0.0 if dev == 0.0 else num / dev
