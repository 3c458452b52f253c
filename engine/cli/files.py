"""The files the CLI reads for the core: instrument lists, tick and bar CSVs.

Each function opens a file, decodes it and hands the text to the core's parser
(``engine.instruments``, ``engine.tick_csv``, ``engine.strategy.backtest``), which knows
nothing of files. Errors are :class:`ConfigError` (exit code 2) naming the file.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.instruments import Instrument, InstrumentRegistry, parse_instruments
from engine.settings import Settings
from engine.strategy.api import Strategy
from engine.strategy.backtest import BacktestResult, read_bars, run_backtest
from engine.tick_csv import TickChunk, tick_chunks


def builtin_instruments() -> list[Instrument]:
    """The packaged list (``engine/data/instruments.csv``): NIFTY, BANKNIFTY and the NIFTY 50 constituents."""
    text = resources.files("engine").joinpath("data/instruments.csv").read_text(encoding="utf-8")
    return parse_instruments(text, "built-in instruments.csv")


def load_instruments(settings: Settings) -> InstrumentRegistry:
    """The built-in list plus the ``SHAREWISE_INSTRUMENTS`` file; raise :class:`ConfigError` on a bad file."""
    instruments = builtin_instruments()
    path = settings.instruments_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read instrument file {path}: {exc.strerror or exc}") from exc
        instruments += parse_instruments(text, str(path))
    return InstrumentRegistry(instruments)


def read_tick_csv(path: Path, chunk_rows: int = 65_536,
                  on_bytes: Callable[[int], None] | None = None) -> Iterator[TickChunk]:
    """The rows of the tick CSV ``path`` in file order, ``chunk_rows`` at a time (:func:`engine.tick_csv.tick_chunks`).

    ``on_bytes(n)`` is called now and then with the bytes read since its last call (a progress bar).
    """
    with text_lines(path, on_bytes, report_every=1 << 20) as lines:
        yield from tick_chunks(lines, str(path), chunk_rows)


def backtest_file(strategy: Strategy, path: Path, timeframe: Timeframe, lateness_s: float = 2.0,
                  **paper: Any) -> BacktestResult:
    """:func:`engine.strategy.backtest.run_backtest` over the tick or bar CSV ``path`` (``paper``: its
    ``execution`` and ``cash``)."""
    with text_lines(path) as lines:
        return run_backtest(strategy, lines, str(path), timeframe, lateness_s, **paper)


def bars_file(path: Path, timeframe: Timeframe, lateness_s: float = 2.0) -> list[Bar]:
    """The closed bars of ``timeframe`` in the tick or bar CSV ``path``, read as ``backtest_file`` reads it
    (:func:`engine.strategy.backtest.read_bars`)."""
    with text_lines(path) as lines:
        return read_bars(lines, str(path), timeframe, lateness_s)


@contextlib.contextmanager
def text_lines(path: Path, on_bytes: Callable[[int], None] | None = None,
               report_every: int = 1 << 16) -> Iterator[Iterator[str]]:
    """The lines of the UTF-8 text file ``path``, read as they are consumed; closed on exit.

    ``on_bytes(n)`` reports the bytes read, at least every ``report_every`` bytes and at the end.
    Raise :class:`ConfigError` for a missing or unreadable file, or bytes that are not UTF-8.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        yield _decoded(handle, on_bytes, report_every)


def _decoded(handle: BinaryIO, on_bytes: Callable[[int], None] | None, every: int) -> Iterator[str]:
    pending = 0
    for raw in handle:
        pending += len(raw)
        if on_bytes is not None and pending >= every:
            on_bytes(pending)
            pending = 0
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{handle.name}: not UTF-8 text") from None
    if on_bytes is not None:
        on_bytes(pending)
