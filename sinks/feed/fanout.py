"""Who gets which frame: subscriptions, their catch-up from history, and the in-process router.

Pure data structures (no asyncio, no sockets): a frame is handed to an :class:`Outbox`,
whatever that does with it. The rules that make resume gap-free and duplicate-free
live here:

* a subscription remembers ``last_seq``, the last seq it passed on; a frame with
  ``seq <= last_seq`` is dropped (Kafka's redeliveries, another server's replays, the
  overlap between history and live frames);
* while catching up from history, live frames are parked in a bounded ``pending``
  list. The server reads history page by page; :meth:`Subscription.begin_page` is
  called before each read, so every frame dispatched since that read began is either
  in the read (it committed before) or in ``pending``. When a read comes back short and
  ``pending`` did not overflow, :meth:`Subscription.go_live` hands over the parked frames
  newer than the history just sent, and the subscription turns live. On overflow the
  server simply reads once more.
"""

from __future__ import annotations

import enum
from typing import Protocol

#: live frames parked per subscription while it catches up; beyond that, read history again
PENDING_LIMIT = 1024


class Outbox(Protocol):
    """Where a subscription's frames go: a client connection's bounded send queue."""

    def push(self, frame: bytes) -> None: ...


class Phase(enum.Enum):
    CATCHING_UP = "catching_up"
    LIVE = "live"
    ENDED = "ended"


class Subscription:
    """One channel of one connection: user, optional symbol filter, and its position."""

    __slots__ = ("outbox", "user_id", "channel", "symbols", "last_seq", "phase", "pending", "overflowed")

    def __init__(self, outbox: Outbox, user_id: str, channel: str, symbols: frozenset[str] | None,
                 since_seq: int | None) -> None:
        self.outbox = outbox
        self.user_id = user_id
        self.channel = channel
        self.symbols = symbols
        self.last_seq = since_seq if since_seq is not None else -1
        self.phase = Phase.CATCHING_UP
        self.pending: list[tuple[int, bytes]] = []
        self.overflowed = False

    def offer(self, seq: int, frame: bytes) -> None:
        """A live frame for this subscription's (user, channel), already filtered by symbol."""
        if seq <= self.last_seq:
            return
        if self.phase is Phase.LIVE:
            self.last_seq = seq
            self.outbox.push(frame)
        elif self.phase is Phase.CATCHING_UP:
            if len(self.pending) < PENDING_LIMIT:
                self.pending.append((seq, frame))
            else:
                self.overflowed = True

    def begin_page(self) -> None:
        """Call right before reading a page of history (see module doc)."""
        self.pending.clear()
        self.overflowed = False

    def replayed(self, seq: int) -> None:
        """A history frame with ``seq`` was handed to the outbox."""
        self.last_seq = seq

    def start_at(self, seq: int) -> None:
        """No ``since_seq``: the client starts after the channel's latest seq ``seq``."""
        self.last_seq = max(self.last_seq, seq)

    def go_live(self) -> list[bytes]:
        """Turn live; return the parked frames newer than what was sent, in seq order."""
        if self.overflowed:
            raise RuntimeError("pending overflowed: read history again before going live")
        frames = []
        for seq, frame in sorted(self.pending, key=lambda item: item[0]):
            if seq > self.last_seq:
                self.last_seq = seq
                frames.append(frame)
        self.pending.clear()
        self.phase = Phase.LIVE
        return frames

    def end(self) -> None:
        self.phase = Phase.ENDED
        self.pending.clear()


class Router:
    """Subscriptions by (user_id, channel); :meth:`dispatch` offers a frame to the matching ones."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str], dict[Subscription, None]] = {}

    def add(self, sub: Subscription) -> None:
        self._subs.setdefault((sub.user_id, sub.channel), {})[sub] = None

    def remove(self, sub: Subscription) -> None:
        sub.end()
        key = (sub.user_id, sub.channel)
        subs = self._subs.get(key)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._subs[key]

    def dispatch(self, user_id: str, channel: str, seq: int, symbol: str | None, frame: bytes) -> None:
        """Offer one message to every subscription of its own user and channel — and no other."""
        subs = self._subs.get((user_id, channel))
        if subs:
            for sub in tuple(subs):
                if sub.symbols is None or symbol in sub.symbols:
                    sub.offer(seq, frame)

    def count(self) -> int:
        return sum(len(subs) for subs in self._subs.values())
