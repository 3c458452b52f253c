"""Repeated observations of a cluster for ``sharewise monitor``: snapshot, rates, DLQ, workers, status word.

A :class:`Monitor` keeps what the status rules need between observations (the sample
history over the window, the DLQ tally, the previous snapshot for rates) and reconnects
by itself: a broker or database that goes away shows in the next observation and comes
back when they do. The database is optional (heartbeats and checkpoint ages).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Collection

import asyncpg

from db.connect import connect
from db.heartbeats import CheckpointAge, checkpoint_ages, worker_beats
from engine.errors import EngineError, ServiceUnavailable
from engine.ops.dlq import DeadLetterTally, DlqEntry, is_replay_group
from engine.ops.snapshot import ClusterSnapshot, commit_rates, topic_rates
from engine.ops.status import History, SavedOffset, Verdict, WorkerBeat, broker_down, evaluate, log_findings
from streams.admin import cluster_id
from streams.ops.cluster import ClusterProbe
from streams.ops.dlq import update_tally
from streams.topics import MARKET_TICKS_DLQ


@dataclass(frozen=True, slots=True)
class Observation:
    """One refresh of the monitor. ``snapshot`` is ``None`` when the broker could not be read.

    ``database`` is empty when heartbeats were read, else why not.
    """

    snapshot: ClusterSnapshot | None
    verdict: Verdict
    topic_rates: dict[str, float] = field(default_factory=dict)
    commit_rates: dict[tuple[str, str], float] = field(default_factory=dict)
    dlq_latest: list[DlqEntry] = field(default_factory=list)
    beats: list[WorkerBeat] = field(default_factory=list)
    checkpoints: list[CheckpointAge] = field(default_factory=list)
    database: str = ""


class Monitor:
    """``async with Monitor(bootstrap, dsn) as m:`` then ``await m.observe()`` every interval.

    ``groups`` limits the status rules to those consumer groups (default: every group but
    the DLQ replay bookmarks); ``window`` is the rules' evaluation window in seconds;
    ``ages=False`` skips reading records for lag in seconds.
    """

    def __init__(self, bootstrap: str, dsn: str | None = None, *, window: float = 10.0,
                 groups: Collection[str] | None = None, ages: bool = True, examples: int = 5) -> None:
        self.bootstrap = bootstrap
        self.dsn = dsn
        self.groups = set(groups) if groups else None
        self.ages = ages
        self.history = History(window)
        self.tally = DeadLetterTally(examples)
        self._probe: ClusterProbe | None = None
        self._conn: Any = None
        self._last: ClusterSnapshot | None = None
        self._cluster: str | None = None

    async def __aenter__(self) -> Monitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._drop_probe()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def observe(self) -> Observation:
        """Read the cluster (and database) once and judge it; never raises for an unreachable service."""
        try:
            snapshot = await self._snapshot()
        except ServiceUnavailable as exc:
            await self._drop_probe()
            return Observation(None, broker_down(self.bootstrap, str(exc)))
        self.history.add(snapshot)
        beats, checkpoints, database = await self._bookkeeping()
        verdict = evaluate(snapshot, self.history, groups=self._watched(snapshot), beats=beats)
        if checkpoints:
            saved = [SavedOffset(c.group, c.topic, c.partition, c.next_offset, c.cluster_id) for c in checkpoints]
            highs = {t: {p: e.high for p, e in parts.items()} for t, parts in snapshot.topics.items()}
            verdict = Verdict.of([*verdict.findings, *log_findings(saved, await self._cluster_id(), highs)])
        previous, self._last = self._last, snapshot
        return Observation(
            snapshot, verdict,
            topic_rates(previous, snapshot) if previous else {},
            commit_rates(previous, snapshot) if previous else {},
            list(self.tally.latest), beats, checkpoints, database,
        )  # fmt: skip

    async def _snapshot(self) -> ClusterSnapshot:
        if self._probe is None:
            self._probe = await ClusterProbe(self.bootstrap).__aenter__()
        snapshot = await self._probe.snapshot(ages=self.ages)
        await update_tally(self._probe, self.tally, snapshot.topics.get(MARKET_TICKS_DLQ, {}))
        return dataclasses.replace(snapshot, dlq=dict(sorted(self.tally.counts.items())))

    async def _cluster_id(self) -> str:
        if self._cluster is None:
            try:
                self._cluster = await cluster_id(self.bootstrap)
            except ServiceUnavailable:
                return ""
        return self._cluster

    def _watched(self, snapshot: ClusterSnapshot) -> set[str]:
        if self.groups is not None:
            return self.groups
        return {g for g in snapshot.groups if not is_replay_group(g)}

    async def _bookkeeping(self) -> tuple[list[WorkerBeat], list[CheckpointAge], str]:
        if self.dsn is None:
            return [], [], "no database configured or running"
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await connect(self.dsn)
            return await worker_beats(self._conn), await checkpoint_ages(self._conn), ""
        except (EngineError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._conn = None
            return [], [], str(exc)

    async def _drop_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            await probe.close()
