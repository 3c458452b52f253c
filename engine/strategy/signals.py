"""From an emitted intent to the values a ``trading_signal`` row holds — one function, live and backtest alike.

``trading_signal`` stores prices as ``DECIMAL(12,2)`` and the confidence as
``DECIMAL(3,2)``. :func:`round_price` rounds the shortest decimal spelling of
the float (``repr``), half away from zero, to two places: the value
PostgreSQL would store for that literal. The pipeline's sink and
``sharewise backtest`` both go through :func:`signal_record`, so a live row
and a backtest row of the same bar are equal digit for digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping

from engine.strategy.runner import EmittedSignal

_CENT = Decimal("0.01")


def round_price(value: float | None) -> Decimal | None:
    """``value`` rounded to 2 decimal places as a :class:`Decimal` (None stays None)."""
    if value is None:
        return None
    return Decimal(repr(float(value))).quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """The ``trading_signal`` values of one emitted signal (the sink adds id and bookkeeping columns).

    ``bar_time`` is the bar's open time (aware, IST); ``timeframe`` its label.
    """

    bar_time: datetime
    symbol: str
    timeframe: str
    strategy_name: str
    signal_type: str
    confidence_score: Decimal
    entry_price: Decimal
    target_price: Decimal | None
    stop_loss: Decimal | None
    valid_until: datetime | None
    user_id: str | None
    strategy_id: str | None
    market_data: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The backtest's signal object: time, symbol, signal_type, prices and confidence as JSON numbers."""
        return {
            "time": self.bar_time.isoformat(),
            "symbol": self.symbol,
            "signal_type": self.signal_type,
            "entry_price": _number(self.entry_price),
            "target_price": _number(self.target_price),
            "stop_loss": _number(self.stop_loss),
            "confidence_score": _number(self.confidence_score),
        }


def signal_record(signal: EmittedSignal) -> SignalRecord:
    """The rounded row values of ``signal``; ``market_data`` gets the note when the intent has one."""
    intent, bar = signal.intent, signal.bar
    market_data = dict(intent.market_data or {})
    if intent.note:
        market_data.setdefault("note", intent.note)
    return SignalRecord(
        bar_time=bar.time,
        symbol=bar.symbol,
        timeframe=bar.timeframe.label,
        strategy_name=signal.strategy_name,
        signal_type=str(intent.signal_type),
        confidence_score=round_price(intent.confidence),  # type: ignore[arg-type]
        entry_price=round_price(intent.entry),  # type: ignore[arg-type]
        target_price=round_price(intent.target),
        stop_loss=round_price(intent.stop_loss),
        valid_until=intent.valid_until,
        user_id=signal.user_id,
        strategy_id=signal.strategy_id,
        market_data=market_data,
    )


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
