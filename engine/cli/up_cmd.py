"""``sharewise up``: the main job — services, schema, demo tenant, feed, worker, sinks, live panel.

``--replay FILE --until-drained --json`` replays a tick file instead of the synthetic feed,
waits until every tick is processed and every sink has committed, prints one JSON object
``{"ticks": N, "dlq": N, "bars": N, "signals": N, "orders": N}`` (counts of this run) and exits 0.
It exits 0 only when PostgreSQL holds every bar, signal, order and notification this run emitted
(the order stage having decided everything: every source is flushed to the end of time); the
summary's ``bars``, ``signals`` and ``orders`` are what PostgreSQL holds of them. Otherwise it exits 3 naming
the topic and the shortfall (or, when the worker fails, with the worker's error). Without a
terminal (piped, logged, systemd), ``up`` prints a plain progress line every 10 s instead of the
live panel. ``--until-drained`` assumes this process's worker is the only member of its consumer group.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from engine.cli import aio
from engine.cli.assemble import (
    active_deployments, keep_deployments_fresh, make_worker, prepare, refresh_usage, tune_gc,
)
from engine.cli.console import clean_errors, err, out
from engine.cli.environment import load_settings
from engine.cli.logs import setup_logging
from engine.cli.pipeline_cmd import run_replay, run_synth, stop_event, until_stopped_or_failed
from engine.cli.runtime import Runtime, services
from engine.errors import ConfigError, Inconsistency
from engine.settings import Settings
from streams.topics import MARKET_BARS, MARKET_TICKS, NOTIFICATIONS, ORDERS, ORDERS_INPUTS, PORTFOLIOS, SIGNALS

OUTPUT_TOPICS = (MARKET_BARS, SIGNALS, ORDERS, PORTFOLIOS, NOTIFICATIONS)


@clean_errors
def up(
    replay: Path = typer.Option(None, "--replay", help="Replay this tick file (CSV or JSONL) instead of the synthetic feed."),
    until_drained: bool = typer.Option(False, "--until-drained", help="With --replay: exit once every tick is processed and every sink committed."),
    json_out: bool = typer.Option(False, "--json", help="With --until-drained: print one JSON summary on stdout."),
    speed: float = typer.Option(60.0, "--speed", min=0.01, help="Synthetic feed: market seconds per wall second."),
    rate: float = typer.Option(2000.0, "--rate", min=1.0, help="Synthetic feed: ticks per wall second."),
) -> None:
    """Start everything (embedded broker and database unless external ones are set) and show live status until Ctrl-C."""
    if until_drained and replay is None:
        raise ConfigError("--until-drained needs --replay FILE")
    if replay is not None and not replay.is_file():
        raise ConfigError(f"{replay}: no such file")
    settings = load_settings()
    setup_logging(settings, "up", stderr_level=30 if not json_out else 40)
    _terminate_as_interrupt()
    try:
        with services(settings) as runtime:
            aio.run(_run(settings, runtime, replay, until_drained, json_out, speed, rate))
    except KeyboardInterrupt:
        pass
    if not json_out:
        out.print("stopped cleanly")


def _terminate_as_interrupt() -> None:
    """SIGTERM takes the same clean path as Ctrl-C until the event loop installs its own handlers."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


async def _run(settings: Settings, rt: Runtime, replay: Path | None, until_drained: bool, json_out: bool,
               speed: float, rate: float) -> None:
    from db.seed_demo import seed_demo

    assert rt.dsn and rt.bootstrap
    say = err.print if json_out else out.print
    applied = await prepare(settings, rt.dsn, rt.bootstrap)
    say(f"schema: {len(applied)} migration(s) applied" if applied else "schema: up to date")
    demo = await seed_demo(rt.dsn, paper_cash=settings.paper_cash)
    names = {str(demo["user_id"]): "demo@sharewise.local"}
    deployments, _ = await active_deployments(rt.dsn, home=settings.home)
    say(f"demo tenant demo@sharewise.local ready; {len(deployments)} active strategies")
    stop = stop_event()
    worker = make_worker(settings, rt.bootstrap, rt.dsn, deployments, track_outputs=until_drained)
    baseline = await _marks(rt.bootstrap, (MARKET_TICKS, ORDERS_INPUTS, *OUTPUT_TOPICS))
    await worker.start()
    tune_gc()
    fresh = asyncio.create_task(keep_deployments_fresh(worker, rt.dsn, settings.reload_s, settings.home))
    progress = None if out.is_terminal else asyncio.create_task(_plain_progress(rt, worker, say, names))
    try:
        if until_drained:
            assert replay is not None
            await _replay_until_drained(settings, rt, worker, replay, baseline, stop, json_out)
            return
        server_task, address = await _start_feed_server(settings, rt, stop)
        say(f"websocket feed on {address}; live page at {address.replace('ws://', 'http://')}/ — get a token with:"
            " sharewise token create --user demo@sharewise.local")
        feed = (run_replay(rt.bootstrap, settings, replay, show_progress=False) if replay else
                run_synth(rt.bootstrap, settings, symbols=52, rate=rate, speed=speed, stop=stop))
        feed_task = asyncio.create_task(feed)
        rt.origin["websocket"] = address
        if progress is None:
            await _live(settings, rt, worker, stop, feed_task, names)
        else:
            await until_stopped_or_failed(stop, worker)
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)
        stop.set()
        await asyncio.gather(server_task, return_exceptions=True)
    finally:
        if progress is not None:
            progress.cancel()
        fresh.cancel()
        await worker.stop()
    if worker.failure is not None:
        raise worker.failure


