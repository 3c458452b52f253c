"""``sharewise monitor``, ``topics``, ``dlq show|replay`` and ``status``: what ops people look at.

These commands observe what runs; they never start a broker or a database. Kafka is
``SHAREWISE_KAFKA``, else the embedded broker kept by ``sharewise services start``;
PostgreSQL is ``SHAREWISE_DATABASE_URL``, else the embedded server of ``SHAREWISE_HOME``
when it runs (heartbeats and checkpoints; optional for all but ``status``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import typer
from rich.live import Live

from engine.cli.console import clean_errors, fail, out
from engine.cli.environment import load_settings
from engine.errors import ConfigError, EngineError
from engine.settings import Settings

dlq_app = typer.Typer(help="Inspect and replay the dead-letter topic market.ticks.dlq.", no_args_is_help=True)

NO_KAFKA = ("no Kafka to inspect: set SHAREWISE_KAFKA=kafka://host:port, or keep the embedded broker running "
            "with `sharewise services start`")


@dataclass(frozen=True, slots=True)
class Targets:
    """The services to observe: ``None`` where nothing is configured or running."""

    bootstrap: str | None
    dsn: str | None

    def kafka(self) -> str:
        if self.bootstrap is None:
            raise ConfigError(NO_KAFKA)
        return self.bootstrap


def targets(settings: Settings) -> Targets:
    """External services when configured, else the embedded ones if they run (nothing is started).

    Also silences the Kafka client's own connection errors: these commands report them, once.
    """
    from db.embedded import postgres_status
    from engine.cli.runtime import recorded_broker

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = settings.kafka_bootstrap or recorded_broker(settings)
    dsn = settings.database_url or postgres_status(settings)["dsn"]
    return Targets(bootstrap, dsn)


def _print_json(doc: Any) -> None:
    print(orjson.dumps(doc).decode())


# --- monitor -----------------------------------------------------------------------------------


@clean_errors
def monitor(
    once: bool = typer.Option(False, "--once", help="Observe over one window, print once and exit."),
    json_out: bool = typer.Option(False, "--json", help="Print the snapshot as one JSON object (implies --once)."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between observations."),
    window: float = typer.Option(10.0, "--window", min=0.0,
                                 help="Seconds of history the status rules judge (0: no trend rules)."),
    group: list[str] = typer.Option(None, "--group", "-g", help="Judge only this consumer group (repeatable)."),
    no_ages: bool = typer.Option(False, "--no-ages",
                                 help="Skip lag in seconds (it reads one record per lagging partition)."),
) -> None:
    """Kafka topics, consumer groups, lag, rates, dead letters and workers, with one status word.

    OK, WARN (lag grows), STALL (lag, no commits), ERR (broker down, silent workers): see the README ("Operating the engine").
    """
    from streams.ops.monitor import Monitor

    settings = load_settings()
    where = targets(settings)
    bootstrap = where.kafka()

    async def run() -> None:
        async with Monitor(bootstrap, where.dsn, window=window, groups=group or None, ages=not no_ages) as m:
            if once or json_out:
                await _once(m, window, interval, json_out)
            else:
                await _live(m, interval, bootstrap)

    asyncio.run(run())


async def _once(monitor: Any, window: float, interval: float, json_out: bool) -> None:
    """Observe until the samples span ``window`` (or the broker fails), then print the last observation."""
    from engine.cli.ops_view import monitor_panel
    from engine.ops.snapshot import as_json

    first = obs = await monitor.observe()
    while obs.snapshot is not None and first.snapshot is not None and \
            obs.snapshot.taken_at - first.snapshot.taken_at < window:
        await asyncio.sleep(interval)
        obs = await monitor.observe()
    if json_out:
        _print_json(as_json(obs.snapshot, str(obs.verdict.status)))
    else:
        out.print(monitor_panel(obs, f"sharewise monitor — {monitor.bootstrap}"))


async def _live(monitor: Any, interval: float, bootstrap: str) -> None:
    from engine.cli.ops_view import monitor_panel
    from engine.cli.pipeline_cmd import stop_event

    stop = stop_event()
    with Live(console=out, refresh_per_second=4) as live:
        while not stop.is_set():
            obs = await monitor.observe()
            title = f"sharewise monitor — {bootstrap} — every {interval:g}s — Ctrl-C to stop"
            live.update(monitor_panel(obs, title))
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass


# --- topics ------------------------------------------------------------------------------------


@clean_errors
def topics(json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table.")) -> None:
    """Every topic: partitions, messages, high watermarks and configuration (when the broker reports it)."""
    from rich.table import Table

    from streams.ops.cluster import ClusterProbe

    bootstrap = targets(load_settings()).kafka()

    async def read() -> tuple[dict, dict]:
        async with ClusterProbe(bootstrap) as probe:
            ends = await probe.ends(await probe.topics())
            return ends, await probe.configs(sorted(ends))

    ends, configs = asyncio.run(read())
    if json_out:
        _print_json({t: {"partitions": len(parts), "messages": sum(e.messages for e in parts.values()),
                         "high": {str(p): e.high for p, e in sorted(parts.items())},
                         "config": configs[t].entries, "config_note": configs[t].note}
                     for t, parts in sorted(ends.items())})
        return
    table = Table("topic", "partitions", "messages", "configuration")
    for t, parts in sorted(ends.items()):
        cfg = configs[t]
        shown = cfg.note if cfg.entries is None else (", ".join(f"{k}={v}" for k, v in sorted(cfg.entries.items()))
                                                     or "defaults")
        table.add_row(t, str(len(parts)), f"{sum(e.messages for e in parts.values()):,}", shown)
    out.print(table)


# --- dlq ---------------------------------------------------------------------------------------


@dlq_app.command("show")
@clean_errors
def dlq_show(
    reason: str = typer.Option(None, "--reason", "-r", help="Only dead letters of this reason (e.g. bad_price)."),
    n: int = typer.Option(20, "-n", min=1, help="How many of the newest to show."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """The newest dead letters: when, why, where they came from, and their original bytes."""
    from engine.cli.ops_view import dlq_entries_table, when
    from streams.ops.cluster import ClusterProbe
    from streams.ops.dlq import show

    bootstrap = targets(load_settings()).kafka()

    async def read() -> list:
        async with ClusterProbe(bootstrap) as probe:
            return await show(probe, reason=reason, n=n)

    found = asyncio.run(read())
    if json_out:
        unreadable = lambda e: {"reason": e.reason, "raw": e.raw.decode(errors="replace")}  # noqa: E731
        _print_json([{"dlq_partition": e.partition, "dlq_offset": e.offset, "time": when(e.timestamp_ms),
                      **(e.letter.as_dict() if e.letter else unreadable(e))} for e in found])
    elif not found:
        out.print("no dead letters" + (f" with reason {reason}" if reason else ""))
    else:
        out.print(dlq_entries_table(found))


@dlq_app.command("replay")
@clean_errors
def dlq_replay(
    reason: str = typer.Option(None, "--reason", "-r", help="Only dead letters of this reason (its cause is fixed)."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts as one JSON object."),
) -> None:
    """Send dead letters back to market.ticks, each once: a second replay sends nothing already sent.

    Ticks go to the partition of their symbol, as the feed sends them; the engine's
    deterministic ids make a tick processed twice harmless.
    """
    from streams.ops.cluster import ClusterProbe
    from streams.ops.dlq import replay

    bootstrap = targets(load_settings()).kafka()

    async def run() -> Any:
        async with ClusterProbe(bootstrap) as probe:
            return await replay(probe, reason=reason)

    report = asyncio.run(run())
    if json_out:
        _print_json(report.as_dict())
        return
    by_reason = ", ".join(f"{r} {n}" for r, n in sorted(report.sent.items()))
    out.print(f"replayed {sum(report.sent.values())} dead letter(s) to market.ticks"
              + (f" ({by_reason})" if by_reason else ""))
    out.print(f"left alone: {report.already_replayed} already replayed, {report.other_reason} of other reasons, "
              f"{report.unreadable} unreadable")


# --- status ------------------------------------------------------------------------------------


@clean_errors
def status() -> None:
    """Check the broker, the database and the workers; one line each; exit 1 naming what is down."""
    settings = load_settings()
    from engine.cli.ops_view import status_table

    lines = asyncio.run(_health(targets(settings)))
    out.print(status_table(lines))
    down = [component for component, up, _ in lines if up is False]
    if down:
        raise fail(f"down: {', '.join(down)}", 1)


async def _health(where: Targets) -> list[tuple[str, bool | None, str]]:
    broker = await _broker_health(where.bootstrap)
    database, beats = await _database_health(where.dsn)
    if beats is None:
        workers: tuple[bool | None, str] = (None, "not known: the database cannot be read")
    elif broker[0] is False and beats:
        workers = (None, "not known: the broker is down, so their lag cannot be read")
    else:
        workers = await _workers_health(where.bootstrap, beats)
    return [("broker", *broker), ("database", *database), ("workers", *workers)]


async def _broker_health(bootstrap: str | None) -> tuple[bool, str]:
    from streams.ops.cluster import ClusterProbe

    if bootstrap is None:
        return False, "not running: no SHAREWISE_KAFKA and no broker kept by `sharewise services start`"
    try:
        async with ClusterProbe(bootstrap, timeout=5) as probe:
            return True, f"{bootstrap}: {len(await probe.topics())} topic(s)"
    except EngineError as exc:
        return False, str(exc)


async def _database_health(dsn: str | None) -> tuple[tuple[bool, str], list | None]:
    """(database line, worker heartbeats or ``None`` when the database cannot be read)."""
    from db.connect import connect, server_address
    from db.heartbeats import worker_beats

    if dsn is None:
        return (False, "not running: no SHAREWISE_DATABASE_URL and the embedded server is stopped"), None
    try:
        conn = await connect(dsn)
    except EngineError as exc:
        return (False, str(exc)), None
    try:
        await conn.fetchval("SELECT 1")
        return (True, server_address(dsn)), await worker_beats(conn)
    finally:
        await conn.close()


async def _workers_health(bootstrap: str | None, beats: list) -> tuple[bool, str]:
    from engine.ops.status import workers_state
    from streams.ops.cluster import ClusterProbe

    lag: dict[str, int] = {}
    if beats and bootstrap is not None:
        async with ClusterProbe(bootstrap, timeout=5) as probe:
            snapshot = await probe.snapshot(ages=False)
        lag = {b.group: snapshot.group_lag(b.group) for b in beats}
    return workers_state(beats, lag)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
    app.command("topics")(topics)
    app.add_typer(dlq_app, name="dlq")
    app.command("status")(status)
