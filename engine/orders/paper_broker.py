"""The paper broker: a :class:`engine.ports.BrokerAdapter` whose fills the desk decides in market time.

A real broker (Kite Connect, SmartAPI, Upstox) is reached through the same port: ``place``,
``cancel``, ``orders_by_tag``. On paper there is nothing to wait for: the desk
(engine.orders.desk) decides the fill price and time from the 1m bars (docs/orders.md, "Paper
fills") and records each order here through the synchronous :meth:`PaperBroker.fill`,
:meth:`PaperBroker.rest` and :meth:`PaperBroker.cancel_now`, so the book of orders by tag is
the one a real broker would report. The async port methods answer from that book: a MARKET order
placed through them fills at its ``price`` (the price its caller decided), a LIMIT or SL-M rests.

The book holds the open orders and the latest :data:`FINISHED_KEPT` finished ones of the current IST day
(what a broker lists as "today's orders", bounded so a busy paper account does not grow without end);
:meth:`PaperBroker.new_day` clears the finished ones.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from engine.errors import ConfigError
from engine.ports import BrokerOrder, OrderRequest

_FINAL = ("COMPLETE", "CANCELLED", "REJECTED")
#: finished orders a paper account keeps listing (the oldest go first)
FINISHED_KEPT = 200


class PaperBroker:
    """One paper account's orders, by broker order id (``paper-<tag>``) and by tag."""

    name = "paper"

    def __init__(self) -> None:
        self._orders: dict[str, BrokerOrder] = {}  # in the order they were placed or last changed
        self._finished = 0

    def _book(self, order: BrokerOrder) -> BrokerOrder:
        previous = self._orders.pop(order.broker_order_id, None)
        self._finished -= previous is not None and previous.status in _FINAL
        self._orders[order.broker_order_id] = order
        if order.status in _FINAL:
            self._finished += 1
            if self._finished > FINISHED_KEPT:
                oldest = next(k for k, o in self._orders.items() if o.status in _FINAL)
                del self._orders[oldest]
                self._finished -= 1
        return order

    # --- what the desk calls (synchronous, market time) -------------------------------------

    def fill(self, order: OrderRequest, price: Decimal, at: datetime | None) -> BrokerOrder:
        """Record ``order`` filled in full at ``price`` at market time ``at``."""
        return self._book(BrokerOrder(_broker_id(order.tag), order.tag, "COMPLETE", order.quantity, price, None, at))

    def rest(self, order: OrderRequest, at: datetime | None) -> BrokerOrder:
        """Record a LIMIT or SL-M exit resting (OPEN) until the desk fills or cancels it."""
        if order.order_type not in ("LIMIT", "SL-M"):
            raise ConfigError(f"only LIMIT and SL-M orders rest, not {order.order_type}")
        return self._book(BrokerOrder(_broker_id(order.tag), order.tag, "OPEN", 0, None, None, at))

    def cancel_now(self, broker_order_id: str, at: datetime | None) -> BrokerOrder:
        """Cancel an OPEN order; an order already final is returned as it is (a broker refuses to cancel it)."""
        current = self._orders.get(broker_order_id)
        if current is None:
            raise ConfigError(f"paper broker: no order {broker_order_id}")
        if current.status in _FINAL:
            return current
        return self._book(replace(current, status="CANCELLED", updated_at=at))

    def new_day(self) -> None:
        """A new session: forget the finished orders of earlier days; open ones (CNC exits) stay."""
        self._orders = {k: o for k, o in self._orders.items() if o.status not in _FINAL}
        self._finished = 0

    # --- engine.ports.BrokerAdapter --------------------------------------------------------------

    async def place(self, order: OrderRequest) -> BrokerOrder:
        """A MARKET order fills at ``order.price`` (its caller's decided price, required); LIMIT and SL-M rest.
        The port carries no market time, so ``updated_at`` stays unset."""
        if order.order_type == "MARKET":
            if order.price is None:
                raise ConfigError("a paper MARKET order needs the price its caller decided")
            return self.fill(order, order.price, None)
        return self.rest(order, None)

    async def cancel(self, broker_order_id: str) -> BrokerOrder:
        return self.cancel_now(broker_order_id, None)

    async def orders_by_tag(self, tag: str) -> list[BrokerOrder]:
        return [o for o in self._orders.values() if o.tag == tag]

    async def orders(self) -> list[BrokerOrder]:
        return list(self._orders.values())

    def open_orders(self) -> list[BrokerOrder]:
        return [o for o in self._orders.values() if o.status == "OPEN"]


def _broker_id(tag: str) -> str:
    return f"paper-{tag}"
