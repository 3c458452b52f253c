"""The order stage: the ``orders.inputs`` agent, keyed by user (docs/orders.md).

Each owned partition of ``orders.inputs`` has an :class:`engine.orders.stage.PartitionBooks`: the
desks of the users keyed there and the merge of every source's clock. A batch is added, then
decided up to the watermark; the orders, books and notifications that follow go out through the
worker's producer before positions move. The books are checkpointed with the partition's offset
in the same store (and under the same lock) as the ticks agent's state, so a restart after
kill -9 resumes from the checkpoint and re-emits the same messages, with the same ids, which the
sinks drop. User limits and hand-set trading states come from PostgreSQL (db.trading).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Sequence

import orjson

from db.broker_accounts import mark_account_inactive
from db.connect import connect, retryable
from db.trading import broker_charges, manual_states, user_limits
from engine.errors import AccountUnavailable, BadData, Inconsistency
from engine.orders.charges import NSE_EQUITY, ChargeTable
from engine.orders.ids import PAPER_BROKER_ID
from engine.orders.risk import RiskLimits, TradingState
from engine.orders.desk import BrokerUpdate
from engine.orders.stage import PartitionBooks
from engine.ports import BrokerAdapter, Checkpoint
from streams import topics
from streams.live import LiveRouter, OpenAccount

if TYPE_CHECKING:
    from streams.worker import EngineWorker

log = logging.getLogger("sharewise.orders")

INPUTS = topics.ORDERS_INPUTS
STATE_FORMAT = 1
_OUT_TOPICS = {"orders": topics.ORDERS, "portfolios": topics.PORTFOLIOS, "notifications": topics.NOTIFICATIONS}


@dataclass(slots=True)
class StagePartition:
    books: PartitionBooks
    next_offset: int
    pending: list[Any] = field(default_factory=list)
    late_logged: int = 0
    dirty: bool = False  # changed by a broker's answer since the last checkpoint


class OrderStage:
    """The order agent's state and steps; the worker drives it under its lock."""

    def __init__(self, worker: EngineWorker, paper_cash: Decimal, brokers: OpenAccount | None = None) -> None:
        self.worker = worker
        self.router = LiveRouter(brokers or _no_brokers, self._deliver, self._mark_inactive,
                                 lambda exc: worker.latch.trip("order router", exc))
        self.paper_cash = paper_cash
        self.owned: dict[int, StagePartition] = {}
        self.limits: dict[str, RiskLimits] = {}
        self.manual: dict[str, tuple[TradingState, str | None]] = {}
        self.table: ChargeTable | None = None  # the paper broker's charges, read at the first take-over

    # --- the agent's batch -------------------------------------------------------------------

    async def process(self, events: Sequence[Any]) -> None:
        """Add a batch to the books of its partitions, decide what is due, send the outcome."""
        touched: dict[int, StagePartition] = {}
        await self._fetch_limits({u for ev in events if (u := PartitionBooks.user_of(ev.message.value or b""))})
        for event in events:
            msg = event.message
            part = self.owned.get(msg.partition) or await self._assume(msg.partition)
            touched[msg.partition] = part  # a take-over may have decided something (a state set meanwhile)
            if msg.offset < part.next_offset:
                event.ack()  # inside the restored state already
                continue
            part.next_offset = msg.offset + 1
            part.pending.append(event)
            touched[msg.partition] = part
            try:
                part.books.add(msg.value or b"")
            except BadData as exc:
                self.worker.stats.sink_errors[f"unreadable:{INPUTS}"] += 1
                log.error("unreadable message on %s partition %d offset %d skipped: %s", INPUTS, msg.partition,
                          msg.offset, exc)
        for p, part in touched.items():
            await self._send(p, part.books.advance())
            if part.books.counters.late > part.late_logged:
                log.warning("%s partition %d: %d input(s) older than the watermark, decided on arrival (a source"
                            " idle for %ss spoke again; docs/orders.md)", INPUTS, p,
                            part.books.counters.late - part.late_logged, 2)
                part.late_logged = part.books.counters.late
        for event in events:
            done = self.worker.positions[INPUTS]
            done[event.message.partition] = max(done.get(event.message.partition, 0), event.message.offset + 1)

    async def _send(self, partition: int, outputs: list[tuple[str, str, dict[str, Any]]]) -> None:
        stats, sender = self.worker.stats, self.worker.sender
        for kind, user_id, msg in outputs:
            if kind == "broker":
                self.router.submit(partition, msg)
                continue
            await sender.send(_OUT_TOPICS[kind], orjson.dumps(msg), key=user_id.encode())
            if kind == "orders":
                stats.orders += 1
                self.worker.outputs.track(topics.ORDERS, msg["id"])
            elif kind == "notifications":
                stats.notifications += 1
                self.worker.outputs.track(topics.NOTIFICATIONS, msg["id"])

    # --- limits and states from PostgreSQL -----------------------------------------------------

    async def _fetch_limits(self, users: set[str]) -> None:
        """Read the limits of ``users`` once (a user without a profile gets the defaults)."""
        users = {u for u in users if u not in self.limits}
        if not users:
            return
        found = await self._db(lambda conn: user_limits(conn, sorted(users)))
        default = RiskLimits()
        for user in users:
            loss, positions = found.get(user, (default.max_daily_loss, default.max_positions))
            self.limits[user] = RiskLimits(Decimal(loss), int(positions))

    async def _load_states(self) -> None:
        """The hand-set trading states as PostgreSQL has them now (read at every take-over)."""
        states = await self._db(manual_states)
        self.manual.clear()
        self.manual.update({u: (TradingState.parse(s), r) for u, (s, r) in states.items()})

    async def _db(self, query: Any) -> Any:
        """Run ``query(conn)``, retrying through a database outage (nothing can be decided without it)."""
        while True:
            try:
                conn = await connect(self.worker.dsn)
                try:
                    return await query(conn)
                finally:
                    await conn.close()
            except Exception as exc:  # noqa: BLE001 - classified below
                if not retryable(exc):
                    raise
                log.warning("order stage cannot read PostgreSQL (%s); retrying", exc)
                await asyncio.sleep(1.0)

    # --- ownership and checkpoints --------------------------------------------------------------

    def _new_books(self) -> PartitionBooks:
        return PartitionBooks(self.paper_cash, lambda u: self.limits.get(u, RiskLimits()), self.manual, self.table)

    async def _load_charges(self) -> None:
        """The Paper broker row's ``configuration.charges`` over the NSE table (once; a bad one stops the worker)."""
        if self.table is None:
            doc = await self._db(lambda conn: broker_charges(conn, PAPER_BROKER_ID))
            self.table = ChargeTable.with_overrides(NSE_EQUITY, doc, "brokers_broker(Paper).configuration.charges")

    async def _assume(self, partition: int) -> StagePartition:
        await self._load_charges()
        await self._load_states()
        recovery = self.worker.recovery
        ckpt = await recovery.load(INPUTS, partition)
        books = self._new_books()
        if ckpt is None:
            part = StagePartition(books, 0)
        else:
            try:
                doc = orjson.loads(ckpt.state)
                await self._fetch_limits({d["user_id"] for d in doc["desks"]})
                books.restore(doc)
                books.apply_manual(self.manual)  # a state set while no stage was running counts
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                raise Inconsistency(f"the order stage's checkpoint of {INPUTS} partition {partition} cannot be read"
                                    f" ({type(exc).__name__}: {exc}): refusing to trade on a lost book") from exc
            other = await recovery.other_log(ckpt, partition, INPUTS)
            if other is not None:
                log.warning("%s partition %d: the checkpoint at offset %d belongs to another log (%s): books kept,"
                            " resuming from the log's start", INPUTS, partition, ckpt.next_offset, other)
                self.worker.stats.log_resets += 1
            part = StagePartition(books, 0 if other is not None else ckpt.next_offset)
        self.owned[partition] = part
        log.info("%s partition %d assumed at offset %d", INPUTS, partition, part.next_offset)
        await self._send(partition, books.live_commands())  # live orders in flight: followed (or placed) again
        return part

    # --- live orders ---------------------------------------------------------------------------

    async def _deliver(self, partition: int, user_id: str, update: BrokerUpdate) -> None:
        """A broker's answer (streams.live): applied to the owning partition's books under the worker's lock."""
        async with self.worker.lock:
            part = self.owned.get(partition)
            if part is None or self.worker.failure is not None:
                return  # revoked: the next owner follows the order again from its checkpoint
            part.books.on_broker(user_id, update)
            part.dirty = True
            await self._send(partition, part.books.advance())

    async def _mark_inactive(self, account: str) -> None:
        await self._db(lambda conn: mark_account_inactive(conn, account))

    async def close(self) -> None:
        await self.router.close()

    def revoke(self, partition: int) -> None:
        self.router.forget(partition)
        if self.owned.pop(partition, None) is not None:
            log.info("%s partition %d revoked: its books are left to the next owner's checkpoint", INPUTS, partition)

    def checkpoints(self, every_partition: bool = False) -> list[Checkpoint]:
        """The checkpoints of the partitions with unacknowledged input (or all owned ones)."""
        return [Checkpoint(p, part.next_offset, orjson.dumps(part.books.to_json()), STATE_FORMAT,
                           self.worker.cluster_id)
                for p, part in self.owned.items() if part.pending or part.dirty or every_partition]

    def acknowledge(self) -> None:
        for part in self.owned.values():
            for event in part.pending:
                event.ack()
            part.pending.clear()
            part.dirty = False


async def _no_brokers(account: str) -> BrokerAdapter:
    raise AccountUnavailable("broker_account_unknown", f"this worker was started without live broker adapters"
                                                       f" (account {account})")
