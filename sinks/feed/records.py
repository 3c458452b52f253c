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

Unusable input raises :class:`BadData` with a stable reason; the caller counts and skips it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson

from engine.errors import BadData
from streams.topics import MARKET_BARS, NOTIFICATIONS, ORDERS, SIGNALS

#: owner of the market-data (bars) sequence: nobody's account, everyone's feed
MARKET_USER = str(uuid.UUID(int=0))

#: feed channel -> Kafka topic it is read from
CHANNEL_TOPICS = {"signals": SIGNALS, "orders": ORDERS, "notifications": NOTIFICATIONS, "bars": MARKET_BARS}
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
    return FeedRecord(user_id, channel, message_id, symbol if isinstance(symbol, str) else None, value.strip())


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
