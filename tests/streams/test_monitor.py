"""``sharewise monitor`` and ``sharewise status`` on the real broker (and PostgreSQL for heartbeats).

Lag is checked against an independent computation: produce N records per partition, consume
and commit M of them in a group of our own, and the monitor must say lag = N - M, committed = M,
and a lag in seconds equal to the age of record M (written with a known timestamp).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.ops.status import Status
from streams.admin import ensure_topics
from streams.broker import free_port
from streams.ops.cluster import ClusterProbe
from streams.ops.monitor import Monitor
from tests.fixtures.kafka import unique_topic

SHAREWISE = [sys.executable, "-m", "engine.cli"]
HOUR_AGO_MS = int((time.time() - 3600) * 1000)


async def produce(bootstrap: str, topic: str, counts: dict[int, int], first_ts_ms: int = HOUR_AGO_MS) -> None:
    """``counts[p]`` records on partition p; the record at offset o is stamped ``first_ts_ms + o`` seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for p, n in counts.items():
            for o in range(n):
                await producer.send(topic, b"x%d" % o, partition=p, timestamp_ms=first_ts_ms + o * 1000)
        await producer.flush()
    finally:
        await producer.stop()


async def commit(bootstrap: str, topic: str, group: str, offsets: dict[int, int]) -> None:
    """Consume each partition up to ``offsets[p]`` records in ``group`` and commit that position."""
    tps = [TopicPartition(topic, p) for p in offsets]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign(tps)
    await consumer.start()
    try:
        for tp in tps:
            consumer.seek(tp, 0)
            seen = 0
            while seen < offsets[tp.partition]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=offsets[tp.partition] - seen)
                seen += len(batch.get(tp, []))
        await consumer.commit({tp: offsets[tp.partition] for tp in tps})
    finally:
        await consumer.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHAREWISE, *args], env=env, capture_output=True, text=True, timeout=120)


def _env(home: Path, bootstrap: str, dsn: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env.update(SHAREWISE_HOME=str(home), SHAREWISE_KAFKA=f"kafka://{bootstrap}")
    if dsn:
        env["SHAREWISE_DATABASE_URL"] = dsn
    return env


def test_lag_equals_produced_minus_committed_per_partition(kafka_bootstrap, tmp_path):
    topic, group = unique_topic("lag"), unique_topic("group")
    produced, consumed = {0: 7, 1: 12, 2: 5}, {0: 3, 1: 12, 2: 0}

    async def scenario():
        await ensure_topics(kafka_bootstrap, {topic: 3})
        await produce(kafka_bootstrap, topic, produced)
        await commit(kafka_bootstrap, topic, group, consumed)
        async with ClusterProbe(kafka_bootstrap) as probe:
            return await probe.snapshot()

    snap = asyncio.run(scenario())
    assert {p: e.high for p, e in snap.topics[topic].items()} == produced
    positions = snap.groups[group][topic]
    assert {p: gp.committed for p, gp in positions.items()} == consumed
    assert {p: gp.lag for p, gp in positions.items()} == {p: produced[p] - consumed[p] for p in produced}
    for p, gp in positions.items():
        if gp.lag == 0:
            assert gp.lag_seconds == 0.0
        else:  # the record at the committed offset is the oldest unconsumed one
            expected = snap.taken_at - (HOUR_AGO_MS / 1000 + consumed[p])
            assert gp.lag_seconds == pytest.approx(expected, abs=1e-3)
    assert snap.group_lag(group) == 4 + 0 + 5
    assert snap.members[group] is None  # Tansu reports no members; an empty group on Kafka reports none too

    done = _cli(_env(tmp_path / "home", kafka_bootstrap), "monitor", "--once", "--json", "--window", "0", "-g", group)
    assert done.returncode == 0, done.stderr
    doc = orjson.loads(done.stdout)
    assert list(doc) == ["status", "topics", "groups", "dlq"]
    assert doc["topics"][topic] == {"partitions": {str(p): {"high": n} for p, n in produced.items()}}
    assert {p: (v["committed"], v["lag"]) for p, v in doc["groups"][group][topic].items()} == {
        str(p): (consumed[p], produced[p] - consumed[p]) for p in produced}
    assert doc["status"] == "OK"  # one sample judges no trend; the group has no workers to miss


def test_a_group_with_lag_and_no_commits_stalls_and_recovers_when_it_commits(kafka_bootstrap):
    topic, group = unique_topic("stall"), unique_topic("group")
    asyncio.run(ensure_topics(kafka_bootstrap, {topic: 2}))
    asyncio.run(produce(kafka_bootstrap, topic, {0: 10, 1: 10}))
    asyncio.run(commit(kafka_bootstrap, topic, group, {0: 4, 1: 10}))

    async def run():
        async with Monitor(kafka_bootstrap, groups=[group], window=1.0, ages=False) as m:
            stalled = await _observe(m, 1.0)
            recovered = await _observe(m, 1.0, lambda i: commit(kafka_bootstrap, topic, group, {0: 4 + i, 1: 10}))
            return stalled, recovered

    stalled, recovered = asyncio.run(run())
    assert stalled[0].verdict.status is Status.OK  # one sample: no trend yet
    last = stalled[-1].verdict
    assert last.status is Status.STALL
    assert [f.subject for f in last.findings] == [f"group {group} {topic}[0]"]  # partition 1 has no lag
    assert recovered[-1].verdict.status is Status.OK


def test_a_group_whose_lag_grows_while_it_commits_warns(kafka_bootstrap):
    topic, group = unique_topic("warn"), unique_topic("group")
    asyncio.run(ensure_topics(kafka_bootstrap, {topic: 1}))
    asyncio.run(produce(kafka_bootstrap, topic, {0: 10}))
    asyncio.run(commit(kafka_bootstrap, topic, group, {0: 2}))

    async def falls_behind(i: int) -> None:  # 3 more records in, 1 more committed: lag +2 per step
        await produce(kafka_bootstrap, topic, {0: 3}, first_ts_ms=HOUR_AGO_MS)
        await commit(kafka_bootstrap, topic, group, {0: 2 + i})

    async def run():
        async with Monitor(kafka_bootstrap, groups=[group], window=1.0) as m:
            return await _observe(m, 1.0, falls_behind)

    seen = asyncio.run(run())
    verdict = seen[-1].verdict
    assert verdict.status is Status.WARN, verdict
    assert verdict.findings[0].subject == f"group {group} {topic}[0]"
    assert seen[-1].commit_rates[(group, topic)] > 0  # it does commit: not a stall


async def _observe(monitor: Monitor, window: float, between=None) -> list:  # noqa: ANN001
    seen = [await monitor.observe()]
    while seen[-1].snapshot.taken_at - seen[0].snapshot.taken_at < window:
        await asyncio.sleep(0.25)
        if between is not None:
            await between(len(seen))
        seen.append(await monitor.observe())
    return seen


def test_a_broker_that_goes_away_turns_the_status_to_err(kafka_broker_factory):
    broker = kafka_broker_factory()

    async def run():
        async with Monitor(broker.bootstrap, window=0) as m:
            before = await m.observe()
            broker.stop()
            during = await m.observe()
            return before, during

    before, during = asyncio.run(run())
    assert before.verdict.status is Status.OK and before.snapshot is not None
    assert during.snapshot is None and during.verdict.status is Status.ERR
    assert during.verdict.findings[0].subject == "broker"


async def _beat(dsn: str, worker: str, group: str, age_s: float, stats: dict | None = None) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO engine.worker_heartbeat (worker_id, group_id, host, pid, partitions, stats, last_seen)"
            " VALUES ($1, $2, 'test', 1, '{0}', $3::jsonb, now() - make_interval(secs => $4))",
            worker, group, orjson.dumps(stats or {}).decode(), age_s)
    finally:
        await conn.close()


