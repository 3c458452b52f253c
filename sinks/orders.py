"""The order path's sinks (docs/orders.md, "Tables"): ``orders`` into ``trading_order``, ``portfolios`` into the books.

Both are :class:`sinks.postgres.RetryingSink`\\ s: a batch is one transaction, an outage is retried
until the batch is committed, and a batch the database refuses raises. Their records are
one-element tuples holding a decoded message (:class:`OrderChange`, :class:`Book`), built by
``sinks.rows`` from the topic's bytes.

* :class:`OrderSink` applies order state changes in message order. Per change: the signal that
  created the order (if the message carries it) is inserted exactly as the signals sink would,
  then the ``trading_order`` row is upserted by id, but only when the change is newer than the
  stored row: (``updated_at``, status rank) greater, rank PENDING 0 < OPEN 1 < COMPLETE, CANCELLED,
  REJECTED 2. An equal change is a repeat and writes nothing, so a replay is idempotent and an
  older change arriving late never undoes a newer one. A COMPLETE change of an order that
  ``executes_signal`` marks its signal executed at the order's average price.
* :class:`BookSink` writes a user's latest book: ``portfolios_portfolio`` (only when the book's
  ``as_of`` is not older than the row's ``updated_at``; a row the engine never booked into has
  ``updated_at`` NULL), its ``portfolios_holding`` rows made exactly the book's holdings, and the
  effective columns of ``engine.trading_state`` (the hand-set ``state``/``reason``/``changed_at`` are
  the CLI's and are never touched here).

Both make sure the user's paper account exists first (``brokers_userbrokeraccount`` on the
Paper broker, id ``paper_account_id(user)``); a user who already has an account on the Paper
broker under another id keeps it, and orders are written with that id. Accounts are ensured
for a whole batch at once, in user id order, so two sinks never wait on each other in a cycle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Sequence

import asyncpg

from engine.orders.ids import PAPER_BROKER_ID, paper_account_id
from sinks.postgres import SIGNALS, RetryingSink

#: status -> rank: a change applies only over a stored row of lower (updated_at, rank)
STATUS_RANK = {"PENDING": 0, "OPEN": 1, "COMPLETE": 2, "CANCELLED": 2, "REJECTED": 2}
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
#: ``broker_user_id`` of a paper account
PAPER_BROKER_USER = "PAPER"


@dataclass(frozen=True, slots=True)
class OrderChange:
    """One ``orders`` message, decoded: the ``trading_order`` columns of one state change of an order.

    ``signal`` is the ``trading_signal`` row (:data:`sinks.postgres.SIGNALS` order) of the signal that
    created the order when the message carries it, else ``None``.
    """

    id: uuid.UUID
    user_id: uuid.UUID
    signal_id: uuid.UUID | None
    executes_signal: bool
    broker_account_id: uuid.UUID | None
    broker_order_id: str | None
    symbol: str
    order_type: str
    transaction_type: str
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    status: str
    filled_quantity: int
    average_price: Decimal | None
    order_timestamp: datetime
    exchange_timestamp: datetime | None
    rejection_reason: str | None
    fees: Decimal
    taxes: Decimal
    updated_at: datetime
    signal: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Holding:
    """One ``portfolios_holding`` row of a book."""

    symbol: str
    quantity: int
    average_price: Decimal
    current_price: Decimal | None
    last_price_update: datetime | None
    unrealized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class Book:
    """One ``portfolios`` message, decoded: a user's portfolio, holdings and effective trading state at ``as_of``."""

    user_id: uuid.UUID
    as_of: datetime
    portfolio_id: uuid.UUID
    name: str
    total_value: Decimal
    available_cash: Decimal
    invested_amount: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    holdings: tuple[Holding, ...]
    trading_state: str
    state_reason: str | None


def holding_id(portfolio_id: uuid.UUID, symbol: str) -> uuid.UUID:
    """The id of a portfolio's holding in ``symbol``: the same row id whenever the book is replayed."""
    return uuid.uuid5(portfolio_id, symbol)


# --- SQL -------------------------------------------------------------------------------------------

_ENSURE_ACCOUNTS = """
INSERT INTO brokers_userbrokeraccount (id, user_id, broker_id, broker_user_id, is_active)
SELECT a.id, a.user_id, $3::uuid, $4::varchar, TRUE
FROM unnest($1::uuid[], $2::uuid[]) AS a(id, user_id)
ORDER BY a.user_id
ON CONFLICT DO NOTHING
"""

