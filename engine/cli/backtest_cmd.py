"""``sharewise backtest --strategy NAME [--params JSON] [--timeframe TF] FILE.csv [--json] [--save]``.

Runs a strategy over a tick or bar file with the live pipeline's code
(:mod:`engine.strategy.backtest` defines the file formats, trades and
statistics). ``--json`` prints exactly::

    {"signals": [{"time", "symbol", "signal_type", "entry_price", "target_price",
                  "stop_loss", "confidence_score"}, ...],
     "trades": N, "win_rate": x, "avg_return": x, "max_drawdown": x, "sharpe": x, "exposure": x,
     "orders": [{…the orders message of each order, final state…}, ...],
     "pnl": {"gross": "₹", "charges": "₹", "net": "₹"}}

The signals are traded on paper by the live order code (docs/orders.md) with ``--execution``
(default ``{"mode": "paper", "product": "MIS", "quantity": 1}``) and SHAREWISE_PAPER_CASH, on the
file's 1m bars; a bars file of another timeframe has no 1m price path, so ``orders`` is empty and
``pnl`` null.

``--save`` writes the summary (statistics, signal count, strategy, parameters,
timeframe, file name) into ``backtest_results`` of the strategy row named NAME
of the user ``--user`` (default: the demo tenant, ``demo@sharewise.local``),
in the database of ``SHAREWISE_DATABASE_URL`` or the embedded one. Exit code 2
with one clear line for an unknown strategy, bad parameters, a bad file, or no
such row.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import typer
from rich.table import Table

from db.connect import connect
from db.embedded import resolve_dsn
from engine.cli.console import clean_errors, err, out
from engine.cli.environment import load_settings
from engine.cli.files import backtest_file
from engine.domain import Timeframe
from engine.errors import ConfigError
from engine.orders.execution import Execution
from engine.strategy import discovery
from engine.strategy.backtest import BacktestResult

DEMO_EMAIL = "demo@sharewise.local"
DEFAULT_EXECUTION = '{"mode": "paper", "product": "MIS", "quantity": 1}'


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)


@clean_errors
def backtest(
    file: Path = typer.Argument(
        ..., help="Ticks CSV (time,symbol,price,qty) or bars CSV (time,open,high,low,close,volume)."
    ),
    strategy: str = typer.Option(..., "--strategy", "-s", help="Strategy name (see `sharewise strategy list`)."),
    params: str = typer.Option("{}", "--params", help='Strategy parameters as a JSON object, e.g. \'{"fast": 5}\'.'),
    timeframe: str = typer.Option("5m", "--timeframe", "-t", help="Bar timeframe: 1m, 5m, 15m, 1h or 1d."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result instead of a summary."),
    save: bool = typer.Option(False, "--save", help="Write the summary into the strategy row's backtest_results."),
    user: str = typer.Option(DEMO_EMAIL, "--user", help="Owner (email) of the strategy row --save writes."),
    execution: str = typer.Option(DEFAULT_EXECUTION, "--execution",
                                  help="How signals trade on paper, as a strategy row's risk_management.execution."),
) -> None:
    """Backtest a strategy on a tick or bar file, bar by bar, with the live pipeline's code, and trade it on paper."""
    settings = load_settings()
    tf = Timeframe.parse(timeframe)
    values = _params(params)
    paper = Execution.from_json(_params(execution, "--execution"), where="--execution")
    result = backtest_file(discovery.create(strategy, values), file, tf, settings.allowed_lateness_s,
                           execution=paper, cash=settings.paper_cash)
    if as_json:
        typer.echo(orjson.dumps(result.as_json()).decode())
    else:
        _print_summary(strategy, tf, result)
    if save:
        summary = {"strategy": strategy, "params": values, "timeframe": tf.label, "file": file.name,
                   "bars": result.bars, "signals": len(result.signals), **result.stats}  # fmt: skip
        asyncio.run(_save(resolve_dsn(settings), user, strategy, summary))
        err.print(f"saved backtest_results of strategy {strategy!r} of {user}")


def _params(text: str, option: str = "--params") -> dict[str, Any]:
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{option} must be a JSON object")
    return values


def _print_summary(name: str, tf: Timeframe, result: BacktestResult) -> None:
    table = Table("time", "symbol", "signal", "entry", "target", "stop", "confidence",
                  title=f"{name} on {result.bars} {tf.label} bars")  # fmt: skip
    for s in result.signals:
        table.add_row(s.bar_time.isoformat(), s.symbol, s.signal_type, str(s.entry_price),
                      str(s.target_price or "-"), str(s.stop_loss or "-"), str(s.confidence_score))  # fmt: skip
    out.print(table)
    out.print("  ".join(f"{k} {v}" for k, v in result.stats.items()))
    if result.paper is None:
        out.print("paper orders: none (a bars file of a timeframe other than 1m has no 1m price path)")
        return
    done = [o for o in result.paper.orders if o["status"] == "COMPLETE"]
    pnl = result.paper.pnl
    out.print(f"paper orders: {len(result.paper.orders)} ({len(done)} filled); P&L gross ₹{pnl['gross']},"
              f" charges ₹{pnl['charges']}, net ₹{pnl['net']}")


async def _save(dsn: str, email: str, name: str, summary: dict[str, Any]) -> None:
    conn = await connect(dsn)
    try:
        status = await conn.execute(
            """UPDATE public.strategies_strategy SET backtest_results = $3::jsonb, updated_at = now()
               WHERE name = $2 AND user_id = (SELECT id FROM public.users_customuser WHERE email = $1)""",
            email, name, orjson.dumps(summary).decode(),
        )  # fmt: skip
    except asyncpg.PostgresError as exc:
        hint = "is the database migrated? `sharewise db migrate`"
        raise ConfigError(f"cannot save backtest_results: {exc} ({hint})") from exc
    finally:
        await conn.close()
    if status.endswith(" 0"):
        raise ConfigError(f"no strategy row named {name!r} for user {email} (seed it with `sharewise db seed-demo`)")
