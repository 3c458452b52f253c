"""The websocket feed protocol, sans I/O: client frames in, frames and requests out.

In the style of ``websockets.protocol``: a :class:`FeedSession` is fed what the client
sent (:meth:`~FeedSession.receive_text`, :meth:`~FeedSession.receive_binary`) and
yields what must happen — :meth:`~FeedSession.requests_received` (work only the
server can do: check a token in the database, start a subscription) and
:meth:`~FeedSession.data_to_send` (JSON text frames). :attr:`~FeedSession.close`
says when and how to close. The server reports results back (``auth_succeeded``,
``subscribed``, …). Nothing here does I/O, awaits or reads a clock, so every rule of
the protocol is tested without a server. Reference with examples: the README ("The websocket signal feed").

State machine: AWAITING_AUTH -> AUTHENTICATING -> OPEN -> CLOSED (any state -> CLOSED).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import orjson

from engine.tokens import FEED_CHANNELS

# Close codes (4000-4999 is the range RFC 6455 leaves to applications).
CLOSE_UNAUTHORIZED = 4401  # missing, bad, expired or revoked token; no auth in time
CLOSE_FORBIDDEN = 4403  # a channel this token may not read
CLOSE_TOO_SLOW = 4408  # the client's outgoing queue overflowed; resume with since_seq
CLOSE_TOO_BIG = 1009  # a frame above the size limit (sent by the websockets library)
CLOSE_GOING_AWAY = 1001  # server shutting down

#: bar symbols one connection may follow, per subscription tier (None: unlimited)
TIER_BAR_SYMBOLS: dict[str, int | None] = {"FREE": 5, "PRO": 50, "ELITE": None}
#: most symbols one subscribe may name, whatever the channel
MAX_FILTER_SYMBOLS = 1000
#: channels ``history`` answers, and the most messages one answer may hold (its frame stays under 1 MiB)
HISTORY_LIMITS = {"bars": 1000, "signals": 500, "orders": 500, "notifications": 500}
HISTORY_DEFAULT_LIMIT = 300
#: bar timeframes ``history`` takes (engine.domain.Timeframe labels)
TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
#: seqs are PostgreSQL bigints
MAX_SEQ = 2**63 - 1
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9&_.\-]{0,49}$")


class SessionState(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session speaks for, established by a verified token and the database."""

    user_id: str
    tier: str
    channels: frozenset[str]
    jti: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Request: check ``token``; answer with :meth:`FeedSession.auth_succeeded` or ``auth_failed``."""

    token: str

    def __repr__(self) -> str:
        return "Authenticate(token=***)"


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Request: start (or replace) the subscription of ``channel``. ``symbols`` None means all."""

    channel: str
    symbols: frozenset[str] | None
    since_seq: int | None


@dataclass(frozen=True, slots=True)
class History:
    """Request: the latest ``limit`` messages of ``channel`` (bars: of ``symbol`` and ``timeframe``), oldest
    first; answer with :meth:`FeedSession.history`."""

    channel: str
    symbol: str | None
    timeframe: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class Positions:
    """Request: the user's portfolios, holdings and trading state; answer with :meth:`FeedSession.positions`."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Request: stop the subscription of ``channel`` (if any)."""

    channel: str


Request = Authenticate | Subscribe | Unsubscribe | History | Positions


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


class ArgumentError(ValueError):
    """A frame's arguments are wrong; the message becomes the error frame's ``detail``."""


def encode(frame: dict[str, object]) -> bytes:
    return orjson.dumps(frame)


