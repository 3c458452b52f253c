"""Fanout benchmark: the websocket feed server against a plain ``websockets.broadcast`` loop, same run, same load.

Run: ``python benchmarks/fanout.py [--clients 1000] [--users 10] [--seconds 10] [--loads 10000,100000,150000]``.

Both servers read the same kind of Kafka topic (signals keyed by user_id, on the embedded
Tansu broker) and push each signal to the connected clients of its user; ``--clients``
connections are spread evenly over ``--users`` users, so one signal is delivered
``clients/users`` times. The feed server does everything it does in production (token auth
in PostgreSQL, seq assignment in PostgreSQL, per-client queues and backpressure); the peer
routes by Kafka key and calls ``websockets.broadcast`` — nothing else.

Each server runs in its own process; the clients run in another (a minimal raw-socket
websocket client, so the measuring side costs little); the publisher runs here and stamps
every signal with its publish time. For each offered rate, after a warm-up, a window of
``--seconds`` is measured: delivered msgs/s counts the frames of signals published inside
the window that arrived by the end of a short drain, and p50/p99 are their publish ->
receive latencies. Everything shares the machine's cores (2 here), so figures are relative.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import multiprocessing
import os
import struct
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = "fanout-benchmark-secret-" + "0" * 32
T_PUB = b'"t_pub":'


# -- the measuring client ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Tally:
    """What the client process counts: frames of signals published in [start, end], and their latencies."""

    start: float = float("inf")
    end: float = float("inf")
    latencies: list[float] = dataclasses.field(default_factory=list)
    ready: int = 0
    last_frame: float = 0.0
    closed: dict[int, int] = dataclasses.field(default_factory=lambda: defaultdict(int))

    def frame(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """One text frame, ``buf[start:end]``: count it if it is a signal published inside the window."""
        self.last_frame = now
        at = buf.find(T_PUB, start, end)
        if at < 0:
            if buf.startswith(b'{"op":"subscribed"', start):
                self.ready += 1
            return
        stop = at + len(T_PUB)
        while buf[stop] not in b",}":
            stop += 1
        published = float(buf[at + len(T_PUB):stop])
        if self.start <= published <= self.end:
            self.latencies.append(now - published)


class RawClient(asyncio.Protocol):
    """Just enough of RFC 6455 to measure: upgrade, send masked hellos, parse unmasked frames, answer pings."""

    def __init__(self, tally: Tally, host: str, port: int, hellos: list[bytes]) -> None:
        self._tally, self._host, self._port, self._hellos = tally, host, port, hellos
        self._buf = bytearray()
        self._open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write((f"GET / HTTP/1.1\r\nHost: {self._host}:{self._port}\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                              ).encode())

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            assert b" 101 " in self._buf[:end], bytes(self._buf[:end])
            del self._buf[:end + 4]
            self._open = True
            for hello in self._hellos:
                self._send(0x1, hello)
        self._frames(time.time())

    def _frames(self, now: float) -> None:
        buf, pos, size = self._buf, 0, len(self._buf)
        while size - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if size - pos < head + length:
                break
            opcode, start, pos = buf[pos] & 0x0F, pos + head, pos + head + length
            if opcode == 0x1:
                self._tally.frame(buf, start, pos, now)
            elif opcode == 0x9:
                self._send(0xA, bytes(buf[start:pos]))
            elif opcode == 0x8:
                self._tally.closed[struct.unpack_from("!H", buf, start)[0] if length >= 2 else 1005] += 1
        del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        assert self.transport is not None
        self.transport.write(head + mask + masked)


def client_process(host: str, port: int, hellos: list[list[bytes]], conn: Connection) -> None:
    """Open one connection per hello list, then obey ("start", t0, t1) / ("report",) / ("quiet", s, cap) / ("quit",)."""
    asyncio.run(_client_loop(host, port, hellos, conn))


async def _client_loop(host: str, port: int, hellos: list[list[bytes]], conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    keep = []
    for i in range(0, len(hellos), 50):
        made = await asyncio.gather(*(loop.create_connection(lambda h=h: RawClient(tally, host, port, h), host, port)
                                      for h in hellos[i:i + 50]))
        keep.extend(made)
    while tally.ready < len(hellos):
        await asyncio.sleep(0.05)
    conn.send(("ready", tally.ready))
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command[0] == "start":
            tally.start, tally.end, tally.latencies = command[1], command[2], []
        elif command[0] == "report":
            conn.send((len(tally.latencies), tally.latencies, dict(tally.closed)))
        elif command[0] == "quiet":  # wait until nothing arrived for a while: the backlog is gone
            deadline = time.time() + command[2]
            while time.time() - tally.last_frame < command[1] and time.time() < deadline:
                await asyncio.sleep(0.1)
            conn.send(("quiet", time.time() - tally.last_frame >= command[1]))
        else:
            return


# -- the two servers ----------------------------------------------------------------------------------


def feed_process(home: str, dsn: str, bootstrap: str, topic: str, conn: Connection) -> None:
    """The real feed server (sinks.feed), reading signals from ``topic``."""
    from engine.settings import Settings
    from sinks.feed.config import FeedConfig
    from sinks.feed.server import serve_feed

    settings = Settings.from_env({"SHAREWISE_HOME": home, "SHAREWISE_JWT_SECRET": SECRET, "SHAREWISE_PARTITIONS": "8"})
    topics = {"signals": topic, "orders": topic + ".orders", "notifications": topic + ".notes", "bars": topic + ".bars"}
    asyncio.run(serve_feed(settings, dsn, bootstrap, host="127.0.0.1", port=0, config=FeedConfig(topics=topics),
                           on_ready=lambda server: conn.send(server.port)))


def peer_process(bootstrap: str, topic: str, conn: Connection) -> None:
    """The peer: a plain websockets server; a Kafka loop broadcasts each value to its key's clients."""
    asyncio.run(_peer(bootstrap, topic, conn))


