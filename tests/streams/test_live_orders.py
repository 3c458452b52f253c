"""Live orders through each broker's fake (tests/fixtures/brokers): the order router (streams.live) and the desks.

The order stage's books (engine.orders.stage.PartitionBooks) run a whole replayed session twice, in lock
step: once on paper, once live through the router, real HTTP and the broker's fake. The fake fills
what the paper broker filled, at its price: a MARKET order as it is booked, a resting exit when the
paper run filled it (the market reached it). The live run must then make the same decisions, order for
order (same ids and tags, sides, quantities, fills), with exactly one order at the broker per order.
Then the failure modes, each against a real fake: a lost answer, a restart with orders in flight,
429s, an expired token, a race of both exits, the kill switch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from engine.credentials import Credentials, Secret
from engine.errors import AccountUnavailable
from engine.orders.desk import TOKEN_EXPIRED
from engine.orders.execution import Execution, Product
from engine.orders.risk import RiskLimits
from engine.orders.stage import PartitionBooks, clock_bar, clock_input, signal_input
from engine.outputs import signal_message
from engine.ticks import decode_packets
from engine.domain import Timeframe
from sinks.brokers import TokenBucket, adapter_for
from streams.live import LiveRouter
from tests.fixtures.brokers import KiteFake, SmartApiFake, UpstoxFake
from tests.streams.support import ema_cross_pipeline, make_minute_history

USER = "6f1c0000-0000-0000-0000-0000000000aa"
ACCOUNT = "0b7c4f4e-5d1a-4c2b-9a57-3f1e2d9c8b01"
SYMBOLS = ("RELIANCE", "TCS", "INFY")
CASH = Decimal("1000000")
#: real identifiers (engine/data/broker_instruments.csv)
IDS = {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"},
       "TCS": {"isin": "INE467B01029", "smartapi_token": "11536"},
       "INFY": {"isin": "INE009A01021", "smartapi_token": "1594"}}
BROKERS = {"zerodha": "Zerodha", "angelone": "AngelOne", "upstox": "Upstox"}


def make_fake(broker: str):
    if broker == "zerodha":
        return KiteFake()
    if broker == "angelone":
        return SmartApiFake(instruments={("NSE", f"{s}-EQ"): v["smartapi_token"] for s, v in IDS.items()})
    return UpstoxFake(instruments={f"NSE_EQ|{v['isin']}": s for s, v in IDS.items()})


def credentials(broker: str, fake) -> Credentials:
    api_key = getattr(fake, "api_key", None)
    return Credentials(account_id=ACCOUNT, user_id=USER, broker=BROKERS[broker], api_base_url=fake.base_url,
                       client_code="AB1234", api_key=Secret(api_key) if api_key else None,
                       access_token=Secret(fake.access_token), refresh_token=None, token_expires_at=None)


# --- the session's orders.inputs -----------------------------------------------------------------


def session_inputs(tmp_path: Path) -> tuple[list[bytes], list[bytes]]:
    """The orders.inputs messages of one replayed session (minute history, every tick closes a bar) of an
    ema_cross row trading MIS 10 shares with ATR target and stop: (paper inputs, live inputs), minute by minute."""
    path = tmp_path / "history.jsonl"
    make_minute_history(path, SYMBOLS, sessions=1)
    pipeline = ema_cross_pipeline(USER, SYMBOLS)
    registry = pipeline.registry
    paper_ex = Execution(Product.MIS, quantity=10)
    live_ex = Execution(Product.MIS, quantity=10, mode="live", broker_account=ACCOUNT)
    lines = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
    paper, live = [], []
    for start in range(0, len(lines), len(SYMBOLS)):  # one minute of every symbol per step
        decoded = decode_packets(lines[start: start + len(SYMBOLS)], registry)
        _, step = pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
        for sig in step.signals:
            msg = signal_message(sig, sig.bar.time)
            paper.append(orjson.dumps(signal_input(0, paper_ex, msg)))
            live.append(orjson.dumps(signal_input(0, live_ex, msg)))
        bars = [b for b in step.bars if b.timeframe is Timeframe.M1]
        if bars:
            through = max(b.open_ns for b in bars) + 60 * 10**9
            clock = orjson.dumps(clock_input({0: through}, [clock_bar(b.symbol, b.open_ns, b.open, b.high, b.low,
                                                                        b.close) for b in bars]))
            paper.append(clock)
            live.append(clock)
    return paper, live


# --- a live stage: the books, the router, and what they emitted ------------------------------------


class LiveStage:
    """PartitionBooks + LiveRouter as streams.orders wires them, without Kafka: outputs are kept here."""

    def __init__(self, open_account: Callable[[str], Any], *, limits: RiskLimits = RiskLimits(max_positions=50),
                 poll_s: float = 0.05) -> None:
        self.books = PartitionBooks(CASH, lambda _: limits)
        self.orders: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.book: dict[str, Any] | None = None
        self.inactive: list[str] = []
        self.failures: list[BaseException] = []
        self.router = LiveRouter(open_account, self.deliver, self.mark_inactive, self.failures.append,
                                 poll_s=poll_s, retry_for_s=1.0, reopen_s=0.2)

    async def deliver(self, partition: int, user: str, update) -> None:
        self.books.on_broker(user, update)
        self.take(self.books.advance())

    async def mark_inactive(self, account: str) -> None:
        self.inactive.append(account)

    def take(self, outputs) -> None:
        for kind, _, msg in outputs:
            if kind == "broker":
                self.router.submit(0, msg)
            elif kind == "orders":
                self.orders[msg["id"]] = msg
                self.history.append(msg)
            elif kind == "notifications":
                self.notes.append(msg)
            elif kind == "portfolios":
                self.book = msg

    def add(self, raw: bytes) -> None:
        self.books.add(raw)
        self.take(self.books.advance())

    async def settle(self, until: Callable[[], bool] = lambda: True, timeout: float = 10.0, *,
                     router: bool = True) -> None:
        """Until ``until()`` holds and (with ``router``) the router has nothing in flight."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not ((self.router.settled() or not router) and until()):
            assert not self.failures, self.failures
            assert asyncio.get_running_loop().time() < deadline, "the router did not settle"
            await asyncio.sleep(0.01)


