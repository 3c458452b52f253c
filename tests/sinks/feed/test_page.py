"""The live page: served over plain HTTP by the feed server, and driven in a real headless Chromium."""

from __future__ import annotations

import asyncio
import shutil
import urllib.error
import urllib.request

import pytest
import websockets

from engine.errors import ConfigError
from tests.sinks.feed.support import FeedEnv, Publisher, add_user, issue_token, signal

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_http_routes(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with feed_env.server() as server:
            base = "http" + server.address[2:]
            status, kind, body = await asyncio.to_thread(_get, base)
            assert status == 200 and kind.startswith("text/html") and "ShareWise" in body and "<script>" in body
            assert (await asyncio.to_thread(_get, base + "healthz"))[:1] == (200,)
            assert (await asyncio.to_thread(_get, base + "secrets"))[0] == 404
            with pytest.raises(websockets.InvalidStatus):
                await websockets.connect(server.address + "elsewhere")

    asyncio.run(scenario())


def test_a_port_in_use_is_a_clear_config_error(feed_env: FeedEnv) -> None:
    async def scenario() -> None:
        async with feed_env.server() as server:
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{server.port}"):
                async with feed_env.server(port=server.port):
                    pass

    asyncio.run(scenario())


def test_page_shows_signals_live_filters_and_resumes_after_a_restart(feed_env: FeedEnv) -> None:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test does it as root)")

    async def rows(page: object) -> list[tuple[str, str]]:
        return await page.eval_on_selector_all(  # type: ignore[attr-defined]
            "#signals tbody tr", "trs => trs.map(t => [t.dataset.seq, t.dataset.symbol, t.className])")

    async def wait_rows(page: object, n: int) -> None:
        await page.wait_for_function(  # type: ignore[attr-defined]
            f"document.querySelectorAll('#signals tbody tr').length >= {n}", timeout=20_000)

    async def scenario() -> None:
        user = await add_user(feed_env.dsn)
        token = await issue_token(feed_env, user)
        async with async_playwright() as pw, Publisher(feed_env) as pub:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = await browser.new_page()
                async with feed_env.server() as server:
                    port = server.port
                    await page.goto("http" + server.address[2:])
                    await page.fill("#token", token)
                    await page.click("#connect")
                    await page.wait_for_function("document.getElementById('status').textContent === 'live'",
                                                 timeout=20_000)
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
                for i in range(3, 5):
                    await pub.personal("signals", signal(user, "INFY", sid=f"s{i}"))
                await pub.flush()
                async with feed_env.server(port=port):  # same address: the page reconnects by itself
                    await wait_rows(page, 5)
                    await page.wait_for_function("document.getElementById('status').textContent === 'live'",
                                                 timeout=20_000)
                    assert [r[0] for r in await rows(page)] == ["5", "4", "3", "2", "1"]
                    assert await page.evaluate("Object.keys(localStorage).some(k => k.endsWith('.signals'))")
            finally:
                await browser.close()

    asyncio.run(scenario())

