"""``sharewise strategy list [--json]`` and ``sharewise strategy new NAME [--dir DIR]``.

``list`` shows every discoverable strategy (built-ins and entry point plugins)
with version, source package and parameters; plugins that failed to load are
listed after them with the reason (in ``--json``: under ``"problems"``).
``--json`` prints ``{"strategies": [{name, version, source, reference, summary,
params: [{name, type, default, min, max, choices, help}]}], "problems": [...]}``.

``new`` writes an installable plugin package ``sharewise-NAME/`` (pyproject
with the entry point, the strategy class, a passing test) and refuses to
overwrite anything.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.table import Table

from engine.cli.console import clean_errors, out
from engine.errors import ConfigError
from engine.strategy import discovery
from engine.strategy.scaffold import plugin_files

strategy_app = typer.Typer(help="Strategy plugins: list what is installed, scaffold a new one.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(strategy_app, name="strategy")


@strategy_app.command("list")
@clean_errors
def list_strategies(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the built-in and installed plugin strategies."""
    infos = discovery.available()
    problems = discovery.problems()
    if as_json:
        doc = {
            "strategies": [info.describe() for info in infos.values()],
            "problems": [{"name": p.name, "source": p.source, "reference": p.reference, "problem": p.problem}
                         for p in problems],
        }  # fmt: skip
        typer.echo(orjson.dumps(doc).decode())
        return
    table = Table("name", "version", "source", "parameters", "summary", title="strategies")
    for info in infos.values():
        params = ", ".join(f"{p.name}={p.default}" for p in info.cls.params)
        table.add_row(info.name, info.version, info.source, params, info.summary)
    for p in problems:
        table.add_row(p.name, "-", p.source, "", f"[red]not loaded: {p.problem}[/]")
    out.print(table)


@strategy_app.command("new")
@clean_errors
def new_strategy(
    name: str = typer.Argument(..., help="Strategy name, a lower-case identifier (e.g. my_breakout)."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create sharewise-NAME/."),
) -> None:
    """Scaffold an installable strategy plugin package."""
    files = plugin_files(name)
    root = directory / f"sharewise-{name.replace('_', '-')}"
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or --dir")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    out.print(f"created {root}/ with strategy [bold]{name}[/]:")
    for relative in files:
        out.print(f"  {relative}")
    out.print(f"next: pip install -e {root} && sharewise strategy list && (cd {root} && python -m pytest)")
