"""db.retention on a real database: one test per rule of the seed's retention policy, on rows the tests date.

"Now" is ``AS_OF`` (2026-11-30 IST): a limit of N months reaches back to midnight IST of the same day N
months earlier (engine/retention.py).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

import asyncpg
import pytest

from db.retention import ARCHIVED, POLICY, Action, apply_retention, restore_archived
from engine.domain import IST
from engine.errors import ConfigError, Inconsistency
from tests.db.test_trading import run

AS_OF = date(2026, 11, 30)


def on(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), IST)


async def signal(conn: asyncpg.Connection, day: date, *, hour: int = 12, lease: uuid.UUID | None = None) -> uuid.UUID:
    market_data = f'{{"lease_id": "{lease}"}}' if lease else "{}"
    return await conn.fetchval(
        "INSERT INTO trading_signal (timestamp, symbol, strategy_name, signal_type, entry_price, market_data)"
        " VALUES ($1, 'TCS', 'ema_cross', 'BUY', 100, $2::jsonb) RETURNING id", on(day, hour), market_data)


async def user(conn: asyncpg.Connection, email: str) -> uuid.UUID:
    return await conn.fetchval("INSERT INTO users_customuser (email) VALUES ($1) RETURNING id", email)


async def model(conn: asyncpg.Connection, updated: date, *, status: str = "DRAFT", published: bool = False) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO ai_studio_mlmodel (name, model_type, status, is_published, published_at, created_at, updated_at)"
        " VALUES ('m', 'CLASSIFICATION', $1, $2, CASE WHEN $2 THEN $3::timestamptz END, $3, $3) RETURNING id",
        status, published, on(updated))


async def job(conn: asyncpg.Connection, model_id: uuid.UUID | None, status: str, completed: date | None) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO ai_studio_trainingjob (model_id, status, completed_at) VALUES ($1, $2, $3) RETURNING id",
        model_id, status, None if completed is None else on(completed))


async def usage(conn: asyncpg.Connection, job_id: uuid.UUID, owner: uuid.UUID) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO ai_studio_computeusage (user_id, training_job_id, usage_date, compute_hours, cost)"
        " VALUES ($1, $2, '2020-01-01', 1, 10) RETURNING id", owner, job_id)


async def ids(conn: asyncpg.Connection, schema: str, table: str) -> set[uuid.UUID]:
    return {r[0] for r in await conn.fetch(f'SELECT id FROM {schema}."{table}"')}


async def data_snapshot(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every table in public and archive, as JSON text, in id order."""
    tables = await conn.fetch("SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('public', 'archive')")
    return {f"{s}.{t}": [r[0] for r in await conn.fetch(f'SELECT to_jsonb(x)::text FROM {s}."{t}" x ORDER BY 1')]
            for s, t in tables}


