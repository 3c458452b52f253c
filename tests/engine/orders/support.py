"""Helpers of the order-path tests: ``orders.inputs`` messages as docs/orders.md spells them, fed to a
:class:`PartitionBooks`, and small views of what it returns.

Times are written as ``"HH:MM"`` IST on :data:`DAY` (a Monday) unless a ``day`` is given. Every
portfolios message a :class:`Books` sees is checked against the identity of docs/orders.md ("Books").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping

import orjson

from engine.orders.risk import RiskLimits, TradingState
from engine.orders.stage import PartitionBooks

D = Decimal
USER = "7a0e0000-0000-4000-8000-0000000000a1"
OTHER = "7a0e0000-0000-4000-8000-0000000000b2"
DAY = "2026-11-02"  # a Monday
NEXT_DAY = "2026-11-03"
START = D("1000000")
MIS = {"mode": "paper", "product": "MIS", "quantity": 10}
CNC = {"mode": "paper", "product": "CNC", "quantity": 10}

Output = tuple[str, str, dict[str, Any]]


def at(hhmm: str, day: str = DAY) -> str:
    """``"10:05"`` -> ``"2026-11-02T10:05:00+05:30"``."""
    return f"{day}T{hhmm}:00+05:30"


def ns(hhmm: str, day: str = DAY) -> int:
    return int(datetime.fromisoformat(at(hhmm, day)).timestamp()) * 1_000_000_000


def signal(kind: str, bar: str, entry: str, target: str | None = None, stop: str | None = None, *,
           symbol: str = "RELIANCE", strategy: str = "s1", user: str = USER, timeframe: str = "5m",
           day: str = DAY, name: str = "ema_cross") -> dict[str, Any]:
    """A ``signals`` message of the bar opening at ``bar`` (decided at that bar's close)."""
    bar_time = at(bar, day)
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"{user}|{strategy}|{symbol}|{timeframe}|{bar_time}|{kind}")
    return {
        "id": str(ident), "timestamp": bar_time, "symbol": symbol, "strategy_name": name, "signal_type": kind,
        "confidence_score": "0.75", "entry_price": entry, "target_price": target, "stop_loss": stop,
        "valid_until": None, "backtest_result": {}, "executed": False, "executed_price": None, "user_id": user,
        "created_by_strategy_id": strategy, "market_data": {}, "created_at": bar_time, "updated_at": bar_time,
        "timeframe": timeframe, "bar_time": bar_time,
    }  # fmt: skip


def bar(hhmm: str, o: str, h: str, low: str, c: str, *, symbol: str = "RELIANCE", day: str = DAY) -> dict[str, Any]:
    """A 1m bar of a clock message (``time`` is its open)."""
    return {"symbol": symbol, "time": at(hhmm, day), "open": o, "high": h, "low": low, "close": c}


def signal_msg(sig: Mapping[str, Any], execution: Mapping[str, Any] = MIS, source: int = 0) -> dict[str, Any]:
    return {"kind": "signal", "source": source, "execution": dict(execution), "signal": dict(sig)}


def clock_msg(through: str | int, bars: Iterable[Mapping[str, Any]] = (), source: int = 0,
              day: str = DAY) -> dict[str, Any]:
    """A clock of one source (docs/orders.md: ``{"kind":"clock","sources":{"P":through_ns},"bars":[…]}``)."""
    through_ns = through if isinstance(through, int) else ns(through, day)
    return {"kind": "clock", "sources": {str(source): through_ns}, "bars": [dict(b) for b in bars]}


def risk_msg(state: str, reason: str | None = None, user: str = USER, at_iso: str = "") -> dict[str, Any]:
    return {"kind": "risk", "id": f"cmd-{state}-{reason}", "user_id": user, "state": state, "reason": reason,
            "at": at_iso or at("09:00")}


