"""Who may read the feed: tokens recorded in PostgreSQL, users, and their subscription tier.

A verified JWT (``engine.tokens``) opens a session only if the database agrees: its
``engine.api_token`` row exists, is neither revoked nor expired, belongs to the same
user, and that user exists and is active. The tier is the plan of the user's active
subscription (``subscriptions_subscription``: is_active and today within start/end
dates) when it names one of FREE/PRO/ELITE, else ``users_customuser.subscription_tier``,
else FREE. It is read once per session, at auth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine.errors import ConfigError
from engine.tokens import TokenClaims, TokenRejected
from sinks.feed.protocol import Identity

_TIER = re.compile(r"^\s*(FREE|PRO|ELITE)\b", re.IGNORECASE)

_IDENTITY_SQL = """
SELECT t.revoked_at, t.expires_at, t.channels, u.is_active, u.subscription_tier,
       (SELECT s.plan_name FROM public.subscriptions_subscription s
         WHERE s.user_id = u.id AND s.is_active
           AND s.start_date <= CURRENT_DATE AND (s.end_date IS NULL OR s.end_date >= CURRENT_DATE)
         ORDER BY s.start_date DESC LIMIT 1) AS plan_name
FROM engine.api_token t JOIN public.users_customuser u ON u.id = t.user_id
WHERE t.jti = $1 AND t.user_id = $2
"""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token's row, for the CLI (never the token text)."""

    jti: str
    email: str
    expires_at: datetime
    revoked_at: datetime | None


def tier_of(plan_name: str | None, subscription_tier: str | None) -> str:
    """FREE, PRO or ELITE from the active plan, else the user's tier, else FREE."""
    for name in (plan_name, subscription_tier):
        match = _TIER.match(name or "")
        if match:
            return match[1].upper()
    return "FREE"


async def identify(conn: asyncpg.Connection, claims: TokenClaims) -> Identity:
    """The session identity for verified ``claims``; :class:`TokenRejected` when the database says no."""
    row = await conn.fetchrow(_IDENTITY_SQL, claims.jti, claims.user_id)
    if row is None:
        raise TokenRejected("unknown token")
    if row["revoked_at"] is not None:
        raise TokenRejected("revoked")
    if row["expires_at"] <= datetime.now(row["expires_at"].tzinfo):
        raise TokenRejected("expired")
    if row["is_active"] is False:
        raise TokenRejected("user inactive")
    channels = frozenset(row["channels"]) & frozenset(claims.channels)
    return Identity(claims.user_id, tier_of(row["plan_name"], row["subscription_tier"]), channels, claims.jti)


async def user_id_for(conn: asyncpg.Connection, email: str) -> str:
    """The id of the user with this email (case-insensitive); ConfigError when there is none."""
    user_id = await conn.fetchval("SELECT id FROM public.users_customuser WHERE lower(email) = lower($1)", email)
    if user_id is None:
        raise ConfigError(f"no user with email {email!r}")
    return str(user_id)


async def record_token(conn: asyncpg.Connection, claims: TokenClaims) -> None:
    await conn.execute(
        "INSERT INTO engine.api_token (jti, user_id, channels, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        claims.jti, claims.user_id, list(claims.channels), claims.issued_at, claims.expires_at,
    )


async def revoke_token(conn: asyncpg.Connection, jti: str) -> tuple[TokenRecord, bool]:
    """Revoke by jti; return the token's record and whether this call revoked it (False: it already was)."""
    revoked = await conn.fetchval(
        "UPDATE engine.api_token SET revoked_at = NOW() WHERE jti = $1 AND revoked_at IS NULL RETURNING jti", jti
    )
    row = await conn.fetchrow(
        "SELECT t.jti, u.email, t.expires_at, t.revoked_at FROM engine.api_token t"
        " JOIN public.users_customuser u ON u.id = t.user_id WHERE t.jti = $1", jti,
    )
    if row is None:
        raise ConfigError(f"no token with jti {jti}")
    return TokenRecord(str(row["jti"]), row["email"], row["expires_at"], row["revoked_at"]), revoked is not None


async def invalid_tokens(conn: asyncpg.Connection, jtis: list[str]) -> dict[str, str]:
    """Of ``jtis`` (open sessions), those that must close now: jti -> reason (revoked, expired, gone)."""
    rows = await conn.fetch(
        "SELECT j.jti::text AS jti, t.jti IS NULL AS gone, t.revoked_at, t.expires_at <= NOW() AS expired, u.is_active"
        " FROM unnest($1::uuid[]) AS j(jti) LEFT JOIN engine.api_token t ON t.jti = j.jti"
        " LEFT JOIN public.users_customuser u ON u.id = t.user_id",
        jtis,
    )
    reasons = {}
    for row in rows:
        if row["gone"]:
            reasons[row["jti"]] = "token gone"
        elif row["revoked_at"] is not None:
            reasons[row["jti"]] = "revoked"
        elif row["expired"]:
            reasons[row["jti"]] = "expired"
        elif row["is_active"] is False:
            reasons[row["jti"]] = "user inactive"
    return reasons