async def _replay_until_drained(settings: Settings, rt: Runtime, worker: Any, replay: Path,
                                baseline: dict[str, dict[int, int]], stop: asyncio.Event, json_out: bool) -> None:
    """Replay, drain, check PostgreSQL holds every output of this run, print the summary (see the module doc)."""
    assert rt.dsn
    feed = asyncio.create_task(run_replay(rt.bootstrap, settings, replay, show_progress=not json_out and out.is_terminal))
    failed = asyncio.create_task(worker.failed.wait())
    await asyncio.wait({feed, failed}, return_when=asyncio.FIRST_COMPLETED)
    failed.cancel()
    if worker.failure is not None:
        feed.cancel()
        raise worker.failure
    _, too_large = feed.result()
    await _drain(worker, rt.bootstrap, baseline, stop, settings.drain_timeout_s)
    held = await _held(rt.dsn, worker.outputs.emitted)
    await refresh_usage(rt.dsn)  # leases' usage counters are exact before the run reports
    summary = {"ticks": worker.stats.ticks, "dlq": sum(worker.stats.dlq.values()) + too_large,
               "bars": held[MARKET_BARS], "signals": held[SIGNALS], "orders": held[ORDERS]}
    print(orjson.dumps(summary).decode(), flush=True) if json_out else out.print(summary)


async def _start_feed_server(settings: Settings, rt: Runtime, stop: asyncio.Event) -> tuple[asyncio.Task, str]:
    """The websocket feed server as a task of this loop; raise its start-up error (e.g. port in use)."""
    from sinks.feed.server import serve_feed

    ready, where = asyncio.Event(), {}
    task = asyncio.create_task(serve_feed(settings, rt.dsn, rt.bootstrap, stop=stop, ready=ready,
                                          on_ready=lambda server: where.update(address=server.address)))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raises the reason it could not start
        raise ConfigError("the websocket feed server stopped during start-up")
    return task, str(where["address"]).rstrip("/")


async def _marks(bootstrap: str, topics: tuple[str, ...]) -> dict[str, dict[int, int]]:
    from streams.admin import high_watermarks

    return {t: await high_watermarks(bootstrap, t) for t in topics}


async def _wait_caught_up(worker: Any, topic: str, before: dict[int, int], after: dict[int, int],
                          stop: asyncio.Event, timeout: float) -> None:
    """Until the worker has passed ``after`` on every partition that grew since ``before``.

    Raises the worker's failure if it fails, and :class:`Inconsistency` (exit 3) naming the topic
    and the shortfall when nothing moves for ``timeout`` seconds while no sink is in an outage.
    """
    todo = {p: h for p, h in after.items() if h > before.get(p, 0)}
    moved, seen = time.monotonic(), -1
    while not stop.is_set():
        if worker.failure is not None:
            raise worker.failure
        done = worker.positions.get(topic, {})
        short = sum(h - done.get(p, 0) for p, h in todo.items() if done.get(p, 0) < h)
        if not short:
            return
        reached = sum(done.get(p, 0) for p in todo)
        if reached != seen or _sink_outage(worker):
            moved, seen = time.monotonic(), reached
        elif time.monotonic() - moved > timeout:
            raise Inconsistency(f"--until-drained: {short:,} message(s) of {topic} emitted by this run were not"
                                f" consumed and committed ({timeout:.0f}s without progress)")
        await asyncio.sleep(0.05)
    raise KeyboardInterrupt


