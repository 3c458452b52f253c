"""The signing secret of the feed's tokens: ``SHAREWISE_JWT_SECRET``, or a file generated once under HOME.

Without ``SHAREWISE_JWT_SECRET``, 32 random bytes (hex) are generated on first use into
``$SHAREWISE_HOME/secrets/jwt_secret`` (directory 0700, file 0600) and read from there
afterwards, by the feed server and the ``sharewise token`` commands alike. The secret is never
logged or put into an error message. The token logic itself is pure: ``engine/tokens.py``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from engine.errors import ConfigError
from engine.settings import Settings
from engine.tokens import MIN_SECRET_BYTES

SECRET_FILE = "jwt_secret"


def load_secret(settings: Settings) -> bytes:
    """The signing secret: SHAREWISE_JWT_SECRET, or the one under HOME (generated on first use, 0600)."""
    if settings.jwt_secret:
        return settings.jwt_secret.encode()
    path = settings.secrets_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        return _create_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path} is too short to be a signing secret: delete it to generate a new one")
    return secret


def _create_secret(path: Path) -> bytes:
    """Write a fresh secret atomically; if another process won the race, use theirs."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_hex(MIN_SECRET_BYTES).encode()
    return secret if create_private_file(path, secret) else _read_secret(path)


def create_private_file(path: Path, content: bytes) -> bool:
    """Create ``path`` (mode 0600) holding ``content``, atomically and only if it does not exist yet.

    Returns False when another process created it first: its content is in use and is never overwritten.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # unique per attempt
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if the file appeared meanwhile
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
