"""Tenancy on real connections: a user only ever gets their own signals, orders and notifications;
bars are shared market data, limited by subscription tier."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from typing import Any

import orjson
import pytest

from tests.sinks.feed.support import FeedClient, FeedEnv, Publisher, add_user, bar, issue_token, seqs, signal


@pytest.mark.parametrize("seed", [1, 2])
def test_tenants_never_see_each_others_messages(feed_env: FeedEnv, seed: int) -> None:
    rng = random.Random(seed)

    async def scenario() -> None:
        users = [await add_user(feed_env.dsn) for _ in range(rng.randint(3, 5))]
        tokens = {u: await issue_token(feed_env, u) for u in users}
        sent: dict[tuple[str, str], list[str]] = defaultdict(list)
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            clients = {}
            for user in users:  # two connections per user, one of them also on orders and notifications
                a = await FeedClient.authed(server.address, tokens[user])
                b = await FeedClient.authed(server.address, tokens[user])
                for client, channels in ((a, ("signals",)), (b, ("signals", "orders", "notifications"))):
                    for channel in channels:
                        assert (await client.subscribe(channel))["seq"] == 0
                clients[user] = (a, b)
            for _ in range(rng.randint(60, 120)):
                user, channel = rng.choice(users), rng.choice(["signals", "signals", "orders", "notifications"])
                message = _message(channel, user, rng)
                await pub.personal(channel, message)
                if rng.random() < 0.15:  # Kafka redelivers now and then
                    await pub.personal(channel, message)
                if message["id"] not in sent[(user, channel)]:
                    sent[(user, channel)].append(message["id"])
            await pub.flush()
            for user, (a, b) in clients.items():
                expected_b = sum(len(sent[(user, c)]) for c in ("signals", "orders", "notifications"))
                got_a = await a.take(len(sent[(user, "signals")]))
                got_b = await b.take(expected_b)
                assert [f["data"]["id"] for f in got_a] == sent[(user, "signals")]
                assert seqs(got_a) == list(range(1, len(got_a) + 1))
                for channel, op in (("signals", "signal"), ("orders", "order"), ("notifications", "notification")):
                    frames = [f for f in got_b if f["op"] == op]
                    assert [f["data"]["id"] for f in frames] == sent[(user, channel)]
                    assert seqs(frames) == list(range(1, len(frames) + 1))
                assert all(f["data"]["user_id"] == user for f in got_a + got_b)
                for client in (a, b):  # and nothing else is on its way
                    assert (await client.request({"op": "ping"}))["op"] == "pong"

    asyncio.run(scenario())


def _message(channel: str, user: str, rng: random.Random) -> dict[str, Any]:
    symbol = rng.choice(["RELIANCE", "TCS", "INFY", "HDFCBANK"])
    if channel == "signals":
        return signal(user, symbol)
    if channel == "orders":
        return {"id": str(uuid.uuid4()), "user_id": user, "signal_id": None, "symbol": symbol, "order_type": "MARKET",
                "transaction_type": "BUY", "quantity": rng.randint(1, 50), "price": None, "status": "PENDING"}
    return {"id": str(uuid.uuid4()), "user_id": user, "title": f"{symbol} BUY", "message": "signal",
            "notification_type": "SIGNAL", "priority": "MEDIUM", "is_read": False, "delivery_methods": ["in_app"],
            "created_at": "2024-01-02T09:16:00+05:30"}


def test_misattributed_and_malformed_messages_are_dropped(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        alice, bob = await add_user(feed_env.dsn), await add_user(feed_env.dsn)
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            a = await FeedClient.authed(server.address, await issue_token(feed_env, alice))
            b = await FeedClient.authed(server.address, await issue_token(feed_env, bob))
            await a.subscribe("signals")
            await b.subscribe("signals")
            await pub.personal("signals", signal(bob, sid="smuggled"), key=alice)  # key says alice, row says bob
            await pub.raw("signals", b"{broken", key=alice.encode())
            await pub.raw("signals", orjson.dumps({"user_id": alice}), key=alice.encode())  # no id
            await pub.personal("signals", signal(alice, sid="real"))
            await pub.flush()
            assert [f["data"]["id"] for f in await a.take(1)] == ["real"]
            assert (await b.request({"op": "ping"}))["op"] == "pong"
            assert server.ingest is not None and server.ingest.stats["bad"] == 3

    asyncio.run(scenario())


def test_bars_are_shared_filtered_and_limited_by_tier(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        free = await add_user(feed_env.dsn, tier="ELITE", plan="FREE")  # the active plan wins over the column
        pro = await add_user(feed_env.dsn, tier="PRO")
        elite = await add_user(feed_env.dsn, tier="FREE", plan="Elite yearly")
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            f = await FeedClient.authed(server.address, await issue_token(feed_env, free))
            p = await FeedClient.authed(server.address, await issue_token(feed_env, pro))
            e = await FeedClient.authed(server.address, await issue_token(feed_env, elite))
            six = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN"]
            refused = await f.subscribe("bars", symbols=six)
            assert (refused["reason"], refused["limit"], refused["tier"]) == ("symbol_limit", 5, "FREE")
            assert (await p.subscribe("bars"))["limit"] == 50
            assert (await f.subscribe("bars", symbols=["TCS", "INFY"]))["op"] == "subscribed"
            assert (await p.subscribe("bars", symbols=six))["op"] == "subscribed"
            assert (await e.subscribe("bars"))["op"] == "subscribed"
            packet = [bar(s, m) for m in range(3) for s in six + ["WIPRO"]]
            await pub.bars(packet[:10], partition=0)
            await pub.bars(packet[10:], partition=1)
            await pub.bars(packet[:5], partition=0)  # redelivered: no new seq
            await pub.flush()
            got_e = await e.take(len(packet))
            assert seqs(got_e) == list(range(1, len(packet) + 1))
            got_f = await f.take(6)
            assert {b["data"]["symbol"] for b in got_f} == {"TCS", "INFY"}
            assert seqs(got_f) == sorted(seqs(got_f))
            assert {s: b["data"] for s, b in zip(seqs(got_f), got_f)} == \
                {b["seq"]: b["data"] for b in got_e if b["data"]["symbol"] in ("TCS", "INFY")}
            got_p = await p.take(18)
            assert all(b["data"]["symbol"] != "WIPRO" for b in got_p)
            for client in (f, p, e):
                assert (await client.request({"op": "ping"}))["op"] == "pong"

    asyncio.run(scenario())
