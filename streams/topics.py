"""The Kafka topics the engine reads and writes. Partition counts come from ``Settings.partitions``."""

from __future__ import annotations

#: tick packets (or single ticks) keyed by symbol
MARKET_TICKS = "market.ticks"
#: ticks that could not be used, with their reason and original bytes
MARKET_TICKS_DLQ = "market.ticks.dlq"
#: closed bars, packed
MARKET_BARS = "market.bars"
SIGNALS = "signals"
ORDERS = "orders"
NOTIFICATIONS = "notifications"

ENGINE_TOPICS: tuple[str, ...] = (MARKET_TICKS, MARKET_TICKS_DLQ, MARKET_BARS, SIGNALS, ORDERS, NOTIFICATIONS)


def engine_topics(partitions: int) -> dict[str, int]:
    """Every engine topic with ``partitions`` partitions: the argument :func:`streams.admin.ensure_topics` takes."""
    return dict.fromkeys(ENGINE_TOPICS, partitions)
