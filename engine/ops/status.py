"""The one status word of ``sharewise monitor`` and its reasons, by Burrow-like rules.

Severity, worst wins: ``OK`` < ``WARN`` < ``STALL`` < ``ERR``.

Per consumer group partition, over the evaluation window (samples at least ``window``
seconds apart at both ends; with less history no trend rule fires):

* lag is zero now -> ``OK``;
* lag stayed above zero and the committed offset did not move -> ``STALL``;
* the committed offset moved but the lag never shrank and ended higher -> ``WARN``;
* otherwise ``OK``.

Outside the groups: the broker cannot be read -> ``ERR``; a group whose workers report
heartbeats has none fresher than ``worker_timeout`` while its lag is above zero -> ``ERR``
(the work waits and nobody reports on it); a checkpoint that belongs to another log (another
cluster id, or an offset beyond the partition's high watermark: the embedded broker restarted
empty) -> ``WARN`` with the reason, until the worker's next checkpoint replaces it.
"""

from __future__ import annotations

import enum
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping, Sequence

from engine.ops.snapshot import ClusterSnapshot

#: seconds without a heartbeat after which a worker counts as gone
WORKER_TIMEOUT = 10.0


class Status(enum.IntEnum):
    """Status words ordered by severity."""

    OK = 0
    WARN = 1
    STALL = 2
    ERR = 3

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Finding:
    """Why the status is not OK: ``subject`` names the component, ``detail`` says what was seen."""

    status: Status
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    findings: tuple[Finding, ...] = ()

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> Verdict:
        found = tuple(sorted(findings, key=lambda f: (-f.status, f.subject)))
        return cls(max((f.status for f in found), default=Status.OK), found)


@dataclass(frozen=True, slots=True)
class Sample:
    """A group partition at one moment: when, its committed offset, its lag in messages."""

    at: float
    committed: int
    lag: int


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """A worker's last heartbeat: ``age`` seconds ago, its partitions and the stats it reported then."""

    worker_id: str
    group: str
    age: float
    partitions: tuple[int, ...] = ()
    stats: Mapping[str, Any] = field(default_factory=dict)


def partition_trend(samples: Sequence[Sample], window: float) -> Finding | None:
    """Burrow's rules on one partition's samples (oldest first); ``None`` means OK.

    The returned finding has an empty subject: the caller names the partition.
    """
    first, last = samples[0], samples[-1]
    span = last.at - first.at
    if last.lag == 0 or len(samples) < 2 or span < window:
        return None
    if first.committed == last.committed and all(s.lag > 0 for s in samples):
        return Finding(Status.STALL, "", f"lag {last.lag}, no commit for {span:.1f}s")
    lags = [s.lag for s in samples]
    if last.lag > first.lag and all(b >= a for a, b in zip(lags, lags[1:])):
        return Finding(Status.WARN, "", f"lag grew from {first.lag} to {last.lag} in {span:.1f}s")
    return None


