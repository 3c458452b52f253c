"""Session replay: one NSE session replayed by the real ``sharewise up`` command, its database checked.

Used by ``benchmarks/pipeline.py`` (section 4). The steps, each a function here:

1. :func:`write_session`: one tick per second per instrument from 09:15:00 IST, as JSONL in time order.
2. :func:`run_up`: ``python -m engine.cli up --replay FILE --until-drained --json`` as a subprocess with a
   fresh ``SHAREWISE_HOME`` (embedded broker and PostgreSQL, demo tenant) and no inherited ``SHAREWISE_*``.
3. :func:`check_database`: ``analytics_marketdata`` and ``trading_signal`` of that home against the pure
   core run offline over the same file (``tests.streams.support.offline_reference``, 2,000 lines a call).

Nothing here raises on a failed command or a wrong database: the problems come back in the report.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import orjson

from db.embedded import start_postgres, stop_postgres
from db.seed_demo import NIFTY_SYMBOLS
from engine.cli import aio
from engine.cli.assemble import active_deployments
from engine.cli.files import load_instruments
from engine.errors import EngineError
from engine.feeds.synth import ANNUAL_VOL, TRADING_SECONDS_PER_YEAR, intraday_vol_factor, session_start
from engine.instruments import Instrument, InstrumentRegistry
from engine.settings import Settings
from engine.strategy.runner import Deployment
from tests.streams.support import database_rows, offline_reference

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {"ticks", "dlq", "bars", "signals", "orders"}


def session_instruments(registry: InstrumentRegistry, n: int) -> list[Instrument]:
    """``n`` instruments of ``registry``: those the demo tenant's strategies trade first, so that a small
    session still yields signals, then the others in registry order."""
    traded = [i for i in registry.instruments if i.symbol in NIFTY_SYMBOLS]
    return (traded + [i for i in registry.instruments if i.symbol not in NIFTY_SYMBOLS])[:n]


def write_session(path: Path, instruments: list[Instrument], seconds: int, day: dt.date, seed: int = 17) -> int:
    """Write ``seconds`` x ``len(instruments)`` ticks to ``path``; return the count.

    One tick per instrument per second, every instrument of second ``s`` before any of ``s + 1``. Prices
    follow a seeded GBM with the synthetic feed's volatility and intraday U shape, on the 0.05 tick grid,
    so the same arguments write the same file. (:class:`SyntheticFeed` draws a random instrument per tick,
    hence no fixed tick per instrument per second.)
    """
    names = [i.symbol for i in instruments]
    start = np.array([i.typical_price for i in instruments])
    rng = np.random.default_rng(seed)
    sigma = ANNUAL_VOL * intraday_vol_factor(np.arange(seconds, dtype=np.float64)) / math.sqrt(TRADING_SECONDS_PER_YEAR)
    steps = rng.standard_normal((seconds, len(names))) * sigma[:, None] - 0.5 * sigma[:, None] ** 2
    prices = np.round(np.round(start * np.exp(np.cumsum(steps, axis=0)) / 0.05) * 0.05, 2)
    qty = rng.geometric(0.02, (seconds, len(names)))
    first_ms = int(session_start(day).timestamp() * 1000)
    with path.open("wb") as f:
        for s in range(seconds):
            t = first_ms + 1000 * s
            f.write(b"".join(orjson.dumps({"symbol": sym, "time": t, "price": p, "qty": q}) + b"\n"
                             for sym, p, q in zip(names, prices[s].tolist(), qty[s].tolist())))
    return seconds * len(names)


@dataclass(frozen=True, slots=True)
class CommandRun:
    """What ``sharewise up --replay`` did: wall time of the whole command, exit code, its JSON summary."""

    wall_s: float
    exit_code: int
    timed_out: bool
    summary: dict[str, int] | None  # None when stdout's last line is not the documented summary object
    log: Path


def up_command(path: Path) -> list[str]:
    """The command line a user types to replay ``path`` and get the JSON summary."""
    return [sys.executable, "-m", "engine.cli", "up", "--replay", str(path), "--until-drained", "--json"]


def run_up(path: Path, home: Path, log: Path, timeout_s: float) -> CommandRun:
    """Run the replay as a user would, in ``home``, stderr to ``log``; never raises on the command's failure.

    Past ``timeout_s`` the command gets SIGTERM (its clean shutdown path), then SIGKILL a minute later.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env |= {"SHAREWISE_HOME": str(home), "SHAREWISE_WS_PORT": "0"}
    with log.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(up_command(path), stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=ROOT)
        stdout, timed_out = _finish(proc, timeout_s)
        wall = time.perf_counter() - started
    return CommandRun(wall, proc.returncode, timed_out, _summary(stdout), log)


