"""Which partition owns a tick, and how ticks that arrived on another partition get there.

A symbol's state (open bars, indicators, strategies) lives with exactly one partition of
``market.ticks``: the one Kafka's default partitioner gives for key = symbol (murmur2 over the
topic's real partition count). Outside producers partition their own way (librdkafka's
default is ``consistent_random``, CRC32), so a tick may arrive elsewhere. Such a tick is never
applied to the state of the partition it arrived on: it is forwarded to its owner, bytes
unchanged, in a packet whose header ``sharewise-origin`` says where it came from
(``"<partition>:<offset>:<chunk>"``; one origin message may need several chunks to stay under the
message size limit). The owner keeps, per origin partition, the highest :class:`Origin` it has
applied, and drops a forward at or below it: a forward repeated after a crash counts once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from engine.partitioner import partition_for
from engine.ticks import DecodedTicks

ORIGIN_HEADER = "sharewise-origin"


@dataclass(frozen=True, slots=True, order=True)
class Origin:
    """Where a forwarded packet came from: partition and offset of the original message, chunk number."""

    partition: int
    offset: int
    chunk: int = 0

    def encode(self) -> bytes:
        return f"{self.partition}:{self.offset}:{self.chunk}".encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Origin | None:
        """The origin in a header value, or ``None`` when it is not one of ours."""
        try:
            partition, offset, chunk = (int(x) for x in (raw or b"").decode().split(":"))
        except (UnicodeDecodeError, ValueError):
            return None
        return cls(partition, offset, chunk) if min(partition, offset, chunk) >= 0 else None

    @property
    def mark(self) -> tuple[int, int]:
        return self.offset, self.chunk


def origin_of(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Origin | None:
    """The :class:`Origin` among a Kafka message's headers, if it is a forward."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for key, value in items:
        if key == ORIGIN_HEADER:
            return Origin.decode(value)
    return None


@dataclass(slots=True)
class AppliedOrigins:
    """Per origin partition, the highest forwarded chunk applied; part of a partition's checkpoint."""

    marks: dict[int, tuple[int, int]] = field(default_factory=dict)

    def is_new(self, origin: Origin) -> bool:
        return origin.mark > self.marks.get(origin.partition, (-1, -1))

    def applied(self, origin: Origin) -> None:
        if self.is_new(origin):
            self.marks[origin.partition] = origin.mark

    def to_json(self) -> dict[str, list[int]]:
        return {str(p): list(m) for p, m in sorted(self.marks.items())}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> AppliedOrigins:
        return cls({int(p): (int(m[0]), int(m[1])) for p, m in (doc or {}).items()})


@dataclass(slots=True)
class Routed:
    """The verdict on a decoded batch: which ticks are applied here, which are forwarded where.

    ``local`` is a mask over the decoded ticks; ``forwards`` maps (message index, owner
    partition) to the original lines to send there, in order; ``misrouted`` lists the ticks of
    forwarded messages that belong to yet another partition (dead-lettered, never applied).
    """

    local: np.ndarray
    forwards: dict[tuple[int, int], list[bytes]]
    misrouted: list[int]


def route(decoded: DecodedTicks, arrival: np.ndarray, forwarded: np.ndarray, owner: np.ndarray) -> Routed:
    """Split ``decoded`` by owner: ``arrival[m]`` is message m's partition, ``forwarded[m]`` whether
    it is a forward, ``owner[i]`` instrument i's partition."""
    here = arrival[decoded.message] if len(decoded) else np.empty(0, np.int64)
    target = owner[decoded.inst] if len(decoded) else np.empty(0, np.int64)
    local = target == here
    forwards: dict[tuple[int, int], list[bytes]] = {}
    misrouted: list[int] = []
    for k in np.flatnonzero(~local).tolist():
        m = int(decoded.message[k])
        if forwarded[m]:
            misrouted.append(k)
        else:
            forwards.setdefault((m, int(target[k])), []).append(bytes(decoded.lines[m][int(decoded.line[k])]))
    return Routed(local, forwards, misrouted)


def owners(symbols: Iterable[str], partitions: int) -> np.ndarray:
    """Owner partition of each instrument, by index (murmur2 of the symbol over ``partitions``)."""
    return np.array([partition_for(s, partitions) for s in symbols], dtype=np.int64)
