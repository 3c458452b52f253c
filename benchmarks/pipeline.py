"""End-to-end pipeline benchmark on the embedded broker and PostgreSQL, with its peer measured in the same run.

Run: ``python benchmarks/pipeline.py [--ticks 1000000] [--rate 20000] [--seconds 10] [--only worker|session]
[--skip-session] [--session-symbols 52] [--session-seconds 22500]``.

1. **Throughput**: ``--ticks`` ticks (52 instruments, packets of 100 per partition) are produced to
   ``market.ticks`` first; then one in-process :class:`streams.worker.EngineWorker` (bars of 5 timeframes,
   25 indicators, ``ema_cross`` and ``rsi_reversion`` on every symbol at 1m) consumes them, and the clock
   stops when every tick is processed and every signal, bar and notification is committed in PostgreSQL.
2. **Peer**: a plain Faust agent that decodes each tick (one JSON tick per message) and forwards it one
   event at a time, ``await``-ing each send — the straightforward Faust app.
3. **Latency** at a fixed input rate (``--rate`` ticks/s for ``--seconds``): tick -> signal committed in the
   database, from the wall time the bar-closing tick was produced to the signal row's ``created_at``.
4. **Session replay** (:mod:`benchmarks.session`): one NSE session, 09:15:00-15:29:59 IST at one tick per second
   for each of the 52 instruments (``--session-symbols`` x ``--session-seconds``, about 1.17M ticks), written as
   JSONL and replayed by the real command ``python -m engine.cli up --replay FILE --until-drained --json`` in a
   fresh ``SHAREWISE_HOME`` (its own embedded broker and PostgreSQL, demo tenant). Wall clock of the whole command,
   ticks/s, its exit code and JSON summary; then its ``analytics_marketdata`` and ``trading_signal`` rows against
   the pure core run offline over the same file. The script exits 1 when the command fails or the database or
   summary differs.

Sections 1-3 run in this process on embedded brokers and PostgreSQL (``--only worker``); section 4 alone:
``--only session``. A results table closes the run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import faust
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.embedded import start_postgres, stop_postgres  # noqa: E402
from engine.cli import aio  # noqa: E402
from engine.cli.files import load_instruments  # noqa: E402
from db.migrate import migrate  # noqa: E402
from db.seed_demo import seed_demo  # noqa: E402
from engine.domain import NS_PER_S, Timeframe  # noqa: E402
from engine.feeds.synth import SESSION_SECONDS, SyntheticFeed  # noqa: E402
from engine.pipeline import SignalPipeline  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.strategy.discovery import create  # noqa: E402
from engine.strategy.runner import Deployment, StrategyRunner  # noqa: E402
from streams.admin import ensure_topics, high_watermarks  # noqa: E402
from streams.broker import EmbeddedBroker  # noqa: E402
from streams.feed import PacketProducer  # noqa: E402
from streams.topics import engine_topics  # noqa: E402
from streams.transport import SCHEME  # noqa: E402
from sinks.rows import output_sinks  # noqa: E402
from db.checkpoints import PostgresCheckpointStore  # noqa: E402
from streams.worker import EngineWorker  # noqa: E402
from benchmarks.session import SessionReport, session_replay  # noqa: E402

DAY = dt.date(2026, 1, 5)


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the closing results table; the numbers are None for a row that is only a note (latency)."""

    name: str
    ticks_per_s: float | None
    ticks: int | None
    seconds: float | None
    note: str


def deployments(user_id: str) -> list[Deployment]:
    tf = frozenset({Timeframe.M1})
    return [Deployment(create("ema_cross", {}), "ema_cross", tf, user_id=user_id),
            Deployment(create("rsi_reversion", {}), "rsi_reversion", tf, user_id=user_id)]


