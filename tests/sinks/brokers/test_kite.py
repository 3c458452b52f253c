"""KiteAdapter against the Kite Connect fake (tests/fixtures/brokers/kite.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.credentials import Secret
from engine.ports import BrokerAdapter, OrderRequest
from sinks.brokers import BrokerRejected, BrokerTokenExpired, BrokerUnavailable, KiteAdapter, TokenBucket
from tests.fixtures.brokers import KiteFake

CANARY = "CANARYtok3n9f8e7d6c5b4a"


def adapter(fake: KiteFake, fake_time, **kwargs) -> KiteAdapter:
    return KiteAdapter(fake.base_url, api_key=Secret(fake.api_key), access_token=Secret(fake.access_token),
                       clock=fake_time.clock, sleep=fake_time.sleep, timeout=2.0, **kwargs)


def run(fake, fake_time, body, **kwargs):
    async def main():
        async with adapter(fake, fake_time, **kwargs) as kite:
            return await body(kite)
    return asyncio.run(main())


def market(tag="ord1", side="BUY", qty=10):
    return OrderRequest(tag=tag, symbol="RELIANCE", side=side, quantity=qty, order_type="MARKET", product="MIS")


def test_is_a_broker_adapter(kite_server, fake_time):
    assert isinstance(adapter(kite_server, fake_time), BrokerAdapter)


def test_market_order_wire_format(kite_server, fake_time):
    kite_server.auto_fill_market("2500.5")
    placed = run(kite_server, fake_time, lambda k: k.place(market()))
    assert placed.status == "COMPLETE" and placed.filled_quantity == 10 and placed.average_price == Decimal("2500.5")
    assert placed.tag == "ord1" and placed.updated_at is not None
    [request] = kite_server.requests_of("place")
    assert request.method == "POST" and request.path == "/orders/regular"
    assert request.header("Content-Type").startswith("application/x-www-form-urlencoded")
    assert request.header("X-Kite-Version") == "3"
    assert request.header("Authorization") == "token <redacted>"
    assert request.form == {"tradingsymbol": "RELIANCE", "exchange": "NSE", "transaction_type": "BUY",
                            "order_type": "MARKET", "quantity": "10", "product": "MIS", "validity": "DAY", "tag": "ord1"}
    # idempotent by tag: the day's orders were listed before sending
    assert [r.kind for r in kite_server.requests] == ["orders", "place", "order"]


def test_limit_and_sl_m(kite_server, fake_time):
    limit = OrderRequest("lim1", "INFY", "SELL", 5, "LIMIT", "CNC", price=Decimal("1500.10"))
    stop = OrderRequest("stp1", "INFY", "SELL", 5, "SL-M", "MIS", trigger_price=Decimal("1450.00"))

    async def body(k):
        return await k.place(limit), await k.place(stop)
    placed_limit, placed_stop = run(kite_server, fake_time, body)
    assert placed_limit.status == "OPEN" and placed_stop.status == "OPEN"  # TRIGGER PENDING is OPEN
    forms = [r.form for r in kite_server.requests_of("place")]
    assert forms[0]["order_type"] == "LIMIT" and forms[0]["price"] == "1500.1" and "trigger_price" not in forms[0]
    assert forms[0]["product"] == "CNC" and forms[0]["transaction_type"] == "SELL"
    assert forms[1]["order_type"] == "SL-M" and forms[1]["trigger_price"] == "1450" and "price" not in forms[1]
    assert kite_server.order(placed_stop.broker_order_id).status.value == "TRIGGER PENDING"


def test_status_after_fill_partial_fill_and_reject(kite_server, fake_time):
    async def body(k):
        a = await k.place(OrderRequest("a1", "TCS", "BUY", 10, "LIMIT", "MIS", price=Decimal("3000")))
        b = await k.place(OrderRequest("b1", "TCS", "BUY", 10, "LIMIT", "MIS", price=Decimal("3000")))
        c = await k.place(OrderRequest("c1", "TCS", "BUY", 10, "LIMIT", "MIS", price=Decimal("3000")))
        kite_server.fill(a.broker_order_id, "2999.9")
        kite_server.fill(b.broker_order_id, "3000", qty=4)
        kite_server.reject(c.broker_order_id, "Insufficient funds")
        return [(await k.orders_by_tag(t))[0] for t in ("a1", "b1", "c1")]
    a, b, c = run(kite_server, fake_time, body)
    assert (a.status, a.filled_quantity, a.average_price) == ("COMPLETE", 10, Decimal("2999.9"))
    assert (b.status, b.filled_quantity, b.average_price) == ("OPEN", 4, Decimal("3000"))
    assert (c.status, c.filled_quantity, c.rejection_reason) == ("REJECTED", 0, "Insufficient funds")


def test_cancel(kite_server, fake_time):
    async def body(k):
        placed = await k.place(OrderRequest("x1", "TCS", "BUY", 1, "LIMIT", "MIS", price=Decimal("3000")))
        cancelled = await k.cancel(placed.broker_order_id)
        again = await k.cancel(placed.broker_order_id)  # already final: returned as it is
        return placed, cancelled, again
    placed, cancelled, again = run(kite_server, fake_time, body)
    assert cancelled.status == "CANCELLED" and again.status == "CANCELLED"
    assert kite_server.requests_of("cancel")[0].path == f"/orders/regular/{placed.broker_order_id}"
    assert kite_server.requests_of("cancel")[0].method == "DELETE"


def test_broker_rejection_is_broker_rejected(kite_server, fake_time):
    with pytest.raises(BrokerRejected) as caught:  # a tag the adapter refuses before sending
        run(kite_server, fake_time, lambda k: k.place(market(tag="not-alnum")))
    assert caught.value.code == "invalid_order"
    assert kite_server.requests_of("place") == []


def test_dropped_response_leaves_one_order_and_place_returns_it(kite_server, fake_time):
    kite_server.drop_response_after_accept(1, on="place")

    async def body(k):
        return await k.place(market()), await k.place(market())
    first, second = run(kite_server, fake_time, body)
    [booked] = kite_server.orders()
    assert first.broker_order_id == second.broker_order_id == booked.order_id
    assert len(kite_server.requests_of("place")) == 1


def test_retry_after_500_sends_nothing_twice(kite_server, fake_time):
    kite_server.server_error(1, on="place")
    placed = run(kite_server, fake_time, lambda k: k.place(market()))
    [booked] = kite_server.orders()
    assert placed.broker_order_id == booked.order_id
    places = kite_server.requests_of("place")
    assert [r.status for r in places] == [500, 200]
    kinds = [r.kind for r in kite_server.requests]
    assert kinds[:4] == ["orders", "place", "orders", "place"]  # reconciled before the resend


def test_persistent_5xx_is_unavailable_after_reconciling(kite_server, fake_time):
    kite_server.server_error(10, on="place", status=503)
    with pytest.raises(BrokerUnavailable) as caught:
        run(kite_server, fake_time, lambda k: k.place(market()))
    assert caught.value.reconciled and caught.value.tag == "ord1" and caught.value.status == 503
    assert kite_server.orders() == [] and len(kite_server.requests_of("place")) == 3


def test_429_is_paced(kite_server, fake_time):
    kite_server.rate_limit(2, on="place")
    placed = run(kite_server, fake_time, lambda k: k.place(market()))
    assert placed.status == "OPEN"
    assert [r.status for r in kite_server.requests_of("place")] == [429, 429, 200]
    assert fake_time.sleeps == [0.5, 1.0]  # the backoffs, and nothing else
    assert len(kite_server.orders()) == 1


def test_429_gives_up(kite_server, fake_time):
    kite_server.rate_limit(None, on="orders")
    with pytest.raises(BrokerUnavailable):
        run(kite_server, fake_time, lambda k: k.orders_by_tag("x"), rate_retries=3)
    assert len(kite_server.requests_of("orders")) == 4


def test_token_expiry_raises_without_looping(kite_server, fake_time):
    kite_server.token_expired()
    with pytest.raises(BrokerTokenExpired) as caught:
        run(kite_server, fake_time, lambda k: k.place(market()))
    assert caught.value.code == "TokenException" and caught.value.status == 403
    assert len(kite_server.requests) == 1 and fake_time.sleeps == []


def test_canary_token_never_leaks(fake_time):
    with KiteFake(api_key="canaryapikey", access_token=CANARY) as fake:
        kite = adapter(fake, fake_time)
        assert CANARY not in repr(kite)
        fake.server_error(10, on="place")
        with pytest.raises(BrokerUnavailable) as unavailable:
            asyncio.run(kite.place(market()))
        fake.token_expired()
        with pytest.raises(BrokerTokenExpired) as expired:
            asyncio.run(adapter(fake, fake_time).place(market()))
        for exc in (unavailable.value, expired.value):
            assert CANARY not in str(exc) and CANARY not in repr(exc) and CANARY not in str(exc.as_dict())
        for request in fake.requests:
            assert CANARY not in request.body and CANARY not in request.path and CANARY not in str(request.query)
            assert all(CANARY not in v for v in request.headers.values())
            assert request.header("Authorization") == "token <redacted>"


def test_token_bucket_paces_at_the_rate(fake_time):
    bucket = TokenBucket(10, clock=fake_time.clock, sleep=fake_time.sleep)

    async def burst():
        for _ in range(15):
            await bucket.take()
    asyncio.run(burst())
    assert len(fake_time.sleeps) == 5 and abs(sum(fake_time.sleeps) - 0.5) < 1e-9


def test_adapter_for_credentials(kite_server, fake_time):
    from engine.credentials import Credentials
    from sinks.brokers import BrokerRejected as Rejected, SmartApiAdapter, UpstoxAdapter, adapter_for

    def creds(broker, base):
        return Credentials(account_id="acc1", user_id="u1", broker=broker, api_base_url=base, client_code="C1",
                           api_key=Secret(kite_server.api_key), access_token=Secret(kite_server.access_token),
                           refresh_token=None, token_expires_at=None)
    kite = adapter_for(creds("Zerodha", kite_server.base_url), clock=fake_time.clock, sleep=fake_time.sleep)
    assert isinstance(kite, KiteAdapter) and kite.account_id == "acc1"
    assert asyncio.run(kite.orders_by_tag("none")) == []
    assert isinstance(adapter_for(creds("AngelOne", None)), SmartApiAdapter)
    upstox = adapter_for(creds("upstox", None))
    assert isinstance(upstox, UpstoxAdapter) and upstox.base_url == "https://api.upstox.com/v2"
    with pytest.raises(Rejected):
        adapter_for(creds("Paper", None))


def test_placed_order_whose_state_cannot_be_read_is_open(kite_server, fake_time):
    kite_server.server_error(10, on="order")  # the order's history keeps failing after it was placed
    placed = run(kite_server, fake_time, lambda k: k.place(market()))
    [booked] = kite_server.orders()
    assert (placed.broker_order_id, placed.status, placed.tag) == (booked.order_id, "OPEN", "ord1")
    assert len(kite_server.requests_of("place")) == 1


def test_dropped_cancel_answer_is_reconciled(kite_server, fake_time):
    kite_server.drop_response_after_accept(1, on="cancel")

    async def body(k):
        placed = await k.place(OrderRequest("d1", "TCS", "BUY", 1, "LIMIT", "MIS", price=Decimal("3000")))
        return await k.cancel(placed.broker_order_id)
    cancelled = run(kite_server, fake_time, body)
    assert cancelled.status == "CANCELLED"
    # aiohttp itself resends an idempotent DELETE once when a reused connection closes unanswered (it never
    # resends a POST: the place tests see one placement); the resend is refused as final and read back
    assert [r.dropped for r in kite_server.requests_of("cancel")][0] is True
    assert [o.status.value for o in kite_server.orders()] == ["CANCELLED"]


def test_standing_rate_limit_is_absorbed_in_real_time(kite_server):
    """Against Kite's 10 requests a second (a sliding window at the fake), a burst of 14 all succeed."""
    kite_server.max_rate(10)

    async def body():
        async with KiteAdapter(kite_server.base_url, api_key=Secret(kite_server.api_key),
                               access_token=Secret(kite_server.access_token), backoff=0.2) as kite:
            return [await kite.orders_by_tag("x") for _ in range(14)]
    assert asyncio.run(body()) == [[]] * 14
    assert sum(r.status == 200 for r in kite_server.requests) == 14
