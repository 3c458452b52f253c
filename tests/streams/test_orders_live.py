"""The paper-trading order path live, as users run it: real processes, a real broker and PostgreSQL, real websockets.

Each test starts ``sharewise worker`` (and ``sharewise feed-server``) as subprocesses on a broker and a database
of its own (fixtures ``kafka_broker_factory`` and ``pg_dsn``) with the demo tenant seeded (its ``ema_cross`` row
trades on paper: MIS, quantity 10), replays seeded tick files with ``sharewise feed replay`` and drives the engine
with the CLI (``token create``, ``risk halt|resume|status``, ``orders``, ``positions``), as docs/orders.md and the
README describe. What the engine decides is checked against the offline reference (the pure core run on the same
file), against the ``orders`` topic itself, and against the contract's rules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from db.seed_demo import DEMO_EMAIL, seed_demo
from engine.orders.ids import ORDER_EVENT_NAMESPACE, order_id
from tests.sinks.feed.support import FeedClient, add_user
from tests.streams.support import (
    SHAREWISE, database_books, engine_env, make_tick_file, reference_books, reference_of, wait_for,
)

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
#: the keys of an ``orders`` message (docs/orders.md, "Messages", ``orders``)
ORDER_MESSAGE_KEYS = {
    "event_id", "id", "tag", "user_id", "signal_id", "executes_signal", "strategy_id", "strategy_name",
    "broker_account_id", "broker_order_id", "symbol", "product", "order_type", "transaction_type", "quantity",
    "price", "trigger_price", "status", "filled_quantity", "average_price", "order_timestamp", "exchange_timestamp",
    "rejection_reason", "fees", "taxes", "updated_at", "signal",
}
FINAL = {"COMPLETE", "CANCELLED", "REJECTED"}


# --- processes -------------------------------------------------------------------------------------


class Proc:
    """A ``sharewise`` child process whose stdout is drained by a thread (its lines kept) and whose stderr goes
    to a log file; :meth:`stop` sends SIGTERM and, failing that, SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._err = log.open("ab")
        self.proc = subprocess.Popen([*SHAREWISE, *args], env=env | {"COLUMNS": "250"}, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def stdout_match(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s (exit {self.proc.poll()});"
                             f" stdout {''.join(seen)[-1500:]!r}; stderr {self.tail()}")

    def stderr_wait(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log.read_text(errors="replace")):
                return
            assert self.proc.poll() is None, f"{self.proc.args[3]} exited {self.proc.returncode}: {self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} on stderr within {timeout}s: {self.tail()}")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"{self.proc.args[3]} exited {self.proc.returncode}: {self.tail()}"

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._err.close()


def _cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHAREWISE, *args], env=env | {"COLUMNS": "250"}, capture_output=True, text=True,
                          timeout=timeout)


def _cli_json(env: dict[str, str], *args: str) -> Any:
    done = _cli(env, *args, "--json")
    assert done.returncode == 0, f"sharewise {' '.join(args)} --json exited {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


def _replay(env: dict[str, str], path: Path) -> None:
    done = _cli(env, "feed", "replay", str(path), timeout=120)
    assert done.returncode == 0, f"feed replay {path.name} exited {done.returncode}: {done.stderr[-2000:]}"


def _token(env: dict[str, str], email: str) -> str:
    done = _cli(env, "token", "create", "--user", email, "--ttl", "1h")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def _start_worker(env: dict[str, str], log: Path) -> Proc:
    worker = Proc(["worker", "--checkpoint-interval", "0.5"], env, log)
    worker.stderr_wait(r"worker \S+ in group", timeout=60)
    return worker


# --- database and broker ---------------------------------------------------------------------------


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _orders_of(dsn: str, user_id: str) -> dict[str, asyncpg.Record]:
    rows = await _fetch(dsn, "SELECT * FROM trading_order WHERE user_id = $1", uuid.UUID(user_id))
    return {str(r["id"]): r for r in rows}