def opener(broker: str, fake, **kwargs: Any) -> Callable[[str], Any]:
    """The router's ``open_account`` for the fake. Pacing is the brokers' (10 or 20 requests/s) unless ``bucket``
    says otherwise: the session tests lift it to replay a day in seconds; the 429 test keeps it."""
    async def open_account(account: str):
        if account != ACCOUNT:
            raise AccountUnavailable("broker_account_unknown", f"no account {account}")
        return adapter_for(credentials(broker, fake), instruments=IDS, timeout=2.0, **kwargs)
    return open_account


def order_view(msg: dict[str, Any]) -> tuple:
    return (msg["id"], msg["tag"], msg["symbol"], msg["transaction_type"], msg["order_type"], msg["quantity"],
            msg["status"], msg["filled_quantity"], msg["average_price"], msg["rejection_reason"], msg["fees"],
            msg["taxes"])


# --- a whole session, live versus paper, per broker -------------------------------------------------


@pytest.mark.parametrize("broker", ["zerodha", "angelone", "upstox"])
def test_a_replayed_session_live_makes_the_paper_decisions(broker, tmp_path):
    paper_inputs, live_inputs = session_inputs(tmp_path)

    async def scenario(fake):
        paper = PartitionBooks(CASH, lambda _: RiskLimits(max_positions=50))
        paper_orders: dict[str, dict[str, Any]] = {}
        prices: dict[str, str] = {}  # tag -> the paper fill price of a MARKET order
        fake.auto_fill_market(lambda order: prices.get(order.tag))
        live = LiveStage(opener(broker, fake, bucket=TokenBucket(1000)))
        book = None
        try:
            for p_raw, l_raw in zip(paper_inputs, live_inputs):
                paper.add(p_raw)
                exits = []
                for kind, _, msg in paper.advance():
                    if kind == "orders":
                        paper_orders[msg["id"]] = msg
                        if msg["status"] == "COMPLETE" and msg["order_type"] == "MARKET":
                            prices[msg["tag"]] = msg["average_price"]
                        elif msg["status"] == "COMPLETE":
                            exits.append(msg)
                    elif kind == "portfolios":
                        book = msg
                for msg in exits:  # the market reached a resting exit: the broker fills it
                    [at_broker] = fake.orders_by_tag(msg["tag"])
                    fake.fill(at_broker.order_id, msg["average_price"])
                    await live.settle(lambda: live.orders[msg["id"]]["status"] == "COMPLETE")
                live.add(l_raw)
                await live.settle()
        finally:
            await live.router.close()
        return paper_orders, book, live

    with make_fake(broker) as fake:
        paper_orders, book, live = asyncio.run(scenario(fake))
        at_broker = fake.orders()
    kinds = {o["order_type"] for o in paper_orders.values() if o["status"] == "COMPLETE"}
    assert len(paper_orders) >= 20 and {"MARKET", "LIMIT", "SL-M"} <= kinds, (len(paper_orders), kinds)
    assert sorted(map(order_view, live.orders.values())) == sorted(map(order_view, paper_orders.values()))
    for field in ("available_cash", "realized_pnl", "unrealized_pnl", "total_value"):
        assert live.book["portfolio"][field] == book["portfolio"][field], field
    # exactly one order at the broker per order that reached it, under its tag; exits sent on the tick grid
    placed = [o for o in paper_orders.values() if o["rejection_reason"] is None]
    assert sorted(o.tag for o in at_broker) == sorted(o["tag"] for o in placed)
    for o in at_broker:
        sent = live.orders[next(k for k, v in live.orders.items() if v["tag"] == o.tag)]
        assert sent["broker_account_id"] == ACCOUNT and sent["broker_order_id"] == o.order_id


