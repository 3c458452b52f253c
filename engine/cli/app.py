"""The ``sharewise`` CLI root. Command families register themselves from their modules."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
import warnings

import typer

from engine import __version__
from engine.cli.console import out

app = typer.Typer(
    name="sharewise",
    help="ShareWise signal engine: market ticks -> bars -> indicators -> strategies -> signals.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module exposes register(app). Keep this list the one place commands are wired.
COMMAND_MODULES = [
    "engine.cli.services_cmd",
    "engine.cli.db_cmd",
    "engine.cli.up_cmd",
    "engine.cli.pipeline_cmd",
    "engine.cli.bars_cmd",
    "engine.cli.indicators_cmd",
    "engine.cli.strategy_cmd",
    "engine.cli.backtest_cmd",
    "engine.cli.feed_cmd",
    "engine.cli.ops_cmd",
    "engine.cli.orders_cmd",
    "engine.cli.broker_cmd",
    "engine.cli.instruments_cmd",
    "engine.cli.model_cmd",
]


def _version(value: bool) -> None:
    if value:
        out.print(f"sharewise {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """ShareWise signal engine: market ticks -> bars -> indicators -> strategies -> signals."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    try:
        app()
    except SystemExit as done:
        _exit_despite_lingering_threads(done.code)
        raise


def _exit_despite_lingering_threads(code: object, grace: float = 5.0) -> None:
    """Exit with ``code`` even if a library thread outlives the command (Faust's consumer thread can,
    after a failure stopped its app mid-way): wait ``grace`` seconds for them, then leave without them."""
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not lingering:
        return
    warnings.simplefilter("ignore")  # the command has said its last word; a dying library thread adds none
    logging.disable(logging.CRITICAL)
    deadline = time.monotonic() + grace
    for thread in lingering:
        thread.join(max(deadline - time.monotonic(), 0.0))
    if any(t.is_alive() for t in lingering):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
