"""The traders' page in a real headless Chromium: chart from history plus live bars, markers, tables,
positions, reload-and-resume, and the screenshots of the README (README "The page")."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import datetime, timedelta

from db.connect import connect
from tests.sinks.feed.page_support import (
    DESKTOP, PHONE, ROOT, add_portfolio, artifacts_dir, chart_state, market_bars, next_bar, open_page, order, page_session,
    select_symbol, set_holding, store_bars, table_rows, wait_chart, wait_live, wait_rows,
)
from tests.sinks.feed.support import FeedEnv, signal


def test_the_chart_draws_candles_from_history_and_adds_a_live_one(feed_env: FeedEnv) -> None:
    bars = market_bars("TCS", 120)

    async def scenario() -> None:
        await store_bars(feed_env.dsn, bars)
        async with page_session(feed_env) as (user, token, browser, pub, server):
            page = await open_page(browser, server, token)
            await select_symbol(page, "tcs")
            state = await wait_chart(page, "s.bars === 120")
            assert state["symbol"] == "TCS" and state["timeframe"] == "5m" and state["candles"] == 120
            assert state["last"]["close"] == bars[-1]["close"]
            assert set(state["series"]) == {"ema_20", "bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2", "rsi_14"}
            assert state["panes"] == 2  # RSI below the price
            assert "IST" in await page.text_content("#legend")

            # the open bar is updated (same time: replaced), then the next one opens; other timeframes
            # and symbols on the same subscription are not drawn
            updated = {**bars[-1], "close": bars[-1]["close"] + 5, "high": bars[-1]["high"] + 5}
            fresh = next_bar(updated, updated["close"] + 12)
            await pub.bars([updated, {**fresh, "timeframe": "1m", "close": 1.0}, {**fresh, "symbol": "INFY"}, fresh])
            await pub.flush()
            state = await wait_chart(page, f"s.bars === 121 && s.last.close === {fresh['close']}")
            assert state["candles"] == 121

            await page.click("#indicators input[value=sma]")
            await page.select_option("#lower", "macd")
            state = await chart_state(page)
            assert {"sma_20", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"} <= set(state["series"])
            assert "rsi_14" not in state["series"]
            await page.select_option("#lower", "none")
            assert (await chart_state(page))["panes"] == 1

            # nothing stored for 1m: the chart has only the 1m bar the feed numbered (history completes the store)
            await page.click("#timeframes button[data-tf='1m']")
            state = await wait_chart(page, "s.timeframe === '1m' && s.bars === 1")
            assert state["candles"] == 1 and state["last"]["close"] == 1.0
            await select_symbol(page, "not a symbol")  # said on the page, never sent
            assert await page.text_content("#notice") == "NOT A SYMBOL is not a symbol"
            assert await page.text_content("#status") == "live"

    asyncio.run(scenario())


def test_a_signal_puts_a_marker_on_the_chart_and_a_row_in_the_table(feed_env: FeedEnv) -> None:
    bars = market_bars("TCS", 80)

    async def scenario() -> None:
        await store_bars(feed_env.dsn, bars)
        async with page_session(feed_env) as (user, token, browser, pub, server):
            # two signals before the page opens: they come from history
            await pub.personal("signals", signal(user, "TCS", sid="old-buy", timeframe="5m", bar_time=bars[20]["time"]))
            await pub.personal("signals", signal(user, "INFY", sid="old-infy"))
            await pub.flush()
            page = await open_page(browser, server, token)
            await wait_rows(page, "signals", 2)
            await select_symbol(page, "TCS")
            await wait_chart(page, "s.bars === 80 && s.markers.length === 1")

            await pub.personal("signals", signal(user, "TCS", sid="live-sell", signal_type="SELL", timeframe="5m",
                                                 bar_time=bars[60]["time"], timestamp=bars[61]["time"]))
            await pub.personal("orders", order(user, "TCS", price=bars[62]["close"], at=bars[62]["time"]))
            await pub.flush()
            state = await wait_chart(page, "s.markers.length === 3")
            times = {m["id"].split("-")[0] + ":" + (m["text"] or ""): m["time"] for m in state["markers"]}
            ist = [int(datetime.fromisoformat(bars[i]["time"]).timestamp()) + 19800 for i in (20, 60, 62)]
            assert (times["signal:BUY"], times["signal:SELL"], times["fill:"]) == tuple(ist)

            rows = await table_rows(page, "signals")
            assert [r["id"] for r in rows] == ["live-sell", "old-infy", "old-buy"]  # newest first
            assert rows[0]["cells"][1:3] == ["TCS", "SELL"] and rows[0]["cells"][0].endswith(" IST")
            assert rows[0]["cells"][5] == "2,450.50"  # entry price, 2 decimals
            await wait_rows(page, "orders", 1)
            assert [r["status"] for r in await table_rows(page, "orders")] == ["COMPLETE"]

    asyncio.run(scenario())


def test_the_symbol_filter_applies_to_signals_and_orders(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with page_session(feed_env) as (user, token, browser, pub, server):
            page = await open_page(browser, server, token)
            for i, symbol in enumerate(["RELIANCE", "TCS", "INFY", "TCS"]):
                await pub.personal("signals", signal(user, symbol, sid=f"s{i}"))
            await pub.personal("orders", order(user, "RELIANCE", oid="o1", status="OPEN"))
            await pub.personal("orders", order(user, "TCS", oid="o2"))
            await pub.personal("orders", order(user, "RELIANCE", oid="o1"))  # o1 fills: one row, latest state
            await pub.flush()
            await wait_rows(page, "signals", 4)
            await page.wait_for_function("document.querySelector('#orders tr[data-id=o1]')?.dataset.status"
                                         " === 'COMPLETE'", timeout=20_000)
            await page.fill("#filter", "tcs, infy")
            shown = [r["id"] for r in await table_rows(page, "signals") if not r["hidden"]]
            assert shown == ["s3", "s2", "s1"]
            assert [(r["id"], r["hidden"]) for r in await table_rows(page, "orders")] == [("o1", True), ("o2", False)]
            await page.fill("#filter", "")
            assert not any(r["hidden"] for r in await table_rows(page, "signals"))

    asyncio.run(scenario())


def test_a_reload_reconnects_by_itself_and_resumes_without_a_gap(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with page_session(feed_env) as (user, token, browser, pub, server):
            page = await open_page(browser, server, token)
            for i in range(1, 4):
                await pub.personal("signals", signal(user, "TCS", sid=f"s{i}"))
            await pub.flush()
            await wait_rows(page, "signals", 3)
            reloading = asyncio.ensure_future(page.reload(wait_until="commit"))
            for i in range(4, 7):  # published while the page reloads
                await pub.personal("signals", signal(user, "TCS", sid=f"s{i}"))
            await pub.flush()
            await reloading
            await wait_live(page)  # nobody typed the token again: the tab kept it
            assert await page.input_value("#token") == ""
            for i in range(7, 9):
                await pub.personal("signals", signal(user, "TCS", sid=f"s{i}"))
            await pub.flush()
            await wait_rows(page, "signals", 8)
            await asyncio.sleep(0.3)  # a duplicate would arrive right behind
            rows = await table_rows(page, "signals")
            assert [r["id"] for r in rows] == [f"s{i}" for i in range(8, 0, -1)]
            assert [r["seq"] for r in rows] == [str(i) for i in range(8, 0, -1)]
            stored = await page.evaluate("Object.keys(sessionStorage).filter(k => k.endsWith('.signals'))"
                                         ".map(k => sessionStorage.getItem(k))")
            assert stored == ["8"]

            # a token the server refuses is dropped from the tab, and the page stops retrying
            other = await browser.new_page()
            await other.goto("http" + server.address[2:])
            await other.fill("#token", "not-a-token")
            await other.click("#connect")
            await other.wait_for_function("document.getElementById('status').textContent.includes('4401')",
                                          timeout=20_000)
            assert await other.evaluate("sessionStorage.getItem('sharewise.token')") is None

    asyncio.run(scenario())


def test_positions_update_after_a_paper_fill(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with page_session(feed_env) as (user, token, browser, pub, server):
            portfolio = await add_portfolio(feed_env.dsn, user, {"TCS": (10, 3800.0, 3850.0)})
            page = await open_page(browser, server, token)
            await wait_rows(page, "positions", 1)
            [row] = await table_rows(page, "positions")
            assert (row["symbol"], row["quantity"], row["cells"][4]) == ("TCS", "10", "500.00")
            assert "up" in await page.get_attribute("#positions tbody td:nth-child(5)", "class")
            assert await page.text_content("#trading-state") == "ACTIVE"

            conn = await connect(feed_env.dsn)  # the paper fill, as the order stage books it
            try:
                await set_holding(conn, portfolio, "INFY", 5, 1500.0, 1490.0)
            finally:
                await conn.close()
            await pub.personal("orders", order(user, "INFY", quantity=5, price=1500.0))
            await pub.flush()
            await wait_rows(page, "positions", 2)
            rows = {r["symbol"]: r for r in await table_rows(page, "positions")}
            assert rows["INFY"]["quantity"] == "5" and rows["INFY"]["cells"][4] == "-50.00"
            assert "down-value" in await page.get_attribute("#positions tr[data-symbol=INFY] td:nth-child(5)", "class")

    asyncio.run(scenario())


def test_screenshots_at_desktop_and_phone_width(feed_env: FeedEnv) -> None:
    """A believable session (300 5m bars with the engine's indicators, signals at EMA/price crosses, paper
    fills, positions) saved as test artifacts; SHAREWISE_UPDATE_SCREENSHOTS=1 also writes docs/page*.png."""
    bars = market_bars("TCS", 300)

    async def scenario() -> None:
        await store_bars(feed_env.dsn, bars[:-1])
        async with page_session(feed_env) as (user, token, browser, pub, server):
            await add_portfolio(feed_env.dsn, user, {"TCS": (25, 3790.4, bars[-2]["close"]),
                                                     "INFY": (40, 1512.0, 1538.75), "HDFCBANK": (30, 1702.5, 1688.1)})
            for n, (i, kind) in enumerate(_crosses(bars[:-1])[-6:]):
                when = datetime.fromisoformat(bars[i]["time"]) + timedelta(minutes=5)
                await pub.personal("signals", signal(
                    user, "TCS", sid=f"sig-{n}", signal_type=kind, timeframe="5m", bar_time=bars[i]["time"],
                    timestamp=when.isoformat(), entry_price=bars[i]["close"], strategy_name="ema_cross",
                    target_price=round(bars[i]["close"] * (1.02 if kind == "BUY" else 0.98), 2),
                    stop_loss=round(bars[i]["close"] * (0.99 if kind == "BUY" else 1.01), 2), confidence_score=0.74))
                await pub.personal("orders", order(user, "TCS", side=kind, quantity=25, price=bars[i + 1]["open"],
                                                   at=(when + timedelta(seconds=2)).isoformat()))
            await pub.personal("signals", signal(user, "INFY", sid="sig-infy", strategy_name="rsi_reversion",
                                                 timeframe="5m", timestamp=bars[-2]["time"], bar_time=bars[-3]["time"],
                                                 entry_price=1538.75, target_price=1570.0, stop_loss=1522.0))
            await pub.personal("orders", order(user, "HDFCBANK", status="OPEN", side="SELL", quantity=30,
                                               at=bars[-2]["time"]))
            await pub.flush()
            screenshots = artifacts_dir()
            for name, viewport in (("page", DESKTOP), ("page-phone", PHONE)):
                page = await open_page(browser, server, token, viewport=viewport)
                await select_symbol(page, "TCS")
                stored = 299 if name == "page" else 300  # then history has the live bar the feed numbered
                await wait_chart(page, f"s.bars === {stored} && s.markers.length >= 12")
                await wait_rows(page, "positions", 3)
                if name == "page":
                    await pub.bars([bars[-1]])  # and the chart moves
                    await pub.flush()
                    await wait_chart(page, "s.bars === 300")
                await page.mouse.move(0, 0)
                await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
                if os.environ.get("SHAREWISE_UPDATE_SCREENSHOTS") == "1":
                    shutil.copyfile(screenshots / f"{name}.png", ROOT / "docs" / f"{name}.png")
                assert (screenshots / f"{name}.png").stat().st_size > 20_000
                await page.close()

    asyncio.run(scenario())


def _crosses(bars: list[dict[str, object]]) -> list[tuple[int, str]]:
    """Bars where the close crosses its EMA 20: a BUY upwards, a SELL downwards (what ema_cross would say)."""
    out = []
    for i in range(1, len(bars) - 1):
        before, now = bars[i - 1], bars[i]
        e0, e1 = before["indicators"]["ema_20"], now["indicators"]["ema_20"]  # type: ignore[index]
        if e0 is None or e1 is None:
            continue
        if before["close"] <= e0 and now["close"] > e1:  # type: ignore[operator]
            out.append((i, "BUY"))
        elif before["close"] >= e0 and now["close"] < e1:  # type: ignore[operator]
            out.append((i, "SELL"))
    return out
