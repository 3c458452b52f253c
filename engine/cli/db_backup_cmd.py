"""``sharewise db backup|backups|restore|schedule``: backups, the WAL archive and point-in-time restore.

README "Backups and restore" is the operator's guide; the work is done by ``db/backups.py``
and ``db/restore.py`` with PostgreSQL's own tools. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.table import Table

from engine.cli.console import clean_errors, err, out
from engine.cli.db_cmd import db_app
from engine.cli.environment import load_settings
from engine.errors import ConfigError

#: rotation default: four weekly fulls, a month of point-in-time recovery
DEFAULT_KEEP = 4
_DIR_HELP = "Backups directory (default: $SHAREWISE_HOME/backups)."


@db_app.command("backup")
@clean_errors
def backup_cmd(
    full: bool = typer.Option(False, "--full", help="A full pg_basebackup of the embedded server."),
    incremental: bool = typer.Option(False, "--incremental", help="An incremental pg_basebackup on the newest backup."),
    logical: bool = typer.Option(False, "--logical", help="pg_dump -Fc of the database (embedded or SHAREWISE_DATABASE_URL)."),
    out_file: Path | None = typer.Option(None, "--out", help="--logical: the dump file (default: a new backup in the backups directory)."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
    keep: int = typer.Option(DEFAULT_KEEP, "--keep", min=1, help="After a --full backup: keep this many fulls and their incrementals."),
) -> None:
    """Take a backup: --full, --incremental (physical, embedded server only) or --logical."""
    from db.backups import take_backup, take_logical
    from db.embedded import resolve_dsn

    if [full, incremental, logical].count(True) != 1:
        raise ConfigError("choose exactly one of --full, --incremental, --logical")
    if out_file is not None and not logical:
        raise ConfigError("--out is for --logical backups; physical backups go to --dir")
    settings = load_settings()
    if logical:
        path = take_logical(resolve_dsn(settings), out=out_file, settings=settings, progress=sys.stderr)
        out.print(f"logical backup written to {path} ({_size(path.stat().st_size)})")
        return
    taken, removed = take_backup(
        settings, "full" if full else "incremental", directory=directory, keep=keep if full else None, progress=sys.stderr
    )
    built_on = f" on {taken.parent}" if taken.parent else ""
    out.print(f"backup {taken.id} ({taken.kind}{built_on}, {_size(taken.bytes)}) verified, in {taken.path}")
    for backup_id in removed:
        out.print(f"removed {backup_id} (rotation: keeping {keep} full backups)")


@db_app.command("backups")
@clean_errors
def backups_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list of the backups."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
    prune_now: bool = typer.Option(False, "--prune", help="First apply rotation (--keep) to the directory."),
    keep: int = typer.Option(DEFAULT_KEEP, "--keep", min=1, help="With --prune: full backups to keep, with their incrementals."),
) -> None:
    """List the backups, oldest first, each checked with pg_verifybackup (logical ones with pg_restore --list).

    Exits 1 when one fails its check.
    """
    from db.backups import list_backups, prune, verify

    settings = load_settings()
    chosen = (directory or settings.backups_dir).expanduser().resolve()
    if prune_now:
        for backup_id in prune(settings, directory, keep):
            err.print(f"removed {backup_id} (rotation: keeping {keep} full backups)")
    checked = [(backup, *verify(backup)) for backup in list_backups(chosen)]
    failed = [backup.id for backup, ok, _ in checked if not ok]
    if json_out:
        print(orjson.dumps([backup.as_json(ok) for backup, ok, _ in checked]).decode())
        if failed:
            raise typer.Exit(1)
        return
    if not checked:
        out.print(f"no backups in {chosen}")
        return
    table = Table("id", "kind", "built on", "started (UTC)", "finished (UTC)", "size", "verified")
    table.columns[0].no_wrap = True
    for backup, ok, _ in checked:
        table.add_row(
            backup.id, backup.kind, backup.parent or "-", _time(backup.started_at), _time(backup.finished_at),
            _size(backup.bytes), "yes" if ok else "[bold red]FAILED[/]",
        )  # fmt: skip
    out.print(table)
    for backup, ok, tail in checked:
        if not ok:
            err.print(f"{backup.id}: {tail.strip()}", soft_wrap=True)
    out.print(f"{len(checked)} backup(s) in {chosen}; WAL archive {settings.wal_archive_dir}")
    if failed:
        raise typer.Exit(1)


@db_app.command("restore")
@clean_errors
def restore_cmd(
    into: Path = typer.Option(..., "--into", help="The new data directory to restore into (must not exist or be empty)."),
    to: str | None = typer.Option(None, "--to", help="Restore to this time: ISO 8601 with an offset, e.g. 2026-11-30T09:15:00+05:30."),
    latest: bool = typer.Option(False, "--latest", help="Restore the newest chain and replay all archived WAL."),
    promote_it: bool = typer.Option(False, "--promote", help="Make the restored directory the home's database (stops its server)."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Restore a backup chain into a new directory and replay WAL to --to TIME or --latest; --promote makes it the database.

    Nothing runs on the restored directory afterwards: start it by promoting it.
    """
    from db.restore import promote, restore

    if to is not None and latest:
        raise ConfigError("choose one of --to TIME and --latest")
    if to is None and not latest and not promote_it:
        raise ConfigError("say what to restore: --to TIME or --latest (or --promote a finished restore)")
    settings = load_settings()
    if to is not None or latest:
        target = _parse_time(to) if to is not None else None
        done = restore(settings, into=into, target=target, directory=directory, progress=sys.stderr)
        reached = done.reached.isoformat() if done.reached else "no transaction after the backup"
        out.print(f"restored {done.into} from {', '.join(done.chain)}")
        out.print(f"last transaction replayed: {reached}")
        if not promote_it:
            out.print(f"nothing runs on it; make it the home's database with: sharewise db restore --into {done.into} --promote")
    if promote_it:
        aside = promote(settings, into)
        out.print(f"{settings.pgdata} is now the restored database (nothing started)")
        out.print(f"the previous data directory was moved to {aside}" if aside else "there was no previous data directory")


