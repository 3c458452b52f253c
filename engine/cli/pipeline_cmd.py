"""``sharewise worker`` and ``sharewise feed synth|replay``: the streaming engine and its tick sources."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.cli import aio
from engine.cli.assemble import active_deployments, keep_deployments_fresh, make_worker, prepare, tune_gc
from engine.cli.console import clean_errors, err, out
from engine.cli.environment import load_settings
from engine.cli.files import load_instruments
from engine.cli.logs import setup_logging
from engine.cli.runtime import services
from engine.errors import ConfigError
from engine.feeds.synth import IST, SyntheticFeed, latest_session_day
from engine.settings import Settings

feed_app = typer.Typer(help="Produce ticks to market.ticks: a synthetic NSE feed or a file replay.", no_args_is_help=True)


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (installed on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@clean_errors
def worker(
    group: str = typer.Option("sharewise-engine", help="Consumer group; workers of one group split the partitions."),
    checkpoint_interval: float = typer.Option(2.0, min=0.1, help="Seconds between state checkpoints."),
) -> None:
    """Run one streaming worker: it joins the group and processes its share of the partitions until stopped."""
    settings = load_settings()
    setup_logging(settings, "worker", stderr_level=20)

    async def run() -> None:
        with services(settings) as rt:
            assert rt.dsn and rt.bootstrap
            await prepare(settings, rt.dsn, rt.bootstrap)
            deployments, _ = await active_deployments(rt.dsn, home=settings.home)
            w = make_worker(settings, rt.bootstrap, rt.dsn, deployments, group_id=group,
                            checkpoint_interval=checkpoint_interval)
            stop = stop_event()
            await w.start()
            tune_gc()
            fresh = asyncio.create_task(keep_deployments_fresh(w, rt.dsn, settings.reload_s, settings.home))
            err.print(f"worker {w.worker_id} in group {group} on {rt.bootstrap}: {len(deployments)} strategies active")
            try:
                await until_stopped_or_failed(stop, w)
            finally:
                fresh.cancel()
                await w.stop()
                err.print(f"worker stopped: {orjson.dumps(w.stats.as_dict()).decode()}")
            if w.failure is not None:
                raise w.failure

    aio.run(run())


async def until_stopped_or_failed(stop: asyncio.Event, worker: Any) -> None:
    """Wait until SIGINT/SIGTERM (``stop``) or until the worker fails, whichever comes first."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(worker.failed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run_synth(bootstrap: str, settings: Settings, *, symbols: int, rate: float, speed: float,
                    stop: asyncio.Event, duration: float | None = None, seed: int = 7,
                    on_progress: object = None) -> int:
    """Produce synthetic ticks at ``rate`` ticks per wall second, market time running ``speed`` x real time."""
    from streams.feed import PacketProducer, tick_partitions

    registry = load_instruments(settings)
    chosen = registry.instruments[: max(1, min(symbols, len(registry)))]
    prices = np.array([i.typical_price for i in chosen])
    today = latest_session_day(datetime.now(IST))
    feed = SyntheticFeed(prices, start_day=today, seed=seed, ticks_per_market_second=rate / speed)
    names = [i.symbol for i in chosen]
    step = 0.1
    started = time.monotonic()
    partitions = await tick_partitions(bootstrap, settings.partitions)
    async with PacketProducer(bootstrap, partitions, max_bytes=settings.max_message_bytes) as producer:
        while not stop.is_set() and (duration is None or time.monotonic() - started < duration):
            tick_started = time.monotonic()
            batch = feed.advance(step * speed)
            for k, t, p, q in zip(batch.inst.tolist(), (batch.ts_ns // 1_000_000).tolist(), batch.price.tolist(),
                                  batch.qty.tolist()):
                await producer.add_tick(names[k], t, p, q)
            await producer.flush()
            if callable(on_progress):
                on_progress(producer.sent_lines, feed.market_time)
            await asyncio.sleep(max(0.0, step - (time.monotonic() - tick_started)))
        return producer.sent_lines


async def run_replay(bootstrap: str, settings: Settings, path: Path, *, show_progress: bool = True) -> tuple[int, int]:
    """Produce every tick of ``path`` as fast as possible.

    Returns (lines sent to ``market.ticks``, lines too large for any message, dead-lettered by the feed).
    """
    from streams.feed import PacketProducer, count_lines, replay_lines, tick_partitions

    total = count_lines(path)
    partitions = await tick_partitions(bootstrap, settings.partitions)
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, disable=not show_progress, transient=True) as progress:
        task = progress.add_task("replay", total=total)
        async with PacketProducer(bootstrap, partitions, max_bytes=settings.max_message_bytes) as producer:
            for n, (line, symbol) in enumerate(replay_lines(path), 1):
                await producer.add(line, symbol)
                if n % 5000 == 0:
                    progress.update(task, completed=n)
            await producer.flush()
            progress.update(task, completed=producer.sent_lines)
        return producer.sent_lines, producer.dead_lettered


@feed_app.command("synth")
@clean_errors
def feed_synth(
    symbols: int = typer.Option(52, "--symbols", min=1, help="How many instruments (NIFTY 50, BANKNIFTY, constituents)."),
    rate: float = typer.Option(2000.0, "--rate", min=1.0, help="Ticks per wall-clock second."),
    speed: float = typer.Option(60.0, "--speed", min=0.01, help="Market seconds per wall-clock second."),
    duration: float = typer.Option(None, "--duration", help="Stop after this many wall-clock seconds."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives the same ticks."),
) -> None:
    """Produce a realistic synthetic NSE feed (GBM, intraday volatility shape, session hours in IST)."""
    settings = load_settings()

    async def run() -> None:
        with services(settings, database=False) as rt:
            assert rt.bootstrap
            stop = stop_event()
            report = lambda n, t: err.print(f"\r{n} ticks sent, market time {t:%Y-%m-%d %H:%M:%S}", end="")  # noqa: E731
            sent = await run_synth(rt.bootstrap, settings, symbols=symbols, rate=rate, speed=speed, stop=stop,
                                   duration=duration, seed=seed, on_progress=report)
            err.print(f"\nsynthetic feed stopped: {sent} ticks sent")

    aio.run(run())


@feed_app.command("replay")
@clean_errors
def feed_replay(file: Path = typer.Argument(..., help="CSV time,symbol,price,qty or JSONL (lines sent unchanged).")) -> None:
    """Replay a tick file to market.ticks as fast as possible, with progress."""
    settings = load_settings()
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")

    async def run() -> None:
        with services(settings, database=False) as rt:
            assert rt.bootstrap
            sent, too_large = await run_replay(rt.bootstrap, settings, file)
            out.print(f"replayed {sent} ticks from {file} to market.ticks"
                      + (f"; {too_large} line(s) too large for a message, dead-lettered" if too_large else ""))

    aio.run(run())


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.add_typer(feed_app, name="feed")
