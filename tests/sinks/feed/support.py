"""Helpers for feed integration tests: users and tokens in a real database, a Kafka publisher in the
documented topic formats, a websocket client, and running servers. No mocks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, AsyncIterator

import orjson
import websockets
from aiokafka import AIOKafkaProducer
from websockets.exceptions import ConnectionClosed

from db.connect import connect
from engine.settings import Settings
from engine.tokens import FEED_CHANNELS, TokenIssuer
from sinks.feed.accounts import record_token
from sinks.feed.config import FeedConfig
from sinks.feed.secret import load_secret
from sinks.feed.server import FeedServer

SECRET = "test-secret-" + "x" * 40


@dataclass(slots=True)
class FeedEnv:
    """A fresh migrated database, the session broker, and topics of this test only."""

    settings: Settings
    dsn: str
    bootstrap: str
    topics: dict[str, str] = field(default_factory=dict)

    def config(self, **overrides: Any) -> FeedConfig:
        return FeedConfig(topics=self.topics, **overrides)

    @contextlib.asynccontextmanager
    async def server(self, port: int = 0, **overrides: Any) -> AsyncIterator[FeedServer]:
        async with FeedServer(self.settings, self.dsn, self.bootstrap, host="127.0.0.1", port=port,
                              config=self.config(**overrides)) as server:
            yield server


async def add_user(dsn: str, *, tier: str = "PRO", plan: str | None = None, active: bool = True) -> str:
    """A user row (and an active subscription when ``plan`` is given); returns its id."""
    user_id = str(uuid.uuid4())
    conn = await connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO users_customuser (id, email, subscription_tier, is_active) VALUES ($1, $2, $3, $4)",
            user_id, f"{user_id}@test.local", tier, active,
        )
        if plan is not None:
            await conn.execute(
                "INSERT INTO subscriptions_subscription (user_id, plan_name, start_date, is_active, amount)"
                " VALUES ($1, $2, $3, TRUE, 0)", user_id, plan, date.today() - timedelta(days=1),
            )
    finally:
        await conn.close()
    return user_id


async def issue_token(env: FeedEnv, user_id: str, *, ttl: timedelta = timedelta(hours=1),
                      channels: tuple[str, ...] = FEED_CHANNELS, record: bool = True) -> str:
    token, claims = TokenIssuer(load_secret(env.settings)).issue(user_id, ttl, channels, now=datetime.now(timezone.utc))
    if record:
        conn = await connect(env.dsn)
        try:
            await record_token(conn, claims)
        finally:
            await conn.close()
    return token


def signal(user_id: str, symbol: str = "RELIANCE", sid: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``signals`` message: the trading_signal columns plus timeframe and bar_time (docs/topics.md)."""
    return {"id": sid or str(uuid.uuid4()), "timestamp": "2024-01-02T09:16:00+05:30", "symbol": symbol,
            "strategy_name": "ema_cross", "signal_type": "BUY", "confidence_score": 0.7, "entry_price": 2450.5,
            "target_price": 2500.0, "stop_loss": 2420.0, "valid_until": None, "user_id": user_id,
            "created_by_strategy_id": None, "market_data": {}, "backtest_result": {}, "executed": False,
            "executed_price": None, "created_at": "2024-01-02T09:16:00+05:30",
            "updated_at": "2024-01-02T09:16:00+05:30", "timeframe": "1m", "bar_time": "2024-01-02T09:15:00+05:30",
            **extra}


def bar(symbol: str, minute: int, close: float = 100.0) -> dict[str, Any]:
    return {"symbol": symbol, "timeframe": "1m", "time": f"2024-01-02T{9 + (15 + minute) // 60:02d}:"
            f"{(15 + minute) % 60:02d}:00+05:30", "open": close, "high": close, "low": close, "close": close,
            "volume": 10, "indicators": {"ema_9": None}}


class Publisher:
    """Produces to the test's topics exactly as the pipeline does (aiokafka, JSON values)."""

    def __init__(self, env: FeedEnv) -> None:
        self._env = env
        self._producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, linger_ms=2)

    async def __aenter__(self) -> Publisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def personal(self, channel: str, message: dict[str, Any], *, key: str | None = None) -> None:
        await self._producer.send(self._env.topics[channel], orjson.dumps(message),
                                  key=(key or message["user_id"]).encode())

    async def raw(self, channel: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send(self._env.topics[channel], value, key=key)

    async def bars(self, bars: list[dict[str, Any]], partition: int = 0) -> None:
        await self._producer.send(self._env.topics["bars"], b"\n".join(orjson.dumps(b) for b in bars),
                                  partition=partition)

    async def flush(self) -> None:
        await self._producer.flush()


class FeedClient:
    """A websocket client speaking the feed protocol, with helpers that fail loudly on timeouts."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, address: str, *, rcvbuf: int | None = None, **kwargs: Any) -> FeedClient:
        """Open a connection. By default the client buffers without limit (``max_queue=None``): a bounded
        client queue pauses reading, and then websockets' close() waits its full close_timeout."""
        kwargs.setdefault("max_queue", None)
        sock = None
        if rcvbuf is not None:  # a client on a thin link: tiny receive buffer
            host, port = address.removeprefix("ws://").rstrip("/").split(":")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect((host, int(port)))
        return cls(await websockets.connect(address, sock=sock, open_timeout=10, **kwargs))

    @classmethod
    async def authed(cls, address: str, token: str, **kwargs: Any) -> FeedClient:
        client = await cls.connect(address, **kwargs)
        reply = await client.request({"op": "auth", "token": token})
        assert reply["op"] == "auth_ok", reply
        return client

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(orjson.dumps(frame).decode() if isinstance(frame, dict) else frame)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        return orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(self, frame: dict[str, Any] | str | bytes, timeout: float = 10.0) -> dict[str, Any]:
        await self.send(frame)
        return await self.recv(timeout)

    async def subscribe(self, channel: str, **args: Any) -> dict[str, Any]:
        frame = {"op": "subscribe", "channel": channel, **{k: v for k, v in args.items() if v is not None}}
        return await self.request(frame)

    async def take(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The next ``n`` frames."""
        return [await self.recv(timeout) for _ in range(n)]

    async def close_code(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        """Read until the server closes; return its close code and reason."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, None)

    async def close(self) -> None:
        await self.ws.close()


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]
