"""A second ``sharewise up`` on the same ``SHAREWISE_HOME``: the embedded broker comes back empty, the database does not.

The checkpoints in PostgreSQL say "partition N at offset K" of a log that no longer exists. The
worker must notice (the cluster id differs), keep the state, resume from the new log's start,
say so once per partition, and lose nothing: everything from both files ends up in the database,
equal to the offline reference of both files in order. ``monitor`` says WARN while a checkpoint
belongs to another log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

from db.embedded import start_postgres
from engine.feeds.synth import next_session_day
from engine.settings import Settings
from tests.fixtures.postgres import private_home
from tests.streams.support import (
    DAY, SHAREWISE, SYMBOLS_20, database_rows, engine_env, make_session_file, reference_of, up_until_drained,
)


def test_a_second_up_resumes_on_the_new_empty_log_and_everything_from_both_files_is_in_the_database(tmp_path):
    five = SYMBOLS_20[:5]
    first, second, both = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "ab.jsonl"
    lines_a = make_session_file(first, five, sessions=1, ticks=30_000, seed=21, day=DAY)
    lines_b = make_session_file(second, five, sessions=1, ticks=30_000, seed=22, day=next_session_day(DAY))
    both.write_bytes(first.read_bytes() + second.read_bytes())
    with private_home("sharewise-again-") as home:
        env = engine_env(home)  # embedded broker and database, as a user runs it
        summary_a = up_until_drained(env, first)
        summary_b = up_until_drained(env, second)
        log = (home / "logs" / "up.log").read_text()
        assert "belongs to another log" in log  # said once per partition that had a checkpoint
        assert summary_a["ticks"] == lines_a and summary_b["ticks"] == lines_b  # nothing skipped the second time
        assert summary_a["dlq"] == summary_b["dlq"] == 0

        assert _run(env, "services", "start").returncode == 0
        try:  # a third broker: the checkpoints belong to the second one's log
            seen = _run(env, "monitor", "--once")
            assert "WARN" in seen.stdout and "another log" in seen.stdout, seen.stdout + seen.stderr
            doc = json.loads(_run(env, "monitor", "--once", "--json", "--window", "0").stdout)
            assert set(doc) == {"status", "topics", "groups", "dlq"} and doc["status"] == "WARN", doc
        finally:
            _run(env, "services", "stop")

        dsn = start_postgres(Settings(home=home))
        bars, signals, notifications = asyncio.run(database_rows(dsn))
        ref = reference_of(both, dsn, flush=True, chunk=200)
        assert summary_a["bars"] + summary_b["bars"] == len(bars)
        assert set(bars) == ref.bars and len(bars) == len(ref.bars)
        assert set(signals) == ref.signals and len(signals) == len(ref.signals)
        assert notifications == len(signals)



def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SHAREWISE, *args], env=env, capture_output=True, text=True, timeout=60)
