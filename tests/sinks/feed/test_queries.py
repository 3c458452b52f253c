"""The ``history`` and ``positions`` ops on real connections: what they read, in which order, for whom."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from db.connect import connect
from engine.domain import IST
from tests.sinks.feed.support import FeedClient, FeedEnv, Publisher, add_user, bar, issue_token, signal

T0 = datetime(2026, 11, 2, 9, 15, tzinfo=IST)


async def _bars_rows(dsn: str, symbol: str, timeframe: str, n: int, step: timedelta) -> None:
    conn = await connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO analytics_marketdata (symbol, timestamp, open_price, high_price, low_price, close_price,"
            " volume, timeframe, technical_indicators) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [(symbol, T0 + i * step, Decimal("100.05") + i, Decimal("101.5") + i, Decimal("99.95") + i,
              Decimal("100.75") + i, 1000 + i, timeframe, '{"ema_20": %s, "rsi_14": null}' % (100 + i / 4))
             for i in range(n)],
        )
    finally:
        await conn.close()


async def _wait_seq(client: FeedClient, channel: str, seq: int) -> None:
    """Until the feed has sequenced ``seq`` messages of ``channel`` (history answers name the latest seq)."""
    for _ in range(200):
        if (await client.request({"op": "history", "channel": channel, "limit": 1}))["seq"] >= seq:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{channel} never reached seq {seq}")


def test_bars_history_is_the_stored_bars_of_one_symbol_and_timeframe_oldest_first(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn, tier="FREE")
        await _bars_rows(feed_env.dsn, "TCS", "5m", 40, timedelta(minutes=5))
        await _bars_rows(feed_env.dsn, "TCS", "1m", 10, timedelta(minutes=1))
        await _bars_rows(feed_env.dsn, "INFY", "5m", 10, timedelta(minutes=5))
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            client = await FeedClient.authed(server.address, await issue_token(feed_env, user))
            await pub.bars([bar("TCS", m) for m in range(3)])
            await pub.flush()
            for _ in range(200):  # the live bars get their seqs
                answer = await client.request({"op": "history", "channel": "bars", "symbol": "tcs",
                                               "timeframe": "5m", "limit": 25})
                if answer["seq"] == 3:
                    break
                await asyncio.sleep(0.05)
            assert {k: answer[k] for k in ("op", "channel", "symbol", "timeframe", "limit", "seq")} == {
                "op": "history", "channel": "bars", "symbol": "TCS", "timeframe": "5m", "limit": 25, "seq": 3}
            data = answer["data"]
            assert len(data) == 25 and [b["symbol"] for b in data] == ["TCS"] * 25
            assert [b["time"] for b in data] == [(T0 + timedelta(minutes=5 * i)).isoformat() for i in range(15, 40)]
            assert data[0]["time"].endswith("+05:30") and data[0]["timeframe"] == "5m"
            first = data[0]
            assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
                115.05, 116.5, 114.95, 115.75, 1015)
            assert first["indicators"] == {"ema_20": 103.75, "rsi_14": None}
            # subscribing with since_seq = the answer's seq goes on with what came after, nothing before
            assert (await client.subscribe("bars", symbols=["TCS"], since_seq=answer["seq"]))["seq"] == 3
            await pub.bars([bar("TCS", 3)])
            await pub.flush()
            frame = await client.recv()
            assert (frame["op"], frame["seq"], frame["data"]["time"]) == ("bar", 4, bar("TCS", 3)["time"])
            empty = await client.request({"op": "history", "channel": "bars", "symbol": "WIPRO", "timeframe": "1d"})
            assert (empty["limit"], empty["data"]) == (300, [])
            await client.close()

    asyncio.run(scenario())


def test_signals_history_is_the_users_latest_and_resumes_live_without_gap(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            client = await FeedClient.authed(server.address, await issue_token(feed_env, user))
            sent = [signal(user, symbol="TCS" if i % 3 == 0 else "INFY", entry_price=f"{1500 + i}.25",
                           confidence_score="0.82") for i in range(30)]
            for message in sent:
                await pub.personal("signals", message)
            await pub.flush()
            await _wait_seq(client, "signals", 30)
            answer = await client.request({"op": "history", "channel": "signals", "limit": 12})
            assert (answer["seq"], answer["symbol"]) == (30, None)
            assert [s["id"] for s in answer["data"]] == [m["id"] for m in sent[-12:]]
            assert answer["data"][-1]["entry_price"] == 1529.25 and answer["data"][-1]["confidence_score"] == 0.82
            tcs = await client.request({"op": "history", "channel": "signals", "symbol": "TCS", "limit": 500})
            assert [s["id"] for s in tcs["data"]] == [m["id"] for m in sent if m["symbol"] == "TCS"]
            # live after history: subscribe from its seq; a message published meanwhile is not lost
            late = signal(user)
            await pub.personal("signals", late)
            await pub.flush()
            assert (await client.subscribe("signals", since_seq=answer["seq"]))["op"] == "subscribed"
            frame = await client.recv()
            assert (frame["seq"], frame["data"]["id"]) == (31, late["id"])
            await client.close()

    asyncio.run(scenario())


def test_another_tenants_history_and_book_are_never_returned(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        me, other = await add_user(feed_env.dsn), await add_user(feed_env.dsn)
        await _portfolio(feed_env.dsn, other, "OTHERCO", 7)
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            mine = [signal(me, symbol="TCS") for _ in range(3)]
            theirs = [signal(other, symbol="TCS") for _ in range(5)]
            for message in theirs + mine:
                await pub.personal("signals", message)
            for message in theirs:
                await pub.personal("orders", _order(other, message))
            await pub.flush()
            watcher = await FeedClient.authed(server.address, await issue_token(feed_env, other))
            await _wait_seq(watcher, "signals", 5)
            await _wait_seq(watcher, "orders", 5)
            client = await FeedClient.authed(server.address, await issue_token(feed_env, me))
            await _wait_seq(client, "signals", 3)
            got = await client.request({"op": "history", "channel": "signals", "symbol": "TCS", "limit": 500})
            assert [s["id"] for s in got["data"]] == [m["id"] for m in mine] and got["seq"] == 3
            orders = await client.request({"op": "history", "channel": "orders", "limit": 500})
            assert (orders["data"], orders["seq"]) == ([], 0)
            book = await client.request({"op": "positions"})
            assert book == {"op": "positions", "data": {"portfolios": [],
                                                        "trading_state": {"state": "ACTIVE", "reason": None}}}
            # a client cannot name another user: the ops take no user at all, and extra fields change nothing
            sneaky = await client.request({"op": "history", "channel": "orders", "user_id": other, "limit": 5})
            assert sneaky["data"] == []
            await client.close()
            await watcher.close()

    asyncio.run(scenario())


def test_positions_are_the_users_portfolios_holdings_and_trading_state(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        portfolio = await _portfolio(feed_env.dsn, user, "RELIANCE", 10)
        conn = await connect(feed_env.dsn)
        try:
            await conn.execute("INSERT INTO engine.trading_state (user_id, state, reason, changed_at)"
                               " VALUES ($1, 'HALTED', 'daily loss limit', now())", user)
        finally:
            await conn.close()
        async with feed_env.server() as server:
            client = await FeedClient.authed(server.address, await issue_token(feed_env, user))
            book = (await client.request({"op": "positions"}))["data"]
            [p] = book["portfolios"]
            assert (p["id"], p["available_cash"], p["total_value"], p["realized_pnl"]) == (
                portfolio, 975500.5, 1000120.0, -12.4)
            [h] = p["holdings"]
            assert h == {"symbol": "RELIANCE", "quantity": 10, "average_price": 2450.5, "current_price": 2462.5,
                         "unrealized_pnl": 120.0, "last_price_update": "2026-11-02T10:00:00+05:30"}
            assert book["trading_state"] == {"state": "HALTED", "reason": "daily loss limit"}
            await client.close()
            limited = await FeedClient.authed(server.address,
                                              await issue_token(feed_env, user, channels=("signals", "bars")))
            await limited.send({"op": "positions"})
            assert (await limited.close_code())[0] == 4403

    asyncio.run(scenario())


@pytest.mark.parametrize(("frame", "detail"), [
    ({"op": "history", "channel": "bars", "timeframe": "5m"}, "bars history needs one symbol"),
    ({"op": "history", "channel": "bars", "symbol": "TCS", "timeframe": "2m"}, "timeframe must be one of"),
    ({"op": "history", "channel": "bars", "symbol": "TCS", "timeframe": "5m", "limit": 1001}, "limit must be"),
    ({"op": "history", "channel": "signals", "limit": 0}, "limit must be"),
    ({"op": "history", "channel": "signals", "timeframe": "5m"}, "timeframe applies to bars history only"),
    ({"op": "history", "channel": "portfolios"}, "history channel must be one of"),
])
def test_bad_history_requests_get_an_error_frame_and_the_connection_stays(feed_env: FeedEnv, frame: dict,
                                                                          detail: str) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        async with feed_env.server() as server:
            client = await FeedClient.authed(server.address, await issue_token(feed_env, user))
            answer = await client.request(frame)
            assert answer["op"] == "error" and answer["reason"] == "bad_argument" and detail in answer["detail"]
            assert (await client.request({"op": "ping"}))["op"] == "pong"
            await client.close()

    asyncio.run(scenario())


async def _portfolio(dsn: str, user: str, symbol: str, quantity: int) -> str:
    conn = await connect(dsn)
    try:
        portfolio = await conn.fetchval(
            "INSERT INTO portfolios_portfolio (user_id, name, total_value, available_cash, invested_amount,"
            " unrealized_pnl, realized_pnl) VALUES ($1, 'Paper', 1000120.00, 975500.50, 24505.00, 120.00, -12.40)"
            " RETURNING id", user)
        await conn.execute(
            "INSERT INTO portfolios_holding (portfolio_id, symbol, quantity, average_price, current_price,"
            " last_price_update, unrealized_pnl) VALUES ($1, $2, $3, 2450.50, 2462.50, $4, 120.00)",
            portfolio, symbol, quantity, datetime(2026, 11, 2, 10, 0, tzinfo=IST))
    finally:
        await conn.close()
    return str(portfolio)


def _order(user: str, sig: dict) -> dict:
    return {"event_id": str(uuid.uuid4()), "id": str(uuid.uuid4()), "user_id": user, "symbol": sig["symbol"],
            "status": "COMPLETE", "quantity": 10, "price": None, "average_price": "2450.50",
            "updated_at": "2026-11-02T10:00:00+05:30"}



def test_bars_history_has_the_bars_the_feed_sequenced_before_the_sink_stored_them(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        conn = await connect(feed_env.dsn)
        try:  # minutes 0-2 stored by the bars' sink; 2-5 only published (the sink lags)
            await conn.executemany(
                "INSERT INTO analytics_marketdata (symbol, timestamp, close_price, timeframe)"
                " VALUES ($1, $2, $3, '1m')",
                [("INFY", datetime.fromisoformat(bar("INFY", m)["time"]), Decimal("200.5")) for m in range(3)])
        finally:
            await conn.close()
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            client = await FeedClient.authed(server.address, await issue_token(feed_env, user))
            await pub.bars([bar("INFY", m, close=100.0 + m) for m in range(2, 6)] + [bar("TCS", 9)])
            await pub.flush()
            for _ in range(200):
                answer = await client.request({"op": "history", "channel": "bars", "symbol": "INFY",
                                               "timeframe": "1m", "limit": 5})
                if answer["seq"] == 5:
                    break
                await asyncio.sleep(0.05)
            assert [b["time"] for b in answer["data"]] == [bar("INFY", m)["time"] for m in range(1, 6)]
            assert [b["close"] for b in answer["data"]] == [200.5, 200.5, 103.0, 104.0, 105.0]  # stored rows win
            await client.close()

    asyncio.run(scenario())
