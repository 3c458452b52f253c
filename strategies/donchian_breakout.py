"""``donchian_breakout``: BUY when close > the highest high of the previous ``period`` bars,
SELL when close < the lowest low of the previous ``period`` bars.

The channel excludes the current bar (registry ``highest_high(n)`` /
``lowest_low(n)``), so the first signal can come at bar ``period + 1``.
Every bar that closes outside the channel signals. Confidence:
``0.5 + 0.45 * min(1, |close - channel| / ATR)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy.api import IndicatorView, SignalIntent, Strategy, buy_sell, ratio
from engine.strategy.config import StrategyConfig, param


@dataclass(frozen=True, slots=True)
class DonchianBreakoutConfig(StrategyConfig):
    """Parameters of :class:`DonchianBreakout`."""

    period: int = param(20, min=1, max=1000, help="channel length in bars")


class DonchianBreakout(Strategy[DonchianBreakoutConfig]):
    """Close breaks the previous N bars' range."""

    name = "donchian_breakout"
    version = "1.0.0"

    def configure(self) -> None:
        self.high, self.low = self.columns()

    def indicators(self) -> list[str]:
        n = self.cfg.period
        return [f"highest_high({n})", f"lowest_low({n})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        buy = bar.close > ind[self.high]
        signal = buy_sell(buy, bar.close < ind[self.low])
        level = ind[self.high] if buy else ind[self.low]
        return self.emit(signal, bar, ind, ratio(bar.close - level, self.atr(ind)))
