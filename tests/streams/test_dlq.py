"""``sharewise dlq show|replay`` on the real broker: the newest dead letters, and a replay that happens once.

Each test has its own broker: the engine's topic names are fixed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.partitioner import partition_for
from streams.admin import ensure_topics
from streams.ops.cluster import ClusterProbe
from streams.ops.dlq import dlq_ends, replay, show
from streams.topics import MARKET_TICKS, MARKET_TICKS_DLQ

PARTITIONS = 4
NON_UTF8 = b'\xff{"symbol": "TCS"}'

#: (reason, original line) as the worker dead-letters them
LETTERS = [
    ("unknown_symbol", b'{"symbol":"NEWCO","time":1767584700000,"price":101.5,"qty":3}'),
    ("bad_price", b'{"symbol":"TCS","time":1767584700000,"price":-1,"qty":1}'),
    ("unknown_symbol", b'{"symbol":"OTHERCO","time":1767584701000,"price":55.0,"qty":1}'),
    ("bad_json", b'{"symbol": "INFY", "time": 17'),
    ("bad_price", NON_UTF8),
]


def _record(reason: str, original: bytes, offset: int) -> bytes:
    doc = {"reason": reason, "detail": f"detail of {reason}", "topic": MARKET_TICKS, "partition": offset % PARTITIONS,
           "offset": offset, "line": 0}
    try:
        doc["original"] = original.decode()
    except UnicodeDecodeError:
        doc["original_b64"] = base64.b64encode(original).decode()
    return orjson.dumps(doc)


async def _dead_letter(bootstrap: str, values: list[bytes], first_ts_ms: int = 1_767_584_700_000) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(MARKET_TICKS_DLQ, value, partition=i % PARTITIONS, timestamp_ms=first_ts_ms + i * 1000)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
def dlq_broker(kafka_broker_factory) -> str:
    """A broker whose DLQ holds :data:`LETTERS` (stamped one second apart, in order) and one unreadable record."""
    bootstrap = kafka_broker_factory().bootstrap
    asyncio.run(ensure_topics(bootstrap, {MARKET_TICKS: PARTITIONS, MARKET_TICKS_DLQ: PARTITIONS}))
    values = [_record(reason, original, i) for i, (reason, original) in enumerate(LETTERS)]
    asyncio.run(_dead_letter(bootstrap, [*values, b"not a dead letter"]))
    return bootstrap


async def _ticks(bootstrap: str) -> list[tuple[int, bytes]]:
    """(partition, line) of every tick on market.ticks (packets split into their lines)."""
    async with ClusterProbe(bootstrap) as probe:
        ends = (await probe.ends({MARKET_TICKS: PARTITIONS}))[MARKET_TICKS]
        lines = []
        async for batch in probe.read(MARKET_TICKS, {p: 0 for p in ends}, {p: e.high for p, e in ends.items()}):
            lines += [(r.partition, line) for r in batch for line in r.value.split(b"\n")]
        return lines


def _expected_partition(original: bytes) -> int:
    try:
        symbol = orjson.loads(original).get("symbol")
    except orjson.JSONDecodeError:
        return 0  # as the feed does with a line whose symbol cannot be read
    return partition_for(symbol, PARTITIONS)


def test_show_gives_the_newest_and_filters_by_reason(dlq_broker):
    async def run():
        async with ClusterProbe(dlq_broker) as probe:
            return await show(probe, n=3), await show(probe, reason="unknown_symbol", n=10), await dlq_ends(probe)

    newest, unknown, ends = asyncio.run(run())
    assert [e.reason for e in newest] == ["bad_json", "bad_price", "dlq_unreadable"]  # oldest first
    assert newest[1].letter.original == NON_UTF8
    assert [e.letter.original for e in unknown] == [LETTERS[0][1], LETTERS[2][1]]
    assert [(e.letter.topic, e.letter.offset) for e in unknown] == [(MARKET_TICKS, 0), (MARKET_TICKS, 2)]
    assert sum(e.high for e in ends.values()) == len(LETTERS) + 1


def test_replay_sends_originals_by_symbol_once_per_record(dlq_broker):
    async def replay_once(reason=None):  # noqa: ANN001, ANN202
        async with ClusterProbe(dlq_broker) as probe:
            return await replay(probe, reason=reason)

    first = asyncio.run(replay_once("unknown_symbol"))
    assert first.sent == Counter(unknown_symbol=2) and first.other_reason == 3 and first.unreadable == 1
    fixed = [original for reason, original in LETTERS if reason == "unknown_symbol"]
    assert sorted(asyncio.run(_ticks(dlq_broker))) == sorted((_expected_partition(o), o) for o in fixed)

    assert sum(asyncio.run(replay_once("unknown_symbol")).sent.values()) == 0
    rest = asyncio.run(replay_once())
    assert rest.sent == Counter(bad_price=2, bad_json=1)
    assert rest.already_replayed == 2 and rest.unreadable == 1
    assert sorted(asyncio.run(_ticks(dlq_broker))) == sorted((_expected_partition(o), o) for _, o in LETTERS)
    assert sum(asyncio.run(replay_once()).sent.values()) == 0

    late = LETTERS[0][1].replace(b"NEWCO", b"LATECO")
    asyncio.run(_dead_letter(dlq_broker, [_record("unknown_symbol", late, 99)], first_ts_ms=1_767_600_000_000))
    again = asyncio.run(replay_once())
    assert again.sent == Counter(unknown_symbol=1) and again.already_replayed == 0
    assert (_expected_partition(late), late) in asyncio.run(_ticks(dlq_broker))


def test_cli_show_and_replay_round_trip(dlq_broker, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env.update(SHAREWISE_HOME=str(tmp_path / "home"), SHAREWISE_KAFKA=f"kafka://{dlq_broker}", COLUMNS="200")
    cli = lambda *args: subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)

    shown = cli("dlq", "show", "--reason", "bad_price", "-n", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    [doc] = orjson.loads(shown.stdout)
    assert doc["reason"] == "bad_price" and base64.b64decode(doc["original_b64"]) == NON_UTF8
    assert (doc["topic"], doc["offset"], doc["dlq_partition"], doc["dlq_offset"]) == (MARKET_TICKS, 4, 0, 1)

    table = cli("dlq", "show")
    assert table.returncode == 0 and "unknown_symbol" in table.stdout and "dlq_unreadable" in table.stdout

    first, second = cli("dlq", "replay", "--json"), cli("dlq", "replay", "--json")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert orjson.loads(first.stdout)["sent"] == len(LETTERS)
    assert orjson.loads(second.stdout)["sent"] == 0
    assert len(asyncio.run(_ticks(dlq_broker))) == len(LETTERS)
