"""The paper desk's rules (docs/orders.md, "Rules"), driven through PartitionBooks as production drives it.

Every figure is worked by hand in the comments. The MIS charges used throughout (charges.py's table):
brokerage min(₹20, 0.03% V), STT 0.025% V on sells, exchange 0.00297% V, SEBI V/10^6, stamp 0.003% V on
buys, GST 18% of (brokerage + exchange + SEBI); fees and taxes rounded half-up to the paisa.
BUY 10 @ 2500.00 MIS (V 25,000): brokerage 7.5 + exchange 0.7425 + SEBI 0.025 = 8.2675 -> fees 8.27;
stamp 0.75 + GST 0.18 x 8.2675 = 1.48815 -> 2.23815 -> taxes 2.24; total 10.51.
"""

from __future__ import annotations

import uuid

import pytest

from engine.orders.ids import ORDER_EVENT_NAMESPACE
from engine.orders.risk import RiskLimits
from tests.engine.orders.support import (
    CNC,
    DAY,
    MIS,
    NEXT_DAY,
    USER,
    Books,
    D,
    at,
    bar,
    book,
    brief,
    final,
    notes,
    orders,
    signal,
)

ENTRY_LEGS = [("MARKET", "BUY", "PENDING"), ("MARKET", "BUY", "COMPLETE"), ("note", "MEDIUM"),
              ("LIMIT", "SELL", "PENDING"), ("LIMIT", "SELL", "OPEN"),
              ("SL-M", "SELL", "PENDING"), ("SL-M", "SELL", "OPEN")]  # fmt: skip


def long_position(books: Books, execution=MIS, target: str | None = "2550.00", stop: str | None = "2480.00"):
    """BUY 10 RELIANCE @ 2500.00 on the 5m bar of 10:00, filled at its close, 10:05."""
    sig = signal("BUY", "10:00", "2500.00", target, stop)
    books.run(sig, "10:05", execution=execution)
    return sig


def short_position(books: Books):
    """SHORT 10 RELIANCE @ 2500.00 (MIS) on the 5m bar of 10:00: target 2450.00 below, stop 2520.00 above."""
    sig = signal("SHORT", "10:00", "2500.00", "2450.00", "2520.00")
    books.run(sig, "10:05")
    return sig


# --- entries -------------------------------------------------------------------------------------


def test_a_buy_fills_at_market_with_slippage_against_the_trader_and_rests_target_and_stop():
    books = Books()
    sig = signal("BUY", "10:00", "2500.00", "2550.00", "2480.00")
    out = books.run(sig, "10:05", bar("10:04", "2498.00", "2501.00", "2497.00", "2500.00"),
                    execution={**MIS, "slippage_bps": 5})
    assert brief(out) == [*ENTRY_LEGS, ("book",)]
    pending, filled, limit_pending, limit, stop_pending, stop = orders(out)

    # 2,500.00 x (1 + 5/10,000) = 2,501.25
    assert filled["average_price"] == "2501.25" and filled["filled_quantity"] == 10 and filled["quantity"] == 10
    assert filled["price"] is None and filled["trigger_price"] is None and filled["product"] == "MIS"
    # V = 25,012.50: brokerage 7.50375 + exchange 0.74287125 + SEBI 0.0250125 = 8.27163375 -> 8.27;
    # stamp 0.750375 + GST 0.18 x 8.27163375 = 1.488894075 -> 2.239269075 -> 2.24
    assert (filled["fees"], filled["taxes"]) == ("8.27", "2.24")
    # decided and filled at the signal bar's close
    assert filled["order_timestamp"] == filled["exchange_timestamp"] == filled["updated_at"] == at("10:05")
    assert filled["executes_signal"] is True and filled["signal_id"] == sig["id"] and filled["signal"] == sig
    assert filled["strategy_id"] == "s1" and filled["strategy_name"] == "ema_cross" and filled["user_id"] == USER
    # PENDING, then COMPLETE: one order, two events
    assert pending["id"] == filled["id"] and pending["status"] == "PENDING" and pending["average_price"] is None
    assert pending["filled_quantity"] == 0 and pending["exchange_timestamp"] is None
    assert filled["event_id"] == str(uuid.uuid5(ORDER_EVENT_NAMESPACE, f"{filled['id']}|COMPLETE"))
    assert pending["event_id"] == str(uuid.uuid5(ORDER_EVENT_NAMESPACE, f"{filled['id']}|PENDING"))
    assert filled["tag"] == uuid.UUID(filled["id"]).hex[:20] and filled["broker_order_id"] == f"paper-{filled['tag']}"

    # the exits rest: a LIMIT at the target, an SL-M at the stop, naming the entry's signal without executing it
    assert (limit["status"], limit["price"], limit["trigger_price"]) == ("OPEN", "2550.00", None)
    assert (stop["status"], stop["price"], stop["trigger_price"]) == ("OPEN", None, "2480.00")
    for leg, pend in ((limit, limit_pending), (stop, stop_pending)):
        assert leg["id"] == pend["id"] != filled["id"]
        assert leg["quantity"] == 10 and leg["signal_id"] == sig["id"]
        assert leg["executes_signal"] is False and leg["signal"] is None
        assert leg["order_timestamp"] == leg["updated_at"] == at("10:05")

    b = book(out)
    # cash 1,000,000 - 25,012.50 - (8.27 + 2.24) = 974,976.99; the 10:04 bar's close 2,500.00 is the quote:
    # unrealised (2,500.00 - 2,501.25) x 10 = -12.50; total 974,976.99 + 10 x 2,500 = 999,976.99
    assert b["portfolio"] == {"name": "Paper Portfolio", "total_value": "999976.99", "available_cash": "974976.99",
                              "invested_amount": "25012.50", "unrealized_pnl": "-12.50", "realized_pnl": "0.00"}
    assert b["holdings"] == [{"symbol": "RELIANCE", "quantity": 10, "average_price": "2501.25",
                              "current_price": "2500.00", "last_price_update": at("10:05"), "unrealized_pnl": "-12.50"}]
    assert b["as_of"] == at("10:05") and b["trading_state"] == "ACTIVE" and b["state_reason"] is None
    assert b["day"] == {"date": DAY, "realized": "0.00", "unrealized": "-12.50", "pnl": "-12.50"}


