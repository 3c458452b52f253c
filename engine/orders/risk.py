"""The risk gate's vocabulary: trading states with guarded transitions, limits, and rejection reasons.

Like NautilusTrader's ``TradingState``: ACTIVE trades, REDUCING only closes, HALTED places nothing and
has its open positions closed. A user's effective state is the stricter of the state set by hand
(``sharewise risk``) and the automatic daily-loss halt, which lasts until the next session.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from engine.errors import ConfigError

#: entries per second of market time per user (Kite Connect's order rate limit)
ENTRIES_PER_SECOND = 10
#: share of an MIS entry's notional that must be in cash (5x intraday leverage)
MIS_MARGIN = Decimal("0.2")
DEFAULT_MAX_POSITIONS = 5
DEFAULT_MAX_DAILY_LOSS = Decimal("10000.00")


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def parse(cls, text: str) -> TradingState:
        try:
            return cls(text.upper())
        except ValueError:
            raise ConfigError(f"trading state must be ACTIVE, REDUCING or HALTED, got {text!r}") from None

    def stricter(self, other: TradingState) -> TradingState:
        return self if self.severity >= other.severity else other


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class Rejection(StrEnum):
    """``trading_order.rejection_reason`` of an entry the gate denied: the rule that denied it."""

    HALTED = "halted"
    REDUCING = "reducing"
    DAILY_LOSS = "daily_loss"
    AFTER_SQUARE_OFF = "after_square_off"
    ZERO_QUANTITY = "zero_quantity"
    MAX_POSITIONS = "max_positions"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    RATE_LIMIT = "rate_limit"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """A user's limits: ``users_userprofile.max_daily_loss`` and ``trading_preferences.max_open_positions``."""

    max_daily_loss: Decimal = DEFAULT_MAX_DAILY_LOSS
    max_positions: int = DEFAULT_MAX_POSITIONS
