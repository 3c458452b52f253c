"""Paper trading over a finished input: what ``sharewise backtest`` reports, with the live order code.

:func:`paper_orders` hands the signals and 1m bars of a whole run to one
:class:`engine.orders.stage.PartitionBooks` as a single source that has ended, so every decision is
the one the live order stage makes (docs/orders.md): the same desks, rules, fills, charges and ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

import orjson

from engine.domain import Bar, Timeframe
from engine.orders.charges import NSE_EQUITY, ChargeTable
from engine.orders.execution import Execution
from engine.orders.risk import RiskLimits
from engine.orders.stage import END_OF_TIME, PartitionBooks, clock_bar, clock_input, signal_input
from engine.outputs import signal_message
from engine.strategy.runner import EmittedSignal

#: the user of a backtest's signals when the strategy runs for nobody
BACKTEST_USER = "00000000-0000-0000-0000-00000000b001"


@dataclass(frozen=True, slots=True)
class PaperRun:
    """Every order (its final state, in the order it was first placed) and the money of the run.

    ``pnl``: ``net`` = final total value − starting cash (open positions at their last 1m close);
    ``charges`` = fees + taxes of every executed order; ``gross`` = net + charges.
    """

    orders: list[dict[str, Any]]
    pnl: dict[str, str]
    book: dict[str, Any] | None


def paper_orders(signals: Iterable[EmittedSignal], minute_bars: Sequence[Bar], *, cash: Decimal,
                 execution: Execution | None = None, limits: Callable[[str], RiskLimits] = lambda _: RiskLimits(),
                 table: ChargeTable = NSE_EQUITY, through: int = END_OF_TIME) -> PaperRun:
    """Trade ``signals`` on paper over ``minute_bars``, deciding what is due by ``through`` (default: all);
    ``execution`` stands in for signals whose row has none; ``limits`` gives each user's limits."""
    books = PartitionBooks(cash, limits, table=table)
    for signal in signals:
        ex = signal.execution or execution
        if ex is None:
            continue
        msg = signal_message(signal, signal.bar.time)  # stamped in market time: the run is repeatable
        if msg["user_id"] is None:
            msg["user_id"] = BACKTEST_USER
        books.add(orjson.dumps(signal_input(0, ex, msg)))
    bars = [clock_bar(b.symbol, b.open_ns, b.open, b.high, b.low, b.close) for b in minute_bars
            if b.timeframe is Timeframe.M1]
    books.add(orjson.dumps(clock_input({0: through}, bars)))
    final: dict[str, dict[str, Any]] = {}
    book = None
    for kind, _, msg in books.advance():
        if kind == "orders":
            final[msg["id"]] = msg
        elif kind == "portfolios":
            book = msg
    charges = sum((Decimal(o["fees"]) + Decimal(o["taxes"]) for o in final.values() if o["status"] == "COMPLETE"),
                  Decimal(0))
    net = Decimal(book["portfolio"]["total_value"]) - cash if book else Decimal(0)
    pnl = {"gross": str(net + charges), "charges": str(charges), "net": str(net)}
    return PaperRun(list(final.values()), pnl, book)
