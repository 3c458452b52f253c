"""The durable history in a real PostgreSQL: seq assignment under concurrency, resume reads, retention."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

import pytest

from db.connect import connect
from sinks.feed import history
from sinks.feed.history import HistoryGone
from sinks.feed.records import MARKET_USER, FeedRecord


def record(user: str, channel: str, mid: str, symbol: str | None = "TCS") -> FeedRecord:
    return FeedRecord(user, channel, mid, symbol, b'{"id":"%s"}' % mid.encode())


def test_concurrent_appenders_agree_on_every_seq(pg_dsn: str) -> None:
    """Four 'servers' append the same per-user streams (each in stream order, batches cut differently,
    with redeliveries, and bars from two partitions in either order): one seq per message, 1..n."""
    users = [str(uuid.uuid4()) for _ in range(3)]
    streams = {u: [f"{u[:4]}-{i}" for i in range(150)] for u in users}
    bars = {p: [f"BAR{p}|1m|{i}" for i in range(80)] for p in (0, 1)}

    async def server(seed: int) -> dict[tuple[str, str], int]:
        rng = random.Random(seed)
        cursors = {u: 0 for u in users} | {("bars", p): 0 for p in bars}
        seen: dict[tuple[str, str], int] = {}
        conn = await connect(pg_dsn)
        try:
            while any(cursors[u] < len(streams[u]) for u in users) or any(cursors[("bars", p)] < 80 for p in bars):
                batch: list[FeedRecord] = []
                for key in rng.sample(list(cursors), len(cursors)):
                    ids = streams[key] if isinstance(key, str) else bars[key[1]]
                    step = rng.randint(0, 12)
                    taken = ids[cursors[key]:cursors[key] + step]
                    cursors[key] += len(taken)
                    if taken and rng.random() < 0.3:
                        taken.append(rng.choice(ids[:cursors[key]]))  # a redelivery of something already read
                    batch += [record(MARKET_USER, "bars", m) if not isinstance(key, str) else record(key, "signals", m)
                              for m in taken]
                for item in await history.append(conn, batch, {}):
                    key = (item.record.user_id, item.record.message_id)
                    assert seen.setdefault(key, item.seq) == item.seq
        finally:
            await conn.close()
        return seen

    async def scenario() -> None:
        results = await asyncio.gather(*(server(seed) for seed in range(4)))
        assert all(r == results[0] for r in results[1:])
        merged = results[0]
        for user in users:
            assert [merged[(user, m)] for m in streams[user]] == list(range(1, 151))
        bar_seqs = sorted(merged[(MARKET_USER, m)] for p in bars for m in bars[p])
        assert bar_seqs == list(range(1, 161))
        for p in bars:  # within one partition, bars keep their order
            ordered = [merged[(MARKET_USER, m)] for m in bars[p]]
            assert ordered == sorted(ordered)
        conn = await connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM engine.feed_message") == 3 * 150 + 160
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_read_after_filters_and_detects_lost_history(pg_dsn: str) -> None:
    user = str(uuid.uuid4())

    async def scenario() -> None:
        conn = await connect(pg_dsn)
        try:
            assert (await history.read_after(conn, user, "signals", 0, None, 10)).latest == 0
            records = [record(user, "signals", f"m{i}", "TCS" if i % 2 else "INFY") for i in range(10)]
            await history.append(conn, records, {("signals", 3): 99})
            assert await history.load_offsets(conn, ["signals"]) == {("signals", 3): 99}
            page = await history.read_after(conn, user, "signals", 2, frozenset({"TCS"}), 3)
            assert page.latest == 10 and [row[0] for row in page.rows] == [4, 6, 8]
            assert page.rows[0][2] == b'{"id":"m3"}'
            with pytest.raises(HistoryGone):
                await history.read_after(conn, user, "signals", 11, None, 10)
            await conn.execute("UPDATE engine.feed_message SET created_at = NOW() - interval '2 days' WHERE seq <= 3")
            assert await history.prune(conn, bars_kept=100, personal_age=timedelta(days=1)) == 3
            with pytest.raises(HistoryGone):
                await history.read_after(conn, user, "signals", 2, None, 10)
            assert [r[0] for r in (await history.read_after(conn, user, "signals", 3, None, 10)).rows] == \
                list(range(4, 11))
            assert (await history.read_after(conn, user, "signals", 10, None, 10)).rows == []
            again = await history.append(conn, [record(user, "signals", "m1")], {})
            assert again[0].seq == 11 and again[0].fresh  # pruned ids are forgotten: documented
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_bar_retention_keeps_the_newest(pg_dsn: str) -> None:
    async def scenario() -> None:
        conn = await connect(pg_dsn)
        try:
            await history.append(conn, [record(MARKET_USER, "bars", f"b{i}") for i in range(50)], {})
            assert await history.prune(conn, bars_kept=20, personal_age=timedelta(days=1)) == 30
            assert await conn.fetchval("SELECT min(seq) FROM engine.feed_message") == 31
            assert await history.prune(conn, bars_kept=20, personal_age=timedelta(days=1)) == 0
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_saved_positions_belong_to_the_log_they_were_read_in(pg_dsn: str) -> None:
    user = str(uuid.uuid4())
    topic = f"t.log-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        conn = await connect(pg_dsn)
        try:
            await history.append(conn, [record(user, "signals", "x1")], {(topic, 0): 7, (topic, 1): 3}, "cluster-A")
            assert await history.load_offsets(conn, [topic], "cluster-A") == {(topic, 0): 7, (topic, 1): 3}
            # the embedded broker restarted: a new log, where offsets 7 and 3 mean nothing
            assert await history.load_offsets(conn, [topic], "cluster-B") == {}
            await history.append(conn, [record(user, "signals", "x2")], {(topic, 0): 2}, "cluster-B")
            assert await history.load_offsets(conn, [topic], "cluster-B") == {(topic, 0): 2}
            assert await history.load_offsets(conn, [topic]) == {(topic, 0): 2, (topic, 1): 3}
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_two_state_changes_of_one_order_are_two_records_in_history(pg_dsn: str) -> None:
    """The ``orders`` channel keys its history by event_id: PENDING and COMPLETE of one order get two seqs,
    and a redelivered COMPLETE keeps its seq."""
    import orjson

    from sinks.feed.records import decode_personal

    user, order = str(uuid.uuid4()), str(uuid.uuid4())

    def change(status: str) -> FeedRecord:
        value = orjson.dumps({"event_id": f"{order}|{status}", "id": order, "user_id": user, "symbol": "TCS",
                              "status": status})
        return decode_personal("orders", user.encode(), value)

    async def scenario() -> None:
        conn = await connect(pg_dsn)
        try:
            first = await history.append(conn, [change("PENDING"), change("COMPLETE")], {})
            again = await history.append(conn, [change("COMPLETE")], {})
            assert [item.seq for item in first] == [1, 2] and [item.seq for item in again] == [2]
            page = await history.read_after(conn, user, "orders", 0, None, 10)
            assert [(seq, orjson.loads(p)["status"]) for seq, _, p in page.rows] == [(1, "PENDING"), (2, "COMPLETE")]
        finally:
            await conn.close()

    asyncio.run(scenario())
