"""Connections to PostgreSQL whose failures say where, never with which password.

Every failure to connect becomes an engine error naming the server as ``host:port``
or as a Unix socket path:

* unreachable (refused, no such socket, timeout, server starting or shutting down)
  -> :class:`ServiceUnavailable`;
* reached but refused us (bad password, unknown role or database, malformed DSN)
  -> :class:`ConfigError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, Iterator
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import asyncpg
from asyncpg.exceptions._base import InternalClientError

from engine.errors import ConfigError, ServiceUnavailable, TransientError
from engine.settings import redact

#: seconds to wait for a connection before the server counts as unreachable
CONNECT_TIMEOUT = 5.0

_UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError)
_REFUSED = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)


async def connect(dsn: str, *, timeout: float = CONNECT_TIMEOUT, **kwargs: Any) -> asyncpg.Connection:
    """Open one connection; raise ServiceUnavailable / ConfigError (see module doc) on failure."""
    with _translated(dsn):
        return await asyncpg.connect(dsn, timeout=timeout, **kwargs)


async def create_pool(dsn: str, *, timeout: float = CONNECT_TIMEOUT, **kwargs: Any) -> asyncpg.Pool:
    """Create a connection pool (its first connections open now); same errors as :func:`connect`."""
    with _translated(dsn):
        return await asyncpg.create_pool(dsn, timeout=timeout, **kwargs)


#: client-side errors after which the same batch may succeed on a new connection
_CLIENT_SIDE = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, InternalClientError)
#: SQLSTATE classes of a server that is unreachable, overloaded or shutting down
_OUTAGE_CLASSES = ("08", "53", "57")
#: the same outages as exception classes, for ``except RETRYABLE:``
RETRYABLE = (*_CLIENT_SIDE, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
             asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)


def retryable(exc: BaseException) -> bool:
    """True for an outage (the same batch may succeed later), False for a batch the database refuses."""
    if isinstance(exc, TransientError):  # db.connect's ServiceUnavailable
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_OUTAGE_CLASSES)
    return isinstance(exc, _CLIENT_SIDE)


def server_address(dsn: str) -> str:
    """Where ``dsn`` points: ``host:port`` or a socket path (``…/.s.PGSQL.5432``); never a password."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    netloc_host = unquote(parts.netloc.rpartition("@")[2])
    if "," in netloc_host:  # several hosts: name them as given
        return netloc_host
    url_host, url_port = _split_host_port(netloc_host)
    host = query.get("host") or url_host or os.environ.get("PGHOST") or "localhost"
    port = query.get("port") or url_port or os.environ.get("PGPORT") or "5432"
    if host.startswith("/"):
        return f"{host.rstrip('/')}/.s.PGSQL.{port}"
    return f"{host}:{port}"


def dsn_for_database(dsn: str, database: str) -> str:
    """The same server and credentials as ``dsn``, another database."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items() if k not in {"dbname", "database"}}
    tail = "?" + urlencode(query, safe="/", quote_via=quote) if query else ""
    return f"{parts.scheme}://{parts.netloc}/{quote(database)}{tail}"


def _split_host_port(netloc_host: str) -> tuple[str, str | None]:
    """``"h:5432"`` -> ``("h", "5432")``; ``"[::1]:5432"`` -> ``("[::1]", "5432")``; no port -> ``None``."""
    host, sep, port = netloc_host.rpartition(":")
    if sep and port.isdigit() and (not host.startswith("[") or host.endswith("]")):
        return host, port
    return netloc_host, None


@contextlib.contextmanager
def _translated(dsn: str) -> Iterator[None]:
    try:
        yield
    except _UNREACHABLE as exc:
        raise ServiceUnavailable("PostgreSQL", _safe_address(dsn), redact(_reason(exc))) from exc
    except _REFUSED as exc:
        raise ConfigError(f"PostgreSQL at {_safe_address(dsn)} refused the connection: {redact(str(exc))}") from exc
    except (ValueError, asyncpg.ClientConfigurationError) as exc:
        raise ConfigError(f"bad PostgreSQL DSN {redact(dsn)!r}: {redact(str(exc))}") from exc


def _safe_address(dsn: str) -> str:
    try:
        return redact(server_address(dsn))
    except ValueError:
        return "(unparseable DSN)"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
