"""The ``sharewise`` CLI root. Command families register themselves from their modules."""

from __future__ import annotations

import importlib

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
    app()