def _sink_outage(worker: Any) -> bool:
    return any(sink.status.outage_since is not None for sink, _ in worker.sinks.values())


async def _drain(worker: Any, bootstrap: str, baseline: dict[str, dict[int, int]], stop: asyncio.Event,
                 timeout: float) -> None:
    """Every replayed (and forwarded) tick processed, every open bar closed, every output committed by its sink."""
    marks = await _marks(bootstrap, (MARKET_TICKS,))
    while True:  # forwarded ticks land on market.ticks while it drains: until its end stops moving
        await _wait_caught_up(worker, MARKET_TICKS, baseline[MARKET_TICKS], marks[MARKET_TICKS], stop, timeout)
        again = await _marks(bootstrap, (MARKET_TICKS,))
        if again == marks:
            break
        marks = again
    await worker.flush_bars()
    inputs = await _marks(bootstrap, (ORDERS_INPUTS,))  # the order stage decides all that is left
    await _wait_caught_up(worker, ORDERS_INPUTS, baseline[ORDERS_INPUTS], inputs[ORDERS_INPUTS], stop, timeout)
    await _wait_router(worker, stop, timeout)  # live orders: every command sent, every MARKET order final
    outputs_now = await _marks(bootstrap, OUTPUT_TOPICS)
    for topic in OUTPUT_TOPICS:
        await _wait_caught_up(worker, topic, baseline[topic], outputs_now[topic], stop, timeout)


async def _wait_router(worker: Any, stop: asyncio.Event, timeout: float) -> None:
    """Until the order router has sent every command and every live MARKET order is final at its broker (resting
    exits stay open there by design); exit 3 if that takes longer than ``timeout`` (docs/orders.md)."""
    router = worker.order_stage.router
    deadline = time.monotonic() + timeout
    while not router.settled() and not stop.is_set():
        if worker.failure is not None:
            return  # the worker's own failure is what the run reports
        if time.monotonic() > deadline:
            raise Inconsistency(f"--until-drained: live orders still in flight at their brokers after {timeout:.0f}s"
                                f" ({router.counts})")
        await asyncio.sleep(0.05)


#: where each output topic's rows live
_TABLES = {MARKET_BARS: "analytics_marketdata", SIGNALS: "trading_signal", ORDERS: "trading_order",
           NOTIFICATIONS: "notifications_notification"}


async def _held(dsn: str, emitted: dict[str, set] | None) -> dict[str, int]:
    """How many of the outputs this run emitted PostgreSQL holds, per topic; exit 3 naming any shortfall."""
    from db.connect import connect

    assert emitted is not None
    held: dict[str, int] = {}
    conn = await connect(dsn)
    try:
        for topic, table in _TABLES.items():
            ids = list(emitted[topic])
            held[topic] = int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id = ANY($1::uuid[])", ids))
    finally:
        await conn.close()
    missing = {topic: len(emitted[topic]) - n for topic, n in held.items() if n < len(emitted[topic])}
    if missing:
        raise Inconsistency("--until-drained: PostgreSQL lacks outputs of this run: " + ", ".join(
            f"{topic}: {n:,} of {len(emitted[topic]):,} missing from {_TABLES[topic]}" for topic, n in missing.items()))
    return held


async def _plain_progress(rt: Runtime, worker: Any, say: Any, names: dict[str, str], interval: float = 10.0) -> None:
    """Without a terminal (piped, logged, systemd): one plain progress line every ``interval`` seconds."""
    last = (time.monotonic(), worker.stats.ticks)
    while True:
        await asyncio.sleep(interval)
        now, st = time.monotonic(), worker.stats
        rate = (st.ticks - last[1]) / max(now - last[0], 1e-9)
        last = (now, st.ticks)
        say(f"progress: ticks {st.ticks:,} ({rate:,.0f}/s), dlq {sum(st.dlq.values()):,}, bars {st.bars:,},"
            f" signals {st.signals:,}, orders {st.orders:,}, lag {await _lag(rt, worker):,},"
            f" sink backlog {st.sink_backlog:,}", soft_wrap=True)
        for book in _books(worker, names)[:3]:
            say(f"  paper {book['user']}: {book['state']}, {book['positions']} open position(s), cash ₹{book['cash']},"
                f" realised ₹{book['realised']}, unrealised ₹{book['unrealised']}", soft_wrap=True)