def test_a_short_under_mis_sells_at_market_with_slippage_down_and_rests_buy_exits():
    books = Books()
    sig = signal("SHORT", "10:00", "2500.00", "2450.00", "2520.00")
    out = books.run(sig, "10:05", execution={**MIS, "slippage_bps": 5})
    assert brief(out) == [("MARKET", "SELL", "PENDING"), ("MARKET", "SELL", "COMPLETE"), ("note", "MEDIUM"),
                          ("LIMIT", "BUY", "PENDING"), ("LIMIT", "BUY", "OPEN"),
                          ("SL-M", "BUY", "PENDING"), ("SL-M", "BUY", "OPEN"), ("book",)]  # fmt: skip
    filled = final(out, "MARKET")
    # 2,500.00 x (1 - 5/10,000) = 2,498.75; V = 24,987.50: brokerage 7.49625 + exchange 0.74212875 + SEBI 0.0249875
    # = 8.26336625 -> 8.26; STT 6.246875 + GST 1.487405925 = 7.734280925 -> 7.73
    assert (filled["average_price"], filled["fees"], filled["taxes"]) == ("2498.75", "8.26", "7.73")
    assert final(out, "LIMIT", "OPEN")["price"] == "2450.00"
    assert final(out, "SL-M", "OPEN")["trigger_price"] == "2520.00"
    b = book(out)
    # cash 1,000,000 + 24,987.50 - 15.99 = 1,024,971.51; a short's holding is negative; no quote yet: its own price
    assert b["portfolio"]["available_cash"] == "1024971.51"
    assert b["portfolio"]["total_value"] == "999984.01"  # 1,024,971.51 - 10 x 2,498.75
    assert b["portfolio"]["invested_amount"] == "24987.50"
    assert [(h["symbol"], h["quantity"], h["average_price"]) for h in b["holdings"]] == [("RELIANCE", -10, "2498.75")]


def test_an_entry_without_target_or_stop_rests_nothing():
    books = Books()
    out = books.run(signal("BUY", "10:00", "2500.00"), "10:05")
    assert brief(out) == [("MARKET", "BUY", "PENDING"), ("MARKET", "BUY", "COMPLETE"), ("note", "MEDIUM"), ("book",)]
    out = books.tick("10:06", bar("10:05", "2400.00", "2700.00", "2300.00", "2450.00"))
    assert orders(out) == [] and book(out)["holdings"][0]["unrealized_pnl"] == "-500.00"  # (2,450 - 2,500) x 10


# --- resting exits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ohlc", "filled", "price"),
    [
        (("2470.00", "2475.00", "2460.00", "2465.00"), "SL-M", "2470.00"),  # gap down: min(open 2470, stop 2480)
        (("2495.00", "2498.00", "2479.00", "2485.00"), "SL-M", "2480.00"),  # low 2479 <= 2480: min(2495, 2480)
        (("2495.00", "2498.00", "2480.00", "2485.00"), "SL-M", "2480.00"),  # low == stop fills
        (("2560.00", "2570.00", "2555.00", "2565.00"), "LIMIT", "2560.00"),  # gap up: max(open 2560, target 2550)
        (("2540.00", "2551.00", "2538.00", "2549.00"), "LIMIT", "2550.00"),  # high 2551 >= 2550: max(2540, 2550)
        (("2540.00", "2550.00", "2538.00", "2549.00"), "LIMIT", "2550.00"),  # high == target fills
        (("2500.00", "2560.00", "2470.00", "2520.00"), "SL-M", "2480.00"),  # both could fill: the stop wins
    ],
)
def test_a_long_exit_fills_at_the_stop_or_target_or_the_open_beyond_it(ohlc, filled, price):
    books = Books()
    sig = long_position(books)
    out = books.tick("10:06", bar("10:05", *ohlc))
    other = "LIMIT" if filled == "SL-M" else "SL-M"
    assert brief(out) == [(other, "SELL", "CANCELLED"), (filled, "SELL", "COMPLETE"), ("note", "MEDIUM"), ("book",)]
    exit_, cancelled = final(out, filled), final(out, other, "CANCELLED")
    assert exit_["average_price"] == price and exit_["filled_quantity"] == 10
    # stamped with its bar's open; the order itself dates from the entry
    assert exit_["exchange_timestamp"] == exit_["updated_at"] == cancelled["updated_at"] == at("10:05")
    assert exit_["order_timestamp"] == at("10:05") and cancelled["filled_quantity"] == 0
    assert exit_["signal_id"] == sig["id"] and exit_["executes_signal"] is False and exit_["signal"] is None
    assert book(out)["holdings"] == [] and books.pb.desks[USER].positions == {}


def test_no_exit_on_a_bar_touching_neither_leg_and_a_stop_out_realises_gross_minus_both_legs_charges():
    books = Books()
    long_position(books)
    out = books.tick("10:06", bar("10:05", "2500.00", "2549.99", "2480.01", "2510.00"))
    assert orders(out) == [] and book(out)["portfolio"]["unrealized_pnl"] == "100.00"  # (2,510 - 2,500) x 10
    out = books.tick("10:07", bar("10:06", "2470.00", "2475.00", "2460.00", "2465.00"))
    stop = final(out, "SL-M")
    # SELL 10 @ 2,470.00 (V 24,700): brokerage 7.41 + exchange 0.73359 + SEBI 0.0247 = 8.16829 -> 8.17;
    # STT 6.175 + GST 1.4702922 = 7.6452922 -> 7.65
    assert (stop["average_price"], stop["fees"], stop["taxes"]) == ("2470.00", "8.17", "7.65")
    p = book(out)["portfolio"]
    # (2,470 - 2,500) x 10 = -300.00; - 10.51 (entry) - 15.82 (exit) = -326.33
    assert p["realized_pnl"] == "-326.33" and p["available_cash"] == p["total_value"] == "999673.67"
    assert book(out)["day"] == {"date": DAY, "realized": "-326.33", "unrealized": "0.00", "pnl": "-326.33"}


