"""``roc_momentum``: BUY when ROC(period) crosses above +threshold %, SELL when it crosses below -threshold %.

ROC is TA-Lib's rate of change in percent over ``period`` bars. Cross above:
previous bar ``ROC <= threshold`` and current bar ``ROC > threshold``.
Confidence: ``0.5 + 0.45 * min(1, |ROC| / (2 * threshold))``.
"""

from __future__ import annotations

from engine.domain import Bar
from engine.strategy import (
    IndicatorView,
    Param,
    SignalIntent,
    Strategy,
    buy_sell,
    column_of,
    crossed_above,
    crossed_below,
)


class RocMomentum(Strategy):
    """Rate of change breaks a percentage threshold."""

    name = "roc_momentum"
    version = "0.1.0"
    params = (
        Param("period", int, 10, min=1, max=500, help="ROC period in bars"),
        Param("threshold", float, 1.0, min=0.01, max=100.0, help="threshold in percent"),
    )

    def configure(self) -> None:
        self.roc = column_of(self.indicators()[0])

    def indicators(self) -> list[str]:
        return [f"roc({self.config['period']})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        threshold = self.config["threshold"]
        signal = buy_sell(crossed_above(ind, self.roc, threshold), crossed_below(ind, self.roc, -threshold))
        return self.emit(signal, bar, ind, abs(ind[self.roc]) / (2 * threshold))
