"""``ema_cross``: BUY when EMA(fast) crosses above EMA(slow), SELL when it crosses below.

Cross above: previous bar ``EMA(fast) <= EMA(slow)`` and current bar
``EMA(fast) > EMA(slow)``; cross below mirrors it. Signals at bar close.
Confidence: ``0.5 + 0.45 * min(1, |EMA(fast) - EMA(slow)| / ATR)`` — how
decisively the averages separated on the crossing bar, in ATRs.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy.api import IndicatorView, SignalIntent, Strategy, buy_sell, crossed_above, crossed_below, ratio
from engine.strategy.config import StrategyConfig, param


@dataclass(frozen=True, slots=True)
class EmaCrossConfig(StrategyConfig):
    """Parameters of :class:`EmaCross`; ``fast`` < ``slow``."""

    fast: int = param(9, min=2, max=500, help="fast EMA period")
    slow: int = param(21, min=3, max=1000, help="slow EMA period")

    def check(self) -> None:
        self.require_less("fast", "slow")


class EmaCross(Strategy[EmaCrossConfig]):
    """EMA(fast) / EMA(slow) crossover."""

    name = "ema_cross"
    version = "1.0.0"

    def configure(self) -> None:
        self.fast, self.slow = self.columns()

    def indicators(self) -> list[str]:
        return [f"ema({self.cfg.fast})", f"ema({self.cfg.slow})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        signal = buy_sell(crossed_above(ind, self.fast, self.slow), crossed_below(ind, self.fast, self.slow))
        return self.emit(signal, bar, ind, ratio(ind[self.fast] - ind[self.slow], self.atr(ind)))
