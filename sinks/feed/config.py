"""Tunables of the websocket feed server: frozen data, defaults documented in the README ("The websocket signal feed")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Mapping

from sinks.feed.records import CHANNEL_TOPICS


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Limits and intervals of one feed server."""

    #: largest frame a client may send; bigger ones close the connection with 1009
    max_frame_bytes: int = 64 * 1024
    #: frames waiting for a slow client beyond its socket buffer; overflow closes it with 4408
    client_queue_bytes: int = 1024 * 1024
    #: socket write buffer above which frames queue instead of being written at once
    socket_buffer_bytes: int = 64 * 1024
    #: a client must authenticate within this many seconds (else 4401)
    auth_timeout_s: float = 10.0
    #: websocket-level ping interval and timeout (a dead peer is dropped after both)
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    #: how often open sessions' tokens are re-checked (revoked or expired -> 4401)
    token_recheck_s: float = 5.0
    #: retention: bars kept (by count) and age of personal messages kept
    bars_kept: int = 200_000
    personal_kept: timedelta = timedelta(days=30)
    #: how often retention runs
    prune_every_s: float = 60.0
    #: feed channel -> Kafka topic it is read from (tests use their own topics)
    topics: Mapping[str, str] = field(default_factory=lambda: dict(CHANNEL_TOPICS))