_ACCOUNTS = """
SELECT user_id, id FROM brokers_userbrokeraccount WHERE broker_id = $1 AND user_id = ANY($2::uuid[])
"""

#: the signals sink's row, typed by its target columns as COPY would (no cast: a cast to varchar(n) truncates)
_INSERT_SIGNAL = (
    f"INSERT INTO {SIGNALS.table} ({', '.join(SIGNALS.columns)}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(SIGNALS.columns) + 1))}) ON CONFLICT (id) DO NOTHING"
)

_RANK_SQL = "CASE {0} WHEN 'PENDING' THEN 0 WHEN 'OPEN' THEN 1 ELSE 2 END"

_UPSERT_ORDER = f"""
INSERT INTO trading_order AS o (id, signal_id, user_id, broker_account_id, broker_order_id, symbol, order_type,
    transaction_type, quantity, price, trigger_price, status, filled_quantity, average_price, order_timestamp,
    exchange_timestamp, rejection_reason, fees, taxes, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $15, $20)
ON CONFLICT (id) DO UPDATE SET
    signal_id = EXCLUDED.signal_id, user_id = EXCLUDED.user_id, broker_account_id = EXCLUDED.broker_account_id,
    broker_order_id = EXCLUDED.broker_order_id, symbol = EXCLUDED.symbol, order_type = EXCLUDED.order_type,
    transaction_type = EXCLUDED.transaction_type, quantity = EXCLUDED.quantity, price = EXCLUDED.price,
    trigger_price = EXCLUDED.trigger_price, status = EXCLUDED.status, filled_quantity = EXCLUDED.filled_quantity,
    average_price = EXCLUDED.average_price, order_timestamp = EXCLUDED.order_timestamp,
    exchange_timestamp = EXCLUDED.exchange_timestamp, rejection_reason = EXCLUDED.rejection_reason,
    fees = EXCLUDED.fees, taxes = EXCLUDED.taxes, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.updated_at, {_RANK_SQL.format("EXCLUDED.status")})
    > (coalesce(o.updated_at, '-infinity'::timestamptz), {_RANK_SQL.format("o.status")})
RETURNING o.id
"""

_EXECUTE_SIGNAL = "UPDATE trading_signal SET executed = TRUE, executed_price = $2, updated_at = $3 WHERE id = $1"

_UPSERT_PORTFOLIO = """
INSERT INTO portfolios_portfolio AS p (id, user_id, name, total_value, available_cash, invested_amount,
    unrealized_pnl, realized_pnl, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
ON CONFLICT (id) DO UPDATE SET
    user_id = EXCLUDED.user_id, name = EXCLUDED.name, total_value = EXCLUDED.total_value,
    available_cash = EXCLUDED.available_cash, invested_amount = EXCLUDED.invested_amount,
    unrealized_pnl = EXCLUDED.unrealized_pnl, realized_pnl = EXCLUDED.realized_pnl, updated_at = EXCLUDED.updated_at
WHERE coalesce(p.updated_at, '-infinity'::timestamptz) <= EXCLUDED.updated_at
RETURNING p.id
"""

_DELETE_HOLDINGS = "DELETE FROM portfolios_holding WHERE portfolio_id = $1 AND NOT (symbol = ANY($2::varchar[]))"

_UPSERT_HOLDINGS = """
INSERT INTO portfolios_holding AS h (id, portfolio_id, symbol, quantity, average_price, current_price,
    last_price_update, unrealized_pnl, created_at, updated_at)
SELECT x.id, $1::uuid, x.symbol, x.quantity, x.average_price, x.current_price, x.last_price_update,
       x.unrealized_pnl, $2::timestamptz, $2::timestamptz
FROM unnest($3::uuid[], $4::varchar[], $5::integer[], $6::numeric[], $7::numeric[], $8::timestamptz[],
            $9::numeric[]) AS x(id, symbol, quantity, average_price, current_price, last_price_update, unrealized_pnl)
ON CONFLICT (portfolio_id, symbol) DO UPDATE SET
    quantity = EXCLUDED.quantity, average_price = EXCLUDED.average_price, current_price = EXCLUDED.current_price,
    last_price_update = EXCLUDED.last_price_update, unrealized_pnl = EXCLUDED.unrealized_pnl,
    updated_at = EXCLUDED.updated_at
"""

_UPSERT_STATE = """
INSERT INTO engine.trading_state AS t (user_id, state, effective_state, effective_reason, as_of)
VALUES ($1, 'ACTIVE', $2, $3, $4)
ON CONFLICT (user_id) DO UPDATE SET
    effective_state = EXCLUDED.effective_state, effective_reason = EXCLUDED.effective_reason, as_of = EXCLUDED.as_of
WHERE t.as_of IS NULL OR t.as_of <= EXCLUDED.as_of
"""


