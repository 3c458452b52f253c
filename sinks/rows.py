"""Output messages (docs/topics.md) as rows of the PostgreSQL tables they are written to.

Each function takes one decoded message and returns a tuple in the column order of its
:class:`sinks.postgres.TableSpec`; :data:`OUTPUTS` pairs every output topic with its table and
its row builder, for the sink agents (streams.sink_agents) to drive.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

import orjson

from engine.outputs import bar_message_id
from engine.strategy.signals import round_price
from sinks.postgres import MARKETDATA, NOTIFICATIONS, SIGNALS, CopySink, TableSpec
from streams import topics

Rows = Callable[[bytes], list[tuple[Any, ...]]]


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


def _bar_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [marketdata_record(orjson.loads(line)) for line in value.split(b"\n") if line.strip()]


def _signal_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [signal_row(orjson.loads(value))]


def _notification_rows(value: bytes) -> list[tuple[Any, ...]]:
    return [notification_row(orjson.loads(value))]


#: output topic -> (table, rows of one message); a message that is not valid JSON of its kind raises ValueError,
#: KeyError or TypeError
OUTPUTS: dict[str, tuple[TableSpec, Rows]] = {
    topics.MARKET_BARS: (MARKETDATA, _bar_rows),
    topics.SIGNALS: (SIGNALS, _signal_rows),
    topics.NOTIFICATIONS: (NOTIFICATIONS, _notification_rows),
}


def output_sinks(dsn: str) -> dict[str, tuple[CopySink, Rows]]:
    """One idempotent :class:`CopySink` per output topic with its row builder: what a worker's sink agents drive."""
    return {topic: (CopySink(dsn, spec), rows) for topic, (spec, rows) in OUTPUTS.items()}


def _dec(s: str | None) -> Decimal | None:
    return None if s is None else Decimal(s)


def _uuid(s: str | None) -> uuid.UUID | None:
    return None if s is None else uuid.UUID(s)
