"""db.trading on a real database: the risk gate's limits, hand-set trading states, users by email."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from db.seed_demo import DEMO_EMAIL, seed_demo
from db.trading import books, manual_states, order_rows, set_manual_state, trading_states, user_id_by_email, user_limits
from engine.errors import ConfigError
from engine.orders.ids import paper_portfolio_id


def run(dsn: str, scenario: Any) -> Any:
    async def main() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await scenario(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


async def user_with_profile(conn: asyncpg.Connection, email: str, loss: str | None, preferences: str | None) -> str:
    user = await conn.fetchval("INSERT INTO users_customuser (email) VALUES ($1) RETURNING id", email)
    if preferences is not None or loss is not None:
        await conn.execute("INSERT INTO users_userprofile (user_id, max_daily_loss, trading_preferences)"
                           " VALUES ($1, $2, coalesce($3::jsonb, '{}'))", user,
                           None if loss is None else Decimal(loss), preferences)
    return str(user)


def test_user_limits_read_the_profile_with_defaults(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        demo = str((await seed_demo(pg_dsn))["user_id"])
        capped = await user_with_profile(conn, "capped@example.com", "5000.50", '{"max_open_positions": 2}')
        text = await user_with_profile(conn, "text@example.com", "7000.00", '{"max_open_positions": "3"}')
        junk = await user_with_profile(conn, "junk@example.com", None, '{"max_open_positions": "many"}')
        fraction = await user_with_profile(conn, "fraction@example.com", "100.00", '{"max_open_positions": 2.5}')
        bare = await user_with_profile(conn, "bare@example.com", None, None)  # no profile at all
        everyone = await user_limits(conn)
        assert everyone == {
            demo: (Decimal("25000.00"), 5),  # the demo profile sets no max_open_positions
            capped: (Decimal("5000.50"), 2),
            text: (Decimal("7000.00"), 3),
            junk: (Decimal("10000.00"), 5),  # an explicit NULL loss limit is the schema's default
            fraction: (Decimal("100.00"), 5),
            bare: (Decimal("10000.00"), 5),
        }
        nobody = str(uuid.uuid4())
        assert await user_limits(conn, [capped.upper(), bare, nobody]) == {
            capped: (Decimal("5000.50"), 2), bare: (Decimal("10000.00"), 5), nobody: (Decimal("10000.00"), 5)}
        assert await user_limits(conn, []) == {}
        with pytest.raises(ConfigError, match="not a user id"):
            await user_limits(conn, ["alice"])

    run(pg_dsn, scenario)


def test_manual_states_are_set_and_read_back_and_leave_the_effective_columns_alone(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        demo = str((await seed_demo(pg_dsn))["user_id"])
        assert await manual_states(conn) == {}
        first = datetime(2026, 1, 5, 4, 30, tzinfo=timezone.utc)
        await set_manual_state(conn, demo, "HALTED", "news pending", first)
        assert await manual_states(conn) == {demo: ("HALTED", "news pending")}
        await conn.execute("UPDATE engine.trading_state SET effective_state = 'HALTED', effective_reason = 'x',"
                           " as_of = $2 WHERE user_id = $1", uuid.UUID(demo), first)
        later = datetime(2026, 1, 5, 5, 0, tzinfo=timezone.utc)
        await set_manual_state(conn, demo, "ACTIVE", None, later)
        row = await conn.fetchrow("SELECT * FROM engine.trading_state WHERE user_id = $1", uuid.UUID(demo))
        assert (row["state"], row["reason"], row["changed_at"]) == ("ACTIVE", None, later)
        assert (row["effective_state"], row["effective_reason"], row["as_of"]) == ("HALTED", "x", first)
        assert await manual_states(conn) == {demo: ("ACTIVE", None)}
        (status,) = await trading_states(conn)
        assert (status["email"], status["state"], status["effective_state"]) == (DEMO_EMAIL, "ACTIVE", "HALTED")

        with pytest.raises(ConfigError, match="ACTIVE, REDUCING, HALTED"):
            await set_manual_state(conn, demo, "PAUSED", None, later)
        with pytest.raises(ConfigError, match="no user"):
            await set_manual_state(conn, str(uuid.uuid4()), "HALTED", None, later)

    run(pg_dsn, scenario)


def test_users_are_found_by_email_whatever_its_case(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        demo = str((await seed_demo(pg_dsn))["user_id"])
        assert await user_id_by_email(conn, DEMO_EMAIL) == demo
        assert await user_id_by_email(conn, DEMO_EMAIL.upper()) == demo
        assert await user_id_by_email(conn, "nobody@example.com") is None

    run(pg_dsn, scenario)


def test_books_show_the_seeded_paper_portfolio_and_orders_reject_an_unknown_status(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        demo = str((await seed_demo(pg_dsn))["user_id"])
        (book,) = await books(conn)
        assert (book.user_id, book.email, book.trading_state, book.holdings) == (demo, DEMO_EMAIL, "ACTIVE", [])
        assert book.portfolio is not None and book.portfolio["id"] == paper_portfolio_id(demo)
        other = await user_with_profile(conn, "nobook@example.com", None, None)
        (alone,) = await books(conn, user_id=other)  # asked for by name: shown without a portfolio
        assert (alone.email, alone.portfolio, alone.holdings) == ("nobook@example.com", None, [])
        assert await order_rows(conn) == []
        with pytest.raises(ConfigError, match="PENDING, OPEN"):
            await order_rows(conn, status="FILLED")

    run(pg_dsn, scenario)
