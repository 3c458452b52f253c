"""Auth and protocol errors on real connections: close codes, error frames, revocation, no token in logs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import jwt
import pytest

from db.connect import connect
from sinks.feed.accounts import revoke_token
from tests.sinks.feed.support import FeedClient, FeedEnv, add_user, issue_token


def test_bad_tokens_close_4401(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        inactive = await add_user(feed_env.dsn, active=False)
        revoked = await issue_token(feed_env, user)
        conn = await connect(feed_env.dsn)
        await revoke_token(conn, await conn.fetchval("SELECT jti::text FROM engine.api_token WHERE user_id = $1", user))
        await conn.close()
        cases = {
            "revoked": (revoked, "unauthorized: revoked"),
            "garbage": ("not-a-token", "unauthorized: invalid"),
            "unrecorded": (await issue_token(feed_env, user, record=False), "unauthorized: unknown token"),
            "expired": (await issue_token(feed_env, user, ttl=timedelta(seconds=1)), "unauthorized: expired"),
            "inactive": (await issue_token(feed_env, inactive), "unauthorized: user inactive"),
            "empty": ("", "unauthorized: missing token"),
        }
        await asyncio.sleep(1.1)  # let the one-second token expire
        async with feed_env.server() as server:
            for name, (token, expected) in cases.items():
                client = await FeedClient.connect(server.address)
                await client.send({"op": "auth", "token": token})
                assert await client.close_code() == (4401, expected), name
            no_auth = await FeedClient.connect(server.address)
            await no_auth.send({"op": "subscribe", "channel": "signals"})
            assert await no_auth.close_code() == (4401, "unauthorized: send auth first")

    asyncio.run(scenario())


def test_silent_client_is_closed_4401_after_the_auth_timeout(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with feed_env.server(auth_timeout_s=0.3) as server:
            client = await FeedClient.connect(server.address)
            assert await client.close_code() == (4401, "unauthorized: no auth in time")

    asyncio.run(scenario())


def test_revoking_closes_open_sessions_4401(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        other = await issue_token(feed_env, user)
        async with feed_env.server(token_recheck_s=0.1) as server:
            client = await FeedClient.authed(server.address, token)
            survivor = await FeedClient.authed(server.address, other)
            await client.subscribe("signals")
            conn = await connect(feed_env.dsn)
            jti = await conn.fetchval("SELECT jti::text FROM engine.api_token WHERE user_id = $1 ORDER BY jti LIMIT 1",
                                      user)
            record, changed = await revoke_token(conn, jti)
            await conn.close()
            assert changed and record.revoked_at is not None
            closed, alive = (client, survivor) if client_jti(token) == jti else (survivor, client)
            assert await closed.close_code() == (4401, "unauthorized: revoked")
            assert (await alive.request({"op": "ping"}))["op"] == "pong"

    asyncio.run(scenario())


def client_jti(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["jti"]


def test_channel_outside_the_token_closes_4403(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user, channels=("signals",))
        async with feed_env.server() as server:
            client = await FeedClient.authed(server.address, token)
            assert (await client.subscribe("signals"))["op"] == "subscribed"
            await client.send({"op": "subscribe", "channel": "orders"})
            code, reason = await client.close_code()
            assert code == 4403 and "orders" in reason

    asyncio.run(scenario())


def test_malformed_frames_get_errors_and_the_connection_stays_usable(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with feed_env.server() as server:
            client = await FeedClient.authed(server.address, token)
            bad = [("{nope", "bad_json"), ("[]", "bad_json"), ('{"op":"teleport"}', "unknown_op"),
                   ('{"op":"subscribe","channel":"weather"}', "bad_argument"),
                   ('{"op":"subscribe","channel":"signals","since_seq":-5}', "bad_argument"),
                   ('{"op":"subscribe","channel":"signals","symbols":"TCS"}', "bad_argument"),
                   (b"\x89PNG binary", "binary_not_supported"),
                   ("", "bad_json")]
            for frame, reason in bad:
                reply = await client.request(frame)
                assert (reply["op"], reply["reason"]) == ("error", reason), frame
            assert await client.request({"op": "ping", "id": "k"}) == {"op": "pong", "id": "k"}
            assert (await client.subscribe("signals"))["op"] == "subscribed"

    asyncio.run(scenario())


def test_huge_frame_closes_1009(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with feed_env.server(max_frame_bytes=64 * 1024) as server:
            client = await FeedClient.authed(server.address, token)
            assert (await client.request('{"op":"ping","id":"' + "x" * 60_000 + '"}'))["op"] == "pong"
            await client.send('{"op":"ping","id":"' + "x" * (70 * 1024) + '"}')
            code, _ = await client.close_code()
            assert code == 1009
            again = await FeedClient.authed(server.address, token)  # the server itself is fine
            assert (await again.request({"op": "ping"}))["op"] == "pong"

    asyncio.run(scenario())


def test_tokens_never_reach_the_logs(feed_env: FeedEnv, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[str, str]:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with feed_env.server() as server:
            good = await FeedClient.authed(server.address, token)
            await good.subscribe("signals")
            bad = await FeedClient.connect(server.address)
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            await bad.send({"op": "auth", "token": forged})
            assert (await bad.close_code())[0] == 4401
            await good.close()
        return token, forged

    with caplog.at_level(logging.DEBUG):
        token, forged = asyncio.run(scenario())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "expected some debug logging to inspect"
    assert token not in text and forged not in text and token.split(".")[1] not in text
