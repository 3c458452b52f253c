"""One root for every engine error, split by what the caller must do.

* :class:`ConfigError` — misuse or bad configuration: fail fast, clear message.
* :class:`BadData` — input that cannot be used: goes to a dead-letter topic with
  its :attr:`BadData.reason`; never crashes a worker.
* :class:`TransientError` — an outage (database, broker): retry with backoff,
  nothing lost.
* :class:`Inconsistency` — an invariant is broken: halt loudly.

Errors carry structure (:meth:`EngineError.as_dict`) so a DLQ record or a
websocket error frame can hold them without parsing message text.
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Root of all ShareWise engine errors."""

    #: process exit code the CLI uses when this error reaches it
    exit_code: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self)}


class ConfigError(EngineError):
    """Misuse or configuration error: the operator must change something."""

    exit_code = 2


class DocumentError(ConfigError):
    """A JSON document (a strategy row, a rule, risk settings) is invalid at ``path``.

    ``path`` names the bad node, e.g. ``entry_conditions.all[2].left``.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def as_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "path": self.path, "message": self.problem}


class BadData(EngineError):
    """A record that cannot be used. ``reason`` is a short stable code (e.g. ``bad_price``)."""

    exit_code = 2

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def as_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "reason": self.reason, "detail": self.detail}


class TransientError(EngineError):
    """An outside component is unavailable right now; retrying later may succeed."""

    exit_code = 2


class ServiceUnavailable(TransientError):
    """A server (database, broker) cannot be reached at ``host:port``."""

    def __init__(self, service: str, where: str, detail: str = "") -> None:
        msg = f"cannot reach {service} at {where}"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.service = service
        self.where = where


class Inconsistency(EngineError):
    """An invariant of the engine is broken; continuing could corrupt data."""

    exit_code = 3


class AccountUnavailable(EngineError):
    """A live broker account that cannot take orders now. ``reason`` becomes the rejection reason of its orders:
    ``broker_token_expired`` (its token was refused), ``broker_account_inactive`` (disconnected), or
    ``broker_account_unknown``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class ToolFailed(EngineError):
    """An external program (a PostgreSQL tool such as ``pg_basebackup``) exited non-zero.

    ``tail`` is the end of what it wrote on stderr: the operator's first clue.
    """

    def __init__(self, tool: str, returncode: int, tail: str) -> None:
        super().__init__(f"{tool} failed (exit {returncode}): {tail.strip() or 'no output'}")
        self.tool = tool
        self.returncode = returncode
        self.tail = tail

    def as_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "tool": self.tool, "returncode": self.returncode, "tail": self.tail}
