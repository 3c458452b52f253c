"""``sharewise bars TICKS.csv --timeframe TF --out BARS.csv``: aggregate a tick file into bars.

Contract (other programs call it exactly so):

* TICKS has a header with ``time,symbol,price,qty`` (any order, extra columns
  ignored), ``time`` ISO 8601 with an offset. Ticks are applied in file order
  under the stream's rules (``engine.bars``): NSE session, allowed lateness
  (``--lateness``, default ``SHAREWISE_ALLOWED_LATENESS``), valid price and qty.
* Any symbol is aggregated: this is a file tool, so the instrument list is not
  consulted (the stream, unlike it, rejects unknown symbols).
* BARS has the header ``symbol,time,open,high,low,close,volume``; ``time`` is
  the bar open in ISO 8601 with ``+05:30``; rows sorted by symbol, then time;
  prices printed exactly (shortest repr), volume as an integer when integral.
  Without ``--out`` the bars go to stdout. The file is written atomically.
* Rejected ticks are counted per reason on stderr and in the closing summary;
  they do not fail the run (exit 0). Exit 2, with one clear line, on a missing
  file, a missing column, a non-numeric value or a bad time (with its line number).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import numpy as np
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from engine.bars import BarAggregator, ClosedBars
from engine.cli.console import clean_errors, err
from engine.cli.environment import load_settings
from engine.cli.files import read_tick_csv
from engine.domain import IST, Reason, Timeframe, ns_to_datetime

#: inputs larger than this show a progress bar (about half a second of work)
PROGRESS_MIN_BYTES = 4 << 20
HEADER = "symbol,time,open,high,low,close,volume\n"


def register(app: typer.Typer) -> None:
    app.command("bars")(bars)


@clean_errors
def bars(
    ticks: Path = typer.Argument(..., help="Tick CSV with header time,symbol,price,qty (time ISO 8601 with offset)."),
    timeframe: str = typer.Option(..., "--timeframe", "-t", help="Bar timeframe: 1m, 5m, 15m, 1h or 1d."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Bars CSV to write (default: stdout)."),
    lateness: float | None = typer.Option(
        None, "--lateness", help="Allowed lateness in seconds (default: SHAREWISE_ALLOWED_LATENESS, 2)."
    ),
) -> None:
    """Aggregate TICKS into bars of one timeframe, aligned to the NSE session (IST)."""
    tf = Timeframe.parse(timeframe)
    lateness_s = load_settings().allowed_lateness_s if lateness is None else lateness
    agg = BarAggregator(0, lateness_s)
    symbols: dict[str, int] = {}
    rejected: Counter[str] = Counter()
    total = 0
    with _progress(ticks) as on_bytes:
        for chunk in read_tick_csv(ticks, on_bytes=on_bytes):
            inst = np.fromiter((symbols.setdefault(s, len(symbols)) for s in chunk.symbols), np.int64, len(chunk.symbols))
            agg.grow(len(symbols))
            status = agg.update(inst, chunk.ts_ns, chunk.price, chunk.qty)
            rejected.update(Reason.from_status(int(s)).value for s in status[status != 0])
            total += len(status)
    agg.flush()
    closed = agg.take_closed()
    closed = closed.select(closed.tf == tf)
    _write(out, closed, list(symbols))
    _summary(total, rejected, len(closed), tf, out)


class _progress:
    """Context giving an ``on_bytes`` callback: a rich bar on stderr for large files, else a no-op."""

    def __init__(self, path: Path) -> None:
        size = path.stat().st_size if path.is_file() else 0
        self._bar = Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
            console=err, transient=True, disable=size < PROGRESS_MIN_BYTES,
        )  # fmt: skip
        self._task = self._bar.add_task(f"reading {path.name}", total=size)

    def __enter__(self):  # noqa: ANN204 - returns the callback
        self._bar.start()
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def _write(out: Path | None, closed: ClosedBars, symbols: list[str]) -> None:
    """Rows sorted by symbol, then bar time; to ``out`` atomically, or to stdout."""
    rank = np.empty(len(symbols), dtype=np.int64)
    rank[np.argsort(np.array(symbols, dtype=object), kind="stable")] = np.arange(len(symbols))
    order = np.lexsort((closed.open_ns, rank[closed.inst])) if len(closed) else np.arange(0)
    if out is None:
        _write_rows(sys.stdout, closed, symbols, order)
        return
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        _write_rows(f, closed, symbols, order)
    os.replace(tmp, out)


def _write_rows(f: TextIO, closed: ClosedBars, symbols: list[str], order: np.ndarray) -> None:
    f.write(HEADER)
    for k in order:
        v = float(closed.volume[k])
        volume = str(int(v)) if v.is_integer() else repr(v)
        f.write(
            f"{_csv_field(symbols[closed.inst[k]])},{ns_to_datetime(int(closed.open_ns[k]), IST).isoformat()},"
            f"{float(closed.open[k])!r},{float(closed.high[k])!r},{float(closed.low[k])!r},"
            f"{float(closed.close[k])!r},{volume}\n"
        )


def _csv_field(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n\r') else text


def _summary(total: int, rejected: Counter[str], n_bars: int, tf: Timeframe, out: Path | None) -> None:
    for reason in Reason:
        if rejected[reason.value]:
            err.print(f"rejected {reason.value}: {rejected[reason.value]}")
    n_rejected = sum(rejected.values())
    detail = ", ".join(f"{r} {n}" for r, n in sorted(rejected.items())) if n_rejected else "none"
    where = str(out) if out is not None else "stdout"
    err.print(
        f"bars: {total} ticks read, {total - n_rejected} used, {n_rejected} rejected ({detail}); "
        f"{n_bars} {tf.label} bars written to {where}",
        soft_wrap=True,
    )
