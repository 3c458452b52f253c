"""The COPY sinks on a real database: idempotent writes, refused batches raise, outages are retried."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from db.seed_demo import seed_demo
from db.connect import retryable
from sinks.postgres import NOTIFICATIONS, CopySink


def _note(user_id: uuid.UUID, n: int) -> tuple:
    return (uuid.uuid5(uuid.NAMESPACE_URL, f"note-{n}"), user_id, f"title {n}", "message", "SIGNAL", "MEDIUM",
            '["in_app"]', datetime(2026, 1, 5, tzinfo=timezone.utc))


def test_writing_the_same_batch_twice_inserts_it_once(pg_dsn):
    async def run() -> tuple[int, int, int]:
        user = (await seed_demo(pg_dsn))["user_id"]
        sink = CopySink(pg_dsn, NOTIFICATIONS)
        batch = [_note(user, n) for n in range(50)]
        first, second = await sink.write(batch), await sink.write(batch + [_note(user, 50)])
        await sink.close()
        conn = await asyncpg.connect(pg_dsn)
        count = await conn.fetchval("SELECT count(*) FROM notifications_notification")
        await conn.close()
        return first, second, count

    assert asyncio.run(run()) == (50, 1, 51)


def test_a_batch_the_database_refuses_raises_instead_of_retrying_forever(pg_dsn):
    async def run() -> None:
        sink = CopySink(pg_dsn, NOTIFICATIONS)
        try:
            await sink.write([_note(uuid.uuid4(), 1)])  # no such user: a foreign key violation
        finally:
            await sink.close()

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        asyncio.run(run())


def test_outages_are_retryable_and_refusals_are_not():
    assert retryable(ConnectionRefusedError()) and retryable(asyncio.TimeoutError())
    assert retryable(asyncpg.CannotConnectNowError("starting up"))  # SQLSTATE 57P03
    assert retryable(asyncpg.AdminShutdownError("shutting down"))  # 57P01
    assert not retryable(asyncpg.ForeignKeyViolationError("fk"))  # 23503
    assert not retryable(ValueError("a bug, not an outage"))