# --- failure modes, each against a real fake -----------------------------------------------------------

OPEN_NS = int(dt.datetime(2026, 1, 5, 9, 15, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))).timestamp()) * 10**9
LIVE = {"mode": "live", "broker_account": ACCOUNT, "product": "MIS", "quantity": 10, "slippage_bps": "0"}


def at(minute: int) -> str:
    return dt.datetime.fromtimestamp((OPEN_NS + minute * 60 * 10**9) / 1e9, dt.timezone(dt.timedelta(hours=5,
                                                                                                     minutes=30))).isoformat()


def signal(sid: str, side: str, minute: int, *, symbol: str = "RELIANCE", price: str = "2500.00",
           target: str | None = "2550.03", stop: str | None = "2480.02") -> bytes:
    """A ``signal`` input of a 1m row, decided at the close of the bar that opened at ``minute``."""
    msg = {"id": sid, "timestamp": at(minute), "symbol": symbol, "strategy_name": "ema_cross", "signal_type": side,
           "confidence_score": "0.8", "entry_price": price, "target_price": target, "stop_loss": stop,
           "user_id": USER, "created_by_strategy_id": "6f1c0000-0000-0000-0000-000000000001", "market_data": {},
           "timeframe": "1m", "bar_time": at(minute)}
    return orjson.dumps({"kind": "signal", "source": 0, "execution": LIVE, "signal": msg})


def clock(minute: int, symbol: str = "RELIANCE", price: str = "2500.00") -> bytes:
    """The 1m bar that opened at ``minute`` closed (flat at ``price``), and the source is through its close."""
    bar = {"symbol": symbol, "time": at(minute), "open": price, "high": price, "low": price, "close": price}
    return orjson.dumps({"kind": "clock", "sources": {"0": OPEN_NS + (minute + 1) * 60 * 10**9}, "bars": [bar]})


def entered(stage: LiveStage) -> dict[str, dict[str, Any]]:
    """The stage's orders by kind of the first entry: entry, target, stop."""
    by_type = {o["order_type"]: o for o in stage.history if o["symbol"] == "RELIANCE"}
    return {"entry": by_type.get("MARKET"), "target": by_type.get("LIMIT"), "stop": by_type.get("SL-M")}


async def enter(stage: LiveStage, sid: str = "s1", minute: int = 0) -> None:
    stage.add(signal(sid, "BUY", minute))
    stage.add(clock(minute))
    await stage.settle(lambda: all(o is not None and o["status"] == "OPEN"
                                   for k, o in entered(stage).items() if k != "entry"))


