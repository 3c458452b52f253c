"""How a worker fails: the first fatal error is kept, whoever waits is woken, and agents cannot fail silently.

Faust's default for an exception that escapes an agent is a log line ("Agent crashed") while the
process carries on without the agent: silent loss. :meth:`FailureLatch.guarded` wraps an agent so
that its escaping exception trips the latch instead; the worker then stops and the CLI exits
non-zero with one red line naming the cause (docs/architecture.md, "Failures").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from engine.errors import EngineError

log = logging.getLogger("sharewise.worker")


class WorkerFailed(EngineError):
    """The worker stopped on an error it cannot recover from; the cause is chained."""

    exit_code = 1


class FailureLatch:
    """Holds the first fatal error; :attr:`failed` is set once it trips. Ignores failures during a stop."""

    def __init__(self, on_trip: Callable[[], None] = lambda: None) -> None:
        self.on_trip = on_trip
        self.failed = asyncio.Event()
        self.failure: WorkerFailed | None = None
        self.stopping = False

    def trip(self, where: str, exc: BaseException) -> None:
        """Record ``exc`` as the cause unless one is recorded already (or the worker is stopping)."""
        if self.failure is not None or self.stopping:
            return  # during a stop, an agent cut short is not a failure: its input stays unacknowledged
        self.failure = WorkerFailed(f"{where}: {exc}")
        self.failure.__cause__ = exc
        self.on_trip()
        log.error("worker failed: %s", self.failure, exc_info=not isinstance(exc, EngineError),
                  extra={"file_only": True})  # the CLI prints it as its one red line
        self.failed.set()

    def guarded(self, what: str, body: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``body`` as a Faust agent whose escaping exception trips the latch."""

        async def agent(stream: Any) -> None:
            try:
                await body(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure stops the worker, with its cause
                self.trip(what, exc)

        agent.__name__ = what.replace(" ", "_").replace(".", "_")
        return agent
