"""Gap-free resume on real connections: reconnect storms, server restarts, several servers, lost history."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

from db.connect import connect
from sinks.feed import history
from tests.sinks.feed.support import FeedClient, FeedEnv, Publisher, add_user, issue_token, seqs, signal


def test_reconnect_storm_with_since_seq_loses_and_repeats_nothing(feed_env: FeedEnv) -> None:
    total, clients = 400, 6
    rng = random.Random(7)

    async def publish(pub: Publisher, user: str, ids: list[str]) -> None:
        for i, sid in enumerate(ids):
            await pub.personal("signals", signal(user, sid=sid))
            if rng.random() < 0.1:
                await pub.personal("signals", signal(user, sid=ids[rng.randint(0, i)]))  # redelivery
            if i % 20 == 0:
                await pub.flush()
                await asyncio.sleep(0.01)
        await pub.flush()

    async def storm(address: str, token: str, seen: list[dict[str, Any]]) -> None:
        last = 0
        while len(seen) < total:
            client = await FeedClient.authed(address, token)
            assert (await client.subscribe("signals", since_seq=last))["op"] == "subscribed"
            for _ in range(rng.randint(1, 60)):
                if len(seen) == total:
                    break
                frame = await client.recv(15)
                seen.append(frame)
                last = frame["seq"]
            if rng.random() < 0.5:
                await client.close()
            else:
                client.ws.transport.abort()  # vanish without a close handshake

    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        ids = [f"sig-{i:04d}" for i in range(total)]
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            results: list[list[dict[str, Any]]] = [[] for _ in range(clients)]
            await asyncio.gather(publish(pub, user, ids), *(storm(server.address, token, r) for r in results))
        for seen in results:
            assert seqs(seen) == list(range(1, total + 1))
            assert [f["data"]["id"] for f in seen] == ids

    asyncio.run(scenario())


def test_restart_then_resume_and_seqs_are_durable(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with Publisher(feed_env) as pub:
            async with feed_env.server() as server:
                client = await FeedClient.authed(server.address, token)
                await client.subscribe("signals")
                for i in range(10):
                    await pub.personal("signals", signal(user, sid=f"a{i}"))
                await pub.flush()
                before = await client.take(5)  # the client saw 5 of 10 when the server went away
            code, _ = await client.close_code()
            assert code == 1001
            for i in range(10):  # published while no feed server runs
                await pub.personal("signals", signal(user, sid=f"b{i}"))
            await pub.personal("signals", signal(user, sid="a3"))  # and an old one, redelivered
            await pub.flush()
            async with feed_env.server() as server:
                again = await FeedClient.authed(server.address, token)
                subscribed = await again.subscribe("signals", since_seq=before[-1]["seq"])
                rest = await again.take(15)
                assert subscribed["since_seq"] == 5
        assert seqs(before + rest) == list(range(1, 21))
        assert [f["data"]["id"] for f in before + rest] == [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]

    asyncio.run(scenario())


def test_two_servers_agree_on_every_seq(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with feed_env.server() as one, feed_env.server() as two, Publisher(feed_env) as pub:
            a = await FeedClient.authed(one.address, token)
            b = await FeedClient.authed(two.address, token)
            await a.subscribe("signals")
            await b.subscribe("signals")
            for i in range(60):
                await pub.personal("signals", signal(user, sid=f"s{i}"))
                if i % 7 == 0:
                    await pub.personal("signals", signal(user, sid=f"s{i}"))
            await pub.flush()
            got_a, got_b = await a.take(60), await b.take(60)
            assert got_a == got_b
            assert seqs(got_a) == list(range(1, 61))
            assert one.ingest and two.ingest
            assert one.ingest.stats["fresh"] + two.ingest.stats["fresh"] == 60  # each seq assigned once
            late = await FeedClient.authed(two.address, token)
            await late.subscribe("signals", since_seq=0)
            assert await late.take(60) == got_a

    asyncio.run(scenario())


def test_lost_history_is_unrecoverable(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            client = await FeedClient.authed(server.address, token)
            await client.subscribe("signals")
            for i in range(10):
                await pub.personal("signals", signal(user, sid=f"s{i}"))
            await pub.flush()
            await client.take(10)
            conn = await connect(feed_env.dsn)
            await conn.execute("UPDATE engine.feed_message SET created_at = NOW() - interval '40 days' WHERE seq <= 4")
            removed = await history.prune(conn, bars_kept=10, personal_age=timedelta(days=30))
            await conn.close()
            assert removed == 4
            late = await FeedClient.authed(server.address, token)
            gone = await late.subscribe("signals", since_seq=2)
            assert (gone["op"], gone["reason"], gone["channel"]) == ("error", "unrecoverable", "signals")
            future = await late.subscribe("signals", since_seq=11)  # beyond the stream: history was reset
            assert future["reason"] == "unrecoverable"
            assert (await late.subscribe("signals", since_seq=4))["op"] == "subscribed"  # 5.. is still kept
            assert seqs(await late.take(6)) == list(range(5, 11))
            assert (await late.request({"op": "ping"}))["op"] == "pong"

    asyncio.run(scenario())


def test_a_broker_that_lost_its_data_is_read_from_the_start(feed_env: FeedEnv, kafka_broker_factory) -> None:
    """The embedded broker keeps topics in memory: after its restart the saved positions lie beyond the
    new topics' ends. The feed must read them from the start, not wait for offsets that never come."""

    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        for round_, sids in enumerate((["a0", "a1", "a2", "a3", "a4"], ["a4", "b0", "b1"])):
            feed_env.bootstrap = kafka_broker_factory().bootstrap
            async with feed_env.server() as server, Publisher(feed_env) as pub:
                client = await FeedClient.authed(server.address, token)
                await client.subscribe("signals", since_seq=0 if round_ == 0 else 5)
                for sid in sids:
                    await pub.personal("signals", signal(user, sid=sid))
                await pub.flush()
                got = await client.take(len(sids) if round_ == 0 else 2)
                assert [(f["seq"], f["data"]["id"]) for f in got] == \
                    ([(1, "a0"), (2, "a1"), (3, "a2"), (4, "a3"), (5, "a4")] if round_ == 0 else [(6, "b0"), (7, "b1")])

    asyncio.run(scenario())
