"""The traders' page as a trader first meets it: ``sharewise up`` on a fresh home (synthetic feed, demo tenant,
paper orders), a token from the CLI, then the page in a real Chromium. Nothing is published by the test."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.test_up import _env
from tests.fixtures.postgres import private_home
from tests.sinks.feed.page_support import (
    PHONE,
    artifacts_dir,
    chart_state,
    chromium,
    table_rows,
    wait_chart,
    wait_live,
    wait_rows,
)

ADDRESS = re.compile(r"live page at (http://[0-9.]+:\d+)/")


def _page_url(stdout: Path, proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = ADDRESS.search(stdout.read_text())
        if found:
            return found.group(1) + "/"
        assert proc.poll() is None, f"up exited {proc.returncode}: {stdout.read_text()[-3000:]}"
        time.sleep(0.25)
    raise AssertionError(f"up never printed its page address: {stdout.read_text()[-3000:]}")


async def _trader(url: str, token: str) -> dict:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(url)
        await page.fill("#token", token)
        await page.click("#connect")
        await wait_live(page)
        await wait_rows(page, "signals", 1)  # the demo's strategies signal on the synthetic session
        first = await wait_chart(page, "s.symbol && s.candles >= 3")
        grew = f"s.candles > {first['candles']} || (s.last && s.last.time > {first['last']['time']})"
        moved = await wait_chart(page, grew)
        await wait_rows(page, "orders", 1)  # and the demo's paper account trades them
        await page.wait_for_function("/value/.test(document.getElementById('portfolio-summary').textContent)",
                                     timeout=60_000)  # the demo's paper portfolio, from `positions`
        await wait_rows(page, "positions", 1)  # a paper fill shows as a holding (asked again after each order)
        await page.screenshot(path=str(artifacts_dir() / "up-page.png"), full_page=True)
        signals, orders = await table_rows(page, "signals"), await table_rows(page, "orders")
        await page.reload()  # the token stays with the tab: back to live by itself, nothing shown twice
        await wait_live(page)
        await wait_rows(page, "signals", len(signals))
        again = await table_rows(page, "signals")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=str(artifacts_dir() / "up-page-phone.png"), full_page=True)
        state = await chart_state(page)
        return {"first": first, "moved": moved, "signals": signals, "orders": orders, "again": again, "state": state,
                "status": await page.text_content("#status")}


def test_the_page_after_up_shows_a_moving_chart_with_signals_orders_and_positions(tmp_path: Path) -> None:
    with private_home("sharewise-up-page-") as home:
        out, cwd = tmp_path / "up.out", tmp_path / "cwd"
        cwd.mkdir()
        with out.open("w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "up", "--speed", "300", "--rate", "2000"],
                                    env=_env(home), stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=cwd)
        try:
            url = _page_url(out, proc)
            token = subprocess.run([sys.executable, "-m", "engine.cli", "token", "create", "--user",
                                    "demo@sharewise.local", "--ttl", "1h"], env=_env(home), capture_output=True,
                                   text=True, timeout=60)
            assert token.returncode == 0, token.stderr
            seen = asyncio.run(_trader(url, token.stdout.strip()))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out.read_text()[-3000:]
        assert list(cwd.iterdir()) == [], "up left files in the directory it was started from"
    first, moved = seen["first"], seen["moved"]
    assert first["library"] and first["panes"] >= 1 and first["series"], first  # candles and indicator lines
    assert moved["candles"] > first["candles"] or moved["last"]["time"] > first["last"]["time"]
    assert all(r["cells"][0].endswith("IST") for r in seen["signals"]), seen["signals"][:2]
    ids = [r["id"] for r in seen["again"]]
    assert len(ids) == len(set(ids)) and set(r["id"] for r in seen["signals"]) <= set(ids), "a reload lost or doubled"
    assert seen["status"] == "live" and seen["orders"]
