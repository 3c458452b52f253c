"""Tick -> bar aggregation: per (instrument x timeframe) state in preallocated arrays, one numba call per batch.

Rules (the stream, the CLI and backtests share them):

* Timeframes ``1m 5m 15m 1h 1d`` aligned to the NSE session 09:15-15:30 IST
  (:func:`engine.domain.bar_span`). Bar time = bar open. Volume = sum of qty.
  Open and close are the prices of the earliest and latest tick by exchange
  time (ties: arrival order), so ticks reordered within the lateness give the
  bar that the time-sorted ticks give.
* A tick is rejected (the rules of :mod:`engine.domain`), in this order of checks, for
  ``bad_price`` (NaN, <= 0 or >= 1e9), ``bad_qty`` (NaN, < 0 or >= 1e12), ``out_of_session`` (before
  09:15:00 or at/after 15:30:00 IST; weekends and holidays are *not* rejected:
  the exchange calendar is the feed's business) and ``late``. A rejected tick
  changes no state.
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
    in_session,
    price_ok,
    qty_ok,
)
from engine.errors import ConfigError, Inconsistency

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
        self._max_ts, self._bi, self._bf = _fresh_state(n_instruments)
        self._out_i = np.empty((max(capacity, _MAX_CLOSES_PER_TICK), 4), dtype=np.int64)
        self._out_f = np.empty((len(self._out_i), 5), dtype=np.float64)
        self._n_out = 0

    def grow(self, n_instruments: int) -> None:
        """Make room for instruments up to ``n_instruments - 1`` (new ones start empty); never shrinks.

        For tools that discover symbols as they read; the stream sizes it once from the registry.
        """
        extra = n_instruments - self.n_instruments
        if extra > 0:
            self.n_instruments = n_instruments
            grown = [np.concatenate([old, new]) for old, new in zip(self._state(), _fresh_state(extra))]
            self._max_ts, self._bi, self._bf = grown

    def update(self, inst: np.ndarray, ts_ns: np.ndarray, price: np.ndarray, qty: np.ndarray) -> np.ndarray:
        """Apply a batch of ticks in array order; return the int8 status of each (0 = accepted).

        Bars closed by these ticks wait for :meth:`take_closed`. Raise ``ValueError``
        on arrays of unequal length, or on an instrument index out of range (a
        caller bug: the ticks before it are applied, the rest are not).
        """
        inst = np.ascontiguousarray(inst, dtype=np.int64)
        ts_ns = np.ascontiguousarray(ts_ns, dtype=np.int64)
        price = np.ascontiguousarray(price, dtype=np.float64)
        qty = np.ascontiguousarray(qty, dtype=np.float64)
        n = len(inst)
        if not len(ts_ns) == len(price) == len(qty) == n:
            raise ValueError("inst, ts_ns, price and qty must have the same length")
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
        bars = self._bi[idx]
        newest_end = np.where(bars[..., _OPEN] == EMPTY, EMPTY, bars[..., _END]).max(axis=(1, 2))
        self._advance(idx, np.where(newest_end == EMPTY, EMPTY, newest_end + self.lateness_ns))

    def closed_through(self, inst_indices: np.ndarray) -> int | None:
        """The time through which every bar of ``inst_indices`` that will ever close has closed, or None before
        any of them ticked: the lowest clock of the instruments that have one, minus the lateness."""
        clocks = self._max_ts[self._indices(inst_indices)]
        clocks = clocks[clocks != EMPTY]
        return int(clocks.min()) - self.lateness_ns if len(clocks) else None

    def roll_day(self, inst_indices: np.ndarray) -> None:
        """Once one of ``inst_indices`` has ticked on a later IST day, close the earlier days' bars of the others.

        Without it, an instrument that does not trade today would hold yesterday's last bars (and
        :meth:`closed_through`) back until its next tick. Idempotent.
        """
        idx = self._indices(inst_indices)
        clocks = self._max_ts[idx]
        ticked = clocks != EMPTY
        if not ticked.any():
            return
        days = (clocks[ticked] + IST_OFFSET_NS) // DAY_NS
        if days.min() == days.max():
            return
        day_open = int(days.max()) * DAY_NS + SESSION_OPEN_NS - IST_OFFSET_NS
        stale = idx[ticked][days < days.max()]
        self._advance(stale, np.full(len(stale), day_open + self.lateness_ns, dtype=np.int64))

    def take_closed(self) -> ClosedBars:
        """Bars closed since the last call, in closing order; the buffer is emptied."""
        n, i, f = self._n_out, self._out_i, self._out_f
        if n == 0:
            return _NO_BARS
        self._n_out = 0
        return ClosedBars(
            i[:n, 0].astype(np.int32), i[:n, 1].astype(np.int8), i[:n, 2].copy(),
            f[:n, 0].copy(), f[:n, 1].copy(), f[:n, 2].copy(), f[:n, 3].copy(), f[:n, 4].copy(), i[:n, 3].copy(),
        )  # fmt: skip

    def clear(self, inst_indices: np.ndarray) -> None:
        """Forget all state of ``inst_indices`` (e.g. a partition assigned with no checkpoint)."""
        idx = self._indices(inst_indices)
        for array, fresh in zip(self._state(), _fresh_state(len(idx))):
            array[idx] = fresh

    def snapshot(self, inst_indices: np.ndarray) -> bytes:
        """State of ``inst_indices`` (open bars, clocks) as bytes: a fixed header, then raw arrays.

        Take it between batches, after :meth:`take_closed` (raises
        :class:`Inconsistency` if closed bars are pending, since they are not in it).
        """
        if self._n_out:
            raise Inconsistency("take_closed() before snapshot(): closed bars are pending")
        idx = self._indices(inst_indices)
        header = struct.pack(_HEADER, _MAGIC, _VERSION, len(idx), N_TIMEFRAMES, SLOTS)
        return header + b"".join(a[idx].astype(a.dtype.newbyteorder("<")).tobytes() for a in self._state())

    def restore(self, inst_indices: np.ndarray, blob: bytes) -> None:
        """Load a :meth:`snapshot` of the same instruments in the same order; then continuing equals
        never having stopped. Raise :class:`Inconsistency` on a blob that does not fit."""
        idx = self._indices(inst_indices)
        offset = struct.calcsize(_HEADER)
        try:
            magic, version, n, n_tf, slots = struct.unpack_from(_HEADER, blob)
        except struct.error:
            raise Inconsistency("bar snapshot is truncated") from None
        if (magic, version, n_tf, slots) != (_MAGIC, _VERSION, N_TIMEFRAMES, SLOTS) or n != len(idx):
            raise Inconsistency(f"bar snapshot does not fit: {n} instruments, version {version}; want {len(idx)}")
        arrays = self._state()
        want = offset + sum(a[idx].nbytes for a in arrays)
        if len(blob) != want:
            raise Inconsistency(f"bar snapshot has {len(blob)} bytes, want {want}")
        for a in arrays:
            part = np.frombuffer(blob, dtype=a.dtype.newbyteorder("<"), count=len(idx) * a[0].size, offset=offset)
            a[idx] = part.reshape((len(idx),) + a.shape[1:])
            offset += part.nbytes

    def _state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The state arrays, in the order the kernels and snapshots take them."""
        return self._max_ts, self._bi, self._bf

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


