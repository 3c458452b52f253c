"""Tick CSV files (``time,symbol,price,qty``): the one parser of their rows, for file tools and replays.

The header names the columns (any order, any case; extra columns are ignored). ``time`` is
ISO 8601 with a UTC offset (``2026-01-05T09:15:00+05:30``, ``...Z``); ``price`` and ``qty`` are
decimal numbers. :func:`tick_rows` reads the rows; each use then takes them its own way:

* file tools and backtests (:func:`tick_chunks`) need every row well formed: a row that is
  not is a :class:`ConfigError` (exit code 2) naming the file, the line and the column (a
  missing cell, a value that is not a number, a time that is not ISO 8601 with an offset,
  an empty symbol). ``nan``/``inf`` parse, and are rejected later by the bar rules. Symbols
  are not checked against the instrument list.
* a replay (:func:`replay_line`) sends each row on as tick JSON and lets the worker judge it:
  values that are not finite numbers stay text (a missing cell is ``null``), so a bad row
  reaches the dead-letter topic with its reason (README "How the stream works").

Pure: the caller hands in the file's lines (``engine/cli/files.py``, ``streams/feed.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator

import numpy as np
import orjson

from engine.csvfile import csv_rows
from engine.domain import datetime_to_ns
from engine.errors import ConfigError

COLUMNS = ("time", "symbol", "price", "qty")
#: a data row: its file line, then its cells in :data:`COLUMNS` order (``None`` where the row is too short)
Row = tuple[int, str | None, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class TickChunk:
    """Consecutive rows of a tick file: ``symbols[k]`` traded at ``ts_ns[k]`` (int64)."""

    symbols: list[str]
    ts_ns: np.ndarray
    price: np.ndarray
    qty: np.ndarray


def tick_rows(lines: Iterable[str], where: str) -> Iterator[Row]:
    """``(file line, time, symbol, price, qty)`` of each non-blank row after the header, in file order, as text.

    ``where`` names the file in errors; raise :class:`ConfigError` for an empty file or a missing column.
    """
    reader, positions = csv_rows(lines, COLUMNS, where)
    it, isym, ip, iq = positions
    width = max(positions) + 1
    for row in reader:
        if len(row) >= width:
            yield reader.line_num, row[it], row[isym], row[ip], row[iq]
        elif row:
            t, sym, p, q = (row[k] if k < len(row) else None for k in positions)
            yield reader.line_num, t, sym, p, q


def tick_chunks(lines: Iterable[str], where: str, chunk_rows: int = 65_536) -> Iterator[TickChunk]:
    """The rows of a tick file, ``chunk_rows`` at a time; raise :class:`ConfigError` on a malformed row."""
    chunk: tuple[list, list, list, list] = ([], [], [], [])
    for row in tick_rows(lines, where):
        _parse_row(where, row, chunk)
        if len(chunk[0]) == chunk_rows:
            yield _to_chunk(chunk)
            chunk = ([], [], [], [])
    if chunk[0]:
        yield _to_chunk(chunk)


def replay_line(row: Row) -> tuple[bytes, str | None]:
    """The tick JSON line a replay sends for a row (numbers where the cells hold finite ones, else the
    text), and its symbol: the key that partitions it."""
    _, t, symbol, p, q = row
    tick = {"symbol": symbol, "time": t, "price": _number_or_text(p), "qty": _number_or_text(q)}
    return orjson.dumps(tick), symbol


def _parse_row(where: str, row: Row, chunk: tuple[list, list, list, list]) -> None:
    """Append a well-formed row's symbol, ts_ns, price and qty to ``chunk``; raise :class:`ConfigError`
    naming the column of a malformed one (nothing appended)."""
    line, t, sym, p, q = row
    if t is None or sym is None or p is None or q is None:
        missing = ", ".join(name for name, cell in zip(COLUMNS, row[1:]) if cell is None)
        raise ConfigError(f"{where} line {line}: no {missing} (the row is too short)")
    try:
        ts = datetime_to_ns(datetime.fromisoformat(t.strip()))
    except ValueError:
        raise ConfigError(f"{where} line {line}: time {t!r} is not ISO 8601 with a UTC offset") from None
    sym = sym.strip()
    if not sym:
        raise ConfigError(f"{where} line {line}: empty symbol")
    price, qty = _number(where, line, "price", p), _number(where, line, "qty", q)
    chunk[0].append(sym)
    chunk[1].append(ts)
    chunk[2].append(price)
    chunk[3].append(qty)


def _number(where: str, line: int, column: str, text: str) -> float:
    value = _float(text)
    if value is None:
        raise ConfigError(f"{where} line {line}: {column} {text!r} is not a number")
    return value


def _number_or_text(text: str | None) -> float | str | None:
    value = None if text is None else _float(text)
    return value if value is not None and math.isfinite(value) else text


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _to_chunk(chunk: tuple[list, list, list, list]) -> TickChunk:
    symbols, ts, price, qty = chunk
    return TickChunk(
        symbols, np.array(ts, dtype=np.int64), np.array(price, dtype=np.float64), np.array(qty, dtype=np.float64)
    )
