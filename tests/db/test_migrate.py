"""The migration runner: order, idempotence, concurrency, atomicity, tamper detection."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from db.connect import connect
from db.migrate import discover, migrate, migration_status
from engine.errors import ConfigError, Inconsistency


async def fetchval(dsn: str, sql: str):
    conn = await connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def execute(dsn: str, sql: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_migrations_are_numbered_files_in_order():
    names = [m.name for m in discover()]
    assert names[:2] == ["0001_platform_schema", "0002_platform_indexes"]
    assert names == sorted(names)


def test_migrate_applies_everything_once_then_nothing(pg_empty_dsn):
    expected = [m.name for m in discover()]
    assert [name for name, at in asyncio.run(migration_status(pg_empty_dsn))] == expected
    assert all(at is None for _, at in asyncio.run(migration_status(pg_empty_dsn)))

    assert asyncio.run(migrate(pg_empty_dsn)) == expected
    assert asyncio.run(migrate(pg_empty_dsn)) == []
    status = asyncio.run(migration_status(pg_empty_dsn))
    assert [name for name, _ in status] == expected and all(at is not None for _, at in status)
    public = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    assert asyncio.run(fetchval(pg_empty_dsn, public)) == 18


def test_concurrent_migrations_apply_each_file_once(pg_empty_dsn):
    async def three_at_once():
        return await asyncio.gather(migrate(pg_empty_dsn), migrate(pg_empty_dsn), migrate(pg_empty_dsn))

    results = asyncio.run(three_at_once())
    expected = [m.name for m in discover()]
    assert sorted(name for result in results for name in result) == sorted(expected)
    assert expected in results and results.count([]) == 2
    assert asyncio.run(fetchval(pg_empty_dsn, "SELECT count(*) FROM engine.schema_migration")) == len(expected)


def test_new_files_are_picked_up_in_name_order(pg_empty_dsn, tmp_path: Path):
    (tmp_path / "0002_second.sql").write_text("INSERT INTO public.steps VALUES ('second');")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE public.steps (name text); INSERT INTO public.steps VALUES ('first');")
    (tmp_path / "README.md").write_text("not a migration")
    assert asyncio.run(migrate(pg_empty_dsn, directory=tmp_path)) == ["0001_first", "0002_second"]

    (tmp_path / "0010_third.sql").write_text("INSERT INTO public.steps VALUES ('third');")
    assert asyncio.run(migrate(pg_empty_dsn, directory=tmp_path)) == ["0010_third"]
    order = "SELECT string_agg(name, ',' ORDER BY ctid) FROM public.steps"
    assert asyncio.run(fetchval(pg_empty_dsn, order)) == "first,second,third"


def test_a_failing_migration_is_rolled_back_entirely(pg_empty_dsn, tmp_path: Path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE public.kept (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE public.half (id int); SELECT no_such_function();")
    with pytest.raises(Inconsistency, match="0002_broken failed and was rolled back"):
        asyncio.run(migrate(pg_empty_dsn, directory=tmp_path))
    assert asyncio.run(fetchval(pg_empty_dsn, "SELECT to_regclass('public.half') IS NULL"))
    assert [(n, at is not None) for n, at in asyncio.run(migration_status(pg_empty_dsn, directory=tmp_path))] == [
        ("0001_ok", True), ("0002_broken", False)]


def test_an_applied_migration_that_changed_stops_everything(pg_empty_dsn, tmp_path: Path):
    first = tmp_path / "0001_first.sql"
    first.write_text("CREATE TABLE public.a (id int);")
    asyncio.run(migrate(pg_empty_dsn, directory=tmp_path))
    first.write_text("CREATE TABLE public.a (id bigint);")
    (tmp_path / "0002_next.sql").write_text("CREATE TABLE public.b (id int);")
    with pytest.raises(Inconsistency, match="0001_first was changed"):
        asyncio.run(migrate(pg_empty_dsn, directory=tmp_path))
    assert asyncio.run(fetchval(pg_empty_dsn, "SELECT to_regclass('public.b') IS NULL"))


def test_a_misnamed_sql_file_is_a_config_error(tmp_path: Path):
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match="NNNN_lowercase_name.sql"):
        discover(tmp_path)


def test_a_user_who_may_not_create_the_engine_schema_gets_a_config_error(pg_empty_dsn):
    role = f"reader_{uuid.uuid4().hex[:8]}"
    asyncio.run(execute(pg_empty_dsn, f"CREATE ROLE {role} LOGIN"))
    try:
        as_reader = pg_empty_dsn.replace("postgresql://postgres@", f"postgresql://{role}@")
        with pytest.raises(ConfigError, match="may not create the schema engine"):
            asyncio.run(migrate(as_reader))
    finally:
        asyncio.run(execute(pg_empty_dsn, f"DROP ROLE {role}"))
