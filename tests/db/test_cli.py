"""``sharewise db …`` as a user runs it: a real subprocess against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


UNREACHABLE = "postgresql://trader:secret@127.0.0.1:1/sharewise"


def sharewise(*args: str, home: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env |= {"SHAREWISE_HOME": str(home), "COLUMNS": "200"}
    if database_url:
        env["SHAREWISE_DATABASE_URL"] = database_url
    script = Path(sys.executable).with_name("sharewise")  # the console script pip installed
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["migrate", "status"])
def test_unreachable_database_is_one_line_naming_host_and_port(tmp_path, command):
    result = sharewise("db", command, home=tmp_path, database_url=UNREACHABLE)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: cannot reach PostgreSQL at 127.0.0.1:1: connection refused"
    assert "secret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "postgres").exists()  # an external URL starts nothing embedded


def test_migrate_status_and_seed_demo_against_a_database_url(tmp_path, pg_empty_dsn):
    first = sharewise("db", "migrate", home=tmp_path, database_url=pg_empty_dsn)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_platform_schema\napplied 0002_platform_indexes\n" in first.stdout
    second = sharewise("db", "migrate", home=tmp_path, database_url=pg_empty_dsn)
    assert (second.returncode, second.stdout.strip()) == (0, "nothing to apply: schema up to date")

    status = sharewise("db", "status", home=tmp_path, database_url=pg_empty_dsn)
    assert status.returncode == 0 and "0001_platform_schema" in status.stdout
    assert status.stdout.count("pending") == 1 and "0 pending" in status.stdout

    seeded = sharewise("db", "seed-demo", home=tmp_path, database_url=pg_empty_dsn)
    assert seeded.returncode == 0 and "created user demo@sharewise.local" in seeded.stdout
    again = sharewise("db", "seed-demo", home=tmp_path, database_url=pg_empty_dsn)
    assert again.returncode == 0 and "already exists: nothing created" in again.stdout
    assert "created" not in again.stdout.replace("nothing created", "")


def test_seed_demo_before_migrate_says_what_to_do(tmp_path, pg_empty_dsn):
    result = sharewise("db", "seed-demo", home=tmp_path, database_url=pg_empty_dsn)
    assert result.returncode == 2
    assert "run `sharewise db migrate` first" in result.stderr and "Traceback" not in result.stderr


def test_unusable_home_is_one_clear_line(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    result = sharewise("db", "migrate", home=home, database_url=None)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: SHAREWISE_HOME {home} cannot be created")
    assert "Traceback" not in result.stderr
