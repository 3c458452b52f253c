"""One user's trading desk on paper: position rules, the risk gate, fills on 1m bars, cash and P&L.

A :class:`Desk` is driven in market time, one event at a time, in the order the order stage (or a
backtest) decides (docs/orders.md, "Market time and the watermark"): :meth:`Desk.on_bar` for a 1m bar
of a symbol, :meth:`Desk.on_signal` for a signal of a trading row, :meth:`Desk.set_state` for a
command. What it decides is appended to :attr:`Desk.out` as messages (``orders`` state changes and
``notifications``); :meth:`Desk.book` is its ``portfolios`` message. Nothing here reads a clock: every
stamp is market time, so the same events give the same messages, byte for byte.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from engine.domain import DAY_NS, IST, IST_OFFSET_NS, NS_PER_MIN, NS_PER_S, ns_to_datetime
from engine.orders.charges import NSE_EQUITY, ChargeTable, charges
from engine.orders.execution import Execution, Product
from engine.orders.paper_broker import PaperBroker
from engine.ports import OrderRequest
from engine.orders.ids import (
    book_event_id, order_event_id, order_key, paper_account_id, paper_portfolio_id, uuid5_text,
)
from engine.orders.risk import ENTRIES_PER_SECOND, MIS_MARGIN, Rejection, RiskLimits, TradingState
from engine.outputs import NOTIFICATION_NAMESPACE, notification

PAISA = Decimal("0.01")
SQUARE_OFF_NS = (15 * 60 + 20) * NS_PER_MIN  # 15:20 IST, after local midnight
_BPS = Decimal(10_000)
_ZERO = Decimal(0)
_FINAL = ("COMPLETE", "CANCELLED", "REJECTED")
#: allowed order transitions (websockets' State style: anything else is a bug)
_NEXT = {"PENDING": ("OPEN", "COMPLETE", "CANCELLED", "REJECTED"), "OPEN": ("COMPLETE", "CANCELLED")}


@dataclass(frozen=True, slots=True)
class MinuteBar:
    """A closed 1-minute bar of a symbol (``open_ns``: its open, UTC ns)."""

    symbol: str
    open_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal

    @property
    def close_ns(self) -> int:
        return self.open_ns + NS_PER_MIN


@dataclass(frozen=True, slots=True)
class TradeSignal:
    """A signal of a trading row, as the order path needs it; ``message`` is its ``signals`` message."""

    id: str
    user_id: str
    strategy_id: str | None
    strategy_name: str
    symbol: str
    timeframe: str
    bullish: bool
    decision_ns: int  # its bar's close: when the decision is made and a MARKET order fills
    entry_price: Decimal
    target_price: Decimal | None
    stop_loss: Decimal | None
    execution: Execution
    message: dict[str, Any] | None = None

    @property
    def strategy_key(self) -> str:
        return self.strategy_id or self.strategy_name


@dataclass(slots=True)
class Order:
    """A ``trading_order`` row in the making; :meth:`Desk._move` is the only way its status changes."""

    id: str
    user_id: str
    symbol: str
    product: str
    order_type: str  # MARKET | LIMIT | SL-M
    side: str  # BUY | SELL
    quantity: int
    order_ns: int
    signal_id: str | None = None
    executes_signal: bool = False
    strategy_id: str | None = None
    strategy_name: str = ""
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    status: str = "PENDING"
    filled_quantity: int = 0
    average_price: Decimal | None = None
    exchange_ns: int | None = None
    rejection_reason: str | None = None
    fees: Decimal = _ZERO
    taxes: Decimal = _ZERO
    signal: dict[str, Any] | None = None

    @property
    def tag(self) -> str:
        """:func:`engine.orders.ids.order_tag` of this order's id (its first 20 hex digits)."""
        return self.id.replace("-", "")[:20]

    @property
    def broker_order_id(self) -> str:
        return f"paper-{self.tag}"

    def request(self) -> OrderRequest:
        """This order as the broker port takes it (engine.ports)."""
        return OrderRequest(self.tag, self.symbol, self.side, self.quantity, self.order_type, self.product,
                            self.price, self.trigger_price)

    def message(self, updated_ns: int) -> dict[str, Any]:
        """This order's ``orders`` message as of a change at ``updated_ns`` (docs/orders.md)."""
        return {
            "event_id": order_event_id(self.id, self.status), "id": self.id, "tag": self.tag,
            "user_id": self.user_id, "signal_id": self.signal_id, "executes_signal": self.executes_signal,
            "strategy_id": self.strategy_id, "strategy_name": self.strategy_name,
            "broker_account_id": _account(self.user_id), "broker_order_id": self.broker_order_id,
            "symbol": self.symbol, "product": self.product, "order_type": self.order_type,
            "transaction_type": self.side, "quantity": self.quantity, "price": money(self.price),
            "trigger_price": money(self.trigger_price), "status": self.status, "filled_quantity": self.filled_quantity,
            "average_price": money(self.average_price), "order_timestamp": iso(self.order_ns),
            "exchange_timestamp": iso(self.exchange_ns), "rejection_reason": self.rejection_reason,
            "fees": money(self.fees), "taxes": money(self.taxes), "updated_at": iso(updated_ns),
            "signal": self.signal if self.executes_signal else None,
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in self.__slots__}  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Order:
        values = dict(doc)
        for k in ("price", "trigger_price", "average_price", "fees", "taxes"):
            values[k] = None if values[k] is None else Decimal(values[k])
        return cls(**values)