class History:
    """Rolling samples of every group partition, enough to cover ``window`` seconds.

    Feed it snapshots in time order with :meth:`add`; it keeps, per partition, the newest
    sample at least ``window`` old plus every later one. Partitions absent from the latest
    snapshot (group or topic deleted) are forgotten.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: dict[tuple[str, str, int], deque[Sample]] = defaultdict(deque)

    def add(self, snapshot: ClusterSnapshot) -> None:
        seen = set()
        for group, by_topic in snapshot.groups.items():
            for topic, parts in by_topic.items():
                for p, gp in parts.items():
                    key = (group, topic, p)
                    seen.add(key)
                    self._append(self._samples[key], Sample(snapshot.taken_at, gp.committed, gp.lag))
        for key in set(self._samples) - seen:
            del self._samples[key]

    def _append(self, samples: deque[Sample], sample: Sample) -> None:
        samples.append(sample)
        horizon = sample.at - self.window
        while len(samples) >= 2 and samples[1].at <= horizon:
            samples.popleft()

    def findings(self, groups: Collection[str] | None = None) -> list[Finding]:
        """Trend findings of the partitions of ``groups`` (all groups when ``None``)."""
        found = []
        for (group, topic, p), samples in sorted(self._samples.items()):
            if groups is not None and group not in groups:
                continue
            if (f := partition_trend(samples, self.window)) is not None:
                found.append(Finding(f.status, f"group {group} {topic}[{p}]", f.detail))
        return found


def worker_findings(beats: Sequence[WorkerBeat], lag_by_group: Mapping[str, int],
                    timeout: float = WORKER_TIMEOUT) -> list[Finding]:
    """``ERR`` for each group whose freshest heartbeat is older than ``timeout`` while it lags."""
    freshest: dict[str, float] = {}
    for beat in beats:
        freshest[beat.group] = min(beat.age, freshest.get(beat.group, beat.age))
    return [Finding(Status.ERR, f"workers of {group}", f"last heartbeat {age:.0f}s ago while {lag_by_group[group]} "
                                                       "messages wait")
            for group, age in sorted(freshest.items()) if age > timeout and lag_by_group.get(group, 0) > 0]


def evaluate(snapshot: ClusterSnapshot, history: History, *, groups: Collection[str] | None = None,
             beats: Sequence[WorkerBeat] = (), worker_timeout: float = WORKER_TIMEOUT) -> Verdict:
    """The verdict on ``snapshot`` (already added to ``history``) for the watched ``groups``."""
    watched = set(snapshot.groups) if groups is None else set(groups)
    lag = {g: snapshot.group_lag(g) for g in watched}
    return Verdict.of(history.findings(watched) + worker_findings(
        [b for b in beats if b.group in watched], lag, worker_timeout))


@dataclass(frozen=True, slots=True)
class SavedOffset:
    """A checkpoint's position: which group and partition, its next offset, and the log it was taken in."""

    group: str
    topic: str
    partition: int
    next_offset: int
    cluster_id: str


def log_findings(saved: Iterable[SavedOffset], cluster_id: str, highs: Mapping[str, Mapping[int, int]]) -> list[Finding]:
    """``WARN`` for each checkpoint whose offsets mean nothing in the current log (see the module doc)."""
    found = []
    for s in saved:
        high = highs.get(s.topic, {}).get(s.partition, 0)
        if s.cluster_id and cluster_id and s.cluster_id != cluster_id:
            why = f"belongs to another log (cluster {s.cluster_id}, the broker's is {cluster_id})"
        elif s.next_offset > high:
            why = f"offset {s.next_offset} lies beyond the high watermark {high}"
        else:
            continue
        found.append(Finding(Status.WARN, f"checkpoint {s.group} {s.topic}[{s.partition}]",
                             f"{why}: the partition resumes from the log's start, state kept, until its next checkpoint"))
    return found


def broker_down(where: str, detail: str) -> Verdict:
    """The verdict when the cluster itself cannot be read."""
    return Verdict.of([Finding(Status.ERR, "broker", f"{where}: {detail}")])


def workers_state(beats: Sequence[WorkerBeat], lag_by_group: Mapping[str, int],
                  timeout: float = WORKER_TIMEOUT) -> tuple[bool, str]:
    """(up?, one line) for ``sharewise status``: down when no worker ever reported, or a group's
    workers are silent while it lags; a silent group with nothing waiting is idle, not down."""
    if not beats:
        return False, "no worker has reported a heartbeat"
    if silent := worker_findings(beats, lag_by_group, timeout):
        return False, "; ".join(f"{f.subject}: {f.detail}" for f in silent)
    fresh = [b for b in beats if b.age <= timeout]
    if not fresh:
        return True, f"idle: last heartbeat {min(b.age for b in beats):.0f}s ago, nothing waiting"
    groups = ", ".join(sorted({b.group for b in fresh}))
    return True, f"{len(fresh)} alive ({groups}), freshest heartbeat {min(b.age for b in fresh):.1f}s ago"
