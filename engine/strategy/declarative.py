"""A strategy made of validated rule documents (:mod:`engine.strategy.rules`).

Position model, per series, kept in :meth:`Strategy.series_state` (so it is
checkpointed with its symbol):

* flat, and the entry rule *becomes* true (true at this bar, not true at the
  previous evaluated bar): emit the entry signal (BUY, or SHORT when the
  entry root says ``"signal": "SHORT"``) and hold the position;
* holding, and the exit rule is true: emit SELL (COVER after a SHORT) and go flat;
* with no exit rule the strategy never holds: every rising edge of the entry
  rule emits the entry signal.

Confidence is the row's ``parameters.confidence`` (default 0.6).
"""

from __future__ import annotations

from engine.domain import Bar
from engine.strategy.api import IndicatorView, Risk, SignalIntent, SignalType, Strategy
from engine.strategy.rules import Rule

DEFAULT_CONFIDENCE = 0.6


class DeclarativeStrategy(Strategy):
    """Entry/exit rules from a ``strategies_strategy`` row; see the module docstring."""

    name = "declarative"
    version = "1"

    def __init__(
        self, entry: Rule, exit: Rule | None, confidence: float = DEFAULT_CONFIDENCE, risk: Risk | None = None
    ) -> None:
        super().__init__(risk=risk)
        self.entry = entry
        self.exit = exit
        self.confidence = confidence

    def indicators(self) -> list[str]:
        specs = self.entry.specs() + (self.exit.specs() if self.exit else [])
        return list(dict.fromkeys(specs))

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        state = self.series_state(bar)
        entering = self.entry.holds(ind)
        rising = entering and not state.get("was", False)
        state["was"] = entering
        if state.get("holding", False):
            if self.exit is not None and self.exit.holds(ind):
                state["holding"] = False
                return [self.intent(self._closing(), bar, ind, self.confidence, "exit rule")]
            return []
        if rising:
            state["holding"] = self.exit is not None
            return [self.intent(self.entry.signal, bar, ind, self.confidence, "entry rule")]
        return []

    def _closing(self) -> SignalType:
        return SignalType.COVER if self.entry.signal is SignalType.SHORT else SignalType.SELL
