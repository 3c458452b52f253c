"""``bollinger_breakout``: BUY when close crosses above the upper band, SELL when it crosses below the lower band.

Bands are TA-Lib BBANDS(period, stddev, stddev, SMA). Cross above the upper
band: previous bar ``close <= upper`` and current bar ``close > upper``;
crossing below the lower band mirrors it. Signals at bar close. Confidence:
``0.5 + 0.45 * min(1, |close - band| / ATR)`` — how far the close broke out.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy.api import IndicatorView, SignalIntent, Strategy, buy_sell, crossed_above, crossed_below, ratio
from engine.strategy.config import StrategyConfig, param


@dataclass(frozen=True, slots=True)
class BollingerBreakoutConfig(StrategyConfig):
    """Parameters of :class:`BollingerBreakout`."""

    period: int = param(20, min=2, max=500, help="moving average period")
    stddev: float = param(2.0, min=0.1, max=10.0, help="band width in standard deviations")


class BollingerBreakout(Strategy[BollingerBreakoutConfig]):
    """Close breaks out of the Bollinger bands."""

    name = "bollinger_breakout"
    version = "1.0.0"

    def configure(self) -> None:
        self.upper, self.lower = self.columns()

    def indicators(self) -> list[str]:
        base = f"bbands({self.cfg.period},{self.cfg.stddev})"
        return [f"{base}.upper", f"{base}.lower"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        buy = crossed_above(ind, "close", self.upper)
        signal = buy_sell(buy, crossed_below(ind, "close", self.lower))
        band = ind[self.upper] if buy else ind[self.lower]
        return self.emit(signal, bar, ind, ratio(bar.close - band, self.atr(ind)))
