"""Cost of strategy evaluation: the six built-ins on many symbols, through the isolating runner.

    python benchmarks/strategy_runner.py [--symbols 50] [--bars 400]

Indicator rows are computed first (not timed); the timed part is
``StrategyRunner.on_bars``, one call per bar time with every symbol's bar, as
the live pipeline calls it. Prints microseconds per bar and per strategy call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engine.domain import NS_PER_MIN, Bar, Timeframe
from engine.indicators import DEFAULT_SPECS, IndicatorSet
from engine.strategy import Deployment, StrategyRunner, create
from engine.strategy.discovery import BUILTIN, available

BUILTINS = [name for name, info in available().items() if info.source == BUILTIN]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--bars", type=int, default=400)
    args = parser.parse_args()
    runner = StrategyRunner(Deployment(create(name), name, frozenset({Timeframe.M5})) for name in BUILTINS)
    indicators = IndicatorSet(list(dict.fromkeys([*DEFAULT_SPECS, *runner.indicator_specs()])), args.symbols)
    closes = 1000 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.003, (args.bars, args.symbols)), axis=0))
    batches = []
    for k, c in enumerate(closes):
        bars = [Bar(f"S{s}", Timeframe.M5, k * 5 * NS_PER_MIN, x, x * 1.001, x * 0.999, x, 100.0, 1)
                for s, x in enumerate(c)]  # fmt: skip
        rows = indicators.update(np.arange(args.symbols), c, c * 1.001, c * 0.999, c, np.full(args.symbols, 100.0))
        batches.append((bars, rows))
    started = time.perf_counter()
    signals = sum(len(runner.on_bars(bars, rows, indicators.columns)) for bars, rows in batches)
    elapsed = time.perf_counter() - started
    n = args.symbols * args.bars
    print(f"{n} bars x {len(BUILTINS)} strategies: {signals} signals, {elapsed / n * 1e6:.1f} us/bar, "
          f"{elapsed / n / len(BUILTINS) * 1e6:.2f} us per strategy call")  # fmt: skip


if __name__ == "__main__":
    main()
