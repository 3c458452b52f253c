"""``macd_cross``: BUY when MACD crosses above its signal line, SELL when it crosses below.

MACD(fast, slow, signal) as TA-Lib computes it. Cross above: previous bar
``MACD <= signal`` and current bar ``MACD > signal``; below mirrors it.
Signals at bar close. Confidence:
``0.5 + 0.45 * min(1, |MACD - signal| / (0.25 * ATR))``.
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


class MacdCross(Strategy):
    """MACD line / signal line crossover."""

    name = "macd_cross"
    version = "1.0.0"
    params = (
        Param("fast", int, 12, min=2, max=500, help="fast EMA period"),
        Param("slow", int, 26, min=3, max=1000, help="slow EMA period"),
        Param("signal", int, 9, min=1, max=500, help="signal line EMA period"),
    )

    def configure(self) -> None:
        if self.config["fast"] >= self.config["slow"]:
            raise ConfigError(f"macd_cross: parameter 'fast' ({self.config['fast']}) must be < 'slow'")
        self.macd, self.signal = (column_of(spec) for spec in self.indicators())

    def indicators(self) -> list[str]:
        base = f"macd({self.config['fast']},{self.config['slow']},{self.config['signal']})"
        return [f"{base}.macd", f"{base}.signal"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        signal = buy_sell(crossed_above(ind, self.macd, self.signal), crossed_below(ind, self.macd, self.signal))
        return self.emit(signal, bar, ind, ratio(ind[self.macd] - ind[self.signal], 0.25 * self.atr(ind)))
