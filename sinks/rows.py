"""Output messages (docs/topics.md, docs/orders.md) as rows of the PostgreSQL tables they are written to.

Each row function takes one decoded message and returns a tuple in the column order of its
:class:`sinks.postgres.TableSpec`; :data:`OUTPUTS` pairs every copied output topic with its table and
its row builder. The order path's topics are applied rather than copied (sinks.orders): their
"rows" are one-element tuples holding the decoded message (:func:`order_change`, :func:`book`),
and :data:`APPLIED_OUTPUTS` pairs them with their sink. :func:`output_sinks` gives the sink agents
(streams.sink_agents) one sink and one row builder per output topic.
"""

from __future__ import annotations

import functools
import math
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping, TypeVar

import orjson

from engine.outputs import bar_message_id
from engine.strategy.signals import round_price
from sinks.orders import STATUS_RANK, TRADING_STATES, Book, BookSink, Holding, OrderChange, OrderSink
from sinks.postgres import MARKETDATA, NOTIFICATIONS, SIGNALS, CopySink, RetryingSink, TableSpec
from streams import topics

Rows = Callable[[bytes], list[tuple[Any, ...]]]
T = TypeVar("T")


def marketdata_record(msg: dict[str, Any]) -> tuple[Any, ...]:
    """An ``analytics_marketdata`` row (:data:`sinks.postgres.MARKETDATA` order) from a ``market.bars`` object."""
    return (
        bar_message_id(msg["symbol"], msg["timeframe"], msg["time"]), msg["symbol"], datetime.fromisoformat(msg["time"]),
        round_price(msg["open"]), round_price(msg["high"]), round_price(msg["low"]), round_price(msg["close"]),
        int(round(msg["volume"])), msg["timeframe"], orjson.dumps(msg["indicators"]).decode(),
    )  # fmt: skip


def signal_row(msg: dict[str, Any]) -> tuple[Any, ...]:
    """A ``trading_signal`` row (:data:`sinks.postgres.SIGNALS` order) from a ``signals`` object."""
    return (
        uuid.UUID(msg["id"]), datetime.fromisoformat(msg["timestamp"]), msg["symbol"], msg["strategy_name"],
        msg["signal_type"], _dec(msg["confidence_score"]), _dec(msg["entry_price"]), _dec(msg["target_price"]),
        _dec(msg["stop_loss"]), datetime.fromisoformat(msg["valid_until"]) if msg["valid_until"] else None,
        _uuid(msg["user_id"]), _uuid(msg["created_by_strategy_id"]), orjson.dumps(msg["market_data"]).decode(),
    )  # fmt: skip


def notification_row(msg: dict[str, Any]) -> tuple[Any, ...]:
    """A ``notifications_notification`` row (:data:`sinks.postgres.NOTIFICATIONS` order)."""
    return (
        uuid.UUID(msg["id"]), uuid.UUID(msg["user_id"]), msg["title"], msg["message"], msg["notification_type"],
        msg["priority"], orjson.dumps(msg["delivery_methods"]).decode(), datetime.fromisoformat(msg["created_at"]),
    )  # fmt: skip


def _readable(parse: Callable[[Mapping[str, Any]], T]) -> Callable[[Mapping[str, Any]], T]:
    """``parse`` raising only ValueError, KeyError or TypeError for a message it cannot read."""

    @functools.wraps(parse)
    def guarded(msg: Mapping[str, Any]) -> T:
        try:
            return parse(msg)
        except (ArithmeticError, AttributeError) as exc:  # decimal.InvalidOperation, a field of the wrong kind
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc

    return guarded


@_readable
def order_change(msg: Mapping[str, Any]) -> OrderChange:
    """An ``orders`` object (docs/orders.md) as the change :class:`sinks.orders.OrderSink` applies.

    Raises ValueError, KeyError or TypeError for an object that is not an order change.
    """
    status = _str(msg, "status")
    if status not in STATUS_RANK:
        raise ValueError(f"unknown order status {status!r}")
    executes = msg["executes_signal"]
    if not isinstance(executes, bool):
        raise TypeError("executes_signal must be true or false")
    signal = msg.get("signal")
    if signal is not None and not isinstance(signal, dict):
        raise TypeError("signal must be an object or null")
    return OrderChange(
        id=_id(msg, "id"), user_id=_id(msg, "user_id"), signal_id=_id(msg, "signal_id", True), executes_signal=executes,
        broker_account_id=_id(msg, "broker_account_id", True), broker_order_id=_str(msg, "broker_order_id", True),
        symbol=_str(msg, "symbol"), order_type=_str(msg, "order_type"), transaction_type=_str(msg, "transaction_type"),
        quantity=_int(msg, "quantity"), price=_money(msg, "price", True),
        trigger_price=_money(msg, "trigger_price", True),
        status=status, filled_quantity=_int(msg, "filled_quantity"), average_price=_money(msg, "average_price", True),
        order_timestamp=_time(msg, "order_timestamp"), exchange_timestamp=_time(msg, "exchange_timestamp", True),
        rejection_reason=_str(msg, "rejection_reason", True), fees=_money(msg, "fees"), taxes=_money(msg, "taxes"),
        updated_at=_time(msg, "updated_at"), signal=None if signal is None else signal_row(signal),
    )  # fmt: skip


