"""Batched, idempotent PostgreSQL writers (COPY into a temp table, then INSERT … ON CONFLICT DO NOTHING).

Each :class:`CopySink` writes one table. ``write(records)`` commits the whole batch in one
transaction and returns how many rows were new; a row whose id (or unique key) exists is
dropped by the database, so replaying the same outputs writes nothing twice. The retry
machinery lives in :class:`RetryingSink`, which the order and book sinks (sinks.orders) share.

A database that goes away does not lose the batch: ``write`` retries with capped
exponential backoff until the batch is committed (or the sink is closed), logs the
outage once when it starts and once when it ends, and exposes it in :attr:`SinkStatus`.
The caller acknowledges its input only after ``write`` has returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import asyncpg

from db.connect import retryable
from engine.settings import redact

log = logging.getLogger("sharewise.sinks")

@dataclass(frozen=True, slots=True)
class TableSpec:
    """Where and how a sink writes: target table, columns in record order, and their temp-table types."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def temp(self) -> str:
        return "sink_" + self.table

    def create_temp_sql(self) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in zip(self.columns, self.types))
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.temp} ({cols}) ON COMMIT DELETE ROWS"

    def insert_sql(self) -> str:
        cols = ", ".join(self.columns)
        return f"INSERT INTO {self.table} ({cols}) SELECT {cols} FROM {self.temp} ON CONFLICT DO NOTHING"


MARKETDATA = TableSpec(
    "analytics_marketdata",
    ("id", "symbol", "timestamp", "open_price", "high_price", "low_price", "close_price", "volume", "timeframe",
     "technical_indicators"),
    ("uuid", "varchar(50)", "timestamptz", "numeric(12,2)", "numeric(12,2)", "numeric(12,2)", "numeric(12,2)",
     "bigint", "varchar(10)", "jsonb"),
)

SIGNALS = TableSpec(
    "trading_signal",
    ("id", "timestamp", "symbol", "strategy_name", "signal_type", "confidence_score", "entry_price", "target_price",
     "stop_loss", "valid_until", "user_id", "created_by_strategy_id", "market_data"),
    ("uuid", "timestamptz", "varchar(50)", "varchar(100)", "varchar(10)", "numeric(3,2)", "numeric(12,2)",
     "numeric(12,2)", "numeric(12,2)", "timestamptz", "uuid", "uuid", "jsonb"),
)

NOTIFICATIONS = TableSpec(
    "notifications_notification",
    ("id", "user_id", "title", "message", "notification_type", "priority", "delivery_methods", "created_at"),
    ("uuid", "uuid", "varchar(200)", "text", "varchar(50)", "varchar(10)", "jsonb", "timestamptz"),
)


@dataclass(slots=True)
class SinkStatus:
    """What ops see of a sink: rows written, batches, and the current outage if any."""

    rows_written: int = 0
    rows_duplicate: int = 0
    batches: int = 0
    retries: int = 0
    outage_since: float | None = None
    last_error: str = ""
    latencies: list[float] = field(default_factory=list)


class RetryingSink:
    """The machinery every PostgreSQL sink shares: one connection, one transaction per batch, and retries.

    Subclasses implement :meth:`_apply` (the batch's statements, run inside one transaction; returns
    how many records were new) and may override :meth:`_prepare` (run once on each new connection).
    ``write`` retries an outage (:func:`db.connect.retryable`) with capped exponential backoff, and a
    transaction PostgreSQL rolled back to break a deadlock or a serialization conflict (SQLSTATE
    40P01/40001: two sinks inserting the same rows in another order) at once, without calling it an
    outage; anything else the database refuses is raised.
    """

    def __init__(self, dsn: str, name: str, *, max_backoff: float = 5.0) -> None:
        self.dsn = dsn
        self.name = name
        self.status = SinkStatus()
        self._max_backoff = max_backoff
        self._conn: asyncpg.Connection | None = None
        self._closed = False

    async def write(self, records: Sequence[tuple[Any, ...]]) -> int:
        """Commit ``records`` in one transaction; retry through outages. Returns rows that were new.

        Raises (after dropping the connection) when the database refuses the batch itself
        (e.g. a constraint it violates): retrying would not help.
        """
        if not records:
            return 0
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                inserted = await self._write_once(records)
            except Exception as exc:
                await self._drop_connection()  # its state is unknown after any failure
                if self._closed:
                    raise
                if _conflict(exc):
                    self._note_conflict(exc)
                    await asyncio.sleep(0.01)
                    continue
                if not retryable(exc):
                    raise
                self._note_failure(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            self._note_success(len(records), inserted, time.perf_counter() - started)
            return inserted

    async def _write_once(self, records: Sequence[tuple[Any, ...]]) -> int:
        conn = await self._connection()
        async with conn.transaction():
            return await self._apply(conn, records)

    async def _apply(self, conn: asyncpg.Connection, records: Sequence[tuple[Any, ...]]) -> int:
        raise NotImplementedError

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        """Set up a new connection (e.g. temp tables); nothing by default."""

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self.dsn, timeout=5)
            try:
                await self._prepare(conn)
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _note_conflict(self, exc: BaseException) -> None:
        self.status.retries += 1
        log.info("sink %s: transaction rolled back by the database (%s), retrying", self.name,
                 redact(f"{type(exc).__name__}: {exc}"))

    def _note_failure(self, exc: BaseException) -> None:
        st = self.status
        st.retries += 1
        st.last_error = redact(f"{type(exc).__name__}: {exc}")
        if st.outage_since is None:
            st.outage_since = time.time()
            log.warning("sink %s: database unavailable, retrying with backoff (%s)", self.name, st.last_error)

    def _note_success(self, rows: int, inserted: int, seconds: float) -> None:
        st = self.status
        if st.outage_since is not None:
            log.warning("sink %s: database back after %.1fs", self.name, time.time() - st.outage_since)
            st.outage_since = None
        st.rows_written += inserted
        st.rows_duplicate += rows - inserted
        st.batches += 1
        st.latencies.append(seconds)
        if len(st.latencies) > 1024:
            del st.latencies[:512]

    async def close(self) -> None:
        self._closed = True
        await self._drop_connection()


class CopySink(RetryingSink):
    """Writes batches of records (tuples in ``spec.columns`` order) to one table, idempotently."""

    def __init__(self, dsn: str, spec: TableSpec, *, max_backoff: float = 5.0) -> None:
        super().__init__(dsn, spec.table, max_backoff=max_backoff)
        self.spec = spec

    async def _apply(self, conn: asyncpg.Connection, records: Sequence[tuple[Any, ...]]) -> int:
        await conn.copy_records_to_table(self.spec.temp, records=records, columns=self.spec.columns)
        status = await conn.execute(self.spec.insert_sql())
        return int(status.rsplit(" ", 1)[-1])

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        await conn.execute(self.spec.create_temp_sql())


#: SQLSTATEs of a transaction the database rolled back to let another one through: run it again
_CONFLICTS = frozenset({"40001", "40P01"})


def _conflict(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) in _CONFLICTS
