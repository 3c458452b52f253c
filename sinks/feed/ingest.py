"""Kafka -> history -> clients: the feed server's reader of ``signals``, ``orders``, ``notifications``, ``market.bars``.

Every feed server is its own reader (no consumer group: it assigns itself every
partition), so several servers all fan out. It starts at the positions saved in
``engine.feed_offset`` (all messages before them already have their seq), or at the
beginning of a partition it has never read — or whose saved position belongs to another log
(another cluster id, or beyond the partition's end: the embedded in-memory broker restarted). Per batch it assigns seqs (or finds the
ones another server assigned), saves the new positions in the same transaction, and
only then dispatches, so a client never sees a seq the database does not hold.

Personal channels are dispatched in the order of the batch: all messages of one user
and channel come from one partition (keyed by user_id), so every server sees them in
the same order and their seqs rise. Bars of different partitions share one sequence, so
bars are dispatched by reading that sequence back from the database in seq order.

Unusable messages (e.g. a signal of no user) are counted and skipped (``stats["bad"]``,
``stats["bad.<reason>"]``; the first of each reason is logged), never fatal. A database
outage stalls the reader (with backoff) without losing the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Mapping

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.errors import BadData
from sinks.feed import history
from sinks.feed.connection import wire
from sinks.feed.fanout import Router
from sinks.feed.history import HistoryGone, Sequenced
from sinks.feed.records import CHANNEL_TOPICS, MARKET_USER, FeedRecord, decode_bars, decode_personal, message_frame
from db.connect import RETRYABLE
from streams.admin import cluster_id, high_watermarks

log = logging.getLogger("sharewise.feed")

FETCH_MAX_WAIT_MS = 20  # an idle long-poll bounds the latency of the next message
MAX_RECORDS = 2000
BARS_PAGE = 2000
MAX_BACKOFF_S = 5.0


class FeedIngest:
    """Reads the feed topics and dispatches to the router. Run :meth:`run` as a task; cancel to stop."""

    def __init__(self, pool: asyncpg.Pool, bootstrap: str, router: Router,
                 topics: Mapping[str, str] = CHANNEL_TOPICS) -> None:
        self._pool = pool
        self._bootstrap = bootstrap
        self._router = router
        self._channels = {topic: channel for channel, topic in topics.items()}
        self._bar_seq = 0
        self._cluster_id = ""
        self.stats: Counter[str] = Counter()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Assign, seek, then read forever. Sets :attr:`ready` once positioned."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            await self._position(consumer)
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
                if batch:
                    await self._handle(batch)
        finally:
            await consumer.stop()

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        topics = list(self._channels)
        await consumer.topics()  # loads cluster metadata
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        self._cluster_id = await cluster_id(self._bootstrap)
        async with self._pool.acquire() as conn:
            everywhere = await history.load_offsets(conn, topics)
            saved = await history.load_offsets(conn, topics, self._cluster_id)
            self._bar_seq = await history.latest_seq(conn, MARKET_USER, "bars")
        ends = {(t, p): mark for t in topics for p, mark in (await high_watermarks(self._bootstrap, t)).items()}
        for tp in partitions:
            offset = saved.get((tp.topic, tp.partition))
            if offset is None and (tp.topic, tp.partition) in everywhere:
                log.warning("%s[%d]: the saved position belongs to another log (the broker's cluster id changed):"
                            " reading it from the start", tp.topic, tp.partition)
            if offset is not None and offset > ends.get((tp.topic, tp.partition), 0):
                # the topic is younger than our position (an in-memory broker restarted): read it all;
                # ids make the re-read harmless. (Tansu does not answer OFFSET_OUT_OF_RANGE here.)
                log.warning("%s[%d] ends before the saved position %d: reading it from the start",
                            tp.topic, tp.partition, offset)
                offset = None
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        log.info("feed reader assigned %d partitions of %s", len(partitions), ", ".join(topics))

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        records: list[FeedRecord] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, messages in batch.items():
            channel = self._channels[tp.topic]
            for message in messages:
                records.extend(self._decode(channel, message.key, message.value))
            offsets[(tp.topic, tp.partition)] = messages[-1].offset + 1
        sequenced = await self._append(records, offsets)
        self.stats["messages"] += len(sequenced)
        self.stats["fresh"] += sum(s.fresh for s in sequenced)
        for item in sequenced:
            record = item.record
            if record.channel != "bars":
                frame = wire(message_frame(record.channel, item.seq, record.payload))
                self._router.dispatch(record.user_id, record.channel, item.seq, record.symbol, frame)
        if any(r.channel == "bars" for r in records):
            await self._dispatch_bars()

    def _decode(self, channel: str, key: bytes | None, value: bytes | None) -> list[FeedRecord]:
        try:
            if value is None:
                raise BadData("empty", f"{channel} message without a value")
            if channel == "bars":
                records, bad = decode_bars(value)
            else:
                records, bad = [decode_personal(channel, key, value)], []
        except BadData as exc:
            records, bad = [], [exc]
        for exc in bad:
            self.stats["bad"] += 1
            self.stats[f"bad.{exc.reason}"] += 1
            first = self.stats[f"bad.{exc.reason}"] == 1  # warn once per reason; the counts are in stats
            log.log(logging.WARNING if first else logging.DEBUG, "skipped a %s message: %s", channel, exc)
        return records

    async def _append(self, records: list[FeedRecord], offsets: dict[tuple[str, int], int]) -> list[Sequenced]:
        """history.append, retried with capped backoff while the database is unreachable."""
        delay, failing = 0.1, False
        while True:
            try:
                async with self._pool.acquire() as conn:
                    result = await history.append(conn, records, offsets, self._cluster_id)
            except RETRYABLE as exc:
                if not failing:
                    log.warning("feed history unavailable, retrying: %s", type(exc).__name__)
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if failing:
                log.warning("feed history available again")
            return result

    async def _dispatch_bars(self) -> None:
        """Dispatch every bar after the last one dispatched, in seq order, from the database."""
        while True:
            async with self._pool.acquire() as conn:
                try:
                    page = await history.read_after(conn, MARKET_USER, "bars", self._bar_seq, None, BARS_PAGE)
                except HistoryGone:
                    latest = await history.latest_seq(conn, MARKET_USER, "bars")
                    log.warning("bars %d..%d were pruned before this server sent them", self._bar_seq + 1, latest)
                    self._bar_seq = latest
                    return
            for seq, symbol, payload in page.rows:
                self._router.dispatch(MARKET_USER, "bars", seq, symbol, wire(message_frame("bars", seq, payload)))
                self._bar_seq = seq
            if len(page.rows) < BARS_PAGE:
                return