def test_market_data_is_deleted_past_five_years_and_kept_within(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        rows = {}
        for label, day, hour in [("old", date(2021, 11, 29), 23), ("edge", date(2021, 11, 30), 0),
                                 ("recent", date(2026, 1, 5), 9)]:
            rows[label] = await conn.fetchval(
                "INSERT INTO analytics_marketdata (symbol, timestamp, timeframe, close_price) VALUES ('TCS', $1, '1d',"
                " 100) RETURNING id", on(day, hour))
        report = await apply_retention(conn, AS_OF)
        assert report.tables["analytics_marketdata"].deleted == 1
        assert await ids(conn, "public", "analytics_marketdata") == {rows["edge"], rows["recent"]}
        assert not await conn.fetchval("SELECT to_regclass('archive.analytics_marketdata') IS NOT NULL")

    run(pg_dsn, scenario)


def test_signals_are_archived_after_two_years_unless_an_order_or_a_lease_needs_them(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        old, recent = await signal(conn, date(2024, 11, 29)), await signal(conn, date(2024, 11, 30))
        ordered = await signal(conn, date(2020, 1, 2))
        order = await conn.fetchval("INSERT INTO trading_order (signal_id, symbol, order_type, transaction_type,"
                                    " quantity) VALUES ($1, 'TCS', 'MARKET', 'BUY', 1) RETURNING id", ordered)
        lease = await conn.fetchval(
            "INSERT INTO ai_studio_modellease (model_id, price, start_date, end_date) VALUES ($1, 10, '2022-01-01',"
            " '2022-12-31') RETURNING id", await model(conn, date(2026, 1, 1), published=True))
        leased = await signal(conn, date(2022, 3, 1), lease=lease)
        before = await conn.fetchrow("SELECT * FROM archive.trading_signal WHERE false")  # same columns, no rows
        assert before is None

        report = (await apply_retention(conn, AS_OF)).tables["trading_signal"]
        assert (report.archived, report.held_back) == (1, 2)
        assert report.held_back_reasons == {"referenced by public.trading_order": 1,
                                            "counted by a lease (ai_studio_modellease, market_data.lease_id)": 1}
        assert await ids(conn, "public", "trading_signal") == {recent, ordered, leased}
        assert await ids(conn, "archive", "trading_signal") == {old}
        assert await conn.fetchval("SELECT signal_id FROM trading_order WHERE id = $1", order) == ordered
        archived = await conn.fetchrow("SELECT symbol, timestamp FROM archive.trading_signal WHERE id = $1", old)
        assert (archived["symbol"], archived["timestamp"]) == ("TCS", on(date(2024, 11, 29)))

    run(pg_dsn, scenario)


def test_notifications_are_archived_after_six_months(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        made = {}
        for day in (date(2026, 5, 29), date(2026, 5, 30), date(2026, 11, 1)):
            made[day] = await conn.fetchval("INSERT INTO notifications_notification (title, message, created_at)"
                                            " VALUES ('t', 'm', $1) RETURNING id", on(day))
        report = await apply_retention(conn, AS_OF)
        assert report.tables["notifications_notification"].archived == 1
        assert await ids(conn, "archive", "notifications_notification") == {made[date(2026, 5, 29)]}
        assert await ids(conn, "public", "notifications_notification") == {made[date(2026, 5, 30)],
                                                                          made[date(2026, 11, 1)]}

    run(pg_dsn, scenario)


def test_orders_compute_usage_reviews_and_published_models_are_never_touched(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        owner, reviewer = await user(conn, "owner@example.com"), await user(conn, "reviewer@example.com")
        await conn.execute("INSERT INTO trading_order (symbol, order_type, transaction_type, quantity, order_timestamp,"
                           " created_at, updated_at) VALUES ('TCS', 'MARKET', 'BUY', 1, $1, $1, $1)",
                           on(date(2010, 1, 4)))
        published = await model(conn, date(2012, 1, 1), status="PUBLISHED", published=True)
        completed = await model(conn, date(2012, 1, 1), status="COMPLETED")  # not a draft: kept
        await conn.execute("INSERT INTO ai_studio_modelreview (model_id, reviewer_id, rating, created_at, updated_at)"
                           " VALUES ($1, $2, 5, $3, $3)", published, reviewer, on(date(2012, 2, 1)))
        await usage(conn, await job(conn, published, "RUNNING", None), owner)
        kept = ["trading_order", "ai_studio_mlmodel", "ai_studio_modelreview", "ai_studio_computeusage",
                "ai_studio_trainingjob"]
        before = {t: v for t, v in (await data_snapshot(conn)).items() if t.removeprefix("public.") in kept}

        report = await apply_retention(conn, date(2040, 1, 1))
        after = await data_snapshot(conn)
        assert all(after[t] == rows for t, rows in before.items())
        assert await ids(conn, "public", "ai_studio_mlmodel") == {published, completed}
        assert report.tables["trading_order"].kept == 1 and report.tables["ai_studio_computeusage"].kept == 1
        assert not any(t.archived or t.deleted for t in report.tables.values())

    run(pg_dsn, scenario)


def test_draft_models_are_archived_a_year_after_their_last_update_unless_something_points_to_them(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        buyer = await user(conn, "buyer@example.com")
        stale, fresh = await model(conn, date(2025, 11, 29)), await model(conn, date(2025, 11, 30))
        reviewed, leased, listed = [await model(conn, date(2020, 1, 1)) for _ in range(3)]
        await conn.execute("INSERT INTO ai_studio_modelreview (model_id, reviewer_id, rating) VALUES ($1, $2, 4)",
                           reviewed, buyer)
        await conn.execute("INSERT INTO ai_studio_modellease (model_id, lessee_id, price, start_date, end_date)"
                           " VALUES ($1, $2, 10, '2020-01-01', '2020-02-01')", leased, buyer)
        await conn.execute("INSERT INTO ai_studio_marketplacelisting (model_id, title, description) VALUES ($1, 't',"
                           " 'd')", listed)

        report = (await apply_retention(conn, AS_OF)).tables["ai_studio_mlmodel"]
        assert (report.archived, report.held_back) == (1, 3)
        assert report.held_back_reasons == {"referenced by public.ai_studio_modelreview": 1,
                                            "referenced by public.ai_studio_modellease": 1,
                                            "referenced by public.ai_studio_marketplacelisting": 1}
        assert await ids(conn, "archive", "ai_studio_mlmodel") == {stale}
        assert await ids(conn, "public", "ai_studio_mlmodel") == {fresh, reviewed, leased, listed}
        counted = await conn.fetchval("SELECT count(*) FROM ai_studio_modelreview") + await conn.fetchval(
            "SELECT count(*) FROM ai_studio_modellease") + await conn.fetchval(
            "SELECT count(*) FROM ai_studio_marketplacelisting")
        assert counted == 3

    run(pg_dsn, scenario)


def test_completed_jobs_go_after_two_years_failed_ones_after_six_months_billed_ones_stay(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        owner = await user(conn, "owner@example.com")
        keeper = await model(conn, date(2026, 6, 1), status="COMPLETED")
        done_old = await job(conn, keeper, "COMPLETED", date(2024, 11, 29))
        done_new = await job(conn, keeper, "COMPLETED", date(2024, 11, 30))
        failed_old = await job(conn, keeper, "FAILED", date(2026, 5, 29))
        failed_new = await job(conn, keeper, "FAILED", date(2026, 5, 30))
        cancelled = await job(conn, keeper, "CANCELLED", date(2015, 1, 1))  # not in the seed's policy: kept
        billed = await job(conn, keeper, "COMPLETED", date(2019, 1, 1))
        bill = await usage(conn, billed, owner)

        report = (await apply_retention(conn, AS_OF)).tables["ai_studio_trainingjob"]
        assert (report.archived, report.held_back) == (2, 1)
        assert report.held_back_reasons == {"referenced by public.ai_studio_computeusage": 1}
        assert await ids(conn, "archive", "ai_studio_trainingjob") == {done_old, failed_old}
        assert await ids(conn, "public", "ai_studio_trainingjob") == {done_new, failed_new, cancelled, billed}
        assert await ids(conn, "public", "ai_studio_computeusage") == {bill}

    run(pg_dsn, scenario)


def test_a_draft_and_its_old_jobs_move_together_a_live_job_holds_the_draft_back(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        owner = await user(conn, "owner@example.com")
        gone = await model(conn, date(2023, 1, 1))
        gone_job = await job(conn, gone, "FAILED", date(2023, 1, 1))
        waiting = await model(conn, date(2023, 1, 1))
        await job(conn, waiting, "COMPLETED", date(2025, 6, 1))  # not yet two years old
        billed = await model(conn, date(2023, 1, 1))
        await usage(conn, await job(conn, billed, "FAILED", date(2023, 1, 1)), owner)

        report = await apply_retention(conn, AS_OF)
        assert await ids(conn, "archive", "ai_studio_mlmodel") == {gone}
        assert await ids(conn, "archive", "ai_studio_trainingjob") == {gone_job}
        assert report.tables["ai_studio_mlmodel"].held_back_reasons == {
            "referenced by public.ai_studio_trainingjob": 2}
        assert await conn.fetchval("SELECT count(*) FROM ai_studio_computeusage") == 1

    run(pg_dsn, scenario)


def test_a_row_an_engine_table_points_to_is_held_back_too(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        kept = await signal(conn, date(2020, 1, 1))
        await conn.execute("CREATE TABLE engine.signal_note (signal_id UUID REFERENCES public.trading_signal(id)"
                           " ON DELETE CASCADE)")
        await conn.execute("INSERT INTO engine.signal_note VALUES ($1)", kept)
        report = (await apply_retention(conn, AS_OF)).tables["trading_signal"]
        assert report.held_back_reasons == {"referenced by engine.signal_note": 1}
        assert await ids(conn, "public", "trading_signal") == {kept}

    run(pg_dsn, scenario)


def test_a_second_run_moves_nothing_and_every_run_is_recorded(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        for day in (date(2020, 1, 1), date(2021, 6, 1), date(2026, 11, 1)):
            await signal(conn, day)
        await conn.execute("INSERT INTO analytics_marketdata (symbol, timestamp) VALUES ('TCS', $1)",
                           on(date(2019, 1, 1)))
        first = await apply_retention(conn, AS_OF)
        assert first.as_dict()["totals"] == {"archived": 2, "deleted": 1, "held_back": 0, "skipped_locked": 0}
        snapshot = await data_snapshot(conn)
        second = await apply_retention(conn, AS_OF)
        assert second.as_dict()["totals"] == {"archived": 0, "deleted": 0, "held_back": 0, "skipped_locked": 0}
        assert await data_snapshot(conn) == snapshot
        runs = await conn.fetch("SELECT * FROM engine.retention_run ORDER BY id")
        assert [(r["id"], r["as_of"], r["dry_run"]) for r in runs] == [(first.run_id, AS_OF, False),
                                                                        (second.run_id, AS_OF, False)]
        assert all(r["finished_at"] >= r["started_at"] for r in runs)
        assert '"archived": 2' in runs[0]["counts"] and '"archived": 0' in runs[1]["counts"]

    run(pg_dsn, scenario)


def test_a_dry_run_changes_no_data_and_counts_what_a_run_would_do(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        owner = await user(conn, "owner@example.com")
        draft = await model(conn, date(2022, 1, 1))
        await job(conn, draft, "FAILED", date(2022, 1, 1))  # archived first, so the draft goes too
        await usage(conn, await job(conn, None, "FAILED", date(2022, 1, 1)), owner)
        await signal(conn, date(2020, 1, 1))
        await conn.execute("INSERT INTO notifications_notification (title, message, created_at) VALUES ('t', 'm', $1)",
                           on(date(2026, 1, 1)))
        before = await data_snapshot(conn)
        dry = await apply_retention(conn, AS_OF, dry_run=True)
        assert await data_snapshot(conn) == before
        real = await apply_retention(conn, AS_OF)
        assert {t: r.as_dict() for t, r in dry.tables.items()} == {t: r.as_dict() for t, r in real.tables.items()}
        assert dry.as_dict()["totals"]["archived"] == 4 and dry.as_dict()["totals"]["held_back"] == 1
        assert await conn.fetchval("SELECT dry_run FROM engine.retention_run WHERE id = $1", dry.run_id) is True

    run(pg_dsn, scenario)


def test_batches_move_everything_and_report_progress(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        made = {await signal(conn, date(2020, 1, 1), hour=h) for h in range(7)}
        seen: list[tuple[str, Action, int]] = []
        report = await apply_retention(conn, AS_OF, batch_size=3, progress=lambda *a: seen.append(a))
        assert report.tables["trading_signal"].archived == 7
        assert seen == [("trading_signal", Action.ARCHIVE, 3), ("trading_signal", Action.ARCHIVE, 6),
                        ("trading_signal", Action.ARCHIVE, 7)]
        assert await ids(conn, "archive", "trading_signal") == made

    run(pg_dsn, scenario)


def test_a_row_another_transaction_holds_is_skipped_then_archived_by_the_next_run(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        busy, idle = await signal(conn, date(2020, 1, 1)), await signal(conn, date(2020, 1, 2))
        sink = await asyncpg.connect(pg_dsn)
        try:
            tx = sink.transaction()
            await tx.start()
            await sink.execute("UPDATE trading_signal SET executed = TRUE WHERE id = $1", busy)  # a sink mid-write
            report = (await apply_retention(conn, AS_OF)).tables["trading_signal"]
            assert (report.archived, report.skipped_locked) == (1, 1)
            assert await ids(conn, "archive", "trading_signal") == {idle}
            await tx.commit()
        finally:
            await sink.close()
        again = (await apply_retention(conn, AS_OF)).tables["trading_signal"]
        assert (again.archived, again.skipped_locked) == (1, 0)
        assert await conn.fetchval("SELECT executed FROM archive.trading_signal WHERE id = $1", busy) is True

    run(pg_dsn, scenario)


def test_restore_brings_archived_rows_back_since_a_date(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        older, newer = await signal(conn, date(2019, 1, 1)), await signal(conn, date(2021, 5, 1))
        draft = await model(conn, date(2020, 1, 1))
        draft_job = await job(conn, draft, "FAILED", date(2020, 1, 1))
        await apply_retention(conn, AS_OF)
        before = await conn.fetchrow("SELECT to_jsonb(s)::text FROM archive.trading_signal s WHERE id = $1", newer)

        back = await restore_archived(conn, "trading_signal", date(2021, 5, 1))
        assert (back.restored, back.left_in_archive) == (1, {})
        assert await ids(conn, "public", "trading_signal") == {newer}
        assert await ids(conn, "archive", "trading_signal") == {older}
        assert await conn.fetchval("SELECT to_jsonb(s)::text FROM trading_signal s") == before[0]

        orphan = await restore_archived(conn, "ai_studio_trainingjob", date(2000, 1, 1))
        assert (orphan.restored, orphan.left_in_archive) == (0, {"parent public.ai_studio_mlmodel not in public": 1})
        assert (await restore_archived(conn, "ai_studio_mlmodel", date(2000, 1, 1))).restored == 1
        assert (await restore_archived(conn, "ai_studio_trainingjob", date(2000, 1, 1))).restored == 1
        assert await ids(conn, "public", "ai_studio_trainingjob") == {draft_job}

    run(pg_dsn, scenario)


def test_restore_refuses_an_unknown_table_naming_the_valid_ones(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        with pytest.raises(ConfigError, match="no archived table 'trading_order': choose one of ai_studio_mlmodel,"):
            await restore_archived(conn, "trading_order", date(2020, 1, 1))

    run(pg_dsn, scenario)


def test_the_policy_names_each_seed_rule_once_and_archives_only_tables_with_an_archive():
    assert set(ARCHIVED) == {"trading_signal", "notifications_notification", "ai_studio_mlmodel",
                             "ai_studio_trainingjob"}
    assert all((r.months is None) == (r.action is Action.KEEP) for r in POLICY)
    assert len({r.seed for r in POLICY}) == len(POLICY)
    children_first = [r.table for r in POLICY if r.action is Action.ARCHIVE]
    assert children_first.index("ai_studio_trainingjob") < children_first.index("ai_studio_mlmodel")


def test_a_restore_leaves_a_row_whose_id_is_back_in_public(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        replayed = await signal(conn, date(2020, 1, 1))
        await apply_retention(conn, AS_OF)
        await conn.execute("INSERT INTO trading_signal SELECT * FROM archive.trading_signal")  # a replay wrote it again
        back = await restore_archived(conn, "trading_signal", date(2000, 1, 1))
        assert (back.restored, back.left_in_archive) == (0, {"id already in public": 1})
        assert await ids(conn, "archive", "trading_signal") == {replayed}
        again = (await apply_retention(conn, AS_OF)).tables["trading_signal"]  # the newer copy replaces the archived one
        assert again.archived == 1 and await ids(conn, "public", "trading_signal") == set()

    run(pg_dsn, scenario)


def test_an_archive_table_that_lost_step_with_its_public_table_stops_the_run(pg_dsn):
    async def scenario(conn: asyncpg.Connection) -> None:
        await conn.execute("ALTER TABLE public.trading_signal ADD COLUMN venue TEXT")
        with pytest.raises(Inconsistency, match="archive.trading_signal and public.trading_signal have different"):
            await apply_retention(conn, AS_OF)
        assert await conn.fetchval("SELECT count(*) FROM engine.retention_run") == 0

    run(pg_dsn, scenario)