async def _peer(bootstrap: str, topic: str, conn: Connection) -> None:
    import websockets
    from aiokafka import AIOKafkaConsumer, TopicPartition

    clients: dict[bytes, set[websockets.ServerConnection]] = defaultdict(set)

    async def handler(ws: websockets.ServerConnection) -> None:
        user = orjson.loads(await ws.recv())["user_id"].encode()
        clients[user].add(ws)
        await ws.send('{"op":"subscribed"}')
        try:
            await ws.wait_closed()
        finally:
            clients[user].discard(ws)

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=20)
    await consumer.start()
    await consumer.topics()
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()])
    async with websockets.serve(handler, "127.0.0.1", 0, compression=None) as server:
        conn.send(server.sockets[0].getsockname()[1])
        while True:
            for messages in (await consumer.getmany(timeout_ms=1000, max_records=2000)).values():
                for message in messages:
                    websockets.broadcast(clients.get(message.key, ()), message.value, text=True)


# -- publishing and measuring ------------------------------------------------------------------------


async def publish(bootstrap: str, topic: str, users: list[str], rate: float, seconds: float) -> int:
    """Send ``rate`` signals/s for ``seconds``, round-robin over users, each stamped with its publish time."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    loop, sent = asyncio.get_running_loop(), 0
    try:
        start = loop.time()
        while (elapsed := loop.time() - start) < seconds:
            for _ in range(int(rate * elapsed) - sent):
                user = users[sent % len(users)]
                await producer.send(topic, _signal(user, sent), key=user.encode())
                sent += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _signal(user: str, n: int) -> bytes:
    return orjson.dumps({"id": str(uuid.uuid4()), "timestamp": "2026-01-05T09:16:00+05:30", "symbol": "RELIANCE",
                         "strategy_name": "ema_cross", "signal_type": "BUY", "confidence_score": 0.71,
                         "entry_price": 2450.5, "target_price": 2499.5, "stop_loss": 2426.0, "user_id": user,
                         "timeframe": "1m", "bar_time": "2026-01-05T09:15:00+05:30", "n": n,
                         "market_data": {"ema_9": 2448.1, "t_pub": time.time()}})


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    system: str
    rate: float
    offered: float
    delivered: float
    p50_ms: float
    p99_ms: float
    closed: dict[int, int]
    cpu: dict[str, float]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) of each named process (PostgreSQL: with its backends)."""
    used = {}
    for name, pid in pids.items():
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)] if name == "postgres" else [root]
        except psutil.NoSuchProcess:
            continue
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        used[name] = total
    return used


async def measure(system: str, conn: Connection, bootstrap: str, topic: str, users: list[str], per_user: int,
                  rate: float, warmup: float, seconds: float, pids: dict[str, int]) -> Result:
    await publish(bootstrap, topic, users, rate, warmup)
    start = time.time()
    conn.send(("start", start, start + seconds))
    before = cpu_seconds(pids)
    await publish(bootstrap, topic, users, rate, seconds)
    end = time.time()
    after = cpu_seconds(pids)
    await asyncio.sleep(1.0)  # drain: what has not arrived by now counts as not delivered
    conn.send(("report",))
    count, latencies, closed = conn.recv()
    conn.send(("quiet", 1.0, 60.0))  # let any backlog drain so the next load starts clean
    conn.recv()
    lat = np.array(latencies or [float("nan")]) * 1000
    cpu = {name: round(100 * (after[name] - before[name]) / (end - start)) for name in after if name in before}
    return Result(system, rate, rate * per_user, count / (end - start), float(np.percentile(lat, 50)),
                  float(np.percentile(lat, 99)), closed, cpu)


