"""``sharewise up``: the main job — services, schema, demo tenant, topics, and a live status panel."""

from __future__ import annotations

import asyncio
import signal
import time

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from engine.cli.console import clean_errors, out
from engine.cli.runtime import Runtime, services
from engine.settings import Settings


@clean_errors
def up() -> None:
    """Start everything (embedded broker and database unless external ones are set) and show live status until Ctrl-C."""
    settings = Settings.from_env()
    _terminate_as_interrupt()
    try:
        with services(settings) as runtime:
            asyncio.run(_run(settings, runtime))
    except KeyboardInterrupt:
        pass
    out.print("stopped cleanly")


def _terminate_as_interrupt() -> None:
    """SIGTERM takes the same clean path as Ctrl-C until the event loop installs its own handlers."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


async def _run(settings: Settings, runtime: Runtime) -> None:
    from db.migrate import migrate
    from db.seed_demo import seed_demo
    from streams.admin import ensure_topics
    from streams.topics import ENGINE_TOPICS

    assert runtime.dsn and runtime.bootstrap
    applied = await migrate(runtime.dsn)
    out.print(f"schema: {len(applied)} migration(s) applied" if applied else "schema: up to date")
    await seed_demo(runtime.dsn)
    out.print("demo tenant: demo@sharewise.local ready")
    await ensure_topics(runtime.bootstrap, {name: settings.partitions for name in ENGINE_TOPICS})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    with Live(await _panel(settings, runtime, started), console=out, refresh_per_second=2, transient=False) as live:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                live.update(await _panel(settings, runtime, started))
    out.print("stopping…")


async def _panel(settings: Settings, runtime: Runtime, started: float) -> Panel:
    from streams.admin import high_watermarks, list_topics

    svc = Table("service", "origin", "address", box=None)
    svc.add_row("kafka", runtime.origin.get("kafka", "-"), runtime.bootstrap or "-")
    svc.add_row("postgres", runtime.origin.get("database", "-"), settings.describe()["database"]
                if settings.database_url else str(settings.pgdata))
    topics = Table("topic", "partitions", "messages", box=None)
    for name, partitions in sorted((await list_topics(runtime.bootstrap)).items()):
        marks = await high_watermarks(runtime.bootstrap, name)
        topics.add_row(name, str(partitions), str(sum(marks.values())))
    uptime = int(time.monotonic() - started)
    return Panel(Group(svc, topics), title=f"sharewise up — {uptime}s — Ctrl-C to stop", border_style="green")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
