"""A live row as a trader runs it: ``sharewise broker connect``, the row switched to live, ``sharewise up --replay``.

Real processes, a real Kafka-protocol broker and PostgreSQL, and the Kite Connect fake (tests/fixtures/brokers)
standing in at ``brokers_broker.api_base_url``. The demo's ``ema_cross`` row trades live through the connected
account: every order the engine decides reaches the broker exactly once under its tag, the books hold the
broker's fills, ``--until-drained`` waits for the router, and the token never shows anywhere.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import asyncpg
import orjson

from db.seed_demo import DEMO_EMAIL, seed_demo
from tests.fixtures.brokers import KiteFake
from tests.streams.support import SHAREWISE, engine_env, make_tick_file, up_until_drained

CANARY = "CANARYlive7a6b5c4d3e2f1"
KEY = "q5cQ3oW3l0pHkM2b0D7vJmX0Qn6mS7eW9tYcB4dR1aE="  # a test key (32 bytes, base64)


def _sharewise(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHAREWISE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


async def _query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def test_up_routes_a_live_row_through_its_broker_once_per_order(tmp_path: Path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    ticks = make_tick_file(tmp_path / "ticks.jsonl")
    env = engine_env(tmp_path / "home", broker.bootstrap, pg_dsn, SHAREWISE_SECRET_KEY=KEY)
    with KiteFake(access_token=CANARY) as fake:
        fake.auto_fill_market(lambda order: "1000.00")  # any price: the books must hold the broker's
        asyncio.run(_query(pg_dsn, "UPDATE brokers_broker SET api_base_url = $1 WHERE name = 'Zerodha'", fake.base_url))
        connected = _sharewise(env, "broker", "connect", "--user", DEMO_EMAIL, "--broker", "zerodha", "--api-key",
                               fake.api_key, "--access-token", "-", "--json", stdin=CANARY + "\n")
        assert connected.returncode == 0, connected.stderr
        account = json.loads(connected.stdout)["account_id"]
        live = {"mode": "live", "broker_account": account, "product": "MIS", "quantity": 10}
        asyncio.run(_query(pg_dsn, "UPDATE strategies_strategy SET risk_management = jsonb_set(coalesce("
                                   "risk_management, '{}'::jsonb), '{execution}', $1::jsonb) WHERE name = 'ema_cross'",
                           orjson.dumps(live).decode()))
        done = subprocess.run([*SHAREWISE, "up", "--replay", str(ticks.path), "--until-drained", "--json"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
        at_broker = fake.orders()
        places = fake.requests_of("place")

    rows = asyncio.run(_query(pg_dsn, "SELECT id, broker_account_id, broker_order_id, order_type, status, filled_quantity,"
                                      " average_price, rejection_reason FROM trading_order"))
    assert rows and summary["orders"] == len(rows)
    assert {str(r["broker_account_id"]) for r in rows} == {account}
    tags = [o.tag for o in at_broker]
    assert len(tags) == len(set(tags)) == len(places)  # one order per tag, each sent once
    sent = {str(r["id"]).replace("-", "")[:20]: r for r in rows if r["rejection_reason"] is None}
    assert set(tags) == set(sent)
    by_tag = {o.tag: o for o in at_broker}
    for tag, row in sent.items():
        assert row["broker_order_id"] == by_tag[tag].order_id
        assert row["status"] == by_tag[tag].status.value.upper() or (row["status"], by_tag[tag].status.value) == (
            "OPEN", "TRIGGER PENDING")
        if row["order_type"] == "MARKET":
            assert (row["status"], row["filled_quantity"], row["average_price"]) == ("COMPLETE", 10, Decimal("1000.00"))
    # a replay at full speed decides faster than a broker answers: a close may come before its entry's fill, so
    # the position closes by MARKET as soon as it is held, without exits resting in between (docs/orders.md)
    assert len(rows) >= 4 and {r["order_type"] for r in rows} == {"MARKET"}
    # the book holds the broker's fills: cash moved by exactly those fills and their charges
    filled = asyncio.run(_query(pg_dsn, "SELECT transaction_type, filled_quantity, average_price, fees, taxes"
                                        " FROM trading_order WHERE status = 'COMPLETE'"))
    cash = Decimal("1000000")
    for f in filled:
        value = f["average_price"] * f["filled_quantity"]
        cash += -(value + f["fees"] + f["taxes"]) if f["transaction_type"] == "BUY" else value - f["fees"] - f["taxes"]
    [book] = asyncio.run(_query(pg_dsn, "SELECT available_cash FROM portfolios_portfolio WHERE name = 'Paper Portfolio'"))
    assert book["available_cash"] == cash and all(f["fees"] > 0 for f in filled)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").rglob("*.log"))
    assert CANARY not in done.stdout + done.stderr + logs
    stored = asyncio.run(_query(pg_dsn, "SELECT access_token FROM brokers_userbrokeraccount WHERE id = $1::uuid", account))
    assert stored[0]["access_token"].startswith("v1:") and CANARY not in stored[0]["access_token"]
    for table in ("trading_order", "notifications_notification", "portfolios_portfolio", "trading_signal"):
        [hit] = asyncio.run(_query(pg_dsn, f"SELECT count(*) AS n FROM {table} t WHERE t::text LIKE $1", f"%{CANARY}%"))
        assert hit["n"] == 0, table
