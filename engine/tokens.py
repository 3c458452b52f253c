"""Signed access tokens for the websocket feed: JWT HS256, signed and checked with PyJWT.

A token carries ``sub`` (the user's ``users_customuser.id``), ``jti`` (a random UUID, the
handle used to revoke it), ``iat``/``exp``, and ``chn``: the feed channels it may read.
Verifying a token here checks the signature, the expiry and the claims' shape only;
whether it was revoked, and whether its user still exists and is active, is the
database's answer (``sinks.feed.accounts``).

No file I/O here: the signing secret (at least 32 bytes) is handed in; ``sinks/feed/secret.py`` finds it
(``SHAREWISE_JWT_SECRET``, or a file generated once under ``$SHAREWISE_HOME/secrets``).
Neither a token nor the secret is ever logged or put into an error message.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt

from engine.errors import ConfigError, EngineError

ALGORITHM = "HS256"
#: every channel of the websocket feed, in the order they are documented
FEED_CHANNELS = ("signals", "orders", "notifications", "bars")
MIN_SECRET_BYTES = 32
_TTL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenRejected(EngineError):
    """A token that must not open a session. ``reason`` is a short stable code; no token text inside."""

    exit_code = 2

    def __init__(self, reason: str) -> None:
        super().__init__(f"token rejected: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says. Holds no token text, so it is safe to log."""

    user_id: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    channels: tuple[str, ...]


class TokenIssuer:
    """Signs and verifies tokens with one HS256 secret. Pure: no I/O after construction."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"the token signing secret must be at least {MIN_SECRET_BYTES} bytes long")
        self._secret = secret

    def __repr__(self) -> str:
        return "TokenIssuer(secret=***)"

    def issue(self, user_id: str, ttl: timedelta, channels: tuple[str, ...] = FEED_CHANNELS,
              *, now: datetime) -> tuple[str, TokenClaims]:
        """Sign a new token for ``user_id`` issued ``now`` (the caller's clock); return it with its claims."""
        if ttl <= timedelta(0):
            raise ConfigError("a token's time to live must be positive")
        issued = now.replace(microsecond=0)
        claims = TokenClaims(str(uuid.UUID(user_id)), str(uuid.uuid4()), issued, issued + ttl, check_channels(channels))
        payload = {"sub": claims.user_id, "jti": claims.jti, "iat": issued, "exp": claims.expires_at,
                   "chn": list(claims.channels)}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), claims

    def verify(self, token: object, *, now: datetime | None) -> TokenClaims:
        """Check signature and claims, and expiry against ``now`` (the caller's clock); raise
        :class:`TokenRejected` (reason ``missing``/``expired``/``invalid``).

        ``now=None`` checks no expiry but still the signature: revoking an expired token is allowed.
        """
        if not isinstance(token, str) or not token:
            raise TokenRejected("missing")
        try:  # expiry is judged below against the time we are handed, never the library's own clock
            payload = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                 options={"require": ["sub", "jti", "iat", "exp"], "verify_exp": False,
                                          "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid") from None
        claims = _claims(payload)
        if now is not None and now >= claims.expires_at:
            raise TokenRejected("expired")
        return claims


def _claims(payload: dict[str, object]) -> TokenClaims:
    channels = payload.get("chn", list(FEED_CHANNELS))
    try:
        user_id = str(uuid.UUID(str(payload["sub"])))
        jti = str(uuid.UUID(str(payload["jti"])))
        issued = datetime.fromtimestamp(int(payload["iat"]), timezone.utc)  # type: ignore[arg-type]
        expires = datetime.fromtimestamp(int(payload["exp"]), timezone.utc)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        raise TokenRejected("invalid") from None
    if not isinstance(channels, list) or not set(channels) <= set(FEED_CHANNELS):
        raise TokenRejected("invalid")
    return TokenClaims(user_id, jti, issued, expires, tuple(channels))


def check_channels(channels: tuple[str, ...]) -> tuple[str, ...]:
    """``channels`` if it is a non-empty subset of :data:`FEED_CHANNELS`; ConfigError otherwise."""
    if not channels or not set(channels) <= set(FEED_CHANNELS):
        raise ConfigError(f"channels must be a non-empty subset of {', '.join(FEED_CHANNELS)}; got {', '.join(channels)}")
    return tuple(channels)


def parse_ttl(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"1d"``, ``"2w"`` -> timedelta; ConfigError otherwise."""
    match = _TTL.match(text)
    if not match or int(match[1]) == 0:
        raise ConfigError(f"--ttl must look like 90s, 30m, 12h, 1d or 2w (a positive number and a unit), got {text!r}")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])

