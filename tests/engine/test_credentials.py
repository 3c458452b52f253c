"""Broker tokens at rest: AES-256-GCM sealing bound to its row and column, keys, and values that never print."""

from __future__ import annotations

import base64
import os
import pickle
import secrets
import stat
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from engine.cli.secret_key import key_path, load_key, load_secret_box
from engine.credentials import (KEY_BYTES, MAX_TOKEN_CHARS, Credentials, Secret, SecretBox, SecretUnreadable,
                                decode_key, key_id, mask)
from engine.errors import ConfigError
from engine.settings import Settings

KEY = bytes(range(32))
ACCOUNT = str(uuid.uuid4())


def canary() -> str:
    return f"canary-{secrets.token_hex(16)}"


def test_a_sealed_token_opens_with_its_account_and_column_and_holds_no_clear_text() -> None:
    box, token = SecretBox(KEY), canary()
    sealed = box.seal(token, account_id=ACCOUNT, field="access_token")
    version, kid, body = sealed.split(":")
    assert (version, kid) == ("v1", key_id(KEY)) and len(kid) == 8
    assert token not in sealed and token.encode() not in base64.urlsafe_b64decode(body + "==")
    assert box.open(sealed, account_id=ACCOUNT, field="access_token").reveal() == token
    assert box.open(sealed, account_id=ACCOUNT.upper(), field="access_token").reveal() == token  # the same uuid
    again = box.seal(token, account_id=ACCOUNT, field="access_token")
    assert again != sealed  # a fresh nonce each time


@pytest.mark.parametrize("account, field", [(str(uuid.uuid4()), "access_token"), (ACCOUNT, "refresh_token")],
                         ids=["another-row", "another-column"])
def test_a_value_moved_to_another_row_or_column_fails(account: str, field: str) -> None:
    box, token = SecretBox(KEY), canary()
    sealed = box.seal(token, account_id=ACCOUNT, field="access_token")
    with pytest.raises(SecretUnreadable) as caught:
        box.open(sealed, account_id=account, field=field)
    assert caught.value.reason == "tampered"
    assert token not in str(caught.value) and sealed not in str(caught.value)


def test_a_wrong_key_is_named_as_such_without_the_secret() -> None:
    token = canary()
    sealed = SecretBox(KEY).seal(token, account_id=ACCOUNT, field="access_token")
    other = SecretBox(os.urandom(KEY_BYTES))
    with pytest.raises(SecretUnreadable) as caught:
        other.open(sealed, account_id=ACCOUNT, field="access_token")
    message = str(caught.value)
    assert caught.value.reason == "wrong_key" and caught.value.exit_code == 2
    assert "sealed with another key" in message and "SHAREWISE_SECRET_KEY" in message and ACCOUNT in message
    assert token not in message and sealed.split(":")[2] not in message
    assert KEY.hex() not in message and base64.b64encode(KEY).decode() not in message


def flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


@pytest.mark.parametrize("tamper", [
    lambda v: flip(v, len(v) - 1),            # the tag
    lambda v: flip(v, 20),                    # the nonce
    lambda v: flip(v, 40),                    # the ciphertext
    lambda v: v[:-6],                         # truncated
    lambda v: v[:12] + "AAAA",                # shorter than a tag
    lambda v: v + "A",                        # a length base64 cannot have
])
def test_tampering_is_detected(tamper) -> None:
    box, token = SecretBox(KEY), canary()
    sealed = box.seal(token, account_id=ACCOUNT, field="access_token")
    with pytest.raises(SecretUnreadable) as caught:
        box.open(tamper(sealed), account_id=ACCOUNT, field="access_token")
    assert caught.value.reason == "tampered"
    assert "failed authentication" in str(caught.value) and token not in str(caught.value)


def test_every_changed_character_is_refused() -> None:
    box, token = SecretBox(KEY), canary()
    sealed = box.seal(token, account_id=ACCOUNT, field="access_token")
    body_at = len("v1:") + 8 + 1
    for at in range(len(sealed)):
        for other in {"A", "B", "-", "0"} - {sealed[at]}:
            with pytest.raises(SecretUnreadable) as caught:
                box.open(sealed[:at] + other + sealed[at + 1:], account_id=ACCOUNT, field="access_token")
            expected = {"tampered"} if at >= body_at else {"malformed", "wrong_key"}  # the version or key id
            assert caught.value.reason in expected
            assert token not in str(caught.value)


@pytest.mark.parametrize("value", ["plain-token-in-clear", "v2:00000000:AAAA", "v1:zz:AAAA", ""])
def test_a_value_that_is_not_sealed_is_malformed_and_not_repeated(value: str) -> None:
    with pytest.raises(SecretUnreadable) as caught:
        SecretBox(KEY).open(value, account_id=ACCOUNT, field="access_token")
    assert caught.value.reason == "malformed" and "connect the account again" in str(caught.value)
    assert not value or value not in str(caught.value)


