"""Order path benchmark: the order stage's decisions/s, and the pipeline's ticks/s with and without orders.

Run: ``python benchmarks/orders.py [--users 1000] [--symbols-per-user 5] [--strategies 1] [--min-seconds 10]
[--max-sessions 20] [--ticks 200000] [--symbols 20] [--only stage|pipeline] [--quick]``.

1. **Order stage**: :class:`engine.orders.stage.PartitionBooks`, the pure core the ``orders.inputs`` agent runs,
   holding ``--users`` users in one partition, each with ``--strategies`` trading strategies on
   ``--symbols-per-user`` symbols drawn from the built-in instruments. Its input is what the hot path sends,
   built with the engine's own message builders (``signal_input``, ``clock_input``, ``clock_bar``): per market
   minute one clock carrying the 1m bars of every instrument and every source's ``through`` (the minute's end,
   ``partitions=`` the 8 ``market.ticks`` partitions); at each 5m bar close, before that minute's clock, one
   signal message per user, strategy and symbol (BUY and SELL in turn, target and stop 0.5% away, MIS quantity
   10, the test suite's signal builder). Whole NSE sessions (09:15-15:30 IST, 375 minutes), as many as it takes
   for the timed part to last ``--min-seconds`` (at most ``--max-sessions``). A session's input bytes are built
   before its clock starts; only ``add()`` and ``advance()`` are timed, ``advance()`` after every 512 messages
   (the agent's batch). Printed: decisions/s (signals + 1m bars decided), orders emitted/s (new orders and order
   state changes), µs per input message, and the cost of a checkpoint (``orjson.dumps(books.to_json())``, as
   :meth:`streams.orders.OrderStage.checkpoints` writes it) in the middle of the first session and at the end.
2. **Pipeline with and without orders**: one session file (``--symbols`` instruments, those the demo strategies
   trade first, about ``--ticks`` ticks over 09:15-15:30, ``tests.streams.support.make_session_file``) replayed
   twice by the real command ``python -m engine.cli up --replay FILE --until-drained --json``, each in a fresh
   ``SHAREWISE_HOME`` (its own embedded broker and PostgreSQL, demo tenant). The home is migrated and seeded
   beforehand; for the *signals only* run the seeded ``ema_cross`` row's ``risk_management.execution`` is set to
   JSON null (``up`` re-seeds the demo and would add a missing key back; null reads as "signals only"), for the
   *trading* run it keeps the seeded paper execution. Printed per run: the whole command's wall time (start-up
   included, the same for both), ticks/s, its exit code and JSON summary (orders = ``trading_order`` rows of the
   run). The signals of both runs must be equal, and the signals-only run must place no order.

``--quick`` runs small sizes (a smoke check). Figures are printed, never asserted; a results table closes the
run. The script exits 1 when a replay command fails or the two replays are not comparable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.session import session_instruments, up_command  # noqa: E402
from db.embedded import start_postgres, stop_postgres  # noqa: E402
from db.migrate import migrate  # noqa: E402
from db.seed_demo import TRADING_STRATEGY, seed_demo  # noqa: E402
from engine.cli import aio  # noqa: E402
from engine.cli.assemble import active_deployments, tune_gc  # noqa: E402
from engine.cli.files import load_instruments  # noqa: E402
from engine.domain import NS_PER_MIN  # noqa: E402
from engine.feeds.synth import SESSION_SECONDS, next_session_day, session_start  # noqa: E402
from engine.orders.execution import Execution, Product  # noqa: E402
from engine.orders.risk import RiskLimits  # noqa: E402
from engine.orders.stage import PartitionBooks, clock_bar, clock_input, signal_input  # noqa: E402
from engine.routing import owners  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.strategy.signals import round_price  # noqa: E402
from tests.engine.orders.support import signal as signal_message  # noqa: E402
from tests.streams.support import make_session_file  # noqa: E402

DAY = dt.date(2026, 1, 5)  # a Monday
MINUTES = SESSION_SECONDS // 60  # 375
SOURCES = 8  # market.ticks partitions (SHAREWISE_PARTITIONS' default): every clock names them all
BATCH = 512  # the orders agent's batch (EngineWorker.batch_max): advance() after each
EXECUTION = Execution(Product.MIS, quantity=10)
PAPER_CASH = Decimal("1000000")
BAND = 0.005  # target and stop this far from the entry


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the closing results table; ``rate`` is per second of ``unit``; None prints as ``-``."""

    name: str
    rate: float | None
    unit: str
    count: int | None
    seconds: float | None
    note: str


