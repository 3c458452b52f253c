"""Size rules for every Kafka message the engine produces, and the dead-letter record.

No message the engine produces is larger than ``Settings.max_message_bytes`` (default
1,000,000 bytes, under Kafka's default ``message.max.bytes``; docs/topics.md):

* batched outputs (bar packets, forwarded tick packets, feed packets) are newline-delimited
  lines cut into as many messages as needed by :func:`pack_lines`;
* a dead-letter record whose original is too large keeps the first bytes of the original,
  its length and its sha256 (:func:`dead_letter_record`), so ops can still find and match it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Iterable, Iterator

import orjson

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
#: room kept for the record around a dead letter's original (reason, detail, topic, ...)
_ENVELOPE = 4096


class TooLarge(ValueError):
    """One line is larger than a whole message may be."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a line of {size} bytes does not fit in a message of at most {limit} bytes")
        self.size, self.limit = size, limit


def pack_lines(lines: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """Join ``lines`` with ``\\n`` into messages of at most ``max_bytes`` each, keeping their order.

    Raises :class:`TooLarge` for a line that alone exceeds ``max_bytes`` (the caller decides:
    a feed dead-letters it, an engine output never is that large).
    """
    chunk: list[bytes] = []
    size = -1  # no separator before the first line
    for line in lines:
        if len(line) > max_bytes:
            raise TooLarge(len(line), max_bytes)
        if chunk and size + 1 + len(line) > max_bytes:
            yield b"\n".join(chunk)
            chunk, size = [], -1
        chunk.append(line)
        size += 1 + len(line)
    if chunk:
        yield b"\n".join(chunk)


def dead_letter_record(reason: str, detail: str, raw: bytes, *, topic: str, partition: int | None,
                       offset: int | None, line: int | None, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """The ``market.ticks.dlq`` value for ``raw`` (docs/topics.md), at most ``max_bytes`` long.

    ``original`` holds the rejected bytes (``original_b64`` when they are not UTF-8). When the
    whole record would not fit, only the first bytes of the original are kept and the record
    says so: ``"truncated": true``, ``"original_length"`` and ``"original_sha256"`` of the whole.
    """
    record: dict[str, object] = {"reason": reason, "detail": detail, "topic": topic, "partition": partition,
                                 "offset": offset, "line": line}
    value = _with_original(record, raw)
    keep = max(max_bytes - _ENVELOPE - len(detail.encode()), 0)
    while len(value) > max_bytes:
        record.update(truncated=True, original_length=len(raw), original_sha256=hashlib.sha256(raw).hexdigest())
        value = _with_original(record, raw[:keep])
        keep //= 2  # escaping can grow a prefix (control bytes become \\u00XX): shrink until it fits
    return value


def _with_original(record: dict[str, object], raw: bytes) -> bytes:
    try:
        return orjson.dumps({**record, "original": raw.decode()})
    except UnicodeDecodeError:
        return orjson.dumps({**record, "original_b64": base64.b64encode(raw).decode()})
