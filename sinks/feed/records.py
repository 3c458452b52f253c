"""Topic messages -> feed records: what the websocket feed stores and sends, decoded from Kafka.

Pure functions over bytes (formats in ``docs/topics.md``). A record keeps its JSON
object as the exact bytes it arrived with, so a frame is built by concatenation and
replaying history sends the same bytes as the live feed did.

* ``signals``, ``orders``, ``notifications``: one JSON object per message, keyed by
  user_id. The record belongs to ``user_id`` (it must match the key when there is one:
  tenancy is never guessed) and is identified by its ``id``; an ``orders`` message (one per
  state change of an order, docs/orders.md) by its ``event_id``, else its ``id``, so each
  change of an order is its own record in history.
* ``market.bars``: newline-delimited bars. They belong to :data:`MARKET_USER` (one
  sequence shared by every user) and are identified by ``symbol|timeframe|time``.

Personal messages are re-encoded for clients once, here (:func:`client_object`): the topics keep
exact decimals as strings (docs/topics.md), frames carry them as JSON numbers, and every
timestamp is ISO 8601 with the IST offset (README, "Frames").

Unusable input raises :class:`BadData` with a stable reason; the caller counts and skips it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from engine.domain import IST
from engine.errors import BadData
from streams.topics import MARKET_BARS, NOTIFICATIONS, ORDERS, SIGNALS

#: owner of the market-data (bars) sequence: nobody's account, everyone's feed
MARKET_USER = str(uuid.UUID(int=0))

#: feed channel -> Kafka topic it is read from
CHANNEL_TOPICS = {"signals": SIGNALS, "orders": ORDERS, "notifications": NOTIFICATIONS, "bars": MARKET_BARS}
#: per channel: fields sent as JSON numbers (the topics carry exact decimals as strings)
NUMBER_FIELDS = {
    "signals": frozenset({"confidence_score", "entry_price", "target_price", "stop_loss", "executed_price"}),
    "orders": frozenset({"quantity", "price", "trigger_price", "filled_quantity", "average_price", "fees", "taxes"}),
    "notifications": frozenset(),
}
#: per channel: timestamp fields, sent as ISO 8601 with the IST offset
TIME_FIELDS = {
    "signals": frozenset({"timestamp", "bar_time", "valid_until", "created_at", "updated_at"}),
    "orders": frozenset({"order_timestamp", "exchange_timestamp", "created_at", "updated_at"}),
    "notifications": frozenset({"created_at"}),
}
#: feed channel -> the ``op`` of its message frames
CHANNEL_OPS = {"signals": "signal", "orders": "order", "notifications": "notification", "bars": "bar"}


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One message of one (user, channel) stream, before it has a seq."""

    user_id: str
    channel: str
    message_id: str
    symbol: str | None
    payload: bytes


def decode_personal(channel: str, key: bytes | None, value: bytes) -> FeedRecord:
    """A signal, order or notification message -> record; BadData when it cannot be attributed safely."""
    data = _object(value)
    message_id, user = data.get("id"), data.get("user_id")
    if channel == "orders" and data.get("event_id") is not None:
        message_id = data["event_id"]
    if not isinstance(message_id, str) or not message_id:
        raise BadData("missing_id", f"{channel} message without an id")
    user_id = _uuid(user if user is not None else (key.decode("utf-8", "replace") if key else None))
    if key is not None and _uuid(key.decode("utf-8", "replace")) != user_id:
        raise BadData("user_mismatch", f"{channel} message {message_id}: key and user_id differ")
    symbol = data.get("symbol")
    payload = orjson.dumps(client_object(channel, data))
    return FeedRecord(user_id, channel, message_id, symbol if isinstance(symbol, str) else None, payload)


def client_object(channel: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as clients get it: numeric fields as numbers, timestamps in IST; an order's ``signal`` too."""
    out = dict(data)
    for name in NUMBER_FIELDS[channel]:
        if name in out:
            out[name] = _number(name, out[name])
    for name in TIME_FIELDS[channel]:
        if name in out:
            out[name] = _ist(name, out[name])
    if channel == "orders" and isinstance(out.get("signal"), dict):
        out["signal"] = client_object("signals", out["signal"])
    return out


def _number(name: str, value: object) -> int | float | None:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
        if number is not None and number.is_finite():
            return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    raise BadData("bad_number", f"{name} is not a number: {str(value)[:40]!r}")


def _ist(name: str, value: object) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise BadData("bad_time", f"{name} is not an ISO 8601 time with an offset: {str(value)[:40]!r}")
    return moment.astimezone(IST).isoformat()


def decode_bars(value: bytes) -> tuple[list[FeedRecord], list[BadData]]:
    """A ``market.bars`` packet -> its bar records, and one BadData per unusable line (the rest are kept)."""
    records: list[FeedRecord] = []
    bad: list[BadData] = []
    for line in value.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        try:
            records.append(_bar(line))
        except BadData as exc:
            bad.append(exc)
    return records, bad


def _bar(line: bytes) -> FeedRecord:
    bar = _object(line)
    symbol, timeframe, time = bar.get("symbol"), bar.get("timeframe"), bar.get("time")
    if not (isinstance(symbol, str) and isinstance(timeframe, str) and isinstance(time, str)) or not symbol:
        raise BadData("missing_field", "a bar needs string symbol, timeframe and time")
    return FeedRecord(MARKET_USER, "bars", f"{symbol}|{timeframe}|{time}", symbol, line)


def _object(value: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadData("bad_json", "not valid JSON") from None
    if not isinstance(data, dict):
        raise BadData("bad_json", "not a JSON object")
    return data


def _uuid(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise BadData("bad_user_id", "user_id is not a UUID") from None


def message_frame(channel: str, seq: int, payload: bytes) -> bytes:
    """The frame sent to clients: ``{"op":"signal","seq":N,"data":{…}}`` (built once, sent to every subscriber)."""
    return b'{"op":"%s","seq":%d,"data":%s}' % (CHANNEL_OPS[channel].encode(), seq, payload)
