"""How long a consumer-group join takes on the embedded Tansu broker, per session timeout.

Run: ``python benchmarks/broker_group_join.py [--sessions 10000,2000]``. For each session
timeout it starts one aiokafka consumer in a fresh group and times ``start()`` to the first
assignment ("first join"), stops it, and times a second consumer joining the same group
("rejoin"). Measured figures are kept in ``streams/broker.py``'s docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from streams.admin import ensure_topics
from streams.broker import EmbeddedBroker

TOPIC = "join.bench"


async def join_seconds(bootstrap: str, group: str, session_ms: int, heartbeat_ms: int) -> float:
    """Seconds from ``start()`` to the first non-empty assignment of a new consumer in ``group``."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group,
                                session_timeout_ms=session_ms, heartbeat_interval_ms=heartbeat_ms)
    started = time.perf_counter()
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=50)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def measure(bootstrap: str, sessions: list[int]) -> None:
    await ensure_topics(bootstrap, {TOPIC: 4})
    print(f"{'session ms':>10} {'heartbeat ms':>12} {'first join s':>12} {'rejoin s':>9}")
    for session_ms in sessions:
        heartbeat_ms = max(session_ms // 10, 100)
        group = f"bench-{uuid.uuid4().hex[:8]}"
        first = await join_seconds(bootstrap, group, session_ms, heartbeat_ms)
        again = await join_seconds(bootstrap, group, session_ms, heartbeat_ms)
        print(f"{session_ms:>10} {heartbeat_ms:>12} {first:>12.2f} {again:>9.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10000,6000,2000", help="session timeouts in ms, comma-separated")
    args = parser.parse_args()
    sessions = [int(s) for s in args.sessions.split(",")]
    with tempfile.TemporaryDirectory() as logs, EmbeddedBroker.start(Path(logs)) as broker:
        asyncio.run(measure(broker.bootstrap, sessions))


if __name__ == "__main__":
    main()
