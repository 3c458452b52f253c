"""The feed never sends a message over ``SHAREWISE_MAX_MESSAGE_BYTES``: packets are split, and a line too
large for any message is dead-lettered (first bytes, length, sha256), counted and never dropped."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess

import orjson
from aiokafka import AIOKafkaConsumer

from tests.streams.support import SHAREWISE, SYMBOLS_20, engine_env, make_session_file

LIMIT = 16_384


async def _read_all(bootstrap: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        records = []
        while batch := await consumer.getmany(timeout_ms=1500):
            records += [r for rs in batch.values() for r in rs]
        return records
    finally:
        await consumer.stop()


def test_feed_replay_splits_packets_and_dead_letters_a_line_too_large(tmp_path, kafka_broker_factory):
    broker = kafka_broker_factory()
    path = tmp_path / "ticks.jsonl"
    lines = make_session_file(path, SYMBOLS_20[:2], sessions=1, ticks=5_000)
    huge = orjson.dumps({"symbol": "TCS", "time": 1767584700000, "price": 10.5, "qty": 1, "note": "x" * 40_000})
    path.write_bytes(path.read_bytes() + huge + b"\n")
    done = subprocess.run([*SHAREWISE, "feed", "replay", str(path)], capture_output=True, text=True, timeout=120,
                          env=engine_env(tmp_path / "home", broker.bootstrap, SHAREWISE_MAX_MESSAGE_BYTES=str(LIMIT)))
    assert done.returncode == 0, done.stderr
    assert f"replayed {lines} ticks" in done.stdout and "1 line(s) too large" in done.stdout

    ticks = asyncio.run(_read_all(broker.bootstrap, "market.ticks"))
    assert all(len(r.value) <= LIMIT for r in ticks)
    assert sum(len(r.value.split(b"\n")) for r in ticks) == lines
    dead = [orjson.loads(r.value) for r in asyncio.run(_read_all(broker.bootstrap, "market.ticks.dlq"))]
    assert len(dead) == 1 and dead[0]["reason"] == "too_large" and dead[0]["truncated"] is True
    assert dead[0]["original_length"] == len(huge) and dead[0]["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(dead[0]["original"].encode())
