"""One websocket client: drives its :class:`FeedSession`, catches subscriptions up, bounds what it buffers.

Backpressure contract (the README ("The websocket signal feed")): frames for a client are written straight
to its socket while the socket keeps up; when it does not, they wait in a queue. A client
whose queue still holds more than ``client_queue_bytes`` when new frames arrive is closed
with 4408 ("too slow") — it never slows other clients or the Kafka reader, and never
grows memory without bound. The client resumes with ``since_seq``. History replay
(catch-up) is paced to the client instead: it waits for room.
"""

from __future__ import annotations

from datetime import datetime, timezone
import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import asyncpg
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from engine.tokens import TokenIssuer, TokenRejected
from sinks.feed import history, queries
from sinks.feed.accounts import identify
from sinks.feed.config import FeedConfig
from sinks.feed.fanout import Phase, Router, Subscription
from sinks.feed.history import HistoryGone
from sinks.feed.protocol import Authenticate, FeedSession, History, Positions, SessionState, Subscribe, Unsubscribe
from sinks.feed.records import MARKET_USER, message_frame
from streams import metrics

log = logging.getLogger("sharewise.feed")

#: messages read from history per query while a subscription catches up
PAGE_SIZE = 500


@dataclass(slots=True)
class FeedHub:
    """What every connection of one server shares."""

    router: Router
    pool: asyncpg.Pool
    issuer: TokenIssuer
    config: FeedConfig
    connections: set[FeedConnection] = field(default_factory=set)


def wire(payload: bytes) -> bytes:
    """A server-to-client text frame as it goes on the wire (unmasked, uncompressed): build once, send to many."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def _payload(frame: bytes) -> bytes:
    length = frame[1] & 0x7F
    return frame[2 if length < 126 else 4 if length == 126 else 10:]


class ClientOutbox:
    """A client's ordered, bounded send queue (the :class:`~sinks.feed.fanout.Outbox` of its subscriptions).

    Frames are wire-encoded text frames (:func:`wire`), shared by every client that gets
    them. Frames pushed during one pass of the event loop (one Kafka batch) are written with
    a single ``transport.write`` as far as the socket's write buffer stays under its
    high-water mark (so it holds at most that plus one frame); the rest join the queue,
    which a writer task drains with websockets' flow control. The queue is the client's
    backlog, bounded as :meth:`_enqueue` says.
    """

    def __init__(self, ws: ServerConnection, limit: int, on_overflow: Callable[[], None]) -> None:
        self._ws = ws
        self._limit = limit
        self._on_overflow = on_overflow
        self._burst: list[bytes] = []
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False

    def push(self, frame: bytes) -> None:
        """Send ``frame`` with this loop pass's others, or queue it behind a backlog (see :meth:`_enqueue`)."""
        if self.closed:
            return
        if self._queue:
            self._enqueue([frame])
            return
        if not self._burst:
            asyncio.get_running_loop().call_soon(self._flush_burst)
        self._burst.append(frame)

    async def put(self, frame: bytes) -> None:
        """Like :meth:`push`, but first wait until the queue is at most half full: never overflows."""
        while self._bytes > self._limit // 2 and not self.closed:
            await self._room.wait()
        self.push(frame)

    def close(self) -> None:
        self.closed = True
        self._burst.clear()
        self._queue.clear()
        self._bytes = 0
        self._room.set()
        self._wakeup.set()

    def _flush_burst(self) -> None:
        """One write for this loop pass's frames, up to the socket buffer's high-water mark; queue the rest."""
        burst, self._burst = self._burst, []
        if self.closed or not burst:
            return
        room, take, size = self._ws.write_limit_high - self._ws.transport.get_write_buffer_size(), 0, 0
        if self._ws.protocol.state is State.OPEN and not self._ws.transport.is_closing():
            while take < len(burst) and (size + len(burst[take]) <= room or (take == 0 and room > 0)):
                size += len(burst[take])
                take += 1
        if take:
            self._ws.transport.write(b"".join(burst[:take]))
        if take < len(burst):
            self._enqueue(burst[take:])

    def _enqueue(self, frames: list[bytes]) -> None:
        """Queue behind the backlog. A client whose backlog is already past ``limit`` when more
        arrives is too slow: drop everything, report it. (So one burst alone never cuts a
        client off, and a client holds at most ``limit`` plus one Kafka batch.)"""
        if self._bytes > self._limit:
            self.close()
            self._on_overflow()
            return
        self._queue.extend(frames)
        self._bytes += sum(map(len, frames))
        if self._bytes > self._limit // 2:
            self._room.clear()
        self._wakeup.set()

    async def run(self) -> None:
        """Writer task: drains the queue at the pace of the socket; closes the outbox when the socket goes."""
        try:
            while not self.closed:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue and not self.closed:
                    frame = self._queue.popleft()
                    self._bytes -= len(frame)
                    if self._bytes <= self._limit // 2:
                        self._room.set()
                    await self._ws.send(_payload(frame), text=True)
        except ConnectionClosed:
            pass
        finally:
            self.close()


