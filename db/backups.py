"""Backups of the embedded server: ``pg_basebackup`` chains, rotation, logical dumps (README "Backups and restore").

The data is PostgreSQL's own: each backup directory ``<backups>/<id>`` is a plain-format
``pg_basebackup`` (with its ``backup_manifest``; incrementals are taken with
``--incremental`` against their parent's manifest and need ``summarize_wal``), or for a
logical backup a ``pg_dump -Fc`` file. Beside it, :data:`MANIFEST` holds what the engine
needs to find a chain: kind, parent, times, size and the first WAL file the backup needs.

A backup is written under a hidden name (``.partial-<id>``), verified with
``pg_verifybackup`` and only then renamed: a command killed in the middle leaves the
previous chain untouched, and the next backup removes the leftover. One backup at a time
per directory (a lock file). The WAL archive itself is written by the server
(``db/embedded.py``); restoring lives in ``db/restore.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from db.connect import connect
from db.embedded import pg_tool, start_postgres
from engine.errors import ConfigError, ToolFailed, TransientError
from engine.settings import Settings

Kind = Literal["full", "incremental", "logical"]
#: the engine's description of one backup, next to PostgreSQL's own backup_manifest
MANIFEST = "sharewise-backup.json"
#: the file name of a logical backup inside its backup directory
DUMP_FILE = "sharewise.dump"
PARTIAL_PREFIX = ".partial-"
#: pg_verifybackup of one of our backups: the engine's manifest is the one file PostgreSQL's does not list
VERIFY_ARGS = ["--quiet", "--ignore", MANIFEST]
EXTERNAL_SERVER = (
    "physical backups and WAL archiving of an external server (SHAREWISE_DATABASE_URL) are the DBA's job; "
    "`sharewise db backup --logical --out FILE` dumps it with pg_dump"
)
#: how much of a tool's stderr (or a server log) an error shows
TAIL_CHARS = 1500
#: how long the archiver may take to archive the segment just switched before we call archiving broken
_ARCHIVE_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Backup:
    """One complete backup found in a backups directory."""

    id: str
    kind: Kind
    parent: str | None
    started_at: datetime
    finished_at: datetime
    bytes: int
    path: Path
    #: the first WAL segment a physical backup needs (from its backup_label); None for logical backups
    start_wal: str | None = None

    def as_json(self, verified: bool) -> dict[str, object]:
        """The ``sharewise db backups --json`` object of this backup."""
        return {
            "id": self.id,
            "kind": self.kind,
            "parent": self.parent,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "bytes": self.bytes,
            "verified": verified,
        }


def take_backup(
    settings: Settings,
    kind: Literal["full", "incremental"],
    *,
    directory: Path | None = None,
    keep: int | None = None,
    progress: IO[str] | None = None,
) -> tuple[Backup, list[str]]:
    """Take a verified ``pg_basebackup`` of the embedded server; return it and the ids rotation removed.

    An incremental builds on the newest backup of the directory. After a full backup,
    ``keep`` (when given) applies :func:`prune`. Raises ConfigError for an external server, or
    an incremental without WAL summaries or without a previous backup on the server's timeline;
    ToolFailed when a tool fails (the partial backup is removed, the chain is unchanged).
    """
    if settings.database_url:
        raise ConfigError(EXTERNAL_SERVER)
    directory = _backups_dir(settings, directory)
    with _exclusive(directory):
        _remove_partials(directory, progress)
        dsn = start_postgres(settings)
        archiving, timeline = asyncio.run(_check_server(dsn, kind))
        parent = _parent_for(directory, kind, timeline)
        if not archiving and progress is not None:
            progress.write("note: the server does not archive WAL: this backup restores only to its own end\n")
        started = _now()
        backup_id = _new_id(started, kind)
        partial = directory / f"{PARTIAL_PREFIX}{backup_id}"
        args = ["-d", dsn, "-D", str(partial), "-Fp", "-X", "stream", "-c", "fast", "--progress"]
        if parent is not None:
            args += ["--incremental", str(parent.path / "backup_manifest")]
        try:
            _basebackup(args, incremental=parent is not None, progress=progress)
            finished = _now()
            asyncio.run(archive_current_wal(dsn))
            run_tool("pg_verifybackup", [*VERIFY_ARGS, str(partial)])
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        backup = Backup(
            id=backup_id, kind=kind, parent=parent.id if parent else None, started_at=started,
            finished_at=finished, bytes=_size(partial), path=directory / backup_id, start_wal=_start_wal(partial),
        )  # fmt: skip
        _publish(partial, backup)
        removed = prune(settings, directory, keep) if kind == "full" and keep is not None else []
    return backup, removed


def take_logical(dsn: str, *, out: Path | None, settings: Settings, progress: IO[str] | None = None) -> Path:
    """``pg_dump -Fc`` of ``dsn`` into ``out`` or, when None, a new logical backup in the backups directory.

    The password of ``dsn`` is handed to pg_dump in its environment, never on its command line.
    The file is written under a temporary name and checked with ``pg_restore --list``. Returns its path.
    """
    plain_dsn, env = _without_password(dsn)
    started = _now()
    if out is None:
        directory = _backups_dir(settings, None)
        backup_id = _new_id(started, "logical")
        partial_dir = directory / f"{PARTIAL_PREFIX}{backup_id}"
        partial_dir.mkdir(mode=0o700)
        target, partial = directory / backup_id / DUMP_FILE, partial_dir / DUMP_FILE
    else:
        partial_dir, target = None, out.expanduser().resolve()
        partial = target.with_name(f"{PARTIAL_PREFIX}{target.name}")
    try:
        run_tool("pg_dump", ["-Fc", "-f", str(partial), "-d", plain_dsn], env=env, progress=progress)
        run_tool("pg_restore", ["--list", str(partial)])
    except BaseException:
        if partial_dir is not None:
            shutil.rmtree(partial_dir, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
    if partial_dir is None:
        os.replace(partial, target)
        return target
    backup = Backup(
        id=target.parent.name, kind="logical", parent=None, started_at=started, finished_at=_now(),
        bytes=partial.stat().st_size, path=target.parent,
    )  # fmt: skip
    _publish(partial_dir, backup)
    return target


def list_backups(directory: Path) -> list[Backup]:
    """The complete backups of ``directory``, oldest first (partial ones are not listed). Reads files only."""
    if not directory.is_dir():
        return []
    found = []
    for entry in sorted(directory.iterdir()):
        manifest = entry / MANIFEST
        if entry.name.startswith(".") or not manifest.is_file():
            continue
        doc = json.loads(manifest.read_text())
        found.append(Backup(
            id=doc["id"], kind=doc["kind"], parent=doc["parent"],
            started_at=datetime.fromisoformat(doc["started_at"]), finished_at=datetime.fromisoformat(doc["finished_at"]),
            bytes=doc["bytes"], path=entry, start_wal=doc.get("start_wal"),
        ))  # fmt: skip
    return found


def verify(backup: Backup) -> tuple[bool, str]:
    """``pg_verifybackup`` of a physical backup (``pg_restore --list`` of a logical one): (passed, tool output tail)."""
    try:
        if backup.kind == "logical":
            run_tool("pg_restore", ["--list", str(backup.path / DUMP_FILE)])
        else:
            run_tool("pg_verifybackup", [*VERIFY_ARGS, str(backup.path)])
    except ToolFailed as exc:
        return False, exc.tail
    return True, ""


def chain_of(backups: list[Backup], last: Backup) -> list[Backup]:
    """The full backup ``last`` builds on and every incremental up to ``last``, in restore order."""
    by_id = {b.id: b for b in backups}
    chain = [last]
    while chain[0].parent is not None:
        parent = by_id.get(chain[0].parent)
        if parent is None:
            raise ConfigError(f"backup {chain[0].id} builds on {chain[0].parent}, which is missing: its chain is broken")
        chain.insert(0, parent)
    return chain


def prune(settings: Settings, directory: Path | None, keep: int) -> list[str]:
    """Keep the newest ``keep`` full backups of the directory and their incrementals; remove the older ones.

    In the home's own backups directory, WAL older than the oldest kept full backup is then
    removed from the archive (``pg_archivecleanup``); pruning another ``--dir`` never touches
    the archive, whose WAL the home's chains may still need. Logical backups are not rotated.
    Returns the removed ids.
    """
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    directory = _backups_dir(settings, directory)
    physical = [b for b in list_backups(directory) if b.kind != "logical"]
    fulls = [b for b in physical if b.kind == "full"]
    kept_fulls = {b.id for b in fulls[-keep:]}
    doomed = [b for b in physical if _root_id(physical, b) not in kept_fulls]
    for backup in doomed:
        shutil.rmtree(backup.path)
    archive = settings.wal_archive_dir.expanduser().resolve()
    oldest_kept = next((b for b in fulls if b.id in kept_fulls), None)
    if directory == _backups_dir(settings, None) and oldest_kept and oldest_kept.start_wal and archive.is_dir():
        run_tool("pg_archivecleanup", [str(archive), oldest_kept.start_wal])
    return [b.id for b in doomed]


async def archive_current_wal(dsn: str) -> str | None:
    """Switch to a new WAL segment and wait until the archiver has archived the one just finished.

    Returns that segment's name, or None when the server does not archive. Raises
    TransientError when archiving does not catch up within a minute (it is failing: see the
    server log and ``pg_stat_archiver``).
    """
    conn = await connect(dsn)
    try:
        if await conn.fetchval("SHOW archive_mode") == "off":
            return None
        await conn.execute("SELECT pg_switch_wal()")
        # the segment before the one now written to (the switch is skipped when nothing was written since the last)
        segment = await conn.fetchval(
            "SELECT pg_walfile_name(lsn - (pg_walfile_name_offset(lsn)).file_offset - 1) FROM pg_current_wal_insert_lsn() lsn"
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ARCHIVE_WAIT_S
        while True:
            row = await conn.fetchrow("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
            if row["last_archived_wal"] is not None and row["last_archived_wal"][:24] >= segment:
                return segment
            if loop.time() > deadline:
                raise TransientError(
                    f"WAL segment {segment} was not archived within {_ARCHIVE_WAIT_S:.0f} s "
                    f"(last failed: {row['last_failed_wal']}): see the server log and pg_stat_archiver"
                )
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def run_tool(
    tool: str,
    args: list[str],
    *,
    progress: IO[str] | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a PostgreSQL program of the wheel; return its stdout, or raise ToolFailed with its stderr's tail.

    Its stderr is passed through to ``progress`` as it comes. The program dies with this
    process (a killed command leaves no orphaned ``pg_basebackup`` writing on).
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(
            [str(pg_tool(tool)), *args], stdout=stdout, stderr=subprocess.PIPE, text=True, env=full_env,
            user=user, cwd=cwd, preexec_fn=_die_with_parent,
        )  # fmt: skip
        assert proc.stderr is not None
        tail = ""
        for chunk in iter(lambda: proc.stderr.read(256), ""):
            tail = (tail + chunk)[-TAIL_CHARS:]
            if progress is not None:
                progress.write(chunk)
                progress.flush()
        if proc.wait() != 0:
            raise ToolFailed(tool, proc.returncode, tail)
        stdout.seek(0)
        return stdout.read()


def _basebackup(args: list[str], *, incremental: bool, progress: IO[str] | None) -> None:
    try:
        run_tool("pg_basebackup", args, progress=progress)
    except ToolFailed as exc:
        if incremental and "WAL summaries are required" in exc.tail:
            raise ConfigError(
                "the server has no WAL summaries back to the previous backup (summarize_wal was off, or the database "
                f"was restored onto a new timeline since): take a --full backup. pg_basebackup said: {exc.tail.strip()}"
            ) from exc
        raise


def _die_with_parent() -> None:
    """In the child before exec: be killed when the parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


