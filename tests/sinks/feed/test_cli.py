"""``sharewise token create|revoke`` and ``sharewise feed-server`` as a user runs them: real subprocesses,
a real database (SHAREWISE_DATABASE_URL) and the session broker (SHAREWISE_KAFKA)."""

from __future__ import annotations

from datetime import datetime, timezone
import asyncio
import os
import re
import signal as signals
import subprocess
import sys
from pathlib import Path

import jwt

from engine.settings import Settings
from engine.tokens import TokenIssuer
from sinks.feed.secret import load_secret
from tests.sinks.feed.support import FeedClient, add_user

CLI = "from engine.cli.app import main; main()"


def _env(home: Path, dsn: str, bootstrap: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env |= {"SHAREWISE_HOME": str(home), "SHAREWISE_DATABASE_URL": dsn, "COLUMNS": "200"}
    if bootstrap:
        env |= {"SHAREWISE_KAFKA": f"kafka://{bootstrap}", "SHAREWISE_WS_PORT": "0", "SHAREWISE_PARTITIONS": "2"}
    return env


def sharewise(*args: str, home: Path, dsn: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], env=_env(home, dsn), capture_output=True, text=True,
                          timeout=60, input=stdin)


def test_token_create_prints_only_the_token_and_records_it(tmp_path: Path, pg_dsn: str) -> None:
    user = asyncio.run(add_user(pg_dsn))
    result = sharewise("token", "create", "--user", f"{user.upper()}@TEST.local", "--ttl", "2h",
                       "--channels", "signals,bars", home=tmp_path, dsn=pg_dsn)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    claims = TokenIssuer(load_secret(Settings.from_env({"SHAREWISE_HOME": str(tmp_path)}))).verify(
        token, now=datetime.now(timezone.utc))
    assert claims.user_id == user and claims.channels == ("signals", "bars")
    assert claims.jti in result.stderr and token not in result.stderr
    assert (claims.expires_at - claims.issued_at).total_seconds() == 7200
    assert oct((tmp_path / "secrets" / "jwt_secret").stat().st_mode & 0o777) == "0o600"


def test_token_create_errors_are_one_line(tmp_path: Path, pg_dsn: str) -> None:
    for args, needle in ((["--user", "nobody@test.local"], "no user with email"),
                         (["--user", "x@y", "--ttl", "forever"], "--ttl must look like"),
                         (["--user", "x@y", "--channels", "gossip"], "channels must be")):
        result = sharewise("token", "create", *args, home=tmp_path, dsn=pg_dsn)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_token_revoke_by_token_and_by_jti(tmp_path: Path, pg_dsn: str) -> None:
    user = asyncio.run(add_user(pg_dsn))
    email = f"{user}@test.local"
    first = sharewise("token", "create", "--user", email, home=tmp_path, dsn=pg_dsn).stdout.strip()
    second = sharewise("token", "create", "--user", email, home=tmp_path, dsn=pg_dsn).stdout.strip()
    jti = jwt.decode(second, options={"verify_signature": False})["jti"]
    by_token = sharewise("token", "revoke", "-", home=tmp_path, dsn=pg_dsn, stdin=first + "\n")
    assert by_token.returncode == 0 and f"of {email} revoked" in by_token.stdout, by_token.stderr
    by_jti = sharewise("token", "revoke", "--jti", jti, home=tmp_path, dsn=pg_dsn)
    assert by_jti.returncode == 0 and re.search(rf"token {jti} of .* revoked", by_jti.stdout)
    again = sharewise("token", "revoke", "--jti", jti, home=tmp_path, dsn=pg_dsn)
    assert again.returncode == 0 and "was already revoked" in again.stdout
    for args in (["--jti", "00000000-0000-0000-0000-000000000001"], ["forged.token.here"], []):
        bad = sharewise("token", "revoke", *args, home=tmp_path, dsn=pg_dsn)
        assert bad.returncode == 2 and bad.stderr.startswith("error:"), (args, bad.stderr)


def test_feed_server_prints_its_address_serves_and_stops_on_sigint(tmp_path: Path, pg_dsn: str,
                                                                    kafka_bootstrap: str) -> None:
    user = asyncio.run(add_user(pg_dsn))
    token = sharewise("token", "create", "--user", f"{user}@test.local", home=tmp_path, dsn=pg_dsn).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "feed-server"], env=_env(tmp_path, pg_dsn, kafka_bootstrap),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"feed server on (ws://127\.0\.0\.1:\d+/)", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")

        async def session() -> None:
            client = await FeedClient.authed(match[1], token)
            assert (await client.subscribe("signals"))["op"] == "subscribed"
            await client.close()

        asyncio.run(session())
        proc.send_signal(signals.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "feed server stopped" in out and "Traceback" not in err
    log = (tmp_path / "logs" / "feed-server.log").read_text()
    assert token not in log and token.split(".")[2] not in log
