"""roc_momentum on hand-made indicator values."""

from __future__ import annotations

from engine.domain import Bar, Timeframe
from engine.strategy import IndicatorView, SignalType

from sharewise_example import RocMomentum


def _bar(close: float) -> Bar:
    return Bar("INFY", Timeframe.M5, 1_767_584_700_000_000_000, close, close, close, close, 10.0, 1)


def test_buy_when_roc_crosses_above_threshold():
    ind = IndicatorView.from_values({"roc_10": 1.5, "atr_14": 1.0}, prev={"roc_10": 0.8})
    [intent] = RocMomentum().on_bar(_bar(100.0), ind)
    assert intent.signal_type is SignalType.BUY
    assert intent.confidence == 0.5 + 0.45 * 0.75


def test_sell_when_roc_crosses_below_minus_threshold():
    ind = IndicatorView.from_values({"roc_10": -1.2, "atr_14": 1.0}, prev={"roc_10": -0.5})
    [intent] = RocMomentum(threshold=1.0).on_bar(_bar(100.0), ind)
    assert intent.signal_type is SignalType.SELL
