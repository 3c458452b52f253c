"""The paper broker behind the broker port (engine.ports.BrokerAdapter), alone and as the desk's venue."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.errors import ConfigError
from engine.orders.paper_broker import PaperBroker
from engine.ports import BrokerAdapter, OrderRequest
from tests.engine.orders.support import Books, bar, final, orders, signal

D = Decimal


def _run(coro):  # noqa: ANN001, ANN202
    return asyncio.run(coro)


def test_it_is_a_broker_adapter_and_answers_through_the_port():
    broker = PaperBroker()
    assert isinstance(broker, BrokerAdapter) and broker.name == "paper"
    market = OrderRequest("a1b2c3", "TCS", "BUY", 5, "MARKET", "MIS", price=D("3500.10"))
    done = _run(broker.place(market))
    assert (done.broker_order_id, done.tag, done.status, done.filled_quantity, done.average_price) == (
        "paper-a1b2c3", "a1b2c3", "COMPLETE", 5, D("3500.10"))
    stop = _run(broker.place(OrderRequest("d4e5f6", "TCS", "SELL", 5, "SL-M", "MIS", trigger_price=D("3480"))))
    assert stop.status == "OPEN" and stop.filled_quantity == 0
    assert [o.status for o in _run(broker.orders_by_tag("d4e5f6"))] == ["OPEN"]
    assert _run(broker.cancel(stop.broker_order_id)).status == "CANCELLED"
    assert _run(broker.cancel(done.broker_order_id)).status == "COMPLETE"  # a filled order cannot be cancelled
    assert _run(broker.orders_by_tag("nope")) == []


def test_a_market_order_without_its_decided_price_and_an_unknown_order_are_refused():
    broker = PaperBroker()
    with pytest.raises(ConfigError, match="price"):
        _run(broker.place(OrderRequest("t1", "TCS", "BUY", 1, "MARKET", "MIS")))
    with pytest.raises(ConfigError, match="no order"):
        _run(broker.cancel("paper-missing"))


def test_the_desk_places_every_fill_and_rest_with_its_broker_so_orders_reconcile_by_tag():
    books = Books()
    books.run(signal("BUY", "10:00", "2500.00", "2550.00", "2480.00"), "10:05")
    desk = books.pb.desks[next(iter(books.pb.desks))]
    entry, target, stop = (final(books.out, "MARKET"), final(books.out, "LIMIT", "OPEN"),
                           final(books.out, "SL-M", "OPEN"))
    by_tag = {o["tag"]: _run(desk.broker.orders_by_tag(o["tag"])) for o in (entry, target, stop)}
    assert [(b.status, b.average_price) for b in by_tag[entry["tag"]]] == [("COMPLETE", D("2500.00"))]
    assert [b.status for b in by_tag[target["tag"]]] == ["OPEN"]
    assert [b.status for b in by_tag[stop["tag"]]] == ["OPEN"]
    # the target fills on the next bar (high 2560 >= 2550); the stop is cancelled at the broker too
    books.tick("10:06", bar("10:05", "2501", "2560", "2495", "2555"))
    assert [b.status for b in _run(desk.broker.orders_by_tag(target["tag"]))] == ["COMPLETE"]
    assert [b.status for b in _run(desk.broker.orders_by_tag(stop["tag"]))] == ["CANCELLED"]
    assert {o["broker_order_id"] for o in orders(books.out)} == {f"paper-{o['tag']}" for o in (entry, target, stop)}
    # the next session lists only its own orders (a broker's "today's orders")
    books.tick("09:16", bar("09:15", "2555", "2556", "2550", "2551"), day="2026-11-03")
    desk.enter(books.pb.watermark)
    assert _run(desk.broker.orders_by_tag(entry["tag"])) == []


def test_a_busy_account_lists_its_open_orders_and_its_latest_finished_ones():
    from engine.orders.paper_broker import FINISHED_KEPT

    broker = PaperBroker()
    resting = _run(broker.place(OrderRequest("rest1", "TCS", "SELL", 1, "LIMIT", "MIS", price=D("3600"))))
    for k in range(FINISHED_KEPT + 50):
        _run(broker.place(OrderRequest(f"t{k}", "TCS", "BUY", 1, "MARKET", "MIS", price=D("3500"))))
    assert [o.status for o in _run(broker.orders_by_tag("rest1"))] == ["OPEN"]  # open orders are never dropped
    assert _run(broker.orders_by_tag("t0")) == [] and len(_run(broker.orders_by_tag(f"t{FINISHED_KEPT + 49}"))) == 1
    assert _run(broker.cancel(resting.broker_order_id)).status == "CANCELLED"
