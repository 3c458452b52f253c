"""``sharewise services start|stop|status``: keep the embedded broker and database running for development."""

from __future__ import annotations

import typer
from rich.table import Table

from engine.cli.console import clean_errors, out
from engine.cli.environment import load_settings
from engine.cli.runtime import read_state, state_path, write_state

services_app = typer.Typer(help="Keep the embedded broker and database running for development.", no_args_is_help=True)


@services_app.command("start")
@clean_errors
def start() -> None:
    """Start the embedded broker and PostgreSQL and leave them running; other commands reuse them."""
    from db.embedded import start_postgres
    from streams.broker import EmbeddedBroker, pid_alive

    settings = load_settings()
    state = read_state(settings)
    broker = state.get("broker")
    if settings.kafka:
        out.print(f"kafka: external ({settings.kafka}), nothing to start")
    elif broker and pid_alive(int(broker["pid"])):
        out.print(f"kafka: already running at {broker['bootstrap']} (pid {broker['pid']})")
    else:
        started = EmbeddedBroker.start(settings.log_dir, detached=True)
        state["broker"] = {"pid": started.pid, "bootstrap": started.bootstrap}
        out.print(f"kafka: started at {started.bootstrap} (pid {started.pid})")
    if settings.database_url:
        out.print("postgres: external (SHAREWISE_DATABASE_URL), nothing to start")
    else:
        state["postgres"] = {"dsn": start_postgres(settings, keep_running=True), "pgdata": str(settings.pgdata)}
        out.print(f"postgres: running, data in {settings.pgdata}")
    write_state(settings, state)
    out.print(f"state recorded in {state_path(settings)}")


@services_app.command("stop")
@clean_errors
def stop() -> None:
    """Stop the services started by ``services start``."""
    from db.embedded import stop_postgres
    from streams.broker import stop_pid

    settings = load_settings()
    state = read_state(settings)
    if not state:
        out.print("no services recorded: nothing to stop")
        return
    if broker := state.get("broker"):
        stop_pid(int(broker["pid"]), timeout=10)
        out.print(f"kafka: stopped (pid {broker['pid']})")
    if "postgres" in state:
        stop_postgres(settings)
        out.print("postgres: stopped")
    state_path(settings).unlink(missing_ok=True)


@services_app.command("status")
@clean_errors
def status() -> None:
    """Show the recorded services and whether they are running; exit 1 when one is down."""
    from db.embedded import postgres_status
    from streams.broker import pid_alive

    settings = load_settings()
    state = read_state(settings)
    table = Table("service", "state", "address")
    down = False
    broker = state.get("broker")
    if settings.kafka:
        table.add_row("kafka", "external", settings.kafka)
    elif broker:
        alive = pid_alive(int(broker["pid"]))
        down |= not alive
        table.add_row("kafka", "running" if alive else "[red]down[/]", f"{broker['bootstrap']} (pid {broker['pid']})")
    else:
        table.add_row("kafka", "not started", "-")
    if settings.database_url:
        table.add_row("postgres", "external", settings.describe()["database"])
    else:
        pg = postgres_status(settings)
        recorded = "postgres" in state
        down |= recorded and not pg["running"]
        word = "running" if pg["running"] else ("[red]down[/]" if recorded else "not started")
        table.add_row("postgres", word, str(settings.pgdata))
    out.print(table)
    if down:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(services_app, name="services")
