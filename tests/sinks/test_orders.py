"""The order and book sinks on a real database: newer wins, replays change nothing, books replace holdings,
hand-set trading states are left alone, and outages are retried."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
import pytest

from db.seed_demo import seed_demo
from db.trading import set_manual_state
from engine.orders.ids import PAPER_BROKER_ID, order_event_id, paper_account_id, paper_portfolio_id
from sinks.orders import BookSink, OrderSink
from sinks.postgres import SIGNALS, CopySink
from sinks.rows import APPLIED_OUTPUTS, output_sinks, signal_row
from streams import topics

ORDER_ROWS = APPLIED_OUTPUTS[topics.ORDERS][1]
BOOK_ROWS = APPLIED_OUTPUTS[topics.PORTFOLIOS][1]


def t(minute: int, second: int = 0) -> str:
    """A market time on 2024-01-02 (IST), ``minute`` minutes after 09:15."""
    return f"2024-01-02T{9 + (15 + minute) // 60:02d}:{(15 + minute) % 60:02d}:{second:02d}+05:30"


def signal_msg(user: str, sid: str, symbol: str = "TCS", minute: int = 1) -> dict[str, Any]:
    return {"id": sid, "timestamp": t(minute), "symbol": symbol, "strategy_name": "ema_cross", "signal_type": "BUY",
            "confidence_score": "0.70", "entry_price": "3500.00", "target_price": "3550.00", "stop_loss": "3480.00",
            "valid_until": t(minute + 1), "backtest_result": {}, "executed": False, "executed_price": None,
            "user_id": user, "created_by_strategy_id": None, "market_data": {"ema_9": 3499.5},
            "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00", "timeframe": "1m",
            "bar_time": t(minute - 1)}


def order_msg(user: str, oid: str, status: str, at: str, *, signal: dict | None = None, signal_id: str | None = None,
              executes_signal: bool = True, average_price: str | None = None, order_type: str = "MARKET",
              side: str = "BUY", symbol: str = "TCS", rejection_reason: str | None = None) -> dict[str, Any]:
    filled = 10 if status == "COMPLETE" else 0
    return {
        "event_id": str(order_event_id(uuid.UUID(oid), status)), "id": oid, "tag": uuid.UUID(oid).hex[:20],
        "user_id": user, "signal_id": signal_id or (signal["id"] if signal else None),
        "executes_signal": executes_signal, "strategy_id": None, "strategy_name": "ema_cross",
        "broker_account_id": str(paper_account_id(user)), "broker_order_id": f"paper-{uuid.UUID(oid).hex[:20]}",
        "symbol": symbol, "product": "MIS", "order_type": order_type, "transaction_type": side, "quantity": 10,
        "price": None, "trigger_price": "3480.00" if order_type == "SL-M" else None, "status": status,
        "filled_quantity": filled, "average_price": average_price, "order_timestamp": t(1),
        "exchange_timestamp": at if status == "COMPLETE" else None, "rejection_reason": rejection_reason,
        "fees": "20.00" if status == "COMPLETE" else "0.00", "taxes": "9.87" if status == "COMPLETE" else "0.00",
        "updated_at": at, "signal": signal,
    }


def book_msg(user: str, as_of: str, holdings: list[tuple[str, int, str, str]], *, cash: str = "965000.00",
             state: str = "ACTIVE", reason: str | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "user_id": user, "as_of": as_of, "portfolio_id": str(paper_portfolio_id(user)),
        "broker_account_id": str(paper_account_id(user)), "trading_state": state, "state_reason": reason,
        "portfolio": {"name": "Paper Portfolio", "total_value": "1000100.00", "available_cash": cash,
                      "invested_amount": "35000.00", "unrealized_pnl": "100.00", "realized_pnl": "-30.00"},
        "holdings": [{"symbol": s, "quantity": q, "average_price": avg, "current_price": cur,
                      "last_price_update": as_of, "unrealized_pnl": str((Decimal(cur) - Decimal(avg)) * q)} for s, q, avg, cur in holdings],
        "day": {"date": "2024-01-02", "realized": "-30.00", "unrealized": "100.00", "pnl": "70.00"},
    }


def records(builder: Any, *messages: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [row for m in messages for row in builder(orjson.dumps(m))]


async def demo_user(dsn: str) -> str:
    return str((await seed_demo(dsn))["user_id"])


async def new_user(conn: asyncpg.Connection, email: str) -> str:
    return str(await conn.fetchval("INSERT INTO users_customuser (email) VALUES ($1) RETURNING id", email))


def run(dsn: str, scenario: Any) -> Any:
    async def main() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await scenario(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


# --- registration and decoding ------------------------------------------------------------------


def test_every_worker_gets_a_sink_for_orders_and_portfolios():
    sinks = output_sinks("postgresql://nobody@127.0.0.1:1/none")
    assert set(sinks) == {topics.MARKET_BARS, topics.SIGNALS, topics.NOTIFICATIONS, topics.ORDERS, topics.PORTFOLIOS}
    assert isinstance(sinks[topics.ORDERS][0], OrderSink) and isinstance(sinks[topics.PORTFOLIOS][0], BookSink)
    assert all(isinstance(sinks[t][0], CopySink) for t in (topics.MARKET_BARS, topics.SIGNALS, topics.NOTIFICATIONS))
    assert sinks[topics.ORDERS][0].status.outage_since is None


@pytest.mark.parametrize("builder, value", [
    (ORDER_ROWS, b"{not json"),
    (ORDER_ROWS, b"[1, 2]"),
    (ORDER_ROWS, orjson.dumps({"id": str(uuid.UUID(int=1))})),
    (ORDER_ROWS, orjson.dumps(order_msg(str(uuid.uuid4()), str(uuid.uuid4()), "FILLED", t(2)))),
    (ORDER_ROWS, orjson.dumps(order_msg(str(uuid.uuid4()), str(uuid.uuid4()), "COMPLETE", t(2), average_price="x"))),
    (ORDER_ROWS, orjson.dumps(order_msg(str(uuid.uuid4()), str(uuid.uuid4()), "OPEN", "2024-01-02T09:17:00"))),
    (ORDER_ROWS, orjson.dumps(order_msg("alice", str(uuid.uuid4()), "OPEN", t(2)))),
    (ORDER_ROWS, orjson.dumps(order_msg(str(uuid.uuid4()), str(uuid.uuid4()), "OPEN", t(2)) | {"quantity": "10"})),
    (ORDER_ROWS, orjson.dumps(order_msg(str(uuid.uuid4()), str(uuid.uuid4()), "OPEN", t(2),
                                        signal=signal_msg(str(uuid.uuid4()), "s") | {"entry_price": "abc"}))),
    (BOOK_ROWS, orjson.dumps(book_msg(str(uuid.uuid4()), t(2), []) | {"trading_state": "PAUSED"})),
    (BOOK_ROWS, orjson.dumps(book_msg(str(uuid.uuid4()), t(2), [("TCS", 1, "1.00", "1.00")] * 2))),
    (BOOK_ROWS, orjson.dumps(book_msg(str(uuid.uuid4()), t(2), []) | {"holdings": {}})),
])
def test_a_message_the_engine_did_not_write_is_unreadable(builder, value):
    with pytest.raises((ValueError, KeyError, TypeError)):
        builder(value)


# --- orders ------------------------------------------------------------------------------------


async def _order(conn: asyncpg.Connection, oid: str) -> asyncpg.Record:
    return await conn.fetchrow("SELECT * FROM trading_order WHERE id = $1", uuid.UUID(oid))


def test_a_newer_change_wins_and_a_replayed_older_one_changes_nothing(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink = OrderSink(pg_dsn)
        try:
            oid, sig = str(uuid.uuid4()), signal_msg(user, str(uuid.uuid4()))
            pending = order_msg(user, oid, "PENDING", t(1), signal=sig)
            complete = order_msg(user, oid, "COMPLETE", t(1, 30), signal=sig, average_price="3501.75")
            assert await sink.write(records(ORDER_ROWS, pending)) == 1
            row = await _order(conn, oid)
            assert (row["status"], row["filled_quantity"], row["average_price"]) == ("PENDING", 0, None)
            assert row["created_at"] == row["order_timestamp"] == datetime.fromisoformat(t(1))
            assert await sink.write(records(ORDER_ROWS, complete)) == 1
            done = await _order(conn, oid)
            assert (done["status"], done["filled_quantity"], done["average_price"]) == ("COMPLETE", 10,
                                                                                        Decimal("3501.75"))
            assert (done["fees"], done["taxes"]) == (Decimal("20.00"), Decimal("9.87"))
            assert done["updated_at"] == done["exchange_timestamp"] == datetime.fromisoformat(t(1, 30))
            assert await sink.write(records(ORDER_ROWS, pending, complete)) == 0  # a replay: nothing applies
            assert dict(await _order(conn, oid)) == dict(done)
            assert sink.status.rows_written == 2 and sink.status.rows_duplicate == 2
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_at_one_market_time_the_status_rank_decides(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink = OrderSink(pg_dsn)
        try:
            oid, sig = str(uuid.uuid4()), signal_msg(user, str(uuid.uuid4()))
            stop = order_msg(user, oid, "OPEN", t(2), signal_id=sig["id"], executes_signal=False, order_type="SL-M",
                             side="SELL")
            entry = order_msg(user, str(uuid.uuid4()), "COMPLETE", t(2), signal=sig, average_price="3500.00")
            assert await sink.write(records(ORDER_ROWS, entry, stop)) == 2
            cancelled = stop | {"status": "CANCELLED", "event_id": str(order_event_id(uuid.UUID(oid), "CANCELLED"))}
            # CANCELLED (rank 2) over OPEN (rank 1) at the same time applies; PENDING (rank 0) at that time does not
            assert await sink.write(records(ORDER_ROWS, cancelled)) == 1
            assert await sink.write(records(ORDER_ROWS, stop | {"status": "PENDING"})) == 0
            assert (await _order(conn, oid))["status"] == "CANCELLED"
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_changes_of_one_order_in_one_batch_apply_in_message_order(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink = OrderSink(pg_dsn)
        try:
            sig = signal_msg(user, str(uuid.uuid4()))
            a, b = str(uuid.uuid4()), str(uuid.uuid4())
            batch = records(ORDER_ROWS,
                            order_msg(user, a, "PENDING", t(1), signal=sig),
                            order_msg(user, a, "OPEN", t(1), signal=sig),
                            order_msg(user, a, "COMPLETE", t(2), signal=sig, average_price="3500.10"),
                            # b's COMPLETE comes first: its late PENDING must not undo it
                            order_msg(user, b, "COMPLETE", t(3), signal=sig, average_price="3502.00"),
                            order_msg(user, b, "PENDING", t(1), signal=sig))
            assert await sink.write(batch) == 4
            assert (await _order(conn, a))["status"] == "COMPLETE"
            assert ((await _order(conn, b))["status"], (await _order(conn, b))["updated_at"]) == (
                "COMPLETE", datetime.fromisoformat(t(3)))
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_the_signal_row_is_written_before_its_order_exactly_as_the_signals_sink_writes_it(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink, signals = OrderSink(pg_dsn), CopySink(pg_dsn, SIGNALS)
        try:
            sig = signal_msg(user, str(uuid.uuid4()))
            assert await conn.fetchval("SELECT count(*) FROM trading_signal") == 0
            # the order references a signal the signals sink has not written yet: no foreign key violation
            assert await sink.write(records(ORDER_ROWS, order_msg(user, str(uuid.uuid4()), "PENDING", t(1),
                                                                  signal=sig))) == 1
            columns = ", ".join(SIGNALS.columns)
            row = await conn.fetchrow(f"SELECT {columns} FROM trading_signal WHERE id = $1", uuid.UUID(sig["id"]))
            expected = signal_row(sig)
            assert tuple(row)[:12] == expected[:12] and orjson.loads(row["market_data"]) == sig["market_data"]
            assert await signals.write([signal_row(sig)]) == 0  # the signals sink finds it there: a duplicate
        finally:
            await sink.close()
            await signals.close()

    run(pg_dsn, scenario)


def test_only_a_completed_order_that_executes_its_signal_marks_it_executed(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink = OrderSink(pg_dsn)
        executed = "SELECT executed, executed_price, updated_at FROM trading_signal WHERE id = $1"
        try:
            sig = signal_msg(user, str(uuid.uuid4()))
            entry = str(uuid.uuid4())
            await sink.write(records(ORDER_ROWS, order_msg(user, entry, "PENDING", t(1), signal=sig)))
            assert tuple(await conn.fetchrow(executed, uuid.UUID(sig["id"])))[:2] == (False, None)
            await sink.write(records(ORDER_ROWS, order_msg(user, entry, "COMPLETE", t(1), signal=sig,
                                                           average_price="3501.75")))
            assert tuple(await conn.fetchrow(executed, uuid.UUID(sig["id"]))) == (
                True, Decimal("3501.75"), datetime.fromisoformat(t(1)))
            # the resting stop of that entry fills later: it names the entry's signal but does not change it
            stop = order_msg(user, str(uuid.uuid4()), "COMPLETE", t(9), signal_id=sig["id"], executes_signal=False,
                             order_type="SL-M", side="SELL", average_price="3480.00")
            assert await sink.write(records(ORDER_ROWS, stop)) == 1
            assert tuple(await conn.fetchrow(executed, uuid.UUID(sig["id"]))) == (
                True, Decimal("3501.75"), datetime.fromisoformat(t(1)))
            # a rejected entry does not execute its signal
            other = signal_msg(user, str(uuid.uuid4()), symbol="INFY")
            await sink.write(records(ORDER_ROWS, order_msg(user, str(uuid.uuid4()), "REJECTED", t(3), signal=other,
                                                           symbol="INFY", rejection_reason="max_positions")))
            assert tuple(await conn.fetchrow(executed, uuid.UUID(other["id"])))[:2] == (False, None)
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_the_paper_account_is_created_once_on_first_need(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await new_user(conn, "trader@example.com")
        sink = OrderSink(pg_dsn)
        accounts = "SELECT id, broker_user_id FROM brokers_userbrokeraccount WHERE user_id = $1 AND broker_id = $2"
        try:
            sig = signal_msg(user, str(uuid.uuid4()))
            for minute, status in ((1, "PENDING"), (2, "OPEN")):
                await sink.write(records(ORDER_ROWS, order_msg(user, str(uuid.uuid4()), status, t(minute),
                                                               signal=sig)))
            rows = await conn.fetch(accounts, uuid.UUID(user), PAPER_BROKER_ID)
            assert [tuple(r) for r in rows] == [(paper_account_id(user), "PAPER")]
            assert {r["broker_account_id"] for r in await conn.fetch("SELECT broker_account_id FROM trading_order")} \
                == {paper_account_id(user)}
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_an_existing_paper_broker_account_under_another_id_is_used(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await new_user(conn, "old-trader@example.com")
        theirs = await conn.fetchval("INSERT INTO brokers_userbrokeraccount (user_id, broker_id, broker_user_id)"
                                     " VALUES ($1, $2, 'MINE') RETURNING id", uuid.UUID(user), PAPER_BROKER_ID)
        sink = OrderSink(pg_dsn)
        try:
            oid = str(uuid.uuid4())
            await sink.write(records(ORDER_ROWS, order_msg(user, oid, "PENDING", t(1),
                                                           signal=signal_msg(user, str(uuid.uuid4())))))
            assert (await _order(conn, oid))["broker_account_id"] == theirs
            assert await conn.fetchval("SELECT count(*) FROM brokers_userbrokeraccount WHERE user_id = $1",
                                       uuid.UUID(user)) == 1
        finally:
            await sink.close()

    run(pg_dsn, scenario)


# --- books ---------------------------------------------------------------------------------------


async def _holdings(conn: asyncpg.Connection, user: str) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch("SELECT * FROM portfolios_holding WHERE portfolio_id = $1", paper_portfolio_id(user))
    return {r["symbol"]: r for r in rows}


def test_a_book_replaces_the_holdings_and_an_older_one_is_ignored(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await new_user(conn, "books@example.com")
        sink = BookSink(pg_dsn)
        try:
            first = book_msg(user, t(5), [("TCS", 10, "3500.00", "3510.00"), ("INFY", -5, "1500.00", "1490.00")])
            assert await sink.write(records(BOOK_ROWS, first)) == 1
            portfolio = await conn.fetchrow("SELECT * FROM portfolios_portfolio WHERE id = $1",
                                            paper_portfolio_id(user))
            assert (portfolio["name"], str(portfolio["user_id"]), portfolio["available_cash"]) == (
                "Paper Portfolio", user, Decimal("965000.00"))
            assert portfolio["created_at"] == portfolio["updated_at"] == datetime.fromisoformat(t(5))
            assert {s: h["quantity"] for s, h in (await _holdings(conn, user)).items()} == {"TCS": 10, "INFY": -5}

            second = book_msg(user, t(9), [("TCS", 20, "3505.00", "3520.00"), ("RELIANCE", 3, "2450.00", "2455.00")],
                              cash="930000.00")
            assert await sink.write(records(BOOK_ROWS, second)) == 1
            held = await _holdings(conn, user)
            assert {s: (h["quantity"], h["average_price"]) for s, h in held.items()} == {
                "TCS": (20, Decimal("3505.00")), "RELIANCE": (3, Decimal("2450.00"))}
            assert held["TCS"]["created_at"] == datetime.fromisoformat(t(5))  # kept on update
            assert held["TCS"]["updated_at"] == held["RELIANCE"]["created_at"] == datetime.fromisoformat(t(9))

            assert await sink.write(records(BOOK_ROWS, first)) == 0  # older: ignored
            assert {s: h["quantity"] for s, h in (await _holdings(conn, user)).items()} == {"TCS": 20, "RELIANCE": 3}
            assert await conn.fetchval("SELECT available_cash FROM portfolios_portfolio WHERE id = $1",
                                       paper_portfolio_id(user)) == Decimal("930000.00")
            assert await sink.write(records(BOOK_ROWS, second)) == 1  # the same book again: same content
            assert await sink.write(records(BOOK_ROWS, book_msg(user, t(12), [], cash="1000000.00"))) == 1
            assert await _holdings(conn, user) == {}  # flat
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_of_several_books_in_a_batch_the_latest_is_written(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await new_user(conn, "batch@example.com")
        sink = BookSink(pg_dsn)
        try:
            batch = records(BOOK_ROWS, book_msg(user, t(5), [("TCS", 10, "3500.00", "3500.00")]),
                            book_msg(user, t(7), [("INFY", 1, "1500.00", "1500.00")]),
                            book_msg(user, t(6), [("SBIN", 1, "800.00", "800.00")]))
            assert await sink.write(batch) == 1
            assert set(await _holdings(conn, user)) == {"INFY"}
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_the_seeded_paper_portfolio_takes_a_book_of_any_market_time(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink = BookSink(pg_dsn)
        try:
            # seeded today (wall clock), booked at a 2024 market time (a replayed tick file)
            assert await sink.write(records(BOOK_ROWS, book_msg(user, t(5), [("TCS", 10, "3500.00", "3510.00")]))) == 1
            rows = await conn.fetch("SELECT id, name, updated_at FROM portfolios_portfolio WHERE user_id = $1",
                                    uuid.UUID(user))
            assert [tuple(r) for r in rows] == [(paper_portfolio_id(user), "Paper Portfolio",
                                                 datetime.fromisoformat(t(5)))]
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_a_book_sets_the_effective_trading_state_and_leaves_the_hand_set_one_alone(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        fresh, halted = await new_user(conn, "fresh@example.com"), await new_user(conn, "halted@example.com")
        changed = datetime.fromisoformat("2026-01-05T10:00:00+05:30")
        await set_manual_state(conn, halted, "HALTED", "too many losses", changed)
        sink = BookSink(pg_dsn)
        state = ("SELECT state, reason, changed_at, effective_state, effective_reason, as_of"
                 " FROM engine.trading_state WHERE user_id = $1")
        try:
            await sink.write(records(BOOK_ROWS, book_msg(fresh, t(5), []),
                                     book_msg(halted, t(5), [], state="HALTED", reason="halted by hand")))
            assert tuple(await conn.fetchrow(state, uuid.UUID(fresh))) == (
                "ACTIVE", None, None, "ACTIVE", None, datetime.fromisoformat(t(5)))
            assert tuple(await conn.fetchrow(state, uuid.UUID(halted))) == (
                "HALTED", "too many losses", changed, "HALTED", "halted by hand", datetime.fromisoformat(t(5)))
            await sink.write(records(BOOK_ROWS, book_msg(fresh, t(8), [], state="HALTED", reason="daily_loss")))
            await sink.write(records(BOOK_ROWS, book_msg(fresh, t(6), [], state="REDUCING", reason="older")))
            assert tuple(await conn.fetchrow(state, uuid.UUID(fresh))) == (
                "ACTIVE", None, None, "HALTED", "daily_loss", datetime.fromisoformat(t(8)))
            # the paper account exists for both, created by the book sink
            assert await conn.fetchval("SELECT count(*) FROM brokers_userbrokeraccount WHERE broker_id = $1",
                                       PAPER_BROKER_ID) == 2
        finally:
            await sink.close()

    run(pg_dsn, scenario)


# --- outages -------------------------------------------------------------------------------------


def _dsn_through(dsn: str, socket_dir: str) -> str:
    """The same database reached through the Unix socket directory ``socket_dir``."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()} | {"host": socket_dir}
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


