"""Tick CSV files (``time,symbol,price,qty``), read in columnar chunks for file tools and replays.

The header names the columns (any order; extra columns are ignored). ``time``
is ISO 8601 with a UTC offset (``2026-01-05T09:15:00+05:30``, ``...Z``);
``price`` and ``qty`` are decimal numbers (``nan``/``inf`` parse, and are
rejected later by the bar rules). A malformed file is a :class:`ConfigError`
(exit code 2) naming the file, the line and the column: a missing file or
column, a value that is not a number, a time that is not ISO 8601 with an
offset, an empty symbol. Symbols are not checked against the instrument list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engine.csvfile import csv_rows
from engine.domain import datetime_to_ns
from engine.errors import ConfigError

COLUMNS = ("time", "symbol", "price", "qty")


@dataclass(frozen=True, slots=True)
class TickChunk:
    """Consecutive rows of a tick file: ``symbols[k]`` traded at ``ts_ns[k]`` (int64)."""

    symbols: list[str]
    ts_ns: np.ndarray
    price: np.ndarray
    qty: np.ndarray


def read_tick_csv(
    path: Path, chunk_rows: int = 65_536, on_bytes: Callable[[int], None] | None = None
) -> Iterator[TickChunk]:
    """Yield the rows of ``path`` in file order, ``chunk_rows`` at a time.

    ``on_bytes(n)`` is called now and then with the bytes consumed since its last
    call (for a progress bar). Raise :class:`ConfigError` on a malformed file.
    """
    with csv_rows(path, COLUMNS, on_bytes, report_every=1 << 20) as (rows, positions):
        cols = tuple(positions)
        chunk: tuple[list, list, list, list] = ([], [], [], [])
        for row in rows:
            _parse_row(path, rows.line_num, row, cols, chunk)
            if len(chunk[0]) == chunk_rows:
                yield _to_chunk(chunk)
                chunk = ([], [], [], [])
        if chunk[0]:
            yield _to_chunk(chunk)


def _parse_row(path: Path, line: int, row: list[str], cols: tuple[int, int, int, int], chunk: tuple) -> None:
    if not row:
        return
    it, isym, ip, iq = cols
    try:
        t, sym, p, q = row[it], row[isym].strip(), row[ip], row[iq]
    except IndexError:
        raise ConfigError(f"{path} line {line}: {len(row)} fields, want at least {max(cols) + 1}") from None
    try:
        ts = datetime_to_ns(datetime.fromisoformat(t.strip()))
    except ValueError:
        raise ConfigError(f"{path} line {line}: time {t!r} is not ISO 8601 with a UTC offset") from None
    if not sym:
        raise ConfigError(f"{path} line {line}: empty symbol")
    chunk[0].append(sym)
    chunk[1].append(ts)
    chunk[2].append(_number(path, line, "price", p))
    chunk[3].append(_number(path, line, "qty", q))


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{path} line {line}: {column} {text!r} is not a number") from None


def _to_chunk(chunk: tuple[list, list, list, list]) -> TickChunk:
    symbols, ts, price, qty = chunk
    return TickChunk(
        symbols, np.array(ts, dtype=np.int64), np.array(price, dtype=np.float64), np.array(qty, dtype=np.float64)
    )