async def _check_server(dsn: str, kind: str) -> tuple[bool, int]:
    """Refuse a backup the running server cannot support (incrementals need summarize_wal).

    Returns whether it archives WAL and its timeline.
    """
    conn = await connect(dsn)
    try:
        summarize = await conn.fetchval("SHOW summarize_wal")
        archiving = await conn.fetchval("SHOW archive_mode") != "off"
        timeline = await conn.fetchval("SELECT timeline_id FROM pg_control_checkpoint()")
    finally:
        await conn.close()
    if kind == "incremental" and summarize != "on":
        raise ConfigError(
            "the running server does not summarize WAL (started before backups were set up): "
            "restart it (`sharewise services stop`, or end the processes using it), then take a --full backup"
        )
    return archiving, timeline


def _parent_for(directory: Path, kind: str, timeline: int) -> Backup | None:
    """The backup an incremental builds on: the newest one, taken on the server's current timeline."""
    if kind == "full":
        return None
    physical = [b for b in list_backups(directory) if b.kind != "logical"]
    if not physical:
        raise ConfigError(f"no backup to build an incremental on in {directory}: take one with --full first")
    parent = physical[-1]
    if parent.start_wal and int(parent.start_wal[:8], 16) != timeline:
        raise ConfigError(
            f"the newest backup {parent.id} was taken on timeline {int(parent.start_wal[:8], 16)} and the database "
            f"is on timeline {timeline} since a restore was promoted: take a --full backup"
        )
    return parent


