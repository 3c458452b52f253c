"""The order stage's merge (docs/orders.md, "Market time and the watermark"): the watermark, one decision
order whatever the arrival order, repeats, late inputs, checkpoints, and inputs it refuses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from engine.errors import BadData
from engine.orders.execution import Execution
from engine.orders.risk import RiskLimits, TradingState
from engine.orders.stage import END_OF_TIME, PartitionBooks, clock_input, signal_input
from tests.engine.orders.support import (
    MIS,
    NEXT_DAY,
    OTHER,
    USER,
    Books,
    bar,
    book,
    brief,
    clock_msg,
    final,
    ns,
    orders,
    risk_msg,
    signal,
    signal_msg,
)

# --- a two-source session --------------------------------------------------------------------
# source 0 owns RELIANCE, source 1 owns TCS; each sends one clock a minute with its symbol's 1m bar.

MINUTES = [f"10:{m:02}" for m in range(0, 16)]


def _price(base: int, k: int) -> int:
    return base + (7, -4, 12, -9, 3, 15, -6, 0, 9, -13, 4, 22, -18, 5, 1, -2)[k]


def _bars_of(symbol: str) -> list[dict[str, Any]]:
    base = 2500 if symbol == "RELIANCE" else 4000
    out = []
    for k, minute in enumerate(MINUTES):
        o, c = _price(base, k - 1) if k else base, _price(base, k)
        out.append(bar(minute, f"{o}.00", f"{max(o, c) + 6}.00", f"{min(o, c) - 6}.00", f"{c}.00", symbol=symbol))
    return out


#: (source, decision minute, the signal message, execution)
SIGNALS = [
    (0, "10:05", signal("BUY", "10:00", "2500.00", "2525.00", "2490.00"), MIS),
    (0, "10:05", signal("BUY", "10:04", "2500.00", "2540.00", "2470.00", strategy="s4", user=OTHER, timeframe="1m"),
     {**MIS, "quantity": 3}),
    (1, "10:05", signal("SHORT", "10:00", "4000.00", "3985.00", "4030.00", symbol="TCS", strategy="s2", user=OTHER),
     {**MIS, "slippage_bps": 10}),
    (1, "10:07", signal("BUY", "10:06", "4000.00", symbol="TCS", strategy="s3", timeframe="1m"),
     {"mode": "paper", "product": "CNC", "capital": "9000"}),
    (0, "10:10", signal("SELL", "10:05", "2503.00"), MIS),
    (0, "10:10", signal("SELL", "10:09", "2503.00", strategy="s4", user=OTHER, timeframe="1m"), {**MIS, "quantity": 3}),
    (1, "10:15", signal("SELL", "10:10", "4004.00", symbol="TCS", strategy="s3"),
     {"mode": "paper", "product": "CNC", "capital": "9000"}),
]  # fmt: skip


def _source_messages(source: int, signals_first: bool = False) -> list[dict[str, Any]]:
    """One source's messages: each signal before that source's clock whose ``through`` covers it."""
    symbol = "RELIANCE" if source == 0 else "TCS"
    msgs: list[dict[str, Any]] = []
    sigs = [(t, signal_msg(sig, ex, src)) for src, t, sig, ex in SIGNALS if src == source]
    if signals_first:
        msgs += [m for _, m in sigs]
    for b in _bars_of(symbol):
        closing = f"10:{int(b['time'][14:16]) + 1:02}"
        if not signals_first:
            msgs += [m for t, m in sigs if t == closing]
        msgs.append(clock_msg(closing, [b], source=source))
    return msgs


#: both sources speak before the session (a source never heard from is not waited for: docs/orders.md)
HELLO = [clock_msg("09:59", source=0), clock_msg("09:59", source=1)]


def _interleaved(first: int) -> list[dict[str, Any]]:
    a, b = _source_messages(first), _source_messages(1 - first)
    out: list[dict[str, Any]] = HELLO[::-1] if first else list(HELLO)
    while a or b:
        for msgs in (a, b):  # up to the next clock of each source
            while msgs:
                m = msgs.pop(0)
                out.append(m)
                if m["kind"] == "clock":
                    break
    return out


DELIVERIES = {
    "interleaved, source 0 first": _interleaved(0),
    "interleaved, source 1 first": _interleaved(1),
    "source 1 to the end, then source 0": HELLO + _source_messages(1) + _source_messages(0),
    "source 0 to the end, then source 1": HELLO[::-1] + _source_messages(0) + _source_messages(1),
    "all signals first": HELLO + _source_messages(1, signals_first=True) + _source_messages(0, signals_first=True),
    "source 0's signals first": [m for m in _interleaved(1) if m["kind"] == "signal" and m["source"] == 0]
    + [m for m in _interleaved(1) if m["kind"] == "clock" or m["source"] == 1],
}


def _play(messages: list[dict[str, Any]], each: bool = True, books: Books | None = None) -> Books:
    books = books or Books()
    for m in messages:
        books.send(m)
        if each:
            books.step()
    if not each:
        books.step()
    return books


def _per_user(out) -> dict[str, list[tuple[str, dict]]]:
    """Each user's orders and notifications in order, and their final book."""
    users: dict[str, list] = {}
    for topic, user, msg in out:
        if topic != "portfolios":
            users.setdefault(user, []).append((topic, msg))
    return {u: [*msgs, ("book", book(out, u))] for u, msgs in users.items()}


