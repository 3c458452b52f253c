"""Backpressure on real connections: a client that stops reading is closed with 4408 without slowing
anyone else, and resumes with since_seq without losing a message."""

from __future__ import annotations

import asyncio

from tests.sinks.feed.support import FeedClient, FeedEnv, Publisher, add_user, issue_token, seqs, signal

BIG = "x" * 16_000  # a signal with a large market_data blob: ~16 KB per frame


def test_slow_client_is_cut_off_alone_and_resumes(feed_env: FeedEnv) -> None:
    count = 300

    async def scenario() -> None:
        alice, bob = await add_user(feed_env.dsn), await add_user(feed_env.dsn)
        ta, tb = await issue_token(feed_env, alice), await issue_token(feed_env, bob)
        async with feed_env.server(client_queue_bytes=256 * 1024) as server, Publisher(feed_env) as pub:
            slow = await FeedClient.authed(server.address, ta, rcvbuf=4096, max_queue=1)
            fast = await FeedClient.authed(server.address, ta)
            other = await FeedClient.authed(server.address, tb)
            for client in (slow, fast, other):
                await client.subscribe("signals")
            for i in range(count):  # ~300 KB/s for alice: easy for a reading client, fatal for one that is not
                await pub.personal("signals", signal(alice, sid=f"a{i}", market_data={"blob": BIG}))
                await pub.personal("signals", signal(bob, sid=f"b{i}"))
                if i % 10 == 9:
                    await pub.flush()
                    await asyncio.sleep(0.02)
            await pub.flush()
            # everyone else gets everything while the slow client reads nothing
            got_fast, got_other = await fast.take(count, timeout=30), await other.take(count, timeout=30)
            assert seqs(got_fast) == seqs(got_other) == list(range(1, count + 1))
            received = []
            while True:  # now the slow client reads what reached it, then finds the 4408 close
                try:
                    received.append(await slow.recv(10))
                except Exception:
                    break
            code, reason = await slow.close_code()
            assert (code, reason) == (4408, "too slow: resume with since_seq")
            assert 0 < len(received) < count
            assert seqs(received) == list(range(1, len(received) + 1))
            assert server.hub is not None and len(server.hub.connections) == 2  # its memory is released
            again = await FeedClient.authed(server.address, ta)
            await again.subscribe("signals", since_seq=received[-1]["seq"])
            rest = await again.take(count - len(received), timeout=30)
            assert seqs(received + rest) == list(range(1, count + 1))
            assert [f["data"]["id"] for f in received + rest] == [f"a{i}" for i in range(count)]

    asyncio.run(scenario())
