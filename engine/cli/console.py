"""Shared rich consoles and the one place CLI errors are turned into exit codes."""

from __future__ import annotations

import functools
import sys
from datetime import date
from typing import Callable, ParamSpec, TypeVar

import typer
from rich.console import Console

from engine.errors import ConfigError, EngineError
from engine.settings import redact

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def parse_day(text: str, flag: str) -> date:
    """A ``YYYY-MM-DD`` option value; a :class:`ConfigError` naming ``flag`` otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} must be a date YYYY-MM-DD, got {text!r}") from None


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear error line on stderr; return the Exit to raise."""
    err.print(f"[bold red]error:[/] {redact(message)}", soft_wrap=True)
    return typer.Exit(code)


def clean_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`EngineError` into one red line on stderr and its exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EngineError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)

    return wrapper