@pytest.mark.parametrize(
    ("ohlc", "filled", "price"),
    [
        (("2530.00", "2535.00", "2525.00", "2532.00"), "SL-M", "2530.00"),  # gap up: max(open 2530, stop 2520)
        (("2505.00", "2521.00", "2500.00", "2515.00"), "SL-M", "2520.00"),  # high 2521 >= 2520: max(2505, 2520)
        (("2440.00", "2445.00", "2430.00", "2435.00"), "LIMIT", "2440.00"),  # gap down: min(open 2440, target 2450)
        (("2460.00", "2465.00", "2449.00", "2455.00"), "LIMIT", "2450.00"),  # low 2449 <= 2450: min(2460, 2450)
        (("2500.00", "2525.00", "2440.00", "2480.00"), "SL-M", "2520.00"),  # both could fill: the stop wins
    ],
)
def test_a_short_is_the_mirror_image(ohlc, filled, price):
    books = Books()
    short_position(books)
    out = books.tick("10:06", bar("10:05", *ohlc))
    other = "LIMIT" if filled == "SL-M" else "SL-M"
    assert brief(out) == [(other, "BUY", "CANCELLED"), (filled, "BUY", "COMPLETE"), ("note", "MEDIUM"), ("book",)]
    assert final(out, filled)["average_price"] == price
    assert final(out, filled)["exchange_timestamp"] == at("10:05")
    assert book(out)["holdings"] == []


def test_exits_are_checked_only_on_bars_opening_at_or_after_the_entry_fill():
    books = Books()
    sig = signal("BUY", "10:00", "2500.00", "2550.00", "2480.00")
    short = signal("SHORT", "10:00", "4000.00", "3900.00", "4050.00", symbol="TCS", strategy="s2")
    books.signal(short)
    # the 1m bar 10:04-10:05 closes when the signal is decided: it is decided first and cannot fill an exit
    out = books.run(sig, "10:05", bar("10:04", "2500.00", "2600.00", "2400.00", "2500.00"))
    assert [m["status"] for m in orders(out) if m["order_type"] == "SL-M"] == ["PENDING", "OPEN"] * 2
    assert [h["quantity"] for h in book(out)["holdings"]] == [10, -10]
    # a source heard from for the first time delivers TCS's 10:04 bar late (TCS has no quote yet, so it is
    # not a repeat): it is decided, but it opened before the fill, so it fills no exit
    books.clock("10:05", bar("10:04", "4000.00", "4100.00", "3800.00", "4000.00", symbol="TCS"), source=1)
    out = books.step()
    assert books.pb.counters.late == 1
    assert orders(out) == [] and [h["quantity"] for h in book(out)["holdings"]] == [10, -10]
    # the next bar, opening at the fill time, does fill (once source 1, now heard from, has passed it too)
    assert books.tick("10:06", bar("10:05", "2500.00", "2600.00", "2400.00", "2500.00")) == []
    books.clock("10:06", source=1)
    out = books.step()
    assert final(out, "SL-M")["average_price"] == "2480.00"


# --- signals on a held position --------------------------------------------------------------


def test_an_opposite_signal_closes_at_market_with_slippage_and_cancels_the_resting_exits():
    books = Books()
    execution = {**MIS, "slippage_bps": 5}
    long_position(books, execution)  # BUY at 2,500 x 1.0005 = 2,501.25, charges 8.27 + 2.24 = 10.51
    sell = signal("SELL", "10:05", "2520.00")
    out = books.run(sell, "10:10", execution=execution)
    assert brief(out) == [("MARKET", "SELL", "PENDING"), ("LIMIT", "SELL", "CANCELLED"), ("SL-M", "SELL", "CANCELLED"),
                          ("MARKET", "SELL", "COMPLETE"), ("note", "MEDIUM"), ("book",)]  # fmt: skip
    close = final(out, "MARKET")
    assert close["executes_signal"] is True and close["signal_id"] == sell["id"] and close["signal"] == sell
    assert close["order_timestamp"] == close["exchange_timestamp"] == at("10:10")
    # 2,520.00 x (1 - 0.0005) = 2,518.74; V = 25,187.40: brokerage 7.55622 + exchange 0.74806578 + SEBI 0.0251874
    # = 8.32947318 -> 8.33; STT 6.29685 + GST 1.4993051724 = 7.7961551724 -> 7.80
    assert (close["average_price"], close["fees"], close["taxes"]) == ("2518.74", "8.33", "7.80")
    # gross (2,518.74 - 2,501.25) x 10 = 174.90; - 10.51 - 16.13 = 148.26
    assert book(out)["portfolio"]["realized_pnl"] == "148.26"
    assert book(out)["holdings"] == []
    # the position is closed, not reversed: the next SELL opens a short
    out = books.run(signal("SELL", "10:10", "2520.00"), "10:15", execution=execution)
    assert final(out, "MARKET")["transaction_type"] == "SELL" and book(out)["holdings"][0]["quantity"] == -10


def test_a_cover_closes_a_short():
    books = Books()
    short_position(books)
    cover = signal("COVER", "10:05", "2490.00")
    out = books.run(cover, "10:10")
    close = final(out, "MARKET")
    assert close["transaction_type"] == "BUY" and close["average_price"] == "2490.00" and close["signal"] == cover
    assert book(out)["holdings"] == []


