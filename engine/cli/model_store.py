"""Model files under ``$SHAREWISE_HOME/models``, each named by the sha256 of its bytes.

Naming a file by its hash makes storing idempotent (the same model is one file however often it is
imported) and lets every reader check the bytes are still the ones that were inspected: a file whose
hash no longer matches its name was changed behind the engine's back and is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from engine.errors import ConfigError

MODELS_DIR = "models"
_NAME = re.compile(r"^models/([0-9a-f]{64})\.onnx$")


def relative_path(sha256: str) -> str:
    """The ``file_path`` kept in the database: relative to HOME, so HOME can move."""
    return f"{MODELS_DIR}/{sha256}.onnx"


def store_model(home: Path, data: bytes) -> Path:
    """Write ``data`` to ``home/models/<sha256>.onnx`` (mode 0644) unless a good copy is there; return its path.

    Written to a temporary file first and renamed, so a reader never sees half a model.
    """
    sha = hashlib.sha256(data).hexdigest()
    path = home / relative_path(sha)
    if path.is_file() and _sha_of(path) == sha:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{sha}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_model(home: Path, file_path: str) -> bytes:
    """The bytes of a stored model, checked against the hash in its name.

    Raises ConfigError for a path that is not a stored model's, a missing file, or a tampered one.
    """
    named = _NAME.match(file_path or "")
    if named is None:
        raise ConfigError(f"model file path {file_path!r} is not one `sharewise model import` writes")
    path = home / file_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"the model file {path} is missing: import the model again") from None
    if hashlib.sha256(data).hexdigest() != named[1]:
        raise ConfigError(f"the model file {path} was tampered with: its sha256 no longer matches its name; "
                          f"import the model again")
    return data


def _sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
