"""Volume: OBV and MFI (TA-Lib 0.8 semantics, bit for bit).

Step functions follow the convention of :mod:`engine.indicators.averages`.
"""

from __future__ import annotations

import numpy as np

from engine.indicators.jit import jit
from engine.indicators.window import NAN, typical_price


def obv_size() -> int:
    """The running OBV and the previous close."""
    return 2


@jit
def obv(s, o, close, volume, t):
    """TA-Lib OBV: starts at the first bar's volume; adds or subtracts volume on up/down closes."""
    if t == 0:
        value = volume
    else:
        value = s[o]
        prev = s[o + 1]
        if close > prev:
            value += volume
        elif close < prev:
            value -= volume
    s[o] = value
    s[o + 1] = close
    return value


# slots: previous typical price, positive and negative flow sums, bars in a row without flow,
# the ring cursor, then a ring of n (positive, negative) flow pairs
_PREV, _POS, _NEG, _IDLE, _CURSOR, _RING = range(6)


def mfi_size(n: int) -> int:
    return _RING + 2 * n


@jit
def mfi(s, o, n, high, low, close, volume, t):
    """TA-Lib MFI: ``100 · positive / (positive + negative)`` money flow over ``n`` bars.

    TA-Lib 0.8 rules: a typical-price change within 1e-14 of the prices' size carries no flow;
    after ``n`` bars in a row without flow the sums are reset to exactly 0; the index is 0 when
    the total flow is not positive, and the positive part is clamped into [0, total].
    """
    tp = typical_price(high, low, close)
    prev = s[o + _PREV]
    s[o + _PREV] = tp
    if t == 0:
        return NAN
    k = np.int64(s[o + _CURSOR])
    s[o + _CURSOR] = k + 1 if k + 1 < n else 0
    pair = o + _RING + 2 * k
    pos = s[o + _POS]
    neg = s[o + _NEG]
    if t > n:
        pos -= s[pair]
        neg -= s[pair + 1]
    change = tp - prev
    flow = 0.0 if (abs(tp) + abs(prev)) * 1e-14 >= abs(change) else tp * volume
    pos_flow = 0.0 if change < 0.0 else flow
    neg_flow = flow if change < 0.0 else 0.0
    s[pair] = pos_flow
    s[pair + 1] = neg_flow
    pos += pos_flow
    neg += neg_flow
    idle = s[o + _IDLE] + 1.0 if flow == 0.0 else 0.0
    if idle >= n:
        idle = n
        pos = 0.0
        neg = 0.0
    s[o + _IDLE] = idle
    s[o + _POS] = pos
    s[o + _NEG] = neg
    if t < n:
        return NAN
    total = pos + neg
    if not total > 0.0:
        return 0.0
    clamped = 0.0 if 0.0 > pos else (total if total < pos else pos)
    return (clamped / total) * 100.0
