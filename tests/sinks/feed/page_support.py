"""Helpers for the browser tests of the page: Chromium via playwright, market data with real indicator
values, orders and positions in the documented formats, and screenshots saved as test artifacts."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, NamedTuple

import numpy as np
import orjson
import pytest

from db.connect import connect
from engine.indicators import default_set
from sinks.feed.server import FeedServer
from tests.sinks.feed.support import FeedEnv, Publisher, add_user, issue_token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IST = timezone(timedelta(hours=5, minutes=30))
ROOT = Path(__file__).resolve().parents[3]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 20_000


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium (Debian's package) driven by playwright; fails loudly when either is missing."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test does it as root)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class PageSession(NamedTuple):
    """What a browser test of the page needs: a user and its token, a browser, a publisher, a feed server."""

    user: str
    token: str
    browser: Any
    pub: Publisher
    server: FeedServer


@contextlib.asynccontextmanager
async def page_session(env: FeedEnv) -> AsyncIterator[PageSession]:
    user = await add_user(env.dsn)
    token = await issue_token(env, user)
    async with chromium() as browser, Publisher(env) as pub, env.server() as server:
        yield PageSession(user, token, browser, pub, server)


def http_base(server: Any) -> str:
    return "http" + server.address[2:]


async def open_page(browser: Any, server: Any, token: str, *, viewport: dict[str, int] = DESKTOP) -> Any:
    """A new tab on the page, connected with ``token``, once its status reads ``live``."""
    page = await browser.new_page(viewport=viewport)
    await page.goto(http_base(server))
    await page.fill("#token", token)
    await page.click("#connect")
    await wait_live(page)
    return page


async def wait_live(page: Any) -> None:
    await page.wait_for_function("document.getElementById('status').textContent === 'live'", timeout=WAIT_MS)


async def select_symbol(page: Any, symbol: str) -> None:
    await page.fill("#symbol", symbol)
    await page.dispatch_event("#symbol", "change")


async def chart_state(page: Any) -> dict[str, Any]:
    return await page.evaluate("window.sharewise.chartState()")


async def wait_chart(page: Any, condition: str) -> dict[str, Any]:
    """Wait until ``condition`` (JS over ``s = window.sharewise.chartState()``) holds; return the state."""
    await page.wait_for_function(f"(() => {{ const s = window.sharewise.chartState(); return {condition}; }})()",
                                 timeout=WAIT_MS)
    return await chart_state(page)


async def table_rows(page: Any, table: str) -> list[dict[str, str]]:
    """The rows of ``#table`` as their data attributes, plus ``hidden`` and the cells' text, top first."""
    return await page.eval_on_selector_all(
        f"#{table} tbody tr",
        "trs => trs.map(t => ({...t.dataset, hidden: t.classList.contains('hidden'),"
        " cells: Array.from(t.cells).map(c => c.textContent)}))")


async def wait_rows(page: Any, table: str, n: int) -> None:
    await page.wait_for_function(f"document.querySelectorAll('#{table} tbody tr').length >= {n}", timeout=WAIT_MS)


# ---- market data ------------------------------------------------------------------------------------


def session_times(start: datetime, n: int, minutes: int) -> list[datetime]:
    """``n`` bar open times of ``minutes`` each, inside NSE sessions (09:15-15:30 IST), skipping weekends."""
    times, t = [], start
    while len(times) < n:
        close = t.replace(hour=15, minute=30)
        if t.weekday() < 5 and t + timedelta(minutes=minutes) <= close:
            times.append(t)
            t += timedelta(minutes=minutes)
        else:
            t = (t + timedelta(days=1)).replace(hour=9, minute=15)
    return times


