"""Kite postbacks (sinks/feed/postbacks.py) from the Kite fake to ``orders.inputs``: real PostgreSQL, a real
Kafka-protocol broker, real HTTP. A verified postback of a connected account's order becomes a ``broker`` input
keyed by the account's user; a forged checksum, an unknown Kite user and a payload that is not Kite's are refused
and counted, and write nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import uuid

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from db.connect import create_pool
from db.seed_demo import seed_demo
from engine.credentials import Secret
from engine.ports import OrderRequest
from sinks.brokers import KiteAdapter, TokenBucket
from sinks.feed.postbacks import PATH, PostbackListener
from streams.admin import ensure_topics
from streams.topics import ORDERS_INPUTS
from tests.fixtures.brokers import KiteFake

SECRET = "platform_app_secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _inputs(bootstrap: str) -> list[tuple[bytes, dict]]:
    consumer = AIOKafkaConsumer(ORDERS_INPUTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        found = []
        while batch := await consumer.getmany(timeout_ms=1500):
            found += [(r.key, orjson.loads(r.value)) for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


def test_a_verified_postback_reaches_the_order_stage_and_a_forged_one_nothing(pg_dsn, kafka_broker_factory):
    broker = kafka_broker_factory()
    demo = asyncio.run(seed_demo(pg_dsn))
    port = _free_port()

    async def scenario(fake: KiteFake):
        await ensure_topics(broker.bootstrap, {ORDERS_INPUTS: 2})
        conn = await asyncpg.connect(pg_dsn)
        account = uuid.uuid4()
        await conn.execute(
            "INSERT INTO brokers_userbrokeraccount (id, user_id, broker_id, broker_user_id, is_active)"
            " SELECT $1, $2, id, $3, TRUE FROM brokers_broker WHERE name = 'Zerodha'", account,
            demo["user_id"], fake.user_id)
        await conn.close()
        pool = await create_pool(pg_dsn)
        listener = PostbackListener(pool, broker.bootstrap, SECRET)
        await listener.start("127.0.0.1", port)
        url = f"http://127.0.0.1:{listener.port}{PATH}"
        try:
            fake.auto_fill_market("2500.00")
            async with KiteAdapter(fake.base_url, api_key=Secret(fake.api_key), access_token=Secret(fake.access_token),
                                   bucket=TokenBucket(1000)) as kite:
                placed = await kite.place(OrderRequest("0123456789abcdef0123", "RELIANCE", "BUY", 10, "MARKET", "MIS"))
            for _ in range(200):  # the fake POSTs its postback on its own
                if listener.counts["accepted"]:
                    break
                await asyncio.sleep(0.05)
            genuine = fake.postbacks[-1]
            forged = dict(genuine, average_price=1.0)  # the price changed, the checksum kept: still verifies
            tampered = dict(genuine, checksum=hashlib.sha256(b"guess").hexdigest())
            stranger = dict(genuine, user_id="ZZ9999")
            stranger["checksum"] = hashlib.sha256(
                f"{stranger['order_id']}{stranger['order_timestamp']}{SECRET}".encode()).hexdigest()
            answers = {}
            async with aiohttp.ClientSession() as http:
                for name, body in (("tampered", json.dumps(tampered)), ("stranger", json.dumps(stranger)),
                                   ("garbage", "not json"), ("forged", json.dumps(forged))):
                    async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        answers[name] = (r.status, await r.json())
        finally:
            await listener.stop()
            await pool.close()
        return placed, account, answers, dict(listener.counts), await _inputs(broker.bootstrap)

    with KiteFake(api_secret=SECRET, postback_url=f"http://127.0.0.1:{port}{PATH}") as fake:
        placed, account, answers, counts, inputs = asyncio.run(scenario(fake))
    assert answers["tampered"][0] == 403 and "checksum" in answers["tampered"][1]["error"]
    assert answers["stranger"][0] == 404 and answers["garbage"][0] == 400
    # the checksum covers order_id and order_timestamp only (Kite's rule): a body altered elsewhere verifies
    assert answers["forged"][0] == 200
    assert counts == {"accepted": 2, "bad_checksum": 1, "unknown_user": 1, "unreadable": 1}
    assert len(inputs) == 2
    key, message = inputs[0]
    assert key == str(demo["user_id"]).encode()
    assert message == {"kind": "broker", "user_id": str(demo["user_id"]), "account": str(account), "update": {
        "tag": "0123456789abcdef0123", "status": "COMPLETE", "broker_order_id": placed.broker_order_id,
        "filled_quantity": 10, "average_price": "2500", "exchange_timestamp": message["update"]["exchange_timestamp"],
        "reason": None}}
