"""The embedded PostgreSQL launcher: reuse, crash recovery, clean stops, unusable data directories."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from db.connect import connect
from db.embedded import postgres_status, resolve_dsn, start_postgres, stop_postgres
from engine.errors import ConfigError
from engine.settings import Settings

# A process that starts the server of HOME and then waits (or exits at once with "exit").
OWNER = """
import sys, time
from pathlib import Path
from db.embedded import start_postgres
from engine.settings import Settings
print(start_postgres(Settings(home=Path(sys.argv[1])), keep_running=sys.argv[2] == "keep"), flush=True)
if sys.argv[3] == "wait":
    time.sleep(300)
"""


def spawn_owner(
    home: Path, *, keep: bool = False, wait: bool = True, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start an owner process; return it and the DSN it printed once the server was up."""
    env = env or {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    args = [sys.executable, "-c", OWNER, str(home), "keep" if keep else "-", "wait" if wait else "exit"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def server_processes(pgdata: Path) -> list[psutil.Process]:
    """Live postmasters serving ``pgdata``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


async def query(dsn: str, *statements: str):
    conn = await connect(dsn)
    try:
        for sql in statements[:-1]:
            await conn.execute(sql)
        return await conn.fetchval(statements[-1])
    finally:
        await conn.close()


@pytest.fixture
def home(sharewise_home: Path):
    """Settings of a private SHAREWISE_HOME; no server of it may outlive the test."""
    settings = Settings(home=sharewise_home)
    yield settings
    stop_postgres(settings)
    assert server_processes(settings.pgdata.resolve()) == []


def test_start_is_idempotent_and_the_data_survives_a_restart(home):
    dsn = start_postgres(home)
    assert start_postgres(home) == dsn
    status = postgres_status(home)
    assert status["running"] and status["dsn"] == dsn
    assert [p.pid for p in server_processes(home.pgdata.resolve())] == [status["pid"]]
    assert asyncio.run(query(dsn, "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('RELIANCE')", "SELECT 1")) == 1

    stop_postgres(home)
    stop_postgres(home)
    assert postgres_status(home) == {"running": False, "pid": None, "dsn": None}
    assert server_processes(home.pgdata.resolve()) == []

    initialised = (home.pgdata / "PG_VERSION").stat().st_mtime_ns
    dsn = start_postgres(home)
    assert asyncio.run(query(dsn, "SELECT v FROM kept")) == "RELIANCE"
    assert (home.pgdata / "PG_VERSION").stat().st_mtime_ns == initialised
    if os.geteuid() == 0:  # the server runs as its own user: parents gain search permission only, never read
        assert (home.home.stat().st_mode & 0o777) == 0o711


def test_a_sigkilled_owner_leaves_a_server_the_next_owner_reuses_and_stops(home):
    owner, dsn = spawn_owner(home.home)
    server_pid = postgres_status(home)["pid"]
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=30)
    assert postgres_status(home)["pid"] == server_pid  # the gap: the server outlives its killed owner
    assert owner.pid in json.loads((home.pgdata / ".handle_pids.json").read_text())

    successor, successor_dsn = spawn_owner(home.home, wait=False)
    assert successor.wait(timeout=60) == 0
    assert successor_dsn == dsn
    assert not postgres_status(home)["running"]  # the dead owner's handle did not keep it alive
    assert server_processes(home.pgdata.resolve()) == []


def test_sigterm_lets_the_owner_stop_its_server(home):
    owner, dsn = spawn_owner(home.home)
    assert dsn and postgres_status(home)["running"]
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=60) == 128 + signal.SIGTERM
    assert not postgres_status(home)["running"]
    assert server_processes(home.pgdata.resolve()) == []


def test_keep_running_outlives_every_owner_until_stop_postgres(home):
    keeper, dsn = spawn_owner(home.home, keep=True, wait=False)
    assert keeper.wait(timeout=60) == 0
    pid = postgres_status(home)["pid"]
    assert pid is not None

    user, user_dsn = spawn_owner(home.home, wait=False)
    assert user.wait(timeout=60) == 0
    assert (user_dsn, postgres_status(home)["pid"]) == (dsn, pid)
    assert keeper.stderr.read() == user.stderr.read() == ""  # e.g. no warning about XDG_RUNTIME_DIR

    stop_postgres(home)
    assert not postgres_status(home)["running"]


def test_a_fresh_machine_without_runtime_dir_gets_a_private_one(home, tmp_path):
    runtime = tmp_path / "run" / "user" / str(os.geteuid())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")} | {"XDG_RUNTIME_DIR": str(runtime)}
    owner, dsn = spawn_owner(home.home, wait=False, env=env)
    assert owner.wait(timeout=60) == 0 and dsn.startswith("postgresql://postgres@/postgres?host=")
    assert owner.stderr.read() == ""
    lock_dir = runtime / "python_PostgresServer"
    assert (lock_dir / ".lockfile").is_file()
    assert lock_dir.stat().st_uid == os.geteuid() and lock_dir.stat().st_mode & 0o077 == 0
    assert not postgres_status(home)["running"]


def test_a_runtime_dir_owned_by_someone_else_is_refused(tmp_path):
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    (runtime / "python_PostgresServer").mkdir()
    os.chown(runtime / "python_PostgresServer", 4242, 4242)
    env = {"XDG_RUNTIME_DIR": str(runtime), "PATH": os.environ.get("PATH", "")}
    code = ("from pathlib import Path; from db.embedded import start_postgres; from engine.settings import Settings; "
            "start_postgres(Settings(home=Path('unused')))")
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "ConfigError: runtime directory" in result.stderr and "not a directory owned by this user" in result.stderr
    assert server_processes(tmp_path) == []


def _home_is_a_file(root: Path) -> Settings:
    (root / "file").write_text("")
    return Settings(home=root / "file")


def _home_under_a_file(root: Path) -> Settings:
    (root / "file").write_text("")
    return Settings(home=root / "file" / "home")


def _pgdata_is_a_file(root: Path) -> Settings:
    (root / "postgres").write_text("")
    return Settings(home=root)


def _pgdata_holds_other_files(root: Path) -> Settings:
    (root / "postgres").mkdir()
    (root / "postgres" / "holiday.jpg").write_bytes(b"\xff\xd8")
    return Settings(home=root)


def _pgdata_of_another_major_version(root: Path) -> Settings:
    (root / "postgres").mkdir()
    (root / "postgres" / "PG_VERSION").write_text("16\n")
    return Settings(home=root)


@pytest.mark.parametrize("make, message", [
    (_home_is_a_file, "SHAREWISE_HOME .* cannot be created"),
    (_home_under_a_file, "SHAREWISE_HOME .* cannot be created"),
    (_pgdata_is_a_file, "exists and is not a directory"),
    (_pgdata_holds_other_files, "is not a PostgreSQL data directory .*holiday.jpg"),
    (_pgdata_of_another_major_version, "holds a PostgreSQL 16 cluster but the embedded server is PostgreSQL 18"),
])
def test_unusable_data_directory_is_a_config_error(tmp_path, make, message):
    settings = make(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        start_postgres(settings)
    assert caught.value.exit_code == 2
    assert server_processes(tmp_path) == []


def test_status_and_stop_of_a_home_never_used_create_nothing(tmp_path):
    settings = Settings(home=tmp_path / "never")
    assert postgres_status(settings) == {"running": False, "pid": None, "dsn": None}
    stop_postgres(settings)
    assert not settings.home.exists()


def test_a_database_url_starts_nothing(tmp_path):
    settings = Settings(home=tmp_path / "unused", database_url="postgresql://u:pw@db.example.in:5432/sharewise")
    assert resolve_dsn(settings) == "postgresql://u:pw@db.example.in:5432/sharewise"
    assert not settings.home.exists()