async def _order_topic(bootstrap: str) -> list[dict[str, Any]]:
    """Every message of the ``orders`` topic, as the stage sent it (repeats included)."""
    consumer = AIOKafkaConsumer("orders", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        found = []
        while batch := await consumer.getmany(timeout_ms=1500):
            found += [orjson.loads(r.value) for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def _copy_trading_row(dsn: str, from_user: str, to_user: str) -> None:
    """Give ``to_user`` a copy of ``from_user``'s ema_cross row (the one that trades on paper)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO strategies_strategy (user_id, name, description, strategy_type, parameters,"
            " entry_conditions, exit_conditions, risk_management, is_active)"
            " SELECT $2, name, description, strategy_type, parameters, entry_conditions, exit_conditions,"
            " risk_management, is_active FROM strategies_strategy WHERE user_id = $1 AND name = 'ema_cross'",
            uuid.UUID(from_user), uuid.UUID(to_user))
    finally:
        await conn.close()


def _event_id(order: str, status: str) -> str:
    return str(uuid.uuid5(ORDER_EVENT_NAMESPACE, f"{order}|{status}"))


# --- 1. the orders channel on a real websocket -----------------------------------------------------


class Collector:
    """Reads every frame of a client into ``frames`` (message frames) until cancelled."""

    def __init__(self, client: FeedClient) -> None:
        self.client = client
        self.frames: list[dict[str, Any]] = []
        self.other: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for raw in self.client.ws:
            frame = orjson.loads(raw)
            (self.frames if frame.get("op") == "order" else self.other).append(frame)

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - a closed socket ends the reader too
            pass


def test_orders_channel_streams_every_state_change_once_in_seq_order_and_only_to_its_user(
        tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    dsn = pg_dsn
    demo = str(asyncio.run(seed_demo(dsn))["user_id"])
    other = asyncio.run(add_user(dsn))  # a second trader with the same paper-trading row: tenancy has teeth
    asyncio.run(_copy_trading_row(dsn, demo, other))
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=120)
    ref = reference_of(ticks.path, dsn, flush=False)
    want_orders = reference_books(ref)[0]
    assert ref.paper and len(ref.paper.orders) > 20, "the reference trades too little: the test would prove little"
    env = engine_env(tmp_path / "home", broker.bootstrap, dsn)
    tokens = {demo: _token(env, DEMO_EMAIL), other: _token(env, f"{other}@test.local")}

    worker = _start_worker(env, tmp_path / "worker.log")
    feed = None
    try:
        feed = Proc(["feed-server"], env, tmp_path / "feed-server.log")
        address = feed.stdout_match(r"feed server on (ws://\S+/)", timeout=60)[1]
        started = time.monotonic()
        frames, other_frames, sub_seq = asyncio.run(_watch_replay(env, dsn, address, tokens, demo, other,
                                                                  ticks.path, want_orders, worker, feed))
        print(f"replay to last frame: {time.monotonic() - started:.1f}s, {len(frames)} demo frames,"
              f" {len(other_frames)} frames of the other user")
        sent = asyncio.run(_order_topic(broker.bootstrap))
        demo_rows = asyncio.run(_orders_of(dsn, demo))
        other_rows = asyncio.run(_orders_of(dsn, other))
        _check_demo_frames(frames, sub_seq, sent, demo_rows, demo)
        _check_tenancy(frames, other_frames, sent, demo_rows, other_rows, demo, other)
        asyncio.run(_check_resume(address, tokens[demo], frames))
        worker.alive()
        feed.alive()
    finally:
        if feed is not None:
            feed.stop()
        worker.stop()


async def _watch_replay(env, dsn, address, tokens, demo, other, path, want_orders,  # noqa: ANN001, ANN202
                        worker, feed):  # noqa: ANN001
    """Subscribe both users to ``orders``, replay the file, and collect frames until every order row is final and
    the frames stop coming."""
    clients = {u: await FeedClient.authed(address, t) for u, t in tokens.items()}
    try:
        subs = {u: await c.subscribe("orders") for u, c in clients.items()}
        for user, sub in subs.items():
            assert sub["op"] == "subscribed" and sub["channel"] == "orders", sub
        collectors = {u: Collector(c) for u, c in clients.items()}
        replay = await asyncio.create_subprocess_exec(*SHAREWISE, "feed", "replay", str(path), env=env,
                                                      stdout=asyncio.subprocess.DEVNULL,
                                                      stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(replay.communicate(), 120)
        assert replay.returncode == 0, err.decode()[-2000:]

        deadline = asyncio.get_running_loop().time() + 120
        while (got := (await database_books(dsn))[0]) != want_orders:  # the reference decides: all of it
            worker.alive()
            if asyncio.get_running_loop().time() > deadline:
                missing = set(want_orders) - set(got)
                raise AssertionError(f"PostgreSQL's trading_order never equalled the reference: {len(missing)} of"
                                     f" {len(want_orders)} missing (e.g. {sorted(missing)[:2]}), "
                                     f"{len(set(got) - set(want_orders))} extra; worker log: {worker.tail()}")
            await asyncio.sleep(0.5)
        # the final state of every row must reach its user's client; then nothing more may come
        rows = {u: await _orders_of(dsn, u) for u in clients}
        deadline = asyncio.get_running_loop().time() + 30
        finals = {u: {_event_id(i, r["status"]) for i, r in rows[u].items()} for u in clients}
        while any(finals[u] - {f["data"]["event_id"] for f in collectors[u].frames} for u in clients):
            feed.alive()
            if asyncio.get_running_loop().time() > deadline:
                lost = {u: len(finals[u] - {f["data"]["event_id"] for f in collectors[u].frames}) for u in clients}
                raise AssertionError(f"final order states never reached the clients (missing per user: {lost});"
                                     f" feed-server log: {feed.tail()}")
            await asyncio.sleep(0.25)
        counts = None
        while counts != (now := tuple(len(c.frames) for c in collectors.values())):  # quiet for 2 s
            counts = now
            await asyncio.sleep(2.0)
        for c in collectors.values():
            await c.stop()
        for c in collectors.values():
            assert not [f for f in c.other if f.get("op") == "error"], c.other
        return collectors[demo].frames, collectors[other].frames, subs[demo]["seq"]
    finally:
        for c in clients.values():
            await c.close()


def _check_demo_frames(frames, sub_seq, sent, rows, demo) -> None:  # noqa: ANN001
    assert frames, "the demo user's client got no order frame"
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(sub_seq + 1, sub_seq + 1 + len(frames))), (
        f"seqs must rise by one from {sub_seq + 1} with no gap and no repeat: {_runs(seqs)}")
    events = [f["data"]["event_id"] for f in frames]
    repeated = [e for e, n in Counter(events).items() if n > 1]
    assert not repeated, f"{len(repeated)} state changes reached the client more than once, e.g. {repeated[:3]}"

    # every change the stage emitted for this user (the orders topic, repeats folded) reached the client once
    emitted = {m["event_id"] for m in sent if m["user_id"] == demo}
    assert set(events) == emitted, (f"frames vs the orders topic: {len(emitted - set(events))} changes never"
                                    f" reached the client, {len(set(events) - emitted)} frames the stage never sent")

    bad_keys = [(f["seq"], sorted(set(f["data"]) ^ ORDER_MESSAGE_KEYS)) for f in frames
                if set(f["data"]) != ORDER_MESSAGE_KEYS]
    assert not bad_keys, f"frames whose data lacks or adds keys of docs/orders.md's orders message: {bad_keys[:3]}"
    for f in frames:
        d = f["data"]
        assert f["op"] == "order" and d["user_id"] == demo, f
        assert d["event_id"] == _event_id(d["id"], d["status"]), f"event_id is not uuid5(id|status): {d}"
        assert (d["signal"] is not None) == d["executes_signal"], (
            f"signal must be the signals message exactly when the order executes it: {d}")
        if d["signal"] is not None:
            assert d["signal"]["id"] == d["signal_id"] and d["signal"]["user_id"] == demo, d

    by_order: dict[str, list[dict]] = defaultdict(list)
    for f in frames:
        by_order[f["data"]["id"]].append(f["data"])
    assert set(by_order) == set(rows), (f"{len(set(rows) - set(by_order))} trading_order rows have no frame,"
                                        f" {len(set(by_order) - set(rows))} framed orders have no row")
    rank = {"PENDING": 0, "OPEN": 1, "COMPLETE": 2, "CANCELLED": 2, "REJECTED": 2}
    for oid, changes in by_order.items():
        row, statuses = rows[oid], [c["status"] for c in changes]
        assert statuses[0] == "PENDING", f"order {oid} did not start PENDING on the feed: {statuses}"
        assert [rank[s] for s in statuses] == sorted(rank[s] for s in statuses) and len(set(statuses)) == len(
            statuses), f"order {oid}: its changes came out of order or twice: {statuses}"
        assert statuses[-1] == row["status"], (
            f"order {oid}: the feed ends at {statuses[-1]}, the row is {row['status']}")
        last = changes[-1]
        assert (last["filled_quantity"], _dec(last["average_price"]), _dec(last["fees"]), _dec(last["taxes"]),
                last["rejection_reason"], last["symbol"], last["transaction_type"], last["order_type"]) == (
            row["filled_quantity"], row["average_price"], row["fees"], row["taxes"], row["rejection_reason"],
            row["symbol"], row["transaction_type"], row["order_type"]), (
            f"order {oid}: last frame {last} vs row {dict(row)}")
        if row["order_type"] == "MARKET":
            assert statuses == ["PENDING", row["status"]] and row["status"] in FINAL, (
                f"MARKET order {oid} must go PENDING -> a final status, the feed said {statuses}")
    kinds = Counter((r["order_type"], r["status"]) for r in rows.values())
    assert kinds[("MARKET", "COMPLETE")] and kinds[("SL-M", "COMPLETE")] + kinds[("LIMIT", "COMPLETE")], (
        f"the run must fill entries and resting exits to prove anything: {kinds}")
    assert kinds[("LIMIT", "CANCELLED")] + kinds[("SL-M", "CANCELLED")], kinds


def _check_tenancy(frames, other_frames, sent, demo_rows, other_rows, demo, other) -> None:  # noqa: ANN001
    strangers = [f["data"]["id"] for f in other_frames if f["data"]["user_id"] != other]
    assert not strangers, f"the other user's client got {len(strangers)} orders of someone else, e.g. {strangers[:3]}"
    assert not {f["data"]["id"] for f in other_frames} & set(demo_rows), "the other user saw the demo user's orders"
    assert not {f["data"]["id"] for f in frames} & set(other_rows), "the demo user saw the other user's orders"
    # the other user trades too (its own copy of the row), and gets exactly its own changes
    assert other_rows, "the other user's copy of the trading row placed no order"
    assert {f["data"]["event_id"] for f in other_frames} == {m["event_id"] for m in sent if m["user_id"] == other}, (
        "the other user's client did not get exactly the changes the stage emitted for it")
    assert [f["seq"] for f in other_frames] == list(range(1, len(other_frames) + 1)), "per-user seqs start at 1"


async def _check_resume(address: str, token: str, frames: list[dict]) -> None:
    """A client that saw up to the middle frame resumes with since_seq and gets exactly the rest, in order."""
    mid = len(frames) // 2
    client = await FeedClient.authed(address, token)
    try:
        sub = await client.subscribe("orders", since_seq=frames[mid]["seq"])
        assert sub["op"] == "subscribed" and sub["since_seq"] == frames[mid]["seq"], sub
        rest = await client.take(len(frames) - mid - 1)
        assert [f["seq"] for f in rest] == [f["seq"] for f in frames[mid + 1:]]
        assert rest == frames[mid + 1:], "resumed frames differ from the live ones"
        try:
            extra = await client.recv(timeout=1.5)
        except TimeoutError:
            extra = None
        assert extra is None, f"a frame after the rest: {extra}"
    finally:
        await client.close()


def _runs(seqs: list[int]) -> str:
    gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    return f"{len(seqs)} frames, first {seqs[:3]}, breaks {gaps[:5]}"


def _dec(value: str | None):  # noqa: ANN202
    from decimal import Decimal

    return None if value is None else Decimal(str(value))  # a frame carries numbers (README, "Frames")


# --- 2. the kill switch, live ----------------------------------------------------------------------

#: the file of the kill-switch test is cut at these market times (IST) into A (positions open at its end: the
#: halt has something to close), B (entries while halted) and C (entries after resume); every cut is checked
CUTS = (dt.time(10, 15), dt.time(10, 45), dt.time(11, 20))


def _split(path: Path, day: dt.date) -> list[list[bytes]]:
    """The lines of ``path`` in three parts by tick time (a line without one stays with the line before it)."""
    bounds = [int(dt.datetime.combine(day, t, IST).timestamp() * 1000) for t in CUTS]
    parts: list[list[bytes]] = [[], [], []]
    part = 0
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            when = orjson.loads(line).get("time")
        except (orjson.JSONDecodeError, AttributeError):
            when = None
        if isinstance(when, int):
            part = next((i for i, b in enumerate(bounds) if when < b), 3)
        if part < 3:
            parts[part].append(line)
    return parts


def _emitted(dsn: str, parts: list[list[bytes]]) -> list[tuple[list, list]]:
    """(signals, closed 1m bars) the pure core emits while reading each part in turn (as the live worker does)."""
    from engine.cli.assemble import active_deployments
    from engine.cli.files import load_instruments
    from engine.domain import Timeframe
    from engine.pipeline import SignalPipeline
    from engine.settings import Settings
    from engine.strategy.runner import StrategyRunner
    from engine.ticks import decode_packets
    from tests.streams.support import LATENESS

    deployments, _ = asyncio.run(active_deployments(dsn))
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    pipeline = SignalPipeline(registry, StrategyRunner(deployments), lateness_s=LATENESS)
    found = []
    for lines in parts:
        signals, bars = [], []
        for start in range(0, len(lines), 512):
            decoded = decode_packets([ln for ln in lines[start : start + 512] if ln.strip()], registry)
            _, step = pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
            signals += step.signals
            bars += [b for b in step.bars if b.timeframe is Timeframe.M1]
        found.append((signals, bars))
    return found


def _paper(dsn: str, signals: list, bars: list, manual: dict | None = None) -> tuple[dict[str, dict], dict | None]:
    """The order stage on these signals and bars from a flat desk, ``manual`` its hand-set states: every order's
    final message by id, and the last book (engine.orders.paper, with a hand-set state)."""
    from db.trading import user_limits
    from engine.orders.risk import RiskLimits
    from engine.orders.stage import END_OF_TIME, PartitionBooks, clock_bar, clock_input, signal_input
    from engine.outputs import signal_message
    from tests.streams.support import PAPER_CASH

    async def limits() -> dict:
        conn = await asyncpg.connect(dsn)
        try:
            return await user_limits(conn)
        finally:
            await conn.close()

    known = asyncio.run(limits())
    books = PartitionBooks(PAPER_CASH, lambda u: RiskLimits(*known[u]) if u in known else RiskLimits(), manual or {})
    for s in signals:
        if s.execution is not None:
            books.add(orjson.dumps(signal_input(0, s.execution, signal_message(s, s.bar.time))))
    books.add(orjson.dumps(clock_input({0: END_OF_TIME}, [clock_bar(b.symbol, b.open_ns, b.open, b.high, b.low,
                                                                      b.close) for b in bars])))
    final, book = {}, None
    for kind, _, msg in books.advance():
        if kind == "orders":
            final[msg["id"]] = msg
        elif kind == "portfolios":
            book = msg
    return final, book


def _decision(signal) -> dt.datetime:  # noqa: ANN001
    """When the order stage decides a signal: its bar's close (docs/orders.md)."""
    from engine.domain import bar_span

    return dt.datetime.fromtimestamp(bar_span(signal.bar.open_ns, signal.bar.timeframe)[1] / 1e9, dt.timezone.utc)


def _row_of(msg: dict) -> tuple:
    """An orders message as the trading_order row it must leave: what the sink writes, normalised."""
    return (msg["id"], msg["symbol"], msg["order_type"], msg["transaction_type"], msg["quantity"], msg["status"],
            msg["filled_quantity"], _dec(msg["average_price"]), msg["rejection_reason"], _dec(msg["fees"]),
            _dec(msg["taxes"]), dt.datetime.fromisoformat(msg["order_timestamp"]))


def _row(r: asyncpg.Record) -> tuple:
    return (str(r["id"]), r["symbol"], r["order_type"], r["transaction_type"], r["quantity"], r["status"],
            r["filled_quantity"], r["average_price"], r["rejection_reason"], r["fees"], r["taxes"],
            r["order_timestamp"])


def _state_row(env: dict[str, str], user_id: str) -> dict:
    rows = [r for r in _cli_json(env, "risk", "status") if r["user_id"] == user_id]
    assert len(rows) == 1, f"risk status --json has {len(rows)} rows of the demo user: {rows}"
    return rows[0]


def _positions(env: dict[str, str]) -> dict:
    (book,) = _cli_json(env, "positions", "--user", DEMO_EMAIL)
    return book


def _poll(check, timeout: float, what: str, worker: Proc) -> None:  # noqa: ANN001
    """Poll the async ``check`` (returns None when satisfied, else what is still wrong) until satisfied."""
    last: list[Any] = [None]

    async def done() -> bool:
        worker.alive()
        last[0] = await check()
        return last[0] is None

    assert wait_for(done, timeout, interval=0.3), f"{what} within {timeout}s: {last[0]}; worker log: {worker.tail()}"


def test_kill_switch_halts_closes_rejects_and_resumes_a_running_engine(tmp_path, kafka_broker_factory, pg_dsn):
    from tests.streams.support import DAY, PAPER_CASH, Reference

    broker = kafka_broker_factory()
    dsn = pg_dsn
    demo = str(asyncio.run(seed_demo(dsn))["user_id"])
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=180, seed=11, late=False)
    parts = _split(ticks.path, DAY)
    files = []
    for name, lines in zip("ABC", parts):
        files.append(tmp_path / f"part-{name}.jsonl")
        files[-1].write_bytes(b"".join(lines))
    (sig_a, bars_a), (sig_b, bars_b), (sig_c, bars_c) = _emitted(dsn, parts)
    final_a, book_a = _paper(dsn, sig_a, bars_a)
    want_a = reference_books(Reference(set(), set(), [], 0, _paper_run(final_a, book_a)))
    open_a = {(h["symbol"], h["quantity"]) for h in book_a["holdings"]} if book_a else set()
    trading = [s for s in sig_b if s.execution is not None and s.user_id == demo]
    assert open_a, f"part A ends flat ({book_a}): the halt would close nothing; move CUTS[0]"
    assert trading, "part B has no signal of the trading row: the halt would reject nothing; move CUTS[1]"
    assert [s for s in sig_c if s.execution is not None], "part C has no signal of the trading row; move CUTS[2]"
    env = engine_env(tmp_path / "home", broker.bootstrap, dsn)

    started = time.monotonic()
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        # A: the engine trades, positions stay open at the end
        _replay(env, files[0])

        async def a_done() -> str | None:
            got = await database_books(dsn)
            return None if got == want_a else f"orders {len(got[0])}/{len(want_a[0])}, holdings {got[2]}"

        _poll(a_done, 60, "PostgreSQL never held part A's orders and book as the reference", worker)
        before = _state_row(env, demo)
        assert (before["state"], before["effective_state"]) == ("ACTIVE", "ACTIVE"), before
        held = asyncio.run(_fetch(dsn, "SELECT h.symbol, h.quantity FROM portfolios_holding h JOIN"
                                       " portfolios_portfolio p ON p.id = h.portfolio_id WHERE p.user_id = $1",
                                  uuid.UUID(demo)))
        assert {(r["symbol"], r["quantity"]) for r in held} == open_a
        closes_at = {r["symbol"]: r["close_price"] for r in asyncio.run(_fetch(
            dsn, "SELECT DISTINCT ON (symbol) symbol, close_price FROM analytics_marketdata WHERE timeframe = '1m'"
                 " ORDER BY symbol, timestamp DESC"))}
        entries = {o["symbol"]: o for o in final_a.values() if o["order_type"] == "MARKET" and o["status"] == "COMPLETE"
                   and (o["symbol"], 10 if o["transaction_type"] == "BUY" else -10) in open_a
                   and any(r["signal_id"] == o["signal_id"] and r["status"] == "OPEN" for r in final_a.values())}
        assert len(entries) == len(open_a), (entries, open_a)

        # the kill switch
        halted = _cli(env, "risk", "halt", "--user", DEMO_EMAIL, "--reason", "test")
        assert halted.returncode == 0, halted.stderr
        assert f"risk command sent to the engine through {broker.bootstrap}" in halted.stdout, halted.stdout
        row = _state_row(env, demo)
        assert (row["state"], row["reason"]) == ("HALTED", "test"), row

        async def halt_done() -> str | None:
            state = await _fetch(dsn, "SELECT effective_state FROM engine.trading_state WHERE user_id = $1",
                                 uuid.UUID(demo))
            left = await _fetch(dsn, "SELECT h.symbol FROM portfolios_holding h JOIN portfolios_portfolio p"
                                     " ON p.id = h.portfolio_id WHERE p.user_id = $1", uuid.UUID(demo))
            rows = await _orders_of(dsn, demo)
            if state and state[0]["effective_state"] == "HALTED" and not left and len(rows) == len(final_a) + len(
                    open_a):
                return None
            return f"effective state {state and state[0]['effective_state']}, holdings {[r['symbol'] for r in left]}," \
                   f" {len(rows) - len(final_a)} new orders"

        _poll(halt_done, 30, "the halt never took effect", worker)
        row = _state_row(env, demo)
        assert (row["state"], row["reason"], row["effective_state"], row["effective_reason"]) == (
            "HALTED", "test", "HALTED", "test"), row
        halt_at = dt.datetime.fromisoformat(row["as_of"])
        book = _positions(env)
        assert (book["trading_state"], book["state_reason"], book["holdings"]) == ("HALTED", "test", []), book
        p = book["portfolio"]
        assert (p["invested_amount"], p["unrealized_pnl"], p["total_value"]) == ("0.00", "0.00", p["available_cash"])
        assert _dec(p["realized_pnl"]) == _dec(p["total_value"]) - PAPER_CASH, p  # flat: value = cash + realised
        assert dt.datetime.fromisoformat(p["updated_at"]) == halt_at, (p, halt_at)

        shown = {o["id"]: o for o in _cli_json(env, "orders", "--user", DEMO_EMAIL)}
        sent = {(m["id"], m["status"]): m for m in asyncio.run(_order_topic(broker.bootstrap))}
        new = [o for o in shown.values() if o["id"] not in final_a]
        assert len(new) == len(open_a), f"the halt placed {len(new)} orders for {len(open_a)} positions: {new}"
        for o in new:
            entry = entries[o["symbol"]]
            assert (o["order_type"], o["status"], o["quantity"], o["filled_quantity"], o["transaction_type"]) == (
                "MARKET", "COMPLETE", 10, 10, "SELL" if entry["transaction_type"] == "BUY" else "BUY"), o
            assert dt.datetime.fromisoformat(o["order_timestamp"]) == halt_at, (o, halt_at)
            assert dt.datetime.fromisoformat(o["exchange_timestamp"]) == halt_at, (o, halt_at)
            assert _dec(o["average_price"]) == closes_at[o["symbol"]], (
                f"{o['symbol']} closed at {o['average_price']}, its latest 1m close is {closes_at[o['symbol']]}")
            assert o["signal_id"] == entry["signal_id"] and o["rejection_reason"] is None, o
            message = sent[(o["id"], "COMPLETE")]
            assert message["executes_signal"] is False and message["signal"] is None, message
            for leg in (r for r in final_a.values() if r["signal_id"] == entry["signal_id"] and r["status"] == "OPEN"):
                assert (shown[leg["id"]]["status"], dt.datetime.fromisoformat(shown[leg["id"]]["updated_at"])) == (
                    "CANCELLED", halt_at), (leg, shown[leg["id"]])
        executed = {str(r["id"]): r["executed_price"] for r in asyncio.run(_fetch(
            dsn, "SELECT id, executed_price FROM trading_signal WHERE id = ANY($1::uuid[])",
            [uuid.UUID(e["signal_id"]) for e in entries.values()]))}
        assert executed == {e["signal_id"]: _dec(e["average_price"]) for e in entries.values()}, (
            "a close by the halt executes no signal: the entry signals keep their entry price")

        # B: halted, every entry is REJECTED (halted) and nothing fills
        assert all(_decision(s) > halt_at for s in sig_b), "a signal of part B is decided before the halt"
        want_b, _ = _paper(dsn, sig_b, bars_b, manual={demo: (_halted(), "test")})
        assert want_b and all(m["status"] == "REJECTED" for m in want_b.values()), want_b
        _replay(env, files[1])

        async def b_done() -> str | None:
            rows = await _fetch(dsn, "SELECT * FROM trading_order WHERE user_id = $1 AND order_timestamp > $2",
                                uuid.UUID(demo), halt_at)
            got, want = sorted(map(_row, rows)), sorted(map(_row_of, want_b.values()))
            return None if got == want else f"{len(got)} of {len(want)} orders, first differences" \
                                             f" {sorted(set(got) ^ set(want))[:2]}"

        _poll(b_done, 60, "the entries of part B were not exactly the REJECTED ones expected", worker)
        rejected = _cli_json(env, "orders", "--user", DEMO_EMAIL, "--status", "REJECTED")
        assert {o["id"] for o in rejected} == set(want_b) and {o["rejection_reason"] for o in rejected} == {"halted"}
        notes = asyncio.run(_fetch(dsn, "SELECT title, message, priority FROM notifications_notification"
                                        " WHERE id = ANY($1::uuid[])", [_note_id(i, "REJECTED") for i in want_b]))
        assert len(notes) == len(want_b) and all("rejected: halted" in n["message"] for n in notes), notes
        book = _positions(env)
        assert (book["trading_state"], book["holdings"]) == ("HALTED", []), book
        row = _state_row(env, demo)
        assert (row["state"], row["effective_state"], row["effective_reason"]) == ("HALTED", "HALTED", "test"), row

        # resume; C: entries fill again
        resumed = _cli(env, "risk", "resume", "--user", DEMO_EMAIL)
        assert resumed.returncode == 0 and "risk command sent" in resumed.stdout, resumed.stdout + resumed.stderr

        async def resume_done() -> str | None:
            state = await _fetch(dsn, "SELECT effective_state FROM engine.trading_state WHERE user_id = $1",
                                 uuid.UUID(demo))
            return None if state[0]["effective_state"] == "ACTIVE" else f"effective {state[0]['effective_state']}"

        _poll(resume_done, 30, "the resume never took effect", worker)
        row = _state_row(env, demo)
        assert (row["state"], row["reason"], row["effective_state"], row["effective_reason"]) == (
            "ACTIVE", None, "ACTIVE", None), row
        resume_at = dt.datetime.fromisoformat(row["as_of"])
        assert _positions(env)["trading_state"] == "ACTIVE"
        assert all(_decision(s) > resume_at for s in sig_c), "a signal of part C is decided before the resume"
        want_c, book_c = _paper(dsn, sig_c, bars_c)
        assert any(m["order_type"] == "MARKET" and m["status"] == "COMPLETE" and m["executes_signal"]
                   for m in want_c.values()), "part C fills no entry: the resume would prove nothing"
        _replay(env, files[2])

        async def c_done() -> str | None:
            rows = await _fetch(dsn, "SELECT * FROM trading_order WHERE user_id = $1 AND order_timestamp > $2",
                                uuid.UUID(demo), resume_at)
            got, want = sorted(map(_row, rows)), sorted(map(_row_of, want_c.values()))
            return None if got == want else f"{len(got)} of {len(want)} orders, first differences" \
                                             f" {sorted(set(got) ^ set(want))[:2]}"

        _poll(c_done, 60, "the orders of part C were not the ones of an ACTIVE desk", worker)
        book = _positions(env)
        assert book["trading_state"] == "ACTIVE", book
        want_holdings = [(h["symbol"], h["quantity"], h["average_price"]) for h in book_c["holdings"]]
        assert [(h["symbol"], h["quantity"], h["average_price"]) for h in book["holdings"]] == want_holdings, book
        row = _state_row(env, demo)
        assert (row["state"], row["effective_state"]) == ("ACTIVE", "ACTIVE"), row
        worker.alive()
        print(f"kill switch: {len(open_a)} positions closed, {len(want_b)} entries rejected, {len(want_c)} orders"
              f" after resume; {time.monotonic() - started:.1f}s from worker start")
    finally:
        worker.stop()


def _paper_run(final: dict[str, dict], book: dict | None):  # noqa: ANN202
    from engine.orders.paper import PaperRun

    return PaperRun(list(final.values()), {}, book)


def _halted():  # noqa: ANN202
    from engine.orders.risk import TradingState

    return TradingState.HALTED


def _note_id(order: str, status: str) -> uuid.UUID:
    from engine.outputs import NOTIFICATION_NAMESPACE

    return uuid.uuid5(NOTIFICATION_NAMESPACE, f"order|{order}|{status}")


# --- 3. a halt saved while the engine is down ------------------------------------------------------


def test_a_halt_saved_while_the_engine_is_down_is_loaded_when_it_starts(tmp_path, kafka_broker_factory, pg_dsn):
    """``sharewise risk halt`` with no broker to tell saves the state and promises "the engine will load this
    state when it starts" (README, docs/orders.md: "A hand-set state is kept in engine.trading_state and loaded
    at start"): a worker restarted after it must reject every entry as ``halted``."""
    from tests.streams.support import DAY, Reference

    broker = kafka_broker_factory()
    dsn = pg_dsn
    demo = str(asyncio.run(seed_demo(dsn))["user_id"])
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=180, seed=11, late=False)
    parts = _split(ticks.path, DAY)[:2]
    files = []
    for name, lines in zip("AB", parts):
        files.append(tmp_path / f"part-{name}.jsonl")
        files[-1].write_bytes(b"".join(lines))
    (sig_a, bars_a), (sig_b, _) = _emitted(dsn, parts)
    final_a, book_a = _paper(dsn, sig_a, bars_a)
    want_a = reference_books(Reference(set(), set(), [], 0, _paper_run(final_a, book_a)))
    trading_b = [s for s in sig_b if s.execution is not None and s.user_id == demo]
    assert trading_b, "part B has no signal of the trading row"
    env = engine_env(tmp_path / "home", broker.bootstrap, dsn)

    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        _replay(env, files[0])

        async def a_done() -> str | None:
            got = await database_books(dsn)
            return None if got == want_a else f"orders {len(got[0])}/{len(want_a[0])}, holdings {got[2]}"

        _poll(a_done, 60, "PostgreSQL never held part A's orders and book as the reference", worker)
    finally:
        worker.stop()
    saved = asyncio.run(_fetch(dsn, "SELECT partition FROM engine.checkpoint WHERE topic = 'orders.inputs'"))
    assert saved, "the stopped worker left no checkpoint of the order stage: the restart would prove nothing"

    # no engine to tell: the CLI saves the state for the next start (exit 0, says so)
    halted = _cli(env | {"SHAREWISE_KAFKA": "kafka://127.0.0.1:1"}, "risk", "halt", "--user", DEMO_EMAIL,
                  "--reason", "while down")
    assert halted.returncode == 0, halted.stderr
    assert "the engine will load this state when it starts" in halted.stdout, halted.stdout

    worker = _start_worker(env, tmp_path / "worker-2.log")
    try:
        _replay(env, files[1])
        last = max(_decision(s) for s in trading_b)

        async def b_decided() -> str | None:  # the desk's book moves with every signal of its user
            rows = await _fetch(dsn, "SELECT updated_at FROM portfolios_portfolio WHERE user_id = $1", uuid.UUID(demo))
            return None if rows and rows[0]["updated_at"] >= last else f"book as of {rows and rows[0]['updated_at']}"

        _poll(b_decided, 60, f"the signals of part B (the last decided at {last}) were never decided", worker)
        rows = asyncio.run(_orders_of(dsn, demo))
        entries = {o: (rows[o]["symbol"], rows[o]["status"], rows[o]["rejection_reason"]) for o in
                   (str(order_id(f"{_signal_id(s)}|entry")) for s in trading_b) if o in rows}
        assert entries, "part B placed no entry: the test would prove nothing"
        filled = {o: e for o, e in entries.items() if e[1:] != ("REJECTED", "halted")}
        (state,) = asyncio.run(_fetch(dsn, "SELECT state, effective_state, effective_reason FROM engine.trading_state"
                                           " WHERE user_id = $1", uuid.UUID(demo)))
        assert not filled, (f"after a restart with HALTED saved by hand, {len(filled)} of {len(entries)} entries of"
                            f" part B were not REJECTED (halted): {sorted(filled.values())}")
        assert (state["effective_state"], state["effective_reason"]) == ("HALTED", "while down"), dict(state)
    finally:
        worker.stop()


