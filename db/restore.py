"""Point-in-time restore of the embedded server's backups, and promotion of a restored directory.

:func:`restore` picks the chain (the newest backup that finished before the target, and the
backups it builds on), combines it into a new data directory with ``pg_combinebackup``,
checks the result with ``pg_verifybackup``, then replays the WAL archive up to the target in
a temporary server (private socket, no TCP, no archiving) that it shuts down again: the
directory it leaves is a consistent cluster that nothing runs on, ready to be started or
promoted. :func:`promote` makes such a directory the home's database, keeping the old one
aside. README "Backups and restore" explains the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator

import asyncpg

from db.backups import MANIFEST, TAIL_CHARS, VERIFY_ARGS, Backup, archive_current_wal, chain_of, list_backups, run_tool
from db.connect import connect
from db.embedded import KEEP_MARKER, configure_archiving, give_to_server, postgres_status, server_user, stop_postgres
from engine.errors import ConfigError, EngineError, ToolFailed, TransientError
from engine.settings import Settings

#: settings the temporary recovery server gets on top of the restored configuration (removed afterwards)
_RECOVERY_MARK = "# sharewise restore: removed when the restore finishes"
_RECOVERY_WAIT_S = 1800.0


@dataclass(frozen=True, slots=True)
class Restored:
    """What :func:`restore` did: the data directory, the chain it combined, and where replay stopped."""

    into: Path
    chain: list[str]
    #: the time of the last transaction replayed (None when the archive held no transaction after the backup)
    reached: datetime | None


def restore(
    settings: Settings,
    *,
    into: Path,
    target: datetime | None,
    directory: Path | None = None,
    progress: IO[str] | None = None,
) -> Restored:
    """Restore the chain ending before ``target`` (None: the newest chain and all archived WAL) into ``into``.

    ``into`` must not exist or be empty. If the home's server runs, its current WAL segment is
    archived first, so everything committed until now can be replayed. Raises ConfigError
    when no backup finished before ``target`` or the archive ends before it, ToolFailed when
    a tool fails, e.g. a backup of the chain fails ``pg_verifybackup`` (``into`` is then left as
    it is, for inspection: remove it before retrying).
    """
    if settings.database_url:
        raise ConfigError("restore works on the embedded server's backups; an external server is restored by its DBA")
    into = into.expanduser().resolve()
    _check_new_dir(into, settings)
    backups_dir = (directory or settings.backups_dir).expanduser().resolve()
    chain = _chain_before(list_backups(backups_dir), target, backups_dir)
    running = postgres_status(settings)
    if running["running"]:
        asyncio.run(archive_current_wal(running["dsn"]))
    elif progress is not None:
        progress.write("the home's server is not running: replaying the WAL already in the archive\n")
    for backup in chain:  # a damaged backup is named before anything is written
        run_tool("pg_verifybackup", [*VERIFY_ARGS, str(backup.path)])
    into.parent.mkdir(parents=True, exist_ok=True)
    run_tool("pg_combinebackup", [*(str(b.path) for b in chain), "-o", str(into)], progress=progress)
    run_tool("pg_verifybackup", [*VERIFY_ARGS, str(into)])
    # the home's server's bookkeeping and socket lock, and the manifests that WAL replay makes stale
    for leftover in (".handle_pids.json", KEEP_MARKER, "backup_manifest", MANIFEST, *_socket_locks(into)):
        (into / leftover).unlink(missing_ok=True)
    configure_archiving(into, replace(settings, wal_archive=False))  # until promoted: the home's start turns it on
    reached = _replay(into, settings.wal_archive_dir.expanduser().resolve(), target, progress)
    return Restored(into=into, chain=[b.id for b in chain], reached=reached)


def promote(settings: Settings, restored: Path) -> Path | None:
    """Make ``restored`` the home's data directory; return where the previous one was moved (None: there was none).

    Stops the home's server first. Starts nothing. Raises ConfigError when ``restored`` is
    not a finished restore (a cluster with no pending recovery and no server running on it).
    """
    if settings.database_url:
        raise ConfigError("--promote replaces the embedded server's data directory; SHAREWISE_DATABASE_URL is set")
    restored = restored.expanduser().resolve()
    pgdata = settings.pgdata.expanduser().resolve()
    if not (restored / "PG_VERSION").is_file() or (restored / "recovery.signal").exists():
        raise ConfigError(f"{restored} is not a finished restore: run `sharewise db restore --to TIME|--latest --into DIR`")
    if (restored / "postmaster.pid").exists():
        raise ConfigError(f"a server runs on {restored} (postmaster.pid): stop it first")
    if restored == pgdata:
        raise ConfigError(f"{restored} already is the home's data directory")
    stop_postgres(settings)
    aside = None
    if pgdata.exists():
        aside = pgdata.with_name(f"{pgdata.name}.before-restore-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
        os.rename(pgdata, aside)
    shutil.move(str(restored), str(pgdata))
    _archive_history(pgdata, settings.wal_archive_dir.expanduser().resolve())
    return aside


@contextlib.contextmanager
def temporary_server(datadir: Path, log: IO[str] | None = None) -> Iterator[str]:
    """Run a server on ``datadir`` on a private Unix socket (no TCP) until the block ends; yield its DSN.

    For restores and for checking a restored directory. Raises ToolFailed (with the server
    log's tail) when it does not start.
    """
    sockets = Path(tempfile.mkdtemp(prefix="sharewise-restore-"))
    give_to_server(sockets)
    logfile = sockets / "server.log"
    # never archive: a restored directory's new timeline must not reach the home's WAL archive unless promoted
    options = f"-c listen_addresses='' -c port=5432 -c archive_mode=off -k {shlex.quote(str(sockets))}"
    pg_ctl = ["-D", str(datadir), "-l", str(logfile), "-o", options, "-w", "-t", str(int(_RECOVERY_WAIT_S))]
    try:
        try:
            run_tool("pg_ctl", [*pg_ctl, "start"], user=server_user(), cwd=sockets)
        except ToolFailed as exc:
            raise ToolFailed("postgres", exc.returncode, _tail(logfile)) from exc
        try:
            yield f"postgresql://postgres@/postgres?host={sockets}&port=5432"
        finally:
            if (datadir / "postmaster.pid").exists():
                run_tool("pg_ctl", ["-D", str(datadir), "-m", "fast", "-w", "stop"], user=server_user(), cwd=sockets)
    finally:
        if log is not None and logfile.exists():
            log.write(logfile.read_text())
        shutil.rmtree(sockets, ignore_errors=True)


def _chain_before(backups: list[Backup], target: datetime | None, directory: Path) -> list[Backup]:
    physical = [b for b in backups if b.kind != "logical"]
    candidates = [b for b in physical if target is None or b.finished_at <= target]
    if not candidates:
        when = f"before {target.isoformat()}" if target else "yet"
        oldest = f" (the oldest finished at {physical[0].finished_at.isoformat()})" if physical else ""
        raise ConfigError(f"no backup in {directory} finished {when}{oldest}")
    return chain_of(physical, candidates[-1])


def _check_new_dir(into: Path, settings: Settings) -> None:
    if into == settings.pgdata.expanduser().resolve():
        raise ConfigError(f"--into {into} is the home's data directory: restore into a new one, then --promote it")
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ConfigError(f"--into {into} exists and is not an empty directory")


def _replay(datadir: Path, archive: Path, target: datetime | None, progress: IO[str] | None) -> datetime | None:
    """Run recovery from the WAL archive to ``target`` (None: to its end) in a temporary server, then stop it."""
    auto = datadir / "postgresql.auto.conf"
    original = auto.read_text() if auto.exists() else ""
    restore_command = f"cp \"{archive}/%f\" \"%p\"".replace("'", "''")
    lines = [_RECOVERY_MARK, f"restore_command = '{restore_command}'", "hot_standby = on"]
    if target is not None:
        lines += [f"recovery_target_time = '{target.isoformat()}'", "recovery_target_action = 'pause'"]
    auto.write_text(original + "\n".join(lines) + "\n")
    (datadir / "recovery.signal").touch()
    _give_tree_to_server(datadir)
    if progress is not None:
        progress.write(f"replaying archived WAL {'to ' + target.isoformat() if target else 'to its end'}\n")
    log = io.StringIO()
    try:
        with temporary_server(datadir, log=log) as dsn:
            reached = asyncio.run(_finish_recovery(dsn, target is not None))
    except (EngineError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        if "recovery ended before configured recovery target was reached" in log.getvalue():
            raise ConfigError(
                f"the WAL archive ends before {target.isoformat() if target else 'the target'}: no transaction "
                f"committed after it was archived; restore to an earlier time or use --latest (remove {datadir} first)"
            ) from exc
        raise ToolFailed("postgres (WAL replay)", 1, _tail_of(log.getvalue()) or str(exc)) from exc
    finally:
        auto.write_text(original)
    return reached


async def _finish_recovery(dsn: str, paused_at_target: bool) -> datetime | None:
    """Wait for the target (then end recovery there) or for the end of the archive; return the last replayed commit."""
    conn = await connect(dsn)
    try:
        if paused_at_target:
            await _wait_for(conn, "SELECT pg_get_wal_replay_pause_state() = 'paused' OR NOT pg_is_in_recovery()")
            await conn.execute("SELECT pg_wal_replay_resume() WHERE pg_is_in_recovery()")
        await _wait_for(conn, "SELECT NOT pg_is_in_recovery()")
        await conn.execute("CHECKPOINT")
        # after recovery this stays at the last transaction it applied (PostgreSQL's documentation)
        return await conn.fetchval("SELECT pg_last_xact_replay_timestamp()")
    finally:
        await conn.close()


async def _wait_for(conn: asyncpg.Connection, condition: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _RECOVERY_WAIT_S
    while not await conn.fetchval(condition):
        if loop.time() > deadline:
            raise TransientError(f"recovery did not finish within {_RECOVERY_WAIT_S:.0f} s")
        await asyncio.sleep(0.05)


def _give_tree_to_server(datadir: Path) -> None:
    """A server starts only on a data directory of its own user with mode 0700."""
    datadir.chmod(0o700)
    if server_user() is None:
        return
    give_to_server(datadir)
    for root, dirs, files in os.walk(datadir):
        for name in dirs + files:
            give_to_server(Path(root) / name)


def _archive_history(pgdata: Path, archive: Path) -> None:
    """Copy the timeline history files of a promoted restore into the archive (never overwriting one)."""
    if not archive.is_dir():
        return
    for history in (pgdata / "pg_wal").glob("*.history"):
        target = archive / history.name
        if not target.exists():
            shutil.copy2(history, target)
            give_to_server(target)


def _socket_locks(datadir: Path) -> list[str]:
    return [p.name for p in datadir.glob(".s.PGSQL.*.lock")]


def _tail(path: Path) -> str:
    return _tail_of(path.read_text()) if path.exists() else "no server log"


def _tail_of(text: str) -> str:
    return text[-TAIL_CHARS:]