def test_a_signal_on_the_side_already_held_is_ignored():
    books = Books()
    long_position(books)
    before = books.pb.desks[USER].positions.copy()
    out = books.run(signal("BUY", "10:05", "2600.00", "2700.00", "2550.00"), "10:10")
    assert [t for t, _, _ in out] == ["portfolios"]  # no order, no notification
    assert books.pb.desks[USER].positions == before
    assert book(out)["holdings"][0]["average_price"] == "2500.00"


def test_a_cnc_sell_while_flat_is_ignored_and_a_cnc_sell_closes_a_long():
    books = Books()
    for kind, bar_open, through in (("SELL", "10:00", "10:05"), ("SHORT", "10:05", "10:10")):
        out = books.run(signal(kind, bar_open, "2500.00"), through, execution=CNC)
        assert [t for t, _, _ in out] == ["portfolios"] and book(out)["holdings"] == []
    books.run(signal("BUY", "10:10", "2500.00"), "10:15", execution=CNC)
    out = books.run(signal("SELL", "10:15", "2510.00"), "10:20", execution=CNC)
    close = final(out, "MARKET")
    assert (close["transaction_type"], close["product"], close["average_price"]) == ("SELL", "CNC", "2510.00")
    assert close["executes_signal"] is True


# --- MIS square-off and days --------------------------------------------------------------------


def test_mis_is_squared_off_at_the_open_of_the_1520_bar():
    books = Books()
    sig = signal("BUY", "14:55", "2500.00", "2550.00", "2480.00")
    books.run(sig, "15:00")
    out = books.tick("15:20", bar("15:19", "2500.00", "2505.00", "2495.00", "2502.00"))
    assert orders(out) == []
    out = books.tick("15:21", bar("15:20", "2510.00", "2515.00", "2505.00", "2512.00"))
    assert brief(out) == [("MARKET", "SELL", "PENDING"), ("LIMIT", "SELL", "CANCELLED"), ("SL-M", "SELL", "CANCELLED"),
                          ("MARKET", "SELL", "COMPLETE"), ("note", "MEDIUM"), ("book",)]  # fmt: skip
    square = final(out, "MARKET")
    assert square["average_price"] == "2510.00"
    assert square["order_timestamp"] == square["exchange_timestamp"] == at("15:20")
    assert square["executes_signal"] is False and square["signal"] is None and square["signal_id"] == sig["id"]
    # SELL 10 @ 2,510.00 (V 25,100): brokerage 7.53 + exchange 0.74547 + SEBI 0.0251 = 8.30057 -> 8.30;
    # STT 6.275 + GST 1.4941026 = 7.7691026 -> 7.77; realised 100.00 - 10.51 - 16.07 = 73.42
    assert (square["fees"], square["taxes"]) == ("8.30", "7.77")
    assert book(out)["portfolio"]["realized_pnl"] == "73.42" and book(out)["holdings"] == []


def test_without_a_1520_bar_the_first_bar_after_it_squares_off():
    books = Books()
    books.run(signal("BUY", "14:55", "2500.00"), "15:00")
    out = books.tick("15:23", bar("15:22", "2507.00", "2508.00", "2501.00", "2503.00"))
    assert final(out, "MARKET", "COMPLETE")["average_price"] == "2507.00"
    assert final(out, "MARKET", "COMPLETE")["exchange_timestamp"] == at("15:22")


@pytest.mark.parametrize(
    ("execution", "bar_open", "timeframe", "status"),
    [
        (MIS, "15:15", "5m", "REJECTED"),  # decided at 15:20
        (MIS, "15:20", "1m", "REJECTED"),  # decided at 15:21
        (MIS, "15:18", "1m", "COMPLETE"),  # decided at 15:19 (squared off on the next bar)
        (CNC, "15:15", "5m", "COMPLETE"),  # delivery is not squared off
    ],
)
def test_an_mis_entry_decided_at_or_after_1520_is_rejected(execution, bar_open, timeframe, status):
    books = Books()
    sig = signal("BUY", bar_open, "2500.00", timeframe=timeframe)
    out = books.run(sig, "15:25", execution=execution)
    entry = final(out, "MARKET", status)
    if status == "REJECTED":
        assert entry["rejection_reason"] == "after_square_off" and entry["filled_quantity"] == 0
        assert brief(out) == [("MARKET", "BUY", "PENDING"), ("MARKET", "BUY", "REJECTED"), ("note", "HIGH"), ("book",)]
        assert book(out)["holdings"] == []
    else:
        assert entry["rejection_reason"] is None


def test_a_cnc_position_is_carried_over_to_the_next_day():
    books = Books()
    long_position(books, CNC)
    out = books.tick("15:21", bar("15:20", "2510.00", "2515.00", "2505.00", "2512.00"))
    assert orders(out) == []
    out = books.tick("09:16", bar("09:15", "2530.00", "2540.00", "2520.00", "2535.00", day=NEXT_DAY), day=NEXT_DAY)
    assert orders(out) == [] and book(out)["holdings"][0]["quantity"] == 10
    assert book(out)["day"]["date"] == NEXT_DAY
    out = books.tick("09:17", bar("09:16", "2535.00", "2555.00", "2534.00", "2552.00", day=NEXT_DAY), day=NEXT_DAY)
    target = final(out, "LIMIT")
    assert target["average_price"] == "2550.00" and target["exchange_timestamp"] == at("09:16", NEXT_DAY)
    # CNC BUY 10 @ 2,500 (V 25,000): STT 25 + exchange 0.7425 + SEBI 0.025 + stamp 3.75 + GST 0.13815
    #   -> fees 0.77, taxes 28.89: 29.66
    # CNC SELL 10 @ 2,550 (V 25,500): exchange 0.75735 + SEBI 0.0255 = 0.78285 -> 0.78;
    #   STT 25.5 + GST 0.140913 = 25.640913 -> 25.64: 26.42
    assert (target["fees"], target["taxes"]) == ("0.78", "25.64")
    # (2,550 - 2,500) x 10 = 500.00 - 29.66 - 26.42 = 443.92, all of it realised on the day it closed
    assert book(out)["portfolio"]["realized_pnl"] == "443.92"
    assert book(out)["day"] == {"date": NEXT_DAY, "realized": "443.92", "unrealized": "0.00", "pnl": "443.92"}