def test_silent_workers_of_a_lagging_group_turn_the_status_to_err(kafka_bootstrap, pg_dsn):
    topic, group = unique_topic("silent"), unique_topic("group")
    asyncio.run(ensure_topics(kafka_bootstrap, {topic: 1}))
    asyncio.run(produce(kafka_bootstrap, topic, {0: 5}))
    asyncio.run(commit(kafka_bootstrap, topic, group, {0: 1}))
    asyncio.run(_beat(pg_dsn, "w-silent", group, 60.0, {"ticks": 123, "sink_backlog": 0}))

    async def run():
        async with Monitor(kafka_bootstrap, pg_dsn, groups=[group], window=0) as m:
            return await m.observe()

    obs = asyncio.run(run())
    assert obs.database == ""
    assert [(b.worker_id, b.stats["ticks"]) for b in obs.beats] == [("w-silent", 123)]
    assert obs.verdict.status is Status.ERR
    assert obs.verdict.findings[0].subject == f"workers of {group}"


def test_status_says_what_is_up_and_exits_non_zero_naming_what_is_down(kafka_bootstrap, pg_dsn, tmp_path):
    group = unique_topic("group")
    asyncio.run(_beat(pg_dsn, "w-fresh", group, 0.0))
    up = _cli(_env(tmp_path / "home", kafka_bootstrap, pg_dsn), "status")
    assert up.returncode == 0, up.stdout + up.stderr
    lines = {line.split()[0]: line.split()[1] for line in up.stdout.splitlines() if line.strip()}
    assert lines == {"broker": "up", "database": "up", "workers": "up"}

    nowhere = f"127.0.0.1:{free_port()}"
    no_db = "postgresql://postgres@/postgres?host=/nonexistent-sharewise-socket-dir&port=5432"
    down = _cli(_env(tmp_path / "home", nowhere, no_db), "status")
    assert down.returncode == 1
    assert "down: broker, database" in down.stderr
    assert "Traceback" not in down.stderr


def test_a_database_without_the_engine_schema_has_no_workers_yet(kafka_bootstrap, pg_empty_dsn):
    async def run():
        async with Monitor(kafka_bootstrap, pg_empty_dsn, groups=[], window=0, ages=False) as m:
            return await m.observe()

    obs = asyncio.run(run())
    assert (obs.database, obs.beats, obs.checkpoints) == ("", [], [])
    assert obs.verdict.status is Status.OK
