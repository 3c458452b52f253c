"""What the ``history`` and ``positions`` ops read from PostgreSQL, as the JSON clients get (README, "Frames").

* bars come from ``analytics_marketdata`` (the bars the pipeline stored, every timeframe, kept 5 years),
  shaped like ``market.bars`` objects, completed by the feed's own copy of the latest ones;
* signals, orders and notifications come from the user's own feed history (``engine.feed_message``): the
  very objects the live frames carried, so history and live never differ;
* positions come from ``portfolios_portfolio``, ``portfolios_holding`` and ``engine.trading_state``.

Every answer also names the channel's latest seq, read before the rows: subscribing with ``since_seq``
equal to it continues with nothing missed. Every query is filtered by the session's user (bars are
market data, shared by all).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from engine.domain import IST
from sinks.feed import history
from sinks.feed.records import MARKET_USER

#: how far back (in bar seqs) ``bars`` looks for bars the feed has sequenced but the sink has not stored yet
RECENT_BARS = 5000


async def bars(conn: asyncpg.Connection, symbol: str, timeframe: str, limit: int) -> tuple[int, list[bytes]]:
    """The latest ``limit`` bars of ``symbol`` at ``timeframe``, oldest first, and the bars channel's seq."""
    seq = await history.latest_seq(conn, MARKET_USER, "bars")
    rows = await conn.fetch(
        "SELECT timestamp, open_price, high_price, low_price, close_price, volume, technical_indicators"
        " FROM analytics_marketdata WHERE symbol = $1 AND timeframe = $2 ORDER BY timestamp DESC LIMIT $3",
        symbol, timeframe, limit,
    )
    stored = {_ist(r["timestamp"]): orjson.dumps({
        "symbol": symbol, "timeframe": timeframe, "time": _ist(r["timestamp"]), "open": _number(r["open_price"]),
        "high": _number(r["high_price"]), "low": _number(r["low_price"]), "close": _number(r["close_price"]),
        "volume": r["volume"], "indicators": orjson.Fragment(r["technical_indicators"] or "{}"),
    }) for r in rows}  # fmt: skip
    # The feed and the bars' sink read market.bars each at its own pace: a bar the feed has sequenced (seq <= the
    # answer's seq, so the subscription will not send it) may not be stored yet. The feed's own copy fills it in.
    recent = await conn.fetch(
        "SELECT payload FROM engine.feed_message WHERE user_id = $1 AND channel = 'bars' AND symbol = $2"
        " AND seq > $3 AND seq <= $4 AND message_id LIKE $5 ORDER BY seq",
        MARKET_USER, symbol, seq - RECENT_BARS, seq, f"{symbol}|{timeframe}|%")
    oldest = min(stored, default="")  # bar times: IST ISO strings of one format, which sort as the times do
    for r in recent:
        bar = orjson.loads(r["payload"])
        time = _ist(datetime.fromisoformat(bar["time"]))
        if time not in stored and time > oldest:
            stored[time] = orjson.dumps({**bar, "time": time})
    return seq, [stored[t] for t in sorted(stored)[-limit:]]


async def messages(conn: asyncpg.Connection, user_id: str, channel: str, symbol: str | None,
                   limit: int) -> tuple[int, list[bytes]]:
    """The user's latest ``limit`` messages of ``channel`` (of ``symbol`` if given), oldest first, and its seq."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        seq = await history.latest_seq(conn, user_id, channel)
        rows = await conn.fetch(
            "SELECT payload FROM engine.feed_message WHERE user_id = $1 AND channel = $2"
            " AND ($3::text IS NULL OR symbol = $3) ORDER BY seq DESC LIMIT $4",
            user_id, channel, symbol, limit,
        )
    return seq, [r["payload"].encode() for r in reversed(rows)]


async def positions(conn: asyncpg.Connection, user_id: str) -> bytes:
    """The user's book: portfolios with their holdings, and the trading state (README, "Frames")."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        portfolios = await conn.fetch(
            "SELECT id, name, available_cash, invested_amount, total_value, unrealized_pnl, realized_pnl, updated_at"
            " FROM portfolios_portfolio WHERE user_id = $1 ORDER BY created_at, id", user_id)
        holdings = await conn.fetch(
            "SELECT h.portfolio_id, h.symbol, h.quantity, h.average_price, h.current_price, h.unrealized_pnl,"
            " h.last_price_update FROM portfolios_holding h JOIN portfolios_portfolio p ON p.id = h.portfolio_id"
            " WHERE p.user_id = $1 ORDER BY h.symbol", user_id)
        state = await conn.fetchrow(
            "SELECT coalesce(effective_state, state) AS state, CASE WHEN effective_state IS NULL THEN reason"
            " ELSE effective_reason END AS reason FROM engine.trading_state WHERE user_id = $1", user_id)
    held: dict[Any, list[dict[str, Any]]] = {}
    for h in holdings:
        held.setdefault(h["portfolio_id"], []).append({
            "symbol": h["symbol"], "quantity": h["quantity"], "average_price": _number(h["average_price"]),
            "current_price": _number(h["current_price"]), "unrealized_pnl": _number(h["unrealized_pnl"]),
            "last_price_update": _ist(h["last_price_update"]),
        })  # fmt: skip
    book = {
        "portfolios": [{
            "id": str(p["id"]), "name": p["name"], "available_cash": _number(p["available_cash"]),
            "invested_amount": _number(p["invested_amount"]), "total_value": _number(p["total_value"]),
            "unrealized_pnl": _number(p["unrealized_pnl"]), "realized_pnl": _number(p["realized_pnl"]),
            "updated_at": _ist(p["updated_at"]), "holdings": held.get(p["id"], []),
        } for p in portfolios],
        "trading_state": {"state": state["state"] if state else "ACTIVE", "reason": state["reason"] if state else None},
    }  # fmt: skip
    return orjson.dumps(book)


def _number(value: Decimal | None) -> float | None:
    """A DECIMAL column as a JSON number (its shortest spelling is the column's digits)."""
    return None if value is None else float(value)


def _ist(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(IST).isoformat()
