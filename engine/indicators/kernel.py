"""The batch kernel: one numba call advances every indicator of a set over a micro-batch.

An indicator set is compiled (by :mod:`engine.indicators.registry`) into a *program*: one int64
row per indicator instance ``[opcode, state offset, out col 0, out col 1, out col 2, p0, p1, p2]``
(an output column of −1 is not wanted) and one float64 row of real parameters ``[f0, f1]``.
State is one float64 row per instrument; slot 0 counts the instrument's bars, each instance
owns the slots from its offset. Bars are processed in batch order, so an instrument may occur
several times in a batch; for each bar every instance steps in turn, the opcode dispatch
inlined. The kernel signature never changes, so it compiles once (and is cached on disk).
"""

from __future__ import annotations

import numpy as np

from engine.indicators import averages, channels, directional, momentum, oscillators, volatility, volume
from engine.indicators.jit import entry, jit, jit_inline
from engine.indicators.window import NAN

# opcodes
SMA, EMA_CASCADE, WMA, RSI, CHANGE, MACD, STOCH, WILLR, CCI = range(9)
STDDEV, BBANDS, ATR, DMI, OBV, MFI, CHANNEL = range(9, 16)

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


@jit_inline
def _step(s, o, program, floats, k, high, low, close, vol, t):
    """Advance instance ``k`` by one bar: its (up to 3) values. Program rows are indexed, not
    sliced: a row view per instance and bar is measurable here."""
    op, n = program[k, OP], program[k, P0]
    if op == SMA:
        return averages.sma(s, o, n, close, t), NAN, NAN
    if op == EMA_CASCADE:
        return averages.cascade(s, o, n, close, t, program[k, P1])
    if op == WMA:
        return averages.wma(s, o, n, close, t), NAN, NAN
    if op == RSI:
        return momentum.rsi(s, o, n, close, t), NAN, NAN
    if op == CHANGE:
        rate, difference = momentum.change(s, o, n, close, t)
        return rate, difference, NAN
    if op == MACD:
        return momentum.macd(s, o, n, program[k, P1], program[k, P2], close, t)
    if op == STOCH:
        slow_k, slow_d = oscillators.stoch(s, o, n, program[k, P1], program[k, P2], high, low, close, t)
        return slow_k, slow_d, NAN
    if op == WILLR:
        return oscillators.willr(s, o, n, high, low, close, t), NAN, NAN
    if op == CCI:
        return oscillators.cci(s, o, n, high, low, close, t), NAN, NAN
    if op == STDDEV:
        return volatility.stddev(s, o, n, floats[k, 0], close, t), NAN, NAN
    if op == BBANDS:
        return volatility.bbands(s, o, n, floats[k, 0], floats[k, 1], close, t)
    if op == ATR:
        return volatility.atr(s, o, n, high, low, close, t), NAN, NAN
    if op == DMI:
        return directional.dmi(s, o, n, high, low, close, t)
    if op == OBV:
        return volume.obv(s, o, close, vol, t), NAN, NAN
    if op == MFI:
        return volume.mfi(s, o, n, high, low, close, vol, t), NAN, NAN
    # CHANNEL: P1 = 1 for a maximum over highs (else minimum over lows), P2 = 1 for the bars before
    is_max = program[k, P1] == 1
    return channels.channel(s, o, n, high if is_max else low, t, is_max, program[k, P2] == 1), NAN, NAN


@jit
def _advance(program, floats, s, width, inst, high, low, close, vol, out):
    """Bar by bar, every instance: all of an instrument's state is touched while it is hot.

    (Instance by instance over the batch was measured too: fewer dispatches, but every
    instance then fetches every instrument's row again, and the state of 2,000 instruments
    does not stay in cache — slower.)
    """
    for j in range(inst.shape[0]):
        base = inst[j] * width
        t = np.int64(s[base])
        s[base] = t + 1
        for k in range(program.shape[0]):
            a, b, c = _step(s, base + program[k, OFFSET], program, floats, k, high[j], low[j], close[j], vol[j], t)
            _put(out, j, program[k, COL0], a)
            _put(out, j, program[k, COL1], b)
            _put(out, j, program[k, COL2], c)


@entry
def run(program, floats, state, inst, high, low, close, vol, out):
    """Advance every instance over the batch; write row ``j`` of ``out`` for bar ``j``.

    Every column of ``out`` is written for every bar (NaN during warm-up), so ``out`` may come
    uninitialised. Bars are processed in batch order, so an instrument may occur several
    times in a batch. Returns −1, or the position of the first bar whose instrument index is
    out of range — in which case nothing was updated.
    """
    capacity, width = state.shape
    for j in range(inst.shape[0]):
        if inst[j] < 0 or inst[j] >= capacity:
            return j
    _advance(program, floats, state.reshape(capacity * width), width, inst, high, low, close, vol, out)
    return -1
