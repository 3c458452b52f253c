"""``macd_cross``: BUY when MACD crosses above its signal line, SELL when it crosses below.

MACD(fast, slow, signal) as TA-Lib computes it. Cross above: previous bar
``MACD <= signal`` and current bar ``MACD > signal``; below mirrors it.
Signals at bar close. Confidence:
``0.5 + 0.45 * min(1, |MACD - signal| / (0.25 * ATR))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy.api import IndicatorView, SignalIntent, Strategy, buy_sell, crossed_above, crossed_below, ratio
from engine.strategy.config import StrategyConfig, param


@dataclass(frozen=True, slots=True)
class MacdCrossConfig(StrategyConfig):
    """Parameters of :class:`MacdCross`; ``fast`` < ``slow``."""

    fast: int = param(12, min=2, max=500, help="fast EMA period")
    slow: int = param(26, min=3, max=1000, help="slow EMA period")
    signal: int = param(9, min=1, max=500, help="signal line EMA period")

    def check(self) -> None:
        self.require_less("fast", "slow")


class MacdCross(Strategy[MacdCrossConfig]):
    """MACD line / signal line crossover."""

    name = "macd_cross"
    version = "1.0.0"

    def configure(self) -> None:
        self.macd, self.signal = self.columns()

    def indicators(self) -> list[str]:
        base = f"macd({self.cfg.fast},{self.cfg.slow},{self.cfg.signal})"
        return [f"{base}.macd", f"{base}.signal"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        signal = buy_sell(crossed_above(ind, self.macd, self.signal), crossed_below(ind, self.macd, self.signal))
        return self.emit(signal, bar, ind, ratio(ind[self.macd] - ind[self.signal], 0.25 * self.atr(ind)))
