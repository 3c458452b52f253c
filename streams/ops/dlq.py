"""The dead-letter topic ``market.ticks.dlq``: counts, the newest records, and replay to ``market.ticks``.

Replay sends each chosen record's original bytes back to ``market.ticks`` the way the feed
does (:class:`streams.feed.PacketProducer`: packed per partition, partition by symbol with
Kafka's murmur2, unreadable lines to partition 0), waits until the broker has them, and
only then moves the replay marks (consumer group offsets, :mod:`engine.ops.dlq`). So a
crash in between replays those records again on the next run, which the engine absorbs
(deterministic ids, idempotent sinks); a finished replay is never repeated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from engine.errors import ConfigError, ServiceUnavailable
from engine.ops.dlq import (
    DeadLetterTally, DlqEntry, is_replay_group, newest, replay_group, replay_start, replayed_before,
)
from engine.ops.snapshot import PartitionEnds
from streams.feed import PacketProducer
from streams.ops.cluster import ClusterProbe
from streams.topics import MARKET_TICKS, MARKET_TICKS_DLQ

Ends = Mapping[int, PartitionEnds]


async def entries(probe: ClusterProbe, start: Mapping[int, int],
                  end: Mapping[int, int]) -> AsyncIterator[list[DlqEntry]]:
    """DLQ entries from ``start`` to ``end`` (exclusive) per partition, batch by batch."""
    async for batch in probe.read(MARKET_TICKS_DLQ, start, end):
        yield [DlqEntry.read(r.partition, r.offset, r.timestamp, r.value) for r in batch]


async def dlq_ends(probe: ClusterProbe) -> Ends:
    """Partition ends of the DLQ topic (empty when it does not exist)."""
    sizes = await probe.topics()
    if MARKET_TICKS_DLQ not in sizes:
        return {}
    return (await probe.ends({MARKET_TICKS_DLQ: sizes[MARKET_TICKS_DLQ]}))[MARKET_TICKS_DLQ]


async def update_tally(probe: ClusterProbe, tally: DeadLetterTally, ends: Ends) -> None:
    """Feed ``tally`` the records written since its last update, up to ``ends``."""
    start = {p: max(tally.positions.get(p, 0), e.earliest) for p, e in ends.items()}
    async for batch in entries(probe, start, {p: e.high for p, e in ends.items()}):
        tally.add(batch)


async def show(probe: ClusterProbe, *, reason: str | None = None, n: int = 20) -> list[DlqEntry]:
    """The ``n`` newest DLQ entries (of ``reason`` only, when given), oldest first."""
    ends = await dlq_ends(probe)
    # without a reason filter the newest n of the topic are among the last n of each partition
    start = {p: e.earliest if reason else max(e.earliest, e.high - n) for p, e in ends.items()}
    found: list[DlqEntry] = []
    async for batch in entries(probe, start, {p: e.high for p, e in ends.items()}):
        found = newest(found + [e for e in batch if reason is None or e.reason == reason], n)
    return found


@dataclass(slots=True)
class ReplayReport:
    """What a replay did: records sent by reason, and records it left alone and why."""

    sent: Counter = field(default_factory=Counter)
    already_replayed: int = 0
    other_reason: int = 0
    unreadable: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"sent": sum(self.sent.values()), "sent_by_reason": dict(sorted(self.sent.items())),
                "already_replayed": self.already_replayed, "other_reason": self.other_reason,
                "unreadable": self.unreadable}


async def replay(probe: ClusterProbe, *, reason: str | None = None) -> ReplayReport:
    """Send the dead letters not replayed yet (of ``reason`` only, when given) back to ``market.ticks``."""
    sizes = await probe.topics()
    if MARKET_TICKS not in sizes:
        raise ConfigError(f"topic {MARKET_TICKS} does not exist on {probe.bootstrap}: nothing to replay into")
    ends = await dlq_ends(probe)
    marks = await _replay_marks(probe)
    start = {p: max(e.earliest, replay_start(p, reason, marks)) for p, e in ends.items()}
    report = ReplayReport()
    async with PacketProducer(probe.bootstrap, sizes[MARKET_TICKS]) as producer:
        async for batch in entries(probe, start, {p: e.high for p, e in ends.items()}):
            for entry in batch:
                if _choose(entry, reason, marks, report):
                    assert entry.letter is not None
                    await producer.add(entry.letter.original, entry.letter.symbol())
                    report.sent[entry.reason] += 1
    await _commit(probe.bootstrap, replay_group(reason), {p: e.high for p, e in ends.items() if e.high > start[p]})
    return report


def _choose(entry: DlqEntry, reason: str | None, marks: Mapping[str, Mapping[int, int]], report: ReplayReport) -> bool:
    if entry.letter is None:
        report.unreadable += 1
    elif reason is not None and entry.reason != reason:
        report.other_reason += 1
    elif replayed_before(entry.partition, entry.offset, entry.reason, marks):
        report.already_replayed += 1
    else:
        return True
    return False


async def _replay_marks(probe: ClusterProbe) -> dict[str, dict[int, int]]:
    """Replay group -> DLQ partition -> committed offset, for every replay group on the cluster."""
    sizes = await probe.topics()
    dlq = {MARKET_TICKS_DLQ: sizes.get(MARKET_TICKS_DLQ, 0)}
    marks = {}
    for group in await probe.groups():
        if is_replay_group(group):
            marks[group] = (await probe.committed(group, dlq)).get(MARKET_TICKS_DLQ, {})
    return marks


async def _commit(bootstrap: str, group: str, offsets: Mapping[int, int]) -> None:
    """Commit ``offsets`` on the DLQ topic for ``group`` without joining it (manual assignment)."""
    if not offsets:
        return
    tps = {TopicPartition(MARKET_TICKS_DLQ, p): o for p, o in offsets.items()}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign(list(tps))
    try:
        await consumer.start()
        await consumer.commit(tps)
    except KafkaError as exc:
        raise ServiceUnavailable("Kafka", bootstrap, f"cannot record the replay in group {group}: {exc}") from exc
    finally:
        await consumer.stop()
