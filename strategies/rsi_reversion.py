"""``rsi_reversion``: BUY when RSI crosses above ``lower``, SELL when it crosses below ``upper``.

Cross above ``lower``: previous bar ``RSI <= lower`` and current bar
``RSI > lower`` (leaving oversold); cross below ``upper`` mirrors it (leaving
overbought). Signals at bar close. Confidence:
``0.5 + 0.45 * min(1, |RSI - previous RSI| / 10)`` — the sharper the turn, the higher.
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
)
from engine.strategy.specs import column_of


class RsiReversion(Strategy):
    """RSI leaves the oversold / overbought zone."""

    name = "rsi_reversion"
    version = "1.0.0"
    params = (
        Param("period", int, 14, min=2, max=500, help="RSI period"),
        Param("lower", float, 30.0, min=0.0, max=100.0, help="oversold level"),
        Param("upper", float, 70.0, min=0.0, max=100.0, help="overbought level"),
    )

    def configure(self) -> None:
        if self.config["lower"] >= self.config["upper"]:
            raise ConfigError(f"rsi_reversion: parameter 'lower' ({self.config['lower']}) must be < 'upper'")
        self.rsi = column_of(self.indicators()[0])

    def indicators(self) -> list[str]:
        return [f"rsi({self.config['period']})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        buy = crossed_above(ind, self.rsi, self.config["lower"])
        signal = buy_sell(buy, crossed_below(ind, self.rsi, self.config["upper"]))
        return self.emit(signal, bar, ind, abs(ind[self.rsi] - ind.prev(self.rsi)) / 10.0)
