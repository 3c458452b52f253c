"""How long a consumer-group join takes on the embedded Tansu broker, per session timeout.

Run: ``python benchmarks/broker_group_join.py [--sessions 10000,2000]``. For each session
timeout it starts one aiokafka consumer in a fresh group and times ``start()`` to the first
assignment ("first join"), stops it, and times a second consumer joining the same group
("rejoin"). Then two consumers join one fresh group together ("split": until both hold
partitions) and one leaves ("takeover": until the other holds all of them). Measured
figures are kept in ``streams/broker.py``'s docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaConsumer

from streams.admin import ensure_topics
from streams.broker import EmbeddedBroker

TOPIC = "join.bench"
PARTITIONS = 8


def new_consumer(bootstrap: str, group: str, session_ms: int) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group,
                            session_timeout_ms=session_ms, heartbeat_interval_ms=max(session_ms // 10, 100))


async def join_seconds(bootstrap: str, group: str, session_ms: int) -> float:
    """Seconds from ``start()`` to the first non-empty assignment of a new consumer in ``group``."""
    consumer = new_consumer(bootstrap, group, session_ms)
    started = time.perf_counter()
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=50)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def split_and_takeover_seconds(bootstrap: str, session_ms: int) -> tuple[float, float]:
    """Seconds until two new members of one group both hold partitions, then until one holds all once the other left."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    a, b = new_consumer(bootstrap, group, session_ms), new_consumer(bootstrap, group, session_ms)
    started = time.perf_counter()
    await asyncio.gather(a.start(), b.start())
    polls = [asyncio.create_task(_poll_forever(c)) for c in (a, b)]
    try:
        await _until(lambda: bool(a.assignment()) and bool(b.assignment()))
        split = time.perf_counter() - started
        polls[0].cancel()
        await a.stop()
        left = time.perf_counter()
        await _until(lambda: len(b.assignment()) == PARTITIONS)
        return split, time.perf_counter() - left
    finally:
        for poll in polls:
            poll.cancel()
        await asyncio.gather(a.stop(), b.stop())


async def _poll_forever(consumer: AIOKafkaConsumer) -> None:
    while True:
        await consumer.getmany(timeout_ms=50)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.02)


async def measure(bootstrap: str, sessions: list[int]) -> None:
    await ensure_topics(bootstrap, {TOPIC: PARTITIONS})
    print(f"{'session ms':>10} {'first join s':>12} {'rejoin s':>9} {'split s':>8} {'takeover s':>10}")
    for session_ms in sessions:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        first = await join_seconds(bootstrap, group, session_ms)
        again = await join_seconds(bootstrap, group, session_ms)
        split, takeover = await split_and_takeover_seconds(bootstrap, session_ms)
        print(f"{session_ms:>10} {first:>12.2f} {again:>9.2f} {split:>8.2f} {takeover:>10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10000,6000,2000", help="session timeouts in ms, comma-separated")
    args = parser.parse_args()
    sessions = [int(s) for s in args.sessions.split(",")]
    with tempfile.TemporaryDirectory() as logs, EmbeddedBroker.start(Path(logs)) as broker:
        asyncio.run(measure(broker.bootstrap, sessions))


if __name__ == "__main__":
    main()