def _finish(proc: subprocess.Popen, timeout_s: float) -> tuple[bytes, bool]:
    """``proc``'s stdout once it has exited, and whether it had to be stopped for running past ``timeout_s``."""
    try:
        return proc.communicate(timeout=timeout_s)[0], False
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        return proc.communicate(timeout=60)[0], True
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0], True


def _summary(stdout: bytes) -> dict[str, int] | None:
    """The JSON object on the last line of ``stdout`` if it has exactly the summary's keys, else None."""
    lines = stdout.strip().splitlines()
    try:
        doc = orjson.loads(lines[-1]) if lines else None
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and set(doc) == SUMMARY_KEYS else None


@dataclass(frozen=True, slots=True)
class RowDiff:
    """Rows written against rows expected, compared as normalised tuples like the end-to-end tests do."""

    written: int
    expected: int
    missing: int
    extra: int
    changed: int  # ids among both the missing and the extra rows: written, but with other values
    duplicates: int  # rows written more than once

    @classmethod
    def of(cls, written: list[tuple], expected: set[tuple]) -> RowDiff:
        got = set(written)
        missing, extra = expected - got, got - expected
        changed = {r[0] for r in missing} & {r[0] for r in extra}
        return cls(len(written), len(expected), len(missing), len(extra), len(changed), len(written) - len(got))

    @property
    def equal(self) -> bool:
        """True when the table holds exactly the expected rows, each once."""
        return not (self.missing or self.extra or self.duplicates)

    def describe(self, name: str) -> str:
        """The differences in words, e.g. ``4,775 bars missing``; empty when :attr:`equal`."""
        parts = [f"{self.missing:,} {name} missing"] if self.missing else []
        parts += [f"{self.extra:,} {name} extra"] if self.extra else []
        parts += [f"{self.changed:,} of them with other values"] if self.changed else []
        parts += [f"{self.duplicates:,} {name} written twice"] if self.duplicates else []
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    """The database of a run against the offline reference; ``error`` set when it could not be read."""

    bars: RowDiff | None = None
    signals: RowDiff | None = None
    ticks: int = 0  # ticks the reference accepts
    dlq: int = 0  # lines the reference rejects
    strategies: int = 0  # deployments found in the database, run by the reference
    error: str | None = None


