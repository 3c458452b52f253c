"""The retention calendar: calendar-correct months back from an IST date."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from engine.retention import cutoff, months_before, start_of_day


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 30), 6, date(2026, 5, 30)),
        (date(2026, 8, 31), 6, date(2026, 2, 28)),  # no 31 February: the month's last day
        (date(2028, 8, 31), 6, date(2028, 2, 29)),  # leap year
        (date(2028, 2, 29), 12, date(2027, 2, 28)),
        (date(2026, 1, 15), 24, date(2024, 1, 15)),
        (date(2026, 3, 31), 60, date(2021, 3, 31)),
        (date(2026, 1, 31), 1, date(2025, 12, 31)),  # across a year boundary
        (date(2026, 5, 5), 0, date(2026, 5, 5)),
    ],
)
def test_months_before_is_calendar_correct(day, months, expected):
    assert months_before(day, months) == expected


def test_negative_months_are_refused():
    with pytest.raises(ValueError):
        months_before(date(2026, 1, 1), -1)


def test_cutoff_is_midnight_ist_of_that_day():
    limit = cutoff(date(2026, 11, 30), 6)
    assert limit == datetime(2026, 5, 29, 18, 30, tzinfo=timezone.utc)  # 00:00 IST is 18:30 UTC the day before
    assert limit.utcoffset() == timedelta(hours=5, minutes=30)
    assert start_of_day(date(2026, 5, 30)) == limit