def test_sealing_refuses_an_empty_or_huge_token_an_unknown_column_and_a_bad_account_id() -> None:
    box = SecretBox(KEY)
    for token, account, field, message in [
        ("", ACCOUNT, "access_token", "empty token"),
        ("x" * (MAX_TOKEN_CHARS + 1), ACCOUNT, "access_token", "at most"),
        ("t", ACCOUNT, "api_key", "only access_token and refresh_token"),
        ("t", "not-a-uuid", "access_token", "is a UUID"),
    ]:
        with pytest.raises(ConfigError, match=message):
            box.seal(token, account_id=account, field=field)


def test_a_secret_never_prints_pickles_or_serialises() -> None:
    token = canary()
    secret = Secret(token)
    assert secret.reveal() == token
    for shown in (repr(secret), str(secret), f"{secret}", "%s %r" % (secret, secret), repr([secret])):
        assert token not in shown and "***" in shown
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        orjson.dumps({"token": secret})
    assert secret == Secret(token) and secret != Secret(canary())
    box = SecretBox(KEY)
    assert repr(box) == f"SecretBox(key_id={key_id(KEY)!r})"
    with pytest.raises(TypeError):
        pickle.dumps(box)


def test_credentials_repr_and_str_redact_every_secret() -> None:
    token, refresh, api_key = canary(), canary(), canary()
    creds = Credentials(account_id=ACCOUNT, user_id=str(uuid.uuid4()), broker="Zerodha",
                        api_base_url="https://api.kite.trade", client_code="AB1234", api_key=Secret(api_key),
                        access_token=Secret(token), refresh_token=Secret(refresh),
                        token_expires_at=datetime(2025, 6, 2, 0, 30, tzinfo=timezone.utc))
    for shown in (repr(creds), str(creds), f"{creds}"):
        assert token not in shown and refresh not in shown and api_key not in shown
        assert "AB1234" in shown and ACCOUNT in shown
    assert creds.access_token.reveal() == token


@pytest.mark.parametrize("text", [KEY.hex(), KEY.hex().upper(), base64.b64encode(KEY).decode(),
                                  base64.urlsafe_b64encode(KEY).decode().rstrip("="), f"  {KEY.hex()}\n"])
def test_a_key_is_64_hex_digits_or_base64(text: str) -> None:
    assert decode_key(text, source="SHAREWISE_SECRET_KEY") == KEY


@pytest.mark.parametrize("text", ["hunter2-not-a-key", KEY.hex()[:-2], base64.b64encode(KEY[:31]).decode(),
                                  base64.b64encode(KEY + b"x").decode(), "ä" * 44])
def test_a_bad_key_names_the_variable_and_never_echoes_it(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SHAREWISE_SECRET_KEY": text}, default_home=Path("/nowhere"))
    message = str(caught.value)
    assert message.startswith("SHAREWISE_SECRET_KEY must be a 32-byte key") and text.strip() not in message


def test_settings_hold_the_key_without_showing_it() -> None:
    settings = Settings.from_env({"SHAREWISE_SECRET_KEY": KEY.hex()}, default_home=Path("/nowhere"))
    assert settings.secret_key == KEY
    assert KEY.hex() not in repr(settings) and "secret_key" not in repr(settings)
    assert settings.describe()["secret_key"] == "from SHAREWISE_SECRET_KEY"
    assert Settings.from_env({}, default_home=Path("/nowhere")).describe()["secret_key"] == "generated under HOME"


def test_mask_shows_at_most_the_last_four_characters() -> None:
    assert mask(None) is None
    assert mask("kite-api-key-1234") == "****1234"
    assert mask("short1234") == "****"


# --- the key file under HOME (engine/cli/secret_key.py) ---------------------------------------------


def test_the_key_is_generated_once_with_mode_0600_and_reused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    key = load_key(settings)
    path = key_path(settings)
    assert path == tmp_path / "home" / "secrets" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert decode_key(path.read_text(), source="file") == key and len(key) == KEY_BYTES
    assert load_key(settings) == key and load_secret_box(settings).key_id == key_id(key)
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary file left


def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_key(settings))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == load_key(settings)


def test_the_variable_wins_over_the_file_and_creates_none(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, secret_key=KEY)
    assert load_key(settings) == KEY
    assert not (tmp_path / "secrets").exists()


def test_a_key_file_open_to_others_or_not_a_key_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    load_key(settings)
    path = key_path(settings)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"is open to other users \(mode 0644\): run `chmod 600"):
        load_key(settings)
    path.chmod(0o600)
    path.write_text("not-a-key\n")
    with pytest.raises(ConfigError) as caught:
        load_key(settings)
    assert str(caught.value).startswith(f"{path} must be a 32-byte key") and "not-a-key" not in str(caught.value)
