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

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

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
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        rows = csv.reader(_text_lines(handle, on_bytes))
        cols = _header(path, next(rows, None))
        chunk: tuple[list, list, list, list] = ([], [], [], [])
        for row in rows:
            _parse_row(path, rows.line_num, row, cols, chunk)
            if len(chunk[0]) == chunk_rows:
                yield _to_chunk(chunk)
                chunk = ([], [], [], [])
        if chunk[0]:
            yield _to_chunk(chunk)


def _text_lines(handle: BinaryIO, on_bytes: Callable[[int], None] | None) -> Iterator[str]:
    pending = 0
    for raw in handle:
        pending += len(raw)
        if on_bytes is not None and pending >= 1 << 20:
            on_bytes(pending)
            pending = 0
        yield raw.decode("utf-8")
    if on_bytes is not None:
        on_bytes(pending)


def _header(path: Path, header: list[str] | None) -> tuple[int, int, int, int]:
    """Positions of time, symbol, price, qty; raise naming every missing column."""
    if header is None:
        raise ConfigError(f"{path}: empty file, want a header {','.join(COLUMNS)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ConfigError(f"{path}: missing column {', '.join(repr(c) for c in missing)} (header: {','.join(header)})")
    return tuple(names.index(c) for c in COLUMNS)  # type: ignore[return-value]


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
