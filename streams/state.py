"""What a worker keeps in memory besides the pipeline: its counters and its owned partitions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.routing import AppliedOrigins


@dataclass(slots=True)
class WorkerStats:
    """Counters of this worker since start (the live panel, heartbeats, ``/metrics`` and ``--json`` read them)."""

    ticks: int = 0
    dlq: Counter = field(default_factory=Counter)
    bars: int = 0
    signals: int = 0
    notifications: int = 0
    orders: int = 0  # order state changes sent by the order stage
    failures: int = 0
    checkpoints: int = 0
    last_checkpoint: float = 0.0
    sink_rows: Counter = field(default_factory=Counter)
    sink_backlog: int = 0
    sink_errors: Counter = field(default_factory=Counter)  # messages a sink could not read, by cause
    forwarded: int = 0  # misrouted ticks sent on to their owner partition
    rerouted: int = 0  # forwarded ticks applied here, at their owner
    repeated_forwards: int = 0  # forwarded packets dropped as already applied (a repeat after a crash)
    log_resets: int = 0  # partitions whose checkpoint belonged to another log

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks, "dlq": dict(self.dlq), "bars": self.bars, "signals": self.signals,
            "notifications": self.notifications, "orders": self.orders, "strategy_failures": self.failures,
            "checkpoints": self.checkpoints, "sink_rows": dict(self.sink_rows), "sink_backlog": self.sink_backlog,
            "sink_errors": dict(self.sink_errors), "forwarded": self.forwarded, "rerouted": self.rerouted,
            "repeated_forwards": self.repeated_forwards, "log_resets": self.log_resets,
        }  # fmt: skip


@dataclass(slots=True)
class PartitionState:
    """An owned partition of ``market.ticks``: next offset to apply, unacked events, applied forwards."""

    next_offset: int
    origins: AppliedOrigins = field(default_factory=AppliedOrigins)
    pending: list[Any] = field(default_factory=list)
