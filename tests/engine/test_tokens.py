"""Feed tokens: HS256 signing, expiry, tampering, TTL parsing, secret file handling."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest

from engine.errors import ConfigError
from engine.settings import Settings
from engine.tokens import FEED_CHANNELS, TokenIssuer, TokenRejected, parse_ttl
from sinks.feed.secret import load_secret

SECRET = b"s" * 32
USER = str(uuid.uuid4())
NOW = datetime.now(timezone.utc)  # the caller's clock, as the CLI and the feed server hand it


def test_issue_and_verify_round_trip() -> None:
    issuer = TokenIssuer(SECRET)
    token, claims = issuer.issue(USER, timedelta(hours=1), ("signals", "bars"), now=NOW)
    verified = issuer.verify(token, now=NOW)
    assert verified == claims
    assert verified.user_id == USER and verified.channels == ("signals", "bars")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_expired_tampered_foreign_and_garbage_tokens_are_rejected() -> None:
    issuer = TokenIssuer(SECRET)
    old, _ = issuer.issue(USER, timedelta(minutes=1), now=NOW - timedelta(hours=1))
    with pytest.raises(TokenRejected) as caught:
        issuer.verify(old, now=NOW)
    assert caught.value.reason == "expired"
    assert issuer.verify(old, now=None).user_id == USER
    good, _ = issuer.issue(USER, timedelta(hours=1), now=NOW)
    head, body, sig = good.split(".")
    tampered = ".".join([head, body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1], sig])
    foreign, _ = TokenIssuer(b"x" * 32).issue(USER, timedelta(hours=1), now=NOW)
    none_alg = jwt.encode({"sub": USER, "jti": str(uuid.uuid4()), "iat": 1, "exp": 2**40}, key=None, algorithm="none")
    for bad in (tampered, foreign, none_alg, "not.a.token", "", None, 42):
        with pytest.raises(TokenRejected):
            issuer.verify(bad, now=NOW)


def test_tokens_need_known_channels_and_a_positive_ttl() -> None:
    issuer = TokenIssuer(SECRET)
    with pytest.raises(ConfigError):
        issuer.issue(USER, timedelta(hours=1), ("signals", "gossip"), now=NOW)
    with pytest.raises(ConfigError):
        issuer.issue(USER, timedelta(0), now=NOW)
    assert issuer.issue(USER, timedelta(hours=1), now=NOW)[1].channels == FEED_CHANNELS


def test_secret_is_never_in_repr_and_must_be_long() -> None:
    assert "s" * 32 not in repr(TokenIssuer(SECRET))
    with pytest.raises(ConfigError):
        TokenIssuer(b"short")


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("12h", 43200), ("1d", 86400),
                                           ("2w", 1209600), (" 3h ", 10800)])
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "d", "0d", "-1d", "1y", "1.5h", "1d2h"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_ttl(text)


def test_secret_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings.from_env({"SHAREWISE_HOME": str(tmp_path)})
    first = load_secret(settings)
    path = settings.secrets_dir / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.secrets_dir.stat().st_mode) == 0o700
    assert load_secret(settings) == first and len(first) >= 32
    assert [p.name for p in settings.secrets_dir.iterdir()] == ["jwt_secret"]


def test_env_secret_wins(tmp_path: Path) -> None:
    settings = Settings.from_env({"SHAREWISE_HOME": str(tmp_path), "SHAREWISE_JWT_SECRET": "e" * 40})
    assert load_secret(settings) == b"e" * 40
    assert not (settings.secrets_dir / "jwt_secret").exists()


def test_truncated_secret_file_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings.from_env({"SHAREWISE_HOME": str(tmp_path)})
    settings.secrets_dir.mkdir(parents=True)
    (settings.secrets_dir / "jwt_secret").write_bytes(b"abc")
    os.chmod(settings.secrets_dir / "jwt_secret", 0o600)
    with pytest.raises(ConfigError):
        load_secret(settings)