def check_database(path: Path, home: Path, registry: InstrumentRegistry) -> DatabaseCheck:
    """Read the tables of ``home``'s PostgreSQL (started and stopped here), then compare with the reference.

    The reference runs the deployments found in that database, with the default lateness of the settings.
    """
    settings = Settings(home=home)
    try:
        dsn = start_postgres(settings)
        try:
            bars, signals, deployments = aio.run(_tables(dsn))
        finally:
            stop_postgres(settings)
    except (EngineError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return DatabaseCheck(error=f"{type(exc).__name__}: {exc}")
    ref = offline_reference(path, registry, deployments, lateness_s=settings.allowed_lateness_s, flush=True,
                            chunk=2000)
    return DatabaseCheck(RowDiff.of(bars, ref.bars), RowDiff.of(signals, ref.signals), ref.ticks, len(ref.dlq),
                         len(deployments))


async def _tables(dsn: str) -> tuple[list[tuple], list[tuple], list[Deployment]]:
    bars, signals, _ = await database_rows(dsn)
    deployments, _ = await active_deployments(dsn)
    return bars, signals, deployments


@dataclass(frozen=True, slots=True)
class SessionReport:
    """Figures and verdict of one session replay; ``problems`` is empty when everything matched."""

    ticks: int
    run: CommandRun
    check: DatabaseCheck
    problems: list[str]

    @property
    def ticks_per_s(self) -> float:
        return self.ticks / self.run.wall_s


def problems(run: CommandRun, check: DatabaseCheck) -> list[str]:
    """Everything that is not as the contract of ``up --replay --until-drained --json`` says, in words."""
    found = [f"COMMAND TIMED OUT after {run.wall_s:,.0f}s"] if run.timed_out else []
    found += [f"COMMAND FAILED: exit code {run.exit_code}"] if run.exit_code else []
    found += [] if run.summary else ["NO JSON SUMMARY on stdout"]
    if check.error:
        return found + [f"DATABASE NOT CHECKED: {check.error}"]
    assert check.bars and check.signals
    found += [f"DATABASE DIFFERS: {d.describe(n)}" for n, d in (("bars", check.bars), ("signals", check.signals))
              if not d.equal]
    found += [f"SUMMARY DIFFERS: {k} {printed:,} printed, {actual:,} {where}"
              for k, printed, actual, where in summary_pairs(run, check) if printed != actual]
    return found


def summary_pairs(run: CommandRun, check: DatabaseCheck) -> list[tuple[str, int, int, str]]:
    """(key, printed, actual, where actual comes from) for each summary count; empty without summary or DB."""
    if not (run.summary and check.bars and check.signals):
        return []
    actual = {"ticks": (check.ticks, "in the reference"), "dlq": (check.dlq, "in the reference"),
              "bars": (check.bars.written, "in the database"), "signals": (check.signals.written, "in the database")}
    return [(k, run.summary[k], n, where) for k, (n, where) in actual.items()]


def session_replay(symbols: int, seconds: int, day: dt.date, timeout_s: float) -> SessionReport:
    """Write the session file, replay it with the CLI, check the database; print each figure as it comes."""
    work = Path(tempfile.mkdtemp(prefix="sharewise-session-"))
    registry = load_instruments(Settings(home=work / "home"))
    path, home, log = work / "ticks.jsonl", work / "home", work / "up.stderr.log"
    ticks = write_session(path, session_instruments(registry, symbols), seconds, day)
    print(f"session file  : {ticks:,} ticks ({symbols} instruments x {seconds:,} s from 09:15 IST) in {path}")
    print(f"session run   : SHAREWISE_HOME={home} SHAREWISE_WS_PORT=0 {shlex.join(up_command(path))}")
    print(f"session stderr: {log}")
    run = run_up(path, home, log, timeout_s)
    print(f"session replay: {ticks / run.wall_s:>10,.0f} ticks/s  ({ticks:,} ticks in {run.wall_s:.2f}s wall, whole"
          f" command incl. start-up; exit code {run.exit_code}; summary {run.summary})")
    check = check_database(path, home, registry)
    _print_check(run, check)
    found = problems(run, check)
    print("session replay: " + ("; ".join(found) if found else "OK: the database equals the offline reference"
                                " and the summary equals the database"))
    return SessionReport(ticks, run, check, found)


def _print_check(run: CommandRun, check: DatabaseCheck) -> None:
    """One line per table (DB against reference) and one for the summary's counts against the actual ones."""
    if not check.error:
        print(f"  reference: the pure core over the file, {check.strategies} active strategies of the database")
    for name, diff in (("bars", check.bars), ("signals", check.signals)):
        if diff:
            print(f"  {name:<8}: {diff.written:>9,} in DB, {diff.expected:>9,} in reference; {diff.missing:,} missing,"
                  f" {diff.extra:,} extra, {diff.changed:,} with other values, {diff.duplicates:,} written twice")
    pairs = summary_pairs(run, check)
    if pairs:
        print("  summary : " + ", ".join(f"{k} {printed:,} {'=' if printed == actual else '!='} {actual:,} {where}"
                                         for k, printed, actual, where in pairs))