def test_an_mis_position_open_at_the_next_days_first_event_is_squared_off_at_its_last_close_at_1520():
    books = Books()
    sig = signal("BUY", "14:55", "2500.00", "2550.00", "2480.00")
    books.run(sig, "15:00")
    books.tick("15:18", bar("15:17", "2501.00", "2504.00", "2500.00", "2503.00"))
    books.tick("15:19", bar("15:18", "2503.00", "2506.00", "2501.00", "2505.00"))  # the day's last bar
    # the feed stopped before 15:20; the next day opens far above the target
    out = books.tick("09:16", bar("09:15", "2600.00", "2610.00", "2595.00", "2605.00", day=NEXT_DAY), day=NEXT_DAY)
    assert brief(out) == [("MARKET", "SELL", "PENDING"), ("LIMIT", "SELL", "CANCELLED"), ("SL-M", "SELL", "CANCELLED"),
                          ("MARKET", "SELL", "COMPLETE"), ("note", "MEDIUM"), ("book",)]  # fmt: skip
    square = final(out, "MARKET")
    assert square["average_price"] == "2505.00"  # the last close of its day, not the next day's prices
    assert square["order_timestamp"] == square["exchange_timestamp"] == square["updated_at"] == at("15:20")
    assert final(out, "LIMIT", "CANCELLED")["updated_at"] == at("15:20")
    # SELL 10 @ 2,505 (V 25,050): brokerage 7.515 + exchange 0.743985 + SEBI 0.02505 = 8.284035 -> 8.28;
    # STT 6.2625 + GST 1.4911263 = 7.7536263 -> 7.75; realised 50.00 - 10.51 - 16.03 = 23.46
    assert (square["fees"], square["taxes"]) == ("8.28", "7.75")
    b = book(out)
    assert b["portfolio"]["realized_pnl"] == "23.46" and b["holdings"] == []
    assert b["as_of"] == at("09:16", NEXT_DAY)
    assert b["day"] == {"date": NEXT_DAY, "realized": "0.00", "unrealized": "0.00", "pnl": "0.00"}


# --- the risk gate ------------------------------------------------------------------------------


def rejected(out, reason: str) -> dict:
    entry = final(out, "MARKET", "REJECTED")
    assert entry["rejection_reason"] == reason and entry["filled_quantity"] == 0 and entry["average_price"] is None
    assert entry["fees"] == entry["taxes"] == "0.00" and entry["executes_signal"] is True
    [note] = notes(out)
    assert note["priority"] == "HIGH" and note["notification_type"] == "ORDER" and reason in note["message"]
    return entry


def test_halted_by_command_rejects_entries_and_resume_returns_to_active():
    books = Books()
    books.tick("10:00")
    books.risk("HALTED", "on holiday")
    out = books.step()
    assert [t for t, _, _ in out] == ["portfolios"]
    assert (book(out)["trading_state"], book(out)["state_reason"]) == ("HALTED", "on holiday")
    out = books.run(signal("BUY", "10:00", "2500.00"), "10:05")
    rejected(out, "halted")
    assert book(out)["holdings"] == [] and book(out)["portfolio"]["available_cash"] == "1000000.00"
    books.risk("ACTIVE", "back")
    out = books.step()
    assert (book(out)["trading_state"], book(out)["state_reason"]) == ("ACTIVE", None)
    out = books.run(signal("BUY", "10:05", "2500.00"), "10:10")
    assert final(out, "MARKET")["status"] == "COMPLETE"


def test_reducing_rejects_entries_but_closes_and_exits_still_run():
    books = Books()
    long_position(books)
    books.risk("REDUCING", "cooling off")
    out = books.step()
    assert orders(out) == [] and book(out)["trading_state"] == "REDUCING"
    assert book(out)["state_reason"] == "cooling off"
    out = books.run(signal("BUY", "10:05", "4000.00", symbol="TCS", strategy="s2"), "10:10")
    rejected(out, "reducing")
    out = books.run(signal("SELL", "10:10", "2510.00"), "10:15")
    assert final(out, "MARKET")["average_price"] == "2510.00" and book(out)["holdings"] == []


def test_halted_by_command_closes_open_positions_at_once_at_the_latest_close():
    books = Books()
    long_position(books)
    books.tick("10:06", bar("10:05", "2505.00", "2525.00", "2500.00", "2520.00"))
    books.risk("HALTED", "stop everything")
    out = books.step()
    assert brief(out) == [("MARKET", "SELL", "PENDING"), ("LIMIT", "SELL", "CANCELLED"), ("SL-M", "SELL", "CANCELLED"),
                          ("MARKET", "SELL", "COMPLETE"), ("note", "MEDIUM"), ("book",)]  # fmt: skip
    close = final(out, "MARKET")
    # at the latest 1m close, 2,520.00, stamped at the watermark (10:06)
    assert close["average_price"] == "2520.00" and close["exchange_timestamp"] == at("10:06")
    assert close["executes_signal"] is False
    # SELL 10 @ 2,520 (V 25,200): brokerage 7.56 + exchange 0.74844 + SEBI 0.0252 = 8.33364 -> 8.33;
    # STT 6.30 + GST 1.5000552 = 7.8000552 -> 7.80; realised 200.00 - 10.51 - 16.13 = 173.36
    assert book(out)["portfolio"]["realized_pnl"] == "173.36"
    assert (book(out)["trading_state"], book(out)["holdings"]) == ("HALTED", [])