def market_bars(symbol: str, n: int, *, timeframe: str = "5m", start: datetime | None = None,
                price: float = 3850.0, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` bars in the ``market.bars`` format (docs/topics.md) from a seeded random walk, with the
    default indicator columns computed by the engine's own :func:`engine.indicators.default_set`."""
    minutes = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}[timeframe]
    times = session_times(start or datetime(2026, 1, 5, 9, 15, tzinfo=IST), n, minutes)
    rng = np.random.default_rng(seed)
    drift = np.sin(np.linspace(0, 3 * np.pi, n)) * 0.0009
    close = price * np.exp(np.cumsum(drift + rng.normal(0, 0.0022, n)))
    open_ = np.concatenate([[price], close[:-1]]) * (1 + rng.normal(0, 0.0004, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0014, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0014, n)))
    volume = rng.integers(2_000, 40_000, n).astype(float)
    indicators = default_set(1)
    values = indicators.update(np.zeros(n, dtype=np.int64), open_, high, low, close, volume)
    bars = []
    for i, t in enumerate(times):
        bars.append({
            "symbol": symbol, "timeframe": timeframe, "time": t.isoformat(), "open": round(float(open_[i]), 2),
            "high": round(float(high[i]), 2), "low": round(float(low[i]), 2), "close": round(float(close[i]), 2),
            "volume": int(volume[i]),
            "indicators": {c: (None if np.isnan(v) else round(float(v), 4)) for c, v in zip(indicators.columns, values[i])},
        })
    return bars


async def store_bars(dsn: str, bars: list[dict[str, Any]]) -> None:
    """Save bars where the platform keeps them (``analytics_marketdata``), which ``history`` reads."""
    conn = await connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO analytics_marketdata (symbol, timestamp, open_price, high_price, low_price, close_price,"
            " volume, timeframe, technical_indicators) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
            [(b["symbol"], datetime.fromisoformat(b["time"]), b["open"], b["high"], b["low"], b["close"], b["volume"],
              b["timeframe"], orjson.dumps(b["indicators"]).decode()) for b in bars])
    finally:
        await conn.close()


def next_bar(bar: dict[str, Any], close: float, *, minutes: int = 5) -> dict[str, Any]:
    """The bar after ``bar`` (its indicators carried over), closing at ``close``."""
    time = datetime.fromisoformat(bar["time"]) + timedelta(minutes=minutes)
    return {**bar, "time": time.isoformat(), "open": bar["close"], "close": close,
            "high": max(bar["close"], close) + 1, "low": min(bar["close"], close) - 1}


# ---- orders and positions -------------------------------------------------------------------------------


def order(user_id: str, symbol: str, *, oid: str | None = None, status: str = "COMPLETE", side: str = "BUY",
          quantity: int = 10, price: float = 3850.0, at: str = "2026-01-05T10:00:00+05:30",
          strategy: str = "ema_cross") -> dict[str, Any]:
    """An ``orders`` message: one state change of a paper order (docs/topics.md, docs/orders.md)."""
    done = status == "COMPLETE"
    return {"event_id": str(uuid.uuid4()), "id": oid or str(uuid.uuid4()), "tag": "sw-test", "user_id": user_id,
            "symbol": symbol, "exchange": "NSE", "transaction_type": side, "order_type": "MARKET", "product": "CNC",
            "quantity": quantity, "price": None, "trigger_price": None, "status": status,
            "filled_quantity": quantity if done else 0, "average_price": price if done else None,
            "order_timestamp": at, "exchange_timestamp": at if done else None, "rejection_reason": None,
            "fees": 0.0, "taxes": 0.0, "updated_at": at, "strategy_name": strategy}


async def add_portfolio(dsn: str, user_id: str, holdings: dict[str, tuple[int, float, float]],
                        *, cash: float = 500_000.0) -> str:
    """A portfolio with ``holdings`` (symbol -> quantity, average price, current price); returns its id."""
    invested = sum(q * average for q, average, _ in holdings.values())
    value = sum(q * current for q, _, current in holdings.values())
    conn = await connect(dsn)
    try:
        portfolio = await conn.fetchval(
            "INSERT INTO portfolios_portfolio (user_id, name, available_cash, invested_amount, total_value,"
            " unrealized_pnl) VALUES ($1, 'Paper', $2, $3, $4, $5) RETURNING id",
            user_id, cash, invested, cash + value, value - invested)
        for symbol, (quantity, average, current) in holdings.items():
            await set_holding(conn, portfolio, symbol, quantity, average, current)
        await conn.execute("INSERT INTO engine.trading_state (user_id, state) VALUES ($1, 'ACTIVE')", user_id)
    finally:
        await conn.close()
    return str(portfolio)


async def set_holding(conn: Any, portfolio: str, symbol: str, quantity: int, average: float, current: float) -> None:
    """Write a holding as the order stage does after a fill (upsert by portfolio and symbol)."""
    await conn.execute(
        "INSERT INTO portfolios_holding (portfolio_id, symbol, quantity, average_price, current_price, unrealized_pnl,"
        " last_price_update) VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (portfolio_id, symbol) DO UPDATE"
        " SET quantity = EXCLUDED.quantity, average_price = EXCLUDED.average_price,"
        " current_price = EXCLUDED.current_price, unrealized_pnl = EXCLUDED.unrealized_pnl, updated_at = now()",
        portfolio, symbol, quantity, average, current, round((current - average) * quantity, 2))


# ---- artifacts ----------------------------------------------------------------------------------------------


def artifacts_dir() -> Path:
    """Where screenshots go: ``$SHAREWISE_TEST_ARTIFACTS``, else ``test-artifacts/`` (gitignored)."""
    path = Path(os.environ.get("SHAREWISE_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
