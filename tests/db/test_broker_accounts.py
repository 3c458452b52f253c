"""db.broker_accounts on a real database: tokens sealed per row, listing without secrets, disconnecting, credentials."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from typing import Any

import asyncpg
import pytest

from db.broker_accounts import (ACCOUNT_KEYS, LIVE_BROKERS, account_credentials, account_rows, broker_id_by_name,
                                connect_account, disconnect_account)
from db.seed_demo import seed_demo
from engine.credentials import CredentialsUnavailable, SecretBox, SecretUnreadable
from engine.errors import ConfigError

BOX = SecretBox(bytes(range(32)))
API_KEY = "kite-api-key-0001"


def run(dsn: str, scenario: Any) -> Any:
    async def main() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await scenario(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def canary() -> str:
    return f"canary-{secrets.token_hex(16)}"


@pytest.fixture
def tenant(pg_dsn):
    seeded = asyncio.run(seed_demo(pg_dsn))
    return pg_dsn, str(seeded["user_id"]), seeded["broker_ids"], str(seeded["paper_account_id"])


async def stored(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record:
    return await conn.fetchrow("SELECT * FROM brokers_userbrokeraccount WHERE id = $1", uuid.UUID(account_id))


def test_broker_rows_are_found_by_name_in_any_case(tenant):
    dsn, _, broker_ids, _ = tenant

    async def scenario(conn):
        return [await broker_id_by_name(conn, name.upper()) for name in LIVE_BROKERS], \
            await broker_id_by_name(conn, "Dhan")

    found, missing = run(dsn, scenario)
    assert found == [broker_ids[name] for name in LIVE_BROKERS] and missing is None


def test_connect_seals_the_token_per_row_and_reconnect_updates_the_same_row(tenant):
    dsn, user, broker_ids, _ = tenant
    token, refresh, newer = canary(), canary(), canary()

    async def scenario(conn):
        first = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Zerodha"], api_key=API_KEY,
                                      access_token=token, refresh_token=refresh, client_code="AB1234")
        row = dict(await stored(conn, first.account_id))
        creds = await account_credentials(conn, first.account_id, BOX)
        second = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Zerodha"], api_key="key-2",
                                       access_token=newer)
        return first, row, creds, second, dict(await stored(conn, second.account_id)), \
            await account_credentials(conn, second.account_id, BOX)

    first, row, creds, second, after, creds_after = run(dsn, scenario)
    assert first.created and not second.created and second.account_id == first.account_id
    assert row["access_token"].startswith(f"v1:{BOX.key_id}:") and row["refresh_token"].startswith("v1:")
    for column in ("access_token", "refresh_token"):
        assert token not in row[column] and refresh not in row[column]
    assert (row["broker_user_id"], row["api_key"], row["is_active"]) == ("AB1234", API_KEY, True)
    assert creds.access_token.reveal() == token and creds.refresh_token.reveal() == refresh
    assert (creds.broker, creds.api_base_url, creds.client_code, creds.user_id) == (
        "Zerodha", "https://api.kite.trade", "AB1234", user)
    assert creds.api_key.reveal() == API_KEY and token not in repr(creds) and API_KEY not in repr(creds)
    # a reconnect is a new session: the old refresh token and client code do not survive it
    assert after["refresh_token"] is None and after["broker_user_id"] is None and after["api_key"] == "key-2"
    assert creds_after.access_token.reveal() == newer and creds_after.refresh_token is None
    assert after["updated_at"] >= row["updated_at"]


def test_a_sealed_token_copied_to_another_row_does_not_open(tenant):
    dsn, user, broker_ids, _ = tenant
    token = canary()

    async def scenario(conn):
        kite = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Zerodha"], api_key=API_KEY,
                                     access_token=token)
        upstox = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Upstox"], api_key=API_KEY,
                                       access_token=canary())
        await conn.execute("UPDATE brokers_userbrokeraccount SET access_token = (SELECT access_token FROM"
                           " brokers_userbrokeraccount WHERE id = $1) WHERE id = $2",
                           uuid.UUID(kite.account_id), uuid.UUID(upstox.account_id))
        with pytest.raises(SecretUnreadable) as caught:
            await account_credentials(conn, upstox.account_id, BOX)
        return caught.value

    error = run(dsn, scenario)
    assert error.reason == "tampered" and token not in str(error)


def test_a_wrong_key_fails_clearly_without_the_token(tenant):
    dsn, user, broker_ids, _ = tenant
    token = canary()

    async def scenario(conn):
        done = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["AngelOne"], api_key=API_KEY,
                                     access_token=token, client_code="S123")
        with pytest.raises(SecretUnreadable) as caught:
            await account_credentials(conn, done.account_id, SecretBox(os.urandom(32)))
        return caught.value

    error = run(dsn, scenario)
    assert error.reason == "wrong_key" and "SHAREWISE_SECRET_KEY" in str(error) and token not in str(error)


def test_the_list_reads_no_token_and_masks_the_api_key(tenant):
    dsn, user, broker_ids, paper = tenant
    token = canary()

    async def scenario(conn):
        done = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Upstox"], api_key=API_KEY,
                                     access_token=token, client_code="UP1")
        other = await conn.fetchval("INSERT INTO users_customuser (email) VALUES ('b@x.in') RETURNING id")
        return done, await account_rows(conn), await account_rows(conn, user_id=str(other))

    done, rows, none = run(dsn, scenario)
    assert none == []
    assert [(r["broker"], r["id"]) for r in rows] == [("Paper", paper), ("Upstox", done.account_id)]
    upstox = rows[1]
    assert list(upstox) == list(ACCOUNT_KEYS)
    assert (upstox["client_code"], upstox["api_key"], upstox["is_active"], upstox["token"], upstox["refresh_token"]) \
        == ("UP1", "****0001", True, True, False)
    assert rows[0]["token"] is False and rows[0]["api_key"] is None
    assert token not in repr(rows) and API_KEY not in repr(rows)


def test_disconnect_wipes_the_tokens_keeps_the_row_and_its_orders(tenant):
    dsn, user, broker_ids, paper = tenant

    async def scenario(conn):
        done = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Zerodha"], api_key=API_KEY,
                                     access_token=canary(), refresh_token=canary(), client_code="AB1234")
        await conn.execute("INSERT INTO trading_order (user_id, broker_account_id, symbol, order_type,"
                           " transaction_type, quantity) VALUES ($1, $2, 'TCS', 'MARKET', 'BUY', 1)",
                           uuid.UUID(user), uuid.UUID(done.account_id))
        first = await disconnect_account(conn, done.account_id)
        again = await disconnect_account(conn, done.account_id.upper())
        row = dict(await stored(conn, done.account_id))
        orders = await conn.fetchval("SELECT count(*) FROM trading_order WHERE broker_account_id = $1",
                                     uuid.UUID(done.account_id))
        with pytest.raises(CredentialsUnavailable) as caught:
            await account_credentials(conn, done.account_id, BOX)
        return first, again, row, orders, caught.value

    first, again, row, orders, error = run(dsn, scenario)
    assert (first, again, orders) == (True, False, 1)
    assert (row["is_active"], row["access_token"], row["refresh_token"], row["token_expires_at"]) == (
        False, None, None, None)
    assert (row["api_key"], row["broker_user_id"]) == (API_KEY, "AB1234")
    assert error.reason == "inactive"


def test_the_paper_account_is_never_connected_or_disconnected(tenant):
    dsn, user, broker_ids, paper = tenant

    async def scenario(conn):
        with pytest.raises(ConfigError, match="paper account"):
            await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Paper"], api_key=API_KEY,
                                  access_token="t")
        with pytest.raises(ConfigError, match="is the paper account"):
            await disconnect_account(conn, paper)
        with pytest.raises(CredentialsUnavailable) as caught:
            await account_credentials(conn, paper, BOX)
        return caught.value.reason, await conn.fetchval(
            "SELECT is_active FROM brokers_userbrokeraccount WHERE id = $1", uuid.UUID(paper))

    assert run(dsn, scenario) == ("not_a_broker", True)


def test_unknown_or_unusable_accounts_are_named_errors(tenant):
    dsn, user, broker_ids, _ = tenant

    async def scenario(conn):
        missing = str(uuid.uuid4())
        with pytest.raises(ConfigError, match=f"no broker account {missing}"):
            await disconnect_account(conn, missing)
        with pytest.raises(ConfigError, match="a broker account id is a UUID"):
            await disconnect_account(conn, "not-an-id")
        with pytest.raises(CredentialsUnavailable) as no_account:
            await account_credentials(conn, missing, BOX)
        done = await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Upstox"], api_key=API_KEY,
                                     access_token=canary())
        await conn.execute("UPDATE brokers_userbrokeraccount SET access_token = NULL WHERE id = $1",
                           uuid.UUID(done.account_id))
        with pytest.raises(CredentialsUnavailable) as no_token:
            await account_credentials(conn, done.account_id, BOX)
        return no_account.value, no_token.value

    no_account, no_token = run(dsn, scenario)
    assert (no_account.reason, no_token.reason) == ("no_account", "no_token")
    assert "connect it again" in str(no_token)


def test_concurrent_first_connects_make_one_row_whose_token_opens(tenant):
    dsn, user, broker_ids, _ = tenant
    tokens = [canary() for _ in range(4)]

    async def one(token: str):
        conn = await asyncpg.connect(dsn)
        try:
            return await connect_account(conn, BOX, user_id=user, broker_id=broker_ids["Zerodha"], api_key=API_KEY,
                                         access_token=token)
        finally:
            await conn.close()

    async def scenario(conn):
        done = await asyncio.gather(*(one(t) for t in tokens))
        return done, await account_credentials(conn, done[0].account_id, BOX)

    done, creds = run(dsn, scenario)
    assert len({d.account_id for d in done}) == 1 and sum(d.created for d in done) == 1
    assert creds.access_token.reveal() in tokens