@pytest.mark.parametrize("broker", ["zerodha", "angelone", "upstox"])
def test_a_lost_answer_leaves_exactly_one_order_at_the_broker(broker):
    async def scenario(fake):
        fake.auto_fill_market("2500.00")
        fake.drop_response_after_accept(on="place")  # the broker books the entry; its answer never comes
        stage = LiveStage(opener(broker, fake, bucket=TokenBucket(1000)))
        try:
            await enter(stage)
        finally:
            await stage.router.close()
        return stage

    with make_fake(broker) as fake:
        stage = asyncio.run(scenario(fake))
        orders = fake.orders()
        places = fake.requests_of("place")
    entry = entered(stage)["entry"]
    assert [o.tag for o in orders].count(entry["tag"]) == 1 and len(orders) == 3  # entry, target, stop
    assert places[0].dropped and len(places) == 3  # the entry once (dropped), then the two exits
    assert (entry["status"], entry["filled_quantity"], entry["average_price"]) == ("COMPLETE", 10, "2500.00")
    assert entry["broker_order_id"] == next(o.order_id for o in orders if o.tag == entry["tag"])


def test_a_restart_with_orders_in_flight_reconciles_without_resending():
    """The checkpoint was taken after the entry was decided, before any answer: the restarted stage sends the
    place again, the adapter finds the order by tag and sends nothing; then exits placed once, fills followed."""
    async def first(fake):
        stage = LiveStage(opener("zerodha", fake, bucket=TokenBucket(1000)))
        stage.add(signal("s1", "BUY", 0))
        stage.add(clock(0))
        checkpoint = orjson.dumps(stage.books.to_json())  # entry PENDING: no answer yet
        await stage.settle(lambda: entered(stage)["stop"] is not None and entered(stage)["stop"]["status"] == "OPEN")
        await stage.router.close()  # kill -9: whatever came after the checkpoint is lost
        return checkpoint

    async def second(fake, checkpoint):
        stage = LiveStage(opener("zerodha", fake, bucket=TokenBucket(1000)))
        stage.books.restore(orjson.loads(checkpoint))
        stage.take(stage.books.live_commands())
        try:
            await stage.settle(lambda: entered(stage)["stop"] is not None
                               and entered(stage)["stop"]["status"] == "OPEN")
            target = entered(stage)["target"]
            [at_broker] = fake.orders_by_tag(target["tag"])
            fake.fill(at_broker.order_id, "2550.05")  # the market reaches the target while nobody watches
            await stage.settle(lambda: entered(stage)["stop"]["status"] == "CANCELLED")
        finally:
            await stage.router.close()
        return stage

    with KiteFake() as fake:
        fake.auto_fill_market("2500.00")
        checkpoint = asyncio.run(first(fake))
        assert len(fake.requests_of("place")) == 3
        stage = asyncio.run(second(fake, checkpoint))
        places = fake.requests_of("place")
        tags = sorted(o.tag for o in fake.orders())
    assert len(places) == 3 and len(tags) == len(set(tags)) == 3  # nothing sent twice
    orders = entered(stage)
    assert orders["target"]["status"] == "COMPLETE" and orders["target"]["average_price"] == "2550.05"
    book = stage.book["portfolio"]
    assert book["realized_pnl"] == str((Decimal("50.05") * 10 - Decimal(orders["entry"]["fees"])
                                        - Decimal(orders["entry"]["taxes"]) - Decimal(orders["target"]["fees"])
                                        - Decimal(orders["target"]["taxes"])).quantize(Decimal("0.01")))
    assert stage.book["holdings"] == []


def test_429s_are_paced_and_the_order_placed_once():
    async def scenario(fake):
        fake.auto_fill_market("2500.00")
        fake.rate_limit(2, on="place")
        stage = LiveStage(opener("zerodha", fake))  # Kite's own pacing: 10 requests/s
        try:
            await enter(stage)
        finally:
            await stage.router.close()
        return stage

    with KiteFake() as fake:
        stage = asyncio.run(scenario(fake))
        statuses = [r.status for r in fake.requests_of("place")]
        orders = fake.orders()
    assert statuses[:3] == [429, 429, 200] and len(orders) == 3
    assert entered(stage)["entry"]["status"] == "COMPLETE"
    assert not [o for o in stage.orders.values() if o["status"] == "REJECTED"]


CANARY = "CANARYtok3n9f8e7d6c5b4a"