@_readable
def book(msg: Mapping[str, Any]) -> Book:
    """A ``portfolios`` object (docs/orders.md) as the book :class:`sinks.orders.BookSink` writes.

    Raises ValueError, KeyError or TypeError for an object that is not a book.
    """
    portfolio, holdings = msg["portfolio"], msg["holdings"]
    if not isinstance(portfolio, dict) or not isinstance(holdings, list):
        raise TypeError("portfolio must be an object and holdings a list")
    state = _str(msg, "trading_state")
    if state not in TRADING_STATES:
        raise ValueError(f"unknown trading state {state!r}")
    rows = tuple(_holding(h) for h in holdings)
    if len({h.symbol for h in rows}) != len(rows):
        raise ValueError("a symbol appears twice in holdings")
    return Book(
        user_id=_id(msg, "user_id"), as_of=_time(msg, "as_of"), portfolio_id=_id(msg, "portfolio_id"),
        name=_str(portfolio, "name"), total_value=_money(portfolio, "total_value"),
        available_cash=_money(portfolio, "available_cash"), invested_amount=_money(portfolio, "invested_amount"),
        unrealized_pnl=_money(portfolio, "unrealized_pnl"), realized_pnl=_money(portfolio, "realized_pnl"),
        holdings=rows, trading_state=state, state_reason=_str(msg, "state_reason", True),
    )  # fmt: skip


def _holding(h: Any) -> Holding:
    if not isinstance(h, dict):
        raise TypeError("a holding must be an object")
    return Holding(_str(h, "symbol"), _int(h, "quantity"), _money(h, "average_price"), _money(h, "current_price", True),
                   _time(h, "last_price_update", True), _money(h, "unrealized_pnl"))


def _bar_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [marketdata_record(orjson.loads(line)) for line in value.split(b"\n") if line.strip()]


def _signal_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [signal_row(orjson.loads(value))]


def _notification_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [notification_row(orjson.loads(value))]


def _order_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [(_decoded(order_change, value),)]


def _book_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [(_decoded(book, value),)]


#: output topic -> (table, rows of one message); a message that is not valid JSON of its kind raises ValueError,
#: KeyError or TypeError
OUTPUTS: dict[str, tuple[TableSpec, Rows]] = {
    topics.MARKET_BARS: (MARKETDATA, _bar_rows),
    topics.SIGNALS: (SIGNALS, _signal_rows),
    topics.NOTIFICATIONS: (NOTIFICATIONS, _notification_rows),
}

#: output topic -> (its sink, given the database DSN; records of one message: a one-element tuple holding the
#: decoded message), for the topics whose messages are applied (upserts, newer wins) rather than copied
APPLIED_OUTPUTS: dict[str, tuple[Callable[[str], RetryingSink], Rows]] = {
    topics.ORDERS: (OrderSink, _order_rows),
    topics.PORTFOLIOS: (BookSink, _book_rows),
}


def output_sinks(dsn: str) -> dict[str, tuple[RetryingSink, Rows]]:
    """One idempotent sink per output topic with its row builder: what a worker's sink agents drive.

    A :class:`CopySink` per table of :data:`OUTPUTS`, and the order and book sinks of :data:`APPLIED_OUTPUTS`.
    """
    sinks: dict[str, tuple[RetryingSink, Rows]] = {
        topic: (CopySink(dsn, spec), rows) for topic, (spec, rows) in OUTPUTS.items()}
    sinks |= {topic: (make(dsn), rows) for topic, (make, rows) in APPLIED_OUTPUTS.items()}
    return sinks


def _dec(s: str | None) -> Decimal | None:
    return None if s is None else Decimal(s)


def _uuid(s: str | None) -> uuid.UUID | None:
    return None if s is None else uuid.UUID(s)


def _decoded(parse: Callable[[Mapping[str, Any]], T], value: bytes) -> T:
    msg = orjson.loads(value)
    if not isinstance(msg, dict):
        raise TypeError("not a JSON object")
    return parse(msg)


def _id(msg: Mapping[str, Any], key: str, optional: bool = False) -> uuid.UUID | None:
    value = msg.get(key) if optional else msg[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a UUID string")
    return uuid.UUID(value)


def _str(msg: Mapping[str, Any], key: str, optional: bool = False) -> str | None:
    value = msg.get(key) if optional else msg[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _int(msg: Mapping[str, Any], key: str) -> int:
    value = msg[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer")
    return value


def _money(msg: Mapping[str, Any], key: str, optional: bool = False) -> Decimal | None:
    value = msg.get(key) if optional else msg[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"{key} must be a decimal string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{key} is not finite")
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{key} is not finite")
    return number


def _time(msg: Mapping[str, Any], key: str, optional: bool = False) -> datetime | None:
    value = msg.get(key) if optional else msg[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be an ISO 8601 time")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{key} has no UTC offset")
    return moment
