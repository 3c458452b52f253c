"""Backtests: a strategy over a tick or bar file, through the same code as the live pipeline.

* A **ticks** file (header ``time,symbol,price,qty``) goes through
  :class:`engine.pipeline.SignalPipeline` — the class the Faust worker drives —
  so bars, indicators and strategy calls are the live ones; bars of the
  chosen timeframe reach the strategy. The input is flushed at its end.
* A **bars** file (header ``time,open,high,low,close,volume``, optional
  ``symbol``, ``time`` ISO 8601 with an offset) is used as is: each row is a
  closed bar of the chosen timeframe, fed in file order through the same
  ``IndicatorSet`` and :class:`~engine.strategy.runner.StrategyRunner`.
  Without a ``symbol`` column the symbol is the file name's stem, upper-cased.

Pure: the caller hands in the file's lines and its name (the CLI reads the file:
``engine/cli/files.py``). Signals are rounded by :func:`engine.strategy.signals.signal_record` (as the
live sink rounds them) and listed by bar time, then symbol.

Trades and statistics (deterministic; :func:`statistics`):

* per symbol, BUY opens a long when flat and SELL closes it; SHORT opens a
  short when flat and COVER closes it; any other signal changes nothing.
  Fills are at the signal bar's close. A position still open at the end is
  closed at that symbol's last close and counted.
* ``trades``: closed trades; ``win_rate``: share with a positive return;
  ``avg_return``: mean trade return (fraction: 0.01 = 1 %).
* The equity curve is equal-weighted over the file's symbols: at each bar
  time, the mean over the symbols having a bar then of ``position x
  (close / previous close - 1)``, compounded. ``max_drawdown`` is its largest
  peak-to-trough fall (a fraction); ``sharpe`` the mean over the standard
  deviation of those returns, annualised with 252 sessions of bars of the
  timeframe (0 when undefined); ``exposure`` the share of symbol-bars
  during which a position was held.
"""

from __future__ import annotations

import csv
import math
from decimal import Decimal
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any, Iterable, Sequence

import numpy as np

from engine.csvfile import peek_header
from engine.domain import Bar, Timeframe, datetime_to_ns
from engine.errors import ConfigError
from engine.orders.execution import Execution
from engine.orders.paper import PaperRun, paper_orders
from engine.indicators import DEFAULT_SPECS, IndicatorSet
from engine.instruments import InstrumentRegistry
from engine.pipeline import SignalPipeline
from engine.strategy.api import SignalType, Strategy
from engine.strategy.runner import Deployment, EmittedSignal, StrategyRunner
from engine.strategy.signals import SignalRecord, signal_record
from engine.tick_csv import COLUMNS as TICK_COLUMNS
from engine.tick_csv import TickChunk, tick_chunks

BAR_COLUMNS = ("time", "open", "high", "low", "close", "volume")
BARS_PER_SESSION = {Timeframe.M1: 375, Timeframe.M5: 75, Timeframe.M15: 25, Timeframe.H1: 7, Timeframe.D1: 1}
SESSIONS_PER_YEAR = 252
BATCH = 1024


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Rounded signals in (time, symbol) order, the statistics of :func:`statistics`, and the paper orders."""

    signals: list[SignalRecord]
    stats: dict[str, float | int]
    bars: int
    paper: PaperRun | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``sharewise backtest --json`` document."""
        doc: dict[str, Any] = {"signals": [s.as_json() for s in self.signals], **self.stats}
        doc["orders"] = self.paper.orders if self.paper else []
        doc["pnl"] = self.paper.pnl if self.paper else None
        return doc


def run_backtest(strategy: Strategy, lines: Iterable[str], where: str, timeframe: Timeframe,
                 lateness_s: float = 2.0, *, execution: Execution | None = None,
                 cash: Decimal = Decimal("1000000")) -> BacktestResult:
    """Run ``strategy`` over a tick or bar file given as its ``lines``; ``where`` is its name (errors cite it).

    With ``execution`` its signals are also traded on paper by the live order code
    (:func:`engine.orders.paper.paper_orders`) on the file's 1m bars: those of a tick file, or the
    bars of a 1m bars file. A bars file of another timeframe has no 1m price path: no orders
    (``paper`` is None). Raise :class:`ConfigError` for a bad file.
    """
    names, lines = peek_header(lines)
    deployment = Deployment(strategy, strategy.name, frozenset({timeframe}), execution=execution)
    runner = StrategyRunner([deployment])
    try:
        if _is_tick_file(names, where):
            bars, emitted, minutes = replay_ticks(runner, tick_chunks(lines, where), timeframe, lateness_s)
        else:
            bars = read_bar_csv(lines, where, timeframe)
            emitted, minutes = replay_bars(runner, bars), bars if timeframe is Timeframe.M1 else None
    finally:
        runner.stop()
    records = sorted((signal_record(e) for e in emitted), key=lambda r: (r.bar_time, r.symbol))
    paper = paper_orders(emitted, minutes, cash=cash) if execution is not None and minutes is not None else None
    return BacktestResult(records, statistics(bars, emitted, timeframe), len(bars), paper)


