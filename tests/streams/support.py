"""Shared helpers of the pipeline tests: a tick file with known bad lines, the offline reference, DB snapshots."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

import asyncpg
import numpy as np
import orjson

from engine.cli.files import load_instruments
from engine.feeds.synth import SESSION_SECONDS, SyntheticFeed, next_session_day, session_start
from engine.instruments import InstrumentRegistry
from engine.settings import Settings
from engine.outputs import bar_message, signal_message
from sinks.rows import marketdata_record, signal_row
from engine.pipeline import SignalPipeline
from engine.strategy.runner import Deployment, StrategyRunner
from engine.ticks import decode_packets
from engine.domain import Timeframe
from engine.orders.paper import PaperRun, paper_orders
from engine.orders.risk import RiskLimits

#: created_at of reference signals (not compared: a stamp of the wall clock, never part of an id)
STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SYMBOLS = ("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN")
DAY = dt.date(2026, 1, 5)  # a Monday

#: (reason, line) pairs appended at known places; each must end in the DLQ with that reason
BAD_LINES = [
    ("bad_json", b'{"symbol": "TCS", "time": 1767584700000, "price": 10'),
    ("missing_field", b'{"symbol": "TCS", "price": 3500.0, "qty": 1}'),
    ("bad_price", b'{"symbol": "INFY", "time": 1767585000000, "price": NaN, "qty": 1}'),
    ("bad_price", b'{"symbol": "INFY", "time": 1767585000000, "price": -4.5, "qty": 1}'),
    ("bad_qty", b'{"symbol": "INFY", "time": 1767585000000, "price": 1500.5, "qty": -3}'),
    ("unknown_symbol", b'{"symbol": "NOSUCHCO", "time": 1767585000000, "price": 100.0, "qty": 1}'),
    ("out_of_session", b'{"symbol": "SBIN", "time": "2026-01-05T08:00:00+05:30", "price": 800.0, "qty": 1}'),
]


@dataclass(frozen=True, slots=True)
class TickFile:
    path: Path
    good: int
    bad: list[tuple[str, bytes]]

    @property
    def lines(self) -> int:
        return self.good + len(self.bad)


def make_tick_file(path: Path, *, minutes: float = 180, rate: float = 4.0, seed: int = 11,
                   late: bool = True) -> TickFile:
    """A JSONL tick file over ``SYMBOLS`` with the :data:`BAD_LINES` spread through it.

    ``late`` adds one tick far older than its symbol's clock (reason ``late``).
    """
    registry = InstrumentRegistry.from_symbols(SYMBOLS)
    prices = np.array([2900.0, 3500.0, 1500.0, 950.0, 1350.0, 800.0])
    feed = SyntheticFeed(prices, seed=seed, start_day=DAY, ticks_per_market_second=rate)
    batch = feed.advance(minutes * 60)
    lines = [orjson.dumps({"symbol": registry.symbols[k], "time": t, "price": p, "qty": q})
             for k, t, p, q in zip(batch.inst.tolist(), (batch.ts_ns // 1_000_000).tolist(), batch.price.tolist(),
                                   batch.qty.tolist())]
    bad = list(BAD_LINES)
    if late:
        bad.append(("late", orjson.dumps({"symbol": "RELIANCE", "time": int(batch.ts_ns[0] // 1_000_000),
                                          "price": 2900.0, "qty": 1})))
    good = len(lines)
    step = max(1, good // (len(bad) + 1))
    for i, (_, raw) in enumerate(bad):
        lines.insert(min(len(lines), step * (i + 1) + i), raw)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return TickFile(path, good, bad)


#: twenty NIFTY 50 constituents, the demo tenant's five first (its strategies trade those)
SYMBOLS_20 = ("RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK", "SBIN", "ITC", "LT", "AXISBANK", "KOTAKBANK",
              "BHARTIARTL", "HINDUNILVR", "BAJFINANCE", "MARUTI", "ASIANPAINT", "TITAN", "SUNPHARMA", "WIPRO",
              "ULTRACEMCO", "NESTLEIND")


def make_session_file(path: Path, symbols: tuple[str, ...], *, sessions: int, ticks: int, seed: int = 3,
                      day: dt.date = DAY) -> int:
    """A backfill as users replay one: ``sessions`` whole NSE sessions of ``symbols``, about ``ticks`` ticks,
    one JSON tick per line in time order (dense: many ticks per 1m bar). Returns the line count."""
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    prices = np.array([registry.instruments[registry.index[s]].typical_price for s in symbols])
    feed = SyntheticFeed(prices, seed=seed, start_day=day, ticks_per_market_second=ticks / (sessions * SESSION_SECONDS))
    with path.open("wb") as out:
        n = 0
        for _ in range(sessions):
            b = feed.advance(SESSION_SECONDS)
            out.write(b"".join(orjson.dumps({"symbol": symbols[k], "time": t, "price": p, "qty": q}) + b"\n"
                               for k, t, p, q in zip(b.inst.tolist(), (b.ts_ns // 1_000_000).tolist(),
                                                     b.price.tolist(), b.qty.tolist())))
            n += len(b)
    return n


def make_minute_history(path: Path, symbols: tuple[str, ...], *, sessions: int, seed: int = 4,
                        day: dt.date = DAY) -> int:
    """Minute history replayed as ticks (sparse): one tick per symbol and minute, so every tick closes a 1m bar."""
    rng = np.random.default_rng(seed)
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    log_price = np.log([registry.instruments[registry.index[s]].typical_price for s in symbols])
    n = 0
    with path.open("wb") as out:
        for _ in range(sessions):
            open_ms = int(session_start(day).timestamp() * 1000)
            for minute in range(SESSION_SECONDS // 60):
                log_price += rng.normal(0.0, 0.002, len(symbols))
                out.write(b"".join(orjson.dumps({"symbol": s, "time": open_ms + minute * 60_000 + 500 + k,
                                                 "price": round(float(np.exp(lp)), 2), "qty": int(rng.integers(1, 500))})
                                   + b"\n" for k, (s, lp) in enumerate(zip(symbols, log_price))))
                n += len(symbols)
            day = next_session_day(day)
    return n


@dataclass(slots=True)
class Reference:
    bars: set[tuple]
    signals: set[tuple]
    dlq: list[str]
    ticks: int
    paper: PaperRun | None = None  # the orders and the last book the order stage must write


def ema_cross_pipeline(user: str, symbols: tuple[str, ...]) -> SignalPipeline:
    """The pure core with one ema_cross row of ``user`` on ``symbols`` at 1m (a replayed minute session:
    every tick closes a bar)."""
    from engine.strategy import deployment_from_row

    row = {"id": "6f1c0000-0000-0000-0000-000000000001", "user_id": user, "name": "ema_cross",
           "parameters": {"strategy": "ema_cross", "symbols": list(symbols), "timeframe": "1m", "params": {}},
           "entry_conditions": {}, "exit_conditions": {}, "risk_management": {}, "is_active": True}
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    return SignalPipeline(registry, StrategyRunner([deployment_from_row(row)]), lateness_s=2.0)


def offline_reference(path: Path, registry: InstrumentRegistry, deployments: list[Deployment], *,
                      lateness_s: float, flush: bool, chunk: int = 1,
                      limits: Callable[[str], RiskLimits] = lambda _: RiskLimits()) -> Reference:
    """What the pipeline must write for ``path``: the pure core run in file order, ``chunk`` lines per call
    (1: tick by tick; results never depend on the split, tests/engine/test_pipeline.py).

    Its orders are the backtest's (engine.orders.paper) on everything emitted: once input ends, every
    source of the live order stage is flushed or idle, so it decides all of it (docs/orders.md).
    """
    pipeline = SignalPipeline(registry, StrategyRunner(deployments), lateness_s=lateness_s)
    bars, signals, dlq, ticks = set(), set(), [], 0
    steps = []
    lines = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
    for start in range(0, len(lines), chunk):
        decoded = decode_packets(lines[start : start + chunk], registry)
        status, step = pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
        dlq += [str(r.reason) for r in decoded.rejects + decoded.rejected_by(status)]
        ticks += int(len(status) - np.count_nonzero(status))
        steps.append(step)
    if flush:
        steps.append(pipeline.flush())
    for step in steps:
        for bar, row in zip(step.bars, step.rows):
            bars.add(normal_bar(marketdata_record(bar_message(bar, row, pipeline.default_positions))))
        for sig in step.signals:
            signals.add(normal_signal(signal_row(signal_message(sig, STAMP))))
    emitted = [sig for step in steps for sig in step.signals]
    minutes = [b for step in steps for b in step.bars if b.timeframe is Timeframe.M1]
    paper = paper_orders(emitted, minutes, cash=PAPER_CASH, limits=limits) if any(
        s.execution for s in emitted) else None
    return Reference(bars, signals, dlq, ticks, paper)



def normal_bar(rec: tuple) -> tuple:
    ident, symbol, time, o, h, lo, c, v, tf, ind = rec
    return (str(ident), symbol, time.astimezone(dt.timezone.utc), o, h, lo, c, v, tf, orjson.dumps(orjson.loads(ind), option=orjson.OPT_SORT_KEYS))


def normal_signal(rec: tuple) -> tuple:
    ident, time, symbol, strategy, kind, conf, entry, target, stop, valid, user, strategy_id, _ = rec
    return (str(ident), time.astimezone(dt.timezone.utc), symbol, strategy, kind, conf, entry, target, stop,
            str(user), str(strategy_id))


async def database_rows(dsn: str) -> tuple[list[tuple], list[tuple], int]:
    """(bars, signals, notifications count) as written, normalised like the reference."""
    conn = await asyncpg.connect(dsn)
    try:
        bars = [normal_bar((r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])) for r in await conn.fetch(
            "SELECT id, symbol, timestamp, open_price, high_price, low_price, close_price, volume, timeframe,"
            " technical_indicators::text FROM analytics_marketdata")]
        signals = [normal_signal(tuple(r) + (None,)) for r in await conn.fetch(
            "SELECT id, timestamp, symbol, strategy_name, signal_type, confidence_score, entry_price, target_price,"
            " stop_loss, valid_until, user_id, created_by_strategy_id FROM trading_signal")]
        notes = await conn.fetchval("SELECT count(*) FROM notifications_notification WHERE notification_type = 'SIGNAL'")
    finally:
        await conn.close()
    return bars, signals, notes


SHAREWISE = [sys.executable, "-m", "engine.cli"]
PAPER_CASH = Decimal("1000000")  # SHAREWISE_PAPER_CASH unset
LATENESS = 2.0


def engine_env(home: Path, bootstrap: str | None = None, dsn: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``sharewise`` child process: this machine's, less any ``SHAREWISE_*``, plus these.

    Without ``bootstrap``/``dsn`` the child starts its own embedded broker/database under ``home``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env.update(SHAREWISE_HOME=str(home), SHAREWISE_ALLOWED_LATENESS=str(LATENESS), SHAREWISE_WS_PORT="0", **extra)
    if bootstrap:
        env["SHAREWISE_KAFKA"] = f"kafka://{bootstrap}"
    if dsn:
        env["SHAREWISE_DATABASE_URL"] = dsn
    return env


def up_until_drained(env: dict[str, str], path: Path, *, timeout: float = 240) -> dict:
    """``sharewise up --replay PATH --until-drained --json``: assert exit 0, return its JSON summary."""
    done = subprocess.run([*SHAREWISE, "up", "--replay", str(path), "--until-drained", "--json"], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def reference_of(path: Path, dsn: str, *, flush: bool, chunk: int = 1) -> Reference:
    """The offline reference of ``path`` for the active strategies of the database at ``dsn``."""
    from engine.cli.assemble import active_deployments

    deployments, _ = asyncio.run(active_deployments(dsn))
    limits = asyncio.run(_limits(dsn))
    return offline_reference(path, load_instruments(Settings(home=Path("/nonexistent"))), deployments,
                             lateness_s=LATENESS, flush=flush, chunk=chunk,
                             limits=lambda u: RiskLimits(*limits[u]) if u in limits else RiskLimits())


async def _limits(dsn: str) -> dict[str, tuple]:
    from db.trading import user_limits

    conn = await asyncpg.connect(dsn)
    try:
        return await user_limits(conn)
    finally:
        await conn.close()


def wait_for(predicate, timeout: float, interval: float = 0.25) -> bool:  # noqa: ANN001
    """Poll an async predicate until true or timeout; returns its last value."""

    async def loop() -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if await predicate():
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(interval)

    return asyncio.run(loop())


_ORDER_COLUMNS = ("id", "signal_id", "symbol", "order_type", "transaction_type", "quantity", "price", "trigger_price",
                  "status", "filled_quantity", "average_price", "order_timestamp", "exchange_timestamp",
                  "rejection_reason", "fees", "taxes")
_BOOK_COLUMNS = ("total_value", "available_cash", "invested_amount", "unrealized_pnl", "realized_pnl")


def _normal(column: str, value):  # noqa: ANN001, ANN202
    if value is None:
        return None
    if column in ("id", "signal_id"):
        return str(value)
    if column.endswith("timestamp"):
        value = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return value.astimezone(dt.timezone.utc)
    if column in ("price", "trigger_price", "average_price", "fees", "taxes", *_BOOK_COLUMNS):
        return Decimal(value)
    return value


def reference_books(ref: Reference) -> tuple[list[tuple], dict | None, list[tuple]]:
    """(orders, portfolio, holdings) the reference's paper run must leave in PostgreSQL, normalised."""
    if ref.paper is None:
        return [], None, []
    orders = sorted(tuple(_normal(c, o[c]) for c in _ORDER_COLUMNS) for o in ref.paper.orders)
    book = ref.paper.book
    portfolio = {c: Decimal(book["portfolio"][c]) for c in _BOOK_COLUMNS} if book else None
    holdings = sorted((h["symbol"], h["quantity"], Decimal(h["average_price"]), Decimal(h["current_price"]),
                       Decimal(h["unrealized_pnl"])) for h in book["holdings"]) if book else []
    return orders, portfolio, holdings