def test_max_positions_counts_the_users_open_positions():
    books = Books(limits=RiskLimits(max_positions=1))
    books.signal(signal("BUY", "10:00", "2500.00"))
    books.signal(signal("BUY", "10:00", "4000.00", symbol="TCS", strategy="s2"))
    out = books.tick("10:05")
    # decided by symbol: RELIANCE fills, TCS is denied
    assert [(m["symbol"], m["status"]) for m in orders(out)] == [
        ("RELIANCE", "PENDING"), ("RELIANCE", "COMPLETE"), ("TCS", "PENDING"), ("TCS", "REJECTED")]
    assert final(out, "MARKET", "REJECTED")["rejection_reason"] == "max_positions"
    # once flat again, an entry is allowed
    books.run(signal("SELL", "10:05", "2500.00"), "10:10")
    out = books.run(signal("BUY", "10:10", "4000.00", symbol="TCS", strategy="s2"), "10:15")
    assert final(out, "MARKET")["status"] == "COMPLETE"


@pytest.mark.parametrize(
    ("execution", "cash", "status"),
    [
        # CNC BUY 10 @ 2,500: notional 25,000 + charges 29.66 (fees 0.77, taxes 28.89) = 25,029.66 must be in cash
        (CNC, "25029.65", "REJECTED"),
        (CNC, "25029.66", "COMPLETE"),
        # MIS: 20% of 25,000 = 5,000.00 must be in cash
        (MIS, "4999.99", "REJECTED"),
        (MIS, "5000.00", "COMPLETE"),
    ],
)
def test_insufficient_funds(execution, cash, status):
    books = Books(cash=cash)
    out = books.run(signal("BUY", "10:00", "2500.00"), "10:05", execution=execution)
    if status == "REJECTED":
        rejected(out, "insufficient_funds")
        assert book(out)["portfolio"]["available_cash"] == cash
    else:
        assert final(out, "MARKET")["status"] == "COMPLETE"


def test_a_cnc_buy_may_spend_the_cash_to_the_paisa():
    books = Books(cash="25029.66")
    out = books.run(signal("BUY", "10:00", "2500.00"), "10:05", execution=CNC)
    assert book(out)["portfolio"]["available_cash"] == "0.00"  # 25,029.66 - 25,000 - 29.66


def test_the_rate_limit_allows_ten_entries_per_second_of_market_time():
    books = Books(limits=RiskLimits(max_positions=50))
    one = {**MIS, "quantity": 1}
    for k in range(11):
        books.signal(signal("BUY", "10:00", "100.00", symbol=f"SYM{k:02}", strategy=f"s{k:02}", timeframe="1m"), one)
    out = books.tick("10:01")
    entries = [m for m in orders(out) if m["status"] != "PENDING"]
    assert [m["status"] for m in entries] == ["COMPLETE"] * 10 + ["REJECTED"]
    assert entries[-1]["symbol"] == "SYM10" and entries[-1]["rejection_reason"] == "rate_limit"
    # a minute later the window is empty again
    out = books.run(signal("BUY", "10:01", "100.00", symbol="SYM11", strategy="s11", timeframe="1m"), "10:02",
                    execution=one)
    assert final(out, "MARKET")["status"] == "COMPLETE"


def test_capital_sizes_entries_and_a_zero_quantity_is_rejected():
    books = Books()
    out = books.run(signal("BUY", "10:00", "2500.00"), "10:05",
                    execution={"mode": "paper", "product": "MIS", "capital": 2000})
    entry = rejected(out, "zero_quantity")  # floor(2,000 / 2,500) = 0
    assert entry["quantity"] == 0
    out = books.run(signal("BUY", "10:05", "2500.00"), "10:10",
                    execution={"mode": "paper", "product": "MIS", "capital": "5100"})
    filled = final(out, "MARKET")
    assert filled["quantity"] == filled["filled_quantity"] == 2  # floor(5,100 / 2,500) = floor(2.04)


@pytest.mark.parametrize(
    ("state", "bar_open", "capital", "reason"),
    [
        ("HALTED", "15:15", "1", "halted"),  # the state first ...
        ("REDUCING", "15:15", "1", "reducing"),
        ("ACTIVE", "15:15", "1", "after_square_off"),  # ... then the square-off time ...
        ("ACTIVE", "15:00", "1", "zero_quantity"),  # ... then the quantity
    ],
)
def test_the_gate_checks_its_rules_in_order(state, bar_open, capital, reason):
    books = Books(limits=RiskLimits(max_positions=0))  # max_positions would deny every entry after those
    books.risk(state, "test")
    books.step()
    out = books.run(signal("BUY", bar_open, "2500.00"), "15:25",
                    execution={"mode": "paper", "product": "MIS", "capital": capital})
    rejected(out, reason)


def test_max_positions_is_checked_before_funds_and_funds_before_the_rate_limit():
    books = Books(cash="100.00", limits=RiskLimits(max_positions=0))
    rejected(books.run(signal("BUY", "10:00", "2500.00"), "10:05"), "max_positions")
    books = Books(cash="100.00", limits=RiskLimits(max_positions=50))
    one = {**MIS, "quantity": 1}
    # ten entries of 1 x 10.00 use up the second (and the cash: MIS BUY 1 @ 10.00 pays 10.00 and charges of
    # brokerage 0.003 + exchange 0.000297 + SEBI 0.00001 -> 0.00, stamp 0.0003 + GST 0.00059526 -> 0.00)
    for k in range(10):
        books.signal(signal("BUY", "10:00", "10.00", symbol=f"A{k}", strategy=f"s{k}", timeframe="1m"), one)
    books.signal(signal("BUY", "10:00", "10.00", symbol="B", strategy="s10", timeframe="1m"), one)
    out = books.tick("10:01")
    entries = [m for m in orders(out) if m["status"] != "PENDING"]
    assert [m["status"] for m in entries] == ["COMPLETE"] * 10 + ["REJECTED"]
    # the eleventh is over the rate limit, but 20% x 10.00 = 2.00 > 0.00 of cash is found first
    assert entries[-1]["symbol"] == "B" and entries[-1]["rejection_reason"] == "insufficient_funds"
    assert book(out)["portfolio"]["available_cash"] == "0.00"


