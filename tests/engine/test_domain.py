"""Domain types: timeframes, the NSE session arithmetic, reasons, tick and bar views."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.domain import (
    IST,
    REASONS,
    Bar,
    Reason,
    Tick,
    Timeframe,
    bar_span,
    datetime_to_ns,
    in_session,
    ns_to_datetime,
)
from engine.errors import ConfigError

KOLKATA = ZoneInfo("Asia/Kolkata")


def ist_ns(text: str) -> int:
    """ns for a wall-clock time in Asia/Kolkata, via the tz database (not the engine's fixed offset)."""
    return datetime_to_ns(datetime.fromisoformat(text).replace(tzinfo=KOLKATA))


def test_timeframe_labels_parse_and_codes() -> None:
    assert [tf.label for tf in Timeframe] == ["1m", "5m", "15m", "1h", "1d"]
    assert [int(tf) for tf in Timeframe] == [0, 1, 2, 3, 4]
    assert Timeframe.parse("15m") is Timeframe.M15
    with pytest.raises(ConfigError, match="1m, 5m, 15m, 1h, 1d"):
        Timeframe.parse("2h")


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        ("2026-01-05T09:14:59.999999", False),
        ("2026-01-05T09:15:00", True),
        ("2026-01-05T12:00:00", True),
        ("2026-01-05T15:29:59.999999", True),
        ("2026-01-05T15:30:00", False),
        ("2026-01-05T00:00:00", False),
        ("2026-01-10T10:00:00", True),  # a Saturday: weekends are not rejected
    ],
)
def test_session_is_0915_to_1530_ist(when: str, inside: bool) -> None:
    assert in_session(ist_ns(when)) is inside


@pytest.mark.parametrize(
    ("tf", "when", "opens", "ends"),
    [
        (Timeframe.M1, "2026-01-05T09:15:59", "09:15", "09:16"),
        (Timeframe.M5, "2026-01-05T09:19:59", "09:15", "09:20"),
        (Timeframe.M15, "2026-01-05T15:29:00", "15:15", "15:30"),
        (Timeframe.H1, "2026-01-05T10:14:59", "09:15", "10:15"),
        (Timeframe.H1, "2026-01-05T10:15:00", "10:15", "11:15"),
        (Timeframe.H1, "2026-01-05T15:29:59", "15:15", "15:30"),  # the short last hour
        (Timeframe.D1, "2026-01-05T15:00:00", "09:15", "15:30"),
    ],
)
def test_bar_span_aligned_to_session(tf: Timeframe, when: str, opens: str, ends: str) -> None:
    assert bar_span(ist_ns(when), tf) == (ist_ns(f"2026-01-05T{opens}"), ist_ns(f"2026-01-05T{ends}"))


def test_reason_codes_are_stable_and_round_trip_through_status() -> None:
    assert [r.value for r in REASONS] == [
        "bad_json", "missing_field", "bad_price", "bad_qty", "bad_time", "unknown_symbol", "out_of_session", "late",
        "misrouted", "too_large",
    ]  # fmt: skip
    assert all(Reason.from_status(r.status) is r for r in Reason)
    assert min(r.status for r in Reason) == 1


def test_tick_and_bar_times() -> None:
    ts = ist_ns("2026-01-05T09:15:00.250")
    tick = Tick("TCS", ts, 3100.5, 10)
    assert tick.time == datetime(2026, 1, 5, 3, 45, 0, 250_000, tzinfo=timezone.utc)
    bar = Bar("TCS", Timeframe.H1, ist_ns("2026-01-05T15:15"), 1.0, 2.0, 0.5, 1.5, 100.0, 3)
    assert bar.time.isoformat() == "2026-01-05T15:15:00+05:30"
    assert bar.end_ns == ist_ns("2026-01-05T15:30")
    with pytest.raises(AttributeError):
        bar.close = 3.0  # type: ignore[misc]


def test_datetime_conversions() -> None:
    dt = datetime(2026, 1, 5, 9, 15, 0, 123_456, tzinfo=IST)
    assert ns_to_datetime(datetime_to_ns(dt), IST) == dt
    assert datetime_to_ns(dt) == datetime_to_ns(dt.astimezone(timezone(timedelta(hours=-3))))
    with pytest.raises(ValueError, match="no UTC offset"):
        datetime_to_ns(datetime(2026, 1, 5))
