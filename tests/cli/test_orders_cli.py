"""``sharewise orders``, ``positions`` and ``risk`` as a user runs them: real subprocesses, a real database
seeded with the demo tenant and rows written through the order and book sinks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from db.seed_demo import DEMO_EMAIL, seed_demo
from db.trading import ORDER_COLUMNS, set_manual_state
from sinks.orders import BookSink, OrderSink
from streams.admin import ensure_topics, list_topics
from streams.topics import ORDERS_INPUTS
from tests.sinks.test_orders import BOOK_ROWS, ORDER_ROWS, book_msg, order_msg, records, signal_msg, t

RISK_KEYS = ["user_id", "email", "state", "reason", "changed_at", "effective_state", "effective_reason", "as_of"]
LATER = "the engine will load this state when it starts"


def sharewise(*args: str, home: Path, database_url: str, kafka: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env |= {"SHAREWISE_HOME": str(home), "SHAREWISE_DATABASE_URL": database_url, "COLUMNS": "250"}
    if kafka:
        env["SHAREWISE_KAFKA"] = kafka
    script = Path(sys.executable).with_name("sharewise")
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=90)


@pytest.fixture
def trading_db(pg_dsn):
    """The demo tenant with three orders (a filled entry, its resting stop, a rejected entry) and a book."""
    async def fill() -> dict:
        user = str((await seed_demo(pg_dsn))["user_id"])
        sig, other = signal_msg(user, str(uuid.uuid4())), signal_msg(user, str(uuid.uuid4()), symbol="INFY")
        entry, stop, rejected = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        orders, books = OrderSink(pg_dsn), BookSink(pg_dsn)
        try:
            await orders.write(records(
                ORDER_ROWS,
                order_msg(user, entry, "PENDING", t(1), signal=sig),
                order_msg(user, entry, "COMPLETE", t(1), signal=sig, average_price="3501.75"),
                order_msg(user, stop, "OPEN", t(1), signal_id=sig["id"], executes_signal=False, order_type="SL-M",
                          side="SELL") | {"order_timestamp": t(2)},
                order_msg(user, rejected, "REJECTED", t(3), signal=other, symbol="INFY",
                          rejection_reason="max_positions") | {"order_timestamp": t(3)},
            ))
            await books.write(records(BOOK_ROWS, book_msg(user, t(4), [("TCS", 10, "3501.75", "3510.00")])))
        finally:
            await orders.close()
            await books.close()
        return {"user": user, "entry": entry, "stop": stop, "rejected": rejected}

    return pg_dsn, asyncio.run(fill())


def test_orders_newest_first_as_json_and_as_a_table(trading_db, tmp_path):
    dsn, ids = trading_db
    result = sharewise("orders", "--json", home=tmp_path, database_url=dsn)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [ids["rejected"], ids["stop"], ids["entry"]]  # by order time, newest first
    assert all(set(r) == {*ORDER_COLUMNS, "email"} for r in rows)
    entry = rows[2]
    assert (entry["email"], entry["user_id"], entry["status"], entry["filled_quantity"]) == (
        DEMO_EMAIL, ids["user"], "COMPLETE", 10)
    assert (entry["average_price"], entry["fees"], entry["taxes"], entry["price"]) == ("3501.75", "20.00", "9.87", None)
    assert datetime.fromisoformat(entry["order_timestamp"]) == datetime.fromisoformat(t(1))
    assert entry["order_timestamp"].endswith("+05:30")

    rejected = sharewise("orders", "--status", "rejected", "--user", DEMO_EMAIL.upper(), "--json", home=tmp_path,
                         database_url=dsn)
    assert rejected.returncode == 0, rejected.stderr
    assert [(r["symbol"], r["rejection_reason"]) for r in json.loads(rejected.stdout)] == [("INFY", "max_positions")]

    table = sharewise("orders", "--user", DEMO_EMAIL, home=tmp_path, database_url=dsn)
    assert table.returncode == 0, table.stderr
    assert "3,501.75" in table.stdout and "max_positions" in table.stdout and "trigger 3,480.00" in table.stdout
    assert "3 order(s), newest first" in table.stdout


@pytest.mark.parametrize("args, message", [
    (("orders", "--user", "nobody@example.com"), "no user with email 'nobody@example.com'"),
    (("orders", "--status", "FILLED"), "--status must be one of PENDING, OPEN, COMPLETE, CANCELLED, REJECTED"),
    (("positions", "--user", "nobody@example.com", "--json"), "no user with email"),
    (("risk", "halt", "--user", "nobody@example.com"), "no user with email"),
])
def test_an_unknown_email_or_status_is_one_clear_line_and_exit_2(pg_dsn, tmp_path, args, message):
    asyncio.run(seed_demo(pg_dsn))
    result = sharewise(*args, home=tmp_path, database_url=pg_dsn)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_positions_show_holdings_portfolio_and_trading_state(trading_db, tmp_path):
    dsn, ids = trading_db
    result = sharewise("positions", "--json", home=tmp_path, database_url=dsn)
    assert result.returncode == 0, result.stderr
    (user,) = json.loads(result.stdout)
    assert list(user) == ["user_id", "email", "trading_state", "state_reason", "portfolio", "holdings"]
    assert (user["user_id"], user["email"], user["trading_state"], user["state_reason"]) == (
        ids["user"], DEMO_EMAIL, "ACTIVE", None)
    portfolio = user["portfolio"]
    assert (portfolio["name"], portfolio["available_cash"], portfolio["realized_pnl"]) == (
        "Paper Portfolio", "965000.00", "-30.00")
    assert datetime.fromisoformat(portfolio["updated_at"]) == datetime.fromisoformat(t(4))
    assert user["holdings"] == [{"symbol": "TCS", "quantity": 10, "average_price": "3501.75",
                                 "current_price": "3510.00", "last_price_update": t(4), "unrealized_pnl": "82.50"}]

    async def halt() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await set_manual_state(conn, ids["user"], "HALTED", "by hand", datetime.fromisoformat(t(5)))
        finally:
            await conn.close()

    asyncio.run(halt())
    table = sharewise("positions", "--user", DEMO_EMAIL, home=tmp_path, database_url=dsn)
    assert table.returncode == 0, table.stderr
    assert "trading state ACTIVE" in table.stdout and "set by hand: HALTED (by hand)" in table.stdout
    assert "Paper Portfolio" in table.stdout and "cash 965,000.00" in table.stdout and "TCS" in table.stdout


def test_risk_halt_without_a_broker_saves_the_state_for_the_engine_to_load(pg_dsn, tmp_path):
    asyncio.run(seed_demo(pg_dsn))
    assert sharewise("risk", "status", "--json", home=tmp_path, database_url=pg_dsn).stdout.strip() == "[]"
    halted = sharewise("risk", "halt", "--user", DEMO_EMAIL, "--reason", "results day", home=tmp_path,
                       database_url=pg_dsn)
    assert halted.returncode == 0, halted.stderr
    assert f"{DEMO_EMAIL}: trading state HALTED (results day)" in halted.stdout
    assert f"no Kafka broker is running: {LATER}" in halted.stdout

    status = sharewise("risk", "status", "--json", home=tmp_path, database_url=pg_dsn)
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert list(row) == RISK_KEYS
    assert (row["email"], row["state"], row["reason"], row["effective_state"], row["as_of"]) == (
        DEMO_EMAIL, "HALTED", "results day", None, None)
    assert abs(time.time() - datetime.fromisoformat(row["changed_at"]).timestamp()) < 120

    reduced = sharewise("risk", "reduce", "--user", DEMO_EMAIL, home=tmp_path, database_url=pg_dsn)
    assert reduced.returncode == 0 and "trading state REDUCING" in reduced.stdout
    table = sharewise("risk", "status", home=tmp_path, database_url=pg_dsn)
    assert table.returncode == 0 and "REDUCING" in table.stdout and DEMO_EMAIL in table.stdout
    resumed = sharewise("risk", "resume", "--user", DEMO_EMAIL, home=tmp_path, database_url=pg_dsn)
    assert resumed.returncode == 0
    (row,) = json.loads(sharewise("risk", "status", "--json", home=tmp_path, database_url=pg_dsn).stdout)
    assert (row["state"], row["reason"]) == ("ACTIVE", None)


def test_risk_halt_with_an_unreachable_broker_warns_and_still_exits_0(pg_dsn, tmp_path):
    asyncio.run(seed_demo(pg_dsn))
    result = sharewise("risk", "halt", "--user", DEMO_EMAIL, home=tmp_path, database_url=pg_dsn,
                       kafka="kafka://127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
    assert f"the risk command was not sent: {LATER}" in result.stdout


def test_risk_halt_sends_the_command_to_a_running_engines_broker(pg_dsn, tmp_path, kafka_broker_factory):
    """The broker is found the way other commands find the embedded one: $SHAREWISE_HOME/broker.json, written
    by a running ``up`` or ``worker``."""
    broker = kafka_broker_factory()
    kafka_bootstrap = broker.bootstrap
    user = str(asyncio.run(seed_demo(pg_dsn))["user_id"])
    no_topic = sharewise("risk", "reduce", "--user", DEMO_EMAIL, home=tmp_path, database_url=pg_dsn,
                         kafka=f"kafka://{kafka_bootstrap}")
    assert no_topic.returncode == 0, no_topic.stderr
    assert f"the engine has not run on the broker at {kafka_bootstrap} yet" in no_topic.stdout
    asyncio.run(ensure_topics(kafka_bootstrap, {ORDERS_INPUTS: 2}))
    (tmp_path / "broker.json").write_text(json.dumps({"pid": broker.pid, "bootstrap": kafka_bootstrap}))
    reason = f"cli test {uuid.uuid4().hex[:8]}"
    result = sharewise("risk", "halt", "--user", DEMO_EMAIL, "--reason", reason, home=tmp_path, database_url=pg_dsn)
    assert result.returncode == 0, result.stderr
    assert f"risk command sent to the engine through {kafka_bootstrap}" in result.stdout

    async def find() -> list:
        partitions = (await list_topics(kafka_bootstrap))[ORDERS_INPUTS]
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(ORDERS_INPUTS, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    found = [r for r in batch if reason.encode() in (r.value or b"")]
                    if found:
                        return found
            return []
        finally:
            await consumer.stop()

    (record,) = asyncio.run(find())
    message = orjson.loads(record.value)
    assert record.key == user.encode()
    assert set(message) == {"kind", "id", "user_id", "state", "reason", "at"}
    assert (message["kind"], message["user_id"], message["state"], message["reason"]) == ("risk", user, "HALTED",
                                                                                          reason)
    uuid.UUID(message["id"])
    status = json.loads(sharewise("risk", "status", "--json", home=tmp_path, database_url=pg_dsn).stdout)
    assert [(r["state"], r["reason"]) for r in status] == [("HALTED", reason)]
    assert datetime.fromisoformat(message["at"]) == datetime.fromisoformat(status[0]["changed_at"])
