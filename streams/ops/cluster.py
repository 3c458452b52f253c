"""A read-only probe of a Kafka-protocol cluster: topics, partition ends, consumer groups, lag.

:class:`ClusterProbe` holds one admin client and one group-less consumer for as long as it
is open, so a live view re-reads the cluster cheaply. It never commits, never creates a
topic and never joins a group. Broker quirks handled here (measured on Tansu 0.6; see streams/broker.py):

* high watermarks come from a fetch (:mod:`streams.admin`), not from ListOffsets "latest";
* OffsetFetch for "all partitions" (null topics) breaks the connection, so committed
  offsets are asked for every partition of every topic explicitly (valid on Kafka too);
* DescribeGroups may list no members (always for an idle group; measured on Tansu both with and
  without members for a live one): :attr:`ClusterSnapshot.members` says ``None`` then, shown "n/a";
* DescribeConfigs answers with no entries: reported as such by :meth:`ClusterProbe.configs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from engine.errors import ServiceUnavailable
from engine.ops.snapshot import ClusterSnapshot, PartitionEnds, group_positions, with_ages
from streams.admin import fetch_watermarks, list_topics

#: Kafka's ``config_source`` of a configuration entry nobody set (DescribeConfigs v1+)
_DEFAULT_CONFIG = 5
#: a short long-poll: the probe re-assigns its consumer often and waits for the fetch in flight each time
FETCH_MAX_WAIT_MS = 50
_SETTLE_S = 0.05


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """A topic's configuration as the broker reports it: ``None`` when the broker cannot say."""

    entries: Mapping[str, str] | None
    note: str = ""


