"""Which PostgreSQL and Kafka a command talks to, and who owns their lifetime.

Resolution order, for each of the two services:

1. external, when configured (``SHAREWISE_DATABASE_URL`` / ``SHAREWISE_KAFKA``): nothing embedded starts;
2. the embedded service kept running by ``sharewise services start`` (recorded in
   ``$SHAREWISE_HOME/services.json``), reused and left running;
3. otherwise an embedded service started for this command and stopped when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from engine.settings import Settings

STATE_FILE = "services.json"
#: the embedded broker of a running ``up`` or ``worker``, so that other commands (monitor, feed replay) find it
RUNNING_BROKER_FILE = "broker.json"


@dataclass(slots=True)
class Runtime:
    """Addresses of the services a command uses; ``origin`` says where each comes from."""

    dsn: str | None = None
    bootstrap: str | None = None
    origin: dict[str, str] = field(default_factory=dict)


def state_path(settings: Settings) -> Path:
    return settings.home / STATE_FILE


def read_state(settings: Settings) -> dict[str, Any]:
    """The services recorded by ``sharewise services start`` (empty when none)."""
    try:
        return json.loads(state_path(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_state(settings: Settings, state: dict[str, Any]) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def recorded_broker(settings: Settings) -> str | None:
    """Bootstrap address of a live embedded broker: kept by ``services start``, or owned by a running command."""
    from streams.broker import pid_alive

    running = settings.home / RUNNING_BROKER_FILE
    try:
        owned = json.loads(running.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        owned = None
    for broker in (read_state(settings).get("broker"), owned):
        if broker and pid_alive(int(broker["pid"])):
            return str(broker["bootstrap"])
    return None


@contextlib.contextmanager
def services(settings: Settings, *, database: bool = True, kafka: bool = True) -> Iterator[Runtime]:
    """Resolve (and if needed start) the services; stop what this call started on exit."""
    runtime = Runtime()
    stops: list[Callable[[], None]] = []
    try:
        if kafka:
            _resolve_kafka(settings, runtime, stops)
        if database:
            _resolve_database(settings, runtime, stops)
        yield runtime
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                stop()


def _resolve_kafka(settings: Settings, runtime: Runtime, stops: list[Callable[[], None]]) -> None:
    from streams.broker import EmbeddedBroker, wait_ready

    if settings.kafka_bootstrap:
        runtime.bootstrap, runtime.origin["kafka"] = settings.kafka_bootstrap, "external"
        return
    kept = recorded_broker(settings)
    if kept:
        wait_ready(kept, timeout=10)
        runtime.bootstrap, runtime.origin["kafka"] = kept, "services"
        return
    broker = EmbeddedBroker.start(settings.log_dir)
    stops.append(broker.stop)
    running = settings.home / RUNNING_BROKER_FILE
    running.write_text(json.dumps({"pid": broker.pid, "bootstrap": broker.bootstrap, "owner": os.getpid()}))
    stops.append(lambda: running.unlink(missing_ok=True))
    runtime.bootstrap, runtime.origin["kafka"] = broker.bootstrap, "embedded"


def _resolve_database(settings: Settings, runtime: Runtime, stops: list[Callable[[], None]]) -> None:
    """The embedded server stops by itself when the last process using it exits (db.embedded)."""
    from db.embedded import start_postgres

    if settings.database_url:
        runtime.dsn, runtime.origin["database"] = settings.database_url, "external"
        return
    kept = "postgres" in read_state(settings)
    runtime.dsn = start_postgres(settings)
    runtime.origin["database"] = "services" if kept else "embedded"


def with_database(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(conn)`` on a migrated database (external, or the embedded one) and return its result."""
    from db.connect import connect
    from db.migrate import migrate

    async def run() -> Any:
        with services(settings, kafka=False) as rt:
            assert rt.dsn
            await migrate(rt.dsn)
            conn = await connect(rt.dsn)
            try:
                return await work(conn)
            finally:
                await conn.close()

    return asyncio.run(run())
