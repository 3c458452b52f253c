"""Tick wire format on ``market.ticks``: decode and validate into columns, encode for feeds.

Wire format. A message value is a **tick packet**: newline-delimited JSON, one
tick object per line (``\\n`` or ``\\r\\n``; blank lines are ignored). A single
tick is simply a packet of one line, and an outside producer's single tick may
also be pretty-printed over several lines. A tick object::

    {"symbol": "RELIANCE", "time": 1767584700000, "price": 1502.35, "qty": 12}

* ``symbol``: a listed instrument (``engine.instruments``), exact spelling.
* ``time``: exchange time, either an integer of **epoch milliseconds** (UTC),
  or an ISO 8601 string **with** a UTC offset (``2026-01-05T09:15:00.250+05:30``,
  ``...Z``), microsecond precision. Must fall in 2000-01-01 .. 2100-01-01.
* ``price``: a JSON number, finite, > 0 and < 1e9.
* ``qty``: a JSON number, finite, >= 0 and < 1e12: quantity traded since the
  symbol's previous tick. Other keys are ignored.

A **columnar packet** carries the same ticks more compactly (our own feeds use it)::

    {"packet": 1, "symbols": ["TCS", "INFY"], "sym": [0, 1, 0, …], "time": [1767584700000, …],
     "price": [3500.5, …], "qty": [12, …]}

(the value starts with the bytes ``{"packet":1,``; ``sym`` indexes ``symbols``; ``time`` is
epoch milliseconds). It is
validated column-wise; if any tick in it is bad, each tick is judged alone as the JSON line
``{"symbol","time","price","qty"}`` it stands for, which is also what a reject's original
bytes hold. A value that starts so but is no columnar packet is judged as tick lines.

Validation gives each bad line exactly one reason, the first that applies in
this order: ``bad_json`` (not JSON, or not an object), ``missing_field``,
``bad_price``, ``bad_qty``, ``bad_time``, ``unknown_symbol``,
``out_of_session``. ``late`` needs per-symbol state: the bar aggregator decides
it, and :meth:`DecodedTicks.rejected_by` turns its statuses into rejects with
the original bytes. JSON's non-standard ``NaN``/``Infinity`` are read (then
rejected as ``bad_price``/``bad_qty``), not called ``bad_json``. The rules of price, qty,
time and session are :mod:`engine.domain`'s, which the bar kernel applies too; every path here
(bulk, columnar, line by line) judges with them and gives the same verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Sequence as SequenceABC
from typing import Iterable, Mapping, Sequence

import numpy as np
import orjson

from engine.domain import (
    MAX_PRICE,
    MAX_QTY,
    Reason,
    Tick,
    datetime_to_ns,
    in_session,
    ns_to_datetime,
    price_ok,
    qty_ok,
    time_ok,
)
from engine.instruments import InstrumentRegistry

_FIELDS = ("symbol", "time", "price", "qty")
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Reject:
    """A tick that cannot be used: ``raw`` is its original line, ``reason`` the stable code.

    ``message`` is the index of its message in the decoded batch, ``line`` its
    0-based line within that message.
    """

    message: int
    line: int
    raw: bytes
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class DecodedTicks:
    """The good ticks of a batch of messages as columns, plus the rejects.

    Columns are in message order, then line order: ``inst`` (instrument index,
    int64), ``ts_ns`` (int64), ``price`` and ``qty`` (float64), and where each
    came from: ``message`` and ``line`` (int32).
    """

    inst: np.ndarray
    ts_ns: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    message: np.ndarray
    line: np.ndarray
    rejects: list[Reject]
    lines: Sequence[Sequence[bytes]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.ts_ns)

    def select(self, keep: np.ndarray) -> DecodedTicks:
        """The ticks where the mask ``keep`` is true; rejects and lines are shared, indexes kept."""
        return DecodedTicks(self.inst[keep], self.ts_ns[keep], self.price[keep], self.qty[keep], self.message[keep],
                            self.line[keep], self.rejects, self.lines)

    def rejected_by(self, status: np.ndarray) -> list[Reject]:
        """Rejects for the good ticks whose aggregator ``status`` is nonzero (e.g. ``late``)."""
        out = []
        for k in np.flatnonzero(status):
            m, n = int(self.message[k]), int(self.line[k])
            reason = Reason.from_status(int(status[k]))
            out.append(Reject(m, n, bytes(self.lines[m][n]), reason, _KERNEL_DETAIL[reason]))
        return out


_KERNEL_DETAIL = {
    Reason.LATE: "older than the symbol's newest tick minus the allowed lateness",
    Reason.BAD_PRICE: f"price must be > 0 and < {MAX_PRICE:.0e}",
    Reason.BAD_QTY: f"qty must be >= 0 and < {MAX_QTY:.0e}",
    Reason.OUT_OF_SESSION: "outside the NSE session 09:15-15:30 IST",
}


def decode_packets(values: Sequence[bytes], registry: InstrumentRegistry) -> DecodedTicks:
    """Decode and validate a batch of message values into columns and rejects.

    Never raises on bad input: every non-blank line ends up either as a good
    tick or as exactly one :class:`Reject`. A message whose ticks are all valid
    takes the bulk path (one ``orjson.loads`` for the whole packet, checks on
    arrays); any other message is judged line by line, with the same verdicts.
    """
    chunks: list[tuple[np.ndarray, ...]] = []
    rejects: list[Reject] = []
    all_lines = []
    for m, data in enumerate(values):
        lines, chunk = _decode_message(data, registry.index)
        all_lines.append(lines)
        chunks.append(chunk if chunk is not None else _decode_each(m, lines, registry.index, rejects))
    counts = [len(c[0]) for c in chunks]
    inst, ts, price, qty, line = (np.concatenate([c[k] for c in chunks]) if chunks else _EMPTY[k] for k in range(5))
    message = np.repeat(np.arange(len(values), dtype=np.int32), counts)
    return _drop_out_of_session(DecodedTicks(inst, ts, price, qty, message, line, rejects, all_lines))


_EMPTY = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.int32))
_NUMBER = {int, float}
_INT = {int}


def _decode_message(data: bytes, index: Mapping[str, int]) -> tuple[Sequence[bytes], tuple[np.ndarray, ...] | None]:
    """(lines, columns of all its ticks, or None: judge each line) of one message value."""
    if data.startswith(COLUMNAR_PREFIX):
        columnar = _decode_columnar(data, index)
        if columnar is not None:
            return columnar
    lines = _split(data)
    return lines, _decode_bulk(lines, index)


def _decode_bulk(lines: list[bytes], index: Mapping[str, int]) -> tuple[np.ndarray, ...] | None:
    """All ticks of a message when every line is a valid tick with epoch-ms time; else None (judge each line)."""
    numbers = [n for n, raw in enumerate(lines) if raw] if b"" in lines else None
    body = lines if numbers is None else [lines[n] for n in numbers]
    try:
        objs = orjson.loads(b"[" + b",".join(body) + b"]")
        columns = [o["symbol"] for o in objs], [o["time"] for o in objs], [o["price"] for o in objs], [o["qty"] for o in objs]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    line = np.arange(len(body), dtype=np.int32) if numbers is None else np.array(numbers, dtype=np.int32)
    return _checked(*columns, index, line)


def _checked(syms: list, times: list, prices: list, qtys: list, index: Mapping[str, int],
             line: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Columns as arrays if every tick passes the fast path's checks (epoch-ms time), else None."""
    try:
        inst = [index.get(s) for s in syms]
    except TypeError:  # an unhashable symbol
        return None
    if None in inst:
        return None
    numbers = _numbers(times, prices, qtys)
    return None if numbers is None else (np.array(inst, dtype=np.int64), *numbers, line)