class ClusterProbe:
    """``async with ClusterProbe(bootstrap) as probe:`` then :meth:`snapshot` as often as wanted.

    Every method raises :class:`ServiceUnavailable` when the broker cannot be reached or
    does not answer within ``timeout`` seconds.
    """

    def __init__(self, bootstrap: str, *, timeout: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        request_timeout_ms = int(timeout * 1000)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                          auto_offset_reset="earliest", request_timeout_ms=request_timeout_ms,
                                          fetch_max_wait_ms=FETCH_MAX_WAIT_MS)

    async def __aenter__(self) -> ClusterProbe:
        try:
            await self._admin.start()
            await self._consumer.start()
        except KafkaError as exc:
            await self.close()
            raise ServiceUnavailable("Kafka", self.bootstrap, str(exc)) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        # aiokafka 0.14's fetcher swallows a cancel that lands while it settles a reassignment (it awaits
        # its cancelled fetches under suppress(CancelledError); aio-libs/aiokafka#983), and stop() then
        # hangs: let it settle first
        await asyncio.sleep(_SETTLE_S)
        await self._consumer.stop()
        await self._admin.close()

    # --- topics ------------------------------------------------------------------------------

    async def topics(self) -> dict[str, int]:
        """Every non-internal topic -> partition count."""
        return await list_topics(self.bootstrap)

    async def ends(self, topics: Mapping[str, int]) -> dict[str, dict[int, PartitionEnds]]:
        """Earliest offset and high watermark of every partition of ``topics`` (name -> partitions)."""
        out: dict[str, dict[int, PartitionEnds]] = {}
        for topic, n in sorted(topics.items()):
            tps = [TopicPartition(topic, p) for p in range(n)]
            with self._translated(f"partition ends of {topic}"):
                earliest = await self._consumer.beginning_offsets(tps)
                high = await fetch_watermarks(self._consumer, tps, self.bootstrap, time.monotonic() + self.timeout)
            out[topic] = {p: PartitionEnds(earliest[TopicPartition(topic, p)], h) for p, h in high.items()}
        return out

    async def configs(self, topics: list[str]) -> dict[str, TopicConfig]:
        """Each topic's non-default configuration, or why the broker gave none."""
        if not topics:
            return {}
        try:
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
            responses = await self._admin.describe_configs(resources)
        except KafkaError as exc:
            return dict.fromkeys(topics, TopicConfig(None, f"unsupported by broker ({type(exc).__name__})"))
        out = {}
        for response in responses:
            for error, message, _, name, entries in (r[:5] for r in response.resources):
                out[name] = _topic_config(response.API_VERSION, error, message, entries)
        return out

    # --- consumer groups ---------------------------------------------------------------------

    async def groups(self) -> list[str]:
        """Every consumer group the cluster knows, by name."""
        with self._translated("consumer groups"):
            return sorted({row[0] for row in await self._admin.list_consumer_groups()})

    async def committed(self, group: str, topics: Mapping[str, int]) -> dict[str, dict[int, int]]:
        """``group``'s committed offsets: topic -> partition -> offset (partitions without a commit left out)."""
        tps = [TopicPartition(t, p) for t, n in sorted(topics.items()) for p in range(n)]
        if not tps:
            return {}
        with self._translated(f"offsets of group {group}"):
            offsets = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        out: dict[str, dict[int, int]] = {}
        for tp, meta in offsets.items():
            if meta.offset >= 0:
                out.setdefault(tp.topic, {})[tp.partition] = meta.offset
        return out

    async def members(self, group: str) -> int | None:
        """How many members ``group`` has, ``None`` when the broker reports none (Tansu: always)."""
        with self._translated(f"members of group {group}"):
            responses = await self._admin.describe_consumer_groups([group])
        found = [len(row[5]) for response in responses for row in response.groups if row[1] == group]
        return found[0] if found and found[0] else None

    # --- records -----------------------------------------------------------------------------

    async def read(self, topic: str, start: Mapping[int, int], end: Mapping[int, int]
                   ) -> AsyncIterator[list[Any]]:
        """Yield the records of ``topic`` from ``start`` (inclusive) to ``end`` (exclusive) per partition.

        Batches come in fetch order (ordered within a partition). Raises
        :class:`ServiceUnavailable` when no record arrives for ``timeout`` seconds.
        """
        remaining = {TopicPartition(topic, p): end[p] for p, s in start.items() if s < end.get(p, 0)}
        if not remaining:
            return
        self._consumer.assign(list(remaining))
        for tp in remaining:
            self._consumer.seek(tp, start[tp.partition])
        deadline = time.monotonic() + self.timeout
        while remaining:
            with self._translated(f"records of {topic}"):
                got = await self._consumer.getmany(*remaining, timeout_ms=200)
            if not got and time.monotonic() > deadline:
                raise ServiceUnavailable("Kafka", self.bootstrap, f"no records of {topic} in {self.timeout:.0f}s")
            for tp, records in got.items():
                deadline = time.monotonic() + self.timeout
                if batch := [r for r in records if r.offset < remaining.get(tp, 0)]:
                    yield batch
                if tp in remaining and await self._consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]

    async def timestamps(self, wanted: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], int]:
        """(topic, partition, offset) -> timestamp (ms) of the first record at or after that offset.

        Offsets whose record does not arrive within ``timeout`` are left out.
        """
        by_tp: dict[TopicPartition, list[int]] = {}
        for topic, p, offset in sorted(wanted):
            by_tp.setdefault(TopicPartition(topic, p), []).append(offset)
        out: dict[tuple[str, int, int], int] = {}
        while by_tp:  # one offset per partition per round
            round_ = {tp: offsets.pop(0) for tp, offsets in by_tp.items()}
            by_tp = {tp: offsets for tp, offsets in by_tp.items() if offsets}
            out.update(await self._first_timestamps(round_))
        return out

    async def _first_timestamps(self, at: dict[TopicPartition, int]) -> dict[tuple[str, int, int], int]:
        self._consumer.assign(list(at))
        for tp, offset in at.items():
            self._consumer.seek(tp, offset)
        todo, out = dict(at), {}
        deadline = time.monotonic() + self.timeout
        while todo and time.monotonic() < deadline:
            with self._translated("record timestamps"):
                got = await self._consumer.getmany(*todo, timeout_ms=200)
            for tp, records in got.items():
                first = next((r for r in records if tp in todo and r.offset >= todo[tp]), None)
                if first is not None:
                    out[(tp.topic, tp.partition, todo.pop(tp))] = first.timestamp
        return out

    # --- the whole picture -------------------------------------------------------------------

    async def snapshot(self, *, ages: bool = True) -> ClusterSnapshot:
        """Topics, partition ends, every group's positions and members (DLQ counts left empty).

        ``ages`` also reads the record at each lagging committed offset for lag in seconds.
        """
        ends = await self.ends(await self.topics())
        sizes = {t: len(parts) for t, parts in ends.items()}
        groups, members = {}, {}
        for group in await self.groups():
            groups[group] = group_positions(ends, await self.committed(group, sizes))
            members[group] = await self.members(group)
        now = time.time()
        if ages:
            wanted = {(t, p, gp.committed) for by_topic in groups.values() for t, parts in by_topic.items()
                      for p, gp in parts.items() if gp.lag > 0}
            stamps = await self.timestamps(wanted) if wanted else {}
            groups = {g: with_ages(by_topic, stamps, now) for g, by_topic in groups.items()}
        return ClusterSnapshot(now, ends, groups, {}, members)

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except KafkaError as exc:
            raise ServiceUnavailable("Kafka", self.bootstrap, f"{what}: {exc}") from exc


def _topic_config(version: int, error: int, message: str | None, entries: list[tuple[Any, ...]]) -> TopicConfig:
    if error:
        return TopicConfig(None, f"not available: {for_code(error).__name__} {message or ''}".strip())
    if not entries:
        return TopicConfig(None, "unsupported by broker (no configuration reported)")
    defaults = (lambda e: bool(e[3])) if version == 0 else (lambda e: e[3] == _DEFAULT_CONFIG)
    return TopicConfig({e[0]: ("***" if e[4] else str(e[1])) for e in entries if not defaults(e)})
