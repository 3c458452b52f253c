"""UpstoxAdapter against the Upstox v2 fake (tests/fixtures/brokers/upstox.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.credentials import Secret
from engine.ports import BrokerAdapter, OrderRequest
from sinks.brokers import BrokerRejected, BrokerTokenExpired, BrokerUnavailable, UpstoxAdapter
from tests.fixtures.brokers import UpstoxFake

CANARY = "CANARYupx7f6e5d4c3b2a1"
INSTRUMENTS = {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"},
               "INFY": {"isin": "INE009A01021", "smartapi_token": "1594"}}


def adapter(fake: UpstoxFake, fake_time, **kwargs) -> UpstoxAdapter:
    kwargs.setdefault("timeout", 2.0)
    return UpstoxAdapter(fake.base_url, access_token=Secret(fake.access_token), instruments=INSTRUMENTS,
                         clock=fake_time.clock, sleep=fake_time.sleep, **kwargs)


def run(fake, fake_time, body, **kwargs):
    async def main():
        async with adapter(fake, fake_time, **kwargs) as upstox:
            return await body(upstox)
    return asyncio.run(main())


def market(tag="ord1", qty=10):
    return OrderRequest(tag=tag, symbol="RELIANCE", side="BUY", quantity=qty, order_type="MARKET", product="MIS")


def limit(tag, price="1500.1"):
    return OrderRequest(tag, "INFY", "BUY", 10, "LIMIT", "CNC", price=Decimal(price))


def test_is_a_broker_adapter(upstox_server, fake_time):
    assert isinstance(adapter(upstox_server, fake_time), BrokerAdapter)


def test_market_order_wire_format(upstox_server, fake_time):
    upstox_server.auto_fill_market("2500.5")
    placed = run(upstox_server, fake_time, lambda u: u.place(market()))
    assert (placed.status, placed.filled_quantity, placed.average_price) == ("COMPLETE", 10, Decimal("2500.5"))
    assert placed.tag == "ord1" and placed.updated_at is not None
    [request] = upstox_server.requests_of("place")
    assert request.method == "POST" and request.path == "/v2/order/place"
    assert request.header("Content-Type").startswith("application/json")
    assert request.header("Authorization") == "Bearer <redacted>"
    assert request.json == {"quantity": 10, "product": "I", "validity": "DAY", "price": 0, "tag": "ord1",
                            "instrument_token": "NSE_EQ|INE002A01018", "order_type": "MARKET", "transaction_type": "BUY",
                            "disclosed_quantity": 0, "trigger_price": 0, "is_amo": False}


def test_limit_and_sl_m(upstox_server, fake_time):
    stop = OrderRequest("stp1", "INFY", "SELL", 5, "SL-M", "MIS", trigger_price=Decimal("1450.00"))

    async def body(u):
        return await u.place(limit("lim1")), await u.place(stop)
    placed_limit, placed_stop = run(upstox_server, fake_time, body)
    assert placed_limit.status == "OPEN" and placed_stop.status == "OPEN"  # trigger pending is OPEN
    first, second = (r.json for r in upstox_server.requests_of("place"))
    assert (first["order_type"], first["product"], first["price"], first["instrument_token"]) == ("LIMIT", "D", 1500.1, "NSE_EQ|INE009A01021")
    assert (second["order_type"], second["trigger_price"], second["price"], second["product"]) == ("SL-M", 1450, 0, "I")


def test_status_after_fill_partial_fill_and_reject(upstox_server, fake_time):
    async def body(u):
        a, b, c = [await u.place(limit(t)) for t in ("a1", "b1", "c1")]
        upstox_server.fill(a.broker_order_id, "1500.1")
        upstox_server.fill(b.broker_order_id, "1500", qty=4)
        upstox_server.reject(c.broker_order_id, "RMS: insufficient funds")
        return [(await u.orders_by_tag(t))[0] for t in ("a1", "b1", "c1")]
    a, b, c = run(upstox_server, fake_time, body)
    assert (a.status, a.filled_quantity, a.average_price) == ("COMPLETE", 10, Decimal("1500.1"))
    assert (b.status, b.filled_quantity) == ("OPEN", 4)
    assert (c.status, c.rejection_reason) == ("REJECTED", "RMS: insufficient funds")


def test_refused_market_order_is_rejected(fake_time):
    with UpstoxFake(market_orders_allowed=False) as fake:
        with pytest.raises(BrokerRejected) as caught:
            run(fake, fake_time, lambda u: u.place(market()))
        assert caught.value.code == "UDAPI1158" and caught.value.status == 400 and caught.value.tag == "ord1"
        assert len(fake.requests_of("place")) == 1


def test_cancel(upstox_server, fake_time):
    async def body(u):
        placed = await u.place(limit("x1"))
        return placed, await u.cancel(placed.broker_order_id), await u.cancel(placed.broker_order_id)
    placed, cancelled, again = run(upstox_server, fake_time, body)
    assert cancelled.status == "CANCELLED" and again.status == "CANCELLED"
    request = upstox_server.requests_of("cancel")[0]
    assert request.method == "DELETE" and request.path == "/v2/order/cancel" and request.query == {"order_id": placed.broker_order_id}


def test_dropped_response_leaves_one_order_and_place_returns_it(upstox_server, fake_time):
    upstox_server.drop_response_after_accept(1, on="place")

    async def body(u):
        return await u.place(market()), await u.place(market())
    first, second = run(upstox_server, fake_time, body)
    [booked] = upstox_server.orders()
    assert first.broker_order_id == second.broker_order_id == booked.order_id
    assert len(upstox_server.requests_of("place")) == 1


def test_timeout_after_accept_leaves_one_order(upstox_server, fake_time):
    upstox_server.slow(1.0, count=1, on="place")
    placed = run(upstox_server, fake_time, lambda u: u.place(market()), timeout=0.3)
    [booked] = upstox_server.orders()
    assert placed.broker_order_id == booked.order_id and len(upstox_server.requests_of("place")) == 1


def test_retry_after_500_sends_nothing_twice(upstox_server, fake_time):
    upstox_server.server_error(1, on="place")
    placed = run(upstox_server, fake_time, lambda u: u.place(market()))
    [booked] = upstox_server.orders()
    assert placed.broker_order_id == booked.order_id
    assert [r.status for r in upstox_server.requests_of("place")] == [500, 200]
    assert [r.kind for r in upstox_server.requests][:4] == ["orders", "place", "orders", "place"]


def test_429_is_paced(upstox_server, fake_time):
    upstox_server.rate_limit(2, on="place")
    run(upstox_server, fake_time, lambda u: u.place(market()))
    assert [r.status for r in upstox_server.requests_of("place")] == [429, 429, 200]
    assert fake_time.sleeps == [0.5, 1.0] and len(upstox_server.orders()) == 1


def test_token_expiry_raises_without_looping(upstox_server, fake_time):
    upstox_server.token_expired()
    with pytest.raises(BrokerTokenExpired) as caught:
        run(upstox_server, fake_time, lambda u: u.place(market()))
    assert caught.value.code == "UDAPI100050" and caught.value.status == 401
    assert len(upstox_server.requests) == 1 and fake_time.sleeps == []


def test_canary_token_never_leaks(fake_time):
    with UpstoxFake(access_token=CANARY) as fake:
        upstox = adapter(fake, fake_time)
        assert CANARY not in repr(upstox)
        fake.server_error(10, on="place")
        with pytest.raises(BrokerUnavailable) as unavailable:
            asyncio.run(upstox.place(market()))
        fake.token_expired()
        with pytest.raises(BrokerTokenExpired) as expired:
            asyncio.run(adapter(fake, fake_time).place(market()))
        for exc in (unavailable.value, expired.value):
            assert CANARY not in str(exc) and CANARY not in repr(exc) and CANARY not in str(exc.as_dict())
        for request in fake.requests:
            assert CANARY not in request.body and CANARY not in request.path and CANARY not in str(request.query)
            assert all(CANARY not in v for v in request.headers.values())
            assert request.header("Authorization") == "Bearer <redacted>"