def tick_rows(registry, n: int, speed_ticks_per_market_s: float, day: dt.date = DAY) -> list[tuple[str, int, float, float]]:
    prices = np.array([i.typical_price for i in registry.instruments])
    feed = SyntheticFeed(prices, seed=5, start_day=day, ticks_per_market_second=speed_ticks_per_market_s)
    rows: list[tuple[str, int, float, float]] = []
    while len(rows) < n:
        b = feed.advance(60.0)
        rows += [(registry.symbols[k], t, p, q) for k, t, p, q in
                 zip(b.inst.tolist(), (b.ts_ns // 1_000_000).tolist(), b.price.tolist(), b.qty.tolist())]
    return rows[:n]


async def produce(bootstrap: str, rows: list[tuple[str, int, float, float]], partitions: int, packet: int) -> None:
    """Columnar packets of up to ``packet`` ticks per partition, as the feeds send them."""
    async with PacketProducer(bootstrap, partitions, max_ticks=packet) as producer:
        for sym, t, p, q in rows:
            await producer.add_tick(sym, t, p, q)


async def drained(worker: EngineWorker, bootstrap: str) -> None:
    marks = await high_watermarks(bootstrap, "market.ticks")
    while any(worker.positions["market.ticks"].get(p, 0) < h for p, h in marks.items() if h):
        await asyncio.sleep(0.01)
    await worker.checkpoint()
    for topic in ("market.bars", "signals", "notifications"):
        out = await high_watermarks(bootstrap, topic)
        while any(worker.positions[topic].get(p, 0) < h for p, h in out.items() if h):
            await asyncio.sleep(0.01)


async def throughput(settings: Settings, bootstrap: str, dsn: str, n: int, user_id: str, packet: int) -> dict:
    registry = load_instruments(settings)
    await ensure_topics(bootstrap, engine_topics(settings.partitions))
    rows = tick_rows(registry, n, 200.0, DAY + dt.timedelta(days=14 + packet))  # each run writes its own rows
    t0 = time.perf_counter()
    await produce(bootstrap, rows, settings.partitions, packet)
    produced = time.perf_counter() - t0
    worker = EngineWorker(settings, bootstrap, dsn, registry,
                          lambda: SignalPipeline(registry, StrategyRunner(deployments(user_id)), lateness_s=2.0),
                          sinks=output_sinks(dsn), checkpoints=PostgresCheckpointStore(dsn),
                          group_id=f"bench-{uuid.uuid4().hex[:6]}")
    await worker.start()
    while not worker.positions["market.ticks"]:
        await asyncio.sleep(0.005)  # clock starts at the first processed packet, after the group join
    t1 = time.perf_counter()
    await drained(worker, bootstrap)
    elapsed = time.perf_counter() - t1
    stats = worker.stats.as_dict()
    await worker.stop()
    return {"ticks": n, "seconds": elapsed, "ticks_per_s": n / elapsed, "produce_s": produced, **stats}


async def plain_faust_peer(bootstrap: str, n: int) -> dict:
    """The straightforward Faust app: one JSON tick per message, decoded and forwarded one event at a time."""
    src, dst = f"plain.in.{uuid.uuid4().hex[:6]}", f"plain.out.{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, {src: 8, dst: 8})
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    for sym, t, p, q in tick_rows(registry, n, 200.0):
        await producer.send(src, orjson.dumps({"symbol": sym, "time": t, "price": p, "qty": q}), key=sym.encode())
    await producer.stop()
    app = faust.App(f"plain-{uuid.uuid4().hex[:6]}", broker=f"{SCHEME}://{bootstrap}", value_serializer="raw",
                    web_enabled=False, datadir=f"{tempfile.gettempdir()}/sharewise-bench-faust",
                    topic_disable_leader=True, broker_session_timeout=10.0,
                    broker_heartbeat_interval=1.0, consumer_auto_offset_reset="earliest", store="memory://",
                    loghandlers=[])
    in_t, out_t = app.topic(src, value_serializer="raw"), app.topic(dst, value_serializer="raw")
    seen = {"n": 0, "t0": 0.0, "t1": 0.0}
    done = asyncio.Event()

    @app.agent(in_t)
    async def forward(stream):  # noqa: ANN001
        async for value in stream:
            if not seen["n"]:
                seen["t0"] = time.perf_counter()
            tick = orjson.loads(value)
            await out_t.send(key=tick["symbol"].encode(), value=orjson.dumps(tick))
            seen["n"] += 1
            if seen["n"] == n:
                seen["t1"] = time.perf_counter()
                done.set()

    await app.start()
    await asyncio.wait_for(done.wait(), timeout=600)
    await app.stop()
    elapsed = seen["t1"] - seen["t0"]
    return {"ticks": n, "seconds": elapsed, "ticks_per_s": n / elapsed}


async def latency(settings: Settings, bootstrap: str, dsn: str, rate: float, seconds: float, user_id: str) -> dict:
    """Paced feed; latency of each signal = created_at - wall time its bar-closing tick was produced."""
    registry = load_instruments(settings)
    speed = 300.0  # market seconds per wall second: a 1m bar every 0.2 s wall
    day = DAY + dt.timedelta(days=7)  # fresh bars: no signal id shared with the throughput run
    feed = SyntheticFeed(np.array([i.typical_price for i in registry.instruments]), seed=9, start_day=day,
                         ticks_per_market_second=rate / speed)
    worker = EngineWorker(settings, bootstrap, dsn, registry,
                          lambda: SignalPipeline(registry, StrategyRunner(deployments(user_id)), lateness_s=0.0),
                          sinks=output_sinks(dsn), checkpoints=PostgresCheckpointStore(dsn),
                          group_id=f"lat-{uuid.uuid4().hex[:6]}", checkpoint_interval=1.0)
    await worker.start()
    await asyncio.sleep(8)  # group join
    clock: list[tuple[int, float]] = []  # (max market ts produced, wall time)
    step = 0.02
    async with PacketProducer(bootstrap, settings.partitions, max_ticks=100) as producer:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            b = feed.advance(step * speed)
            for k, ts, p, q in zip(b.inst.tolist(), (b.ts_ns // 1_000_000).tolist(), b.price.tolist(), b.qty.tolist()):
                await producer.add_tick(registry.symbols[k], ts, p, q)
            await producer.flush()
            if len(b):
                clock.append((int(b.ts_ns.max()), time.time()))
            await asyncio.sleep(max(0.0, step - (time.perf_counter() - t)))
    await asyncio.sleep(3)
    await worker.stop()
    conn = await asyncpg.connect(dsn)
    rows = await conn.fetch("SELECT timestamp, created_at FROM trading_signal WHERE user_id = $1 AND timestamp >= $2",
                            uuid.UUID(user_id), dt.datetime.combine(day, dt.time(0), dt.timezone.utc))
    await conn.close()
    marks = np.array([c[0] for c in clock])
    walls = np.array([c[1] for c in clock])
    lat = []
    for r in rows:
        close_ns = int(r["timestamp"].timestamp() * NS_PER_S) + 60 * NS_PER_S  # 1m bar end
        i = int(np.searchsorted(marks, close_ns))  # first produced batch holding a tick at/after the bar end
        if i < len(marks):
            lat.append(r["created_at"].timestamp() - walls[i])
    lat_ms = np.array(lat) * 1000
    return {"rate": rate, "signals": len(lat), "p50_ms": float(np.percentile(lat_ms, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat_ms, 99)) if len(lat) else None}


async def worker_runs(args: argparse.Namespace) -> list[Figure]:
    """Sections 1-3 on one embedded PostgreSQL and in-process brokers; print each figure, return them all."""
    home = Path(tempfile.mkdtemp(prefix="sharewise-bench-"))
    settings = Settings(home=home, partitions=8)
    dsn = start_postgres(settings)
    await migrate(dsn)
    demo = await seed_demo(dsn)
    user_id = str(demo["user_id"])
    runs = []
    for packet in args.packets:
        with EmbeddedBroker.start(home / f"logs-{packet}") as broker:  # fresh topics
            ours = await throughput(settings, broker.bootstrap, dsn, args.ticks, user_id, packet)
        runs.append(ours)
        print(f"engine worker : {ours['ticks_per_s']:>10,.0f} ticks/s  ({ours['ticks']:,} ticks in {ours['seconds']:.2f}s,"
              f" packets of {packet}; bars {ours['bars']:,}, signals {ours['signals']:,}, committed in PostgreSQL)")
    with EmbeddedBroker.start(home / "logs") as broker:
        await ensure_topics(broker.bootstrap, engine_topics(8))
        peer = await plain_faust_peer(broker.bootstrap, args.peer_ticks)
        print(f"plain Faust   : {peer['ticks_per_s']:>10,.0f} ticks/s  ({peer['ticks']:,} ticks, one event at a time,"
              f" decode + awaited send)")
        print("ratio         : " + ", ".join(f"{r['ticks_per_s'] / peer['ticks_per_s']:.1f}x (packets of {p})"
                                             for r, p in zip(runs, args.packets)) + " the plain agent")
        lat = await latency(settings, broker.bootstrap, dsn, args.rate, args.seconds, user_id)
        print(f"latency @ {lat['rate']:,.0f} ticks/s: tick -> signal in PostgreSQL p50 {lat['p50_ms']:.1f} ms,"
              f" p99 {lat['p99_ms']:.1f} ms over {lat['signals']} signals")
    stop_postgres(settings)
    return worker_figures(runs, args.packets, peer, lat)


def worker_figures(runs: list[dict], packets: list[int], peer: dict, lat: dict) -> list[Figure]:
    """The table rows of sections 1-3, from the dicts :func:`throughput`, the peer and :func:`latency` return."""
    rows = [Figure(f"engine worker, packets of {p}", r["ticks_per_s"], r["ticks"], r["seconds"],
                   "in-process worker, committed in PostgreSQL") for r, p in zip(runs, packets)]
    rows.append(Figure("plain Faust peer", peer["ticks_per_s"], peer["ticks"], peer["seconds"],
                       "one event at a time, decode + awaited send"))
    rows.append(Figure(f"latency @ {lat['rate']:,.0f} ticks/s", None, None, None,
                       f"tick -> signal in PostgreSQL p50 {number(lat['p50_ms'], '.1f')} ms,"
                       f" p99 {number(lat['p99_ms'], '.1f')} ms"
                       f" over {lat['signals']} signals"))
    return rows


def session_figure(report: SessionReport) -> Figure:
    """The table row of section 4: the whole command's wall clock, and whether its outcome was right."""
    verdict = "OK" if not report.problems else "PROBLEMS: " + "; ".join(report.problems)
    return Figure("session replay (sharewise up)", report.ticks_per_s, report.ticks, report.run.wall_s,
                  f"whole CLI command incl. start-up, exit code {report.run.exit_code}; {verdict}")


def results_table(figures: list[Figure]) -> None:
    """Print every figure of this run as one aligned table."""
    print(f"\n{'results':<32} {'ticks/s':>10} {'ticks':>11} {'seconds':>9}  note")
    for f in figures:
        print(f"{f.name:<32} {number(f.ticks_per_s, ',.0f'):>10} {number(f.ticks, ','):>11}"
              f" {number(f.seconds, '.2f'):>9}  {f.note}")


def number(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``-`` when there is none."""
    return "-" if value is None else format(value, spec)


def main(args: argparse.Namespace) -> int:
    """Run the chosen sections, print the results table; 1 when the session replay found a problem, else 0."""
    logging.basicConfig(level=logging.WARNING)
    figures = aio.run(worker_runs(args)) if args.only in (None, "worker") else []
    failed = False
    if args.only == "session" or (args.only is None and not args.skip_session):
        report = session_replay(args.session_symbols, args.session_seconds, DAY, args.session_timeout)
        figures.append(session_figure(report))
        failed = bool(report.problems)
    results_table(figures)
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--packets", type=int, nargs="+", default=[100, 500], help="ticks per packet, one run each")
    parser.add_argument("--peer-ticks", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    sections = parser.add_mutually_exclusive_group()
    sections.add_argument("--only", choices=["worker", "session"], help="worker: sections 1-3; session: section 4")
    sections.add_argument("--skip-session", action="store_true", help="sections 1-3 only (same as --only worker)")
    instruments = len(load_instruments(Settings(home=Path("/nonexistent"))))
    parser.add_argument("--session-symbols", type=int, default=instruments,
                        help="N instruments: those the demo strategies trade first, then registry order")
    parser.add_argument("--session-seconds", type=int, default=SESSION_SECONDS, help="seconds of session from 09:15")
    parser.add_argument("--session-timeout", type=float, default=3600.0, help="stop the replay command after this")
    args = parser.parse_args()
    if not 1 <= args.session_symbols <= instruments:
        parser.error(f"--session-symbols must be 1..{instruments}")
    if not 1 <= args.session_seconds <= SESSION_SECONDS:
        parser.error(f"--session-seconds must be 1..{SESSION_SECONDS} (09:15:00 to 15:29:59)")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