async def ensure_paper_accounts(conn: asyncpg.Connection, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Create the users' paper accounts where missing; return user -> the id of their Paper-broker account."""
    users = sorted(set(user_ids))
    if not users:
        return {}
    ids = [paper_account_id(str(u)) for u in users]
    await conn.execute(_ENSURE_ACCOUNTS, ids, users, PAPER_BROKER_ID, PAPER_BROKER_USER)
    return {row["user_id"]: row["id"] for row in await conn.fetch(_ACCOUNTS, PAPER_BROKER_ID, users)}


class OrderSink(RetryingSink):
    """Writes ``orders`` messages (records: ``(OrderChange,)``) to ``trading_order``; returns changes applied."""

    def __init__(self, dsn: str, *, max_backoff: float = 5.0) -> None:
        super().__init__(dsn, "trading_order", max_backoff=max_backoff)

    async def _apply(self, conn: asyncpg.Connection, records: Sequence[tuple[Any, ...]]) -> int:
        changes: list[OrderChange] = [record[0] for record in records]
        accounts = await ensure_paper_accounts(conn, (c.user_id for c in changes))
        applied = 0
        for c in changes:  # message order: several changes of one order in a batch apply one after the other
            if c.signal is not None:
                await conn.execute(_INSERT_SIGNAL, *c.signal)
            account = c.broker_account_id
            if account is None or account == paper_account_id(str(c.user_id)):
                account = accounts.get(c.user_id, account)
            done = await conn.fetchval(
                _UPSERT_ORDER, c.id, c.signal_id, c.user_id, account, c.broker_order_id, c.symbol, c.order_type,
                c.transaction_type, c.quantity, c.price, c.trigger_price, c.status, c.filled_quantity,
                c.average_price, c.order_timestamp, c.exchange_timestamp, c.rejection_reason, c.fees, c.taxes,
                c.updated_at,
            )
            if done is None:
                continue  # not newer than the stored row: a repeat, or an older change arriving late
            applied += 1
            if c.executes_signal and c.status == "COMPLETE" and c.signal_id is not None:
                await conn.execute(_EXECUTE_SIGNAL, c.signal_id, c.average_price, c.updated_at)
        return applied


class BookSink(RetryingSink):
    """Writes ``portfolios`` messages (records: ``(Book,)``) to the book tables; returns books applied.

    Of several books of one portfolio in a batch only the latest (by ``as_of``, the last of equals)
    is written: the ones before it would be overwritten within the same transaction.
    """

    def __init__(self, dsn: str, *, max_backoff: float = 5.0) -> None:
        super().__init__(dsn, "portfolios_portfolio", max_backoff=max_backoff)

    async def _apply(self, conn: asyncpg.Connection, records: Sequence[tuple[Any, ...]]) -> int:
        latest: dict[uuid.UUID, Book] = {}
        for record in records:
            book: Book = record[0]
            seen = latest.get(book.portfolio_id)
            if seen is None or book.as_of >= seen.as_of:
                latest[book.portfolio_id] = book
        await ensure_paper_accounts(conn, (b.user_id for b in latest.values()))
        applied = 0
        for book in latest.values():
            applied += await self._book(conn, book)
        return applied

    async def _book(self, conn: asyncpg.Connection, b: Book) -> int:
        done = await conn.fetchval(
            _UPSERT_PORTFOLIO, b.portfolio_id, b.user_id, b.name, b.total_value, b.available_cash, b.invested_amount,
            b.unrealized_pnl, b.realized_pnl, b.as_of,
        )
        if done is None:
            return 0  # an older book than the one stored
        symbols = [h.symbol for h in b.holdings]
        await conn.execute(_DELETE_HOLDINGS, b.portfolio_id, symbols)
        if b.holdings:
            await conn.execute(
                _UPSERT_HOLDINGS, b.portfolio_id, b.as_of, [holding_id(b.portfolio_id, s) for s in symbols], symbols,
                [h.quantity for h in b.holdings], [h.average_price for h in b.holdings],
                [h.current_price for h in b.holdings], [h.last_price_update for h in b.holdings],
                [h.unrealized_pnl for h in b.holdings],
            )
        await conn.execute(_UPSERT_STATE, b.user_id, b.trading_state, b.state_reason, b.as_of)
        return 1