@db_app.command("schedule")
@clean_errors
def schedule_cmd(
    keep: int = typer.Option(DEFAULT_KEEP, "--keep", min=1, help="Full backups the weekly rotation keeps."),
    archive: str = typer.Option("/path/to/monthly-archive", "--archive", help="Where the monthly full backup goes (fill it in)."),
) -> None:
    """Print crontab lines for daily incrementals, weekly fulls with rotation, a monthly archive and retention.

    Installs nothing: paste them into `crontab -e`.
    """
    settings = load_settings()
    exe = shlex.quote(_sharewise_executable())
    home = shlex.quote(str(settings.home.expanduser().resolve()))
    logs = shlex.quote(str(settings.log_dir.expanduser().resolve() / "backups.log"))
    for line in _crontab(exe, home, logs, keep, shlex.quote(archive)):
        print(line)


def _crontab(exe: str, home: str, logs: str, keep: int, archive: str) -> list[str]:
    tail = f">> {logs} 2>&1"
    return [
        f"# ShareWise backups of SHAREWISE_HOME={home}: printed by `sharewise db schedule`, install with `crontab -e`",
        f"SHAREWISE_HOME={home}",
        "# times are the machine's local time (cron's): pick hours outside the NSE session, 09:15-15:30 IST",
        "# daily (Mon-Sat 02:30): incremental backup",
        f"30 2 * * 1-6 {exe} db backup --incremental {tail}",
        f"# weekly (Sun 02:30): full backup, keep {keep} fulls with their incrementals, older WAL removed",
        f"30 2 * * 0 {exe} db backup --full --keep {keep} {tail}",
        f"# monthly (1st, 04:00): a full backup into the archive directory {archive} (fill it in), 12 kept",
        f"0 4 1 * * {exe} db backup --full --dir {archive} --keep 12 {tail}",
        "# daily (03:30): data retention",
        f"30 3 * * * {exe} db retention {tail}",
    ]


def _sharewise_executable() -> str:
    beside = Path(sys.executable).with_name("sharewise")
    found = str(beside) if beside.is_file() else shutil.which("sharewise")
    if found is None:
        raise ConfigError("cannot find the `sharewise` executable to schedule: install the package (pip install -e .)")
    return str(Path(found).absolute())


def _parse_time(raw: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"--to must be an ISO 8601 time with an offset, e.g. 2026-11-30T09:15:00+05:30; got {raw!r}") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"--to needs an offset (e.g. +05:30 or Z): {raw!r} is ambiguous")
    return parsed


def _time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: Any) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
