"""``rsi_reversion``: BUY when RSI crosses above ``lower``, SELL when it crosses below ``upper``.

Cross above ``lower``: previous bar ``RSI <= lower`` and current bar
``RSI > lower`` (leaving oversold); cross below ``upper`` mirrors it (leaving
overbought). Signals at bar close. Confidence:
``0.5 + 0.45 * min(1, |RSI - previous RSI| / 10)`` — the sharper the turn, the higher.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy.api import IndicatorView, SignalIntent, Strategy, buy_sell, crossed_above, crossed_below
from engine.strategy.config import StrategyConfig, param


@dataclass(frozen=True, slots=True)
class RsiReversionConfig(StrategyConfig):
    """Parameters of :class:`RsiReversion`; ``lower`` < ``upper``."""

    period: int = param(14, min=2, max=500, help="RSI period")
    lower: float = param(30.0, min=0.0, max=100.0, help="oversold level")
    upper: float = param(70.0, min=0.0, max=100.0, help="overbought level")

    def check(self) -> None:
        self.require_less("lower", "upper")


class RsiReversion(Strategy[RsiReversionConfig]):
    """RSI leaves the oversold / overbought zone."""

    name = "rsi_reversion"
    version = "1.0.0"

    def configure(self) -> None:
        [self.rsi] = self.columns()

    def indicators(self) -> list[str]:
        return [f"rsi({self.cfg.period})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        buy = crossed_above(ind, self.rsi, self.cfg.lower)
        signal = buy_sell(buy, crossed_below(ind, self.rsi, self.cfg.upper))
        return self.emit(signal, bar, ind, abs(ind[self.rsi] - ind.prev(self.rsi)) / 10.0)