async def _lag(rt: Runtime, worker: Any) -> int:
    """Messages of the engine's topics not yet processed by this worker (fetch high watermarks)."""
    from streams.admin import high_watermarks

    total = 0
    for topic in (MARKET_TICKS, ORDERS_INPUTS, *OUTPUT_TOPICS):
        done = worker.positions.get(topic, {})
        total += sum(max(h - done.get(p, h), 0) for p, h in (await high_watermarks(rt.bootstrap, topic)).items())
    return total


def _books(worker: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    """The paper books this worker's order stage holds, for the panel: named users first."""
    desks = [desk for part in worker.order_stage.owned.values() for desk in part.books.desks.values()]
    rows = []
    for desk in sorted(desks, key=lambda d: (d.user_id not in names, d.user_id)):
        book = desk.book()
        rows.append({"user": names.get(desk.user_id, desk.user_id[:8]), "state": book["trading_state"],
                     "positions": len(desk.positions), "cash": book["portfolio"]["available_cash"],
                     "realised": book["portfolio"]["realized_pnl"], "unrealised": book["portfolio"]["unrealized_pnl"],
                     "total": book["portfolio"]["total_value"]})
    return rows


async def _live(settings: Settings, rt: Runtime, worker: Any, stop: asyncio.Event, feed: asyncio.Task,
                names: dict[str, str]) -> None:
    started = time.monotonic()
    last = (started, 0)
    with Live(console=out, refresh_per_second=2) as live:
        while not stop.is_set() and worker.failure is None:
            now = time.monotonic()
            rate = (worker.stats.ticks - last[1]) / max(now - last[0], 1e-9)
            last = (now, worker.stats.ticks)
            live.update(await _panel(settings, rt, worker, rate, int(now - started), feed, names))
            try:
                await asyncio.wait_for(until_stopped_or_failed(stop, worker), timeout=1.0)
            except TimeoutError:
                pass
    out.print("stopping…" if worker.failure is None else f"[red]worker failed: {worker.failure}[/] — stopping…")


async def _panel(settings: Settings, rt: Runtime, worker: Any, rate: float, uptime: int, feed: asyncio.Task,
                 names: dict[str, str]) -> Panel:
    from streams.admin import high_watermarks

    st = worker.stats
    svc = Table("service", "origin", "address", box=None)
    svc.add_row("kafka", rt.origin.get("kafka", "-"), rt.bootstrap or "-")
    svc.add_row("postgres", rt.origin.get("database", "-"),
                settings.describe()["database"] if settings.database_url else str(settings.pgdata))
    if "websocket" in rt.origin:
        page = rt.origin["websocket"].replace("ws://", "http://")
        svc.add_row("websocket", "feed", f"{rt.origin['websocket']}  (live page {page}/)")
    flow = Table("ticks/s", "ticks", "DLQ", "bars", "signals", "orders", "notifications", "sink backlog", box=None)
    dlq = ", ".join(f"{k} {v}" for k, v in sorted(st.dlq.items())) or "0"
    flow.add_row(f"{rate:,.0f}", f"{st.ticks:,}", dlq, f"{st.bars:,}", f"{st.signals:,}", f"{st.orders:,}",
                 f"{st.notifications:,}", str(st.sink_backlog))
    books = Table("paper trading", "state", "positions", "cash ₹", "realised ₹", "unrealised ₹", "total ₹", box=None)
    for b in _books(worker, names)[:5]:
        books.add_row(b["user"], b["state"], str(b["positions"]), b["cash"], b["realised"], b["unrealised"], b["total"])
    lag = Table("topic", "messages", "consumer lag", box=None)
    for topic in (MARKET_TICKS, ORDERS_INPUTS, *OUTPUT_TOPICS):
        marks = await high_watermarks(rt.bootstrap, topic)
        done = worker.positions.get(topic, {})
        lag.add_row(topic, f"{sum(marks.values()):,}", f"{sum(max(h - done.get(p, h), 0) for p, h in marks.items()):,}")
    outages = [f"[red]{topic} sink: database unavailable for {time.time() - sink.status.outage_since:.0f}s,"
               f" retrying ({sink.status.last_error})[/]"
               for topic, (sink, _) in worker.sinks.items() if sink.status.outage_since is not None]
    feed_state = "feed: running" if not feed.done() else f"feed: finished ({feed.exception() or 'ok'})"
    title = f"sharewise up — {uptime}s — {feed_state} — Ctrl-C to stop"
    return Panel(Group(svc, flow, books, lag, *outages), title=title, border_style="red" if outages else "green")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