def _signal_id(signal) -> str:  # noqa: ANN001
    from engine.outputs import signal_message

    return signal_message(signal, signal.bar.time)["id"]


# --- 4. a second `up` after `up --until-drained` ---------------------------------------------------


def test_a_second_up_after_until_drained_trades_like_the_backtest_of_both_files(tmp_path, pg_dsn):
    """README: ``up --replay A --until-drained`` then ``up --replay B --until-drained`` on the same home keeps
    everything of both files; docs/orders.md: orders are a pure function of the signals and bars. So the orders
    and the book equal the backtest's of A then B (a later session), as the signals and bars do."""
    from engine.feeds.synth import next_session_day
    from tests.streams.support import DAY, SYMBOLS_20, make_session_file, up_until_drained

    asyncio.run(seed_demo(pg_dsn))
    first = make_tick_file(tmp_path / "a.jsonl", minutes=120, seed=11, late=False).path
    second, both = tmp_path / "b.jsonl", tmp_path / "ab.jsonl"
    make_session_file(second, SYMBOLS_20[:5], sessions=1, ticks=20_000, seed=22, day=next_session_day(DAY))
    both.write_bytes(first.read_bytes() + second.read_bytes())
    env = engine_env(tmp_path / "home", None, pg_dsn)  # the embedded broker of each `up`, as a user runs it
    up_until_drained(env, first)
    up_until_drained(env, second)
    want = reference_books(reference_of(both, pg_dsn, flush=True, chunk=200))
    got = asyncio.run(database_books(pg_dsn))
    assert want[0], "the backtest trades nothing: the test would prove nothing"
    missing, extra = set(want[0]) - set(got[0]), set(got[0]) - set(want[0])
    assert not missing and not extra and got == want, (
        f"after the second up: {len(missing)} orders of the backtest missing ({_kinds(missing)}), {len(extra)} extra"
        f" ({_kinds(extra)}); book {got[1]} vs the backtest's {want[1]}")


def _kinds(orders: set[tuple]) -> dict:
    """(order_type, status, rejection_reason) counts of normalised order tuples (tests.streams.support)."""
    return dict(Counter((o[3], o[8], o[13]) for o in orders))