@dataclass(slots=True)
class Position:
    """An open position of one strategy row in one symbol (``side`` +1 long, -1 short)."""

    symbol: str
    strategy_key: str
    strategy_id: str | None
    strategy_name: str
    product: str
    side: int
    quantity: int
    average_price: Decimal
    entry_charges: Decimal
    opened_ns: int
    entry_id: str
    signal_id: str
    slippage_bps: Decimal
    target: Order | None = None
    stop: Order | None = None

    @property
    def day(self) -> int:
        return ist_day(self.opened_ns)

    def to_json(self) -> dict[str, Any]:
        doc = {k: _plain(getattr(self, k)) for k in self.__slots__ if k not in ("target", "stop")}  # type: ignore[attr-defined]
        doc["target"] = self.target.to_json() if self.target else None
        doc["stop"] = self.stop.to_json() if self.stop else None
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Position:
        values = dict(doc)
        for k in ("average_price", "entry_charges", "slippage_bps"):
            values[k] = Decimal(values[k])
        for k in ("target", "stop"):
            values[k] = Order.from_json(values[k]) if values[k] else None
        return cls(**values)


@dataclass(slots=True)
class Quote:
    """The latest 1m close of a symbol: the price of unrealised P&L and of forced closes."""

    price: Decimal
    at_ns: int  # the bar's close


