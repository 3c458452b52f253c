"""Dead-letter records of ``market.ticks.dlq`` and the bookkeeping of their replay.

A record (docs/topics.md) is JSON ``{"reason","detail","topic","partition","offset","line",
"original"}``, the original bytes under ``original_b64`` (base64) when they are not UTF-8.

Replay marks are consumer group offsets on the DLQ topic: group :data:`REPLAY_GROUP`
has committed, per partition, the offset below which every record was replayed;
group ``REPLAY_GROUP + "." + reason`` the same for the records of that reason only. A
record is due for a replay unless one of the two marks is already past it, so replaying
twice sends nothing new, whether or not ``--reason`` was used.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from engine.errors import BadData

REPLAY_GROUP = "sharewise-dlq-replay"


def replay_group(reason: str | None) -> str:
    """The consumer group that records replays of ``reason`` (every reason when ``None``)."""
    return REPLAY_GROUP if reason is None else f"{REPLAY_GROUP}.{reason}"


def is_replay_group(group: str) -> bool:
    """Replay bookmarks are not consumers: the status rules leave them out."""
    return group == REPLAY_GROUP or group.startswith(REPLAY_GROUP + ".")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered tick: why, where it came from, and its original bytes."""

    reason: str
    detail: str
    topic: str | None
    partition: int | None
    offset: int | None
    line: int | None
    original: bytes

    @classmethod
    def parse(cls, value: bytes) -> DeadLetter:
        """Read a DLQ record; raise :class:`BadData` (``dlq_unreadable``) if it is not one."""
        try:
            doc = orjson.loads(value)
            original = _original(doc)
            return cls(str(doc["reason"]), str(doc.get("detail") or ""), doc.get("topic"), doc.get("partition"),
                       doc.get("offset"), doc.get("line"), original)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise BadData("dlq_unreadable", f"not a dead-letter record: {exc}") from exc

    def symbol(self) -> str | None:
        """The ``symbol`` of the original tick when it is a JSON object naming one (routes a replay)."""
        try:
            doc = orjson.loads(self.original)
        except orjson.JSONDecodeError:
            return None
        symbol = doc.get("symbol") if isinstance(doc, dict) else None
        return symbol if isinstance(symbol, str) and symbol else None

    def as_dict(self) -> dict[str, Any]:
        """The record as written to the topic (``original`` as text, else ``original_b64``)."""
        doc: dict[str, Any] = {"reason": self.reason, "detail": self.detail, "topic": self.topic,
                               "partition": self.partition, "offset": self.offset, "line": self.line}
        try:
            doc["original"] = self.original.decode()
        except UnicodeDecodeError:
            doc["original_b64"] = base64.b64encode(self.original).decode()
        return doc


def _original(doc: dict[str, Any]) -> bytes:
    if "original" in doc:
        return str(doc["original"]).encode()
    return base64.b64decode(doc["original_b64"], validate=True)


def replayed_before(partition: int, offset: int, reason: str, marks: Mapping[str, Mapping[int, int]]) -> bool:
    """Whether the record at ``partition``/``offset`` with ``reason`` was replayed already.

    ``marks`` maps replay group -> partition -> committed offset (see module doc).
    """
    return any(offset < marks.get(group, {}).get(partition, 0) for group in (replay_group(None), replay_group(reason)))


def replay_start(partition: int, reason: str | None, marks: Mapping[str, Mapping[int, int]]) -> int:
    """The first DLQ offset of ``partition`` a replay of ``reason`` (or all) must read."""
    done = marks.get(replay_group(None), {}).get(partition, 0)
    if reason is not None:
        done = max(done, marks.get(replay_group(reason), {}).get(partition, 0))
    return done


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """A record of the DLQ topic: where it sits, when it was written, and the dead letter it holds.

    ``letter`` is ``None`` when the record is not a readable dead letter (``raw`` keeps it).
    """

    partition: int
    offset: int
    timestamp_ms: int
    letter: DeadLetter | None
    raw: bytes

    @classmethod
    def read(cls, partition: int, offset: int, timestamp_ms: int, value: bytes | None) -> DlqEntry:
        try:
            letter: DeadLetter | None = DeadLetter.parse(value or b"")
        except BadData:
            letter = None
        return cls(partition, offset, timestamp_ms, letter, value or b"")

    @property
    def reason(self) -> str:
        return self.letter.reason if self.letter is not None else "dlq_unreadable"


def newest(entries: list[DlqEntry], n: int) -> list[DlqEntry]:
    """The ``n`` most recently written entries, oldest first (ties by partition and offset)."""
    return sorted(entries, key=lambda e: (e.timestamp_ms, e.partition, e.offset))[-n:] if n > 0 else []


class DeadLetterTally:
    """Counts of dead letters by reason and the newest examples, fed incrementally.

    ``positions`` (partition -> next offset to read) says where the next update starts, so
    a live view reads each record once.
    """

    def __init__(self, examples: int = 5) -> None:
        self.examples = examples
        self.counts: dict[str, int] = {}
        self.latest: list[DlqEntry] = []
        self.positions: dict[int, int] = {}

    def add(self, entries: list[DlqEntry]) -> None:
        for e in entries:
            self.counts[e.reason] = self.counts.get(e.reason, 0) + 1
            self.positions[e.partition] = max(self.positions.get(e.partition, 0), e.offset + 1)
        self.latest = newest(self.latest + entries, self.examples)
