"""The seams between the pure core and its adapters, as ``typing.Protocol``s, in one place.

Like faust's ``faust/types/``: a reader finds here what an adapter must provide, and the
core and the stream stage depend on these, not on PostgreSQL, Kafka or a broker's HTTP API.

* :class:`OutputSink` — writes the rows of one output topic, idempotently (sinks.postgres.CopySink);
* :class:`CheckpointStore` — keeps each partition's state with its offsets (db.checkpoints);
* :class:`BrokerAdapter` — places and follows orders at a stock broker (paper, Kite Connect,
  SmartAPI, Upstox: the orders issues build them behind this port).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable


class SinkHealth(Protocol):
    """What ops see of a sink: the start of the current outage (``None`` when healthy) and its last error."""

    outage_since: float | None
    last_error: str


class OutputSink(Protocol):
    """Writes rows of one table. ``write`` commits the whole batch or raises; it retries through outages
    itself and returns how many rows were new (a row whose id exists is dropped: replays write nothing twice)."""

    status: SinkHealth

    async def write(self, records: Sequence[tuple[Any, ...]]) -> int: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A partition's state after every input below ``next_offset`` of the log ``cluster_id`` was applied;
    ``origins`` is the JSON of :class:`engine.routing.AppliedOrigins`."""

    partition: int
    next_offset: int
    state: bytes
    state_format: int
    cluster_id: str = ""
    origins: str = "{}"


class CheckpointStore(Protocol):
    """Durable checkpoints and worker heartbeats. Raises on an outage (the caller retries, acking nothing)."""

    async def load(self, group_id: str, topic: str, partitions: list[int]) -> dict[int, Checkpoint]: ...

    async def save(self, group_id: str, topic: str, worker_id: str, checkpoints: list[Checkpoint]) -> None:
        """Upsert in one transaction; within one log an older offset never replaces a newer one."""

    async def heartbeat(self, worker_id: str, group_id: str, partitions: list[int], stats: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to place. ``tag`` is the engine's deterministic order id (at most 20 alphanumerics, what
    Kite and SmartAPI accept), by which the order is found again after any doubt (timeout, restart)."""

    tag: str
    symbol: str
    side: str  # BUY | SELL
    quantity: int
    order_type: str  # MARKET | LIMIT | SL-M
    product: str  # MIS | CNC
    price: Decimal | None = None
    trigger_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it: its id there, our tag, status and what has filled."""

    broker_order_id: str
    tag: str
    status: str  # OPEN | COMPLETE | CANCELLED | REJECTED
    filled_quantity: int = 0
    average_price: Decimal | None = None
    rejection_reason: str | None = None
    updated_at: datetime | None = None


@runtime_checkable
class BrokerAdapter(Protocol):
    """A broker's order API. Every call either returns the broker's answer or raises: a timeout leaves the
    outcome unknown, so the caller reconciles with :meth:`orders_by_tag` before sending again."""

    name: str

    async def place(self, order: OrderRequest) -> BrokerOrder: ...

    async def cancel(self, broker_order_id: str) -> BrokerOrder: ...

    async def orders_by_tag(self, tag: str) -> list[BrokerOrder]: ...

    async def orders(self) -> list[BrokerOrder]:
        """The day's orders that carry a tag (one request: the order router polls fills with it)."""
        ...
