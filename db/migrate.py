"""Schema migrations: every ``NNNN_name.sql`` of ``db/migrations/``, applied once, in name order.

Contract of :func:`migrate`:

* runs under a PostgreSQL advisory lock, so concurrent runs (two workers starting,
  ``sharewise up`` twice) are safe: the second waits, then finds nothing to apply;
* each migration runs in its own transaction together with its bookkeeping row in
  ``engine.schema_migration`` (name, sha256 checksum, applied_at): it is applied
  entirely or not at all;
* idempotent: a second run applies nothing;
* an applied migration whose file has changed since stops everything
  (:class:`Inconsistency`): fix it with a new migration, never by editing an old one.

Migration files hold plain SQL without transaction control and run with
``search_path = public``: the platform tables live in ``public``, engine tables must be
written ``engine.<name>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from db.connect import connect
from engine.errors import ConfigError, Inconsistency

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: pg_advisory_lock key held while migrating ("SHAREWISE" squeezed into a bigint)
MIGRATION_LOCK = 0x5348_4152_4557_4953
_FILE_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")

_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS engine;
CREATE TABLE IF NOT EXISTS engine.schema_migration (
    name        text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: ``name`` is its stem (``0001_platform_schema``)."""

    name: str
    sql: str
    checksum: str


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations of ``directory`` in name order; a ``.sql`` file not named ``NNNN_name.sql`` is a ConfigError."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not _FILE_NAME.match(path.name):
            raise ConfigError(f"migration file {path} must be named NNNN_lowercase_name.sql")
        sql = path.read_text(encoding="utf-8")
        found.append(Migration(path.stem, sql, hashlib.sha256(sql.encode()).hexdigest()))
    return found


async def migrate(dsn: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations in order; return the names applied (empty when up to date).

    Raises ServiceUnavailable/ConfigError when the database cannot be reached (ConfigError
    also when its user may not create the ``engine`` schema) and Inconsistency when a
    migration fails (it is rolled back) or an applied one changed.
    """
    migrations = discover(directory)
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await _create_bookkeeping(conn)
            applied = await _applied_checksums(conn)
            _check_unchanged(migrations, applied)
            done = []
            for migration in migrations:
                if migration.name not in applied:
                    await _apply(conn, migration)
                    done.append(migration.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()


async def migration_status(dsn: str, *, directory: Path = MIGRATIONS_DIR) -> list[tuple[str, datetime | None]]:
    """Every known migration with its ``applied_at``, or ``None`` when pending; changes nothing."""
    migrations = discover(directory)
    conn = await connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('engine.schema_migration')") is None:
            return [(m.name, None) for m in migrations]
        rows = await conn.fetch("SELECT name, applied_at FROM engine.schema_migration")
    finally:
        await conn.close()
    applied_at = {row["name"]: row["applied_at"] for row in rows}
    return [(m.name, applied_at.get(m.name)) for m in migrations]


async def _create_bookkeeping(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute(_BOOKKEEPING)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ConfigError(f"the database user may not create the schema engine or its tables: {exc}") from exc


async def _applied_checksums(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT name, checksum FROM engine.schema_migration")
    return {row["name"]: row["checksum"] for row in rows}


def _check_unchanged(migrations: list[Migration], applied: dict[str, str]) -> None:
    for m in migrations:
        if m.name in applied and applied[m.name] != m.checksum:
            raise Inconsistency(
                f"migration {m.name} was changed after it was applied (checksum differs): "
                "restore the file and put the change in a new migration"
            )


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    """Run one migration and record it, in one transaction."""
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO public")
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO engine.schema_migration (name, checksum) VALUES ($1, $2)", migration.name, migration.checksum
            )
    except asyncpg.PostgresError as exc:
        raise Inconsistency(f"migration {migration.name} failed and was rolled back: {exc}") from exc