@dataclass(slots=True)
class Desk:
    """One user's paper desk. ``quotes`` is the market's latest 1m closes, shared by the desks of a stage."""

    user_id: str
    limits: RiskLimits
    cash: Decimal
    quotes: dict[str, Quote]
    table: ChargeTable = NSE_EQUITY
    realised: Decimal = _ZERO
    day: int = 0
    day_realised: Decimal = _ZERO
    manual: TradingState = TradingState.ACTIVE
    manual_reason: str | None = None
    halted_day: int | None = None  # the IST day of an automatic daily-loss halt
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)  # (strategy key, symbol)
    entries: deque[int] = field(default_factory=deque)  # decision times of recent entries (rate limit)
    out: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (topic, message), taken by the stage
    broker: PaperBroker = field(default_factory=PaperBroker)  # the account's orders as the broker lists them
    as_of: int = 0  # market time of the latest event applied

    # --- state -----------------------------------------------------------------------------

    @property
    def state(self) -> TradingState:
        auto = TradingState.HALTED if self.halted_day == self.day else TradingState.ACTIVE
        return self.manual.stricter(auto)

    @property
    def state_reason(self) -> str | None:
        if self.manual is TradingState.HALTED or self.halted_day != self.day:
            return self.manual_reason if self.manual is not TradingState.ACTIVE else None
        return "daily_loss"

    def set_state(self, state: TradingState, reason: str | None, at_ns: int) -> None:
        """A hand-set state (``sharewise risk``): HALTED closes every open position at once."""
        self.enter(at_ns)
        self.manual, self.manual_reason = state, reason
        if state is TradingState.HALTED:
            self._close_all(at_ns, "halt")

    # --- events ----------------------------------------------------------------------------

    def on_signal(self, sig: TradeSignal) -> None:
        """Apply the position rules to a signal of a trading row (docs/orders.md, "Rules")."""
        self.enter(sig.decision_ns)
        self._check_daily_loss(sig.decision_ns)  # a loss reached since the last check halts before this entry
        pos = self.positions.get((sig.strategy_key, sig.symbol))
        side = "BUY" if sig.bullish else "SELL"
        if pos is None:
            if side == "SELL" and sig.execution.product is Product.CNC:
                return  # no short delivery
            self._entry(sig, side)
        elif (pos.side > 0) != sig.bullish:
            self._close(pos, sig.decision_ns, slip(sig.entry_price, side, pos.slippage_bps), sig.decision_ns,
                        "close", signal=sig)
        self._check_daily_loss(sig.decision_ns)

    def on_bar(self, bar: MinuteBar) -> None:
        """Square-off and resting exits of this symbol's positions on a closed 1m bar; then the daily loss."""
        self.enter(bar.close_ns)
        for pos in [p for p in self.positions.values() if p.symbol == bar.symbol and bar.open_ns >= p.opened_ns]:
            if pos.product == Product.MIS and ist_day(bar.open_ns) == pos.day and time_of_day(bar.open_ns) >= SQUARE_OFF_NS:
                self._close(pos, bar.open_ns, bar.open, bar.open_ns, "squareoff")
            elif (fill := exit_fill(pos, bar)) is not None:
                hit, price = fill
                self._close(pos, bar.open_ns, price, bar.open_ns, hit, resting=pos.target if hit == "target" else pos.stop)
        self._check_daily_loss(bar.close_ns)

    def enter(self, at_ns: int) -> None:
        """Move the desk's clock to ``at_ns``; a new IST day squares off yesterday's MIS and lifts a loss halt."""
        self.as_of = max(self.as_of, at_ns)
        day = ist_day(at_ns)
        if day <= self.day:
            return
        for pos in [p for p in self.positions.values() if p.product == Product.MIS and p.day < day]:
            stamp = pos.day * DAY_NS + SQUARE_OFF_NS - IST_OFFSET_NS
            self._close(pos, stamp, self._quote(pos), stamp, "squareoff")
        self.day, self.day_realised = day, _ZERO
        self.broker.new_day()

    # --- entries and the gate --------------------------------------------------------------

    def _entry(self, sig: TradeSignal, side: str) -> None:
        ex = sig.execution
        qty = ex.quantity_at(sig.entry_price)
        price = slip(sig.entry_price, side, ex.slippage_bps)
        order = Order(order_key(f"{sig.id}|entry"), self.user_id, sig.symbol, str(ex.product), "MARKET", side,
                      qty, sig.decision_ns, sig.id, True, sig.strategy_id, sig.strategy_name, signal=sig.message)
        self._emit(order, sig.decision_ns)
        cost = charges(str(ex.product), side, price, qty, self.table)
        if (reason := self._deny(sig, qty, price, cost.total)) is not None:
            order.rejection_reason = str(reason)
            self._move(order, "REJECTED", sig.decision_ns)
            self._note(order, f"{side} {qty} {sig.symbol} rejected: {reason}", f"Order rejected: {sig.symbol}", "HIGH",
                       sig.decision_ns)
            return
        self.entries.append(sig.decision_ns)
        self._fill(order, price, sig.decision_ns, cost.fees, cost.taxes)
        pos = Position(sig.symbol, sig.strategy_key, sig.strategy_id, sig.strategy_name, str(ex.product),
                       1 if side == "BUY" else -1, qty, price, cost.total, sig.decision_ns, order.id, sig.id,
                       ex.slippage_bps)
        exit_side = "SELL" if side == "BUY" else "BUY"
        if sig.target_price is not None:
            pos.target = self._rest(pos, sig, exit_side, "LIMIT", "target", price=sig.target_price)
        if sig.stop_loss is not None:
            pos.stop = self._rest(pos, sig, exit_side, "SL-M", "stop", trigger=sig.stop_loss)
        self.positions[(sig.strategy_key, sig.symbol)] = pos

    def _deny(self, sig: TradeSignal, qty: int, price: Decimal, cost: Decimal) -> Rejection | None:
        """The first rule that denies this entry (docs/orders.md, "Risk gate"), or None."""
        state, t = self.state, sig.decision_ns
        if state is TradingState.HALTED:
            return Rejection.DAILY_LOSS if self.manual is not TradingState.HALTED else Rejection.HALTED
        if state is TradingState.REDUCING:
            return Rejection.REDUCING
        if sig.execution.product is Product.MIS and time_of_day(t) >= SQUARE_OFF_NS:
            return Rejection.AFTER_SQUARE_OFF
        if qty <= 0:
            return Rejection.ZERO_QUANTITY
        if len(self.positions) >= self.limits.max_positions:
            return Rejection.MAX_POSITIONS
        notional = price * qty
        need = notional + cost if sig.execution.product is Product.CNC else notional * MIS_MARGIN
        if need > self.cash:
            return Rejection.INSUFFICIENT_FUNDS
        while self.entries and self.entries[0] <= t - NS_PER_S:
            self.entries.popleft()
        if len(self.entries) >= ENTRIES_PER_SECOND:
            return Rejection.RATE_LIMIT
        return None

    def _rest(self, pos: Position, sig: TradeSignal, side: str, kind: str, leg: str, *, price: Decimal | None = None,
              trigger: Decimal | None = None) -> Order:
        order = Order(order_key(f"{pos.entry_id}|{leg}"), self.user_id, pos.symbol, pos.product, kind, side,
                      pos.quantity, pos.opened_ns, sig.id, False, pos.strategy_id, pos.strategy_name, price=price,
                      trigger_price=trigger)
        self._emit(order, pos.opened_ns)
        self.broker.rest(order.request(), ns_to_datetime(pos.opened_ns, IST))
        self._move(order, "OPEN", pos.opened_ns)
        return order

    # --- closes ----------------------------------------------------------------------------

    def _close(self, pos: Position, order_ns: int, price: Decimal, fill_ns: int, leg: str, *,
               resting: Order | None = None, signal: TradeSignal | None = None) -> None:
        """Close ``pos`` at ``price``: by its resting exit ``resting``, a closing ``signal``, or a MARKET order."""
        side = "SELL" if pos.side > 0 else "BUY"
        if resting is None:
            order = Order(order_key(f"{signal.id}|close" if signal else f"{pos.entry_id}|{leg}|{order_ns}"),
                          self.user_id, pos.symbol, pos.product, "MARKET", side, pos.quantity, order_ns,
                          signal.id if signal else pos.signal_id, signal is not None, pos.strategy_id,
                          pos.strategy_name, signal=signal.message if signal else None)
            self._emit(order, order_ns)
        else:
            order = resting
        for other in (pos.target, pos.stop):
            if other is not None and other is not resting and other.status == "OPEN":
                self.broker.cancel_now(other.broker_order_id, ns_to_datetime(fill_ns, IST))
                self._move(other, "CANCELLED", fill_ns)
        cost = charges(pos.product, side, price, pos.quantity, self.table)
        self._fill(order, price, fill_ns, cost.fees, cost.taxes)
        gross = (price - pos.average_price) * pos.quantity * pos.side
        net = gross - pos.entry_charges - cost.total
        self.realised += net
        if ist_day(fill_ns) == self.day:
            self.day_realised += net
        del self.positions[(pos.strategy_key, pos.symbol)]

    def _close_all(self, at_ns: int, leg: str) -> None:
        for pos in list(self.positions.values()):
            self._close(pos, at_ns, slip(self._quote(pos), "SELL" if pos.side > 0 else "BUY", pos.slippage_bps),
                        at_ns, leg)

    def _check_daily_loss(self, at_ns: int) -> None:
        if self.halted_day == self.day or self.limits.max_daily_loss <= 0:
            return
        pnl = self.day_realised + self.unrealised()
        if pnl > -self.limits.max_daily_loss:
            return
        self.halted_day = self.day
        self._close_all(at_ns, "halt")
        pnl = self.day_realised
        self.out.append(("notifications", notification(
            _note_id(f"daily_loss|{self.user_id}|{self.day}"), self.user_id, "Trading halted: daily loss limit",
            f"Your P&L for the day reached ₹{money(pnl)} (limit −₹{money(self.limits.max_daily_loss)}): open"
            f" positions were closed and no new orders will be placed until the next session.",
            "SYSTEM", "URGENT", iso(at_ns))))  # fmt: skip

    # --- fills, cash and messages ------------------------------------------------------------

    def _fill(self, order: Order, price: Decimal, at_ns: int, fees: Decimal, taxes: Decimal) -> None:
        done = self.broker.fill(order.request(), price, ns_to_datetime(at_ns, IST))
        order.filled_quantity, order.average_price, order.exchange_ns = done.filled_quantity, done.average_price, at_ns
        order.fees, order.taxes = fees, taxes
        value = price * order.quantity
        self.cash += -(value + fees + taxes) if order.side == "BUY" else value - fees - taxes
        self._move(order, "COMPLETE", at_ns)
        self._note(order, f"{order.side} {order.quantity} {order.symbol} filled at ₹{money(price)}"
                          f" ({order.order_type}, {order.product}, {order.strategy_name}); charges ₹{money(fees + taxes)}.",
                   f"Order filled: {order.side} {order.symbol}", "MEDIUM", at_ns)

    def _move(self, order: Order, status: str, at_ns: int) -> None:
        if status not in _NEXT.get(order.status, ()):
            raise AssertionError(f"order {order.id}: {order.status} -> {status} is not a transition")
        order.status = status
        self._emit(order, at_ns)

    def _emit(self, order: Order, at_ns: int) -> None:
        self.out.append(("orders", order.message(at_ns)))

    def _note(self, order: Order, message: str, title: str, priority: str, at_ns: int) -> None:
        self.out.append(("notifications", notification(
            _note_id(f"order|{order.id}|{order.status}"), self.user_id, title, message, "ORDER", priority, iso(at_ns))))

    def _quote(self, pos: Position) -> Decimal:
        quote = self.quotes.get(pos.symbol)
        return quote.price if quote is not None else pos.average_price

    # --- the book ----------------------------------------------------------------------------

    def unrealised(self) -> Decimal:
        return sum(((self._quote(p) - p.average_price) * p.quantity * p.side for p in self.positions.values()), _ZERO)

    def book(self) -> dict[str, Any]:
        """The ``portfolios`` message of this desk as of :attr:`as_of` (docs/orders.md)."""
        by_symbol: dict[str, list[Position]] = {}
        for pos in self.positions.values():
            by_symbol.setdefault(pos.symbol, []).append(pos)
        holdings = [self._holding(symbol, group) for symbol, group in sorted(by_symbol.items())]
        unrealised = self.unrealised()
        market_value = sum((self._quote(p) * p.quantity * p.side for p in self.positions.values()), _ZERO)
        invested = sum((p.average_price * p.quantity for p in self.positions.values()), _ZERO)
        as_of = iso(self.as_of)
        return {
            "id": str(book_event_id(self.user_id, as_of)), "user_id": self.user_id, "as_of": as_of,
            "portfolio_id": str(paper_portfolio_id(self.user_id)),
            "broker_account_id": str(paper_account_id(self.user_id)),
            "trading_state": str(self.state), "state_reason": self.state_reason,
            "portfolio": {"name": "Paper Portfolio", "total_value": money(self.cash + market_value),
                          "available_cash": money(self.cash), "invested_amount": money(invested),
                          "unrealized_pnl": money(unrealised), "realized_pnl": money(self.realised)},
            "holdings": holdings,
            "day": {"date": ns_to_datetime(self.as_of, IST).date().isoformat(), "realized": money(self.day_realised),
                    "unrealized": money(unrealised), "pnl": money(self.day_realised + unrealised)},
        }  # fmt: skip

    def _holding(self, symbol: str, group: list[Position]) -> dict[str, Any]:
        net = sum(p.quantity * p.side for p in group)
        cost = sum((p.average_price * p.quantity * p.side for p in group), _ZERO)
        quote = self.quotes.get(symbol)
        current = quote.price if quote is not None else group[0].average_price
        return {
            "symbol": symbol, "quantity": net,
            "average_price": money((cost / net).quantize(PAISA, ROUND_HALF_UP) if net else _ZERO),
            "current_price": money(current), "last_price_update": iso(quote.at_ns) if quote else iso(group[0].opened_ns),
            "unrealized_pnl": money(sum(((self._quote(p) - p.average_price) * p.quantity * p.side for p in group), _ZERO)),
        }  # fmt: skip

    # --- checkpoints -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id, "cash": str(self.cash), "realised": str(self.realised), "day": self.day,
            "day_realised": str(self.day_realised), "manual": str(self.manual), "manual_reason": self.manual_reason,
            "halted_day": self.halted_day, "entries": list(self.entries), "as_of": self.as_of,
            "positions": [p.to_json() for p in self.positions.values()],
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any], limits: RiskLimits, quotes: dict[str, Quote],
                  table: ChargeTable = NSE_EQUITY) -> Desk:
        desk = cls(doc["user_id"], limits, Decimal(doc["cash"]), quotes, table, Decimal(doc["realised"]), doc["day"],
                   Decimal(doc["day_realised"]), TradingState(doc["manual"]), doc["manual_reason"], doc["halted_day"],
                   entries=deque(doc["entries"]), as_of=doc["as_of"])
        for p in doc["positions"]:
            pos = Position.from_json(p)
            desk.positions[(pos.strategy_key, pos.symbol)] = pos
            for resting in (pos.target, pos.stop):
                if resting is not None and resting.status == "OPEN":  # the broker's book lists it again
                    desk.broker.rest(resting.request(), ns_to_datetime(pos.opened_ns, IST))
        return desk