class Books:
    """A :class:`PartitionBooks` fed with dict messages (sent as orjson bytes), keeping every output."""

    def __init__(self, cash: Decimal | str = START, limits: RiskLimits | None = None,
                 manual: Mapping[str, tuple[TradingState, str | None]] | None = None) -> None:
        self.start = D(cash)
        limits = limits or RiskLimits()
        self.pb = PartitionBooks(self.start, lambda user: limits, dict(manual or {}))
        self.out: list[Output] = []

    def send(self, *docs: Mapping[str, Any]) -> None:
        for doc in docs:
            self.pb.add(orjson.dumps(doc))

    def signal(self, sig: Mapping[str, Any], execution: Mapping[str, Any] = MIS, source: int = 0) -> None:
        self.send(signal_msg(sig, execution, source))

    def clock(self, through: str | int, *bars: Mapping[str, Any], source: int = 0, day: str = DAY) -> None:
        self.send(clock_msg(through, bars, source, day))

    def risk(self, state: str, reason: str | None = None, user: str = USER) -> None:
        self.send(risk_msg(state, reason, user))

    def step(self) -> list[Output]:
        out = self.pb.advance()
        for topic, user, msg in out:
            if topic == "portfolios":
                check_identity(self, user, msg)
        self.out += out
        return out

    def run(self, sig: Mapping[str, Any], through: str, *bars: Mapping[str, Any],
            execution: Mapping[str, Any] = MIS, day: str = DAY) -> list[Output]:
        """Send one signal, then a clock through ``through`` with ``bars``, and advance."""
        self.signal(sig, execution)
        self.clock(through, *bars, day=day)
        return self.step()

    def tick(self, through: str, *bars: Mapping[str, Any], day: str = DAY) -> list[Output]:
        self.clock(through, *bars, day=day)
        return self.step()


def check_identity(books: Books, user: str, msg: Mapping[str, Any]) -> None:
    """docs/orders.md, "Books": total value = starting cash + realised + unrealised − open entries' charges;
    invested = Σ |qty| × average price; the holdings are the net of the open positions per symbol."""
    p = msg["portfolio"]
    positions = list(books.pb.desks[user].positions.values())
    open_entry_charges = sum((pos.entry_charges for pos in positions), D(0))
    assert D(p["total_value"]) == books.start + D(p["realized_pnl"]) + D(p["unrealized_pnl"]) - open_entry_charges
    assert D(p["invested_amount"]) == sum((pos.quantity * pos.average_price for pos in positions), D(0))
    net: dict[str, int] = {}
    for pos in positions:
        net[pos.symbol] = net.get(pos.symbol, 0) + pos.quantity * pos.side
    assert {h["symbol"]: h["quantity"] for h in msg["holdings"]} == net
    assert sum((D(h["unrealized_pnl"]) for h in msg["holdings"]), D(0)) == D(p["unrealized_pnl"])


# --- views of the outputs ---------------------------------------------------------------------


def orders(out: Iterable[Output], user: str | None = None) -> list[dict[str, Any]]:
    return [m for t, u, m in out if t == "orders" and (user is None or u == user)]


def brief(out: Iterable[Output]) -> list[tuple[str, ...]]:
    """Each output as a short tuple: ``(type, side, status)`` of an order, ``("note", priority)``, ``("book",)``."""
    rows: list[tuple[str, ...]] = []
    for topic, _, m in out:
        if topic == "orders":
            rows.append((m["order_type"], m["transaction_type"], m["status"]))
        elif topic == "notifications":
            rows.append(("note", m["priority"]))
        else:
            rows.append(("book",))
    return rows


def notes(out: Iterable[Output]) -> list[dict[str, Any]]:
    return [m for t, _, m in out if t == "notifications"]


def book(out: Iterable[Output], user: str = USER) -> dict[str, Any]:
    """The last portfolios message of ``user`` in ``out``."""
    [*_, last] = [m for t, u, m in out if t == "portfolios" and u == user]
    return last


def final(out: Iterable[Output], order_type: str, status: str = "COMPLETE") -> dict[str, Any]:
    """The one order message of ``order_type`` with ``status`` in ``out``."""
    [m] = [m for m in orders(out) if m["order_type"] == order_type and m["status"] == status]
    return m
