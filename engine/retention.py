"""The calendar of data retention (README.md, "Data retention"): when a row is past its limit.

Pure date arithmetic; the policy itself and the runner live in ``db/retention.py``. A run's
"now" is a calendar date in IST (``--as-of``); a limit of N months reaches back to the same day
N months earlier (clamped to the month's last day: 31 August minus 6 months is 28 or 29
February), and a row is past it when its time is before midnight IST starting that day.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time

from engine.domain import IST


def months_before(day: date, months: int) -> date:
    """The same calendar day ``months`` months before ``day``, clamped to the end of a shorter month."""
    if months < 0:
        raise ValueError(f"months must be >= 0, got {months}")
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def cutoff(as_of: date, months: int) -> datetime:
    """The first instant a row may carry and stay: midnight IST of ``months_before(as_of, months)``."""
    return datetime.combine(months_before(as_of, months), time(0), IST)


def start_of_day(day: date) -> datetime:
    """Midnight IST starting ``day`` (``--since`` of a restore)."""
    return datetime.combine(day, time(0), IST)