def _fresh_state(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """State of ``n`` instruments with no tick yet.

    ``max_ts[inst]``: the instrument's clock. ``bi[inst, tf, slot]``: open time,
    end, tick count, exchange times of the open and close ticks (int64);
    ``bf[inst, tf, slot]``: open, high, low, close, volume. Slot 1 holds the
    newer open bar; slot 0 an older one still within the lateness, or nothing.
    """
    bi = np.zeros((n, N_TIMEFRAMES, SLOTS, 5), dtype=np.int64)
    bi[..., _OPEN] = EMPTY
    return np.full(n, EMPTY, dtype=np.int64), bi, np.zeros((n, N_TIMEFRAMES, SLOTS, 5), dtype=np.float64)


def _no_bars() -> ClosedBars:
    """The shared, read-only empty result: most batches close no bar."""
    ints = np.empty(0, np.int64)
    bars = ClosedBars(np.empty(0, np.int32), np.empty(0, np.int8), ints, *(np.empty(0) for _ in range(5)), ints)
    for column in bars.__slots__:
        getattr(bars, column).flags.writeable = False
    return bars


_NO_BARS = _no_bars()
_OPEN, _END, _COUNT, _FIRST, _LAST = range(5)  # fields of bi
_O, _H, _L, _C, _V = range(5)  # fields of bf
_MAGIC = b"SWBARS\x00\x00"
_VERSION = 2
_HEADER = "<8sIIII"


@numba.njit(cache=True, nogil=True)
def _update(inst, ts, price, qty, start, lateness, status, max_ts, bi, bf, out_i, out_f, n_out):
    """Apply ticks ``start..`` until done or the output buffer may overflow; return (next tick, n_out).

    The common path (a tick into an open bar) is inline on purpose: handing the
    state arrays to a helper costs reference counting on every call (measured:
    ~25x slower).
    """
    for k in range(start, ts.shape[0]):
        if n_out + _MAX_CLOSES_PER_TICK > out_i.shape[0]:
            return k, n_out
        i, t, p, q = inst[k], ts[k], price[k], qty[k]
        if i < 0 or i >= max_ts.shape[0]:
            raise ValueError("instrument index out of range")
        status[k] = _check(t, p, q, max_ts[i], lateness)
        if status[k] != 0:
            continue
        max_ts[i] = max(max_ts[i], t)
        wm = max_ts[i] - lateness
        day = t - (t + IST_OFFSET_NS) % DAY_NS  # the UTC instant of this tick's IST midnight
        for tf in range(N_TIMEFRAMES):
            for s in range(SLOTS):
                if bi[i, tf, s, _OPEN] != EMPTY and bi[i, tf, s, _END] <= wm:
                    n_out = _emit(i, tf, s, bi, bf, out_i, out_f, n_out)
            b = day + SESSION_OPEN_NS + (t - day - SESSION_OPEN_NS) // _WIDTHS[tf] * _WIDTHS[tf]
            s = 1 if b == bi[i, tf, 1, _OPEN] else 0 if b == bi[i, tf, 0, _OPEN] else -1
            if s < 0:
                end = min(b + _WIDTHS[tf], day + SESSION_CLOSE_NS)
                n_out = _open_bar(i, tf, b, end, t, p, q, bi, bf, out_i, out_f, n_out)
                continue
            if t < bi[i, tf, s, _FIRST]:  # open and close follow exchange time, ties arrival order
                bi[i, tf, s, _FIRST] = t
                bf[i, tf, s, _O] = p
            if t >= bi[i, tf, s, _LAST]:
                bi[i, tf, s, _LAST] = t
                bf[i, tf, s, _C] = p
            bf[i, tf, s, _H] = max(bf[i, tf, s, _H], p)
            bf[i, tf, s, _L] = min(bf[i, tf, s, _L], p)
            bf[i, tf, s, _V] += q
            bi[i, tf, s, _COUNT] += 1
    return ts.shape[0], n_out


# The tick rules of engine/domain.py, compiled into the kernel. numba keys its on-disk cache of the
# kernels on this file's source alone, so an edit to a rule or a constant of engine/domain.py needs
# their cache files (bars.*.nbi, bars.*.nbc) deleted to take effect.
_price_ok, _qty_ok, _in_session = (numba.njit(rule, nogil=True) for rule in (price_ok, qty_ok, in_session))


@numba.njit(cache=True, nogil=True)
def _check(t, p, q, clock, lateness):
    """Status of one tick: 0 if usable, else the first failing Reason.status."""
    if not _price_ok(p):
        return _BAD_PRICE
    if not _qty_ok(q):
        return _BAD_QTY
    if not _in_session(t):
        return _OUT_OF_SESSION
    if clock != EMPTY and t < clock - lateness:
        return _LATE
    return 0


@numba.njit(cache=True, nogil=True)
def _advance(idx, targets, lateness, max_ts, bi, bf, out_i, out_f, n_out):
    """Raise the clocks of ``idx`` to ``targets`` and close what that makes due; return n_out."""
    for j in range(idx.shape[0]):
        i = idx[j]
        max_ts[i] = max(max_ts[i], targets[j])
        if max_ts[i] == EMPTY:
            continue
        for tf in range(N_TIMEFRAMES):
            for s in range(SLOTS):
                if bi[i, tf, s, _OPEN] != EMPTY and bi[i, tf, s, _END] <= max_ts[i] - lateness:
                    n_out = _emit(i, tf, s, bi, bf, out_i, out_f, n_out)
    return n_out


@numba.njit(cache=True, nogil=True)
def _open_bar(i, tf, b, end, t, p, q, bi, bf, out_i, out_f, n_out):
    """Open bar ``b`` of series (i, tf) with its first tick; return n_out.

    Every open bar ends after the watermark, as does ``b`` (the tick is not
    late), and lateness < 1 min <= any bar, so at most two bars are open: ``b``
    is either newer than all (slot 1 moves down to slot 0, which is then empty)
    or older than slot 1 (slot 0 is then empty). An occupied slot 0 is closed
    first all the same, so no bar can ever be lost.
    """
    if bi[i, tf, 1, _OPEN] == EMPTY or b > bi[i, tf, 1, _OPEN]:
        if bi[i, tf, 0, _OPEN] != EMPTY:
            n_out = _emit(i, tf, 0, bi, bf, out_i, out_f, n_out)
        bi[i, tf, 0, :] = bi[i, tf, 1, :]
        bf[i, tf, 0, :] = bf[i, tf, 1, :]
        s = 1
    else:
        if bi[i, tf, 0, _OPEN] != EMPTY:
            n_out = _emit(i, tf, 0, bi, bf, out_i, out_f, n_out)
        s = 0
    bi[i, tf, s, _OPEN], bi[i, tf, s, _END], bi[i, tf, s, _COUNT] = b, end, 1
    bi[i, tf, s, _FIRST], bi[i, tf, s, _LAST] = t, t
    bf[i, tf, s, _O], bf[i, tf, s, _H], bf[i, tf, s, _L], bf[i, tf, s, _C], bf[i, tf, s, _V] = p, p, p, p, q
    return n_out


@numba.njit(cache=True, nogil=True)
def _emit(i, tf, s, bi, bf, out_i, out_f, n_out):
    """Append bar (i, tf, s) to the output and free its slot; return n_out + 1."""
    out_i[n_out, 0], out_i[n_out, 1] = i, tf
    out_i[n_out, 2], out_i[n_out, 3] = bi[i, tf, s, _OPEN], bi[i, tf, s, _COUNT]
    out_f[n_out, :] = bf[i, tf, s, :]
    bi[i, tf, s, _OPEN] = EMPTY
    return n_out + 1
