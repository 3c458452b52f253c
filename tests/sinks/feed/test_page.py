"""The live page: served over plain HTTP by the feed server, and driven in a real headless Chromium."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
import websockets

from engine.errors import ConfigError
from sinks.feed.server import STATIC_FILES
from tests.sinks.feed.page_support import chromium, http_base, open_page, page_session
from tests.sinks.feed.support import FeedEnv, Publisher, add_user, issue_token, signal


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_http_routes(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with feed_env.server() as server:
            base = http_base(server)
            status, headers, body = await asyncio.to_thread(_get, base)
            assert status == 200 and headers["Content-Type"].startswith("text/html") and b"ShareWise" in body
            assert headers["Cache-Control"] == "no-store"
            for name in STATIC_FILES:  # every file the page loads is served, with its type
                assert f'src="/static/{name}"'.encode() in body or f'href="/static/{name}"'.encode() in body
                status, headers, script = await asyncio.to_thread(_get, base + "static/" + name)
                assert status == 200 and len(script) > 1000, name
                assert headers["Content-Type"] == STATIC_FILES[name][1] and headers["Cache-Control"] == "no-cache"
                again = await asyncio.to_thread(_get, base + "static/" + name, {"If-None-Match": headers["ETag"]})
                assert again[0] == 304 and again[2] == b""
            assert b"TradingView Lightweight Charts" in (await asyncio.to_thread(
                _get, base + "static/lightweight-charts.js"))[2]
            assert (await asyncio.to_thread(_get, base + "healthz"))[:1] == (200,)
            for path in ("secrets", "static/", "static/package.json", "static/node_modules/fancy-canvas/package.json",
                         "static/../server.py", "static/%2e%2e/server.py", "static//etc/passwd", "page.js"):
                assert (await asyncio.to_thread(_get, base + path))[0] == 404, path
            with pytest.raises(websockets.InvalidStatus):
                await websockets.connect(server.address + "elsewhere")

    asyncio.run(scenario())


def test_without_the_chart_library_the_page_says_how_to_install_it(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with page_session(feed_env) as (_user, token, browser, _pub, server):
            server._static.pop("lightweight-charts.js")  # as when npm never ran: the server serves 404
            page = await open_page(browser, server, token)  # the tables still work
            message = await page.text_content("#chart-message")
            assert "chart library not installed" in message and "npm ci --prefix sinks/feed/web" in message
            assert await page.is_visible("#chart-message")
            assert (await page.evaluate("window.sharewise.chartState()"))["library"] is False

    asyncio.run(scenario())


def test_a_port_in_use_is_a_clear_config_error(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with feed_env.server() as server:
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{server.port}"):
                async with feed_env.server(port=server.port):
                    pass

    asyncio.run(scenario())


def test_page_shows_signals_live_filters_and_resumes_after_a_restart(feed_env: FeedEnv) -> None:
    async def rows(page: object) -> list[tuple[str, str]]:
        return await page.eval_on_selector_all(  # type: ignore[attr-defined]
            "#signals tbody tr", "trs => trs.map(t => [t.dataset.seq, t.dataset.symbol, t.className])")

    async def wait_rows(page: object, n: int) -> None:
        await page.wait_for_function(  # type: ignore[attr-defined]
            f"document.querySelectorAll('#signals tbody tr').length >= {n}", timeout=20_000)

    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with chromium() as browser, Publisher(feed_env) as pub:
            async with feed_env.server() as server:
                port = server.port
                page = await open_page(browser, server, token)
                assert await page.input_value("#token") == ""  # the token is not left in the form
                for i, symbol in enumerate(["RELIANCE", "TCS", "RELIANCE"]):
                    await pub.personal("signals", signal(user, symbol, sid=f"s{i}"))
                await pub.flush()
                await wait_rows(page, 3)
                await page.fill("#filter", "tcs")
                shown = [r for r in await rows(page) if "hidden" not in r[2]]
                assert [(seq, sym) for seq, sym, _ in shown] == [("2", "TCS")]
                await page.fill("#filter", "")
            # the server is gone: the page retries; signals published meanwhile must not be lost
            await page.wait_for_function("document.getElementById('status').textContent.startsWith('reconnecting in')",
                                         timeout=20_000)
            for i in range(3, 5):
                await pub.personal("signals", signal(user, "INFY", sid=f"s{i}"))
            await pub.flush()
            async with feed_env.server(port=port):  # same address: the page reconnects by itself
                await wait_rows(page, 5)
                await page.wait_for_function("document.getElementById('status').textContent === 'live'",
                                             timeout=20_000)
                assert [r[0] for r in await rows(page)] == ["5", "4", "3", "2", "1"]
                assert await page.evaluate("Object.keys(sessionStorage).some(k => k.endsWith('.signals'))")
                assert await page.evaluate("Object.keys(localStorage).length") == 0  # nothing outlives the tab

    asyncio.run(scenario())