def _root_id(backups: list[Backup], backup: Backup) -> str | None:
    try:
        return chain_of(backups, backup)[0].id
    except ConfigError:
        return None  # broken chain: never kept


def _backups_dir(settings: Settings, directory: Path | None) -> Path:
    chosen = (directory or settings.backups_dir).expanduser().resolve()
    try:
        chosen.mkdir(mode=0o711, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"backups directory {chosen} cannot be created: {exc.strerror or exc}") from exc
    return chosen


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    with open(directory / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another backup is running in {directory}") from None
        yield


def _remove_partials(directory: Path, progress: IO[str] | None) -> None:
    """Remove what a killed backup left (call under the directory's lock: no backup is running)."""
    for entry in directory.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        if progress is not None:
            progress.write(f"removed the unfinished backup {entry.name}\n")


def _publish(partial: Path, backup: Backup) -> None:
    """Write the manifest, then rename the partial directory to its id (atomic) and make the rename durable."""
    doc = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(backup).items() if k != "path"}
    manifest = partial / MANIFEST
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    _fsync(manifest)
    os.rename(partial, backup.path)
    _fsync(backup.path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _start_wal(backup_dir: Path) -> str | None:
    """The WAL file named on the ``START WAL LOCATION`` line of the backup's backup_label."""
    for line in (backup_dir / "backup_label").read_text().splitlines():
        if line.startswith("START WAL LOCATION:") and "(file " in line:
            return line.split("(file ", 1)[1].rstrip(")").strip()
    return None


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _new_id(started: datetime, kind: str) -> str:
    """``20261130T091500.123Z-full``: sorts by time, and names the kind."""
    return f"{started.strftime('%Y%m%dT%H%M%S')}.{started.microsecond // 1000:03d}Z-{kind}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _without_password(dsn: str) -> tuple[str, dict[str, str]]:
    """Split a DSN into one without its password and the environment (PGPASSWORD) that carries it."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = unquote(parts.password) if parts.password else next((v for k, v in query if k == "password"), None)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    plain = urlunsplit(parts._replace(netloc=netloc, query=urlencode([(k, v) for k, v in query if k != "password"])))
    return plain, ({"PGPASSWORD": password} if password else {})
