"""Users' live broker accounts (``brokers_userbrokeraccount``) with their tokens sealed at rest.

* :func:`connect_account` — the user's account on a broker, created or updated: the access token
  (and a refresh token, when given) sealed by a :class:`engine.credentials.SecretBox` with the row's id
  as associated data, the client code as ``broker_user_id``, active;
* :func:`account_rows` — what ``sharewise broker list`` shows: never a token, the API key masked;
* :func:`disconnect_account` — inactive, tokens and their expiry wiped. The row stays, since
  ``trading_order.broker_account_id`` cascades on delete and deleting would erase the order history;
* :func:`account_broker` — an account's broker (``sharewise broker orders``);
* :func:`account_credentials` — what the order path uses: the tokens opened, held as
  :class:`engine.credentials.Secret`, so a log line or an error cannot show them.

Tokens are sealed and opened here in Python: PostgreSQL (and its logs) only ever see sealed values.
The paper account (on the ``Paper`` broker row, docs/orders.md) is listed, but never connected or
disconnected here. All SQL is parameterised; functions that write run in a transaction of their own
(a savepoint inside the caller's).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.credentials import Credentials, CredentialsUnavailable, Secret, SecretBox, mask
from engine.errors import ConfigError
from engine.orders.ids import PAPER_BROKER_ID

#: the ``brokers_broker.name`` of each live broker (db.seed_demo seeds these rows)
LIVE_BROKERS = ("Zerodha", "AngelOne", "Upstox")
#: the keys of an :func:`account_rows` row, in order
ACCOUNT_KEYS = ("id", "user_id", "email", "broker", "client_code", "api_key", "is_active", "token",
                "refresh_token", "token_expires_at", "last_sync", "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class Connected:
    """The account :func:`connect_account` wrote, and whether the row is new."""

    account_id: str
    created: bool


async def broker_id_by_name(conn: asyncpg.Connection, name: str) -> uuid.UUID | None:
    """The id of the ``brokers_broker`` row of this name (case-insensitive; the oldest if several), or None."""
    return await conn.fetchval(
        "SELECT id FROM public.brokers_broker WHERE lower(name) = lower($1) ORDER BY created_at, id LIMIT 1", name)


async def connect_account(conn: asyncpg.Connection, box: SecretBox, *, user_id: str, broker_id: uuid.UUID,
                          api_key: str, access_token: str, client_code: str | None = None,
                          refresh_token: str | None = None, token_expires_at: datetime | None = None) -> Connected:
    """Create or update the account of ``user_id`` on ``broker_id`` (UNIQUE per user and broker); make it active.

    A new row gets a random id first, so the tokens can be sealed with it as associated data. The API key
    and client code are replaced; the tokens and ``token_expires_at`` are replaced (a missing refresh
    token or expiry becomes NULL: they belonged to the previous session); ``updated_at`` is now.
    Raises ConfigError for the paper broker, an empty API key and the sealing errors of ``box``.
    """
    if broker_id == PAPER_BROKER_ID:
        raise ConfigError("the paper account is not a broker connection")
    if not api_key:
        raise ConfigError("an API key is required")
    uid = _uuid(user_id, "user")
    async with conn.transaction():
        created = await conn.fetchval(
            "INSERT INTO public.brokers_userbrokeraccount (id, user_id, broker_id, is_active)"
            " VALUES ($1, $2, $3, FALSE) ON CONFLICT (user_id, broker_id) DO NOTHING RETURNING id",
            uuid.uuid4(), uid, broker_id)
        account_id = await conn.fetchval(
            "SELECT id FROM public.brokers_userbrokeraccount WHERE user_id = $1 AND broker_id = $2 FOR UPDATE",
            uid, broker_id)
        refresh = None if refresh_token is None else box.seal(refresh_token, account_id=account_id,
                                                              field="refresh_token")
        await conn.execute(
            "UPDATE public.brokers_userbrokeraccount SET api_key = $2, access_token = $3, refresh_token = $4,"
            " broker_user_id = $5, token_expires_at = $6, is_active = TRUE, updated_at = now() WHERE id = $1",
            account_id, api_key, box.seal(access_token, account_id=account_id, field="access_token"), refresh,
            client_code, token_expires_at)
    return Connected(str(account_id), created is not None)


async def account_rows(conn: asyncpg.Connection, *, user_id: str | None = None) -> list[dict[str, Any]]:
    """Every account (or ``user_id``'s), by email then broker, with the keys of :data:`ACCOUNT_KEYS`.

    ``token`` and ``refresh_token`` say whether one is stored (booleans): no token is ever read here. ``api_key``
    is masked (:func:`engine.credentials.mask`); ``broker`` is the broker row's name, ``client_code`` the
    ``broker_user_id``.
    """
    rows = await conn.fetch(
        "SELECT a.id::text AS id, a.user_id::text AS user_id, u.email, b.name AS broker,"
        " a.broker_user_id AS client_code, a.api_key, coalesce(a.is_active, FALSE) AS is_active,"
        " a.access_token IS NOT NULL AS token, a.refresh_token IS NOT NULL AS refresh_token, a.token_expires_at,"
        " a.last_sync, a.created_at, a.updated_at"
        " FROM public.brokers_userbrokeraccount a LEFT JOIN public.users_customuser u ON u.id = a.user_id"
        " LEFT JOIN public.brokers_broker b ON b.id = a.broker_id"
        " WHERE $1::uuid IS NULL OR a.user_id = $1::uuid ORDER BY u.email, b.name, a.id",
        None if user_id is None else _uuid(user_id, "user"))
    return [{k: mask(r[k]) if k == "api_key" else r[k] for k in ACCOUNT_KEYS} for r in rows]


async def disconnect_account(conn: asyncpg.Connection, account_id: str) -> bool:
    """Make the account inactive and wipe its tokens and their expiry; True if it was active or held a token.

    The row, its API key and client code stay (its orders reference it). Raises ConfigError for an id
    that is no account, and for the paper account.
    """
    ident = _uuid(account_id, "broker account")
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT broker_id, coalesce(is_active, FALSE) OR access_token IS NOT NULL OR refresh_token IS NOT NULL"
            " AS connected FROM public.brokers_userbrokeraccount WHERE id = $1 FOR UPDATE", ident)
        if row is None:
            raise ConfigError(f"no broker account {ident}")
        if row["broker_id"] == PAPER_BROKER_ID:
            raise ConfigError(f"{ident} is the paper account, not a broker connection")
        await conn.execute(
            "UPDATE public.brokers_userbrokeraccount SET is_active = FALSE, access_token = NULL, refresh_token = NULL,"
            " token_expires_at = NULL, updated_at = now() WHERE id = $1", ident)
    return bool(row["connected"])


async def account_broker(conn: asyncpg.Connection, account_id: str) -> tuple[uuid.UUID, str | None] | None:
    """(``broker_id``, ``brokers_broker.name``) of an account, or None when there is no such account.
    Raises ConfigError for an id that is not a UUID."""
    row = await conn.fetchrow(
        "SELECT a.broker_id, b.name FROM public.brokers_userbrokeraccount a"
        " LEFT JOIN public.brokers_broker b ON b.id = a.broker_id WHERE a.id = $1", _uuid(account_id, "broker account"))
    return None if row is None else (row["broker_id"], row["name"])


async def mark_account_inactive(conn: asyncpg.Connection, account_id: str) -> bool:
    """The broker refused the account's token: make it inactive (its sealed token stays, so the reason is known
    until ``sharewise broker connect`` stores a new one). True if it was active."""
    status = await conn.execute(
        "UPDATE public.brokers_userbrokeraccount SET is_active = FALSE, updated_at = now()"
        " WHERE id = $1 AND is_active IS DISTINCT FROM FALSE", _uuid(account_id, "broker account"))
    return status.endswith(" 1")


async def account_credentials(conn: asyncpg.Connection, account_id: str, box: SecretBox) -> Credentials:
    """The opened credentials of an active account with a token.

    Raises :class:`engine.credentials.CredentialsUnavailable` (``no_account``, ``not_a_broker``, ``token_expired``,
    ``inactive``, ``no_token``), and :class:`engine.credentials.SecretUnreadable` when a token cannot be opened with ``box``.
    """
    ident = _uuid(account_id, "broker account")
    row = await conn.fetchrow(
        "SELECT a.user_id, a.broker_id, b.name, b.api_base_url, a.broker_user_id, a.api_key, a.access_token,"
        " a.refresh_token, a.token_expires_at, coalesce(a.is_active, FALSE) AS is_active"
        " FROM public.brokers_userbrokeraccount a LEFT JOIN public.brokers_broker b ON b.id = a.broker_id"
        " WHERE a.id = $1", ident)
    if row is None:
        raise CredentialsUnavailable("no_account", str(ident), "no such account")
    if row["broker_id"] == PAPER_BROKER_ID:
        raise CredentialsUnavailable("not_a_broker", str(ident), "the paper account has no broker credentials")
    if not row["is_active"] and row["access_token"] is not None:  # made inactive by a refused token
        raise CredentialsUnavailable("token_expired", str(ident), "its token was refused by the broker: connect it"
                                                                  " again")
    if not row["is_active"]:
        raise CredentialsUnavailable("inactive", str(ident), "inactive: connect it again")
    if row["access_token"] is None:
        raise CredentialsUnavailable("no_token", str(ident), "no access token: connect it again")
    refresh = row["refresh_token"]
    return Credentials(
        account_id=str(ident), user_id=str(row["user_id"]), broker=row["name"], api_base_url=row["api_base_url"],
        client_code=row["broker_user_id"], api_key=None if row["api_key"] is None else Secret(row["api_key"]),
        access_token=box.open(row["access_token"], account_id=ident, field="access_token"),
        refresh_token=None if refresh is None else box.open(refresh, account_id=ident, field="refresh_token"),
        token_expires_at=row["token_expires_at"],
    )


def _uuid(value: Any, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ConfigError(f"a {what} id is a UUID") from None
