"""Byte format of indicator-state snapshots: a 40-byte header, then raw little-endian rows.

Header: magic ``b"SWIND"`` + format version (8 bytes), row width and row count (uint64 each),
and a 16-byte fingerprint of the indicator set's layout, so a snapshot can only be restored
into a set that lays its state out the same way. No pickle: the rows are ``tobytes()`` of the
float64 state, restored with ``frombuffer`` — bit-exact.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from engine.errors import BadData, ConfigError

_MAGIC = b"SWIND\x00\x00\x01"
_HEADER = struct.Struct("<8sQQ16s")


def fingerprint(*layout: np.ndarray) -> bytes:
    """16 bytes that change whenever the state layout described by ``layout`` changes."""
    digest = hashlib.blake2b(digest_size=16)
    for part in layout:
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.digest()


def pack(rows: np.ndarray, layout: bytes) -> bytes:
    """Serialise state ``rows`` (count × width float64) with the set's ``layout`` fingerprint."""
    count, width = rows.shape
    return _HEADER.pack(_MAGIC, width, count, layout) + rows.astype("<f8", copy=False).tobytes()


def unpack(blob: bytes, width: int, count: int, layout: bytes) -> np.ndarray:
    """The rows of a :func:`pack` blob, checked against the expected shape and layout.

    Raises BadData (reason ``bad_snapshot``) for bytes that are not a whole snapshot, and
    ConfigError for a snapshot of another indicator set or another number of instruments.
    """
    if len(blob) < _HEADER.size or blob[:8] != _MAGIC:
        raise BadData("bad_snapshot", "not an indicator-state snapshot")
    magic, got_width, got_count, got_layout = _HEADER.unpack_from(blob)
    if got_width != width or got_layout != layout:
        raise ConfigError("indicator snapshot was taken by a different indicator set")
    if got_count != count:
        raise ConfigError(f"indicator snapshot holds {got_count} instruments, {count} indices given")
    body = memoryview(blob)[_HEADER.size:]
    if len(body) != width * count * 8:
        raise BadData("bad_snapshot", f"expected {width * count * 8} bytes of state, got {len(body)}")
    return np.frombuffer(body, dtype="<f8").reshape(count, width)
