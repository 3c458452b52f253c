"""Topic administration on any Kafka-protocol broker: create the engine's topics, list them, read their ends.

Every call opens its own short-lived client and closes it, so a caller needs no lifecycle;
a broker that cannot be reached raises ``ServiceUnavailable("Kafka", bootstrap, detail)``.

High watermarks come from a FETCH response, never from ListOffsets "latest": on Tansu 0.6
ListOffsets returns the first offset of the partition's last batch + 1 (measured: 4 single
records then one batch of 5 gave 5, the fetch high watermark 9). On Apache Kafka both agree.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.metadata import MetadataRequest

from engine.errors import ConfigError, ServiceUnavailable, TransientError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 10_000
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        raise ServiceUnavailable("Kafka", bootstrap, str(exc)) from exc
    try:
        yield admin
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> dict[str, int]:
    """Every non-internal topic (name -> partition count). Names starting ``__`` are internal."""
    async with _admin(bootstrap) as admin:
        described = await admin.describe_topics()  # all topics; never auto-creates one
    return {
        t["topic"]: len(t["partitions"])
        for t in described
        if not t.get("is_internal") and not t["topic"].startswith("__")
    }


async def ensure_topics(bootstrap: str, topics: dict[str, int], *, replication_factor: int = 1) -> list[str]:
    """Create the topics of ``topics`` (name -> partitions) that do not exist yet; return those created.

    Idempotent: existing topics are left alone (a different partition count there is logged,
    not changed), and a topic created concurrently by someone else counts as existing.
    Raises :class:`ConfigError` for a name or partition count Kafka does not allow (checked
    here: Tansu accepts anything) or a request the broker rejects, and :class:`TransientError`
    for a retriable broker error.
    """
    for name, partitions in topics.items():
        _check_topic(name, partitions)
    existing = await list_topics(bootstrap)
    for name, partitions in topics.items():
        if name in existing and existing[name] != partitions:
            log.warning("topic %s has %d partitions, not %d: left as it is", name, existing[name], partitions)
    missing = [NewTopic(name, n, replication_factor) for name, n in topics.items() if name not in existing]
    if not missing:
        return []
    async with _admin(bootstrap) as admin:
        response = await admin.create_topics(missing)
    created = []
    for name, code, message in _topic_results(response):
        error = for_code(code)
        if code == 0:
            created.append(name)
        elif error is not TopicAlreadyExistsError:
            detail = f"cannot create topic {name}: {error.__name__}: {message or error.description}"
            raise (TransientError if error.retriable else ConfigError)(detail)
    return created


def _check_topic(name: str, partitions: int) -> None:
    """Kafka's own rules for a new topic: legal characters, at most 249 of them, one partition or more."""
    if not _TOPIC_NAME.fullmatch(name) or name in {".", ".."}:
        raise ConfigError(f"illegal Kafka topic name {name!r}: use 1-249 of [a-zA-Z0-9._-]")
    if partitions < 1:
        raise ConfigError(f"topic {name} needs at least one partition, got {partitions}")


def _topic_results(response: object) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of a CreateTopics response of any version."""
    rows = response.topic_errors  # type: ignore[attr-defined]
    return [(row[0], row[1], row[2] if len(row) > 2 else None) for row in rows]


async def high_watermarks(bootstrap: str, topic: str, *, timeout: float = 10) -> dict[int, int]:
    """Partition -> high watermark (the offset the next record will get) of ``topic``.

    A topic that does not exist has no partitions (``{}``); it is never auto-created.
    Reads each non-empty partition's last batch once, so the cost does not grow with the
    topic. Raises :class:`ServiceUnavailable` when no fetch answer arrives within ``timeout``.
    """
    partitions = (await list_topics(bootstrap)).get(topic, 0)
    if not partitions:
        return {}
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await consumer.start()
        return await fetch_watermarks(consumer, tps, bootstrap, time.monotonic() + timeout)
    except KafkaError as exc:
        raise ServiceUnavailable("Kafka", bootstrap, f"high watermarks of {topic}: {exc}") from exc
    finally:
        await consumer.stop()


async def fetch_watermarks(consumer: AIOKafkaConsumer, tps: list[TopicPartition], bootstrap: str,
                           deadline: float) -> dict[int, int]:
    """Fetch from just below ListOffsets "latest" and read the high watermark of the response.

    ListOffsets "latest" L is at most the high watermark on both brokers. L equal to the log
    start means an empty partition (Tansu answers an empty fetch with no partition at all, so
    its high watermark could not be read). Otherwise offset L-1 holds a record, in the last
    batch, and a fetch there reports the true high watermark.
    """
    first = await consumer.beginning_offsets(tps)
    latest = await consumer.end_offsets(tps)
    marks = {tp.partition: latest[tp] for tp in tps if latest[tp] <= first[tp]}
    todo = [tp for tp in tps if tp.partition not in marks]
    consumer.assign(todo)
    for tp in todo:
        consumer.seek(tp, latest[tp] - 1)
    while any(consumer.highwater(tp) is None for tp in todo):
        if time.monotonic() > deadline:
            raise ServiceUnavailable("Kafka", bootstrap, f"no fetch answer for {todo[0].topic} in time")
        await consumer.getmany(*todo, timeout_ms=100)
    marks.update({tp.partition: consumer.highwater(tp) for tp in todo})
    return dict(sorted(marks.items()))



async def cluster_id(bootstrap: str) -> str:
    """The cluster id the broker reports in Metadata (v2 and later): which log the offsets belong to.

    The embedded broker gets a fresh id at every start (its log lives in memory), so offsets
    saved under another id mean nothing there. A broker too old to report one gives ``""``.
    Raises :class:`ServiceUnavailable` when the broker cannot be reached.
    """
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await client.bootstrap()
        response = await client.send(client.get_random_node(), MetadataRequest(topics=[]))
    except KafkaError as exc:
        raise ServiceUnavailable("Kafka", bootstrap, f"metadata: {exc}") from exc
    finally:
        await client.close()
    return str(getattr(response, "cluster_id", None) or "")
