"""One observation of a Kafka cluster: partition ends, consumer group offsets and lag, DLQ counts.

Lag follows kafka-lag-exporter and Burrow: for a group's committed offset ``c`` on a
partition whose high watermark is ``h``, lag is ``h - c`` messages (never negative), and
lag in seconds is the age of the oldest message the group has not consumed yet (the
record at offset ``c``), zero when the lag is zero.

:func:`as_json` gives the ``sharewise monitor --once --json`` contract::

    {"status": "OK", "topics": {topic: {"partitions": {"0": {"high": N}}}},
     "groups": {group: {topic: {"0": {"committed": N, "lag": N, "lag_seconds": S}}}},
     "dlq": {reason: N}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class PartitionEnds:
    """Offsets bounding a partition's log: the first kept record and the next one to be written."""

    earliest: int
    high: int

    @property
    def messages(self) -> int:
        return max(self.high - self.earliest, 0)


@dataclass(frozen=True, slots=True)
class GroupPartition:
    """A consumer group's position on one partition. ``lag_seconds`` is ``None`` when it could not be read."""

    committed: int
    lag: int
    lag_seconds: float | None = None


Topics = Mapping[str, Mapping[int, PartitionEnds]]
Groups = Mapping[str, Mapping[str, Mapping[int, GroupPartition]]]


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """What a cluster looked like at ``taken_at`` (Unix seconds).

    ``members`` maps a group to its member count, or ``None`` when the broker reports none
    (Tansu never reports members, so "no member" cannot be told from "not reported").
    """

    taken_at: float
    topics: Topics
    groups: Groups
    dlq: Mapping[str, int] = field(default_factory=dict)
    members: Mapping[str, int | None] = field(default_factory=dict)

    def group_lag(self, group: str) -> int:
        """Total lag of ``group`` over every partition it has committed on."""
        return sum(gp.lag for parts in self.groups.get(group, {}).values() for gp in parts.values())


def lag_of(high: int, committed: int) -> int:
    """Messages a group at ``committed`` has not consumed on a partition ending at ``high``."""
    return max(high - committed, 0)


def group_positions(topics: Topics, committed: Mapping[str, Mapping[int, int]]) -> dict[str, dict[int, GroupPartition]]:
    """A group's committed offsets joined with partition ends: topic -> partition -> position.

    Partitions of topics that no longer exist, and negative offsets (Kafka's "no commit"),
    are left out. Lag in seconds is not known here (see :func:`with_ages`).
    """
    out: dict[str, dict[int, GroupPartition]] = {}
    for topic, parts in committed.items():
        ends = topics.get(topic)
        if ends is None:
            continue
        for p, offset in sorted(parts.items()):
            if offset >= 0 and p in ends:
                out.setdefault(topic, {})[p] = GroupPartition(offset, lag_of(ends[p].high, offset))
    return out


def with_ages(positions: Mapping[str, Mapping[int, GroupPartition]], oldest_ms: Mapping[tuple[str, int, int], int],
              now: float) -> dict[str, dict[int, GroupPartition]]:
    """``positions`` with ``lag_seconds`` filled in.

    ``oldest_ms`` maps (topic, partition, offset) to the timestamp (ms) of the record at
    that offset. A partition without lag is 0 s behind; one whose record is unknown stays ``None``.
    """
    out: dict[str, dict[int, GroupPartition]] = {}
    for topic, parts in positions.items():
        for p, gp in parts.items():
            ts = oldest_ms.get((topic, p, gp.committed))
            age = 0.0 if gp.lag == 0 else (max(now - ts / 1000.0, 0.0) if ts is not None else None)
            out.setdefault(topic, {})[p] = GroupPartition(gp.committed, gp.lag, age)
    return out


def as_json(snapshot: ClusterSnapshot | None, status: str) -> dict[str, Any]:
    """The ``--once --json`` document; a cluster that could not be read gives empty sections."""
    if snapshot is None:
        return {"status": status, "topics": {}, "groups": {}, "dlq": {}}
    topics = {t: {"partitions": {str(p): {"high": e.high} for p, e in sorted(parts.items())}}
              for t, parts in sorted(snapshot.topics.items())}
    groups = {g: {t: {str(p): _position_json(gp) for p, gp in sorted(parts.items())}
                  for t, parts in sorted(by_topic.items())}
              for g, by_topic in sorted(snapshot.groups.items())}
    return {"status": status, "topics": topics, "groups": groups, "dlq": dict(sorted(snapshot.dlq.items()))}


def _position_json(gp: GroupPartition) -> dict[str, Any]:
    lag_s = None if gp.lag_seconds is None else round(gp.lag_seconds, 3)
    return {"committed": gp.committed, "lag": gp.lag, "lag_seconds": lag_s}


def topic_rates(before: ClusterSnapshot, after: ClusterSnapshot) -> dict[str, float]:
    """Messages per second written to each topic between two snapshots (sum of high watermarks)."""
    dt = after.taken_at - before.taken_at
    if dt <= 0:
        return {}
    return {t: max(sum(e.high for e in parts.values()) - sum(e.high for e in before.topics[t].values()), 0) / dt
            for t, parts in after.topics.items() if t in before.topics}


def commit_rates(before: ClusterSnapshot, after: ClusterSnapshot) -> dict[tuple[str, str], float]:
    """Messages per second each group committed on each topic between two snapshots."""
    dt = after.taken_at - before.taken_at
    if dt <= 0:
        return {}
    out = {}
    for group, by_topic in after.groups.items():
        for topic, parts in by_topic.items():
            was = before.groups.get(group, {}).get(topic, {})
            moved = sum(gp.committed - was[p].committed for p, gp in parts.items() if p in was)
            out[(group, topic)] = max(moved, 0) / dt
    return out
