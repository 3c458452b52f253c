"""Shared helpers of the broker adapters' tests: fake time (a sleep that only moves a clock)."""

from __future__ import annotations

import pytest


class FakeTime:
    """``clock`` and ``sleep`` for an adapter: sleeping moves the clock at once and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
