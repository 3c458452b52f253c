"""``sharewise indicators IN.csv --out OUT.csv``: the 25 default indicator columns of a bar file.

Contract (other programs call it exactly so):

* IN has a header naming ``time,open,high,low,close,volume`` (any order; extra columns are
  ignored); one bar per row, oldest first, all of one instrument.
* OUT has one row per input row: ``time`` copied verbatim, then the 25 columns of
  :data:`engine.indicators.DEFAULT_COLUMNS` in that order, empty where the indicator has no
  value yet (TA-Lib's warm-up); numbers are printed with ``repr`` so they read back exactly.
  OUT is written atomically (a failed run leaves no partial file).
* The bars go through :meth:`IndicatorSet.update` in micro-batches — the incremental kernels
  the stream runs, bar by bar — never through a batch shortcut.
* Exit 2 with one clear line on a missing file, a missing column (named), or a value that is
  not a finite number (with its line number and column). A progress bar appears on stderr
  when a run lasts more than a couple of seconds.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

import numpy as np
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from engine.cli.console import clean_errors, err
from engine.cli.files import text_lines
from engine.csvfile import csv_rows
from engine.errors import ConfigError
from engine.indicators import DEFAULT_COLUMNS, default_set

COLUMNS = ("time", "open", "high", "low", "close", "volume")
#: rows per IndicatorSet.update call
BATCH_ROWS = 256
#: a run that has lasted this long shows its progress bar
SHOW_PROGRESS_AFTER_S = 2.0


def register(app: typer.Typer) -> None:
    app.command("indicators")(indicators)


@clean_errors
def indicators(
    bars: Path = typer.Argument(..., help="Bar CSV with header time,open,high,low,close,volume."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write: time, then the 25 indicator columns."),
) -> None:
    """Compute the 25 default indicator columns of a bar series, bar by bar, as the stream does."""
    indicator_set = default_set(1)
    progress = _LazyProgress(bars)
    rows = 0
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as sink:
            sink.write(",".join(("time", *DEFAULT_COLUMNS)) + "\n")
            for chunk in read_bar_csv(bars, BATCH_ROWS, progress.advance):
                inst = np.zeros(len(chunk.time), dtype=np.int64)
                values = indicator_set.update(inst, chunk.open, chunk.high, chunk.low, chunk.close, chunk.volume)
                _write_rows(sink, chunk.time, values)
                rows += len(chunk.time)
        os.replace(tmp, out)
    finally:
        progress.close()
        tmp.unlink(missing_ok=True)
    err.print(f"indicators: {rows} bars read, {len(DEFAULT_COLUMNS)} columns written to {out}", soft_wrap=True)


@dataclass(frozen=True, slots=True)
class BarChunk:
    """Consecutive rows of a bar file: ``time`` verbatim, prices and volume as float64."""

    time: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def read_bar_csv(path: Path, chunk_rows: int, on_bytes: Callable[[int], None] | None = None) -> Iterator[BarChunk]:
    """Yield the rows of ``path`` in file order, ``chunk_rows`` at a time.

    ``on_bytes(n)`` is called now and then with the bytes consumed since its previous call. Raises
    ConfigError naming the file (and line and column) when the file is missing, lacks a
    column, or holds a value that is not a finite number.
    """
    with text_lines(path, on_bytes) as lines:
        rows, positions = csv_rows(lines, COLUMNS, str(path))
        fields: list[list] = [[] for _ in COLUMNS]
        for row in rows:
            if row:
                _parse_row(path, rows.line_num, row, positions, fields)
            if len(fields[0]) == chunk_rows:
                yield _to_chunk(fields)
                fields = [[] for _ in COLUMNS]
        if fields[0]:
            yield _to_chunk(fields)


def _parse_row(path: Path, line: int, row: list[str], positions: list[int], fields: list[list]) -> None:
    if len(row) <= max(positions):
        raise ConfigError(f"{path} line {line}: {len(row)} fields, want at least {max(positions) + 1}")
    fields[0].append(row[positions[0]])
    for k in range(1, len(COLUMNS)):
        text = row[positions[k]]
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{path} line {line}: {COLUMNS[k]} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{path} line {line}: {COLUMNS[k]} {text!r} is not a finite number")
        fields[k].append(value)


def _to_chunk(fields: list[list]) -> BarChunk:
    return BarChunk(fields[0], *(np.array(f, dtype=np.float64) for f in fields[1:]))


def _write_rows(sink: TextIO, times: list[str], values: np.ndarray) -> None:
    """One line per bar: the time as read (CSV-quoted if it must be), then the values."""
    lines = []
    for stamp, row in zip(times, values.tolist()):
        cells = ",".join("" if v != v else repr(v) for v in row)
        lines.append(f"{_csv_field(stamp)},{cells}\n")
    sink.write("".join(lines))


def _csv_field(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n\r') else text


class _LazyProgress:
    """A rich progress bar on stderr that appears only once the run has lasted a while."""

    def __init__(self, path: Path) -> None:
        size = path.stat().st_size if path.is_file() else 0
        self._bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
            console=err, transient=True,
        )  # fmt: skip
        self._task = self._bar.add_task(f"indicators {path.name}", total=size)
        self._started_at = time.monotonic()
        self._shown = False

    def advance(self, n: int) -> None:
        self._bar.advance(self._task, n)
        if not self._shown and time.monotonic() - self._started_at > SHOW_PROGRESS_AFTER_S:
            self._bar.start()
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self._bar.stop()
