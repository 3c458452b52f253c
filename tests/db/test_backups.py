"""``db/backups.py``: WAL archiving switched on by the engine, a killed backup, rotation, password handling."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from db.backups import PARTIAL_PREFIX, _without_password, archive_current_wal, list_backups, take_backup
from db.embedded import start_postgres, stop_postgres
from db.restore import restore
from engine.errors import ConfigError
from engine.settings import Settings
from tests.cli.test_db_backup_cli import ok, rows_in, sharewise, sql, write_rows


def test_an_existing_home_archives_wal_from_its_next_start(sharewise_home):
    settings = Settings(home=sharewise_home, wal_archive=False)
    dsn = start_postgres(settings)
    assert [r[0] for r in sql(dsn, "SHOW archive_mode")] == ["off"]
    stop_postgres(settings)

    dsn = start_postgres(replace(settings, wal_archive=True))
    assert [r[0] for r in sql(dsn, "SHOW archive_mode")] == ["on"]
    assert [r[0] for r in sql(dsn, "SHOW summarize_wal")] == ["on"]
    sql(dsn, "CREATE TABLE t (n int)")
    segment = asyncio.run(archive_current_wal(dsn))
    assert segment is not None and (settings.wal_archive_dir / segment).is_file()
    assert (sharewise_home / "postgres" / "postgresql.conf").read_text().count("include_if_exists = 'sharewise.conf'") == 1


def test_a_backup_killed_in_the_middle_leaves_the_previous_chain_usable(sharewise_home):
    home = sharewise_home
    dsn = start_postgres(Settings(home=home))
    sql(dsn, "CREATE TABLE drill (n int)")
    write_rows(dsn, 1, 10)
    ok(sharewise(home, "db", "backup", "--full"))
    write_rows(dsn, 11, 20)
    # enough data that pg_basebackup is still copying when it is killed
    sql(dsn, "CREATE TABLE bulk AS SELECT g, repeat(md5(g::text), 16) AS pad FROM generate_series(1, 150000) g")

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")} | {"SHAREWISE_HOME": str(home)}
    command = subprocess.Popen([str(Path(sys.executable).with_name("sharewise")), "db", "backup", "--full"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tool = _wait_for_child(command, "pg_basebackup", home / "backups")
    command.send_signal(signal.SIGKILL)
    command.wait(timeout=30)
    tool.wait(timeout=30)  # the tool dies with the command (no orphan writing on)
    assert [p.name for p in (home / "backups").glob(f"{PARTIAL_PREFIX}*")], "killed before pg_basebackup wrote anything"

    listed = json.loads(ok(sharewise(home, "db", "backups", "--json")).stdout)
    assert [(b["kind"], b["verified"]) for b in listed] == [("full", True)]
    ok(sharewise(home, "db", "restore", "--latest", "--into", str(home / "restored")))
    assert rows_in(home / "restored") == list(range(1, 21))

    again = ok(sharewise(home, "db", "backup", "--full"))
    assert "removed the unfinished backup" in again.stderr
    assert not list((home / "backups").glob(f"{PARTIAL_PREFIX}*"))
    assert [b.kind for b in list_backups(home / "backups")] == ["full", "full"]


def _wait_for_child(command: subprocess.Popen, name: str, backups: Path) -> psutil.Process:
    """The child ``name`` of ``command`` once it has started writing a partial backup."""
    parent = psutil.Process(command.pid)
    for _ in range(20_000):
        tools = [c for c in parent.children(recursive=True) if c.name() == name]
        if tools and any((p / "base").exists() for p in backups.glob(f"{PARTIAL_PREFIX}*")):
            return tools[0]
        assert command.poll() is None, "the backup finished before it could be killed"
        time.sleep(0.001)
    raise AssertionError(f"{name} never started")


def test_rotation_keeps_the_newest_fulls_with_their_incrementals_and_their_wal(sharewise_home):
    settings = Settings(home=sharewise_home)
    dsn = start_postgres(settings)
    sql(dsn, "CREATE TABLE drill (n int)")
    first, _ = take_backup(settings, "full")
    write_rows(dsn, 1, 5)
    first_incremental, _ = take_backup(settings, "incremental")
    write_rows(dsn, 6, 10)
    second, removed = take_backup(settings, "full", keep=1)

    assert removed == [first.id, first_incremental.id]
    assert [b.id for b in list_backups(settings.backups_dir)] == [second.id]
    segments = sorted(p.name for p in settings.wal_archive_dir.iterdir() if len(p.name) == 24)
    assert segments and segments[0] == second.start_wal  # older WAL removed, the kept full's WAL kept
    done = restore(settings, into=sharewise_home / "restored", target=None)
    assert done.chain == [second.id] and rows_in(done.into) == list(range(1, 11))

    third, removed = take_backup(settings, "full")  # no keep: no rotation
    assert removed == [] and len(list_backups(settings.backups_dir)) == 2
    pruned = ok(sharewise(sharewise_home, "db", "backups", "--prune", "--keep", "1", "--json"))
    assert f"removed {second.id}" in pruned.stderr
    assert [b["id"] for b in json.loads(pruned.stdout)] == [third.id]


def test_an_incremental_needs_a_previous_backup(sharewise_home):
    with pytest.raises(ConfigError, match="take one with --full first"):
        take_backup(Settings(home=sharewise_home), "incremental")


@pytest.mark.parametrize(
    ("dsn", "plain", "password"),
    [
        ("postgresql://trader:p%40ss@db.example:5433/sharewise?sslmode=require",
         "postgresql://trader@db.example:5433/sharewise?sslmode=require", "p@ss"),
        ("postgresql://trader@db.example/sharewise?password=pw&sslmode=disable",
         "postgresql://trader@db.example/sharewise?sslmode=disable", "pw"),
        ("postgresql://postgres@/postgres?host=/tmp/x&port=5432", "postgresql://postgres@/postgres?host=%2Ftmp%2Fx&port=5432", None),
    ],
)  # fmt: skip
def test_pg_dump_gets_the_password_in_its_environment_only(dsn, plain, password):
    shown, env = _without_password(dsn)
    assert shown == plain and env.get("PGPASSWORD") == password


@pytest.mark.parametrize(("raw", "on"), [(None, True), ("on", True), ("OFF", False), ("0", False)])
def test_wal_archiving_is_a_setting_on_by_default(raw, on):
    env = {"SHAREWISE_HOME": "/h"} | ({"SHAREWISE_WAL_ARCHIVE": raw} if raw else {})
    assert Settings.from_env(env).wal_archive is on
    with pytest.raises(ConfigError, match="SHAREWISE_WAL_ARCHIVE must be on or off"):
        Settings.from_env({"SHAREWISE_HOME": "/h", "SHAREWISE_WAL_ARCHIVE": "maybe"})
