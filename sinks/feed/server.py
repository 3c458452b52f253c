"""The websocket feed server: websockets asyncio server + Kafka reader + HTTP page, in one process.

``sharewise feed-server`` runs :func:`serve_feed`; ``sharewise up`` can run it inside
its own event loop. HTTP: ``GET /`` is the live web page, ``GET /static/NAME`` its
scripts and styles (a fixed list, :data:`STATIC_FILES`), ``GET /healthz`` answers
``ok``; a websocket upgrade on ``/`` or ``/ws`` opens a feed session.

Tokens are never logged: the websockets library logs through ``sharewise.feed.ws``,
which is kept at WARNING or above so frame-level debug logging (which would print an
``auth`` frame) cannot be switched on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import logging
from importlib import resources
from typing import Awaitable, Callable

import websockets
from websockets.asyncio.server import Server, ServerConnection
from websockets.http11 import Request, Response

from db.connect import create_pool
from engine.errors import ConfigError
from engine.settings import Settings
from engine.tokens import TokenIssuer
from sinks.feed import accounts, history
from sinks.feed.config import FeedConfig
from sinks.feed.connection import FeedConnection, FeedHub
from sinks.feed.fanout import Router
from sinks.feed.ingest import FeedIngest
from sinks.feed.postbacks import PATH as POSTBACK_PATH, PostbackListener
from db.connect import RETRYABLE
from sinks.feed.secret import load_secret

log = logging.getLogger("sharewise.feed")
_ws_log = logging.getLogger("sharewise.feed.ws")
WEBSOCKET_PATHS = ("/", "/ws")
#: What ``GET /static/NAME`` serves: NAME -> (file under sinks/feed/web, Content-Type). Nothing else
#: is served, so no request path ever reaches the file system.
STATIC_FILES = {
    "page.js": ("page.js", "text/javascript; charset=utf-8"),
    "page.css": ("page.css", "text/css; charset=utf-8"),
    # the chart library, installed from npm by scripts/bootstrap.sh (README "The page")
    "lightweight-charts.js": ("node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js",
                              "text/javascript; charset=utf-8"),
}
CHART_LIBRARY = "lightweight-charts.js"


class FeedServer:
    """One feed server. ``async with FeedServer(...) as server:`` starts it; :attr:`address` says where."""

    def __init__(self, settings: Settings, dsn: str, bootstrap: str, *, host: str | None = None,
                 port: int | None = None, config: FeedConfig | None = None) -> None:
        self._settings = settings
        self._dsn = dsn
        self._bootstrap = bootstrap
        self._host = settings.ws_host if host is None else host
        self._port = settings.ws_port if port is None else port
        self.config = config or FeedConfig()
        self._page = resources.files("sinks.feed").joinpath("page.html").read_bytes()
        self._static = _static_files()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self.hub: FeedHub | None = None
        self.ingest: FeedIngest | None = None
        self.postbacks: PostbackListener | None = None  # with SHAREWISE_KITE_API_SECRET (sinks/feed/postbacks.py)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"ws://{self._host}:{self.port}/"

    async def start(self) -> None:
        """Connect to PostgreSQL, position the Kafka reader, then accept clients.

        Raises ConfigError when the address cannot be listened on, ServiceUnavailable when
        PostgreSQL or Kafka cannot be reached.
        """
        from streams.admin import ensure_topics

        _ws_log.setLevel(max(logging.WARNING, _ws_log.getEffectiveLevel()))
        await ensure_topics(self._bootstrap, {topic: self._settings.partitions for topic in self.config.topics.values()})
        pool = await create_pool(self._dsn, min_size=2, max_size=8)
        self.hub = FeedHub(Router(), pool, TokenIssuer(load_secret(self._settings)), self.config)
        self.ingest = FeedIngest(pool, self._bootstrap, self.hub.router, self.config.topics)
        self._tasks = [asyncio.create_task(self.ingest.run(), name="feed-ingest"),
                       asyncio.create_task(self._recheck_tokens(), name="feed-tokens"),
                       asyncio.create_task(self._prune(), name="feed-retention")]
        await _first_done(self.ingest.ready.wait(), self._tasks[0])
        try:
            self._server = await websockets.serve(
                self._handle, self._host, self._port, process_request=self._http,
                max_size=self.config.max_frame_bytes, compression=None, logger=_ws_log,
                ping_interval=self.config.ping_interval_s, ping_timeout=self.config.ping_timeout_s,
                write_limit=self.config.socket_buffer_bytes, close_timeout=5,
            )
        except OSError as exc:
            raise ConfigError(f"the feed server cannot listen on {self._host}:{self._port} ({exc.strerror or exc}):"
                              " set SHAREWISE_WS_HOST / SHAREWISE_WS_PORT") from exc
        log.info("feed server listening on %s", self.address)
        if CHART_LIBRARY not in self._static:
            log.warning("the page's chart library is not installed, so the page shows no chart:"
                        " run scripts/sharewise once, or npm ci --prefix sinks/feed/web")
        if self._settings.kite_api_secret:
            self.postbacks = PostbackListener(pool, self._bootstrap, self._settings.kite_api_secret)
            try:
                await self.postbacks.start(self._host, self._settings.postback_port)
            except OSError as exc:
                raise ConfigError(f"the Kite postback listener cannot listen on {self._host}:"
                                  f"{self._settings.postback_port} ({exc.strerror or exc}): set SHAREWISE_POSTBACK_PORT"
                                  ) from exc
            log.info("Kite postbacks accepted on http://%s:%d%s", self._host, self.postbacks.port, POSTBACK_PATH)

    async def stop(self) -> None:
        """Close every client with 1001, stop the reader and background tasks, close the pool. Idempotent."""
        if self.postbacks is not None:
            await self.postbacks.stop()
            self.postbacks = None
        if self._server is not None:
            self._server.close()  # closes open connections with 1001 (going away)
            await self._server.wait_closed()
            self._server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.hub is not None:
            await self.hub.pool.close()
            self.hub = None

    async def wait_failed(self) -> None:
        """Return only if the Kafka reader stops, raising its error: a feed without input must not look healthy."""
        await asyncio.shield(self._tasks[0])

    async def __aenter__(self) -> FeedServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, ws: ServerConnection) -> None:
        assert self.hub is not None
        await FeedConnection(ws, self.hub).run()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Plain HTTP on the same port: the page, its static files and a health check; upgrades pass through."""
        path = request.path.split("?", 1)[0]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None if path in WEBSOCKET_PATHS else connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        if path in ("/", "/index.html"):
            return _body(connection, self._page, "text/html; charset=utf-8", "no-store")
        if path.startswith("/static/") and path[len("/static/"):] in self._static:
            body, kind, etag = self._static[path[len("/static/"):]]
            if request.headers.get("If-None-Match") == etag:
                response = connection.respond(http.HTTPStatus.NOT_MODIFIED, "")
                del response.headers["Content-Type"]
                del response.headers["Content-Length"]
                response.headers["ETag"] = etag
                return response
            response = _body(connection, body, kind, "no-cache")  # revalidate: a new install changes the ETag
            response.headers["ETag"] = etag
            return response
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")

    async def _recheck_tokens(self) -> None:
        """Close sessions whose token was revoked or expired, or whose user went away (4401)."""
        while True:
            await asyncio.sleep(self.config.token_recheck_s)
            assert self.hub is not None
            open_sessions = [c for c in self.hub.connections if c.session.identity is not None]
            if not open_sessions:
                continue
            jtis = sorted({c.session.identity.jti for c in open_sessions})  # type: ignore[union-attr]
            try:
                async with self.hub.pool.acquire() as conn:
                    invalid = await accounts.invalid_tokens(conn, jtis)
            except RETRYABLE:
                continue
            for connection in open_sessions:
                reason = invalid.get(connection.session.identity.jti)  # type: ignore[union-attr]
                if reason:
                    connection.revoke(reason)

    async def _prune(self) -> None:
        while True:
            assert self.hub is not None
            with contextlib.suppress(*RETRYABLE):
                async with self.hub.pool.acquire() as conn:
                    removed = await history.prune(conn, bars_kept=self.config.bars_kept,
                                                  personal_age=self.config.personal_kept)
                if removed:
                    log.info("feed retention removed %d old messages", removed)
            await asyncio.sleep(self.config.prune_every_s)


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """The files of :data:`STATIC_FILES` that exist, as NAME -> (body, Content-Type, ETag).

    The page's own files ship with the package, so a missing one raises; the chart library
    is missing until npm installed it, and is then left out (the server warns at start).
    """
    web = resources.files("sinks.feed").joinpath("web")
    files = {}
    for name, (relative, kind) in STATIC_FILES.items():
        try:
            body = web.joinpath(relative).read_bytes()
        except FileNotFoundError:
            if name == CHART_LIBRARY:
                continue
            raise
        files[name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


def _body(connection: ServerConnection, body: bytes, kind: str, cache: str) -> Response:
    response = connection.respond(http.HTTPStatus.OK, "")
    response.body = body
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = kind
    response.headers["Content-Length"] = str(len(body))
    response.headers["Cache-Control"] = cache
    return response


async def _first_done(waiting: Awaitable[object], task: asyncio.Future[None]) -> None:
    """Wait for ``waiting``; if ``task`` ends first, raise its error (or say it stopped)."""
    waiter = asyncio.ensure_future(waiting)
    try:
        done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task in done:
        task.result()
        raise RuntimeError("the feed's Kafka reader stopped")


async def serve_feed(settings: Settings, dsn: str, bootstrap: str, *, host: str | None = None,
                     port: int | None = None, ready: asyncio.Event | None = None,
                     stop: asyncio.Event | None = None, config: FeedConfig | None = None,
                     on_ready: Callable[[FeedServer], None] | None = None) -> None:
    """Run a feed server until ``stop`` is set (or the task is cancelled), then shut down cleanly.

    ``ready`` is set once clients can connect. ``host``/``port`` default to the settings
    (SHAREWISE_WS_HOST / SHAREWISE_WS_PORT); port 0 picks a free port. ``on_ready``, if
    given, is called with the running server (e.g. to print :attr:`FeedServer.address`).
    Raises the Kafka reader's error if it stops.
    """
    async with FeedServer(settings, dsn, bootstrap, host=host, port=port, config=config) as server:
        if on_ready is not None:
            on_ready(server)
        if ready is not None:
            ready.set()
        failed = asyncio.ensure_future(server.wait_failed())
        try:
            await _first_done((stop or asyncio.Event()).wait(), failed)
        finally:
            failed.cancel()
