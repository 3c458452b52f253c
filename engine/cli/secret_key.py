"""The key that seals broker tokens: ``SHAREWISE_SECRET_KEY``, or a file generated once under HOME.

Without ``SHAREWISE_SECRET_KEY`` (parsed by ``engine/settings.py``), 32 random bytes are generated on
first use into ``$SHAREWISE_HOME/secrets/secret_key`` (base64; directory 0700, file 0600), atomically
(two processes starting at once end up with the same key), and read from there afterwards. A key
file that other users may read or write is refused, as ssh refuses such a private key. The key is never
logged or put into an error message. Sealing itself is pure: ``engine/credentials.py``.

Every process that reads the accounts must use the same key: with a database shared by several
machines, set ``SHAREWISE_SECRET_KEY`` on each of them. A lost key makes the stored tokens unreadable
(connect the accounts again); it never makes them readable by anyone else.
"""

from __future__ import annotations

import stat
from pathlib import Path

from engine.credentials import SecretBox, decode_key, encode_key, new_key
from engine.errors import ConfigError
from engine.settings import Settings
from sinks.feed.secret import create_private_file

KEY_FILE = "secret_key"


def load_secret_box(settings: Settings) -> SecretBox:
    """The :class:`SecretBox` of :func:`load_key`."""
    return SecretBox(load_key(settings))


def key_path(settings: Settings) -> Path:
    """Where the generated key lives: ``$SHAREWISE_HOME/secrets/secret_key``."""
    return settings.secrets_dir / KEY_FILE


def load_key(settings: Settings) -> bytes:
    """SHAREWISE_SECRET_KEY, else the key file under HOME (generated on first use, mode 0600).

    Raises ConfigError naming the file when it is not a key, or is open to other users, or cannot be made.
    """
    if settings.secret_key is not None:
        return settings.secret_key
    path = key_path(settings)
    try:
        return _read_key(path)
    except FileNotFoundError:
        return _create_key(path)


def _read_key(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is open to other users (mode {mode:04o}): run `chmod 600 {path}`")
    return decode_key(path.read_text(), source=str(path))


def _create_key(path: Path) -> bytes:
    """Write a fresh key atomically; if another process won the race, use theirs."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror}") from None
    key = new_key()
    return key if create_private_file(path, (encode_key(key) + "\n").encode()) else _read_key(path)
