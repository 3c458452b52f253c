"""The data lifecycle at size: a retention run and a backup chain against their plain peers, in one run.

Run: ``python benchmarks/lifecycle.py [--signals 400000] [--quick]``.

A private ``SHAREWISE_HOME`` with the embedded PostgreSQL (WAL archiving on, as ``sharewise up`` runs it)
gets ``--signals`` trading signals: 80 % older than the 2-year limit, 1 % of those pointed to by an order
(held back), the rest recent; plus a year of 1m-style market data rows past 5 years. Then:

* **retention**: :func:`db.retention.apply_retention` (5,000-row batches, ``FOR UPDATE SKIP LOCKED``,
  held-back checks through the catalog's foreign keys) on one copy of the database, and the peer, a single
  unbatched ``DELETE … RETURNING`` into ``INSERT`` (what a hand-written archive job does, holding every
  row lock until it commits), on another copy; rows moved per second, and both copies must end equal;
* **backups**: ``sharewise db backup --full`` (verified ``pg_basebackup``), 5 % more rows, ``--incremental``,
  then ``restore --latest`` (``pg_combinebackup`` + WAL replay in a temporary server); the peer is
  ``pg_dump -Fc`` of the same database. Seconds and bytes.

Wall times on a machine with other load are rough; the rows-per-second figures are what to compare.
``--quick`` runs small sizes (a smoke check).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from db.backups import take_backup, take_logical
from db.connect import connect, dsn_for_database
from db.embedded import start_postgres, stop_postgres
from db.migrate import migrate
from db.restore import restore
from db.retention import apply_retention
from engine.settings import Settings

AS_OF = date(2026, 11, 30)


async def _fill(dsn: str, signals: int) -> None:
    conn = await connect(dsn)
    try:
        user = await conn.fetchval("INSERT INTO users_customuser (email) VALUES ('bench@local')"
                                   " ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id")
        await conn.execute(
            "INSERT INTO trading_signal (user_id, timestamp, symbol, strategy_name, signal_type, confidence_score,"
            " entry_price, market_data) SELECT $1, CASE WHEN g % 5 = 0 THEN timestamptz '2026-06-01 10:00+05:30'"
            " ELSE timestamptz '2023-01-02 09:15+05:30' + (g % 100000) * interval '1 minute' END,"
            " 'SYM' || (g % 50), 'ema_cross', CASE WHEN g % 2 = 0 THEN 'BUY' ELSE 'SELL' END, 0.75,"
            " 1000 + g % 900, '{\"indicators\": {\"ema_9\": 1001.5, \"ema_21\": 999.25}}'"
            " FROM generate_series(1, $2) g", user, signals)
        await conn.execute(
            "INSERT INTO trading_order (user_id, signal_id, symbol, order_type, transaction_type, quantity, status)"
            " SELECT $1, id, symbol, 'MARKET', 'BUY', 10, 'COMPLETE' FROM trading_signal"
            " WHERE timestamp < '2024-01-01' AND hashtext(id::text) % 100 = 0", user)
        await conn.execute(
            "INSERT INTO analytics_marketdata (symbol, timestamp, close_price, timeframe) SELECT 'SYM' || (g % 50),"
            " timestamptz '2020-01-01 09:15+05:30' + (g / 50) * interval '1 minute', 100, '1m'"
            " FROM generate_series(0, $1) g", signals // 4)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _copy(server: str, source: str, name: str) -> str:
    conn = await connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    finally:
        await conn.close()
    return dsn_for_database(server, name)


async def _retention(dsn: str) -> tuple[float, int]:
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        report = await apply_retention(conn, AS_OF)
        took = time.perf_counter() - started
    finally:
        await conn.close()
    return took, sum(t.archived + t.deleted for t in report.tables.values())


async def _peer(dsn: str) -> tuple[float, int]:
    """One statement per table, no batches, the references checked inline: the hand-written archive job."""
    conn = await connect(dsn)
    try:
        started = time.perf_counter()
        async with conn.transaction():
            moved = await conn.execute(
                "WITH moved AS (DELETE FROM public.trading_signal t WHERE t.timestamp < '2024-11-30 00:00+05:30'"
                " AND NOT EXISTS (SELECT 1 FROM public.trading_order o WHERE o.signal_id = t.id) RETURNING t.*)"
                " INSERT INTO archive.trading_signal SELECT * FROM moved")
            deleted = await conn.execute(
                "DELETE FROM public.analytics_marketdata WHERE timestamp < '2021-11-30 00:00+05:30'")
        took = time.perf_counter() - started
    finally:
        await conn.close()
    return took, int(moved.split()[-1]) + int(deleted.split()[-1])


async def _counts(dsn: str) -> tuple[int, ...]:
    conn = await connect(dsn)
    try:
        return tuple([await conn.fetchval(f"SELECT count(*) FROM {t}") for t in (
            "public.trading_signal", "archive.trading_signal", "public.analytics_marketdata")])
    finally:
        await conn.close()


def _timed(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signals", type=int, default=400_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    signals = 20_000 if args.quick else args.signals
    home = Path(tempfile.mkdtemp(prefix="sharewise-bench-lifecycle-"))
    settings = Settings(home=home)
    try:
        server = start_postgres(settings)
        source = dsn_for_database(server, "bench")
        asyncio.run(_copy(server, "template1", "bench"))
        asyncio.run(migrate(source))
        asyncio.run(_fill(source, signals))
        ours_dsn = asyncio.run(_copy(server, "bench", "bench_ours"))
        peer_dsn = asyncio.run(_copy(server, "bench", "bench_peer"))
        ours_s, ours_rows = asyncio.run(_retention(ours_dsn))
        peer_s, peer_rows = asyncio.run(_peer(peer_dsn))
        same = asyncio.run(_counts(ours_dsn)) == asyncio.run(_counts(peer_dsn))
        print(f"retention of {signals:,} signals (80 % past 2 years, 1 % of those held by orders) and"
              f" {signals // 4:,} market-data rows past 5 years; wall time")
        print(f"  sharewise db retention (5,000-row batches, SKIP LOCKED)  {ours_s:8.2f} s  {ours_rows:>9,} rows"
              f"  {ours_rows / ours_s:>10,.0f} rows/s")
        print(f"  peer: one unbatched DELETE ... RETURNING per table        {peer_s:8.2f} s  {peer_rows:>9,} rows"
              f"  {peer_rows / peer_s:>10,.0f} rows/s")
        print(f"  same rows moved and kept: {same}")

        full_s, (full, _) = _timed(take_backup, settings, "full", keep=None)
        asyncio.run(_fill(ours_dsn, signals // 20))
        incr_s, (incr, _) = _timed(take_backup, settings, "incremental", keep=None)
        restore_s, restored = _timed(restore, settings, into=home / "restored", target=None)
        dump_s, dump = _timed(take_logical, source, out=home / "bench.dump", settings=settings)
        print("\nbackups of the whole server (4 databases); wall time")
        print(f"  db backup --full (pg_basebackup, verified)      {full_s:7.2f} s  {full.bytes / 2**20:8.1f} MiB")
        print(f"  db backup --incremental (after 5 % more rows)   {incr_s:7.2f} s  {incr.bytes / 2**20:8.1f} MiB")
        reached = restored.reached or "the end of the archive"
        print(f"  db restore --latest (combine + WAL replay)      {restore_s:7.2f} s  replayed to {reached}")
        print(f"  peer: pg_dump -Fc of one database               {dump_s:7.2f} s"
              f"  {dump.stat().st_size / 2**20:8.1f} MiB")
    finally:
        stop_postgres(settings)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