class FeedSession:
    """One client connection's protocol state. Not thread-safe; one per connection."""

    def __init__(self) -> None:
        self.state = SessionState.AWAITING_AUTH
        self.identity: Identity | None = None
        self.close: Close | None = None
        self._requests: list[Request] = []
        self._outgoing: list[bytes] = []

    # -- input ------------------------------------------------------------------------------

    def receive_text(self, text: str | bytes) -> None:
        """Handle one text frame. Malformed input yields an error frame and changes no state."""
        if self.state is SessionState.CLOSED:
            return
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._error("bad_json", "frame is not valid JSON")
        if not isinstance(message, dict):
            return self._error("bad_json", "frame must be a JSON object")
        op = message.get("op")
        handler = _HANDLERS.get(op) if isinstance(op, str) else None
        if handler is None:
            return self._error("unknown_op", f"unknown op {str(op)[:40]!r}; use {', '.join(_HANDLERS)}")
        try:
            handler(self, message)
        except ArgumentError as exc:
            self._error("bad_argument", str(exc))

    def receive_binary(self, data: bytes) -> None:
        """Binary frames are not part of the protocol: error frame, connection stays usable."""
        if self.state is not SessionState.CLOSED:
            self._error("binary_not_supported", "send JSON in text frames")

    # -- output -----------------------------------------------------------------------------

    def requests_received(self) -> list[Request]:
        """Requests for the server, in order; each call returns only the new ones."""
        requests, self._requests = self._requests, []
        return requests

    def data_to_send(self) -> list[bytes]:
        """Frames to send, in order; each call returns only the new ones."""
        frames, self._outgoing = self._outgoing, []
        return frames

    # -- answers from the server ---------------------------------------------------------------

    def auth_succeeded(self, identity: Identity) -> None:
        self._expect(SessionState.AUTHENTICATING)
        self.identity, self.state = identity, SessionState.OPEN
        self._send({"op": "auth_ok", "user_id": identity.user_id, "tier": identity.tier,
                    "channels": [c for c in FEED_CHANNELS if c in identity.channels]})

    def auth_failed(self, reason: str) -> None:
        """Token missing, invalid, expired, revoked, or its user gone/inactive: close 4401."""
        self._close(CLOSE_UNAUTHORIZED, f"unauthorized: {reason}")

    def auth_timed_out(self) -> None:
        if self.state in (SessionState.AWAITING_AUTH, SessionState.AUTHENTICATING):
            self._close(CLOSE_UNAUTHORIZED, "unauthorized: no auth in time")

    def subscribed(self, request: Subscribe, seq: int) -> None:
        """The subscription started; ``seq`` is the channel's latest seq at that moment."""
        symbols = sorted(request.symbols) if request.symbols is not None else None
        self._send({"op": "subscribed", "channel": request.channel, "symbols": symbols,
                    "since_seq": request.since_seq, "seq": seq})

    def unsubscribed(self, request: Unsubscribe) -> None:
        self._send({"op": "unsubscribed", "channel": request.channel})

    def history(self, request: History, seq: int, items: list[bytes]) -> None:
        """The answer to ``history``: ``items`` are message objects (JSON bytes), oldest first; ``seq`` the
        channel's latest seq when they were read (subscribe with ``since_seq`` = it to go on live)."""
        head = {"op": "history", "channel": request.channel, "limit": request.limit}
        if request.channel == "bars":
            head.update(symbol=request.symbol, timeframe=request.timeframe)
        else:
            head["symbol"] = request.symbol
        head["seq"] = seq
        if self.state is not SessionState.CLOSED:
            self._outgoing.append(encode(head)[:-1] + b',"data":[' + b",".join(items) + b"]}")

    def positions(self, data: bytes) -> None:
        """The answer to ``positions``: ``data`` the JSON object of the user's book (README, "Frames")."""
        if self.state is not SessionState.CLOSED:
            self._outgoing.append(b'{"op":"positions","data":' + data + b"}")

    def unrecoverable(self, request: Subscribe) -> None:
        """The history after ``since_seq`` is gone: the client must reload, then subscribe without it."""
        self._send({"op": "error", "reason": "unrecoverable", "channel": request.channel,
                    "since_seq": request.since_seq,
                    "detail": "messages after since_seq are no longer kept; reload and subscribe without since_seq"})

    def too_slow(self) -> None:
        self._close(CLOSE_TOO_SLOW, "too slow: resume with since_seq")

    def revoked(self, reason: str) -> None:
        """The token of an open session was revoked or expired."""
        self._close(CLOSE_UNAUTHORIZED, f"unauthorized: {reason}")

    # -- op handlers ----------------------------------------------------------------------------

    def _on_auth(self, message: dict[str, object]) -> None:
        if self.state is not SessionState.AWAITING_AUTH:
            raise ArgumentError("already authenticated")
        token = message.get("token")
        if not isinstance(token, str) or not token:
            return self._close(CLOSE_UNAUTHORIZED, "unauthorized: missing token")
        self.state = SessionState.AUTHENTICATING
        self._requests.append(Authenticate(token))

    def _on_subscribe(self, message: dict[str, object]) -> None:
        identity = self._authenticated()
        if identity is None:
            return
        channel = _channel(message)
        symbols = _symbols(message.get("symbols"))
        since_seq = message.get("since_seq")
        if since_seq is not None and (type(since_seq) is not int or not 0 <= since_seq <= MAX_SEQ):
            raise ArgumentError("since_seq must be a non-negative integer")
        if channel not in identity.channels:
            return self._close(CLOSE_FORBIDDEN, f"forbidden: this token may not read {channel}")
        if channel == "bars" and not self._within_tier(identity, symbols):
            return
        self._requests.append(Subscribe(channel, symbols, since_seq))

    def _on_unsubscribe(self, message: dict[str, object]) -> None:
        if self._authenticated() is None:
            return
        self._requests.append(Unsubscribe(_channel(message)))

    def _on_history(self, message: dict[str, object]) -> None:
        identity = self._authenticated()
        if identity is None:
            return
        channel = message.get("channel")
        if channel not in HISTORY_LIMITS:
            raise ArgumentError(f"history channel must be one of {', '.join(HISTORY_LIMITS)}")
        most = HISTORY_LIMITS[channel]
        limit = message.get("limit", HISTORY_DEFAULT_LIMIT)
        if type(limit) is not int or not 1 <= limit <= most:
            raise ArgumentError(f"limit must be an integer from 1 to {most} for {channel}")
        symbol, timeframe = message.get("symbol"), message.get("timeframe")
        if symbol is not None or channel == "bars":
            if not isinstance(symbol, str) or not _SYMBOL.match(symbol.upper()):
                raise ArgumentError("bars history needs one symbol" if symbol is None
                                    else f"bad symbol {str(symbol)[:60]!r}")
            symbol = symbol.upper()
        if channel == "bars":
            if timeframe not in TIMEFRAMES:
                raise ArgumentError(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
        elif timeframe is not None:
            raise ArgumentError(f"timeframe applies to bars history only, not {channel}")
        if channel not in identity.channels:
            return self._close(CLOSE_FORBIDDEN, f"forbidden: this token may not read {channel}")
        self._requests.append(History(channel, symbol, timeframe, limit))  # type: ignore[arg-type]

    def _on_positions(self, message: dict[str, object]) -> None:
        identity = self._authenticated()
        if identity is None:
            return
        if "orders" not in identity.channels:  # the book is what the user's orders made it
            return self._close(CLOSE_FORBIDDEN, "forbidden: positions need a token that may read orders")
        self._requests.append(Positions())

    def _on_ping(self, message: dict[str, object]) -> None:
        reply: dict[str, object] = {"op": "pong"}
        if "id" in message:
            reply["id"] = message["id"]
        self._send(reply)

    # -- helpers -------------------------------------------------------------------------------

    def _authenticated(self) -> Identity | None:
        if self.identity is None:
            self._close(CLOSE_UNAUTHORIZED, "unauthorized: send auth first")
        return self.identity

    def _within_tier(self, identity: Identity, symbols: frozenset[str] | None) -> bool:
        limit = TIER_BAR_SYMBOLS.get(identity.tier, TIER_BAR_SYMBOLS["FREE"])
        if limit is None or (symbols is not None and len(symbols) <= limit):
            return True
        asked = "all symbols" if symbols is None else f"{len(symbols)} symbols"
        self._send({"op": "error", "reason": "symbol_limit", "channel": "bars", "tier": identity.tier,
                    "limit": limit, "detail": f"{identity.tier} tier allows {limit} bar symbols; asked for {asked}"})
        return False

    def _expect(self, state: SessionState) -> None:
        if self.state is not state:
            raise RuntimeError(f"session is {self.state.value}, expected {state.value}")

    def _send(self, frame: dict[str, object]) -> None:
        if self.state is not SessionState.CLOSED:
            self._outgoing.append(encode(frame))

    def _error(self, reason: str, detail: str) -> None:
        self._send({"op": "error", "reason": reason, "detail": detail})

    def _close(self, code: int, reason: str) -> None:
        if self.state is not SessionState.CLOSED:
            self.state, self.close = SessionState.CLOSED, Close(code, reason)


def _channel(message: dict[str, object]) -> str:
    channel = message.get("channel")
    if channel not in FEED_CHANNELS:
        raise ArgumentError(f"channel must be one of {', '.join(FEED_CHANNELS)}")
    return channel  # type: ignore[return-value]


def _symbols(value: object) -> frozenset[str] | None:
    """``None`` (all symbols) or a non-empty list of NSE-style symbols, upper-cased."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_FILTER_SYMBOLS:
        raise ArgumentError(f"symbols must be a list of 1 to {MAX_FILTER_SYMBOLS} symbols, or absent for all")
    symbols = set()
    for item in value:
        if not isinstance(item, str) or not _SYMBOL.match(item.upper()):
            raise ArgumentError(f"bad symbol {str(item)[:60]!r}")
        symbols.add(item.upper())
    return frozenset(symbols)


_HANDLERS = {
    "auth": FeedSession._on_auth,
    "subscribe": FeedSession._on_subscribe,
    "unsubscribe": FeedSession._on_unsubscribe,
    "ping": FeedSession._on_ping,
    "history": FeedSession._on_history,
    "positions": FeedSession._on_positions,
}
