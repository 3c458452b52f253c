"""Domain types of the market-data core: ticks, bars, timeframes, the NSE session, reject reasons.

Times are integers: nanoseconds since the Unix epoch, UTC (``ts_ns``). The NSE
session is 09:15:00 (inclusive) to 15:30:00 (exclusive) Asia/Kolkata, and
India Standard Time is UTC+05:30 with no daylight saving, so session and bar
boundaries are fixed-offset integer arithmetic (see :func:`bar_span`).

The hot path does not build these objects per tick: it moves columnar numpy
arrays (``engine.ticks``, ``engine.bars``) and crosses into :class:`Tick` and
:class:`Bar` only at the edges (feeds, sinks, tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from typing import TypeAlias

import numpy as np

from engine.errors import ConfigError

NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
DAY_NS = 86_400 * NS_PER_S

#: India Standard Time: UTC+05:30, no DST.
IST = timezone(timedelta(hours=5, minutes=30), "IST")
IST_OFFSET_NS = (5 * 60 + 30) * NS_PER_MIN
#: Session open and close, as nanoseconds after local (IST) midnight.
SESSION_OPEN_NS = (9 * 60 + 15) * NS_PER_MIN
SESSION_CLOSE_NS = (15 * 60 + 30) * NS_PER_MIN
SESSION_NS = SESSION_CLOSE_NS - SESSION_OPEN_NS
#: Usable ticks have 0 < price < MAX_PRICE and 0 <= qty < MAX_QTY (the database holds prices < 1e10).
MAX_PRICE = 1e9
MAX_QTY = 1e12
#: Usable ticks have exchange times in [2000-01-01, 2100-01-01) UTC.
TIME_MIN_NS = 946_684_800 * NS_PER_S
TIME_MAX_NS = 4_102_444_800 * NS_PER_S


class Timeframe(IntEnum):
    """Bar timeframes. The int value is the timeframe code used in arrays (``tf``)."""

    M1 = 0
    M5 = 1
    M15 = 2
    H1 = 3
    D1 = 4

    @property
    def label(self) -> str:
        """The wire and database spelling: ``1m 5m 15m 1h 1d``."""
        return _LABELS[self]

    @property
    def width_ns(self) -> int:
        """Nominal bar width; ``1d`` is the session (6 h 15 min). The last ``1h`` bar is cut at 15:30."""
        return _WIDTHS_NS[self]

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        """``"5m"`` -> :attr:`M5`; raise :class:`ConfigError` listing the valid labels."""
        for tf in cls:
            if tf.label == text:
                return tf
        raise ConfigError(f"unknown timeframe {text!r}; use one of {', '.join(t.label for t in cls)}")


_LABELS = {Timeframe.M1: "1m", Timeframe.M5: "5m", Timeframe.M15: "15m", Timeframe.H1: "1h", Timeframe.D1: "1d"}
_WIDTHS_NS = {
    Timeframe.M1: NS_PER_MIN,
    Timeframe.M5: 5 * NS_PER_MIN,
    Timeframe.M15: 15 * NS_PER_MIN,
    Timeframe.H1: 60 * NS_PER_MIN,
    Timeframe.D1: SESSION_NS,
}
TIMEFRAMES: tuple[Timeframe, ...] = tuple(Timeframe)
N_TIMEFRAMES = len(TIMEFRAMES)


class Reason(StrEnum):
    """Why a tick was rejected. The values are stable codes: the DLQ and metrics carry them."""

    BAD_JSON = "bad_json"
    MISSING_FIELD = "missing_field"
    BAD_PRICE = "bad_price"
    BAD_QTY = "bad_qty"
    BAD_TIME = "bad_time"
    UNKNOWN_SYMBOL = "unknown_symbol"
    OUT_OF_SESSION = "out_of_session"
    LATE = "late"
    #: a forwarded tick that belongs to yet another partition (workers disagree on the partition count)
    MISROUTED = "misrouted"
    #: a line larger than a whole Kafka message may be (``SHAREWISE_MAX_MESSAGE_BYTES``); dead-lettered by the feed
    TOO_LARGE = "too_large"

    @property
    def status(self) -> int:
        """Nonzero int8 status code used by the numba kernels (0 means accepted)."""
        return REASONS.index(self) + 1

    @staticmethod
    def from_status(status: int) -> Reason:
        return REASONS[status - 1]


REASONS: tuple[Reason, ...] = tuple(Reason)


# The rules of a usable tick, each written once. Each takes a number or a numpy array (then it
# answers elementwise, so a batch is judged in one pass), and numba compiles the same function for
# the bar kernel (engine/bars.py: its numba cache does not notice an edit here, see there). The
# order in which they are judged is the decoders' and the kernel's, as the docstrings of
# engine/ticks.py and engine/bars.py document it.

#: what a tick rule takes (a value, or one per tick) and answers (a bool, or one per tick)
Num: TypeAlias = int | float | np.ndarray
Verdict: TypeAlias = bool | np.ndarray


def price_ok(price: Num) -> Verdict:
    """``0 < price < MAX_PRICE``; false for NaN."""
    return (price > 0.0) & (price < MAX_PRICE)


def qty_ok(qty: Num) -> Verdict:
    """``0 <= qty < MAX_QTY``; false for NaN."""
    return (qty >= 0.0) & (qty < MAX_QTY)


def time_ok(t: Num, unit_ns: int = 1) -> Verdict:
    """``TIME_MIN_NS <= t < TIME_MAX_NS`` for a time ``t`` counted in units of ``unit_ns`` since the epoch.

    Epoch milliseconds are judged before they are scaled to nanoseconds, which could overflow int64.
    """
    return (t >= TIME_MIN_NS // unit_ns) & (t < TIME_MAX_NS // unit_ns)


def in_session(ts_ns: Num) -> Verdict:
    """``ts_ns`` lies in [09:15, 15:30) IST of its day (any weekday, weekends included)."""
    tod = (ts_ns + IST_OFFSET_NS) % DAY_NS
    return (tod >= SESSION_OPEN_NS) & (tod < SESSION_CLOSE_NS)


def bar_span(ts_ns: int, tf: Timeframe) -> tuple[int, int]:
    """``(open_ns, end_ns)`` of the ``tf`` bar holding in-session ``ts_ns``; the end is exclusive.

    Bars are aligned to the session open: 1h bars open at 09:15, 10:15, ..., 15:15
    (the last one ends at 15:30); the 1d bar is 09:15-15:30. The numba kernel in
    ``engine.bars`` implements the same arithmetic.
    """
    local = ts_ns + IST_OFFSET_NS
    day = local - local % DAY_NS
    since_open = local - day - SESSION_OPEN_NS
    open_local = day + SESSION_OPEN_NS + since_open - since_open % tf.width_ns
    end_local = min(open_local + tf.width_ns, day + SESSION_CLOSE_NS)
    return open_local - IST_OFFSET_NS, end_local - IST_OFFSET_NS


def ns_to_datetime(ts_ns: int, tz: timezone = timezone.utc) -> datetime:
    """Aware datetime for ``ts_ns`` (microsecond precision: sub-microsecond digits are dropped)."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc).astimezone(tz) + timedelta(microseconds=ts_ns // 1000)