def test_the_session_trades_what_it_should():
    books = _play(DELIVERIES["interleaved, source 0 first"])
    out = books.out
    done = [(m["user_id"], m["symbol"], m["order_type"], m["transaction_type"], m["average_price"])
            for m in orders(out) if m["status"] == "COMPLETE"]  # fmt: skip
    assert len(done) == 9 and {m["status"] for m in orders(out)} == {"PENDING", "OPEN", "COMPLETE", "CANCELLED"}
    # OTHER's TCS short: 4,000.00 x (1 - 10/10,000) = 3,996.00, covered at its target 3,985.00
    assert (OTHER, "TCS", "MARKET", "SELL", "3996.00") in done and (OTHER, "TCS", "LIMIT", "BUY", "3985.00") in done
    # USER's CNC entry: floor(9,000 / 4,000) = 2 shares
    assert [m["quantity"] for m in orders(out) if m["product"] == "CNC"] == [2] * 4
    # USER was stopped out of RELIANCE before the SELL of 10:10, so that SELL opened a short, still open
    assert [(h["symbol"], h["quantity"]) for h in book(out, USER)["holdings"]] == [("RELIANCE", -10)]
    assert book(out, OTHER)["holdings"] == []
    assert books.pb.watermark == ns("10:16") and books.pb.signals == {} and books.pb.bars == {}


@pytest.mark.parametrize("delivery", list(DELIVERIES)[1:])
def test_the_arrival_order_does_not_change_any_decision(delivery):
    reference = _play(DELIVERIES["interleaved, source 0 first"]).out
    other = _play(DELIVERIES[delivery])
    assert (other.pb.counters.late, other.pb.counters.repeats) == (0, 0)  # the deliveries keep the contract
    assert _per_user(other.out) == _per_user(reference)


@pytest.mark.parametrize("delivery", list(DELIVERIES))
def test_one_advance_at_the_end_gives_the_same_output_list_for_every_arrival_order(delivery):
    reference = _play(DELIVERIES["interleaved, source 0 first"], each=False).out
    assert _play(DELIVERIES[delivery], each=False).out == reference
    # and the same orders as deciding step by step
    assert _per_user(reference) == _per_user(_play(DELIVERIES[delivery]).out)


def test_nothing_is_decided_before_the_slowest_sources_through():
    books = Books()
    books.clock("09:59", source=1)
    books.clock("09:59", source=0)
    assert books.step() == []
    books.signal(signal("BUY", "10:00", "2500.00"))
    books.clock("10:10", bar("10:05", "2500.00", "2510.00", "2495.00", "2505.00"), source=0)
    assert books.step() == []  # source 1 is at 09:59
    books.clock("10:04", source=1)
    assert books.step() == [] and books.pb.watermark == ns("10:04")
    books.clock("10:05", source=1)
    out = books.step()
    # the signal (10:05) is decided; the bar closing 10:06 waits for source 1 to pass 10:06
    assert brief(out) == [("MARKET", "BUY", "PENDING"), ("MARKET", "BUY", "COMPLETE"), ("note", "MEDIUM"), ("book",)]
    assert book(out)["holdings"][0]["current_price"] == "2500.00"  # no quote yet
    books.clock("10:06", source=1)
    out = books.step()
    assert book(out)["holdings"][0]["current_price"] == "2505.00"
    assert books.pb.watermark == ns("10:06")


def test_a_clock_may_carry_several_sources_and_the_watermark_never_goes_back():
    books = Books()
    books.send({"kind": "clock", "sources": {"0": ns("10:05"), "1": ns("10:03")}, "bars": []})
    books.step()
    assert books.pb.watermark == ns("10:03")
    books.send({"kind": "clock", "sources": {"1": ns("10:01")}, "bars": []})  # an older clock of source 1
    books.step()
    assert books.pb.sources == {0: ns("10:05"), 1: ns("10:03")} and books.pb.watermark == ns("10:03")