def replay_ticks(
    runner: StrategyRunner, ticks: Iterable[TickChunk], timeframe: Timeframe, lateness_s: float
) -> tuple[list[Bar], list[EmittedSignal], list[Bar]]:
    """Feed a tick file's chunks through a :class:`SignalPipeline`; the closed bars of ``timeframe``, the signals,
    and the closed 1m bars (the price path of paper fills)."""
    chunks = list(ticks)
    symbols = list(dict.fromkeys(s for chunk in chunks for s in chunk.symbols))
    registry = InstrumentRegistry.from_symbols(symbols)
    pipeline = SignalPipeline(registry, runner, lateness_s=lateness_s)
    steps = []
    for chunk in chunks:
        inst = np.fromiter((registry.index[s] for s in chunk.symbols), np.int64, len(chunk.symbols))
        steps.append(pipeline.feed(inst, chunk.ts_ns, chunk.price, chunk.qty)[1])
    steps.append(pipeline.flush())
    bars = [b for step in steps for b in step.bars if b.timeframe is timeframe]
    minutes = [b for step in steps for b in step.bars if b.timeframe is Timeframe.M1]
    return bars, [signal for step in steps for signal in step.signals], minutes


def replay_bars(runner: StrategyRunner, bars: Sequence[Bar]) -> list[EmittedSignal]:
    """Feed closed bars (per symbol in time order) through indicators and ``runner``, in batches."""
    specs = list(dict.fromkeys([*DEFAULT_SPECS, *runner.indicator_specs()]))
    series: dict[tuple[str, Timeframe], int] = {}
    for bar in bars:
        series.setdefault((bar.symbol, bar.timeframe), len(series))
    indicators = IndicatorSet(specs, capacity=max(len(series), 1))
    emitted: list[EmittedSignal] = []
    for start in range(0, len(bars), BATCH):
        batch = bars[start : start + BATCH]
        idx = np.array([series[(b.symbol, b.timeframe)] for b in batch], dtype=np.int64)
        cols = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in batch], dtype=np.float64).T
        rows = indicators.update(idx, *cols)
        emitted.extend(runner.on_bars(batch, rows, indicators.columns))
    return emitted


def read_bars(lines: Iterable[str], where: str, timeframe: Timeframe, lateness_s: float = 2.0) -> list[Bar]:
    """The closed bars of ``timeframe`` in a tick or bar file, as a backtest of it sees them.

    A ticks file goes through the live pipeline with no strategy (so its bars are the live ones,
    flushed at the end); a bars file is read by :func:`read_bar_csv`. Used by ``sharewise model
    train``, so a model trains on exactly the bars a backtest of the same file would replay.
    """
    names, lines = peek_header(lines)
    if not _is_tick_file(names, where):
        return read_bar_csv(lines, where, timeframe)
    runner = StrategyRunner([])
    try:
        bars, _, _ = replay_ticks(runner, tick_chunks(lines, where), timeframe, lateness_s)
    finally:
        runner.stop()
    return bars