async def database_books(dsn: str) -> tuple[list[tuple], dict | None, list[tuple]]:
    """(orders, the paper portfolio, its holdings) as PostgreSQL holds them, normalised like :func:`reference_books`."""
    conn = await asyncpg.connect(dsn)
    try:
        orders = sorted(tuple(_normal(c, r[c]) for c in _ORDER_COLUMNS)
                        for r in await conn.fetch(f"SELECT {', '.join(_ORDER_COLUMNS)} FROM trading_order"))
        rows = await conn.fetch(f"SELECT id, {', '.join(_BOOK_COLUMNS)} FROM portfolios_portfolio"
                                " WHERE name = 'Paper Portfolio'")
        portfolio = {c: rows[0][c] for c in _BOOK_COLUMNS} if len(rows) == 1 else None
        holdings = sorted(tuple(r) for r in await conn.fetch(
            "SELECT symbol, quantity, average_price, current_price, unrealized_pnl FROM portfolios_holding"))
    finally:
        await conn.close()
    return orders, portfolio, holdings


def assert_books_equal(dsn: str, ref: Reference) -> None:
    """PostgreSQL's orders, paper portfolio and holdings are the reference's, row for row."""
    want_orders, want_book, want_holdings = reference_books(ref)
    got_orders, got_book, got_holdings = asyncio.run(database_books(dsn))
    assert want_orders, "the reference trades nothing: the test would prove nothing"
    missing, extra = set(want_orders) - set(got_orders), set(got_orders) - set(want_orders)
    got_by_id = {o[0]: o for o in got_orders}
    assert not missing and not extra, (f"{len(missing)} orders missing, e.g. {sorted(missing)[:2]} (PostgreSQL has"
                                       f" {[got_by_id.get(o[0]) for o in sorted(missing)[:2]]}), {len(extra)} extra")
    assert got_book == want_book
    assert got_holdings == want_holdings