# --- 1. the order stage ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Desks:
    """Who trades what: user ids, each user's strategy ids and symbols."""

    users: list[str]
    strategies: list[list[str]]
    symbols: list[list[str]]


def make_desks(universe: list[str], users: int, per_user: int, strategies: int, seed: int = 11) -> Desks:
    rng = np.random.default_rng(seed)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-user-{u}")) for u in range(users)]
    strats = [[str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-strategy-{u}-{s}")) for s in range(strategies)]
              for u in range(users)]
    picks = [[universe[i] for i in sorted(rng.choice(len(universe), per_user, replace=False))] for _ in range(users)]
    return Desks(ids, strats, picks)


def minute_bars(n_symbols: int, start: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Open, high, low, close of ``MINUTES`` 1m bars per symbol (rows: minutes), a GBM from ``start``."""
    steps = rng.normal(0.0, 0.0012, (MINUTES, n_symbols))
    close = start * np.exp(np.cumsum(steps, axis=0))
    open_ = np.vstack([start, close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0006, (2, MINUTES, n_symbols)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    return open_, high, low, close


def session_input(day: dt.date, universe: list[str], source_of: dict[str, int], desks: Desks, start: np.ndarray,
                  rng: np.random.Generator) -> tuple[list[bytes], int, int, np.ndarray]:
    """One session's ``orders.inputs`` messages in the order the hot path sends them; also the signal and bar
    counts and the last closes (the next session opens there)."""
    o, h, low, c = minute_bars(len(universe), start, rng)
    col = {s: i for i, s in enumerate(universe)}
    first_ns = int(session_start(day).timestamp()) * 1_000_000_000
    iso_day = day.isoformat()
    messages: list[bytes] = []
    n_signals = 0
    for m in range(MINUTES):
        open_ns = first_ns + m * NS_PER_MIN
        through = open_ns + NS_PER_MIN
        if (m + 1) % 5 == 0:  # a 5m bar closes with this minute: its signals go out before the clock
            k = (m + 1) // 5
            five_open = dt.datetime.fromtimestamp((through - 5 * NS_PER_MIN) / 1e9, session_start(day).tzinfo)
            hhmm = five_open.strftime("%H:%M")
            for u, user in enumerate(desks.users):
                for strategy in desks.strategies[u]:
                    for symbol in desks.symbols[u]:
                        entry = float(c[m, col[symbol]])
                        buy = (k + u) % 2 == 0
                        up, down = str(round_price(entry * (1 + BAND))), str(round_price(entry * (1 - BAND)))
                        msg = signal_message("BUY" if buy else "SELL", hhmm, str(round_price(entry)),
                                             up if buy else down, down if buy else up, symbol=symbol,
                                             strategy=strategy, user=user, day=iso_day)
                        messages.append(orjson.dumps(signal_input(source_of[symbol], EXECUTION, msg)))
                        n_signals += 1
        bars = [clock_bar(s, open_ns, o[m, i], h[m, i], low[m, i], c[m, i]) for i, s in enumerate(universe)]
        messages.append(orjson.dumps(clock_input({p: through for p in range(SOURCES)}, bars, SOURCES)))
    return messages, n_signals, MINUTES * len(universe), c[-1]


@dataclass(slots=True)
class StageRun:
    sessions: int = 0
    messages: int = 0
    signals: int = 0
    bars: int = 0
    seconds: float = 0.0
    build_s: float = 0.0
    orders: int = 0  # distinct orders (their PENDING message)
    order_messages: int = 0  # every order state change
    books: int = 0  # portfolios messages
    notifications: int = 0
    rejected: int = 0
    decisions: int = 0
    checkpoints: list[tuple[str, int, float, float]] | None = None  # (when, bytes, to_json ms, dumps ms)


def checkpoint_cost(books: PartitionBooks, when: str, run: StageRun) -> None:
    t0 = time.perf_counter()
    doc = books.to_json()
    t1 = time.perf_counter()
    raw = orjson.dumps(doc)
    t2 = time.perf_counter()
    assert run.checkpoints is not None
    run.checkpoints.append((when, len(raw), (t1 - t0) * 1000, (t2 - t1) * 1000))
    positions = sum(len(d.positions) for d in books.desks.values())
    print(f"  checkpoint {when}: {len(raw):,} bytes, to_json {(t1 - t0) * 1000:,.1f} ms + orjson.dumps"
          f" {(t2 - t1) * 1000:,.1f} ms ({len(books.desks):,} desks, {positions:,} open positions,"
          f" {len(books.decided):,} decided signal ids)")


def count(out: list[tuple[str, str, dict]], run: StageRun) -> None:
    for topic, _, msg in out:
        if topic == "orders":
            run.order_messages += 1
            status = msg["status"]
            run.orders += status == "PENDING"
            run.rejected += status == "REJECTED"
        elif topic == "portfolios":
            run.books += 1
        else:
            run.notifications += 1


def stage_run(users: int, per_user: int, strategies: int, min_seconds: float, max_sessions: int) -> StageRun:
    """Feed whole sessions to one PartitionBooks until the timed part lasts ``min_seconds``; print as it goes."""
    registry = load_instruments(Settings(home=Path("/nonexistent")))
    universe = list(registry.symbols)
    source_of = dict(zip(universe, owners(universe, SOURCES).tolist()))
    desks = make_desks(universe, users, per_user, strategies)
    limits = RiskLimits()
    books = PartitionBooks(PAPER_CASH, lambda user: limits)
    tune_gc()  # as the worker process does once started (engine/cli/assemble.py)
    rng = np.random.default_rng(23)
    closes = np.array([i.typical_price for i in registry.instruments], dtype=np.float64)
    run = StageRun(checkpoints=[])
    day = DAY
    print(f"order stage   : {users:,} users x {strategies} strateg{'y' if strategies == 1 else 'ies'} x {per_user}"
          f" symbols of {len(universe)}, 1m bars of all {len(universe)} in one clock a minute ({SOURCES} sources),"
          f" signals at 5m closes; advance() every {BATCH} messages")
    while run.sessions < max_sessions and (run.sessions == 0 or run.seconds < min_seconds):
        t0 = time.perf_counter()
        messages, n_signals, n_bars, closes = session_input(day, universe, source_of, desks, closes, rng)
        build = time.perf_counter() - t0
        decisions0, orders0, elapsed = books.counters.decisions, run.orders, 0.0
        middle = len(messages) // 2 if run.sessions == 0 else -1
        gc.collect()
        for start in range(0, len(messages), BATCH):
            batch = messages[start:start + BATCH]
            t = time.perf_counter()
            for value in batch:
                books.add(value)
            out = books.advance()
            elapsed += time.perf_counter() - t
            count(out, run)
            if start <= middle < start + BATCH:
                checkpoint_cost(books, f"mid-session {day}", run)
        run.sessions += 1
        run.messages += len(messages)
        run.signals += n_signals
        run.bars += n_bars
        run.seconds += elapsed
        run.build_s += build
        decided = books.counters.decisions - decisions0
        print(f"  session {day}: {len(messages):,} messages ({n_signals:,} signals, {n_bars:,} 1m bars; built in"
              f" {build:.1f}s, not timed) decided in {elapsed:.2f}s: {decided / elapsed:,.0f} decisions/s,"
              f" {(run.orders - orders0) / elapsed:,.0f} new orders/s,"
              f" {elapsed / len(messages) * 1e6:,.1f} µs/message")
        day = next_session_day(day)
    checkpoint_cost(books, f"end of {run.sessions} session(s)", run)
    run.decisions = books.counters.decisions
    c = books.counters
    if c.late or c.repeats:
        print(f"  NOTE: {c.late:,} late and {c.repeats:,} repeated inputs (none expected)")
    print(f"order stage   : {run.decisions / run.seconds:>10,.0f} decisions/s  ({run.decisions:,} decisions ="
          f" {run.signals:,} signals + {run.bars:,} bar applications, {run.sessions} session(s) in {run.seconds:.2f}s)")
    print(f"                {run.orders / run.seconds:>10,.0f} orders/s     ({run.orders:,} orders, {run.rejected:,}"
          f" of them rejected; {run.order_messages:,} order messages = {run.order_messages / run.seconds:,.0f}/s;"
          f" {run.books:,} books, {run.notifications:,} notifications)")
    print(f"                {run.seconds / run.messages * 1e6:>10,.1f} µs/message ({run.messages:,} input messages)")
    return run


def stage_figures(run: StageRun, users: int) -> list[Figure]:
    rows = [Figure(f"order stage, {users:,} users", run.decisions / run.seconds, "decisions", run.decisions,
                   run.seconds, f"signals + 1m bars decided; {run.seconds / run.messages * 1e6:,.1f} µs per input"
                                f" message ({run.messages:,})"),
            Figure("  orders emitted", run.orders / run.seconds, "orders", run.orders, run.seconds,
                   f"new orders ({run.rejected:,} rejected); {run.order_messages / run.seconds:,.0f} order"
                   f" messages/s")]
    assert run.checkpoints is not None
    rows += [Figure(f"  checkpoint, {when}", None, "", size, (j + d) / 1000,
                    f"{size:,} bytes: to_json {j:,.1f} ms + orjson.dumps {d:,.1f} ms")
             for when, size, j, d in run.checkpoints]
    return rows


# --- 2. the pipeline with and without orders ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replay:
    label: str
    ticks: int
    wall_s: float
    exit_code: int
    timed_out: bool
    summary: dict | None
    trading: int  # active deployments that trade, as the loader read them before the run
    log: Path
    engine_s: float | None  # first tick processed -> consumer shut down, from the command's log (None: not found)

    @property
    def ticks_per_s(self) -> float:
        return self.ticks / self.wall_s


def engine_window(log: Path) -> float | None:
    """Seconds from the worker's first ticks partition assumed (its first packet) to the consumer shutting down
    (every output drained and checked), read from ``up``'s log file: the run without start-up and group join."""
    first = last = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if first is None and "sharewise.worker: partition" in line and "assumed at offset" in line:
            first = line[:23]
        elif "Consumer shutting down" in line:
            last = line[:23]
    if first is None or last is None:
        return None
    try:
        stamps = [dt.datetime.strptime(x, "%Y-%m-%d %H:%M:%S,%f") for x in (first, last)]
    except ValueError:
        return None
    return (stamps[1] - stamps[0]).total_seconds()


async def prepare_home(home: Path, trading: bool) -> int:
    """Migrate and seed ``home``'s PostgreSQL; without ``trading`` null the seeded ema_cross row's execution.
    Returns how many active deployments trade, as the engine's loader reads them."""
    settings = Settings(home=home)
    dsn = start_postgres(settings)
    try:
        await migrate(dsn)
        demo = await seed_demo(dsn)
        if not trading:
            from db.connect import connect

            conn = await connect(dsn)
            try:
                await conn.execute("UPDATE public.strategies_strategy SET risk_management ="
                                   " coalesce(risk_management, '{}'::jsonb) || '{\"execution\": null}'::jsonb"
                                   " WHERE id = $1", demo["strategy_ids"][TRADING_STRATEGY])
            finally:
                await conn.close()
        deployments, _ = await active_deployments(dsn)
        return sum(d.execution is not None for d in deployments)
    finally:
        stop_postgres(settings)


def replay(label: str, path: Path, ticks: int, work: Path, trading: bool, timeout_s: float) -> Replay:
    home, log = work / f"home-{label}", work / f"up-{label}.stderr.log"
    n_trading = aio.run(prepare_home(home, trading))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env |= {"SHAREWISE_HOME": str(home), "SHAREWISE_WS_PORT": "0"}
    print(f"replay {label:<12}: {n_trading} trading strateg{'y' if n_trading == 1 else 'ies'};"
          f" SHAREWISE_HOME={home} SHAREWISE_WS_PORT=0 {shlex.join(up_command(path))} 2> {log}")
    timed_out = False
    with log.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(up_command(path), stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=ROOT)
        try:
            stdout = proc.communicate(timeout=timeout_s)[0]
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.terminate()  # its clean shutdown path
            try:
                stdout = proc.communicate(timeout=60)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout = proc.communicate()[0]
        wall = time.perf_counter() - started
    lines = stdout.strip().splitlines()
    try:
        summary = orjson.loads(lines[-1]) if lines else None
    except orjson.JSONDecodeError:
        summary = None
    summary = summary if isinstance(summary, dict) else None
    engine_s = engine_window(home / "logs" / "up.log")
    run = Replay(label, ticks, wall, proc.returncode, timed_out, summary, n_trading, log, engine_s)
    print(f"replay {label:<12}: {run.ticks_per_s:>10,.0f} ticks/s  ({ticks:,} ticks in {wall:.2f}s wall, whole command"
          f" incl. start-up; exit code {proc.returncode}{', TIMED OUT' if timed_out else ''}; summary {summary})")
    if engine_s:
        print(f"{'':<19}: {ticks / engine_s:>10,.0f} ticks/s  ({engine_s:.2f}s from the first tick processed to the"
              f" consumer shutting down, every output committed; from {home / 'logs' / 'up.log'})")
    return run


def pipeline_runs(ticks: int, symbols: int, timeout_s: float) -> tuple[list[Replay], list[str]]:
    work = Path(tempfile.mkdtemp(prefix="sharewise-orders-"))
    registry = load_instruments(Settings(home=work / "none"))
    names = tuple(i.symbol for i in session_instruments(registry, symbols))
    path = work / "ticks.jsonl"
    n = make_session_file(path, names, sessions=1, ticks=ticks, day=DAY)
    print(f"session file  : {n:,} ticks ({symbols} instruments, {DAY} 09:15-15:30 IST) in {path}")
    runs = [replay("signals-only", path, n, work, False, timeout_s),
            replay("trading", path, n, work, True, timeout_s)]
    problems = []
    for r in runs:
        if r.exit_code or r.timed_out or r.summary is None:
            problems.append(f"{r.label}: exit code {r.exit_code}{', timed out' if r.timed_out else ''},"
                            f" summary {r.summary} (see {r.log})")
    off, on = runs
    if off.trading != 0 or on.trading == 0:
        problems.append(f"trading strategies: {off.trading} in the signals-only run, {on.trading} in the trading run")
    if off.summary and on.summary:
        if off.summary.get("signals") != on.summary.get("signals"):
            problems.append(f"signals differ: {off.summary.get('signals')} without orders, {on.summary.get('signals')}"
                            " with")
        if off.summary.get("orders"):
            problems.append(f"the signals-only run placed {off.summary['orders']} orders")
    if not problems:
        assert on.summary is not None
        window = (f"; {on.engine_s - off.engine_s:+.2f}s after start-up ({off.engine_s / on.engine_s - 1:+.1%} ticks/s)"
                  if on.engine_s and off.engine_s else "")
        print(f"orders cost   : {on.wall_s - off.wall_s:+.2f}s wall"
              f" ({on.ticks_per_s / off.ticks_per_s - 1:+.1%} ticks/s){window}"
              f" for {on.summary.get('orders', 0):,} orders")
    for p in problems:
        print(f"PROBLEM: {p}")
    return runs, problems


def pipeline_figures(runs: list[Replay]) -> list[Figure]:
    rows = []
    for r in runs:
        rows.append(Figure(f"up --replay, {r.label}", r.ticks_per_s, "ticks", r.ticks, r.wall_s,
                           f"exit {r.exit_code}; signals {(r.summary or {}).get('signals', '-')},"
                           f" orders {(r.summary or {}).get('orders', '-')}; whole command incl. start-up"))
        if r.engine_s:
            rows.append(Figure("  after start-up", r.ticks / r.engine_s, "ticks", r.ticks, r.engine_s,
                               "first tick processed -> consumer shut down (up.log)"))
    return rows


# --- the run ------------------------------------------------------------------------------------------


def results_table(figures: list[Figure]) -> None:
    print(f"\n{'results':<36} {'per second':>12} {'of':<9} {'count':>11} {'seconds':>9}  note")
    for f in figures:
        print(f"{f.name:<36} {number(f.rate, ',.0f'):>12} {f.unit:<9} {number(f.count, ','):>11}"
              f" {number(f.seconds, '.3f' if f.rate is None else '.2f'):>9}  {f.note}")


def number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(args: argparse.Namespace) -> int:
    figures: list[Figure] = []
    failed = False
    if args.only in (None, "stage"):
        run = stage_run(args.users, args.symbols_per_user, args.strategies, args.min_seconds, args.max_sessions)
        figures += stage_figures(run, args.users)
    if args.only in (None, "pipeline"):
        runs, problems = pipeline_runs(args.ticks, args.symbols, args.timeout)
        figures += pipeline_figures(runs)
        failed = bool(problems)
    results_table(figures)
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["stage", "pipeline"], help="stage: section 1; pipeline: section 2")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, a smoke check: 50 users, one session; 20,000 ticks")
    parser.add_argument("--users", type=int, default=None, help="section 1 (default 1,000)")
    parser.add_argument("--symbols-per-user", type=int, default=5)
    parser.add_argument("--strategies", type=int, default=1, help="trading strategies per user")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="section 1: more sessions until the timed part lasts this long (default 10)")
    parser.add_argument("--max-sessions", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=None, help="section 2: ticks of the session file"
                        " (default 200,000)")
    parser.add_argument("--symbols", type=int, default=20, help="section 2: instruments of the session file")
    parser.add_argument("--timeout", type=float, default=3600.0, help="section 2: stop a replay command after this")
    args = parser.parse_args()
    args.users = args.users or (50 if args.quick else 1000)
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (0.0 if args.quick else 10.0)
    args.ticks = args.ticks or (20_000 if args.quick else 200_000)
    instruments = len(load_instruments(Settings(home=Path("/nonexistent"))))
    if not 1 <= args.symbols_per_user <= instruments or not 1 <= args.symbols <= instruments:
        parser.error(f"--symbols-per-user and --symbols must be 1..{instruments}")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