async def run_system(system: str, server_conn: Connection, hellos: list[list[bytes]], bootstrap: str, topic: str,
                     users: list[str], rates: list[float], args: argparse.Namespace,
                     pids: dict[str, int]) -> list[Result]:
    ctx = multiprocessing.get_context("spawn")
    port = server_conn.recv()
    mine, theirs = ctx.Pipe()
    clients = ctx.Process(target=client_process, args=("127.0.0.1", port, hellos, theirs), daemon=True)
    clients.start()
    try:
        assert mine.recv()[0] == "ready"
        pids = pids | {"clients": clients.pid, "publisher": os.getpid()}
        return [await measure(system, mine, bootstrap, topic, users, len(hellos) // len(users), rate,
                              args.warmup, args.seconds, pids) for rate in rates]
    finally:
        mine.send(("quit",))
        clients.join(timeout=10)
        if clients.is_alive():
            clients.kill()


async def prepare_tenants(dsn: str, home: str, users: int, clients: int) -> tuple[list[str], list[list[bytes]]]:
    """``users`` users with one token each; per client: its hello frames for the feed protocol."""
    from db.connect import connect
    from engine.settings import Settings
    from engine.tokens import TokenIssuer
    from sinks.feed.accounts import record_token
    from sinks.feed.secret import load_secret

    issuer = TokenIssuer(load_secret(Settings.from_env({"SHAREWISE_HOME": home, "SHAREWISE_JWT_SECRET": SECRET})))
    conn = await connect(dsn)
    ids, tokens = [], []
    try:
        for k in range(users):
            user = str(uuid.uuid4())
            await conn.execute("INSERT INTO users_customuser (id, email) VALUES ($1, $2)", user, f"bench{k}@x.local")
            token, claims = issuer.issue(user, timedelta(hours=2), now=datetime.now(timezone.utc))
            await record_token(conn, claims)
            ids.append(user)
            tokens.append(token)
    finally:
        await conn.close()
    hellos = [[orjson.dumps({"op": "auth", "token": tokens[i % users]}), b'{"op":"subscribe","channel":"signals"}']
              for i in range(clients)]
    return ids, hellos


def report(results: list[Result], clients: int, users: int) -> None:
    print(f"\n{clients} clients, {users} users ({clients // users} clients per user), loopback, same machine")
    print(f"{'system':<10} {'signals/s':>9} {'offered msgs/s':>14} {'delivered msgs/s':>16} {'p50 ms':>8} {'p99 ms':>8}"
          "  closes  cpu % (100 = one core)")
    for r in results:
        cpu = " ".join(f"{name} {value}" for name, value in r.cpu.items())
        print(f"{r.system:<10} {r.rate:>9.0f} {r.offered:>14.0f} {r.delivered:>16.0f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f}"
              f"  {r.closed or '-'}  {cpu}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(orjson.dumps([dataclasses.asdict(r) for r in results], option=orjson.OPT_NON_STR_KEYS).decode())


async def main_async(args: argparse.Namespace) -> None:
    from db.embedded import postgres_status, start_postgres, stop_postgres
    from db.migrate import migrate
    from engine.settings import Settings
    from streams.admin import ensure_topics
    from streams.broker import EmbeddedBroker

    home = tempfile.mkdtemp(prefix="sharewise-fanout-")
    settings = Settings.from_env({"SHAREWISE_HOME": home})
    broker = EmbeddedBroker.start(Path(home) / "logs")
    dsn = start_postgres(settings)
    ctx = multiprocessing.get_context("spawn")
    try:
        await migrate(dsn)
        users, hellos = await prepare_tenants(dsn, home, args.users, args.clients)
        per_user = args.clients // args.users
        rates = [float(load) / per_user for load in args.loads.split(",")]
        results = []
        for system in args.systems.split(","):
            topic = f"bench.signals.{system}.{uuid.uuid4().hex[:8]}"
            await ensure_topics(broker.bootstrap, {topic: 8})
            mine, theirs = ctx.Pipe()
            target, target_args = ((feed_process, (home, dsn, broker.bootstrap, topic, theirs)) if system == "feed"
                                   else (peer_process, (broker.bootstrap, topic, theirs)))
            server = ctx.Process(target=target, args=target_args, daemon=True)
            server.start()
            pids = {"server": server.pid, "postgres": postgres_status(settings)["pid"], "broker": broker.pid}
            try:
                feed_hellos = hellos if system == "feed" else [[orjson.dumps({"user_id": users[i % len(users)]})]
                                                               for i in range(args.clients)]
                results += await run_system(system, mine, feed_hellos, broker.bootstrap, topic, users, rates, args, pids)
            finally:
                server.terminate()
                server.join(timeout=10)
        report(results, args.clients, args.users)
    finally:
        stop_postgres(settings)
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--systems", default="feed,broadcast", help="which servers to run, in order")
    parser.add_argument("--loads", default="10000,100000,150000",
                        help="offered deliveries/s to measure, comma-separated (signals/s = load / clients per user)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
