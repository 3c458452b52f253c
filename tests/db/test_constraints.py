"""The seed schema's constraints behave as the platform expects, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Any, Awaitable, Callable

import asyncpg
import pytest

from db.connect import connect


def run(dsn: str, body: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        conn = await connect(dsn)
        try:
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


async def add_user(conn: asyncpg.Connection, email: str = "trader@example.in") -> uuid.UUID:
    return await conn.fetchval("INSERT INTO users_customuser (email) VALUES ($1) RETURNING id", email)


async def add_signal(conn: asyncpg.Connection, user_id: uuid.UUID, confidence: str = "0.75") -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO trading_signal (symbol, strategy_name, signal_type, confidence_score, entry_price, user_id)"
        " VALUES ('RELIANCE', 'ema_cross', 'BUY', $1::numeric, 2950.50, $2) RETURNING id",
        confidence, user_id,
    )


async def add_model(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO ai_studio_mlmodel (user_id, name, model_type) VALUES ($1, 'nifty-lstm', 'TIME_SERIES') RETURNING id",
        user_id,
    )


def test_defaults_fill_a_minimal_row(pg_dsn):
    async def body(conn):
        user_id = await add_user(conn)
        return await conn.fetchrow("SELECT * FROM users_customuser WHERE id = $1", user_id)

    row = run(pg_dsn, body)
    assert (row["role"], row["subscription_tier"], row["is_active"], row["is_staff"]) == ("USER", "FREE", True, False)
    assert row["created_at"] is not None and row["id"].version == 4


@pytest.mark.parametrize("confidence", ["1.5", "-0.01"])
def test_confidence_score_outside_0_1_is_rejected(pg_dsn, confidence):
    async def body(conn):
        await add_signal(conn, await add_user(conn), confidence)

    with pytest.raises(asyncpg.CheckViolationError, match="confidence_score"):
        run(pg_dsn, body)


def test_confidence_score_bounds_are_accepted(pg_dsn):
    async def body(conn):
        user_id = await add_user(conn)
        for value in ("0", "1", "0.99"):
            await add_signal(conn, user_id, value)
        return await conn.fetchval("SELECT count(*) FROM trading_signal")

    assert run(pg_dsn, body) == 3


@pytest.mark.parametrize("rating", [0, 6])
def test_review_rating_outside_1_5_is_rejected(pg_dsn, rating):
    async def body(conn):
        user_id = await add_user(conn)
        model_id = await add_model(conn, user_id)
        await conn.execute(
            "INSERT INTO ai_studio_modelreview (model_id, reviewer_id, rating) VALUES ($1, $2, $3)", model_id, user_id, rating
        )

    with pytest.raises(asyncpg.CheckViolationError, match="rating"):
        run(pg_dsn, body)


def test_second_active_subscription_is_rejected_but_inactive_ones_are_kept(pg_dsn):
    insert = ("INSERT INTO subscriptions_subscription (user_id, plan_name, start_date, amount, is_active)"
              " VALUES ($1, $2, $3, 999.00, $4)")

    async def body(conn):
        user_id = await add_user(conn)
        await conn.execute(insert, user_id, "FREE", date(2025, 1, 1), False)
        await conn.execute(insert, user_id, "PRO", date(2025, 2, 1), False)
        await conn.execute(insert, user_id, "PRO", date(2025, 3, 1), True)
        with pytest.raises(asyncpg.UniqueViolationError, match="idx_unique_active_subscription"):
            await conn.execute(insert, user_id, "ELITE", date(2025, 4, 1), True)
        other = await add_user(conn, "other@example.in")
        await conn.execute(insert, other, "PRO", date(2025, 3, 1), True)
        return await conn.fetchval("SELECT count(*) FROM subscriptions_subscription")

    assert run(pg_dsn, body) == 4


def test_unique_email_and_broker_account_per_user(pg_dsn):
    async def body(conn):
        user_id = await add_user(conn)
        with pytest.raises(asyncpg.UniqueViolationError):
            await add_user(conn)
        broker_id = await conn.fetchval("INSERT INTO brokers_broker (name) VALUES ('Zerodha') RETURNING id")
        insert = "INSERT INTO brokers_userbrokeraccount (user_id, broker_id) VALUES ($1, $2)"
        await conn.execute(insert, user_id, broker_id)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, user_id, broker_id)

    run(pg_dsn, body)


def test_deleting_a_user_cascades_to_everything_it_owns(pg_dsn):
    async def body(conn):
        user_id = await add_user(conn)
        keeper = await add_user(conn, "keeper@example.in")
        await _own_one_of_everything(conn, user_id)
        await _own_one_of_everything(conn, keeper)
        await conn.execute("DELETE FROM users_customuser WHERE id = $1", user_id)
        return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in OWNED_TABLES}

    counts = run(pg_dsn, body)
    assert counts == {table: 1 for table in OWNED_TABLES}


def test_deleting_a_signal_keeps_its_orders_with_signal_id_null(pg_dsn):
    async def body(conn):
        user_id = await add_user(conn)
        signal_id = await add_signal(conn, user_id)
        order_id = await conn.fetchval(
            "INSERT INTO trading_order (signal_id, user_id, symbol, order_type, transaction_type, quantity)"
            " VALUES ($1, $2, 'RELIANCE', 'MARKET', 'BUY', 10) RETURNING id", signal_id, user_id,
        )
        await conn.execute("DELETE FROM trading_signal WHERE id = $1", signal_id)
        return await conn.fetchrow("SELECT signal_id, status, filled_quantity FROM trading_order WHERE id = $1", order_id)

    order = run(pg_dsn, body)
    assert order is not None
    assert (order["signal_id"], order["status"], order["filled_quantity"]) == (None, "PENDING", 0)


OWNED_TABLES = [
    "users_customuser", "users_userprofile", "brokers_userbrokeraccount", "trading_signal", "trading_order",
    "portfolios_portfolio", "portfolios_holding", "strategies_strategy", "notifications_notification",
    "ai_studio_mlmodel", "ai_studio_trainingjob", "ai_studio_modellease", "ai_studio_modelreview",
    "ai_studio_computeusage", "ai_studio_marketplacelisting", "subscriptions_subscription",
]


async def _own_one_of_everything(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """One row in every table that references users_customuser, all owned by ``user_id``."""
    broker_id = await conn.fetchval("INSERT INTO brokers_broker (name) VALUES ('Upstox') RETURNING id")
    await conn.execute("INSERT INTO users_userprofile (user_id, pan_number) VALUES ($1, 'ABCPD1234F')", user_id)
    account_id = await conn.fetchval(
        "INSERT INTO brokers_userbrokeraccount (user_id, broker_id) VALUES ($1, $2) RETURNING id", user_id, broker_id)
    signal_id = await add_signal(conn, user_id)
    await conn.execute(
        "INSERT INTO trading_order (signal_id, user_id, broker_account_id, symbol, order_type, transaction_type, quantity)"
        " VALUES ($1, $2, $3, 'TCS', 'LIMIT', 'SELL', 5)", signal_id, user_id, account_id)
    portfolio_id = await conn.fetchval("INSERT INTO portfolios_portfolio (user_id) VALUES ($1) RETURNING id", user_id)
    await conn.execute(
        "INSERT INTO portfolios_holding (portfolio_id, symbol, quantity, average_price) VALUES ($1, 'INFY', 3, 1500)",
        portfolio_id)
    await conn.execute("INSERT INTO strategies_strategy (user_id, name) VALUES ($1, 'ema_cross')", user_id)
    await conn.execute(
        "INSERT INTO notifications_notification (user_id, title, message) VALUES ($1, 'Signal', 'BUY RELIANCE')", user_id)
    model_id = await add_model(conn, user_id)
    job_id = await conn.fetchval(
        "INSERT INTO ai_studio_trainingjob (model_id, user_id) VALUES ($1, $2) RETURNING id", model_id, user_id)
    await conn.execute(
        "INSERT INTO ai_studio_modellease (model_id, lessor_id, lessee_id, price, start_date, end_date)"
        " VALUES ($1, $2, $2, 499, '2025-01-01', '2025-02-01')", model_id, user_id)
    await conn.execute(
        "INSERT INTO ai_studio_modelreview (model_id, reviewer_id, rating) VALUES ($1, $2, 5)", model_id, user_id)
    await conn.execute(
        "INSERT INTO ai_studio_computeusage (user_id, training_job_id, usage_date, compute_hours, cost)"
        " VALUES ($1, $2, '2025-01-02', 1.5, 120)", user_id, job_id)
    await conn.execute(
        "INSERT INTO ai_studio_marketplacelisting (model_id, seller_id, title, description)"
        " VALUES ($1, $2, 'NIFTY momentum', 'LSTM on 1m bars')", model_id, user_id)
    await conn.execute(
        "INSERT INTO subscriptions_subscription (user_id, plan_name, start_date, amount) VALUES ($1, 'PRO', '2025-01-01', 999)",
        user_id)
