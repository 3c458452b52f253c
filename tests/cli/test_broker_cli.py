"""``sharewise broker connect|list|disconnect`` as a user runs them: real subprocesses and a real database.

The canary: a random token that must never leave in clear — not on stdout or stderr, not in a log or any
file under HOME, not in the database column — and that still opens with the key under HOME.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from db.broker_accounts import account_credentials
from db.seed_demo import DEMO_EMAIL, seed_demo
from engine.cli.broker_cmd import LIST_KEYS
from engine.credentials import SecretBox, SecretUnreadable, decode_key, key_id

API_KEY = "kite-api-key-0001"


def sharewise(*args: str, home: Path, database_url: str, stdin: str = "",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    full |= {"SHAREWISE_HOME": str(home), "SHAREWISE_DATABASE_URL": database_url, "COLUMNS": "250"} | (env or {})
    script = Path(sys.executable).with_name("sharewise")
    return subprocess.run([str(script), *args], env=full, input=stdin, capture_output=True, text=True, timeout=90)


def connect(home: Path, dsn: str, token: str, *extra: str, broker: str = "zerodha",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return sharewise("broker", "connect", "--user", DEMO_EMAIL, "--broker", broker, "--api-key", API_KEY,
                     "--access-token", "-", *extra, home=home, database_url=dsn, stdin=token + "\n", env=env)


def canary() -> str:
    return f"canary-{secrets.token_hex(16)}"


def query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def main() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(main())


def credentials(dsn: str, account_id: str, box: SecretBox):
    async def main():
        conn = await asyncpg.connect(dsn)
        try:
            return await account_credentials(conn, account_id, box)
        finally:
            await conn.close()

    return asyncio.run(main())


def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.fixture
def demo(pg_dsn):
    asyncio.run(seed_demo(pg_dsn))
    return pg_dsn


def test_a_canary_token_is_sealed_never_shown_and_opens_with_the_key_under_home(demo, tmp_path):
    token, home, debug = canary(), tmp_path / "home", {"SHAREWISE_LOG_LEVEL": "DEBUG"}
    connected = connect(home, demo, token, "--client-code", "AB1234", "--json", env=debug)
    assert connected.returncode == 0, connected.stderr
    done = json.loads(connected.stdout)
    assert (done["user"], done["broker"], done["client_code"], done["created"]) == (
        DEMO_EMAIL, "Zerodha", "AB1234", True)
    account = done["account_id"]

    listed = sharewise("broker", "list", "--json", home=home, database_url=demo, env=debug)
    table = sharewise("broker", "list", "--user", DEMO_EMAIL, home=home, database_url=demo, env=debug)
    assert listed.returncode == 0 and table.returncode == 0, listed.stderr + table.stderr
    for result in (connected, listed, table):
        assert token not in result.stdout + result.stderr and API_KEY not in result.stdout + result.stderr
    (row,) = [r for r in json.loads(listed.stdout) if r["id"] == account]
    assert list(row) == list(LIST_KEYS)
    assert (row["email"], row["broker"], row["client_code"], row["api_key"], row["is_active"], row["has_token"],
            row["has_refresh_token"], row["token_expires_at"], row["last_sync"]) == (
        DEMO_EMAIL, "Zerodha", "AB1234", "****0001", True, True, False, None, None)
    assert account in table.stdout and "****0001" in table.stdout and "AB1234" in table.stdout

    logs = home / "logs"
    assert "broker account" in (logs / "broker.log").read_text()  # the audit line, without secrets
    assert files_holding(home, token) == [] and files_holding(home, API_KEY) == []  # no log, no file under HOME

    key_file = home / "secrets" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = decode_key(key_file.read_text(), source="test")
    (sealed,) = query(demo, "SELECT access_token FROM brokers_userbrokeraccount WHERE id = $1", uuid.UUID(account))
    assert sealed["access_token"] != token and token not in sealed["access_token"]
    assert sealed["access_token"].startswith(f"v1:{key_id(key)}:")
    assert credentials(demo, account, SecretBox(key)).access_token.reveal() == token

    with pytest.raises(SecretUnreadable) as wrong:
        credentials(demo, account, SecretBox(os.urandom(32)))
    assert wrong.value.reason == "wrong_key" and token not in str(wrong.value)


def test_a_second_connect_reuses_the_key_and_the_row(demo, tmp_path):
    first_token, second_token = canary(), canary()
    first = connect(tmp_path, demo, first_token, "--json")
    key_file = tmp_path / "secrets" / "secret_key"
    key_text = key_file.read_text()
    second = connect(tmp_path, demo, second_token, "--broker", "ZeRoDhA")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    account = json.loads(first.stdout)["account_id"]
    assert f"reconnected Zerodha account {account} of {DEMO_EMAIL}" in second.stdout
    assert key_file.read_text() == key_text
    box = SecretBox(decode_key(key_text, source="test"))
    assert credentials(demo, account, box).access_token.reveal() == second_token
    assert len(query(demo, "SELECT id FROM brokers_userbrokeraccount WHERE broker_user_id IS NULL"
                           " AND api_key = $1", API_KEY)) == 1


def test_a_key_from_the_environment_is_used_and_no_key_file_is_made(demo, tmp_path):
    key, token = os.urandom(32), canary()
    result = connect(tmp_path, demo, token, "--json", broker="upstox", env={"SHAREWISE_SECRET_KEY": key.hex()})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "secrets").exists()
    account = json.loads(result.stdout)["account_id"]
    assert credentials(demo, account, SecretBox(key)).access_token.reveal() == token


def test_a_bad_key_in_the_environment_is_named_and_not_echoed(demo, tmp_path):
    bad = "hunter2-is-not-a-key"
    result = connect(tmp_path, demo, canary(), env={"SHAREWISE_SECRET_KEY": bad})
    assert result.returncode == 2
    assert result.stderr.startswith("error: SHAREWISE_SECRET_KEY must be a 32-byte key")
    assert bad not in result.stdout + result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("given", ["token", "-token", ""])
def test_a_token_on_the_command_line_is_refused_and_not_echoed(demo, tmp_path, given):
    token = given.replace("token", canary())
    result = sharewise("broker", "connect", "--user", DEMO_EMAIL, "--broker", "zerodha", "--api-key", API_KEY,
                       f"--access-token={token}", home=tmp_path, database_url=demo)
    assert result.returncode == 2
    assert "--access-token takes only '-'" in result.stderr and "shows in `ps`" in result.stderr
    assert (not token or token not in result.stdout + result.stderr) and "Traceback" not in result.stderr
    assert not (tmp_path / "secrets").exists()
    assert query(demo, "SELECT id FROM brokers_userbrokeraccount WHERE api_key = $1", API_KEY) == []


@pytest.mark.parametrize("stdin, message", [
    ("", "no access token on stdin"),
    ("\n  \n", "no access token on stdin"),
    ("two words\n", "must be one line without spaces"),
    ("line-one\nline-two\n", "must be one line without spaces"),
])
def test_a_bad_token_on_stdin_is_refused_and_not_echoed(demo, tmp_path, stdin, message):
    result = sharewise("broker", "connect", "--user", DEMO_EMAIL, "--broker", "zerodha", "--api-key", API_KEY,
                       "--access-token", "-", home=tmp_path, database_url=demo, stdin=stdin)
    assert result.returncode == 2 and message in result.stderr
    for word in stdin.split():
        assert word not in result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (("--user", "nobody@example.com", "--broker", "zerodha"), "no user with email 'nobody@example.com'"),
    (("--user", DEMO_EMAIL, "--broker", "dhan"), "--broker must be one of zerodha, angelone, upstox, got 'dhan'"),
])
def test_an_unknown_user_or_broker_is_one_clear_line_and_exit_2(demo, tmp_path, args, message):
    token = canary()
    result = sharewise("broker", "connect", *args, "--api-key", API_KEY, "--access-token", "-",
                       home=tmp_path, database_url=demo, stdin=token)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr and token not in result.stderr


def test_a_broker_row_that_is_missing_says_how_to_make_it(pg_dsn, tmp_path):
    query(pg_dsn, "INSERT INTO users_customuser (email) VALUES ($1)", DEMO_EMAIL)
    result = connect(tmp_path, pg_dsn, canary(), broker="angelone")
    assert result.returncode == 2
    assert "no broker row named AngelOne: `sharewise db seed-demo` creates" in result.stderr


def test_disconnect_makes_the_account_inactive_and_wipes_its_token(demo, tmp_path):
    token = canary()
    account = json.loads(connect(tmp_path, demo, token, "--json").stdout)["account_id"]
    first = sharewise("broker", "disconnect", account, home=tmp_path, database_url=demo)
    again = sharewise("broker", "disconnect", account, home=tmp_path, database_url=demo)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert f"disconnected account {account}: inactive, tokens wiped" in first.stdout
    assert f"account {account} was already disconnected" in again.stdout
    listed = json.loads(sharewise("broker", "list", "--json", home=tmp_path, database_url=demo).stdout)
    (row,) = [r for r in listed if r["id"] == account]
    assert (row["is_active"], row["has_token"], row["api_key"]) == (False, False, "****0001")
    (stored,) = query(demo, "SELECT access_token, is_active FROM brokers_userbrokeraccount WHERE id = $1",
                      uuid.UUID(account))
    assert (stored["access_token"], stored["is_active"]) == (None, False)
    assert f"broker account {account} disconnected" in (tmp_path / "logs" / "broker.log").read_text()
    assert files_holding(tmp_path, token) == []


def test_disconnecting_an_unknown_or_the_paper_account_is_exit_2(demo, tmp_path):
    (paper,) = query(demo, "SELECT a.id FROM brokers_userbrokeraccount a JOIN brokers_broker b ON b.id = a.broker_id"
                           " WHERE b.name = 'Paper'")
    missing = str(uuid.uuid4())
    for account, message in [(missing, f"no broker account {missing}"), ("nope", "a broker account id is a UUID"),
                             (str(paper["id"]), "is the paper account, not a broker connection")]:
        result = sharewise("broker", "disconnect", account, home=tmp_path, database_url=demo)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr


def test_list_of_an_unknown_user_is_exit_2_and_of_a_user_without_accounts_says_so(demo, tmp_path):
    unknown = sharewise("broker", "list", "--user", "nobody@example.com", home=tmp_path, database_url=demo)
    assert unknown.returncode == 2 and "no user with email 'nobody@example.com'" in unknown.stderr
    query(demo, "INSERT INTO users_customuser (email) VALUES ('new@example.com')")
    empty = sharewise("broker", "list", "--user", "new@example.com", home=tmp_path, database_url=demo)
    assert (empty.returncode, empty.stdout.strip()) == (0, "no broker accounts of new@example.com")
