"""``ema_cross``: BUY when EMA(fast) crosses above EMA(slow), SELL when it crosses below.

Cross above: previous bar ``EMA(fast) <= EMA(slow)`` and current bar
``EMA(fast) > EMA(slow)``; cross below mirrors it. Signals at bar close.
Confidence: ``0.5 + 0.45 * min(1, |EMA(fast) - EMA(slow)| / ATR)`` — how
decisively the averages separated on the crossing bar, in ATRs.
"""

from __future__ import annotations

from engine.domain import Bar
from engine.errors import ConfigError
from engine.strategy.api import (
    IndicatorView,
    Param,
    SignalIntent,
    Strategy,
    buy_sell,
    crossed_above,
    crossed_below,
    ratio,
)
from engine.strategy.specs import column_of


class EmaCross(Strategy):
    """EMA(fast) / EMA(slow) crossover."""

    name = "ema_cross"
    version = "1.0.0"
    params = (
        Param("fast", int, 9, min=2, max=500, help="fast EMA period"),
        Param("slow", int, 21, min=3, max=1000, help="slow EMA period"),
    )

    def configure(self) -> None:
        fast, slow = self.config["fast"], self.config["slow"]
        if fast >= slow:
            raise ConfigError(f"ema_cross: parameter 'fast' ({fast}) must be < 'slow' ({slow})")
        self.fast, self.slow = (column_of(spec) for spec in self.indicators())

    def indicators(self) -> list[str]:
        return [f"ema({self.config['fast']})", f"ema({self.config['slow']})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        signal = buy_sell(crossed_above(ind, self.fast, self.slow), crossed_below(ind, self.fast, self.slow))
        return self.emit(signal, bar, ind, ratio(ind[self.fast] - ind[self.slow], self.atr(ind)))