def test_at_one_time_bars_come_before_signals_then_symbol_then_strategy():
    books = Books(limits=RiskLimits(max_positions=2))
    books.clock("10:04", bar("10:03", "100.00", "100.00", "100.00", "100.00", symbol="ZEE"))
    books.step()
    # three entries decided at 10:05; only two fit: (ACC, s9) and (ZEE, s1) before (ZEE, s2)
    books.signal(signal("BUY", "10:00", "100.00", symbol="ZEE", strategy="s2"))
    books.signal(signal("BUY", "10:00", "100.00", symbol="ZEE", strategy="s1"))
    books.signal(signal("BUY", "10:00", "100.00", symbol="ACC", strategy="s9"))
    out = books.tick("10:05", bar("10:04", "100.00", "101.00", "99.00", "101.00", symbol="ZEE"))
    entries = [(m["symbol"], m["strategy_id"], m["status"]) for m in orders(out) if m["status"] != "PENDING"]
    assert entries == [("ACC", "s9", "COMPLETE"), ("ZEE", "s1", "COMPLETE"), ("ZEE", "s2", "REJECTED")]
    # the ZEE bar closing at 10:05 was decided before the signals: the holding is already at its close
    zee = [h for h in book(out)["holdings"] if h["symbol"] == "ZEE"][0]
    assert zee["current_price"] == "101.00" and zee["unrealized_pnl"] == "10.00"  # (101 - 100) x 10


def test_repeated_signals_and_bars_are_dropped_and_change_nothing():
    messages = DELIVERIES["interleaved, source 0 first"]
    reference = _play(messages).out
    doubled: list[dict[str, Any]] = []
    for m in messages:
        doubled += [m, m]  # a repeat before the decision (or right after it, for a bar the clock lets through)
    doubled += [m for m in messages if m["kind"] == "signal" or m["bars"]]  # and every input again, decided
    books = _play(doubled)
    assert _per_user(books.out) == _per_user(reference)
    assert [o for o in books.out if o[0] != "portfolios"] == [o for o in reference if o[0] != "portfolios"]
    n_signals, n_bars = len(SIGNALS), sum(len(m["bars"]) for m in messages if m["kind"] == "clock")
    assert books.pb.counters.repeats == 2 * n_signals + 2 * n_bars
    assert books.pb.counters.late == 0


def test_a_repeat_after_the_decision_gives_no_output_at_all():
    books = Books()
    sig = signal("BUY", "10:00", "2500.00", "2550.00", "2480.00")
    b = bar("10:05", "2500.00", "2510.00", "2495.00", "2505.00")
    books.run(sig, "10:06", b)
    books.signal(sig)
    books.clock("10:06", b)
    assert books.step() == []
    assert books.pb.counters.repeats == 2


def test_a_source_heard_late_is_decided_at_once_and_counted():
    books = Books()
    books.run(signal("BUY", "10:00", "2500.00"), "10:05")
    books.signal(signal("BUY", "10:00", "4000.00", symbol="TCS", strategy="s2"), source=1)
    books.clock("10:05", source=1)
    out = books.step()
    assert final(out, "MARKET")["symbol"] == "TCS" and books.pb.counters.late == 1


@pytest.mark.parametrize("split", range(43))
def test_a_checkpoint_restored_into_fresh_books_continues_as_if_never_stopped(split):
    messages = list(DELIVERIES["interleaved, source 1 first"])
    messages.insert(8, risk_msg("REDUCING", "cooling off", user=OTHER))  # hand-set states as well
    messages.insert(30, risk_msg("ACTIVE", None, user=OTHER))
    assert len(messages) == 43
    reference = _play(messages).out

    books, out = Books(), []
    for k, m in enumerate(messages):
        books.send(m)
        books.step()
        if k == split:  # a checkpoint is taken after the outputs of an advance are out
            saved = orjson.loads(orjson.dumps(books.pb.to_json()))
            fresh = Books()
            fresh.pb.restore(saved)
            assert orjson.dumps(fresh.pb.to_json()) == orjson.dumps(books.pb.to_json())
            out += books.out
            books = fresh
    assert out + books.out == reference


def test_a_checkpoint_holds_open_positions_resting_exits_and_buffered_inputs():
    books = Books()
    books.clock("10:05", source=1)
    books.run(signal("BUY", "10:00", "2500.00", "2550.00", "2480.00"), "10:05")
    books.signal(signal("BUY", "10:05", "4000.00", symbol="TCS", strategy="s2"), source=1)  # not decided yet
    books.clock("10:10", bar("10:05", "2500.00", "2510.00", "2495.00", "2505.00"))  # waits for source 1
    books.risk("REDUCING", "later")
    books.step()
    doc = orjson.loads(orjson.dumps(books.pb.to_json()))
    assert len(doc["signals"]) == 1 and len(doc["bars"]) == 1
    [desk] = doc["desks"]
    [pos] = desk["positions"]
    assert (pos["target"]["status"], pos["stop"]["status"]) == ("OPEN", "OPEN")
    fresh = Books()
    fresh.pb.restore(doc)
    books.clock("10:10", source=1)
    fresh.clock("10:10", source=1)
    out = fresh.step()
    assert out == books.step()
    # the TCS entry is denied (REDUCING); the RELIANCE bar is decided at its close, before it
    assert final(out, "MARKET", "REJECTED")["rejection_reason"] == "reducing"
    assert book(out)["holdings"][0]["current_price"] == "2505.00"


