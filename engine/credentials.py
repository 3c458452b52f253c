"""Broker credentials at rest: tokens sealed with AEAD, and values that never print themselves.

Pure: the 32-byte key is handed in (``engine/cli/secret_key.py`` finds it: ``SHAREWISE_SECRET_KEY``, or a
file generated once under ``$SHAREWISE_HOME/secrets``); nothing here reads the environment, a file or a clock.

* :class:`SecretBox` seals a token (``brokers_userbrokeraccount.access_token`` / ``refresh_token``) with
  AES-256-GCM into a text value ``v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``. The associated data
  binds the value to its account id and column, so a value copied to another row or column fails to open.
  The key id (8 hex digits of HMAC-SHA256 of the key) tells a value sealed with another key from a
  tampered one; it reveals nothing usable about the key.
* :class:`Secret` holds a clear value: ``repr``, ``str`` and f-strings show ``***``; it refuses to be
  pickled and is no JSON type, so it cannot reach a log, a message or ``--json`` by accident. Only
  :meth:`Secret.reveal` gives the value, at the moment an adapter sends it to its broker.
* :class:`Credentials`: what the order path gets of an account (``db.broker_accounts.account_credentials``).

Errors never contain a token, a sealed value or a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import ConfigError, EngineError

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"
#: the columns of ``brokers_userbrokeraccount`` that hold sealed values
SEALED_FIELDS = ("access_token", "refresh_token")
#: the longest token accepted for sealing (broker tokens are a few hundred characters at most)
MAX_TOKEN_CHARS = 8192
_KEY_ID_LABEL = b"sharewise secret key id"
_SEALED = re.compile(r"^v1:(?P<kid>[0-9a-f]{8}):(?P<body>[A-Za-z0-9_-]+)$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


class SecretUnreadable(ConfigError):
    """A sealed value that cannot be opened. ``reason``: ``malformed``, ``wrong_key`` or ``tampered``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CredentialsUnavailable(EngineError):
    """An account the order path cannot use. ``reason``: ``no_account``, ``not_a_broker`` (the paper
    account), ``token_expired`` (made inactive when its broker refused the token), ``inactive`` or ``no_token``;
    the message names the account, never a secret."""

    exit_code = 2

    def __init__(self, reason: str, account_id: str, detail: str) -> None:
        super().__init__(f"broker account {account_id}: {detail}")
        self.reason = reason
        self.account_id = account_id


class Secret:
    """A clear secret that shows itself only through :meth:`reveal`; compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The clear value: call it only where the value leaves for its broker."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is never pickled")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An active broker account as an adapter needs it; its repr shows no secret (each is a :class:`Secret`).

    ``broker`` is ``brokers_broker.name`` (``Zerodha``, ``AngelOne``, ``Upstox``), ``api_base_url`` its
    ``api_base_url`` as stored, ``client_code`` the account's ``broker_user_id``.
    """

    account_id: str
    user_id: str
    broker: str
    api_base_url: str | None
    client_code: str | None
    api_key: Secret | None
    access_token: Secret
    refresh_token: Secret | None
    token_expires_at: datetime | None


def decode_key(text: str, *, source: str) -> bytes:
    """The 32-byte key written as 64 hex digits or base64 (standard or URL-safe, padding optional).

    ``source`` names where the text came from (a variable, a file) in the ConfigError raised for
    anything else; the text itself is never put into the message.
    """
    text = text.strip()
    if _HEX_KEY.match(text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{source} must be a {KEY_BYTES}-byte key written as 64 hex digits or base64 "
                          f"(make one with `openssl rand -base64 {KEY_BYTES}`)")
    return key


def encode_key(key: bytes) -> str:
    """The text form of a key as files hold it: standard base64 (44 characters)."""
    return base64.b64encode(key).decode()


def new_key() -> bytes:
    """A fresh random key."""
    return os.urandom(KEY_BYTES)


def key_id(key: bytes) -> str:
    """8 hex digits naming ``key`` in sealed values: HMAC-SHA256(key, label), so it reveals nothing of it."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]


def mask(value: str | None) -> str | None:
    """What may be shown of an API key: ``****`` and its last 4 characters (only ``****`` if shorter than 12)."""
    if value is None:
        return None
    return "****" + value[-4:] if len(value) >= 12 else "****"


class SecretBox:
    """AES-256-GCM sealing of account tokens with one key; see the module docstring for the format."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"a secret key has {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretBox is never pickled")

    def seal(self, token: str, *, account_id: str | uuid.UUID, field: str) -> str:
        """The sealed text of ``token`` for ``field`` of account ``account_id`` (a fresh random nonce each time).

        Raises ConfigError for an empty token, one longer than :data:`MAX_TOKEN_CHARS` or an unknown field.
        """
        if not token:
            raise ConfigError("an empty token cannot be sealed")
        if len(token) > MAX_TOKEN_CHARS:
            raise ConfigError(f"a token is at most {MAX_TOKEN_CHARS} characters")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, token.encode(), _associated(account_id, field))
        body = _text(nonce + sealed)
        return f"{VERSION}:{self.key_id}:{body}"

    def open(self, value: str, *, account_id: str | uuid.UUID, field: str) -> Secret:
        """The token sealed in ``value`` for ``field`` of ``account_id``.

        Raises :class:`SecretUnreadable`: ``malformed`` (not a sealed value), ``wrong_key`` (sealed with
        another key) or ``tampered`` (altered, or moved from another row or column).
        """
        where = f"the {field} of broker account {_account(account_id)}"
        found = _SEALED.match(value)
        if found is None:
            _unreadable("malformed", f"{where} is not a sealed value ({VERSION}:…): connect the account again")
        if found["kid"] != self.key_id:
            _unreadable("wrong_key", f"{where} was sealed with another key (key id {found['kid']}, the current "
                                     f"key's is {self.key_id}): set SHAREWISE_SECRET_KEY to the key it was sealed "
                                     f"with, or connect the account again")
        try:
            blob = base64.urlsafe_b64decode(found["body"] + "=" * (-len(found["body"]) % 4))
            if _text(blob) != found["body"]:  # base64 ignores a last character's spare bits: only ours opens
                raise ValueError("not the canonical encoding")
            clear = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(account_id, field))
        except (InvalidTag, ValueError):  # binascii.Error is a ValueError
            _unreadable("tampered", f"{where} failed authentication: it was altered or copied from another "
                                    f"row or column; connect the account again")
        return Secret(clear.decode())


def _text(blob: bytes) -> str:
    """The body of a sealed value: unpadded base64url."""
    return base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


def _associated(account_id: str | uuid.UUID, field: str) -> bytes:
    if field not in SEALED_FIELDS:
        raise ConfigError(f"only {' and '.join(SEALED_FIELDS)} are sealed, not {field!r}")
    return f"sharewise:{VERSION}:brokers_userbrokeraccount.{field}:{_account(account_id)}".encode()


def _account(account_id: str | uuid.UUID) -> str:
    """The canonical text of an account id (so ``ABC…`` and ``abc…`` bind alike)."""
    try:
        return str(account_id if isinstance(account_id, uuid.UUID) else uuid.UUID(account_id))
    except ValueError:
        raise ConfigError("a broker account id is a UUID") from None


def _unreadable(reason: str, message: str) -> NoReturn:
    raise SecretUnreadable(reason, message) from None
