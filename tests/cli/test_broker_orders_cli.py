"""``sharewise broker orders ACCOUNT`` as a user runs it: a real database, the broker's fake, a subprocess.

Each test puts four orders in place: one the broker and we agree on, one the broker filled while ours still says
OPEN, one only at the broker, one only ours. The account's token is a canary that must never be printed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from db.seed_demo import DEMO_EMAIL
from engine.credentials import Secret
from engine.orders.ids import order_tag
from engine.ports import OrderRequest
from sinks.brokers import KiteAdapter, UpstoxAdapter
from tests.cli.test_broker_cli import API_KEY, canary, connect, demo, query, sharewise  # noqa: F401 - demo: fixture
from tests.fixtures.brokers import KiteFake, UpstoxFake

RELIANCE = {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"}}


def connected_account(home: Path, dsn: str, token: str, broker: str, name: str, base_url: str) -> str:
    """A connected account of the demo user whose broker row points at the fake."""
    done = connect(home, dsn, token, "--json", broker=broker)
    assert done.returncode == 0, done.stderr
    query(dsn, "UPDATE brokers_broker SET api_base_url = $1 WHERE name = $2", base_url, name)
    return json.loads(done.stdout)["account_id"]


def our_order(dsn: str, account: str, symbol: str, side: str, order_type: str, qty: int, status: str,
              filled: int = 0, average: str | None = None, broker_order_id: str | None = None) -> str:
    """A ``trading_order`` row of the account, placed now; returns its tag."""
    ident = uuid.uuid4()
    query(dsn, "INSERT INTO trading_order (id, user_id, broker_account_id, broker_order_id, symbol, order_type,"
               " transaction_type, quantity, status, filled_quantity, average_price, order_timestamp)"
               " SELECT $1, id, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() FROM users_customuser WHERE email = $11",
          ident, uuid.UUID(account), broker_order_id, symbol, order_type, side, qty, status, filled,
          None if average is None else Decimal(average), DEMO_EMAIL)
    return order_tag(ident)


def four_orders(dsn: str, account: str, adapter: Any, fake: Any) -> dict[str, str]:
    """The four cases, at the broker (through its adapter and the fake's market) and in trading_order:
    {match: tag}."""
    tags = {"same": our_order(dsn, account, "RELIANCE", "BUY", "MARKET", 10, "COMPLETE", 10, "2500.50"),
            "differs": our_order(dsn, account, "RELIANCE", "SELL", "LIMIT", 5, "OPEN"),
            "only_ours": our_order(dsn, account, "RELIANCE", "BUY", "LIMIT", 3, "PENDING"),
            "only_broker": uuid.uuid4().hex[:20]}

    async def place() -> list[str]:
        try:
            fake.auto_fill_market("2500.50")
            a = await adapter.place(OrderRequest(tags["same"], "RELIANCE", "BUY", 10, "MARKET", "MIS"))
            fake.auto_fill_market(None)
            b = await adapter.place(OrderRequest(tags["differs"], "RELIANCE", "SELL", 5, "LIMIT", "MIS",
                                                 price=Decimal("2600")))
            c = await adapter.place(OrderRequest(tags["only_broker"], "RELIANCE", "BUY", 1, "LIMIT", "MIS",
                                                 price=Decimal("2400")))
            return [a.broker_order_id, b.broker_order_id, c.broker_order_id]
        finally:
            await adapter.close()

    same_id, differs_id, _ = asyncio.run(place())
    fake.fill(differs_id, "2601.25")  # the broker filled it; ours still says OPEN
    query(dsn, "UPDATE trading_order SET broker_order_id = $1 WHERE status = 'COMPLETE' AND broker_account_id = $2",
          same_id, uuid.UUID(account))
    return tags


def check_listing(result, tags: dict[str, str], account: str, broker: str, token: str) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert (doc["account"], doc["broker"]) == (account, broker)
    assert doc["counts"] == {"same": 1, "differs": 1, "only_ours": 1, "only_broker": 1}
    rows = {r["tag"]: r for r in doc["orders"]}
    assert {rows[t]["match"]: t for t in rows} == tags
    same, differs = rows[tags["same"]], rows[tags["differs"]]
    assert (same["symbol"], same["side"], same["type"], same["quantity"]) == ("RELIANCE", "BUY", "MARKET", 10)
    assert (same["our_status"], same["our_filled"], same["our_average_price"]) == ("COMPLETE", 10, 2500.5)
    assert (same["broker_status"], same["broker_filled"], same["broker_average_price"]) == ("COMPLETE", 10, 2500.5)
    assert (differs["our_status"], differs["our_filled"], differs["our_average_price"]) == ("OPEN", 0, None)
    assert (differs["broker_status"], differs["broker_filled"], differs["broker_average_price"]) == (
        "COMPLETE", 5, 2601.25)
    assert differs["broker_order_id"]
    only_ours, only_broker = rows[tags["only_ours"]], rows[tags["only_broker"]]
    assert (only_ours["our_status"], only_ours["broker_status"], only_ours["broker_order_id"]) == (
        "PENDING", None, None)
    assert (only_broker["symbol"], only_broker["our_status"], only_broker["broker_status"]) == (None, None, "OPEN")
    return doc


def test_kite_orders_beside_ours_and_an_expired_token(demo, tmp_path):  # noqa: F811 - demo is the fixture
    token, home = canary(), tmp_path / "home"
    with KiteFake(api_key=API_KEY, access_token=token) as kite:
        account = connected_account(home, demo, token, "zerodha", "Zerodha", kite.base_url)
        adapter = KiteAdapter(kite.base_url, api_key=Secret(API_KEY), access_token=Secret(token), timeout=5.0)
        tags = four_orders(demo, account, adapter, kite)

        listed = sharewise("broker", "orders", account, "--json", home=home, database_url=demo)
        check_listing(listed, tags, account, "Zerodha", token)
        table = sharewise("broker", "orders", account, home=home, database_url=demo)
        assert table.returncode == 0, table.stderr
        assert token not in table.stdout + table.stderr
        assert "4 order(s): 1 same, 1 differs, 1 only_ours, 1 only_broker" in table.stdout
        assert tags["differs"] in table.stdout and "differs" in table.stdout

        kite.token_expired()
        expired = sharewise("broker", "orders", account, home=home, database_url=demo)
    gone = sharewise("broker", "orders", account, home=home, database_url=demo)  # the fake is stopped
    assert gone.returncode == 2 and gone.stderr.startswith("error: broker_unavailable: kite")
    assert len(gone.stderr.strip().splitlines()) == 1 and token not in gone.stdout + gone.stderr
    assert expired.returncode == 2 and expired.stdout == ""
    assert expired.stderr.startswith("error: broker_token_expired: kite HTTP 403 TokenException")
    assert len(expired.stderr.strip().splitlines()) == 1 and "Traceback" not in expired.stderr
    assert token not in expired.stderr and API_KEY not in expired.stderr


def test_upstox_orders_beside_ours_and_accounts_that_cannot_be_read(demo, tmp_path):  # noqa: F811
    token, home = canary(), tmp_path / "home"
    with UpstoxFake(access_token=token, instruments={"NSE_EQ|INE002A01018": "RELIANCE"}) as upstox:
        account = connected_account(home, demo, token, "upstox", "Upstox", upstox.base_url)
        adapter = UpstoxAdapter(upstox.base_url, access_token=Secret(token), instruments=RELIANCE, timeout=5.0)
        tags = four_orders(demo, account, adapter, upstox)
        listed = sharewise("broker", "orders", account, "--json", home=home, database_url=demo)
        check_listing(listed, tags, account, "Upstox", token)

        (paper,) = query(demo, "SELECT a.id::text AS id FROM brokers_userbrokeraccount a"
                               " JOIN brokers_broker b ON b.id = a.broker_id WHERE b.name = 'Paper'")
        refused = sharewise("broker", "orders", paper["id"], home=home, database_url=demo)
        unknown = sharewise("broker", "orders", str(uuid.uuid4()), home=home, database_url=demo)
        not_uuid = sharewise("broker", "orders", "12345", home=home, database_url=demo)
        assert sharewise("broker", "disconnect", account, home=home, database_url=demo).returncode == 0
        inactive = sharewise("broker", "orders", account, home=home, database_url=demo)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: no broker account ")
    assert not_uuid.returncode == 2 and "is a UUID" in not_uuid.stderr
    assert inactive.returncode == 2 and inactive.stderr.startswith("error: broker_account_inactive: ")
    assert refused.returncode == 2 and "is the paper account" in refused.stderr
    for result in (unknown, not_uuid, inactive, refused):
        assert len(result.stderr.strip().splitlines()) == 1 and token not in result.stdout + result.stderr