# --- daily loss ---------------------------------------------------------------------------------


def test_the_daily_loss_limit_halts_the_user_for_the_rest_of_the_day():
    books = Books(limits=RiskLimits(max_daily_loss=D("500")))
    hundred = {**MIS, "quantity": 100}
    books.run(signal("BUY", "10:00", "1000.00"), "10:05", execution=hundred)
    out = books.tick("10:06", bar("10:05", "1000.00", "1000.00", "996.00", "996.00"))
    # unrealised (996 - 1,000) x 100 = -400.00 > -500: still trading
    assert orders(out) == [] and book(out)["trading_state"] == "ACTIVE"
    assert book(out)["day"]["pnl"] == "-400.00"
    out = books.tick("10:07", bar("10:06", "996.00", "996.00", "994.00", "995.00"))
    # unrealised (995 - 1,000) x 100 = -500.00 reaches -500: HALTED, the position closed at the latest close
    assert brief(out) == [("MARKET", "SELL", "PENDING"), ("MARKET", "SELL", "COMPLETE"), ("note", "MEDIUM"),
                          ("note", "URGENT"), ("book",)]  # fmt: skip
    close = final(out, "MARKET")
    assert close["average_price"] == "995.00" and close["exchange_timestamp"] == at("10:07")
    # BUY 100 @ 1,000 (V 100,000): brokerage 20 (cap; 0.03% = 30) + exchange 2.97 + SEBI 0.1 = 23.07;
    #   stamp 3.00 + GST 4.1526 = 7.1526 -> 7.15: 30.22
    # SELL 100 @ 995 (V 99,500): brokerage 20 + exchange 2.95515 + SEBI 0.0995 = 23.05465 -> 23.05;
    #   STT 24.875 + GST 4.149837 = 29.024837 -> 29.02: 52.07
    assert (close["fees"], close["taxes"]) == ("23.05", "29.02")
    urgent = notes(out)[-1]
    assert urgent["notification_type"] == "SYSTEM" and urgent["created_at"] == at("10:07")
    assert urgent["title"] == "Trading halted: daily loss limit"
    assert "₹-582.29" in urgent["message"] and "−₹500.00" in urgent["message"]  # -500 - 30.22 - 52.07
    b = book(out)
    assert (b["trading_state"], b["state_reason"], b["holdings"]) == ("HALTED", "daily_loss", [])
    assert b["day"] == {"date": DAY, "realized": "-582.29", "unrealized": "0.00", "pnl": "-582.29"}
    # later entries of the day are denied
    out = books.run(signal("BUY", "10:05", "1000.00"), "10:10", execution=hundred)
    rejected(out, "daily_loss")
    assert book(out)["trading_state"] == "HALTED"
    # the next session starts ACTIVE
    books.signal(signal("BUY", "09:15", "1000.00", day=NEXT_DAY), hundred)
    out = books.tick("09:20", bar("09:19", "999.00", "1001.00", "998.00", "1000.00", day=NEXT_DAY), day=NEXT_DAY)
    assert final(out, "MARKET")["status"] == "COMPLETE"
    assert (book(out)["trading_state"], book(out)["state_reason"]) == ("ACTIVE", None)


def test_a_stop_out_realising_the_daily_loss_halts_before_the_next_entry():
    books = Books(limits=RiskLimits(max_daily_loss=D("300")))
    books.run(signal("BUY", "10:00", "2500.00", "2550.00", "2470.00"), "10:05")
    out = books.tick("10:06", bar("10:05", "2475.00", "2476.00", "2465.00", "2468.00"))
    # the stop fills at 2,470.00: (2,470 - 2,500) x 10 - 10.51 - 15.82 = -326.33, beyond -300
    assert final(out, "SL-M")["average_price"] == "2470.00"
    assert book(out)["portfolio"]["realized_pnl"] == "-326.33"
    assert (book(out)["trading_state"], book(out)["state_reason"]) == ("HALTED", "daily_loss")
    assert [n["priority"] for n in notes(out)] == ["MEDIUM", "URGENT"]
    out = books.run(signal("BUY", "10:05", "4000.00", symbol="TCS", strategy="s2"), "10:10")
    rejected(out, "daily_loss")
    assert book(out)["holdings"] == []


def test_a_hand_set_halt_outranks_the_daily_loss_reason():
    books = Books(limits=RiskLimits(max_daily_loss=D("300")))
    books.run(signal("BUY", "10:00", "2500.00", "2550.00", "2470.00"), "10:05")
    books.tick("10:06", bar("10:05", "2475.00", "2476.00", "2465.00", "2468.00"))
    books.risk("HALTED", "by hand")
    out = books.step()
    assert (book(out)["trading_state"], book(out)["state_reason"]) == ("HALTED", "by hand")
    rejected(books.run(signal("BUY", "10:05", "2500.00"), "10:10"), "halted")


# --- charges and books ----------------------------------------------------------------------------


