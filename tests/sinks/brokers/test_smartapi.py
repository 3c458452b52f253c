"""SmartApiAdapter against the SmartAPI fake (tests/fixtures/brokers/smartapi.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.credentials import Secret
from engine.ports import BrokerAdapter, OrderRequest
from sinks.brokers import BrokerRejected, BrokerTokenExpired, BrokerUnavailable, SmartApiAdapter
from tests.fixtures.brokers import SmartApiFake

CANARY = "CANARYjwt0a1b2c3d4e5f6"
INSTRUMENTS = {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"},
               "INFY": {"isin": "INE009A01021", "smartapi_token": "1594"}}


def adapter(fake: SmartApiFake, fake_time, **kwargs) -> SmartApiAdapter:
    return SmartApiAdapter(fake.base_url, api_key=Secret(fake.api_key), access_token=Secret(fake.access_token),
                           instruments=INSTRUMENTS, clock=fake_time.clock, sleep=fake_time.sleep, timeout=2.0, **kwargs)


def run(fake, fake_time, body, **kwargs):
    async def main():
        async with adapter(fake, fake_time, **kwargs) as smart:
            return await body(smart)
    return asyncio.run(main())


def market(tag="ord1", qty=10):
    return OrderRequest(tag=tag, symbol="RELIANCE", side="BUY", quantity=qty, order_type="MARKET", product="MIS")


def limit(tag, price="1500.1"):
    return OrderRequest(tag, "INFY", "BUY", 10, "LIMIT", "CNC", price=Decimal(price))


def test_is_a_broker_adapter(smartapi_server, fake_time):
    assert isinstance(adapter(smartapi_server, fake_time), BrokerAdapter)


def test_market_order_wire_format(smartapi_server, fake_time):
    smartapi_server.auto_fill_market("2500.5")
    placed = run(smartapi_server, fake_time, lambda s: s.place(market()))
    assert (placed.status, placed.filled_quantity, placed.average_price) == ("COMPLETE", 10, Decimal("2500.5"))
    assert placed.tag == "ord1" and placed.updated_at is not None
    [request] = smartapi_server.requests_of("place")
    assert request.path == "/rest/secure/angelbroking/order/v1/placeOrder"
    assert request.header("Content-Type").startswith("application/json")
    assert request.header("Authorization") == "Bearer <redacted>" and request.header("X-PrivateKey") == "<redacted>"
    for name, value in (("X-UserType", "USER"), ("X-SourceID", "WEB")):
        assert request.header(name) == value
    assert all(request.header(h) for h in ("X-ClientLocalIP", "X-ClientPublicIP", "X-MACAddress"))
    assert request.json == {"variety": "NORMAL", "tradingsymbol": "RELIANCE-EQ", "symboltoken": "2885",
                            "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET", "producttype": "INTRADAY",
                            "duration": "DAY", "price": "0", "triggerprice": "0", "quantity": "10", "ordertag": "ord1"}


def test_limit_and_sl_m(fake_time):
    with SmartApiFake(instruments={("NSE", "INFY-EQ"): "1594"}) as fake:
        stop = OrderRequest("stp1", "INFY", "SELL", 5, "SL-M", "MIS", trigger_price=Decimal("1450.00"))

        async def body(s):
            return await s.place(limit("lim1")), await s.place(stop)
        placed_limit, placed_stop = run(fake, fake_time, body)
        assert placed_limit.status == "OPEN" and placed_stop.status == "OPEN"  # trigger pending is OPEN
        first, second = (r.json for r in fake.requests_of("place"))
        assert (first["variety"], first["ordertype"], first["producttype"], first["price"]) == ("NORMAL", "LIMIT", "DELIVERY", "1500.1")
        assert (second["variety"], second["ordertype"], second["triggerprice"], second["price"]) == ("STOPLOSS", "STOPLOSS_MARKET", "1450", "0")


def test_unknown_instrument_is_refused_before_sending(smartapi_server, fake_time):
    with pytest.raises(BrokerRejected) as caught:
        run(smartapi_server, fake_time, lambda s: s.place(OrderRequest("u1", "NOPE", "BUY", 1, "MARKET", "MIS")))
    assert caught.value.code == "unknown_instrument" and smartapi_server.requests == []


def test_status_after_fill_partial_fill_and_reject(smartapi_server, fake_time):
    async def body(s):
        a, b, c = [await s.place(limit(t)) for t in ("a1", "b1", "c1")]
        smartapi_server.fill(a.broker_order_id, "1500.1")
        smartapi_server.fill(b.broker_order_id, "1500", qty=4)
        smartapi_server.reject(c.broker_order_id, "RMS: margin exceeds")
        return [(await s.orders_by_tag(t))[0] for t in ("a1", "b1", "c1")]
    a, b, c = run(smartapi_server, fake_time, body)
    assert (a.status, a.filled_quantity, a.average_price) == ("COMPLETE", 10, Decimal("1500.1"))
    assert (b.status, b.filled_quantity) == ("OPEN", 4)
    assert (c.status, c.rejection_reason) == ("REJECTED", "RMS: margin exceeds")


def test_business_error_is_rejected_string_false(fake_time):
    with SmartApiFake(string_false=True, instruments={("NSE", "INFY-EQ"): "9999"}) as fake:
        with pytest.raises(BrokerRejected) as caught:
            run(fake, fake_time, lambda s: s.place(limit("z1")))
        assert caught.value.code == "AB1009" and caught.value.message == "Symbol Not Found"


def test_cancel(smartapi_server, fake_time):
    async def body(s):
        placed = await s.place(limit("x1"))
        fresh = adapter(smartapi_server, fake_time)  # knows nothing of the order: finds its variety in the book
        try:
            cancelled = await fresh.cancel(placed.broker_order_id)
            again = await fresh.cancel(placed.broker_order_id)
        finally:
            await fresh.close()
        return placed, cancelled, again
    placed, cancelled, again = run(smartapi_server, fake_time, body)
    assert cancelled.status == "CANCELLED" and again.status == "CANCELLED"
    assert smartapi_server.requests_of("cancel")[0].json == {"variety": "NORMAL", "orderid": placed.broker_order_id}


def test_dropped_response_leaves_one_order_and_place_returns_it(smartapi_server, fake_time):
    smartapi_server.drop_response_after_accept(1, on="place")

    async def body(s):
        return await s.place(market()), await s.place(market())
    first, second = run(smartapi_server, fake_time, body)
    [booked] = smartapi_server.orders()
    assert first.broker_order_id == second.broker_order_id == booked.order_id
    assert len(smartapi_server.requests_of("place")) == 1


def test_retry_after_500_sends_nothing_twice(smartapi_server, fake_time):
    smartapi_server.server_error(1, on="place")
    placed = run(smartapi_server, fake_time, lambda s: s.place(market()))
    [booked] = smartapi_server.orders()
    assert placed.broker_order_id == booked.order_id
    assert [r.status for r in smartapi_server.requests_of("place")] == [500, 200]
    assert [r.kind for r in smartapi_server.requests][:4] == ["orders", "place", "orders", "place"]


def test_rate_limit_403_is_paced(smartapi_server, fake_time):
    smartapi_server.rate_limit(2, on="place")
    run(smartapi_server, fake_time, lambda s: s.place(market()))
    assert [r.status for r in smartapi_server.requests_of("place")] == [403, 403, 200]
    assert fake_time.sleeps == [0.5, 1.0] and len(smartapi_server.orders()) == 1


@pytest.mark.parametrize("code", ["AG8001", "AG8002"])
@pytest.mark.parametrize("http_status", [200, 401])
def test_token_expiry_raises_without_looping(fake_time, code, http_status):
    with SmartApiFake(expired_errorcode=code, token_error_status=http_status) as fake:
        fake.token_expired()
        with pytest.raises(BrokerTokenExpired) as caught:
            run(fake, fake_time, lambda s: s.place(market()))
        assert caught.value.code == code and len(fake.requests) == 1 and fake_time.sleeps == []


def test_canary_token_never_leaks(fake_time):
    with SmartApiFake(api_key="canaryprivatekey", access_token=CANARY) as fake:
        smart = adapter(fake, fake_time)
        assert CANARY not in repr(smart)
        fake.server_error(10, on="place")
        with pytest.raises(BrokerUnavailable) as unavailable:
            asyncio.run(smart.place(market()))
        fake.token_expired()
        with pytest.raises(BrokerTokenExpired) as expired:
            asyncio.run(adapter(fake, fake_time).place(market()))
        for exc in (unavailable.value, expired.value):
            assert CANARY not in str(exc) and CANARY not in repr(exc) and CANARY not in str(exc.as_dict())
        for request in fake.requests:
            assert CANARY not in request.body and CANARY not in request.path and CANARY not in str(request.query)
            assert all(CANARY not in v and "canaryprivatekey" not in v for v in request.headers.values())
            assert request.header("Authorization") == "Bearer <redacted>"
