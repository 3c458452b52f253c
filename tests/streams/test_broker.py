"""The embedded Tansu broker and topic admin, against real brokers and real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import streams.broker as broker_module
from engine.errors import ConfigError, ServiceUnavailable
from streams.admin import ensure_topics, high_watermarks, list_topics
from streams.broker import EmbeddedBroker, free_port, pid_alive, stop_pid, wait_ready, wait_ready_async
from streams.topics import ENGINE_TOPICS, MARKET_TICKS, engine_topics

#: run in a child interpreter: start a broker as argv[2] says, print "pid port", then act
OWNER = """
import sys, threading, time
from pathlib import Path
from streams.broker import EmbeddedBroker
log_dir, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "thread":  # started from a worker thread that ends before the owner does
    box = []
    worker = threading.Thread(target=lambda: box.append(EmbeddedBroker.start(log_dir)))
    worker.start(); worker.join()
    broker = box[0]
else:
    broker = EmbeddedBroker.start(log_dir, detached=mode == "detached")
print(broker.pid, broker.port, flush=True)
if mode == "thread":
    time.sleep(120)  # until the test kills us
"""


def run_owner(log_dir: Path, mode: str) -> tuple[subprocess.Popen[str], int, str]:
    """Start the OWNER script; return it, the broker's pid and its bootstrap address."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(log_dir), mode], stdout=subprocess.PIPE, text=True)
    line = owner.stdout.readline() if owner.stdout else ""
    if not line:
        owner.kill()
        pytest.fail(f"the owner process printed nothing (exit {owner.wait()})")
    pid, port = line.split()
    return owner, int(pid), f"127.0.0.1:{port}"


def wait_until_gone(pid: int, within: float = 15) -> bool:
    """Whether ``pid`` stops being a live broker within ``within`` seconds (a bound, not a speed claim)."""
    deadline = time.monotonic() + within
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """Send ``counts[p]`` records to partition ``p``, unawaited so they travel in multi-record batches."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = [await producer.send(topic, f"{p}:{i}".encode(), key=b"k", partition=p)
                for p, n in counts.items() for i in range(n)]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[bytes]:
    """Read ``topic`` from the start by assignment (no group join) until ``expected`` records came."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records)
        return values
    finally:
        await consumer.stop()


def test_private_broker_serves_engine_topics_and_stops_without_leftover(kafka_broker_factory):
    broker = kafka_broker_factory()
    assert pid_alive(broker.pid) and broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert f"listening on: tcp://127.0.0.1:{broker.port}" in broker.log_path.read_text()

    async def scenario() -> list[bytes]:
        assert sorted(await ensure_topics(broker.bootstrap, engine_topics(4))) == sorted(ENGINE_TOPICS)
        await produce(broker.bootstrap, MARKET_TICKS, {0: 3, 3: 2})
        return await consume_all(broker.bootstrap, MARKET_TICKS, 4, expected=5)

    assert sorted(asyncio.run(scenario())) == [b"0:0", b"0:1", b"0:2", b"3:0", b"3:1"]
    broker.stop()
    broker.stop()  # idempotent
    assert not psutil.pid_exists(broker.pid)
    assert broker.pid not in {child.pid for child in psutil.Process().children(recursive=True)}


def test_broker_dies_with_its_owner_on_kill_9_even_when_a_worker_thread_started_it(tmp_path):
    owner, pid, bootstrap = run_owner(tmp_path, "thread")
    try:
        assert pid_alive(pid), "the broker must outlive the thread that started it"
        wait_ready(bootstrap, timeout=10)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert wait_until_gone(pid), "the broker outlived its SIGKILLed owner"
    finally:
        owner.kill()
        stop_pid(pid)


def test_broker_stops_when_its_owner_exits_normally(tmp_path):
    owner, pid, _ = run_owner(tmp_path, "attached")
    assert owner.wait(timeout=30) == 0
    assert wait_until_gone(pid), "the broker outlived its owner's normal exit"


def test_detached_broker_outlives_its_starter_until_stop_pid(tmp_path):
    owner, pid, bootstrap = run_owner(tmp_path, "detached")
    try:
        assert owner.wait(timeout=30) == 0
        assert pid_alive(pid)
        assert os.getsid(pid) == pid, "a detached broker leads its own session"
        wait_ready(bootstrap, timeout=10)
        assert asyncio.run(ensure_topics(bootstrap, {"after.starter.exit": 1})) == ["after.starter.exit"]
        assert stop_pid(pid, timeout=10) is True
        assert not pid_alive(pid)
        assert stop_pid(pid) is False
    finally:
        stop_pid(pid)