def test_a_worked_mis_round_trip_through_the_desk():
    books = Books()
    sig = signal("BUY", "10:00", "1234.50", "1240.00", "1220.00")
    out = books.run(sig, "10:05", execution={**MIS, "quantity": 100})
    entry = final(out, "MARKET")
    # BUY 100 @ 1,234.50 (V 123,450): brokerage 20 (0.03% = 37.035, capped) + exchange 3.666465 + SEBI 0.12345
    # = 23.789915 -> 23.79; stamp 3.7035 + GST 0.18 x 23.789915 = 4.2821847 -> 7.9856847 -> 7.99
    assert (entry["average_price"], entry["fees"], entry["taxes"]) == ("1234.50", "23.79", "7.99")
    # cash 1,000,000 - 123,450 - 31.78 = 876,518.22
    assert book(out)["portfolio"]["available_cash"] == "876518.22"
    out = books.tick("10:06", bar("10:05", "1236.00", "1241.00", "1235.00", "1240.50"))
    exit_ = final(out, "LIMIT")
    # SELL 100 @ 1,240.00 = max(open 1,236, target 1,240) (V 124,000): brokerage 20 + exchange 3.6828 + SEBI 0.124
    # = 23.8068 -> 23.81; STT 31 + GST 4.285224 = 35.285224 -> 35.29
    assert (exit_["average_price"], exit_["fees"], exit_["taxes"]) == ("1240.00", "23.81", "35.29")
    p = book(out)["portfolio"]
    # gross 100 x 5.50 = 550.00; charges 31.78 + 59.10 = 90.88; net 459.12
    assert p == {"name": "Paper Portfolio", "total_value": "1000459.12", "available_cash": "1000459.12",
                 "invested_amount": "0.00", "unrealized_pnl": "0.00", "realized_pnl": "459.12"}


def test_the_book_of_a_long_and_a_short_worked_by_hand():
    books = Books()
    books.signal(signal("BUY", "10:00", "2500.00"))
    books.signal(signal("SHORT", "10:00", "4000.00", symbol="TCS", strategy="s2"), {**MIS, "quantity": 5})
    books.tick("10:05")
    out = books.tick("10:06", bar("10:05", "2505.00", "2512.00", "2504.00", "2510.00"),
                     bar("10:05", "3995.00", "3998.00", "3988.00", "3990.00", symbol="TCS"))
    b = book(out)
    # RELIANCE BUY 10 @ 2,500: charges 10.51
    # TCS SELL 5 @ 4,000 (V 20,000): brokerage 6 + exchange 0.594 + SEBI 0.02 = 6.614 -> 6.61;
    #   STT 5 + GST 1.19052 = 6.19052 -> 6.19: 12.80
    # cash 1,000,000 - 25,000 - 10.51 + 20,000 - 12.80 = 994,976.69
    # market value 10 x 2,510 - 5 x 3,990 = 25,100 - 19,950 = 5,150; total 1,000,126.69
    # unrealised (2,510 - 2,500) x 10 + (4,000 - 3,990) x 5 = 100 + 50 = 150.00
    # identity: 1,000,000 + 0 + 150 - (10.51 + 12.80) = 1,000,126.69
    assert b["portfolio"] == {"name": "Paper Portfolio", "total_value": "1000126.69", "available_cash": "994976.69",
                              "invested_amount": "45000.00", "unrealized_pnl": "150.00", "realized_pnl": "0.00"}
    assert b["holdings"] == [
        {"symbol": "RELIANCE", "quantity": 10, "average_price": "2500.00", "current_price": "2510.00",
         "last_price_update": at("10:06"), "unrealized_pnl": "100.00"},
        {"symbol": "TCS", "quantity": -5, "average_price": "4000.00", "current_price": "3990.00",
         "last_price_update": at("10:06"), "unrealized_pnl": "50.00"},
    ]  # fmt: skip
    books.signal(signal("SELL", "10:05", "2510.00"))
    books.signal(signal("COVER", "10:05", "3990.00", symbol="TCS", strategy="s2"), {**MIS, "quantity": 5})
    out = books.tick("10:10")
    b = book(out)
    # RELIANCE SELL 10 @ 2,510: 16.07 (see the square-off test); net 100 - 10.51 - 16.07 = 73.42
    # TCS BUY 5 @ 3,990 (V 19,950): brokerage 5.985 + exchange 0.592515 + SEBI 0.01995 = 6.597465 -> 6.60;
    #   stamp 0.5985 + GST 1.1875437 = 1.7860437 -> 1.79: 8.39; net 50 - 12.80 - 8.39 = 28.81
    # realised 73.42 + 28.81 = 102.23; flat: total value = cash = 1,000,000 + 102.23
    assert b["holdings"] == []
    assert b["portfolio"] == {"name": "Paper Portfolio", "total_value": "1000102.23", "available_cash": "1000102.23",
                              "invested_amount": "0.00", "unrealized_pnl": "0.00", "realized_pnl": "102.23"}


def test_two_strategies_long_and_short_in_one_symbol_net_in_one_holding():
    books = Books()
    books.signal(signal("BUY", "10:00", "2500.00"))
    books.signal(signal("SHORT", "10:00", "2510.00", strategy="s2"))
    out = books.tick("10:05")
    # no 1m close yet: each position is valued at its own price, so nothing is unrealised, in the holding too
    [h] = book(out)["holdings"]
    assert (h["symbol"], h["quantity"], h["unrealized_pnl"]) == ("RELIANCE", 0, "0.00")
    assert book(out)["portfolio"]["unrealized_pnl"] == "0.00"
    assert book(out)["portfolio"]["invested_amount"] == "50100.00"  # 10 x 2,500 + 10 x 2,510
    out = books.tick("10:06", bar("10:05", "2505.00", "2506.00", "2504.00", "2505.00"))
    # long (2,505 - 2,500) x 10 = 50.00; short (2,510 - 2,505) x 10 = 50.00
    [h] = book(out)["holdings"]
    assert (h["quantity"], h["current_price"], h["unrealized_pnl"]) == (0, "2505.00", "100.00")
    assert book(out)["portfolio"]["unrealized_pnl"] == "100.00"
