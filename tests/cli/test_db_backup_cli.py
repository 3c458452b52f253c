"""``sharewise db backup|backups|restore|schedule`` as an operator runs them (README "Backups and restore")."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from db.backups import run_tool
from db.connect import connect
from db.embedded import start_postgres
from db.restore import temporary_server
from engine.settings import Settings
from tests.db.test_cli import sharewise as run_cli


def sharewise(home: Path, *args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, home=home, database_url=database_url)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def sql(dsn: str, statement: str) -> list:
    async def run() -> list:
        conn = await connect(dsn)
        try:
            return await conn.fetch(statement)
        finally:
            await conn.close()

    return asyncio.run(run())


def write_rows(dsn: str, first: int, last: int) -> None:
    sql(dsn, f"INSERT INTO drill SELECT generate_series({first}, {last})")


def rows_in(datadir: Path) -> list[int]:
    with temporary_server(datadir) as dsn:
        return [r["n"] for r in sql(dsn, "SELECT n FROM drill ORDER BY n")]


def test_restore_drill_to_a_time_then_latest_then_promote(sharewise_home):
    home = sharewise_home
    dsn = start_postgres(Settings(home=home))
    sql(dsn, "CREATE TABLE drill (n int)")
    write_rows(dsn, 1, 10)
    full = ok(sharewise(home, "db", "backup", "--full"))
    write_rows(dsn, 11, 20)
    incremental = ok(sharewise(home, "db", "backup", "--incremental"))
    write_rows(dsn, 21, 30)
    time.sleep(0.01)  # T strictly between the commits of rows 30 and 31
    target = datetime.now(timezone.utc)
    time.sleep(0.01)
    write_rows(dsn, 31, 40)

    listed = json.loads(ok(sharewise(home, "db", "backups", "--json")).stdout)
    assert [(b["kind"], b["verified"]) for b in listed] == [("full", True), ("incremental", True)]
    assert set(listed[0]) >= {"id", "kind", "started_at", "finished_at", "bytes", "verified"}
    assert listed[1]["parent"] == listed[0]["id"] and all(b["bytes"] > 0 for b in listed)
    assert listed[0]["id"] in full.stdout and listed[1]["id"] in incremental.stdout

    restored = home / "restored-at-t"
    to_t = ok(sharewise(home, "db", "restore", "--to", target.isoformat(), "--into", str(restored)))
    assert f"from {listed[0]['id']}, {listed[1]['id']}" in to_t.stdout
    assert not (restored / "postmaster.pid").exists()  # nothing runs on it
    assert rows_in(restored) == list(range(1, 31))

    latest_dir = home / "restored-latest"
    ok(sharewise(home, "db", "restore", "--latest", "--into", str(latest_dir)))
    assert rows_in(latest_dir) == list(range(1, 41))

    promoted = ok(sharewise(home, "db", "restore", "--into", str(restored), "--promote"))
    aside = next(home.glob("postgres.before-restore-*"))
    assert str(aside) in promoted.stdout and not restored.exists()
    dsn = start_postgres(Settings(home=home))
    assert [r["n"] for r in sql(dsn, "SELECT n FROM drill ORDER BY n")] == list(range(1, 31))
    across = sharewise(home, "db", "backup", "--incremental")
    assert across.returncode == 2 and "take a --full backup" in across.stderr  # no WAL summaries across timelines
    ok(sharewise(home, "db", "backup", "--full"))  # the promoted database backs up on its new timeline
    assert all(b["verified"] for b in json.loads(ok(sharewise(home, "db", "backups", "--json")).stdout))


def test_restore_refuses_bad_targets_and_damaged_backups(sharewise_home):
    start_postgres(Settings(home=sharewise_home))
    ok(sharewise(sharewise_home, "db", "backup", "--full"))
    early = sharewise(sharewise_home, "db", "restore", "--to", "2020-01-01T00:00:00+05:30", "--into", str(sharewise_home / "r"))
    assert early.returncode == 2 and "no backup in" in early.stderr and "finished before 2020-01-01" in early.stderr
    naive = sharewise(sharewise_home, "db", "restore", "--to", "2026-01-01T00:00:00", "--into", str(sharewise_home / "r"))
    assert naive.returncode == 2 and "needs an offset" in naive.stderr
    home_db = sharewise(sharewise_home, "db", "restore", "--latest", "--into", str(sharewise_home / "postgres"))
    assert home_db.returncode == 2 and "is the home's data directory" in home_db.stderr
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    beyond = sharewise(sharewise_home, "db", "restore", "--to", later, "--into", str(sharewise_home / "r"))
    assert beyond.returncode == 2 and "the WAL archive ends before" in beyond.stderr, beyond.stderr  # r is left as it is
    assert "Traceback" not in beyond.stderr

    backup = next(p for p in (sharewise_home / "backups").iterdir() if p.name.endswith("-full"))
    with open(backup / "global" / "pg_control", "r+b") as damaged:
        damaged.write(b"\xff")
    listed = sharewise(sharewise_home, "db", "backups", "--json")
    assert listed.returncode == 1 and [b["verified"] for b in json.loads(listed.stdout)] == [False]
    refused = sharewise(sharewise_home, "db", "restore", "--latest", "--into", str(sharewise_home / "r2"))
    assert refused.returncode == 1 and "pg_verifybackup failed" in refused.stderr and "pg_control" in refused.stderr
    assert not (sharewise_home / "r2").exists()


def test_logical_backup_of_an_external_database(sharewise_home, pg_dsn):
    sql(pg_dsn, "CREATE TABLE logical_probe (n int)")
    dump = sharewise_home / "dump" / "sharewise.dump"
    dump.parent.mkdir()
    done = ok(sharewise(sharewise_home, "db", "backup", "--logical", "--out", str(dump), database_url=pg_dsn))
    assert str(dump) in done.stdout
    assert "TABLE public logical_probe" in run_tool("pg_restore", ["--list", str(dump)])
    assert not (sharewise_home / "postgres").exists()  # an external URL starts nothing embedded

    ok(sharewise(sharewise_home, "db", "backup", "--logical", database_url=pg_dsn))  # into the backups directory
    listed = json.loads(ok(sharewise(sharewise_home, "db", "backups", "--json")).stdout)
    assert [(b["kind"], b["verified"], b["parent"]) for b in listed] == [("logical", True, None)]


def test_logical_backup_never_shows_the_password(sharewise_home):
    url = "postgresql://trader:s3cret@127.0.0.1:1/sharewise"
    failed = sharewise(sharewise_home, "db", "backup", "--logical", "--out", str(sharewise_home / "x.dump"), database_url=url)
    assert failed.returncode != 0 and "pg_dump failed" in failed.stderr
    assert "s3cret" not in failed.stdout + failed.stderr and "Traceback" not in failed.stderr
    assert not (sharewise_home / "x.dump").exists()


def test_physical_backup_of_an_external_server_is_the_dbas_job(sharewise_home):
    url = "postgresql://trader:s3cret@127.0.0.1:1/sharewise"
    for kind in ("--full", "--incremental"):
        refused = sharewise(sharewise_home, "db", "backup", kind, database_url=url)
        assert refused.returncode == 2 and "are the DBA's job" in refused.stderr
        assert "s3cret" not in refused.stderr and not (sharewise_home / "postgres").exists()


def test_schedule_prints_crontab_lines_and_installs_nothing(sharewise_home):
    printed = ok(sharewise(sharewise_home, "db", "schedule", "--keep", "5")).stdout.splitlines()
    exe = str(Path(sys.executable).with_name("sharewise").absolute())
    jobs = [line for line in printed if line and not line.startswith("#")]
    assert jobs[0] == f"SHAREWISE_HOME={sharewise_home.resolve()}"
    assert [job.split(exe)[0].strip() for job in jobs[1:]] == ["30 2 * * 1-6", "30 2 * * 0", "0 4 1 * *", "30 3 * * *"]
    assert [job.split(exe)[1].split(">>")[0].strip() for job in jobs[1:]] == [
        "db backup --incremental",
        "db backup --full --keep 5",
        "db backup --full --dir /path/to/monthly-archive --keep 12",
        "db retention",
    ]
    assert sorted(p.name for p in sharewise_home.iterdir()) == []
