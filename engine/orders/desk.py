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
from engine.orders.tick_size import round_limit, round_trigger
from engine.orders.risk import ENTRIES_PER_SECOND, MIS_MARGIN, Rejection, RiskLimits, TradingState
from engine.outputs import NOTIFICATION_NAMESPACE, notification

PAISA = Decimal("0.01")
SQUARE_OFF_NS = (15 * 60 + 20) * NS_PER_MIN  # 15:20 IST, after local midnight
_BPS = Decimal(10_000)
_ZERO = Decimal(0)
_FINAL = ("COMPLETE", "CANCELLED", "REJECTED")
#: allowed order transitions (websockets' State style: anything else is a bug)
_NEXT = {"PENDING": ("OPEN", "COMPLETE", "CANCELLED", "REJECTED"), "OPEN": ("COMPLETE", "CANCELLED", "REJECTED")}
#: the rejection reason of an order whose broker refused the account's token (issue 13)
TOKEN_EXPIRED = "broker_token_expired"
_ORDER_SLOTS = ("pending", "target", "stop", "exit")


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
    account: str | None = None  # live: the broker account it goes through (None: paper)
    broker_id: str | None = None  # live: the broker's order id, once known
    cancelling: bool = False  # live: a cancel was sent

    @property
    def tag(self) -> str:
        """:func:`engine.orders.ids.order_tag` of this order's id (its first 20 hex digits)."""
        return self.id.replace("-", "")[:20]

    @property
    def broker_order_id(self) -> str | None:
        return self.broker_id if self.account is not None else f"paper-{self.tag}"

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
            "broker_account_id": self.account or _account(self.user_id), "broker_order_id": self.broker_order_id,
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
    # live positions (docs/orders.md, "Live orders"): the broker decides fills; the desk keeps orders in flight
    account: str | None = None
    pending: Order | None = None  # the entry, until the broker fills it
    exit: Order | None = None  # the MARKET close, once sent
    target_price: Decimal | None = None
    stop_price: Decimal | None = None
    exits_placed: bool = False
    closing: str | None = None  # why it is being closed: close, squareoff, halt, race
    renewed: int = 0  # exits placed again after the broker ended them (a DAY order expires with the session)
    renewing: bool = False  # an exit ended without us: both are placed again once neither is open
    closing_ns: int = 0
    close_signal: dict[str, Any] | None = None  # the closing signal's message (a close by signal)

    @property
    def day(self) -> int:
        return ist_day(self.opened_ns)

    @property
    def held(self) -> bool:
        """Whether the position is held: a live entry counts once the broker filled it."""
        return self.pending is None

    def orders(self) -> list[Order]:
        return [o for o in (self.pending, self.target, self.stop, self.exit) if o is not None]

    def to_json(self) -> dict[str, Any]:
        doc = {k: _plain(getattr(self, k)) for k in self.__slots__ if k not in _ORDER_SLOTS}  # type: ignore[attr-defined]
        for k in _ORDER_SLOTS:
            order = getattr(self, k)
            doc[k] = order.to_json() if order else None
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Position:
        values = dict(doc)
        for k in ("average_price", "entry_charges", "slippage_bps"):
            values[k] = Decimal(values[k])
        for k in ("target_price", "stop_price"):
            values[k] = None if values.get(k) is None else Decimal(values[k])
        for k in _ORDER_SLOTS:
            values[k] = Order.from_json(values[k]) if values.get(k) else None
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
    live: dict[str, tuple[str, str]] = field(default_factory=dict)  # tag -> position key, of live orders in flight
    orphans: dict[str, Order] = field(default_factory=dict)  # live orders in flight whose position is gone
    expired: set[str] = field(default_factory=set)  # live accounts whose token the broker refused

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
            if pos.account is not None:
                self._request_close(pos, "close", sig.decision_ns, sig.message or {"id": sig.id})
            else:
                self._close(pos, sig.decision_ns, slip(sig.entry_price, side, pos.slippage_bps), sig.decision_ns,
                            "close", signal=sig)
        self._check_daily_loss(sig.decision_ns)

    def on_bar(self, bar: MinuteBar) -> None:
        """Square-off and resting exits of this symbol's positions on a closed 1m bar; then the daily loss."""
        self.enter(bar.close_ns)
        for pos in [p for p in self.positions.values() if p.symbol == bar.symbol and bar.open_ns >= p.opened_ns]:
            if pos.product == Product.MIS and ist_day(bar.open_ns) == pos.day and time_of_day(bar.open_ns) >= SQUARE_OFF_NS:
                if pos.account is not None:
                    self._request_close(pos, "squareoff", bar.open_ns)
                else:
                    self._close(pos, bar.open_ns, bar.open, bar.open_ns, "squareoff")
            elif pos.account is not None:
                continue  # a live position's exits rest at the broker, which fills them
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
            if pos.account is not None:
                self._request_close(pos, "squareoff", stamp)
            else:
                self._close(pos, stamp, self._quote(pos), stamp, "squareoff")
        self.day, self.day_realised = day, _ZERO
        self.broker.new_day()

    # --- entries and the gate --------------------------------------------------------------

    def _entry(self, sig: TradeSignal, side: str) -> None:
        ex = sig.execution
        qty = ex.quantity_at(sig.entry_price)
        price = slip(sig.entry_price, side, ex.slippage_bps)
        order = Order(order_key(f"{sig.id}|entry"), self.user_id, sig.symbol, str(ex.product), "MARKET", side,
                      qty, sig.decision_ns, sig.id, True, sig.strategy_id, sig.strategy_name, signal=sig.message,
                      account=ex.broker_account)
        self._emit(order, sig.decision_ns)
        cost = charges(str(ex.product), side, price, qty, self.table)
        if (reason := self._deny(sig, qty, price, cost.total)) is not None:
            order.rejection_reason = str(reason)
            self._move(order, "REJECTED", sig.decision_ns)
            self._note(order, f"{side} {qty} {sig.symbol} rejected: {reason}", f"Order rejected: {sig.symbol}", "HIGH",
                       sig.decision_ns)
            return
        self.entries.append(sig.decision_ns)
        if ex.live:
            self._live_entry(sig, order, price)
            return
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
            if pos.account is not None:
                self._request_close(pos, leg, at_ns)
                continue
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

    # --- live orders (docs/orders.md, "Live orders") ------------------------------------------
    #
    # A live row makes the paper row's decisions, but the broker fills: the desk sends commands (``broker``
    # outputs: place, cancel, follow) and applies the broker's answers (:meth:`on_broker`) at the market
    # time they arrive. A position's orders in flight are driven toward what its state asks for by
    # :meth:`_advance`: exits resting once the entry filled; when closing, exits cancelled, then a MARKET close.

    def _live_entry(self, sig: TradeSignal, order: Order, price: Decimal) -> None:
        """Send a live entry; its position is held once the broker fills it (until then it counts for the gate)."""
        ex = sig.execution
        pos = Position(sig.symbol, sig.strategy_key, sig.strategy_id, sig.strategy_name, str(ex.product),
                       1 if order.side == "BUY" else -1, order.quantity, price, _ZERO, sig.decision_ns, order.id,
                       sig.id, ex.slippage_bps, account=ex.broker_account, pending=order,
                       target_price=sig.target_price, stop_price=sig.stop_loss)
        self.positions[(sig.strategy_key, sig.symbol)] = pos
        self._place(pos, order)

    def _request_close(self, pos: Position, leg: str, at_ns: int, signal: dict[str, Any] | None = None) -> None:
        if pos.closing is None:
            pos.closing, pos.closing_ns, pos.close_signal = leg, at_ns, signal
        self._advance(pos, at_ns)

    def _advance(self, pos: Position, at_ns: int) -> None:
        if pos.pending is not None:
            return  # the entry is in flight: nothing rests or closes before it fills
        open_exits = [o for o in (pos.target, pos.stop) if o is not None and o.status not in _FINAL]
        exit_side = "SELL" if pos.side > 0 else "BUY"
        if pos.closing is not None:
            for order in open_exits:
                self._cancel(order)
            if not open_exits and pos.exit is None:  # a close the broker rejected is not sent again
                sig = pos.close_signal
                key = f"{sig['id']}|close" if sig is not None else f"{pos.entry_id}|{pos.closing}|{pos.closing_ns}"
                pos.exit = Order(order_key(key), self.user_id, pos.symbol, pos.product, "MARKET", exit_side,
                                 pos.quantity, pos.closing_ns, sig["id"] if sig else pos.signal_id, sig is not None,
                                 pos.strategy_id, pos.strategy_name, signal=sig if sig and "symbol" in sig else None,
                                 account=pos.account)
                self._emit(pos.exit, at_ns)
                self._place(pos, pos.exit)
            return
        if not pos.exits_placed:
            pos.exits_placed = True
            if pos.target_price is not None:
                pos.target = self._live_exit(pos, exit_side, "LIMIT", "target", at_ns,
                                             price=round_limit(pos.target_price, exit_side))
            if pos.stop_price is not None:
                pos.stop = self._live_exit(pos, exit_side, "SL-M", "stop", at_ns,
                                           trigger=round_trigger(pos.stop_price, exit_side))

    def _live_exit(self, pos: Position, side: str, kind: str, leg: str, at_ns: int, *, price: Decimal | None = None,
                   trigger: Decimal | None = None) -> Order:
        key = f"{pos.entry_id}|{leg}" if not pos.renewed else f"{pos.entry_id}|{leg}|{pos.renewed}"  # a new tag
        order = Order(order_key(key), self.user_id, pos.symbol, pos.product, kind, side,
                      pos.quantity, at_ns, pos.signal_id, False, pos.strategy_id, pos.strategy_name, price=price,
                      trigger_price=trigger, account=pos.account)
        self._emit(order, at_ns)
        self._place(pos, order)
        return order

    def _place(self, pos: Position, order: Order) -> None:
        self.live[order.tag] = (pos.strategy_key, pos.symbol)
        self.out.append(("broker", broker_command("place", self.user_id, order)))

    def _cancel(self, order: Order) -> None:
        if not order.cancelling:
            order.cancelling = True
            self.out.append(("broker", broker_command("cancel", self.user_id, order)))

    def live_commands(self) -> list[dict[str, Any]]:
        """What the broker must be asked again for every live order in flight (after a restart or a take-over):
        a place for one never acknowledged (the adapter finds it by tag first: nothing is sent twice), a cancel
        for one being cancelled, else a follow."""
        orders = [o for p in self.positions.values() for o in p.orders()] + list(self.orphans.values())
        out = []
        for order in orders:
            if order.account is None or order.status in _FINAL:
                continue
            op = "cancel" if order.cancelling else "place" if order.status == "PENDING" else "follow"
            out.append(broker_command(op, self.user_id, order))
        return out

    def refresh(self, tag: str, account: str) -> dict[str, Any] | None:
        """A ``refresh`` command for a live order in flight of ``account`` (the broker said it changed), or None."""
        _, order = self._live_order(tag)
        if order is None or order.status in _FINAL or order.account != account:
            return None
        return broker_command("refresh", self.user_id, order)

    def on_broker(self, update: BrokerUpdate, at_ns: int, *, account: str | None = None) -> None:
        """Apply the broker's answer about a live order, at market time ``at_ns``; repeats change nothing, and so
        does an answer from another account than the order's (``account``, when the answer names one)."""
        self.enter(at_ns)
        pos, order = self._live_order(update.tag)
        if order is None or order.status in _FINAL or (account is not None and order.account != account):
            return
        if update.broker_order_id:
            order.broker_id = update.broker_order_id
        if update.reason == TOKEN_EXPIRED:
            self._token_expired(order.account or "", at_ns)
        else:
            self.expired.discard(order.account or "")
        if update.status == "OPEN":
            if order.status == "PENDING":
                self._move(order, "OPEN", at_ns)
            return  # a partial fill is booked when the order is final
        self.live.pop(order.tag, None)
        self.orphans.pop(order.tag, None)
        if update.filled_quantity > 0 and update.average_price is not None:
            self._live_fill(pos, order, update, at_ns)
        else:
            order.rejection_reason = update.reason if update.status == "REJECTED" else None
            self._move(order, "CANCELLED" if update.status == "CANCELLED" else "REJECTED", at_ns)
            self._live_unfilled(pos, order, at_ns)
        if pos is not None and self.positions.get((pos.strategy_key, pos.symbol)) is pos:
            self._advance(pos, at_ns)
        self._check_daily_loss(at_ns)

    def _live_order(self, tag: str) -> tuple[Position | None, Order | None]:
        key = self.live.get(tag)
        pos = self.positions.get(key) if key is not None else None  # type: ignore[arg-type]
        if pos is not None:
            for order in pos.orders():
                if order.tag == tag:
                    return pos, order
        return None, self.orphans.get(tag)

    def _live_fill(self, pos: Position | None, order: Order, update: BrokerUpdate, at_ns: int) -> None:
        qty, price = update.filled_quantity, update.average_price
        assert price is not None
        cost = charges(order.product, order.side, price, qty, self.table)
        self._book_fill(order, price, qty, update.exchange_ns or at_ns, at_ns, cost.fees, cost.taxes)
        if pos is not None and order is pos.pending:
            pos.pending, pos.quantity, pos.average_price, pos.entry_charges = None, qty, price, cost.total
            return
        if pos is None:  # a fill of an order whose position is gone: both exits filled in a race
            self._stray(order, qty, price, cost.total, at_ns)
            return
        share = (pos.entry_charges * qty / pos.quantity).quantize(PAISA, ROUND_HALF_UP)
        net = (price - pos.average_price) * qty * pos.side - share - cost.total
        self.realised += net
        self.day_realised += net
        pos.quantity -= qty
        pos.entry_charges -= share
        if pos.quantity > 0:
            return  # part of it closed (a partial fill the broker then cancelled): the rest stays
        del self.positions[(pos.strategy_key, pos.symbol)]
        for other in pos.orders():
            if other.status not in _FINAL:  # the other exit: cancelled now, followed until the broker says so
                self.live.pop(other.tag, None)
                self.orphans[other.tag] = other
                self._cancel(other)

    def _stray(self, order: Order, qty: int, price: Decimal, cost: Decimal, at_ns: int) -> None:
        """A fill nothing asked for any more (the second exit of a race): flatten it with a MARKET order."""
        side = 1 if order.side == "BUY" else -1
        pos = Position(order.symbol, f"{order.strategy_id or order.strategy_name}|flatten|{order.tag}",
                       order.strategy_id, order.strategy_name, order.product, side, qty, price, cost, at_ns, order.id,
                       order.signal_id or "", _ZERO, account=order.account, exits_placed=True)
        self.positions[(pos.strategy_key, pos.symbol)] = pos
        self.out.append(("notifications", notification(
            _note_id(f"race|{order.id}"), self.user_id, f"Both exits filled: {order.symbol}",
            f"{order.side} {qty} {order.symbol} filled at ₹{money(price)} after the position was already closed by its"
            f" other exit; a MARKET order flattens it now.", "ORDER", "URGENT", iso(at_ns))))
        self._request_close(pos, "race", at_ns)

    def _live_unfilled(self, pos: Position | None, order: Order, at_ns: int) -> None:
        """A live order that ended without a fill: an entry drops its position; a refused exit is reported."""
        if order.status == "REJECTED":
            what = "entry" if pos is not None and order is pos.pending else "exit"
            self._note(order, f"{order.side} {order.quantity} {order.symbol} ({what}, {order.order_type}) rejected by"
                              f" the broker: {order.rejection_reason}", f"Order rejected: {order.symbol}",
                       "URGENT" if what == "exit" else "HIGH", at_ns)
        if pos is not None and order is pos.pending:
            del self.positions[(pos.strategy_key, pos.symbol)]
        elif pos is not None and order in (pos.target, pos.stop) and pos.closing is None:
            if order.status == "CANCELLED" and not order.cancelling:
                # the broker ended an exit nobody cancelled (a DAY order expired with the session, a CNC position
                # carried over): both exits are placed again, under new tags, so the position stays protected
                pos.renewing = True
                for other in (pos.target, pos.stop):
                    if other is not None and other.status not in _FINAL:
                        self._cancel(other)
            if pos.renewing and all(o is None or o.status in _FINAL for o in (pos.target, pos.stop)):
                pos.renewed, pos.renewing = pos.renewed + 1, False
                pos.target = pos.stop = None
                pos.exits_placed = False

    def _token_expired(self, account: str, at_ns: int) -> None:
        if account in self.expired:
            return
        self.expired.add(account)
        self.out.append(("notifications", notification(
            _note_id(f"token|{account}|{ist_day(at_ns)}"), self.user_id, "Broker session expired",
            "Your broker refused this account's access token: the account is now inactive and its orders are"
            " rejected (broker_token_expired) until you connect it again (sharewise broker connect).",
            "SYSTEM", "URGENT", iso(at_ns))))

    # --- fills, cash and messages ------------------------------------------------------------

    def _fill(self, order: Order, price: Decimal, at_ns: int, fees: Decimal, taxes: Decimal) -> None:
        done = self.broker.fill(order.request(), price, ns_to_datetime(at_ns, IST))
        assert done.average_price is not None
        self._book_fill(order, done.average_price, done.filled_quantity, at_ns, at_ns, fees, taxes)

    def _book_fill(self, order: Order, price: Decimal, qty: int, exchange_ns: int, at_ns: int, fees: Decimal,
                   taxes: Decimal) -> None:
        """Book ``qty`` of ``order`` filled at ``price``: the order, cash and a notification (paper and live alike)."""
        order.filled_quantity, order.average_price, order.exchange_ns = qty, price, exchange_ns
        order.fees, order.taxes = fees, taxes
        value = price * qty
        self.cash += -(value + fees + taxes) if order.side == "BUY" else value - fees - taxes
        self._move(order, "COMPLETE" if qty == order.quantity else "CANCELLED", at_ns)
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
        return sum(((self._quote(p) - p.average_price) * p.quantity * p.side for p in self._held()), _ZERO)

    def _held(self) -> list[Position]:
        return [p for p in self.positions.values() if p.pending is None]

    def book(self) -> dict[str, Any]:
        """The ``portfolios`` message of this desk as of :attr:`as_of` (docs/orders.md)."""
        by_symbol: dict[str, list[Position]] = {}
        for pos in self._held():
            by_symbol.setdefault(pos.symbol, []).append(pos)
        holdings = [self._holding(symbol, group) for symbol, group in sorted(by_symbol.items())]
        unrealised = self.unrealised()
        market_value = sum((self._quote(p) * p.quantity * p.side for p in self._held()), _ZERO)
        invested = sum((p.average_price * p.quantity for p in self._held()), _ZERO)
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
            "orphans": [o.to_json() for o in self.orphans.values()], "expired": sorted(self.expired),
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any], limits: RiskLimits, quotes: dict[str, Quote],
                  table: ChargeTable = NSE_EQUITY) -> Desk:
        desk = cls(doc["user_id"], limits, Decimal(doc["cash"]), quotes, table, Decimal(doc["realised"]), doc["day"],
                   Decimal(doc["day_realised"]), TradingState(doc["manual"]), doc["manual_reason"], doc["halted_day"],
                   entries=deque(doc["entries"]), as_of=doc["as_of"])
        desk.orphans = {o["id"].replace("-", "")[:20]: Order.from_json(o) for o in doc.get("orphans", ())}
        desk.expired = set(doc.get("expired", ()))
        for p in doc["positions"]:
            pos = Position.from_json(p)
            desk.positions[(pos.strategy_key, pos.symbol)] = pos
            for order in pos.orders():
                if order.account is not None and order.status not in _FINAL:
                    desk.live[order.tag] = (pos.strategy_key, pos.symbol)
            for resting in (pos.target, pos.stop):
                if resting is not None and resting.status == "OPEN":  # the broker's book lists it again
                    desk.broker.rest(resting.request(), ns_to_datetime(pos.opened_ns, IST))
        return desk


@dataclass(frozen=True, slots=True)
class BrokerUpdate:
    """The broker's answer about a live order (engine.ports.BrokerOrder, by tag): OPEN, or final with what filled;
    ``reason``: the broker's rejection message, or :data:`TOKEN_EXPIRED`."""

    tag: str
    status: str  # OPEN | COMPLETE | CANCELLED | REJECTED
    broker_order_id: str | None = None
    filled_quantity: int = 0
    average_price: Decimal | None = None
    exchange_ns: int | None = None
    reason: str | None = None


def broker_command(op: str, user_id: str, order: Order) -> dict[str, Any]:
    """A ``broker`` output: ``place`` (with the order as the port takes it), ``cancel``, ``follow`` or ``refresh`` (read
    its state now) a live order."""
    doc: dict[str, Any] = {"op": op, "account": order.account, "user_id": user_id, "tag": order.tag,
                           "broker_order_id": order.broker_id, "order_type": order.order_type}
    if op == "place":
        doc["order"] = {"symbol": order.symbol, "side": order.side, "quantity": order.quantity,
                        "order_type": order.order_type, "product": order.product, "price": money(order.price),
                        "trigger_price": money(order.trigger_price)}
    return doc


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
