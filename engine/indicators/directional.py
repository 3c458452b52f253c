"""Directional movement: ADX, +DI, −DI from one shared state (TA-Lib semantics, bit for bit).

Step functions follow the convention of :mod:`engine.indicators.averages`.
"""

from __future__ import annotations

from engine.indicators.jit import jit
from engine.indicators.window import NAN, is_zero, true_range

# slots: previous high, low, close; smoothed +DM, −DM, TR; sum of the first DX values; ADX
_HIGH, _LOW, _CLOSE, _PDM, _MDM, _TR, _SUMDX, _ADX = range(8)


def dmi_size(n: int) -> int:
    return 8


@jit
def _directional_move(s, o, n, high, low, close, t):
    """Advance +DM, −DM and TR by one bar: summed for bars 1..n−1, Wilder-smoothed after."""
    diff_p = high - s[o + _HIGH]
    diff_m = s[o + _LOW] - low
    tr = true_range(high, low, s[o + _CLOSE])
    s[o + _HIGH] = high
    s[o + _LOW] = low
    s[o + _CLOSE] = close
    pdm = s[o + _PDM]
    mdm = s[o + _MDM]
    prev_tr = s[o + _TR]
    if t >= n:
        pdm = pdm - pdm / n
        mdm = mdm - mdm / n
        prev_tr = prev_tr - prev_tr / n
    if diff_m > 0 and diff_p < diff_m:
        mdm += diff_m
    elif diff_p > 0 and diff_p > diff_m:
        pdm += diff_p
    s[o + _PDM] = pdm
    s[o + _MDM] = mdm
    s[o + _TR] = prev_tr + tr


@jit
def _dx(plus_di, minus_di):
    """DX of two DIs; NaN when their sum is within 1e-14 of zero (TA-Lib then skips the bar)."""
    total = minus_di + plus_di
    return NAN if is_zero(total) else 100.0 * (abs(minus_di - plus_di) / total)


@jit
def dmi(s, o, n, high, low, close, t):
    """Returns (+DI, −DI, ADX) of TA-Lib PLUS_DI(n), MINUS_DI(n), ADX(n).

    The DIs start at bar ``n`` and are 0 when the smoothed true range is not positive;
    ADX starts at bar ``2n − 1`` (the mean of the first ``n`` DX) and keeps its previous value
    on bars where DX is undefined, as TA-Lib does.
    """
    if t == 0:
        s[o + _HIGH] = high
        s[o + _LOW] = low
        s[o + _CLOSE] = close
        return NAN, NAN, NAN
    _directional_move(s, o, n, high, low, close, t)
    if t < n:
        return NAN, NAN, NAN
    tr = s[o + _TR]
    if not tr > 0.0:
        return 0.0, 0.0, _adx_skip(s, o, n, t)
    plus_di = 100.0 * (s[o + _PDM] / tr)
    minus_di = 100.0 * (s[o + _MDM] / tr)
    dx = _dx(plus_di, minus_di)
    if dx != dx:
        return plus_di, minus_di, _adx_skip(s, o, n, t)
    if t < 2 * n - 1:
        s[o + _SUMDX] += dx
        return plus_di, minus_di, NAN
    if t == 2 * n - 1:
        adx = (s[o + _SUMDX] + dx) / n
    else:
        adx = ((s[o + _ADX] * (n - 1)) + dx) / n
    s[o + _ADX] = adx
    return plus_di, minus_di, adx


@jit
def _adx_skip(s, o, n, t):
    """ADX on a bar without a DX: the seed (if due now) or the previous value."""
    if t < 2 * n - 1:
        return NAN
    if t == 2 * n - 1:
        s[o + _ADX] = s[o + _SUMDX] / n
    return s[o + _ADX]
