"""Ticks from an outside producer that partitions its own way: confluent-kafka (librdkafka).

librdkafka's default partitioner is ``consistent_random`` (CRC32 of the key), not Kafka's murmur2,
so most symbols land on a partition whose worker does not own their state. Each such tick must be
forwarded to its owner, applied there once, and never to the state of the partition it arrived on.
The first half of the session comes from the engine's own feed (murmur2 packets), the second from
librdkafka, so a symbol's ticks arrive on two partitions, which two workers split between them.
The bars and signals still equal the offline reference, and ``sharewise_ticks_rerouted_total``
says how many ticks took the detour. (A forward repeated after a crash is applied once:
tests/engine/test_routing.py.)
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import zlib

import orjson
from confluent_kafka import Producer

from db.seed_demo import seed_demo
from engine.partitioner import partition_for
from streams.admin import ensure_topics
from streams.broker import free_port
from streams.topics import engine_topics
from tests.streams.support import (
    SHAREWISE, SYMBOLS_20, database_rows, engine_env, make_session_file, reference_of, wait_for,
)
from tests.streams.test_metrics import scrape

PARTITIONS = 8


def _produce_with_librdkafka(bootstrap: str, path) -> int:  # noqa: ANN001
    """Every line as a single JSON tick keyed by its symbol, librdkafka's default partitioner, in file order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False,
                         "api.version.request": True})
    failures: list[str] = []
    n = 0
    for line in path.read_bytes().splitlines():  # noqa: B007
        symbol = orjson.loads(line)["symbol"]
        while True:
            try:
                producer.produce("market.ticks", value=line, key=symbol.encode(),
                                 on_delivery=lambda err, _msg: err and failures.append(str(err)))
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        producer.poll(0)
        n += 1
    assert producer.flush(60) == 0 and not failures, failures[:3]
    return n


def _worker(env: dict[str, str], port: int, log) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen([*SHAREWISE, "worker", "--checkpoint-interval", "0.5"],
                            env={**env, "SHAREWISE_METRICS_PORT": str(port)}, stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"))


def test_ticks_of_a_librdkafka_producer_are_rerouted_to_their_owner_and_bars_equal_the_reference(
        tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(ensure_topics(broker.bootstrap, engine_topics(PARTITIONS)))
    path = tmp_path / "ticks.jsonl"
    make_session_file(path, SYMBOLS_20[:10], sessions=1, ticks=20_000, seed=9)
    # the premise: librdkafka puts most of these symbols elsewhere than murmur2 does
    crc = {s: zlib.crc32(s.encode()) % PARTITIONS for s in SYMBOLS_20[:10]}
    assert sum(crc[s] != partition_for(s, PARTITIONS) for s in crc) >= 5

    half = len(path.read_bytes().splitlines()) // 2
    lines = path.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[:half]))
    second.write_bytes(b"".join(lines[half:]))

    env = engine_env(tmp_path / "home", broker.bootstrap, pg_dsn)
    ports = free_port(), free_port()
    workers = [_worker(env, port, tmp_path / f"w{k}.log") for k, port in enumerate(ports)]
    try:
        time.sleep(8)  # both joined and split the partitions
        feed = subprocess.run([*SHAREWISE, "feed", "replay", str(first)], env=env, capture_output=True, timeout=120)
        assert feed.returncode == 0, feed.stderr[-2000:]
        sent = _produce_with_librdkafka(broker.bootstrap, second)
        ref = reference_of(path, pg_dsn, flush=False, chunk=200)

        async def converged() -> bool:
            bars, _, _ = await database_rows(pg_dsn)
            return len(bars) >= len(ref.bars)

        if not wait_for(converged, timeout=120):
            bars, _, _ = asyncio.run(database_rows(pg_dsn))
            missing = sorted({(b[1], b[8]) for b in ref.bars - set(bars)})
            seen = subprocess.run([*SHAREWISE, "monitor", "--once", "--json", "--window", "0"], env=env,
                                  capture_output=True, text=True, timeout=60).stdout
            raise AssertionError(f"{len(bars)}/{len(ref.bars)} bars; missing {missing[:12]}\n{seen}\n" + "".join(
                f"{f.name}:\n{f.read_text()[-2500:]}" for f in sorted(tmp_path.glob("w*.log"))))
        time.sleep(1.5)  # anything extra (a tick applied twice, a bar split between workers) would show now
        bars, signals, _ = asyncio.run(database_rows(pg_dsn))
        assert set(bars) == ref.bars and len(bars) == len(ref.bars)
        assert set(signals) == ref.signals
        samples = [scrape(port) for port in ports]
        rerouted = sum(s[("sharewise_ticks_rerouted_total", frozenset())] for s in samples)
        assert rerouted > 0 and sent == len(lines) - half
        logs = "".join(f.read_text() for f in tmp_path.glob("w*.log"))
        assert "another log" not in logs  # a handover is never mistaken for a broker that forgot
        assert all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=60)