class FeedConnection:
    """Serves one client from handshake to close."""

    def __init__(self, ws: ServerConnection, hub: FeedHub) -> None:
        self.ws = ws
        self.hub = hub
        self.session = FeedSession()
        self.outbox = ClientOutbox(ws, hub.config.client_queue_bytes, self._too_slow)
        self.subs: dict[str, Subscription] = {}
        self._closing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Read frames until the client leaves or the session closes; always cleans up."""
        loop = asyncio.get_running_loop()
        writer = asyncio.create_task(self.outbox.run())
        timer = loop.call_later(self.hub.config.auth_timeout_s, self._auth_timeout)
        self.hub.connections.add(self)
        metrics.WS_CLIENTS.inc()
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self.session.receive_text(message)
                else:
                    self.session.receive_binary(message)
                await self._carry_out()
                if self.session.state is SessionState.CLOSED:
                    break
        except ConnectionClosed:
            pass
        finally:
            timer.cancel()
            self._end_subscriptions()
            self.hub.connections.discard(self)
            metrics.WS_CLIENTS.dec()
            self._close_if_asked()
            writer.cancel()
            if self._closing is not None:
                await asyncio.shield(self._closing)

    def revoke(self, reason: str) -> None:
        """The token of this session stopped being valid (revoked, expired, user gone): close 4401."""
        self.session.revoked(reason)
        self._close_if_asked()

    async def _carry_out(self) -> None:
        await self._flush()
        for request in self.session.requests_received():
            if isinstance(request, Authenticate):
                await self._authenticate(request)
            elif isinstance(request, Subscribe):
                await self._subscribe(request)
            elif isinstance(request, Unsubscribe):
                self._unsubscribe(request)
            elif isinstance(request, History):
                await self._history(request)
            elif isinstance(request, Positions):
                await self._positions()
            await self._flush()
        self._close_if_asked()

    async def _flush(self) -> None:
        for frame in self.session.data_to_send():
            await self.outbox.put(wire(frame))

    async def _authenticate(self, request: Authenticate) -> None:
        try:
            claims = self.hub.issuer.verify(request.token, now=datetime.now(timezone.utc))
            async with self.hub.pool.acquire() as conn:
                identity = await identify(conn, claims)
        except TokenRejected as exc:
            self.session.auth_failed(exc.reason)
        else:
            self.session.auth_succeeded(identity)

    async def _subscribe(self, request: Subscribe) -> None:
        identity = self.session.identity
        assert identity is not None
        self._drop(request.channel)
        owner = MARKET_USER if request.channel == "bars" else identity.user_id  # bars: one stream for everyone
        sub = Subscription(self.outbox, owner, request.channel, request.symbols, request.since_seq)
        self.hub.router.add(sub)
        self.subs[request.channel] = sub
        try:
            await self._catch_up(sub, request)
        except HistoryGone:
            self._drop(request.channel)
            self.session.unrecoverable(request)

    async def _catch_up(self, sub: Subscription, request: Subscribe) -> None:
        """Send history after ``since_seq`` page by page, then hand over to live frames (see fanout)."""
        announced = False
        while sub.phase is Phase.CATCHING_UP and not self.outbox.closed:
            sub.begin_page()
            async with self.hub.pool.acquire() as conn:
                if request.since_seq is None and not announced:
                    latest, rows = await history.latest_seq(conn, sub.user_id, sub.channel), []
                    sub.start_at(latest)
                else:
                    page = await history.read_after(conn, sub.user_id, sub.channel, sub.last_seq,
                                                    sub.symbols, PAGE_SIZE)
                    latest, rows = page.latest, page.rows
            if not announced:
                self.session.subscribed(request, latest)
                await self._flush()
                announced = True
            for seq, _symbol, payload in rows:
                await self.outbox.put(wire(message_frame(sub.channel, seq, payload)))
                sub.replayed(seq)
            if len(rows) < PAGE_SIZE and not sub.overflowed and sub.phase is Phase.CATCHING_UP:
                for frame in sub.go_live():
                    self.outbox.push(frame)

    async def _history(self, request: History) -> None:
        identity = self.session.identity
        assert identity is not None
        async with self.hub.pool.acquire() as conn:
            if request.channel == "bars":
                seq, items = await queries.bars(conn, request.symbol, request.timeframe, request.limit)  # type: ignore[arg-type]
            else:
                seq, items = await queries.messages(conn, identity.user_id, request.channel, request.symbol,
                                                    request.limit)
        self.session.history(request, seq, items)

    async def _positions(self) -> None:
        identity = self.session.identity
        assert identity is not None
        async with self.hub.pool.acquire() as conn:
            book = await queries.positions(conn, identity.user_id)
        self.session.positions(book)

    def _unsubscribe(self, request: Unsubscribe) -> None:
        self._drop(request.channel)
        self.session.unsubscribed(request)

    def _drop(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is not None:
            self.hub.router.remove(sub)

    def _end_subscriptions(self) -> None:
        for channel in list(self.subs):
            self._drop(channel)

    def _auth_timeout(self) -> None:
        self.session.auth_timed_out()
        self._close_if_asked()

    def _too_slow(self) -> None:
        log.info("closing a client of user %s: too slow (4408)",
                 self.session.identity.user_id if self.session.identity else "?")
        self.session.too_slow()
        self._close_if_asked()

    def _close_if_asked(self) -> None:
        """Start the close the session asked for (once); frames still queued are dropped."""
        close = self.session.close
        if close is None or self._closing is not None:
            return
        self._end_subscriptions()
        self.outbox.close()
        metrics.WS_DROPPED.labels(str(close.code)).inc()
        self._closing = asyncio.create_task(self.ws.close(close.code, close.reason))
