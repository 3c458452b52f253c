"""``sharewise db retention`` as an operator runs it: a real subprocess against a real database."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from tests.db.test_cli import sharewise

OLD_SIGNAL = ("INSERT INTO trading_signal (timestamp, symbol, strategy_name, signal_type, entry_price)"
              " VALUES ('2020-01-01 12:00+05:30', 'TCS', 'ema_cross', 'BUY', 100)")


def sql(dsn: str, statement: str) -> object:
    async def main() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(statement)
        finally:
            await conn.close()

    return asyncio.run(main())


def test_dry_run_then_run_then_restore_as_json(tmp_path, pg_dsn):
    sql(pg_dsn, OLD_SIGNAL)
    sql(pg_dsn, "INSERT INTO analytics_marketdata (symbol, timestamp) VALUES ('TCS', '2019-01-01 09:15+05:30')")

    dry = sharewise("db", "retention", "--as-of", "2026-11-30", "--dry-run", "--json", home=tmp_path,
                    database_url=pg_dsn)
    assert dry.returncode == 0, dry.stderr
    report = orjson.loads(dry.stdout)
    assert set(report) == {"run_id", "as_of", "dry_run", "started_at", "finished_at", "tables", "totals"}
    assert (report["as_of"], report["dry_run"]) == ("2026-11-30", True)
    assert report["tables"]["trading_signal"] == {"archived": 1, "deleted": 0, "held_back": 0,
                                                  "held_back_reasons": {}, "skipped_locked": 0, "kept": 0}
    assert report["totals"] == {"archived": 1, "deleted": 1, "held_back": 0, "skipped_locked": 0}
    assert sql(pg_dsn, "SELECT count(*) FROM trading_signal") == 1

    real = sharewise("db", "retention", "--as-of", "2026-11-30", home=tmp_path, database_url=pg_dsn)
    assert real.returncode == 0, real.stderr
    assert "as of 2026-11-30: 1 rows were archived, 1 were deleted, 0 held back" in real.stdout
    assert "trading_signal: 1 rows archived so far" in real.stderr
    assert sql(pg_dsn, "SELECT count(*) FROM archive.trading_signal") == 1
    assert sql(pg_dsn, "SELECT count(*) FROM engine.retention_run WHERE finished_at IS NOT NULL") == 2

    back = sharewise("db", "retention", "--restore-archived", "trading_signal", "--since", "2019-12-31", "--json",
                     home=tmp_path, database_url=pg_dsn)
    assert back.returncode == 0, back.stderr
    assert orjson.loads(back.stdout) == {"table": "trading_signal", "since": "2019-12-31", "restored": 1,
                                         "left_in_archive": {}}
    assert sql(pg_dsn, "SELECT count(*) FROM trading_signal") == 1


def test_bad_dates_and_unknown_tables_are_one_clear_line(tmp_path, pg_dsn):
    bad = sharewise("db", "retention", "--as-of", "30/11/2026", home=tmp_path, database_url=pg_dsn)
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: --as-of must be a date YYYY-MM-DD, got '30/11/2026'")

    unknown = sharewise("db", "retention", "--restore-archived", "trading_order", "--since", "2020-01-01",
                        home=tmp_path, database_url=pg_dsn)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip() == ("error: no archived table 'trading_order': choose one of ai_studio_mlmodel,"
                                      " ai_studio_trainingjob, notifications_notification, trading_signal")

    alone = sharewise("db", "retention", "--since", "2020-01-01", home=tmp_path, database_url=pg_dsn)
    assert alone.returncode == 2 and "--restore-archived TABLE and --since DATE go together" in alone.stderr
    assert sql(pg_dsn, "SELECT count(*) FROM engine.retention_run") == 0
