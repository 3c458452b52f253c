"""``sharewise db retention``: the seed's data retention policy (README.md, "Data retention"; db/retention.py).

Talks to ``SHAREWISE_DATABASE_URL`` when set, else to the embedded PostgreSQL, migrated first like every
``sharewise db`` command.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from engine.cli.console import clean_errors, err, out, parse_day
from engine.cli.db_cmd import db_app
from engine.cli.environment import load_settings
from engine.cli.runtime import with_database
from engine.domain import IST
from engine.errors import ConfigError


@db_app.command("retention")
@clean_errors
def retention_cmd(
    as_of: str | None = typer.Option(None, "--as-of", metavar="DATE",
                                     help="The day the run counts as today (YYYY-MM-DD, IST). Default: today in IST."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would move; change no data row."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (keys in README.md)."),
    restore: str | None = typer.Option(None, "--restore-archived", metavar="TABLE",
                                       help="Move rows of archive.TABLE back to public instead (needs --since)."),
    since: str | None = typer.Option(None, "--since", metavar="DATE",
                                     help="With --restore-archived: rows whose time is on or after DATE (IST)."),
) -> None:
    """Apply the retention policy: delete old market data, archive old signals, notifications, jobs and drafts."""
    if restore is not None or since is not None:
        _restore(restore, since, as_of=as_of, dry_run=dry_run, json_out=json_out)
        return
    from db.retention import apply_retention

    day = parse_day(as_of, "--as-of") if as_of else datetime.now(IST).date()

    def progress(table: str, action: Any, done: int) -> None:
        err.print(f"{table}: {done} rows {action}d so far" + (" (dry run)" if dry_run else ""))

    report = with_database(load_settings(), lambda conn: apply_retention(conn, day, dry_run=dry_run,
                                                                         progress=progress))
    if json_out:
        print(orjson.dumps(report.as_dict()).decode())
        return
    table = Table("table", "archived", "deleted", "held back", "why held back", "skipped (locked)", "kept")
    for name, t in report.tables.items():
        why = "; ".join(f"{n} {escape(reason)}" for reason, n in t.held_back_reasons.items())
        table.add_row(name, str(t.archived), str(t.deleted), str(t.held_back), why or "-", str(t.skipped_locked),
                      str(t.kept))
    out.print(table)
    totals = report.as_dict()["totals"]
    verb = "would be" if dry_run else "were"
    out.print(f"retention run {report.run_id} as of {day}: {totals['archived']} rows {verb} archived,"
              f" {totals['deleted']} {verb} deleted, {totals['held_back']} held back, {totals['skipped_locked']}"
              " skipped (locked)" + (" (dry run: nothing changed)" if dry_run else ""), soft_wrap=True)


def _restore(table: str | None, since: str | None, *, as_of: str | None, dry_run: bool, json_out: bool) -> None:
    from db.retention import restore_archived

    if table is None or since is None:
        raise ConfigError("--restore-archived TABLE and --since DATE go together")
    if as_of is not None or dry_run:
        raise ConfigError("--as-of and --dry-run apply to a retention run, not to --restore-archived")
    day = parse_day(since, "--since")
    restored = with_database(load_settings(), lambda conn: restore_archived(conn, table, day))
    if json_out:
        print(orjson.dumps({"table": restored.table, "since": day.isoformat(), "restored": restored.restored,
                            "left_in_archive": restored.left_in_archive}).decode())
        return
    out.print(f"restored {restored.restored} rows of archive.{table} since {day} to public.{table}")
    for reason, n in restored.left_in_archive.items():
        out.print(f"left in archive: {n} ({escape(reason)})", soft_wrap=True)