class SocketProxy:
    """A Unix-socket forwarder to PostgreSQL's socket, started late: before it listens, connections fail."""

    def __init__(self, dsn: str) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(dsn).query).items()}
        self.target = str(Path(query["host"]) / f".s.PGSQL.{query.get('port', '5432')}")
        self.port = query.get("port", "5432")
        self.dir = tempfile.mkdtemp(prefix="sw-proxy-")
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, os.path.join(self.dir, f".s.PGSQL.{self.port}"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_unix_connection(self.target)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while chunk := await r.read(65536):
                    w.write(chunk)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_an_order_batch_written_during_an_outage_is_committed_once_the_database_is_back(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        proxy = SocketProxy(pg_dsn)
        sink = OrderSink(_dsn_through(pg_dsn, proxy.dir), max_backoff=0.2)
        try:
            oid = str(uuid.uuid4())
            write = asyncio.create_task(sink.write(records(ORDER_ROWS, order_msg(
                user, oid, "PENDING", t(1), signal=signal_msg(user, str(uuid.uuid4()))))))
            await asyncio.sleep(0.6)
            assert not write.done() and sink.status.outage_since is not None and sink.status.retries >= 1
            assert sink.status.last_error  # the cause of the outage, for ops
            await proxy.start()
            assert await asyncio.wait_for(write, 10) == 1
            assert sink.status.outage_since is None and (await _order(conn, oid))["status"] == "PENDING"
        finally:
            await sink.close()
            await proxy.close()

    run(pg_dsn, scenario)


def test_a_book_sink_whose_connection_is_killed_reconnects_and_writes(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        user = await new_user(conn, "killed@example.com")
        sink = BookSink(pg_dsn)
        try:
            assert await sink.write(records(BOOK_ROWS, book_msg(user, t(5), [("TCS", 1, "1.00", "1.00")]))) == 1
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert killed >= 1
            # whether asyncpg noticed the dead connection before this write (reconnect) or during it (a retry)
            assert await sink.write(records(BOOK_ROWS, book_msg(user, t(6), [("INFY", 2, "1.00", "1.00")]))) == 1
            assert set(await _holdings(conn, user)) == {"INFY"} and sink.status.outage_since is None
        finally:
            await sink.close()

    run(pg_dsn, scenario)


def test_a_transaction_rolled_back_to_break_a_deadlock_is_run_again_without_calling_it_an_outage(pg_dsn):
    """The signals CopySink and the OrderSink insert the same signal rows, each batch in its own order: PostgreSQL
    may roll one of them back (40P01). That batch is simply run again."""

    class Unlucky(OrderSink):
        tries = 0

        async def _apply(self, conn: asyncpg.Connection, batch: Any) -> int:
            self.tries += 1
            applied = await super()._apply(conn, batch)
            if self.tries == 1:
                raise asyncpg.DeadlockDetectedError("deadlock detected")  # after writing: all of it rolled back
            return applied

    async def scenario(conn: asyncpg.Connection) -> None:
        user = await demo_user(pg_dsn)
        sink = Unlucky(pg_dsn)
        try:
            oid = str(uuid.uuid4())
            assert await sink.write(records(ORDER_ROWS, order_msg(user, oid, "PENDING", t(1),
                                                                  signal=signal_msg(user, str(uuid.uuid4()))))) == 1
            status = sink.status
            assert (sink.tries, status.retries, status.outage_since, status.last_error) == (2, 1, None, "")
            assert (await _order(conn, oid))["status"] == "PENDING"
        finally:
            await sink.close()

    run(pg_dsn, scenario)
