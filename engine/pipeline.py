"""The signal pipeline in the pure core: ticks -> bars -> indicators -> strategies -> signals.

One :class:`SignalPipeline` holds the state of every instrument it serves: open
bars (:class:`engine.bars.BarAggregator`), indicator state per series
(instrument x timeframe, :class:`engine.indicators.IndicatorSet` with the 25
default columns plus what the strategies ask for) and the strategy runner.
The Faust worker, the offline reference of the tests and backtests all drive
this class, so live and offline results are the same by construction.

Results never depend on how ticks are split into batches: the aggregator
applies ticks one by one in order, and the indicator and strategy steps see the
closed bars in the order they closed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from engine.bars import BarAggregator
from engine.domain import N_TIMEFRAMES, Bar
from engine.errors import Inconsistency
from engine.indicators import DEFAULT_COLUMNS, DEFAULT_SPECS, IndicatorSet
from engine.instruments import InstrumentRegistry
from engine.strategy.runner import EmittedSignal, StrategyFailure, StrategyRunner

_MAGIC = b"SWPIPE01"
_HEADER = "<8sQQQ"


@dataclass(slots=True)
class Step:
    """What one call produced: closed bars with their indicator rows, signals, strategy failures."""

    bars: list[Bar] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    signals: list[EmittedSignal] = field(default_factory=list)
    failures: list[StrategyFailure] = field(default_factory=list)


class SignalPipeline:
    """Bars, indicators and strategies for every instrument of ``registry``."""

    def __init__(self, registry: InstrumentRegistry, runner: StrategyRunner, *, lateness_s: float) -> None:
        self.registry = registry
        self.runner = runner
        self.aggregator = BarAggregator(len(registry), lateness_s)
        specs = list(dict.fromkeys([*DEFAULT_SPECS, *runner.indicator_specs()]))
        self.indicators = IndicatorSet(specs, capacity=len(registry) * N_TIMEFRAMES)
        self.columns: tuple[str, ...] = tuple(self.indicators.columns)
        self.default_positions = np.array([self.columns.index(c) for c in DEFAULT_COLUMNS], dtype=np.int64)

    def warm_up(self) -> None:
        """Load the compiled kernels (numba's cache) now rather than inside the first real batch."""
        self.aggregator.update(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0))
        empty = np.empty(0)
        self.indicators.update(np.empty(0, np.int64), empty, empty, empty, empty, empty)

    def feed(self, inst: np.ndarray, ts_ns: np.ndarray, price: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, Step]:
        """Apply ticks in order; return each tick's status (0 accepted, else a Reason status) and the outputs."""
        status = self.aggregator.update(inst, ts_ns, price, qty)
        return status, self._drain()

    def flush(self, inst_indices: np.ndarray | None = None) -> Step:
        """Close every open bar (of ``inst_indices``): end of input."""
        self.aggregator.flush(inst_indices)
        return self._drain()

    def roll_day(self, inst_indices: np.ndarray) -> Step:
        """Close the earlier days' bars of ``inst_indices`` once one of them ticked on a later day (see
        :meth:`engine.bars.BarAggregator.roll_day`); what closes goes through indicators and strategies."""
        self.aggregator.roll_day(inst_indices)
        return self._drain()

    def closed_through(self, inst_indices: np.ndarray) -> int | None:
        """Market time through which ``inst_indices`` emitted every bar and signal (None before their first tick)."""
        return self.aggregator.closed_through(inst_indices)

    def _drain(self) -> Step:
        closed = self.aggregator.take_closed()
        if not len(closed):
            return Step()
        rows = self.indicators.update(closed.series, closed.open, closed.high, closed.low, closed.close, closed.volume)
        bars = closed.to_bars(self.registry.symbols)
        signals = self.runner.on_bars(bars, rows, self.columns)
        return Step(bars, rows, signals, self.runner.take_failures())

    # --- checkpoints -------------------------------------------------------------------------

    def _series(self, inst_indices: np.ndarray) -> np.ndarray:
        inst = np.asarray(inst_indices, dtype=np.int64)
        return (inst[:, None] * N_TIMEFRAMES + np.arange(N_TIMEFRAMES)).ravel()

    def snapshot(self, inst_indices: np.ndarray) -> bytes:
        """Exact state of ``inst_indices`` (bars, indicators, strategies); restore then continue == never stopped."""
        bars = self.aggregator.snapshot(inst_indices)
        indicators = self.indicators.snapshot(self._series(inst_indices))
        strategies = self.runner.snapshot(self.registry.symbols[i] for i in inst_indices)
        return struct.pack(_HEADER, _MAGIC, len(bars), len(indicators), len(strategies)) + bars + indicators + strategies

    def restore(self, inst_indices: np.ndarray, blob: bytes) -> None:
        """Load a :meth:`snapshot` of the same instruments; raise :class:`Inconsistency` if it does not fit."""
        head = struct.calcsize(_HEADER)
        try:
            magic, n_bars, n_ind, n_str = struct.unpack_from(_HEADER, blob)
        except struct.error:
            raise Inconsistency("pipeline snapshot is truncated") from None
        if magic != _MAGIC or len(blob) != head + n_bars + n_ind + n_str:
            raise Inconsistency("pipeline snapshot does not fit this engine version")
        self.clear(inst_indices)
        self.aggregator.restore(inst_indices, blob[head : head + n_bars])
        self.indicators.restore(self._series(inst_indices), blob[head + n_bars : head + n_bars + n_ind])
        self.runner.restore(blob[head + n_bars + n_ind :])

    def clear(self, inst_indices: np.ndarray) -> None:
        """Forget the state of ``inst_indices``: a partition taken over with no checkpoint starts empty."""
        self.aggregator.clear(inst_indices)
        self.indicators.reset(self._series(inst_indices))
        self.runner.forget(self.registry.symbols[i] for i in inst_indices)
