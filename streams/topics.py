"""The Kafka topics the engine reads and writes. Partition counts come from ``Settings.partitions``."""

from __future__ import annotations

#: tick packets (or single ticks) keyed by symbol
MARKET_TICKS = "market.ticks"
#: ticks that could not be used, with their reason and original bytes
MARKET_TICKS_DLQ = "market.ticks.dlq"
#: closed bars, packed
MARKET_BARS = "market.bars"
SIGNALS = "signals"
#: the order stage's input, keyed by user: signals of trading rows, source clocks with 1m bars, risk commands
ORDERS_INPUTS = "orders.inputs"
#: order state changes, keyed by user
ORDERS = "orders"
#: a user's book (portfolio, holdings, trading state) after a decision step, keyed by user
PORTFOLIOS = "portfolios"
NOTIFICATIONS = "notifications"

ENGINE_TOPICS: tuple[str, ...] = (MARKET_TICKS, MARKET_TICKS_DLQ, MARKET_BARS, SIGNALS, ORDERS_INPUTS, ORDERS,
                                  PORTFOLIOS, NOTIFICATIONS)


def engine_topics(partitions: int) -> dict[str, int]:
    """Every engine topic with ``partitions`` partitions: the argument :func:`streams.admin.ensure_topics` takes."""
    return dict.fromkeys(ENGINE_TOPICS, partitions)
