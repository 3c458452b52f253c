"""Feeds that produce to ``market.ticks``: tick packets, one partition per packet.

Every line goes to the partition Kafka's default partitioner gives for key = its symbol
(murmur2), so a symbol's ticks stay in order on one partition whether they come alone or
packed. Lines whose symbol cannot be read (bad JSON) still go somewhere — partition 0 —
because the worker, not the feed, judges them and dead-letters them with a reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import orjson
from aiokafka import AIOKafkaProducer

from engine.domain import Reason
from engine.errors import ConfigError
from engine.messages import DEFAULT_MAX_MESSAGE_BYTES, dead_letter_record, pack_lines
from engine.partitioner import partition_for
from engine.tick_csv import replay_line, tick_rows
from engine.ticks import encode_columnar
from streams.admin import ensure_topics, list_topics
from streams.topics import MARKET_TICKS as TICKS
from streams.topics import MARKET_TICKS_DLQ as DLQ


class PacketProducer:
    """Packs ticks per partition into packets of up to ``max_ticks`` and sends them.

    :meth:`add` takes a tick's JSON line (a newline-delimited packet, bytes kept as they are);
    :meth:`add_tick` takes its fields (a columnar packet, cheaper to decode). A feed uses one
    or the other: the two kinds are buffered apart, so mixing them could reorder a symbol's ticks.

    Packets fill up to ``max_ticks`` when ticks come faster than the caller flushes (a replay);
    Faust's cost per message dominates below that (measured with benchmarks/pipeline.py: 155k
    ticks/s per worker at 100 ticks per packet, 340k at 400). A paced feed flushes on its own
    clock, so at low rates packets stay small and latency does not grow.
    """

    def __init__(self, bootstrap: str, partitions: int, *, max_ticks: int = 500,
                 max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.partitions = partitions
        self.max_ticks = max_ticks
        self.max_bytes = max_bytes
        self.sent_lines = 0
        self.sent_packets = 0
        self.dead_lettered = 0  # lines too large for any message, sent to the DLQ instead
        self._buffers: list[list[bytes]] = [[] for _ in range(partitions)]
        self._sizes = [0] * partitions
        self._columns: list[tuple[list, list, list, list]] = [([], [], [], []) for _ in range(partitions)]
        self._pending: list[asyncio.Future] = []
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=262144,
                                          acks=1, enable_idempotence=False)

    async def __aenter__(self) -> PacketProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def add(self, line: bytes, symbol: str | None) -> None:
        if len(line) > self.max_bytes:
            await self._dead_letter_too_large(line)
            return
        p = partition_for(symbol, self.partitions) if symbol else 0
        buf = self._buffers[p]
        buf.append(line)
        self._sizes[p] += len(line) + 1
        if len(buf) >= self.max_ticks or self._sizes[p] > self.max_bytes:
            await self._send(p)

    async def _dead_letter_too_large(self, line: bytes) -> None:
        """A line no message can hold goes to the DLQ (first bytes, length, sha256), counted, never dropped."""
        detail = f"{len(line)} bytes: larger than a message may be ({self.max_bytes})"
        record = dead_letter_record(str(Reason.TOO_LARGE), detail, line, topic=TICKS, partition=None, offset=None,
                                    line=None, max_bytes=self.max_bytes)
        self._pending.append(await self._producer.send(DLQ, record))
        self.dead_lettered += 1

    async def add_tick(self, symbol: str, time_ms: int, price: float, qty: float) -> None:
        p = partition_for(symbol, self.partitions)
        cols = self._columns[p]
        for col, value in zip(cols, (symbol, time_ms, price, qty)):
            col.append(value)
        if len(cols[0]) >= self.max_ticks:
            await self._send_columns(p)

    async def _send(self, p: int) -> None:
        buf = self._buffers[p]
        if buf:
            self._buffers[p], self._sizes[p] = [], 0
            for packet in pack_lines(buf, self.max_bytes):
                await self._send_packet(p, packet, packet.count(b"\n") + 1)

    async def _send_columns(self, p: int) -> None:
        cols = self._columns[p]
        if cols[0]:
            self._columns[p] = ([], [], [], [])
            await self._send_packet(p, encode_columnar(*cols), len(cols[0]))

    async def _send_packet(self, p: int, value: bytes, ticks: int) -> None:
        self._pending.append(await self._producer.send(TICKS, value, partition=p))
        self.sent_lines += ticks
        self.sent_packets += 1
        if len(self._pending) > 1000:
            await self._settle()

    async def _settle(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def flush(self) -> None:
        """Send every buffered packet and wait until the broker has them all."""
        for p in range(self.partitions):
            await self._send(p)
            await self._send_columns(p)
        await self._settle()


async def tick_partitions(bootstrap: str, default: int) -> int:
    """The real partition count of ``market.ticks``, creating it and its DLQ with ``default`` partitions if absent.

    A feed must partition by the topic's own count: packets built for another count would put
    symbols where their state does not live.
    """
    await ensure_topics(bootstrap, {TICKS: default, DLQ: default})
    return (await list_topics(bootstrap))[TICKS]


def replay_lines(path: Path) -> Iterator[tuple[bytes, str | None]]:
    """(line bytes, symbol or None) for each tick of a CSV (``time,symbol,price,qty``) or JSONL file.

    CSV rows become tick JSON (values that are not numbers stay strings, so the worker rejects
    them with a reason); JSONL lines are passed on byte for byte.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        yield from _jsonl(path)
    else:
        yield from _csv(path)


def _jsonl(path: Path) -> Iterator[tuple[bytes, str | None]]:
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                symbol = doc.get("symbol") if isinstance(doc, dict) else None
            except orjson.JSONDecodeError:
                symbol = None
            yield line, symbol if isinstance(symbol, str) else None


def _csv(path: Path) -> Iterator[tuple[bytes, str | None]]:
    """Rows through the engine's one tick CSV parser (``engine/tick_csv.py``), as tick JSON lines."""
    with path.open(newline="", encoding="utf-8") as fh:
        for row in tick_rows(fh, str(path)):
            yield replay_line(row)


def count_lines(path: Path) -> int:
    """Rough number of ticks in ``path`` (for progress bars)."""
    with path.open("rb") as fh:
        n = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b""))
    return max(n - (0 if path.suffix.lower() in {".jsonl", ".ndjson", ".json"} else 1), 0)