def read_bar_csv(lines: Iterable[str], where: str, timeframe: Timeframe) -> list[Bar]:
    """Closed bars from a bars CSV's lines; raise :class:`ConfigError` naming the line of a bad row.

    Without a ``symbol`` column the symbol is the stem of the file name ``where``, upper-cased.
    """
    default_symbol = PurePath(where).stem.upper()
    rows = csv.reader(lines)
    header = [h.strip().lower() for h in next(rows, [])]
    missing = [c for c in BAR_COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{where}: missing column {missing[0]!r} (a bars file has {','.join(BAR_COLUMNS)})")
    at = {name: header.index(name) for name in (*BAR_COLUMNS, *(["symbol"] if "symbol" in header else []))}
    bars = [_bar(where, rows.line_num, row, at, default_symbol, timeframe) for row in rows if row]
    _check_order(where, bars)
    return bars


def _bar(where: str, line: int, row: list[str], at: dict[str, int], symbol: str, tf: Timeframe) -> Bar:
    try:
        cells = {name: row[i].strip() for name, i in at.items()}
    except IndexError:
        raise ConfigError(f"{where}:{line}: expected {len(at)} columns, got {len(row)}") from None
    try:
        when = datetime.fromisoformat(cells["time"])
        ts_ns = datetime_to_ns(when)
    except ValueError:
        raise ConfigError(f"{where}:{line}: time {cells['time']!r} is not ISO 8601 with an offset") from None
    values = []
    for name in BAR_COLUMNS[1:]:
        try:
            values.append(float(cells[name]))
        except ValueError:
            raise ConfigError(f"{where}:{line}: {name} {cells[name]!r} is not a number") from None
    if not all(math.isfinite(v) for v in values) or min(values[:4]) <= 0 or values[4] < 0:
        raise ConfigError(f"{where}:{line}: prices must be finite and positive, volume >= 0")
    name = cells.get("symbol") or symbol
    return Bar(name.upper(), tf, ts_ns, *values[:4], values[4], 0)


def _check_order(where: str, bars: Sequence[Bar]) -> None:
    last: dict[str, int] = {}
    for k, bar in enumerate(bars):
        if bar.open_ns <= last.get(bar.symbol, -(2**63)):
            raise ConfigError(f"{where}: bar {k + 1} of {bar.symbol} is not later than the previous one")
        last[bar.symbol] = bar.open_ns


def _is_tick_file(header: set[str], where: str) -> bool:
    """True for a ticks header, False for a bars header; ConfigError for neither."""
    if set(TICK_COLUMNS) <= header:
        return True
    if set(BAR_COLUMNS) <= header:
        return False
    raise ConfigError(
        f"{where}: header must hold {','.join(TICK_COLUMNS)} (ticks) or {','.join(BAR_COLUMNS)} (bars)"
    )


# --- statistics ------------------------------------------------------------------------------

_OPENS = {SignalType.BUY: 1, SignalType.SHORT: -1}
_CLOSES = {SignalType.SELL: 1, SignalType.COVER: -1}


def statistics(bars: Sequence[Bar], signals: Iterable[EmittedSignal], timeframe: Timeframe) -> dict[str, float | int]:
    """Trades and equity statistics as the module docstring defines them (rounded to 6 places)."""
    wanted = [s for s in signals if s.bar.timeframe is timeframe]
    by_bar = {}
    for s in wanted:
        by_bar.setdefault((s.bar.symbol, s.bar.open_ns), []).append(s.intent.signal_type)
    returns: dict[int, list[float]] = {}
    trades: list[float] = []
    held = total = 0
    for symbol, series in _by_symbol(bars).items():
        h, t = _walk(series, by_bar, symbol, returns, trades)
        held, total = held + h, total + t
    curve = np.array([np.mean(returns[t]) for t in sorted(returns)], dtype=np.float64)
    return {
        "trades": len(trades),
        "win_rate": _round(sum(r > 0 for r in trades) / len(trades)) if trades else 0.0,
        "avg_return": _round(float(np.mean(trades))) if trades else 0.0,
        "max_drawdown": _round(_max_drawdown(curve)),
        "sharpe": _round(_sharpe(curve, timeframe)),
        "exposure": _round(held / total) if total else 0.0,
    }


def _by_symbol(bars: Sequence[Bar]) -> dict[str, list[Bar]]:
    grouped: dict[str, list[Bar]] = {}
    for bar in bars:
        grouped.setdefault(bar.symbol, []).append(bar)
    return {symbol: sorted(series, key=lambda b: b.open_ns) for symbol, series in sorted(grouped.items())}


def _walk(
    series: list[Bar], by_bar: dict, symbol: str, returns: dict[int, list[float]], trades: list[float]
) -> tuple[int, int]:
    """One symbol's positions bar by bar: appends its bar returns and closed trades; (bars held, bars)."""
    position, entry, held = 0, 0.0, 0
    for k, bar in enumerate(series):
        if k:
            change = bar.close / series[k - 1].close - 1.0
            returns.setdefault(bar.open_ns, []).append(position * change)
            held += position != 0
        for signal in by_bar.get((symbol, bar.open_ns), []):
            if position == 0 and signal in _OPENS:
                position, entry = _OPENS[signal], bar.close
            elif position != 0 and _CLOSES.get(signal) == position:
                trades.append(position * (bar.close / entry - 1.0))
                position = 0
    if position:
        trades.append(position * (series[-1].close / entry - 1.0))
    return held, max(len(series) - 1, 0)


def _max_drawdown(curve: np.ndarray) -> float:
    if not len(curve):
        return 0.0
    equity = np.cumprod(1.0 + curve)
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return float(max(0.0, np.max(1.0 - equity / peaks)))


def _sharpe(curve: np.ndarray, timeframe: Timeframe) -> float:
    if len(curve) < 2:
        return 0.0
    std = float(np.std(curve, ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return 0.0
    return float(np.mean(curve)) / std * math.sqrt(SESSIONS_PER_YEAR * BARS_PER_SESSION[timeframe])


def _round(value: float) -> float:
    return round(float(value), 6)