def _numbers(times: list, prices: list, qtys: list) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(ts_ns, price, qty) arrays when every value has the fast path's JSON type and passes the rules, else None."""
    if not (set(map(type, times)) <= _INT and set(map(type, prices)) <= _NUMBER and set(map(type, qtys)) <= _NUMBER):
        return None
    arrays = _arrays(times, prices, qtys)
    if arrays is None or not _usable(*arrays).all():
        return None
    t, p, q = arrays
    return t * _NS_PER_MS, p, q


def _arrays(times: list, prices: list, qtys: list) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Epoch-ms times (int64), prices and quantities (float64); None when a time does not fit int64."""
    try:
        t = np.array(times, dtype=np.int64)
    except OverflowError:
        return None
    return t, np.array(prices, dtype=np.float64), np.array(qtys, dtype=np.float64)


def _usable(t_ms: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per tick: passes the rules of price, qty and time (``engine.domain``); the session is judged last, on all."""
    return price_ok(p) & qty_ok(q) & time_ok(t_ms, _NS_PER_MS)


COLUMNAR_PREFIX = b'{"packet":1,'


class _ColumnarLines(SequenceABC):
    """The ticks of a columnar packet as JSON lines, rendered only when one is asked for (a reject)."""

    __slots__ = ("_symbols", "_cols")

    def __init__(self, symbols: list, cols: tuple[list, ...]) -> None:
        self._symbols, self._cols = symbols, cols

    def __len__(self) -> int:
        return len(self._cols[0])

    def __getitem__(self, n: int) -> bytes:  # type: ignore[override]
        code, t, p, q = (c[n] for c in self._cols)
        known = type(code) is int and 0 <= code < len(self._symbols)
        return orjson.dumps({"symbol": self._symbols[code] if known else code, "time": t, "price": p, "qty": q})


