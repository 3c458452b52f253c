"""``adx_trend``: BUY when +DI crosses above -DI, SELL when -DI crosses above +DI, while ADX > threshold.

+DI, -DI and ADX are TA-Lib's (Wilder smoothing) over ``period``. Cross
above: previous bar ``+DI <= -DI`` and current bar ``+DI > -DI`` (and the
mirror for SELL); ADX is read at the current bar. Signals at bar close.
Confidence: ``0.5 + 0.45 * min(1, (ADX - threshold) / 25)`` — the stronger the trend, the higher.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy.api import IndicatorView, SignalIntent, Strategy, buy_sell, crossed_above
from engine.strategy.config import StrategyConfig, param


@dataclass(frozen=True, slots=True)
class AdxTrendConfig(StrategyConfig):
    """Parameters of :class:`AdxTrend`."""

    period: int = param(14, min=2, max=500, help="DMI / ADX period")
    threshold: float = param(25.0, min=0.0, max=100.0, help="minimum ADX for a signal")


class AdxTrend(Strategy[AdxTrendConfig]):
    """Directional movement crossover in a trending market."""

    name = "adx_trend"
    version = "1.0.0"

    def configure(self) -> None:
        self.plus, self.minus, self.adx = self.columns()

    def indicators(self) -> list[str]:
        n = self.cfg.period
        return [f"plus_di({n})", f"minus_di({n})", f"adx({n})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        threshold = self.cfg.threshold
        if not ind[self.adx] > threshold:
            return []
        signal = buy_sell(crossed_above(ind, self.plus, self.minus), crossed_above(ind, self.minus, self.plus))
        return self.emit(signal, bar, ind, (ind[self.adx] - threshold) / 25.0)