@pytest.mark.parametrize("broker", ["zerodha", "angelone", "upstox"])
def test_an_expired_token_rejects_notifies_once_and_does_not_loop(broker, caplog):
    async def scenario(fake):
        fake.token_expired()
        stage = LiveStage(opener(broker, fake, bucket=TokenBucket(1000)))
        try:
            stage.add(signal("s1", "BUY", 0))
            stage.add(clock(0))
            await stage.settle(lambda: entered(stage)["entry"]["status"] == "REJECTED")
            before = len(fake.requests)
            stage.add(signal("s2", "BUY", 1, symbol="TCS", price="3500.00", target=None, stop=None))
            stage.add(clock(1, "TCS", "3500.00"))
            await stage.settle(lambda: len([o for o in stage.orders.values() if o["status"] == "REJECTED"]) == 2)
            await asyncio.sleep(0.5)  # nothing retries behind our back
            after = len(fake.requests)
        finally:
            await stage.router.close()
        return stage, before, after

    fake = {"zerodha": lambda: KiteFake(access_token=CANARY), "angelone": lambda: SmartApiFake(access_token=CANARY),
            "upstox": lambda: UpstoxFake(access_token=CANARY)}[broker]()
    with caplog.at_level("DEBUG"), fake:
        stage, before, after = asyncio.run(scenario(fake))
    rejected = [o for o in stage.orders.values() if o["status"] == "REJECTED"]
    assert [o["rejection_reason"] for o in rejected] == [TOKEN_EXPIRED, TOKEN_EXPIRED]
    assert before == after  # the dead account's second order never reached the broker
    assert stage.inactive == [ACCOUNT]
    urgent = [n for n in stage.notes if n["priority"] == "URGENT"]
    assert len(urgent) == 1 and "connect" in urgent[0]["message"]
    assert stage.book["holdings"] == [] and stage.book["portfolio"]["available_cash"] == "1000000.00"
    everything = json.dumps([stage.history, stage.notes, stage.book]) + caplog.text
    assert CANARY not in everything and "tok3n" not in everything


def test_both_exits_filling_in_a_race_are_flattened_and_the_user_told():
    async def scenario(fake):
        fake.auto_fill_market("2500.00")
        stage = LiveStage(opener("zerodha", fake, bucket=TokenBucket(1000)), poll_s=0.5)
        try:
            await enter(stage)
            orders = entered(stage)
            for leg, price in (("target", "2550.05"), ("stop", "2480.00")):  # both, before the engine looks
                [at_broker] = fake.orders_by_tag(orders[leg]["tag"])
                if leg == "stop":
                    fake.trigger(at_broker.order_id)
                fake.fill(at_broker.order_id, price)
            await stage.settle(lambda: len([o for o in stage.orders.values() if o["status"] == "COMPLETE"]) == 4)
        finally:
            await stage.router.close()
        return stage

    with KiteFake() as fake:
        stage = asyncio.run(scenario(fake))
        at_broker = fake.orders()
    done = sorted((o["order_type"], o["transaction_type"], o["status"]) for o in stage.orders.values())
    assert done == [("LIMIT", "SELL", "COMPLETE"), ("MARKET", "BUY", "COMPLETE"), ("MARKET", "BUY", "COMPLETE"),
                    ("SL-M", "SELL", "COMPLETE")]
    assert len(at_broker) == 4 and stage.book["holdings"] == []  # flat again
    assert [n["title"] for n in stage.notes if n["priority"] == "URGENT"] == ["Both exits filled: RELIANCE"]


def test_the_kill_switch_cancels_at_the_broker_and_closes():
    async def scenario(fake):
        fake.auto_fill_market("2500.00")
        stage = LiveStage(opener("upstox", fake, bucket=TokenBucket(1000)))
        try:
            await enter(stage)
            stage.add(orjson.dumps({"kind": "risk", "user_id": USER, "state": "HALTED", "reason": "kill switch",
                                    "at": at(1)}))
            await stage.settle(lambda: len([o for o in stage.orders.values() if o["status"] != "OPEN"]) == 4)
        finally:
            await stage.router.close()
        return stage

    with make_fake("upstox") as fake:
        stage = asyncio.run(scenario(fake))
        at_broker = {o.tag: o.status.value for o in fake.orders()}
    orders = entered(stage)
    assert orders["target"]["status"] == orders["stop"]["status"] == "CANCELLED"
    assert at_broker[orders["target"]["tag"]].upper() == at_broker[orders["stop"]["tag"]].upper() == "CANCELLED"
    close = [o for o in stage.orders.values() if o["order_type"] == "MARKET" and o["transaction_type"] == "SELL"]
    assert len(close) == 1 and close[0]["status"] == "COMPLETE" and stage.book["holdings"] == []
    assert stage.book["trading_state"] == "HALTED"