def _decode_columnar(
    data: bytes, index: Mapping[str, int]
) -> tuple[Sequence[bytes], tuple[np.ndarray, ...] | None] | None:
    """(lines, columns or None) of a columnar packet; None for a malformed one, which is judged as tick lines."""
    try:
        doc = orjson.loads(data)
        symbols = doc["symbols"]
        cols = (doc["sym"], doc["time"], doc["price"], doc["qty"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(symbols) is not list or not all(type(c) is list and len(c) == len(cols[0]) for c in cols):
        return None
    lines = _ColumnarLines(symbols, cols)
    chunk = _checked_codes(symbols, cols, index)
    return (lines, chunk) if chunk is not None else (list(lines), None)


def _checked_codes(symbols: list, cols: tuple[list, ...], index: Mapping[str, int]) -> tuple[np.ndarray, ...] | None:
    """Like :func:`_checked`, for dictionary-encoded symbols: one lookup per distinct symbol."""
    codes = cols[0]
    lut = [index.get(s) if type(s) is str else None for s in symbols]
    if None in lut or not set(map(type, codes)) <= _INT:
        return None
    c = np.array(codes, dtype=np.int64)
    if len(c) and (c.min() < 0 or c.max() >= len(lut)):
        return None
    numbers = _numbers(*cols[1:])
    if numbers is None:
        return None
    return np.array(lut, dtype=np.int64)[c], *numbers, np.arange(len(c), dtype=np.int32)


def encode_columnar(symbols: Sequence[str], time_ms: Sequence[int], price: Sequence[float], qty: Sequence[float]) -> bytes:
    """A columnar tick packet (see the module docstring); ``time_ms`` in epoch milliseconds."""
    codes: dict[str, int] = {}
    sym = [codes.setdefault(s, len(codes)) for s in symbols]
    doc = {"packet": 1, "symbols": list(codes), "sym": sym, "time": list(time_ms), "price": list(price),
           "qty": list(qty)}
    return orjson.dumps(doc)


def _decode_each(m: int, lines: list[bytes], index: Mapping[str, int], rejects: list[Reject]) -> tuple[np.ndarray, ...]:
    """A message judged line by line, with the bulk path's verdicts: the lines the fast reader takes are
    checked together (:func:`_usable`); the others, and those that fail, are judged alone, in line order."""
    fast, slow = _read_lines(lines, index)
    inst, times, prices, qtys, line = fast
    arrays = _arrays(times, prices, qtys)
    if arrays is None:  # a time beyond int64: judge every line alone
        return _judge_lines(m, lines, list(range(len(lines))), index, rejects) or _EMPTY
    t, p, q = arrays
    ok = _usable(t, p, q)
    cols = (np.array(inst, dtype=np.int64), t * _NS_PER_MS, p, q, np.array(line, dtype=np.int32))
    if not ok.all():
        slow = sorted(slow + [line[k] for k in np.flatnonzero(~ok).tolist()])
        cols = tuple(c[ok] for c in cols)
    judged = _judge_lines(m, lines, slow, index, rejects)
    return _in_line_order(cols, judged) if judged else cols


def _read_lines(lines: list[bytes], index: Mapping[str, int]) -> tuple[tuple[list, ...], list[int]]:
    """The per-tick hot loop: ``(inst, time_ms, price, qty, line)`` of the lines that are tick objects with
    the fast path's types (a listed symbol, epoch-ms time, numbers), and the numbers of all other lines."""
    fast: tuple[list, ...] = ([], [], [], [], [])
    inst, ts, price, qty, line = (c.append for c in fast)
    slow: list[int] = []
    loads, get = orjson.loads, index.get
    for n, raw in enumerate(lines):
        try:
            obj = loads(raw)
            sym, t, p, q = obj["symbol"], obj["time"], obj["price"], obj["qty"]
            i = get(sym)
            if type(t) is int and i is not None and type(p) in _NUMBER and type(q) in _NUMBER:
                inst(i)
                ts(t)
                price(p)
                qty(q)
                line(n)
                continue
        except Exception:  # noqa: BLE001 - any failure is judged precisely by _judge
            pass
        slow.append(n)
    return fast, slow


def _judge_lines(m: int, lines: list[bytes], numbers: list[int], index: Mapping[str, int],
                 rejects: list[Reject]) -> tuple[np.ndarray, ...] | None:
    """Judge lines ``numbers`` one by one (:func:`_judge`): append the rejects, return the good ticks'
    columns (``None`` when there is none)."""
    good: tuple[list, ...] = ([], [], [], [], [])
    for n in numbers:
        verdict = _judge(m, n, lines[n], index)
        if type(verdict) is Reject:
            rejects.append(verdict)
        elif verdict is not None:
            for column, value in zip(good, (*verdict, n)):
                column.append(value)
    if not good[0]:
        return None
    inst, ts, price, qty, line = good
    return (np.array(inst, dtype=np.int64), np.array(ts, dtype=np.int64), np.array(price, dtype=np.float64),
            np.array(qty, dtype=np.float64), np.array(line, dtype=np.int32))


def _in_line_order(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The ticks of two column sets (each in line order) merged in line order; the line is the last column."""
    merged = tuple(np.concatenate([x, y]) for x, y in zip(a, b))
    order = np.argsort(merged[-1], kind="stable")
    return tuple(column[order] for column in merged)


def _split(data: bytes) -> list[bytes]:
    """Lines of a message; a pretty-printed single tick object stays one line."""
    lines = data.split(b"\n")
    if len(lines) > 1:
        first = next((ln for ln in lines if ln.strip()), b"")
        if first and not _parses_as_object(first) and _parses_as_object(data):
            return [data]
    return lines


def _parses_as_object(data: bytes) -> bool:
    try:
        return type(orjson.loads(data)) is dict
    except orjson.JSONDecodeError:
        return False


def _judge(m: int, n: int, raw: bytes, index: Mapping[str, int]) -> Reject | tuple[int, int, float, float] | None:
    """Slow path for one line: ``None`` if blank, the first failing check as a :class:`Reject`,
    or the good tick ``(inst, ts_ns, price, qty)`` (e.g. an ISO 8601 time)."""
    if not raw.strip():
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = _lenient_loads(raw)
    try:
        if type(obj) is not dict:
            raise _Bad(Reason.BAD_JSON, "not a JSON object" if obj is not None else "not valid JSON")
        sym, t, p, q = _fields(obj)
        t_ns = _time_ns(t)
        i = index.get(sym) if type(sym) is str else None
        if i is None:
            raise _Bad(Reason.UNKNOWN_SYMBOL, f"{sym!r} is not a listed instrument")
    except _Bad as bad:
        return Reject(m, n, raw, bad.reason, bad.detail)
    return i, t_ns, p, q


class _Bad(Exception):
    __slots__ = ("reason", "detail")

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _lenient_loads(raw: bytes) -> object:
    """Standard-library parse (accepts NaN/Infinity) for lines orjson refused; ``None`` if not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _fields(obj: dict) -> tuple[object, object, float, float]:
    """``(symbol, time, price, qty)`` with price and qty range-checked; raise :class:`_Bad`."""
    try:
        sym, t, p, q = obj["symbol"], obj["time"], obj["price"], obj["qty"]
    except KeyError:
        missing = [f for f in _FIELDS if f not in obj]
        raise _Bad(Reason.MISSING_FIELD, f"missing {', '.join(missing)}") from None
    if type(p) not in _NUMBER or not price_ok(p):
        raise _Bad(Reason.BAD_PRICE, f"price {p!r}: want a number > 0 and < {MAX_PRICE:.0e}")
    if type(q) not in _NUMBER or not qty_ok(q):
        raise _Bad(Reason.BAD_QTY, f"qty {q!r}: want a number >= 0 and < {MAX_QTY:.0e}")
    return sym, t, p, q


def _time_ns(t: object) -> int:
    """Exchange time in ns from epoch ms (int) or ISO 8601 with offset (str); raise :class:`_Bad`."""
    if type(t) is int:
        t_ns = t * _NS_PER_MS
    elif type(t) is str:
        try:
            t_ns = datetime_to_ns(datetime.fromisoformat(t))
        except ValueError as exc:
            raise _Bad(Reason.BAD_TIME, f"time {t!r}: {exc}") from None
    else:
        raise _Bad(Reason.BAD_TIME, f"time {t!r}: want epoch milliseconds or ISO 8601 with offset")
    if not time_ok(t_ns):
        raise _Bad(Reason.BAD_TIME, f"time {t!r} is outside 2000-2100")
    return t_ns


def _drop_out_of_session(d: DecodedTicks) -> DecodedTicks:
    """The ticks in session; the others become ``out_of_session`` rejects, the last reason judged."""
    bad = ~in_session(d.ts_ns)
    if not bad.any():
        return d
    for k in np.flatnonzero(bad):
        m, n = int(d.message[k]), int(d.line[k])
        d.rejects.append(Reject(m, n, d.lines[m][n], Reason.OUT_OF_SESSION, _KERNEL_DETAIL[Reason.OUT_OF_SESSION]))
    d.rejects.sort(key=lambda r: (r.message, r.line))
    return d.select(~bad)


def encode_tick(tick: Tick) -> bytes:
    """One tick as a JSON line (no newline). ``time`` is epoch ms when whole, else ISO 8601 UTC (µs)."""
    t: int | str = tick.ts_ns // 1_000_000
    if tick.ts_ns % 1_000_000:
        t = ns_to_datetime(tick.ts_ns).isoformat()
    return orjson.dumps({"symbol": tick.symbol, "time": t, "price": tick.price, "qty": tick.qty})


def encode_packet(ticks: Iterable[Tick]) -> bytes:
    """A tick packet: the ticks as newline-delimited JSON, in the given order."""
    return b"\n".join(encode_tick(t) for t in ticks)
