"""Blocks I/O while a strategy's ``on_bar`` runs, through a CPython audit hook (PEP 578).

Strategies must do no I/O. Python cannot sandbox code, but every file open,
socket operation, subprocess launch and similar raises an *audit event*
first; :func:`guarded` installs (once per process) a hook that turns those
events into :class:`StrategyIOError` while the current thread is inside a
guarded call, and records the attempt so that a strategy catching the error
is still reported. Outside guarded calls the hook costs one comparison.

Consequence for authors: import everything at module level (a first import
inside ``on_bar`` opens files and is refused).
"""

from __future__ import annotations

import sys
import threading

#: Audit events refused inside a guarded call (exact names, or prefixes ending in ".").
BLOCKED = (
    "open",
    "socket.",
    "subprocess.",
    "os.system",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "os.kill",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "os.truncate",
    "os.listdir",
    "os.scandir",
    "shutil.",
    "urllib.",
    "http.client.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "telnetlib.",
    "sqlite3.connect",
    "ctypes.dlopen",
    "webbrowser.open",
)
_EXACT = frozenset(name for name in BLOCKED if not name.endswith("."))
_PREFIXES = tuple(name for name in BLOCKED if name.endswith("."))


class StrategyIOError(RuntimeError):
    """A strategy attempted I/O (the audit event is in the message)."""


class _Guard:
    """Process-wide state of the hook: which thread is guarded and what it attempted."""

    def __init__(self) -> None:
        self.thread: int | None = None
        self.attempt: str | None = None
        self.installed = False
        self.lock = threading.Lock()

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if self.thread is None or self.thread != threading.get_ident():
            return
        if event in _EXACT or event.startswith(_PREFIXES):
            attempt = f"{event}{_short(args)}"
            self.attempt = self.attempt or attempt
            raise StrategyIOError(f"strategies may not do I/O: {attempt}")


def _short(args: tuple[object, ...]) -> str:
    text = repr(args[:2])
    return text if len(text) <= 120 else text[:117] + "..."


_GUARD = _Guard()


class guarded:  # noqa: N801 - used like a function: ``with guarded() as attempt``
    """Refuse audited I/O in this thread while the block runs; ``event`` then tells what was attempted.

    After the block, ``event`` is the first refused I/O event, or None. One
    thread at a time runs strategies (not re-entrant across threads).
    """

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: str | None = None

    def __enter__(self) -> guarded:
        if not _GUARD.installed:
            _install()
        _GUARD.thread, _GUARD.attempt = threading.get_ident(), None
        return self

    def __exit__(self, *exc: object) -> None:
        self.event = _GUARD.attempt
        _GUARD.thread, _GUARD.attempt = None, None


def _install() -> None:
    with _GUARD.lock:
        if not _GUARD.installed:
            sys.addaudithook(_GUARD.hook)
            _GUARD.installed = True
