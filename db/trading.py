"""The order path's reads and the CLI's writes of per-user trading data (docs/orders.md).

* :func:`user_limits` — what the risk gate needs of each user: ``users_userprofile.max_daily_loss``
  and ``trading_preferences.max_open_positions``;
* :func:`manual_states`, :func:`set_manual_state` — the trading state set by hand
  (``engine.trading_state``: ``state``, ``reason``, ``changed_at``), loaded by the order stage at start
  and written by ``sharewise risk``; the effective columns belong to the portfolios sink (sinks.orders);
* :func:`user_id_by_email`, and what ``sharewise orders|positions|risk status`` show:
  :func:`order_rows`, :func:`books`, :func:`trading_states`; ``sharewise broker orders``: :func:`account_orders`.

All SQL is parameterised; every function takes an open asyncpg connection and leaves its
transaction handling to the caller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

import asyncpg
import orjson

from engine.errors import ConfigError
from engine.orders.ids import paper_portfolio_id

TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
ORDER_STATUSES = ("PENDING", "OPEN", "COMPLETE", "CANCELLED", "REJECTED")
#: a user without a profile (or with a NULL column): the schema's default daily loss limit
DEFAULT_MAX_DAILY_LOSS = Decimal("10000.00")
#: trading_preferences.max_open_positions when absent or not a whole number ≥ 0
DEFAULT_MAX_OPEN_POSITIONS = 5
#: the portfolio the order path books into (engine.orders.ids.paper_portfolio_id)
PAPER_PORTFOLIO_NAME = "Paper Portfolio"

# A user may have several profile rows (the schema does not forbid it): the oldest one counts, as in db.seed_demo.
_LIMITS = """
SELECT u.id::text AS user_id, p.max_daily_loss, p.max_open_positions
FROM public.users_customuser u
LEFT JOIN LATERAL (
    SELECT pr.max_daily_loss, pr.trading_preferences->>'max_open_positions' AS max_open_positions
    FROM public.users_userprofile pr WHERE pr.user_id = u.id
    ORDER BY pr.created_at NULLS LAST, pr.id LIMIT 1
) p ON TRUE
WHERE $1::uuid[] IS NULL OR u.id = ANY($1::uuid[])
"""


async def user_limits(conn: asyncpg.Connection,
                      user_ids: Sequence[str] | None = None) -> dict[str, tuple[Decimal, int]]:
    """user_id -> (max daily loss ₹, max open positions), of every user or of ``user_ids``.

    A user without a profile gets (₹10,000.00, 5); a NULL ``max_daily_loss`` is ₹10,000.00; a
    ``max_open_positions`` that is missing or not a whole number ≥ 0 is 5. An id in ``user_ids`` that
    is no user gets the defaults too (the risk gate then limits it like anyone else).
    """
    ids = None if user_ids is None else [_uuid_param(u) for u in user_ids]
    rows = await conn.fetch(_LIMITS, ids)
    limits = {r["user_id"]: (DEFAULT_MAX_DAILY_LOSS if r["max_daily_loss"] is None else r["max_daily_loss"],
                             _positions(r["max_open_positions"])) for r in rows}
    for ident in ids or ():
        limits.setdefault(str(ident), (DEFAULT_MAX_DAILY_LOSS, DEFAULT_MAX_OPEN_POSITIONS))
    return limits


def _positions(text: str | None) -> int:
    if text is None:
        return DEFAULT_MAX_OPEN_POSITIONS
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return DEFAULT_MAX_OPEN_POSITIONS
    if not number.is_finite() or number < 0 or number != number.to_integral_value():
        return DEFAULT_MAX_OPEN_POSITIONS
    return int(number)


async def broker_charges(conn: asyncpg.Connection, broker_id: uuid.UUID) -> Any:
    """``brokers_broker.configuration.charges`` of one broker row (None when absent), as JSON data."""
    raw = await conn.fetchval("SELECT configuration->'charges' FROM public.brokers_broker WHERE id = $1", broker_id)
    return None if raw is None else orjson.loads(raw)


async def manual_states(conn: asyncpg.Connection) -> dict[str, tuple[str, str | None]]:
    """user_id -> (state, reason) set by hand, of every user with an ``engine.trading_state`` row."""
    rows = await conn.fetch("SELECT user_id::text AS user_id, state, reason FROM engine.trading_state")
    return {r["user_id"]: (r["state"], r["reason"]) for r in rows}


async def set_manual_state(conn: asyncpg.Connection, user_id: str, state: str, reason: str | None,
                           changed_at: datetime) -> None:
    """Set the user's hand-set trading state (the effective columns are left alone).

    Raises ConfigError for a state outside ACTIVE/REDUCING/HALTED or an unknown user.
    """
    if state not in TRADING_STATES:
        raise ConfigError(f"trading state must be one of {', '.join(TRADING_STATES)}, not {state!r}")
    try:
        await conn.execute(
            "INSERT INTO engine.trading_state AS t (user_id, state, reason, changed_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,"
            " changed_at = EXCLUDED.changed_at",
            _uuid_param(user_id), state, reason, changed_at,
        )
    except asyncpg.ForeignKeyViolationError:
        raise ConfigError(f"no user with id {user_id}") from None


def _uuid_param(user_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(user_id))
    except ValueError:
        raise ConfigError(f"{user_id!r} is not a user id (a UUID)") from None


async def user_id_by_email(conn: asyncpg.Connection, email: str) -> str | None:
    """The id of the user with this email (case-insensitive), or None."""
    user_id = await conn.fetchval("SELECT id FROM public.users_customuser WHERE lower(email) = lower($1)", email)
    return None if user_id is None else str(user_id)


# --- what the CLI shows ----------------------------------------------------------------------------

#: the columns of trading_order, in table order
ORDER_COLUMNS = ("id", "signal_id", "user_id", "broker_account_id", "broker_order_id", "symbol", "order_type",
                 "transaction_type", "quantity", "price", "trigger_price", "status", "filled_quantity",
                 "average_price", "order_timestamp", "exchange_timestamp", "rejection_reason", "fees", "taxes",
                 "created_at", "updated_at")


async def order_rows(conn: asyncpg.Connection, *, user_id: str | None = None, status: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """``trading_order`` rows (every column, plus the user's ``email``), newest first (by order time)."""
    if status is not None and status not in ORDER_STATUSES:
        raise ConfigError(f"order status must be one of {', '.join(ORDER_STATUSES)}, not {status!r}")
    columns = ", ".join(f"o.{c}" for c in ORDER_COLUMNS)
    rows = await conn.fetch(
        f"SELECT {columns}, u.email FROM public.trading_order o LEFT JOIN public.users_customuser u ON u.id = o.user_id"
        " WHERE ($1::uuid IS NULL OR o.user_id = $1::uuid) AND ($2::varchar IS NULL OR o.status = $2::varchar)"
        " ORDER BY coalesce(o.order_timestamp, o.created_at) DESC NULLS LAST, o.updated_at DESC NULLS LAST, o.id"
        " LIMIT $3",
        None if user_id is None else _uuid_param(user_id), status, limit,
    )
    return [dict(r) for r in rows]


#: what :func:`account_orders` reads of each order
ACCOUNT_ORDER_COLUMNS = ("id", "broker_order_id", "symbol", "transaction_type", "order_type", "quantity", "status",
                         "filled_quantity", "average_price", "order_timestamp", "rejection_reason")


async def account_orders(conn: asyncpg.Connection, account_id: str, start: datetime,
                         end: datetime) -> list[dict[str, Any]]:
    """The ``trading_order`` rows of one broker account with ``start <= order_timestamp < end``, oldest first,
    with the columns of :data:`ACCOUNT_ORDER_COLUMNS` (``id`` a UUID)."""
    try:
        ident = uuid.UUID(str(account_id))
    except ValueError:
        raise ConfigError("a broker account id is a UUID") from None
    columns = ", ".join(ACCOUNT_ORDER_COLUMNS)
    rows = await conn.fetch(
        f"SELECT {columns} FROM public.trading_order WHERE broker_account_id = $1"
        " AND order_timestamp >= $2 AND order_timestamp < $3 ORDER BY order_timestamp, id",
        ident, start, end)
    return [dict(r) for r in rows]


@dataclass(slots=True)
class UserBook:
    """What ``sharewise positions`` shows of one user: the paper portfolio (None before the first book or
    seed), its holdings, and the trading state (hand-set and effective; None where there is no row)."""

    user_id: str
    email: str
    portfolio: dict[str, Any] | None = None
    holdings: list[dict[str, Any]] = field(default_factory=list)
    state: str | None = None
    reason: str | None = None
    effective_state: str | None = None
    effective_reason: str | None = None

    @property
    def trading_state(self) -> str:
        """The effective state when a book reported one, else the hand-set one, else ACTIVE."""
        return self.effective_state or self.state or "ACTIVE"

    @property
    def state_reason(self) -> str | None:
        return self.effective_reason if self.effective_state else self.reason


async def books(conn: asyncpg.Connection, *, user_id: str | None = None) -> list[UserBook]:
    """Per user with a paper portfolio or a trading state row (or just ``user_id``): their book, by email."""
    uid = None if user_id is None else _uuid_param(user_id)
    portfolios = await conn.fetch(
        "SELECT p.id, p.user_id, p.name, p.total_value, p.available_cash, p.invested_amount, p.unrealized_pnl,"
        " p.realized_pnl, p.created_at, p.updated_at FROM public.portfolios_portfolio p"
        " WHERE p.name = $1 AND ($2::uuid IS NULL OR p.user_id = $2::uuid)", PAPER_PORTFOLIO_NAME, uid)
    paper = {r["user_id"]: dict(r) for r in portfolios if r["user_id"] is not None
             and r["id"] == paper_portfolio_id(str(r["user_id"]))}
    states = {r["user_id"]: r for r in await conn.fetch(
        "SELECT user_id, state, reason, effective_state, effective_reason FROM engine.trading_state"
        " WHERE $1::uuid IS NULL OR user_id = $1::uuid", uid)}
    wanted = set(paper) | set(states) | ({uid} if uid is not None else set())
    users = await conn.fetch("SELECT id, email FROM public.users_customuser WHERE id = ANY($1::uuid[])"
                             " ORDER BY email", list(wanted))
    holdings: dict[Any, list[dict[str, Any]]] = {}
    for r in await conn.fetch(
            "SELECT portfolio_id, symbol, quantity, average_price, current_price, last_price_update, unrealized_pnl"
            " FROM public.portfolios_holding WHERE portfolio_id = ANY($1::uuid[]) ORDER BY symbol",
            [p["id"] for p in paper.values()]):
        row = dict(r)
        holdings.setdefault(row.pop("portfolio_id"), []).append(row)
    found = []
    for u in users:
        portfolio, state = paper.get(u["id"]), states.get(u["id"])
        book = UserBook(str(u["id"]), u["email"], portfolio,
                        holdings.get(portfolio["id"], []) if portfolio else [])
        if state is not None:
            book.state, book.reason = state["state"], state["reason"]
            book.effective_state, book.effective_reason = state["effective_state"], state["effective_reason"]
        found.append(book)
    return found


async def trading_states(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every ``engine.trading_state`` row with the user's email, by email: what ``sharewise risk status`` shows."""
    rows = await conn.fetch(
        "SELECT t.user_id::text AS user_id, u.email, t.state, t.reason, t.changed_at, t.effective_state,"
        " t.effective_reason, t.as_of FROM engine.trading_state t JOIN public.users_customuser u ON u.id = t.user_id"
        " ORDER BY u.email")
    return [dict(r) for r in rows]