def test_a_hand_set_state_loaded_at_start_applies_to_a_new_desk():
    books = Books(manual={USER: (TradingState.HALTED, "set by hand")})
    out = books.run(signal("BUY", "10:00", "2500.00"), "10:05")
    assert final(out, "MARKET", "REJECTED")["rejection_reason"] == "halted"
    assert (book(out)["trading_state"], book(out)["state_reason"]) == ("HALTED", "set by hand")


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[]",
        orjson.dumps({"kind": "tick"}),
        orjson.dumps({"kind": "clock", "sources": {"0": "10:05"}, "bars": []}),
        orjson.dumps({"kind": "clock", "sources": {"0": True}, "bars": []}),
        orjson.dumps({"kind": "clock", "sources": {"0": 1.5e18}, "bars": []}),
        orjson.dumps({"kind": "clock", "sources": {"x": 0}, "bars": []}),
        orjson.dumps({"kind": "clock", "source": 0, "through": 0, "bars": []}),  # the old spelling
        orjson.dumps(clock_msg("10:05", [{**bar("10:04", "1", "1", "1", "1"), "close": "abc"}])),
        orjson.dumps(signal_msg({**signal("BUY", "10:00", "2500.00"), "entry_price": "abc"})),
        orjson.dumps(signal_msg({k: v for k, v in signal("BUY", "10:00", "2500.00").items() if k != "symbol"})),
        orjson.dumps(signal_msg(signal("BUY", "10:00", "2500.00", timeframe="3m"))),
        orjson.dumps(signal_msg(signal("BUY", "10:00", "2500.00"), {**MIS, "product": "NRML"})),
        orjson.dumps(risk_msg("PAUSED")),
        orjson.dumps({"kind": "risk", "state": "HALTED"}),
    ],
)
def test_an_input_the_engine_did_not_write_is_bad_data(value):
    books = Books()
    with pytest.raises(BadData):
        books.pb.add(value)
    assert books.pb.signals == {} and books.pb.sources == {} and books.pb.desks == {} and books.step() == []


def test_money_is_decimal_all_the_way():
    books = Books(cash=Decimal("0.30"))
    out = books.run(signal("BUY", "10:00", "0.10"), "10:05", execution={**MIS, "quantity": 1})
    # 1 x 0.10: charges round to 0.00; 0.30 - 0.10 = 0.20 exactly (a float would give 0.19999999999999998)
    assert book(out)["portfolio"]["available_cash"] == "0.20"


def test_after_the_end_of_input_the_next_input_is_decided_in_market_time_again():
    """``up --until-drained`` flushes every source to the end of time; the next run's inputs (a later day) must
    not be taken as late: the watermark stops at the last decided market time and every source reports afresh."""
    books = PartitionBooks(Decimal("1000000"), lambda _: RiskLimits())
    mis = Execution.from_json(MIS)
    books.add(orjson.dumps(signal_input(0, mis, signal("BUY", "10:00", "2500.00"))))
    books.add(orjson.dumps(clock_input({0: END_OF_TIME, 1: END_OF_TIME}, [], partitions=2)))
    assert books.watermark == ns("10:05") and books.sources == {}  # decided; the end is not a market time
    # the next day: source 1 speaks first, then source 0; nothing is decided until both have reported
    books.add(orjson.dumps(clock_input({1: ns("09:20", NEXT_DAY)}, [bar("09:18", "2500", "2501", "2499", "2500",
                                                                          day=NEXT_DAY)], partitions=2)))
    assert books.watermark == ns("10:05")
    books.add(orjson.dumps(signal_input(0, mis, signal("SELL", "09:15", "2490.00", day=NEXT_DAY))))
    books.add(orjson.dumps(clock_input({0: ns("09:20", NEXT_DAY)}, [], partitions=2)))
    assert books.watermark == ns("09:20", NEXT_DAY) and books.counters.late == 0
    out = books.advance()
    # day 1's long, squared off at 15:20 of its own day once day 2 began; then day 2's SELL opened a short
    market = [(m["transaction_type"], m["status"], m["exchange_timestamp"]) for t, _, m in out
              if t == "orders" and m["order_type"] == "MARKET" and m["status"] == "COMPLETE"]
    assert market == [("BUY", "COMPLETE", "2026-11-02T10:05:00+05:30"), ("SELL", "COMPLETE", "2026-11-02T15:20:00+05:30"),
                      ("SELL", "COMPLETE", "2026-11-03T09:20:00+05:30")]
