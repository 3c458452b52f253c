"""Connection failures name the server, never the password."""

from __future__ import annotations

import asyncio

import pytest

from db.connect import connect, create_pool, dsn_for_database, server_address
from engine.errors import ConfigError, ServiceUnavailable


@pytest.mark.parametrize("dsn, where", [
    ("postgresql://u:secret@127.0.0.1:1/x", "127.0.0.1:1"),
    ("postgresql://postgres@/postgres?host=/nonexistent/dir&port=5433", "/nonexistent/dir/.s.PGSQL.5433"),
    ("postgresql://u:secret@[::1]:1/x", "[::1]:1"),
])
def test_unreachable_server_names_host_and_port_without_password(dsn, where):
    with pytest.raises(ServiceUnavailable) as caught:
        asyncio.run(connect(dsn, timeout=2))
    assert caught.value.where == where
    assert str(caught.value).startswith(f"cannot reach PostgreSQL at {where}")
    assert "secret" not in str(caught.value) and caught.value.exit_code == 2


def test_pool_creation_fails_the_same_way():
    with pytest.raises(ServiceUnavailable, match="127.0.0.1:1"):
        asyncio.run(create_pool("postgresql://u:secret@127.0.0.1:1/x", timeout=2, min_size=1))


def test_unknown_database_is_a_config_error(pg_server):
    with pytest.raises(ConfigError, match="refused the connection.*no_such_db"):
        asyncio.run(connect(dsn_for_database(pg_server, "no_such_db")))


def test_connects_to_the_embedded_server(pg_server):
    async def version() -> str:
        conn = await connect(pg_server)
        try:
            return await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()

    assert asyncio.run(version()).startswith("18.")


def test_dsn_for_database_keeps_server_and_credentials():
    assert dsn_for_database("postgresql://u:pw@h:5433/a?sslmode=disable", "b") == "postgresql://u:pw@h:5433/b?sslmode=disable"
    socket_dsn = dsn_for_database("postgresql://postgres@/postgres?host=/tmp/a b&port=5432", "t")
    assert server_address(socket_dsn) == "/tmp/a b/.s.PGSQL.5432" and "/t?" in socket_dsn