def exit_fill(pos: Position, bar: MinuteBar) -> tuple[str, Decimal] | None:
    """Which resting exit of ``pos`` fills on ``bar`` and at what price; the stop wins a bar where both could."""
    stop = pos.stop.trigger_price if pos.stop else None
    target = pos.target.price if pos.target else None
    if pos.side > 0:
        if stop is not None and bar.low <= stop:
            return "stop", min(bar.open, stop)
        if target is not None and bar.high >= target:
            return "target", max(bar.open, target)
    else:
        if stop is not None and bar.high >= stop:
            return "stop", max(bar.open, stop)
        if target is not None and bar.low <= target:
            return "target", min(bar.open, target)
    return None


def slip(price: Decimal, side: str, bps: Decimal) -> Decimal:
    """``price`` moved ``bps`` basis points against the trader (up for a buy), to the paisa."""
    moved = price * (1 + bps / _BPS) if side == "BUY" else price * (1 - bps / _BPS)
    return moved.quantize(PAISA, ROUND_HALF_UP)


def ist_day(ns: int) -> int:
    return (ns + IST_OFFSET_NS) // DAY_NS


def time_of_day(ns: int) -> int:
    """Nanoseconds after IST midnight."""
    return (ns + IST_OFFSET_NS) % DAY_NS


@lru_cache(maxsize=8192)
def iso(ns: int | None) -> str | None:
    """Market time as ISO 8601 in IST (cached: decisions cluster on minute boundaries)."""
    return None if ns is None else ns_to_datetime(ns, IST).isoformat()


def money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(PAISA, ROUND_HALF_UP))


@lru_cache(maxsize=65536)
def _account(user_id: str) -> str:
    return str(paper_account_id(user_id))


def _note_id(key: str) -> str:
    return uuid5_text(NOTIFICATION_NAMESPACE, key)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