def test_pid_helpers_never_touch_a_process_that_is_not_a_broker():
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert not pid_alive(os.getpid())
        assert not pid_alive(sleeper.pid)
        assert stop_pid(sleeper.pid) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_wait_ready_names_the_address_it_cannot_reach():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match=f"cannot reach Kafka at {address}") as sync_error:
        wait_ready(address, timeout=0.3)
    assert sync_error.value.exit_code == 2
    with pytest.raises(ServiceUnavailable, match=f"cannot reach Kafka at {address}"):
        asyncio.run(wait_ready_async(address, timeout=0.3))


def test_start_retries_a_port_taken_since_the_probe(tmp_path, monkeypatch):
    squatter = _listening_socket()
    ports = iter([squatter.getsockname()[1]])
    real_free_port = broker_module.free_port
    monkeypatch.setattr(broker_module, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with EmbeddedBroker.start(tmp_path) as broker:
            assert broker.port != squatter.getsockname()[1]
            wait_ready(broker.bootstrap, timeout=5)
    finally:
        squatter.close()


def test_start_failure_reports_the_tail_of_the_broker_log(tmp_path, monkeypatch):
    squatter = _listening_socket()
    port = squatter.getsockname()[1]
    monkeypatch.setattr(broker_module, "free_port", lambda: port)
    brokers_before = _child_brokers()
    try:
        with pytest.raises(ServiceUnavailable, match="Address in use") as error:
            EmbeddedBroker.start(tmp_path, timeout=10)
    finally:
        squatter.close()
    assert f"127.0.0.1:{port}" in str(error.value) and str(tmp_path / "broker.log") in str(error.value)
    assert _child_brokers() == brokers_before, "a failed start left a broker behind"


def _child_brokers() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True) if pid_alive(child.pid)}


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_ensure_topics_creates_only_what_is_missing(kafka_bootstrap, topic_name):
    wanted = {f"{topic_name}.a": 3, f"{topic_name}.b": 1}

    async def scenario() -> None:
        assert sorted(await ensure_topics(kafka_bootstrap, wanted)) == sorted(wanted)
        assert await ensure_topics(kafka_bootstrap, wanted) == []
        assert await ensure_topics(kafka_bootstrap, {f"{topic_name}.a": 5}) == []  # left alone
        listed = await list_topics(kafka_bootstrap)
        assert {name: listed[name] for name in wanted} == wanted
        raced = await asyncio.gather(*(ensure_topics(kafka_bootstrap, {f"{topic_name}.c": 2}) for _ in range(3)))
        assert sum(raced, []) == [f"{topic_name}.c"]

    asyncio.run(scenario())


@pytest.mark.parametrize(("name", "partitions"), [("bad name!", 1), ("x" * 250, 1), ("..", 1), ("ok", 0)])
def test_ensure_topics_rejects_what_kafka_would(kafka_bootstrap, name, partitions):
    with pytest.raises(ConfigError):
        asyncio.run(ensure_topics(kafka_bootstrap, {name: partitions}))
    assert name not in asyncio.run(list_topics(kafka_bootstrap))


def test_high_watermarks_count_the_records_of_each_partition(kafka_bootstrap, topic_name):
    counts = {0: 0, 1: 1, 2: 57, 3: 300}

    async def scenario() -> tuple[dict[int, int], dict[int, int]]:
        await ensure_topics(kafka_bootstrap, {topic_name: len(counts)})
        assert await high_watermarks(kafka_bootstrap, topic_name) == dict.fromkeys(counts, 0)
        await produce(kafka_bootstrap, topic_name, counts)
        await produce(kafka_bootstrap, topic_name, {3: 4})  # a second batch after the first
        marks = await high_watermarks(kafka_bootstrap, topic_name)
        return marks, await _list_offsets_latest(kafka_bootstrap, topic_name, len(counts))

    marks, latest = asyncio.run(scenario())
    assert marks == {0: 0, 1: 1, 2: 57, 3: 304}
    # Not asserted, kept visible: on Tansu ListOffsets "latest" is the last batch's first offset + 1.
    print(f"high watermarks {marks}; ListOffsets latest {latest}")


async def _list_offsets_latest(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        latest = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: offset for tp, offset in latest.items()}
    finally:
        await consumer.stop()


def test_a_cluster_id_never_reads_as_an_option(monkeypatch):
    """A URL-safe base64 id starting with "-" made the broker refuse its arguments (one start in 64)."""
    from streams import broker as module

    ids = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=b"\x00" * 16)])  # the first encodes as "-w…"
    monkeypatch.setattr(module.uuid, "uuid4", lambda: next(ids))
    ident = module.new_cluster_id()
    assert not ident.startswith("-") and len(ident) == 22
