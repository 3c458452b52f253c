"""Decoding topic messages into feed records: attribution, ids, bad input."""

from __future__ import annotations

import orjson
import pytest

from engine.errors import BadData
from sinks.feed.records import MARKET_USER, decode_bars, decode_personal, message_frame

USER = "6f1c3a52-9a43-4c1f-8d2e-0b7f3f1d2a10"


def test_signal_is_attributed_to_its_user_and_kept_field_for_field() -> None:
    value = orjson.dumps({"id": "s1", "user_id": USER.upper(), "symbol": "TCS", "entry_price": 1.5})
    record = decode_personal("signals", USER.encode(), value)
    assert (record.user_id, record.channel, record.message_id, record.symbol) == (USER, "signals", "s1", "TCS")
    assert record.payload == value


def test_clients_get_numbers_as_numbers_and_every_time_in_ist() -> None:
    signal = {"id": "s1", "user_id": USER, "confidence_score": "0.82", "entry_price": "1567.25",
              "target_price": "1600.00", "stop_loss": None, "executed_price": None,
              "timestamp": "2026-01-05T09:16:00+05:30", "valid_until": "2026-01-05T03:51:00+00:00",
              "created_at": "2026-01-05T03:47:01.250000+00:00", "market_data": {"indicators": {"ema_9": 1.5}}}
    data = orjson.loads(decode_personal("signals", None, orjson.dumps(signal)).payload)
    assert (data["confidence_score"], data["entry_price"], data["target_price"], data["stop_loss"]) == (
        0.82, 1567.25, 1600.0, None)
    assert data["valid_until"] == "2026-01-05T09:21:00+05:30"
    assert data["created_at"] == "2026-01-05T09:17:01.250000+05:30" and data["market_data"] == signal["market_data"]
    order = {"id": "o1", "event_id": "e1", "user_id": USER, "quantity": 10, "price": "1567.25", "fees": "20.00",
             "average_price": None, "updated_at": "2026-01-05T09:17:00+05:30", "signal": signal}
    data = orjson.loads(decode_personal("orders", None, orjson.dumps(order)).payload)
    assert (data["quantity"], data["price"], data["fees"], data["signal"]["entry_price"]) == (10, 1567.25, 20.0, 1567.25)


@pytest.mark.parametrize("field, value, reason", [
    ("entry_price", "12,5", "bad_number"), ("entry_price", "NaN", "bad_number"), ("entry_price", True, "bad_number"),
    ("valid_until", "2026-01-05T09:21:00", "bad_time"), ("timestamp", "yesterday", "bad_time"),
])
def test_a_field_clients_could_not_read_is_bad_data(field: str, value: object, reason: str) -> None:
    with pytest.raises(BadData) as caught:
        decode_personal("signals", None, orjson.dumps({"id": "s1", "user_id": USER, field: value}))
    assert caught.value.reason == reason


def test_notification_without_symbol_and_key_falls_back_to_payload_user() -> None:
    record = decode_personal("notifications", None, orjson.dumps({"id": "n1", "user_id": USER, "title": "x"}))
    assert record.user_id == USER and record.symbol is None


@pytest.mark.parametrize("key, value, reason", [
    (None, b"{oops", "bad_json"),
    (None, b"[1]", "bad_json"),
    (None, orjson.dumps({"user_id": USER}), "missing_id"),
    (None, orjson.dumps({"id": "x"}), "bad_user_id"),
    (None, orjson.dumps({"id": "x", "user_id": "alice"}), "bad_user_id"),
    (b"7d3b7a5e-1111-4c1f-8d2e-0b7f3f1d2a10", orjson.dumps({"id": "x", "user_id": USER}), "user_mismatch"),
])
def test_unattributable_messages_are_bad_data(key: bytes | None, value: bytes, reason: str) -> None:
    with pytest.raises(BadData) as caught:
        decode_personal("signals", key, value)
    assert caught.value.reason == reason


def test_bar_packet_keeps_good_lines_and_reports_bad_ones() -> None:
    good = {"symbol": "TCS", "timeframe": "1m", "time": "2024-01-02T09:15:00+05:30", "close": 1.0}
    packet = b"\n".join([orjson.dumps(good), b"garbage", b"", orjson.dumps({"symbol": "X"}), b""])
    records, bad = decode_bars(packet)
    assert [r.message_id for r in records] == ["TCS|1m|2024-01-02T09:15:00+05:30"]
    assert records[0].user_id == MARKET_USER and records[0].symbol == "TCS"
    assert sorted(b.reason for b in bad) == ["bad_json", "missing_field"]


def test_message_frame_is_valid_json() -> None:
    payload = orjson.dumps({"id": "s1", "symbol": "M&M"})
    assert orjson.loads(message_frame("signals", 12, payload)) == {"op": "signal", "seq": 12,
                                                                    "data": {"id": "s1", "symbol": "M&M"}}
    assert orjson.loads(message_frame("bars", 3, b"{}"))["op"] == "bar"


def _order_change(status: str, event_id: str | None) -> bytes:
    change = {"id": "7d3b7a5e-0000-4c1f-8d2e-0b7f3f1d2a10", "user_id": USER, "symbol": "TCS", "status": status}
    return orjson.dumps(change | ({"event_id": event_id} if event_id else {}))


def test_each_state_change_of_an_order_is_its_own_record() -> None:
    pending = decode_personal("orders", USER.encode(), _order_change("PENDING", "e-pending"))
    complete = decode_personal("orders", USER.encode(), _order_change("COMPLETE", "e-complete"))
    assert (pending.message_id, complete.message_id) == ("e-pending", "e-complete")
    assert pending.payload != complete.payload and pending.symbol == complete.symbol == "TCS"
    again = decode_personal("orders", USER.encode(), _order_change("COMPLETE", "e-complete"))
    assert again.message_id == complete.message_id  # a redelivered change is the same record


def test_an_order_without_event_id_is_identified_by_its_id_and_other_channels_ignore_event_id() -> None:
    assert decode_personal("orders", None, _order_change("OPEN", None)).message_id == \
        "7d3b7a5e-0000-4c1f-8d2e-0b7f3f1d2a10"
    value = orjson.dumps({"id": "s1", "event_id": "e1", "user_id": USER})
    assert decode_personal("signals", None, value).message_id == "s1"
