"""The batch kernel: one numba call advances every indicator of a set over a micro-batch.

An indicator set is compiled (by :mod:`engine.indicators.registry`) into a *program*: one int64
row per indicator instance ``[opcode, state offset, out col 0, out col 1, out col 2, p0, p1, p2]``
(an output column of −1 is not wanted) and one float64 row of real parameters ``[f0, f1]``.
State is one float64 row per instrument; slot 0 counts the instrument's bars, each instance
owns the slots from its offset. Bars are processed in batch order, so an instrument may occur
several times in a batch. The kernel signature never changes, so it compiles once.
"""

from __future__ import annotations

import numpy as np

from engine.indicators import averages, channels, directional, momentum, oscillators, volatility, volume
from engine.indicators.jit import jit

# opcodes: those up to MOM read the close only (one output), the others a whole bar
SMA, EMA, WMA, DEMA, TEMA, RSI, ROC, MOM = range(8)
MACD, STOCH, WILLR, CCI, STDDEV, BBANDS, ATR, DMI, OBV, MFI, CHANNEL = range(8, 19)

# program columns
OP, OFFSET, COL0, COL1, COL2, P0, P1, P2 = range(8)
PROGRAM_WIDTH = 8
FLOAT_WIDTH = 2

#: state slot 0 of every row: bars seen by the instrument
COUNTER_SLOTS = 1


@jit
def _put(out, j, col, value):
    if col >= 0:
        out[j, col] = value


@jit
def _put3(out, j, p, values):
    _put(out, j, p[COL0], values[0])
    _put(out, j, p[COL1], values[1])
    _put(out, j, p[COL2], values[2])


@jit
def _price_step(s, p, x, t):
    """Instances that read the close only; returns the value for column 0."""
    op = p[OP]
    o = p[OFFSET]
    if op == SMA:
        return averages.sma(s, o, p[P0], x, t)
    if op == EMA:
        return averages.ema(s, o, p[P0], x, t)
    if op == WMA:
        return averages.wma(s, o, p[P0], x, t)
    if op == DEMA:
        return averages.dema(s, o, p[P0], x, t)
    if op == TEMA:
        return averages.tema(s, o, p[P0], x, t)
    if op == RSI:
        return momentum.rsi(s, o, p[P0], x, t)
    if op == ROC:
        return momentum.roc(s, o, p[P0], x, t)
    return momentum.mom(s, o, p[P0], x, t)


@jit
def _bar_step(s, p, f, high, low, close, vol, t):
    """Instances that read more than the close; returns up to three values."""
    op = p[OP]
    o = p[OFFSET]
    nan = np.nan
    if op == MACD:
        return momentum.macd(s, o, p[P0], p[P1], p[P2], close, t)
    if op == BBANDS:
        return volatility.bbands(s, o, p[P0], f[0], f[1], close, t)
    if op == DMI:
        return directional.dmi(s, o, p[P0], high, low, close, t)
    if op == STOCH:
        k, d = oscillators.stoch(s, o, p[P0], p[P1], p[P2], high, low, close, t)
        return k, d, nan
    if op == STDDEV:
        return volatility.stddev(s, o, p[P0], f[0], close, t), nan, nan
    if op == ATR:
        return volatility.atr(s, o, p[P0], high, low, close, t), nan, nan
    if op == WILLR:
        return oscillators.willr(s, o, p[P0], high, low, close, t), nan, nan
    if op == CCI:
        return oscillators.cci(s, o, p[P0], high, low, close, t), nan, nan
    if op == MFI:
        return volume.mfi(s, o, p[P0], high, low, close, vol, t), nan, nan
    if op == OBV:
        return volume.obv(s, o, close, vol, t), nan, nan
    # CHANNEL: P1 = 1 for a maximum over highs (else minimum over lows), P2 = 1 to exclude the bar
    x = high if p[P1] == 1 else low
    return channels.channel(s, o, p[P0], x, t, p[P1] == 1, p[P2] == 1), nan, nan


@jit
def run(program, floats, state, inst, high, low, close, vol, out):
    """Advance every instance over the batch; write row ``j`` of ``out`` for bar ``j``.

    ``out`` must be NaN-filled by the caller (warm-up values are left alone only where no
    instance writes). Returns −1, or the position of the first bar whose instrument index is out
    of range — in which case nothing was updated.
    """
    capacity = state.shape[0]
    for j in range(inst.shape[0]):
        if inst[j] < 0 or inst[j] >= capacity:
            return j
    for j in range(inst.shape[0]):
        s = state[inst[j]]
        t = np.int64(s[0])
        for k in range(program.shape[0]):
            p = program[k]
            if p[OP] <= MOM:
                _put(out, j, p[COL0], _price_step(s, p, close[j], t))
            else:
                _put3(out, j, p, _bar_step(s, p, floats[k], high[j], low[j], close[j], vol[j], t))
        s[0] = t + 1
    return -1