def test_a_kite_postback_through_the_log_reads_the_fill_at_once():
    """Kite's postback (verified by its checksum) becomes a ``broker`` input; applied in log order it makes the
    stage read the order from the broker at once (the router's polls are an hour apart here). What is booked is
    the broker's own state, never the postback's body, which its checksum does not cover."""
    from engine.orders.stage import broker_input
    from sinks.brokers.kite import PostbackRefused, kite_postback

    async def scenario(fake):
        stage = LiveStage(opener("zerodha", fake, bucket=TokenBucket(1000)), poll_s=3600)
        try:
            stage.add(signal("s1", "BUY", 0))
            stage.add(clock(0))
            await stage.settle(lambda: entered(stage)["entry"]["status"] == "OPEN", router=False)
            entry = entered(stage)["entry"]
            fake.fill(entry["broker_order_id"], "2501.50")
            payload = dict(fake.postbacks[-1], average_price=1.0)  # altered: the checksum still verifies
            body = json.dumps(payload).encode()
            with pytest.raises(PostbackRefused, match="checksum"):
                kite_postback(body, "another_secret")
            user, order = kite_postback(body, fake.api_secret)
            assert user == fake.user_id and order.tag == entry["tag"] and order.average_price == 1
            message = orjson.dumps(broker_input(USER, ACCOUNT, order))
            elsewhere = orjson.dumps(broker_input(USER, "0b7c4f4e-0000-4c2b-9a57-3f1e2d9c8b01", order))
            stage.add(elsewhere)  # another account's word about this order: ignored
            await asyncio.sleep(0.2)
            assert entered(stage)["entry"]["status"] == "OPEN"
            stage.add(message)
            stage.add(message)  # Kite may send it twice; the poll may bring it again
            await stage.settle(lambda: entered(stage)["stop"] is not None and entered(stage)["stop"]["status"] == "OPEN",
                               router=False)
        finally:
            await stage.router.close()
        return stage

    with KiteFake() as fake:
        stage = asyncio.run(scenario(fake))
    entry = entered(stage)["entry"]
    assert (entry["status"], entry["filled_quantity"], entry["average_price"]) == ("COMPLETE", 10, "2501.50")
    assert [o["status"] for o in stage.history if o["id"] == entry["id"]] == ["PENDING", "OPEN", "COMPLETE"]
    assert stage.book["holdings"][0]["quantity"] == 10


def test_exits_the_broker_ended_are_placed_again_under_new_tags():
    """A DAY exit expires with the session at the broker (a CNC position carried over): nobody cancelled it, so
    both exits are placed again, under new tags (the old ones stay cancelled at the broker)."""
    async def scenario(fake):
        fake.auto_fill_market("2500.00")
        stage = LiveStage(opener("zerodha", fake, bucket=TokenBucket(1000)))
        try:
            await enter(stage)
            first = entered(stage)
            with fake.lock:  # the exchange's end of day: the open target is cancelled (expired) by the broker
                fake.cancel_order(fake.find(first["target"]["broker_order_id"]))
            await stage.settle(lambda: len([o for o in stage.orders.values()
                                            if o["order_type"] in ("LIMIT", "SL-M") and o["status"] == "OPEN"]) == 2
                               and first["stop"]["id"] in stage.orders
                               and stage.orders[first["stop"]["id"]]["status"] == "CANCELLED")
        finally:
            await stage.router.close()
        return stage, first

    with KiteFake() as fake:
        stage, first = asyncio.run(scenario(fake))
        at_broker = {o.tag: o.status.value for o in fake.orders()}
    resting = [o for o in stage.orders.values() if o["order_type"] in ("LIMIT", "SL-M") and o["status"] == "OPEN"]
    assert {o["tag"] for o in resting}.isdisjoint({first["target"]["tag"], first["stop"]["tag"]})
    assert sorted(o["order_type"] for o in resting) == ["LIMIT", "SL-M"]
    assert all(at_broker[o["tag"]] in ("OPEN", "TRIGGER PENDING") for o in resting) and len(at_broker) == 5
    assert stage.book["holdings"][0]["quantity"] == 10
