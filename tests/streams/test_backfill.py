"""Backfills at the size users run, in one go, through ``sharewise up --replay --until-drained --json``.

Dense: two whole NSE sessions of twenty symbols, over 200k ticks, one JSON tick per line; the
whole file arrives in a few batches, so closed bars come in bursts far larger than one Kafka
message may hold. Sparse: minute history replayed as ticks, where every tick closes a 1m bar and
outputs come as fast as inputs. Either way the database equals the offline reference (bars of
all five timeframes, signals) and the summary equals what the database holds.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from db.seed_demo import seed_demo
from tests.streams.support import (
    assert_books_equal, database_books,
    SYMBOLS_20, database_rows, engine_env, make_minute_history, make_session_file, reference_of, up_until_drained,
)

TIMEFRAMES = {"1m", "5m", "15m", "1h", "1d"}


@pytest.mark.parametrize("shape", ["dense", "sparse"])
def test_a_backfill_in_one_go_equals_the_reference_and_the_summary_equals_the_database(
        shape, tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    path = tmp_path / f"{shape}.jsonl"
    if shape == "dense":
        lines = make_session_file(path, SYMBOLS_20, sessions=2, ticks=210_000)
        assert lines >= 200_000
    else:
        lines = make_minute_history(path, SYMBOLS_20, sessions=6)  # 45,000 ticks, each closing a 1m bar

    summary = up_until_drained(engine_env(tmp_path / "home", broker.bootstrap, pg_dsn), path, timeout=600)

    bars, signals, notifications = asyncio.run(database_rows(pg_dsn))
    orders = asyncio.run(database_books(pg_dsn))[0]
    assert summary == {"ticks": lines, "dlq": 0, "bars": len(bars), "signals": len(signals), "orders": len(orders)}
    ref = reference_of(path, pg_dsn, flush=True, chunk=500)
    assert {b[8] for b in bars} == TIMEFRAMES
    assert Counter(b[8] for b in bars) == Counter(b[8] for b in ref.bars)
    assert set(bars) == ref.bars and len(bars) == len(ref.bars)
    assert set(signals) == ref.signals and len(signals) == len(ref.signals) > 0
    assert notifications == len(signals)
    # the demo's trading row over several sessions: squared off each day, books equal to the backtest's
    assert_books_equal(pg_dsn, ref)
