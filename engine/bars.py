"""Tick -> bar aggregation: per (instrument x timeframe) state in preallocated arrays, one numba call per batch.

Rules (the stream, the CLI and backtests share them):

* Timeframes ``1m 5m 15m 1h 1d`` aligned to the NSE session 09:15-15:30 IST
  (:func:`engine.domain.bar_span`). Bar time = bar open. Volume = sum of qty.
  Open and close are the prices of the earliest and latest tick by exchange
  time (ties: arrival order), so ticks reordered within the lateness give the
  bar that the time-sorted ticks give.
* A tick is rejected, in this order of checks, for ``bad_price`` (NaN, inf or
  <= 0), ``bad_qty`` (NaN, inf or < 0), ``out_of_session`` (before 09:15:00 or
  at/after 15:30:00 IST; weekends and holidays are *not* rejected: the exchange
  calendar is the feed's business) and ``late``. A rejected tick changes no state.
* Lateness: each instrument has a clock ``max_ts``, the greatest exchange time
  of its accepted ticks (raised also by :meth:`BarAggregator.advance_watermark`
  and :meth:`BarAggregator.flush`). A tick is ``late`` when
  ``ts < max_ts - lateness``; otherwise it updates its bar, which is still open.
* A bar closes once its instrument's clock passes its end plus the lateness
  (``end <= max_ts - lateness``): when a tick of a later bar arrives
  (``lateness`` after the boundary), when the watermark passes, or on flush.
  With ``lateness < 60 s`` at most two bars per series are open at once (the
  one holding ``max_ts - lateness`` and the one holding ``max_ts``), hence two
  slots per series. Lateness of a minute or more is refused.

Closed bars leave in a deterministic order that depends only on the sequence of
calls, never on how ticks were split into batches: in tick order; for one tick
by timeframe code, older bar first; for a watermark/flush by instrument, then
timeframe, older first. Within one series (``inst * N_TIMEFRAMES + tf``) bars
always leave in time order, which is what the indicator kernels need.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

import numba
import numpy as np

from engine.domain import (
    DAY_NS,
    IST_OFFSET_NS,
    N_TIMEFRAMES,
    NS_PER_S,
    SESSION_CLOSE_NS,
    SESSION_OPEN_NS,
    TIMEFRAMES,
    Bar,
    Reason,
    Timeframe,
)
from engine.errors import ConfigError, Inconsistency
from engine.settings import Settings

EMPTY = np.iinfo(np.int64).min
SLOTS = 2
_WIDTHS = np.array([tf.width_ns for tf in TIMEFRAMES], dtype=np.int64)
_MAX_CLOSES_PER_TICK = SLOTS * N_TIMEFRAMES
_BAD_PRICE, _BAD_QTY = Reason.BAD_PRICE.status, Reason.BAD_QTY.status
_OUT_OF_SESSION, _LATE = Reason.OUT_OF_SESSION.status, Reason.LATE.status


@dataclass(frozen=True, slots=True)
class ClosedBars:
    """Closed bars, columnar. ``series = inst * N_TIMEFRAMES + tf`` indexes per-series indicator state."""

    inst: np.ndarray  # int32
    tf: np.ndarray  # int8, Timeframe code
    open_ns: np.ndarray  # int64, bar open (UTC ns)
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    ticks: np.ndarray  # int64, accepted ticks in the bar

    def __len__(self) -> int:
        return len(self.open_ns)

    @property
    def series(self) -> np.ndarray:
        return self.inst.astype(np.int64) * N_TIMEFRAMES + self.tf

    def select(self, mask: np.ndarray) -> ClosedBars:
        """The rows where ``mask`` is true (or at the given indices), same column order."""
        return ClosedBars(*(getattr(self, f)[mask] for f in self.__slots__))

    def to_bars(self, symbols: Sequence[str]) -> list[Bar]:
        """:class:`Bar` objects (an edge helper: sinks, tests); ``symbols[inst]`` names each instrument."""
        return [
            Bar(symbols[i], Timeframe(t), int(ts), float(o), float(h), float(lo), float(c), float(v), int(n))
            for i, t, ts, o, h, lo, c, v, n in zip(
                self.inst, self.tf, self.open_ns, self.open, self.high, self.low, self.close, self.volume, self.ticks
            )
        ]


class BarAggregator:
    """Open bars of ``n_instruments`` x 5 timeframes; feed it ticks in batches, take closed bars.

    Not thread-safe. Typical hot-path use, once per micro-batch::

        status = agg.update(inst, ts_ns, price, qty)   # int8 per tick: 0 accepted, else Reason.status
        bars = agg.take_closed()
    """

    def __init__(self, n_instruments: int, lateness_s: float = 2.0, capacity: int = 4096) -> None:
        if not 0 <= lateness_s < 60:
            raise ConfigError(f"allowed lateness must be >= 0 and < 60 seconds, got {lateness_s}")
        self.n_instruments = n_instruments
        self.lateness_ns = int(round(lateness_s * NS_PER_S))
        shape = (n_instruments, N_TIMEFRAMES, SLOTS)
        self._max_ts = np.full(n_instruments, EMPTY, dtype=np.int64)
        self._open = np.full(shape, EMPTY, dtype=np.int64)
        self._end = np.full(shape, EMPTY, dtype=np.int64)
        self._ohlcv = np.zeros(shape + (5,), dtype=np.float64)
        self._count = np.zeros(shape, dtype=np.int64)
        self._span = np.zeros(shape + (2,), dtype=np.int64)  # exchange times of the open and close ticks
        self._out_i = np.empty((max(capacity, _MAX_CLOSES_PER_TICK), 4), dtype=np.int64)
        self._out_f = np.empty((len(self._out_i), 5), dtype=np.float64)
        self._n_out = 0

    @classmethod
    def from_settings(cls, settings: Settings, n_instruments: int) -> BarAggregator:
        return cls(n_instruments, settings.allowed_lateness_s)

    def grow(self, n_instruments: int) -> None:
        """Make room for instruments up to ``n_instruments - 1`` (new ones start empty); never shrinks.

        For tools that discover symbols as they read; the stream sizes it once from the registry.
        """
        extra = n_instruments - self.n_instruments
        if extra <= 0:
            return
        self.n_instruments = n_instruments
        fresh = BarAggregator(extra, 0.0, capacity=1)._state()
        for name, add in zip(_STATE, fresh):
            setattr(self, name, np.concatenate([getattr(self, name), add]))

    def update(self, inst: np.ndarray, ts_ns: np.ndarray, price: np.ndarray, qty: np.ndarray) -> np.ndarray:
        """Apply a batch of ticks in array order; return the int8 status of each (0 = accepted).

        Bars closed by these ticks wait for :meth:`take_closed`. Raise ``ValueError``
        on arrays of unequal length or an instrument index out of range.
        """
        inst = np.ascontiguousarray(inst, dtype=np.int64)
        ts_ns = np.ascontiguousarray(ts_ns, dtype=np.int64)
        price = np.ascontiguousarray(price, dtype=np.float64)
        qty = np.ascontiguousarray(qty, dtype=np.float64)
        n = len(inst)
        if not len(ts_ns) == len(price) == len(qty) == n:
            raise ValueError("inst, ts_ns, price and qty must have the same length")
        if n and (inst.min() < 0 or inst.max() >= self.n_instruments):
            raise ValueError(f"instrument index out of range 0..{self.n_instruments - 1}")
        status = np.zeros(n, dtype=np.int8)
        done = 0
        while True:
            done, self._n_out = _update(
                inst, ts_ns, price, qty, done, self.lateness_ns, status, *self._state(), *self._out()
            )
            if done == n:
                return status
            self._grow(self._n_out + _MAX_CLOSES_PER_TICK)

    def advance_watermark(self, ts_ns: int, inst_indices: np.ndarray | None = None) -> None:
        """Declare exchange time ``ts_ns`` reached (for ``inst_indices``, default all).

        Raises those instruments' clocks to at least ``ts_ns``: bars whose end is
        ``<= ts_ns - lateness`` close, and later ticks before ``ts_ns - lateness`` are late.
        Idempotent; a watermark below an instrument's clock changes nothing.
        """
        idx = self._indices(inst_indices)
        self._advance(idx, np.full(len(idx), ts_ns, dtype=np.int64))

    def flush(self, inst_indices: np.ndarray | None = None) -> None:
        """Close every open bar (of ``inst_indices``, default all): end of input.

        Each instrument's clock moves to its newest bar's end plus the lateness, so
        a later tick for a flushed bar is rejected as ``late`` rather than
        reopening a bar that already left.
        """
        idx = self._indices(inst_indices)
        newest_end = np.where(self._open[idx] == EMPTY, EMPTY, self._end[idx]).max(axis=(1, 2))
        self._advance(idx, np.where(newest_end == EMPTY, EMPTY, newest_end + self.lateness_ns))

    def take_closed(self) -> ClosedBars:
        """Bars closed since the last call, in closing order; the buffer is emptied."""
        n, i, f = self._n_out, self._out_i, self._out_f
        self._n_out = 0
        return ClosedBars(
            i[:n, 0].astype(np.int32), i[:n, 1].astype(np.int8), i[:n, 2].copy(),
            f[:n, 0].copy(), f[:n, 1].copy(), f[:n, 2].copy(), f[:n, 3].copy(), f[:n, 4].copy(), i[:n, 3].copy(),
        )  # fmt: skip

    def clear(self, inst_indices: np.ndarray) -> None:
        """Forget all state of ``inst_indices`` (e.g. a partition assigned with no checkpoint)."""
        idx = self._indices(inst_indices)
        self._max_ts[idx] = EMPTY
        self._open[idx] = EMPTY
        self._end[idx] = EMPTY
        self._ohlcv[idx] = 0.0
        self._count[idx] = 0
        self._span[idx] = 0

    def snapshot(self, inst_indices: np.ndarray) -> bytes:
        """State of ``inst_indices`` (open bars, clocks) as bytes: a fixed header, then raw arrays.

        Take it between batches, after :meth:`take_closed` (raises
        :class:`Inconsistency` if closed bars are pending, since they are not in it).
        """
        if self._n_out:
            raise Inconsistency("take_closed() before snapshot(): closed bars are pending")
        idx = self._indices(inst_indices)
        header = struct.pack(_HEADER, _MAGIC, _VERSION, len(idx), N_TIMEFRAMES, SLOTS)
        parts = [a[idx].astype(a.dtype.newbyteorder("<")).tobytes() for a in self._state()]
        return header + b"".join(parts)

    def restore(self, inst_indices: np.ndarray, blob: bytes) -> None:
        """Load a :meth:`snapshot` of the same instruments in the same order; then continuing equals
        never having stopped. Raise :class:`Inconsistency` on a blob that does not fit."""
        idx = self._indices(inst_indices)
        size = struct.calcsize(_HEADER)
        try:
            magic, version, n, n_tf, slots = struct.unpack_from(_HEADER, blob)
        except struct.error:
            raise Inconsistency("bar snapshot is truncated") from None
        if (magic, version, n_tf, slots) != (_MAGIC, _VERSION, N_TIMEFRAMES, SLOTS) or n != len(idx):
            raise Inconsistency(f"bar snapshot does not fit: {n} instruments, version {version}; want {len(idx)}")
        arrays = self._state()
        sizes = [a[idx].nbytes for a in arrays]
        if len(blob) != size + sum(sizes):
            raise Inconsistency(f"bar snapshot has {len(blob)} bytes, want {size + sum(sizes)}")
        for a, nbytes in zip(arrays, sizes):
            a[idx] = np.frombuffer(blob, dtype=a.dtype.newbyteorder("<"), count=nbytes // 8, offset=size).reshape(
                (len(idx),) + a.shape[1:]
            )
            size += nbytes

    def _state(self) -> tuple[np.ndarray, ...]:
        """The state arrays, in the order the kernels and snapshots take them."""
        return tuple(getattr(self, name) for name in _STATE)

    def _out(self) -> tuple[np.ndarray, np.ndarray, int]:
        return self._out_i, self._out_f, self._n_out

    def _indices(self, inst_indices: np.ndarray | None) -> np.ndarray:
        if inst_indices is None:
            return np.arange(self.n_instruments, dtype=np.int64)
        idx = np.asarray(inst_indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n_instruments):
            raise ValueError(f"instrument index out of range 0..{self.n_instruments - 1}")
        return idx

    def _advance(self, idx: np.ndarray, targets: np.ndarray) -> None:
        self._grow(self._n_out + len(idx) * _MAX_CLOSES_PER_TICK)
        self._n_out = _advance(idx, targets, self.lateness_ns, *self._state(), *self._out())

    def _grow(self, rows: int) -> None:
        if rows <= len(self._out_i):
            return
        cap = max(rows, 2 * len(self._out_i))
        self._out_i = np.resize(self._out_i, (cap, 4))
        self._out_f = np.resize(self._out_f, (cap, 5))


_STATE = ("_max_ts", "_open", "_end", "_ohlcv", "_count", "_span")
_MAGIC = b"SWBARS\x00\x00"
_VERSION = 1
_HEADER = "<8sIIII"


@numba.njit(cache=True, nogil=True)
def _update(inst, ts, price, qty, start, lateness, status, max_ts, bopen, bend, ohlcv, count, span, out_i, out_f, n_out):
    """Apply ticks ``start..`` until done or the output buffer may overflow; return (next tick, n_out)."""
    cap = out_i.shape[0]
    for k in range(start, ts.shape[0]):
        if n_out + 2 * bopen.shape[1] > cap:
            return k, n_out
        p, q, t, i = price[k], qty[k], ts[k], inst[k]
        tod = (t + IST_OFFSET_NS) % DAY_NS
        if not (p > 0.0 and p < np.inf):
            status[k] = _BAD_PRICE
        elif not (q >= 0.0 and q < np.inf):
            status[k] = _BAD_QTY
        elif tod < SESSION_OPEN_NS or tod >= SESSION_CLOSE_NS:
            status[k] = _OUT_OF_SESSION
        elif max_ts[i] != EMPTY and t < max_ts[i] - lateness:
            status[k] = _LATE
        else:
            if t > max_ts[i]:
                max_ts[i] = t
            day = t - tod  # the UTC instant of this tick's IST midnight
            for tf in range(bopen.shape[1]):
                n_out = _close_due(i, tf, max_ts[i] - lateness, bopen, bend, ohlcv, count, out_i, out_f, n_out)
                n_out = _place(i, tf, t, p, q, day, bopen, bend, ohlcv, count, span, out_i, out_f, n_out)
    return ts.shape[0], n_out


@numba.njit(cache=True, nogil=True)
def _advance(idx, targets, lateness, max_ts, bopen, bend, ohlcv, count, span, out_i, out_f, n_out):
    """Raise the clocks of ``idx`` to ``targets`` and close what that makes due; return n_out."""
    for j in range(idx.shape[0]):
        i = idx[j]
        if targets[j] > max_ts[i]:
            max_ts[i] = targets[j]
        if max_ts[i] == EMPTY:
            continue
        for tf in range(bopen.shape[1]):
            n_out = _close_due(i, tf, max_ts[i] - lateness, bopen, bend, ohlcv, count, out_i, out_f, n_out)
    return n_out


@numba.njit(cache=True, nogil=True)
def _close_due(i, tf, wm, bopen, bend, ohlcv, count, out_i, out_f, n_out):
    """Close the open bars of series (i, tf) that end at or before ``wm``, older first.

    Slot 1 holds the newer bar; slot 0 the older one, or is empty. After this,
    if slot 1 is empty so is slot 0.
    """
    for s in range(2):
        if bopen[i, tf, s] != EMPTY and bend[i, tf, s] <= wm:
            n_out = _emit(i, tf, s, bopen, ohlcv, count, out_i, out_f, n_out)
    return n_out


@numba.njit(cache=True, nogil=True)
def _place(i, tf, t, p, q, day, bopen, bend, ohlcv, count, span, out_i, out_f, n_out):
    """Add tick (t, p, q) to its (i, tf) bar, opening it if needed; return n_out.

    The bar holding ``t`` ends after the watermark (``t >= max_ts - lateness``),
    and at most two such bars exist (lateness < 1 min <= any bar), so it is
    slot 1's, slot 0's, a new newest bar (slot 0 then empty: slot 1 moves down),
    or a new older bar (slot 0 empty).
    """
    width = _WIDTHS[tf]
    since_open = t - day - SESSION_OPEN_NS
    b = day + SESSION_OPEN_NS + since_open - since_open % width
    if bopen[i, tf, 1] == EMPTY or b > bopen[i, tf, 1]:
        if bopen[i, tf, 0] != EMPTY:
            n_out = _emit(i, tf, 0, bopen, ohlcv, count, out_i, out_f, n_out)
        if bopen[i, tf, 1] != EMPTY:
            _move(i, tf, 1, 0, bopen, bend, ohlcv, count, span)
        _open_bar(i, tf, 1, b, min(b + width, day + SESSION_CLOSE_NS), t, p, q, bopen, bend, ohlcv, count, span)
    elif b == bopen[i, tf, 1]:
        _add(i, tf, 1, t, p, q, ohlcv, count, span)
    elif b == bopen[i, tf, 0]:
        _add(i, tf, 0, t, p, q, ohlcv, count, span)
    else:
        _open_bar(i, tf, 0, b, min(b + width, day + SESSION_CLOSE_NS), t, p, q, bopen, bend, ohlcv, count, span)
    return n_out


@numba.njit(cache=True, nogil=True)
def _open_bar(i, tf, s, b, end, t, p, q, bopen, bend, ohlcv, count, span):
    bopen[i, tf, s] = b
    bend[i, tf, s] = end
    ohlcv[i, tf, s, 0] = p
    ohlcv[i, tf, s, 1] = p
    ohlcv[i, tf, s, 2] = p
    ohlcv[i, tf, s, 3] = p
    ohlcv[i, tf, s, 4] = q
    count[i, tf, s] = 1
    span[i, tf, s, 0] = t
    span[i, tf, s, 1] = t


@numba.njit(cache=True, nogil=True)
def _add(i, tf, s, t, p, q, ohlcv, count, span):
    """Open and close follow exchange time, not arrival: a late tick never becomes the close
    unless it is the newest; on equal times arrival order decides."""
    if t < span[i, tf, s, 0]:
        span[i, tf, s, 0] = t
        ohlcv[i, tf, s, 0] = p
    if t >= span[i, tf, s, 1]:
        span[i, tf, s, 1] = t
        ohlcv[i, tf, s, 3] = p
    if p > ohlcv[i, tf, s, 1]:
        ohlcv[i, tf, s, 1] = p
    if p < ohlcv[i, tf, s, 2]:
        ohlcv[i, tf, s, 2] = p
    ohlcv[i, tf, s, 4] += q
    count[i, tf, s] += 1


@numba.njit(cache=True, nogil=True)
def _move(i, tf, src, dst, bopen, bend, ohlcv, count, span):
    bopen[i, tf, dst] = bopen[i, tf, src]
    bend[i, tf, dst] = bend[i, tf, src]
    ohlcv[i, tf, dst, :] = ohlcv[i, tf, src, :]
    count[i, tf, dst] = count[i, tf, src]
    span[i, tf, dst, :] = span[i, tf, src, :]
    bopen[i, tf, src] = EMPTY


@numba.njit(cache=True, nogil=True)
def _emit(i, tf, s, bopen, ohlcv, count, out_i, out_f, n_out):
    out_i[n_out, 0] = i
    out_i[n_out, 1] = tf
    out_i[n_out, 2] = bopen[i, tf, s]
    out_i[n_out, 3] = count[i, tf, s]
    out_f[n_out, :] = ohlcv[i, tf, s, :]
    bopen[i, tf, s] = EMPTY
    return n_out + 1
