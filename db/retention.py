"""The seed's data retention policy (README.md, "Data retention") and its runner.

:data:`POLICY` is the policy, one :class:`Rule` per row the seed's "Data Retention Policy" names:

* ``delete``: rows past their limit are deleted (market data: "keep 5 years");
* ``archive``: rows past their limit move from ``public.<table>`` to ``archive.<table>`` (same columns,
  migration ``0150_retention.sql``), where they stay queryable; :func:`restore_archived` moves them back;
* ``keep``: rows are never touched (listed so the report counts them).

Guarantees of :func:`apply_retention`:

* **Held back.** A row that any row in ``public`` or ``engine`` points to through a foreign key (read from
  ``pg_constraint`` at run time) stays in ``public``, whatever the key's ON DELETE does, and is counted with
  the referencing table as reason. Rules run children first (training jobs before models), so a row
  referenced only by rows archived earlier in the run moves too. A signal a lease still counts
  (``market_data.lease_id``, db/model_usage.py) is held back as well.
* **Batches.** At most ``batch_size`` rows per transaction (REPEATABLE READ), locked with
  ``FOR UPDATE SKIP LOCKED``: a row another transaction holds (a sink writing it, an order being inserted
  against it) is skipped and counted as ``skipped_locked``; the next run takes it. A referencing row
  committed while a batch runs makes the batch fail to serialise; it is retried.
* **Re-runnable.** A second run with the same ``as_of`` moves nothing.
* **Dry run.** The same statements in one transaction that is rolled back: the counts are what a run would
  do now; no data row changes. The run is recorded in ``engine.retention_run`` either way.

All SQL is parameterised; table and column names come from :data:`POLICY` or the catalog and are quoted.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, AsyncIterator, Callable

import asyncpg
import orjson

from engine.errors import ConfigError, Inconsistency, TransientError
from engine.retention import cutoff, start_of_day

#: rows per transaction
BATCH_SIZE = 5_000
#: attempts of a batch that fails to serialise against a concurrent writer
SERIALIZATION_ATTEMPTS = 5


class Action(StrEnum):
    ARCHIVE = "archive"
    DELETE = "delete"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class Rule:
    """Rows of ``table`` matching ``rows`` (fixed SQL over alias ``t``) whose ``column`` is older than ``months``."""

    table: str
    action: Action
    seed: str
    months: int | None = None
    column: str | None = None
    rows: str = "TRUE"
    #: (reason, SQL over alias ``t``) of references no foreign key declares
    held_by: tuple[tuple[str, str], ...] = ()


_DRAFT = "t.status = 'DRAFT' AND t.is_published IS NOT TRUE AND t.published_at IS NULL"
_LEASED = ("counted by a lease (ai_studio_modellease, market_data.lease_id)",
           "t.market_data ? 'lease_id' AND EXISTS (SELECT 1 FROM public.ai_studio_modellease l"
           " WHERE l.id::text = t.market_data ->> 'lease_id')")

#: The seed's "Data Retention Policy", in the order a run applies it (children before their parents).
POLICY: tuple[Rule, ...] = (
    Rule("analytics_marketdata", Action.DELETE, "Market Data: keep 5 years", 60, "timestamp"),
    Rule("trading_signal", Action.ARCHIVE, "Trading Signals: archive after 2 years", 24, "timestamp",
         held_by=(_LEASED,)),
    Rule("trading_order", Action.KEEP, "Orders: keep permanently"),
    Rule("notifications_notification", Action.ARCHIVE, "Notifications: archive after 6 months", 6, "created_at"),
    Rule("ai_studio_trainingjob", Action.ARCHIVE, "Training Jobs: keep completed jobs 2 years", 24,
         "completed_at", "t.status = 'COMPLETED'"),
    Rule("ai_studio_trainingjob", Action.ARCHIVE, "Training Jobs: keep failed jobs 6 months", 6,
         "completed_at", "t.status = 'FAILED'"),
    Rule("ai_studio_mlmodel", Action.ARCHIVE, "ML Models: archive drafts after 1 year (since last update)", 12,
         "updated_at", _DRAFT),
    Rule("ai_studio_mlmodel", Action.KEEP, "ML Models: keep published models permanently", rows=f"NOT ({_DRAFT})"),
    Rule("ai_studio_computeusage", Action.KEEP, "Compute Usage: keep permanently"),
    Rule("ai_studio_modelreview", Action.KEEP, "Marketplace Reviews: keep permanently"),
)

#: archived table -> its time column (what ``--since`` of a restore compares)
ARCHIVED: dict[str, str] = {r.table: r.column for r in POLICY if r.action is Action.ARCHIVE and r.column}

Progress = Callable[[str, Action, int], None]


@dataclass(slots=True)
class TableReport:
    """What a run did to one table; ``kept`` is the rows ``public`` holds after it."""

    archived: int = 0
    deleted: int = 0
    held_back: int = 0
    held_back_reasons: dict[str, int] = field(default_factory=dict)
    skipped_locked: int = 0
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"archived": self.archived, "deleted": self.deleted, "held_back": self.held_back,
                "held_back_reasons": dict(self.held_back_reasons), "skipped_locked": self.skipped_locked,
                "kept": self.kept}


@dataclass(frozen=True, slots=True)
class RetentionReport:
    run_id: int
    as_of: date
    dry_run: bool
    started_at: datetime
    finished_at: datetime
    tables: dict[str, TableReport]

    def as_dict(self) -> dict[str, Any]:
        totals = {k: sum(getattr(t, k) for t in self.tables.values()) for k in ("archived", "deleted", "held_back",
                                                                                 "skipped_locked")}
        return {"run_id": self.run_id, "as_of": self.as_of.isoformat(), "dry_run": self.dry_run,
                "started_at": self.started_at.isoformat(), "finished_at": self.finished_at.isoformat(),
                "tables": {name: t.as_dict() for name, t in self.tables.items()}, "totals": totals}


@dataclass(frozen=True, slots=True)
class Restored:
    """Rows moved back to ``public``, and the rows since that date left in ``archive`` by reason."""

    table: str
    restored: int
    left_in_archive: dict[str, int]


async def apply_retention(conn: asyncpg.Connection, as_of: date, *, dry_run: bool = False,
                          batch_size: int = BATCH_SIZE, progress: Progress | None = None) -> RetentionReport:
    """Apply :data:`POLICY` as of ``as_of`` (IST); record the run in ``engine.retention_run``; return the report.

    Raises :class:`Inconsistency` when an archive table's columns differ from its public table's, and
    :class:`TransientError` when a batch keeps failing to serialise against concurrent writers.
    """
    await _check_archive_columns(conn)
    run_id, started_at = await conn.fetchrow(
        "INSERT INTO engine.retention_run (as_of, dry_run) VALUES ($1, $2) RETURNING id, started_at", as_of, dry_run)
    tables: dict[str, TableReport] = {}
    async with _dry_run_transaction(conn, dry_run):
        for rule in POLICY:
            report = tables.setdefault(rule.table, TableReport())
            if rule.action is not Action.KEEP:
                await _apply_rule(conn, rule, as_of, report, batch_size, progress, in_transaction=dry_run)
        for name, report in tables.items():
            report.kept = await conn.fetchval(f'SELECT count(*) FROM public."{name}"')
    counts = {name: t.as_dict() for name, t in tables.items()}
    finished_at = await conn.fetchval(
        "UPDATE engine.retention_run SET finished_at = clock_timestamp(), counts = $2::jsonb WHERE id = $1"
        " RETURNING finished_at", run_id, orjson.dumps(counts).decode())
    return RetentionReport(run_id, as_of, dry_run, started_at, finished_at, tables)


async def restore_archived(conn: asyncpg.Connection, table: str, since: date, *,
                           batch_size: int = BATCH_SIZE) -> Restored:
    """Move the rows of ``archive.<table>`` whose time column is on or after ``since`` (IST) back to ``public``.

    Batched like a run. A row whose id is in ``public`` again, or that points to a row not in ``public``
    (e.g. a training job whose model is still archived: restore the model first), stays in ``archive``
    and is counted by reason. An unknown table is a :class:`ConfigError` naming the valid ones.
    """
    if table not in ARCHIVED:
        raise ConfigError(f"no archived table {table!r}: choose one of {', '.join(sorted(ARCHIVED))}")
    await _check_archive_columns(conn)
    column, columns = ARCHIVED[table], ", ".join(await _columns(conn, "public", table))
    parents = [(f"parent {ref} not in public", f"a.{mine} IS NULL OR EXISTS (SELECT 1 FROM {ref} p WHERE {match})")
               for ref, mine, match in await _parent_keys(conn, table)]
    conflict = ("id already in public", f'EXISTS (SELECT 1 FROM public."{table}" p WHERE p.id = a.id)')
    blocked = [conflict[1]] + [f"NOT ({sql})" for _, sql in parents]
    eligible = f'a."{column}" >= $1 AND NOT ({" OR ".join(blocked)})'
    move = (f'WITH back AS (SELECT a.id FROM archive."{table}" a WHERE {eligible} LIMIT $2 FOR UPDATE SKIP LOCKED),'
            f' moved AS (DELETE FROM archive."{table}" a USING back b WHERE a.id = b.id RETURNING a.*)'
            f' INSERT INTO public."{table}" ({columns}) SELECT {columns} FROM moved')
    since_at, restored = start_of_day(since), 0
    while moved := await _batch(conn, move, since_at, batch_size):
        restored += moved
    reasons = [(conflict[0], conflict[1])] + [(why, f"NOT ({sql})") for why, sql in parents]
    _, left = await _reason_counts(conn, f'archive."{table}" a', f'a."{column}" >= $1', reasons, since_at)
    return Restored(table, restored, left)


async def _apply_rule(conn: asyncpg.Connection, rule: Rule, as_of: date, report: TableReport, batch_size: int,
                      progress: Progress | None, *, in_transaction: bool) -> None:
    assert rule.months is not None and rule.column is not None
    limit = cutoff(as_of, rule.months)
    reasons = [(f"referenced by {ref}", f"EXISTS (SELECT 1 FROM {ref} r WHERE {match})")
               for ref, match in await _child_keys(conn, rule.table)] + list(rule.held_by)
    due = f't."{rule.column}" < $1 AND ({rule.rows})'
    free = f"{due} AND NOT ({' OR '.join(sql for _, sql in reasons)})" if reasons else due
    pick = f'SELECT t.id FROM public."{rule.table}" t WHERE {free} LIMIT $2 FOR UPDATE OF t SKIP LOCKED'
    if rule.action is Action.DELETE:
        statement = f'DELETE FROM public."{rule.table}" WHERE id IN ({pick})'
    else:
        names = await _columns(conn, "public", rule.table)
        columns, updates = ", ".join(names), ", ".join(f"{c} = EXCLUDED.{c}" for c in names)
        # an id archived before and written again since (a replay) is archived once: the newer row wins
        statement = (f'WITH doomed AS ({pick}),'
                     f' moved AS (DELETE FROM public."{rule.table}" t USING doomed d WHERE t.id = d.id RETURNING t.*)'
                     f' INSERT INTO archive."{rule.table}" ({columns}) SELECT {columns} FROM moved'
                     f' ON CONFLICT (id) DO UPDATE SET {updates}')
    done = 0
    while moved := await _batch(conn, statement, limit, batch_size, in_transaction=in_transaction):
        done += moved
        if progress:
            progress(rule.table, rule.action, done)
    if rule.action is Action.DELETE:
        report.deleted += done
    else:
        report.archived += done
    held, why_held = await _reason_counts(conn, f'public."{rule.table}" t', due, reasons, limit)
    report.held_back += held
    for why, n in why_held.items():
        report.held_back_reasons[why] = report.held_back_reasons.get(why, 0) + n
    report.skipped_locked += await conn.fetchval(f'SELECT count(*) FROM public."{rule.table}" t WHERE {free}', limit)


async def _batch(conn: asyncpg.Connection, statement: str, *args: Any, in_transaction: bool = False) -> int:
    """Run one batch statement in its own REPEATABLE READ transaction (retried on a serialisation failure)."""
    if in_transaction:  # a dry run: one transaction for the whole run, nothing to retry on its own
        try:
            return _rows(await conn.execute(statement, *args))
        except asyncpg.SerializationError as exc:
            raise TransientError("a concurrent write changed a row the dry run was counting; run it again") from exc
    for _ in range(SERIALIZATION_ATTEMPTS):
        try:
            async with conn.transaction(isolation="repeatable_read"):
                return _rows(await conn.execute(statement, *args))
        except asyncpg.SerializationError:
            continue
    raise TransientError(f"a retention batch failed to serialise {SERIALIZATION_ATTEMPTS} times against concurrent"
                         " writers; run it again later")


def _rows(status: str) -> int:
    return int(status.split()[-1])


async def _reason_counts(conn: asyncpg.Connection, source: str, where: str, reasons: list[tuple[str, str]],
                         arg: Any) -> tuple[int, dict[str, int]]:
    """Rows of ``source`` matching ``where`` and any of ``reasons``: (how many, how many per reason)."""
    if not reasons:
        return 0, {}
    any_reason = " OR ".join(f"({sql})" for _, sql in reasons)
    filters = ", ".join(f"count(*) FILTER (WHERE {sql})" for _, sql in reasons)
    row = await conn.fetchrow(f"SELECT count(*) FILTER (WHERE {any_reason}), {filters} FROM {source} WHERE {where}",
                              arg)
    return row[0], {why: row[i + 1] for i, (why, _) in enumerate(reasons) if row[i + 1]}


@contextlib.asynccontextmanager
async def _dry_run_transaction(conn: asyncpg.Connection, dry_run: bool) -> AsyncIterator[None]:
    """For a dry run, one REPEATABLE READ transaction around everything, always rolled back."""
    if not dry_run:
        yield
        return
    tx = conn.transaction(isolation="repeatable_read")
    await tx.start()
    try:
        yield
    finally:
        await tx.rollback()


_FOREIGN_KEYS = """
SELECT format('%I.%I', n.nspname, c.relname) AS other,
       ARRAY(SELECT quote_ident(a.attname) FROM unnest(k.conkey) WITH ORDINALITY x(num, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.num ORDER BY x.i) AS referencing,
       ARRAY(SELECT quote_ident(a.attname) FROM unnest(k.confkey) WITH ORDINALITY x(num, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.num ORDER BY x.i) AS referenced
FROM pg_constraint k
JOIN pg_class c ON c.oid = CASE WHEN $2 THEN k.conrelid ELSE k.confrelid END
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND CASE WHEN $2 THEN k.confrelid ELSE k.conrelid END = $1::regclass
ORDER BY 1
"""


async def _child_keys(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    """(referencing table, match over ``r``/``t``) for every foreign key pointing at ``public.<table>``."""
    rows = await conn.fetch(_FOREIGN_KEYS, f'public."{table}"', True)
    return [(r["other"], " AND ".join(f"r.{mine} = t.{theirs}" for mine, theirs in zip(r["referencing"],
                                                                                     r["referenced"])))
            for r in rows]


async def _parent_keys(conn: asyncpg.Connection, table: str) -> list[tuple[str, str, str]]:
    """(referenced table, first referencing column, match over ``p``/``a``) for each foreign key of ``public.<table>``."""
    rows = await conn.fetch(_FOREIGN_KEYS, f'public."{table}"', False)
    return [(r["other"], r["referencing"][0], " AND ".join(f"p.{theirs} = a.{mine}" for mine, theirs in
                                                          zip(r["referencing"], r["referenced"])))
            for r in rows]


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    """The quoted column names of ``schema.table`` in column order."""
    names = await conn.fetch(
        "SELECT quote_ident(a.attname) FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0"
        " AND NOT a.attisdropped ORDER BY a.attnum", f'{schema}."{table}"')
    return [r[0] for r in names]


async def _check_archive_columns(conn: asyncpg.Connection) -> None:
    """Every archive table has exactly its public table's columns and types (a migration changing one changes both)."""
    rows = await conn.fetch(
        "SELECT c.relname, n.nspname, array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
        " ORDER BY a.attname) AS cols FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'archive')"
        " AND c.relname = ANY($1::text[]) AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
        " GROUP BY c.relname, n.nspname", list(ARCHIVED))
    found = {(r["nspname"], r["relname"]): r["cols"] for r in rows}
    for table in ARCHIVED:
        if ("archive", table) not in found:
            raise ConfigError(f"archive.{table} does not exist: run `sharewise db migrate` first")
        if found[("archive", table)] != found.get(("public", table)):
            raise Inconsistency(f"archive.{table} and public.{table} have different columns: add a migration"
                                " that changes both")