def datetime_to_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch for an aware datetime; raise ``ValueError`` for a naive one."""
    if dt.utcoffset() is None:
        raise ValueError("time has no UTC offset")
    return (dt - _EPOCH) // _MICROSECOND * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print: ``qty`` is the quantity traded since the symbol's previous tick.

    ``ts_ns`` is the exchange timestamp (ns since epoch, UTC). Construction does
    not validate; ``engine.ticks`` validates wire input and the bar kernel
    re-checks price, quantity, session and lateness.
    """

    symbol: str
    ts_ns: int
    price: float
    qty: float

    @property
    def time(self) -> datetime:
        """Exchange time as an aware UTC datetime."""
        return ns_to_datetime(self.ts_ns)


@dataclass(frozen=True, slots=True)
class Bar:
    """A closed OHLCV bar of one symbol and timeframe; ``open_ns`` (the bar time) is its open.

    ``volume`` is the sum of the accepted ticks' quantities, ``ticks`` their count.
    """

    symbol: str
    timeframe: Timeframe
    open_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    ticks: int

    @property
    def time(self) -> datetime:
        """Bar open time in IST, e.g. ``2026-01-05 09:15:00+05:30``."""
        return ns_to_datetime(self.open_ns, IST)

    @property
    def end_ns(self) -> int:
        """Exclusive end of the bar (15:30 IST for the last hourly bar and the daily bar)."""
        return bar_span(self.open_ns, self.timeframe)[1]
