"""NSE equity charges: worked round trips computed by hand, half-up rounding, broker overrides, bad input."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest

from engine.errors import ConfigError
from engine.orders.charges import NSE_EQUITY, ChargeRates, Charges, ChargeTable, charges

D = Decimal


def test_cnc_round_trip_worked_by_hand():
    # BUY 10 @ 2,500.00: V = 25,000
    buy = charges("CNC", "BUY", D("2500.00"), 10)
    assert buy.brokerage == 0  # delivery is free
    assert buy.stt == D("25")  # 0.1% x 25,000
    assert buy.exchange == D("0.7425")  # 0.00297% x 25,000 = 25,000 x 297 / 10^7
    assert buy.sebi == D("0.025")  # 10 / 1 crore x 25,000 = 25,000 / 10^6
    assert buy.stamp == D("3.75")  # 0.015% x 25,000
    assert buy.gst == D("0.13815")  # 18% x (0 + 0.7425 + 0.025) = 0.18 x 0.7675
    assert buy.fees == D("0.77")  # 0 + 0.7425 + 0.025 = 0.7675 -> 0.77
    assert buy.taxes == D("28.89")  # 25 + 3.75 + 0.13815 = 28.88815 -> 28.89
    assert buy.total == D("29.66")  # 0.77 + 28.89

    # SELL 10 @ 2,600.00: V = 26,000
    sell = charges("CNC", "SELL", D("2600.00"), 10)
    assert sell.brokerage == 0
    assert sell.stt == D("26")  # 0.1% x 26,000 (delivery STT on both sides)
    assert sell.exchange == D("0.7722")  # 26,000 x 297 / 10^7
    assert sell.sebi == D("0.026")  # 26,000 / 10^6
    assert sell.stamp == 0  # stamp duty on buys only
    assert sell.gst == D("0.143676")  # 0.18 x (0.7722 + 0.026) = 0.18 x 0.7982
    assert sell.fees == D("0.80")  # 0.7982 -> 0.80
    assert sell.taxes == D("26.14")  # 26 + 0.143676 = 26.143676 -> 26.14
    assert sell.total == D("26.94")

    # the round trip: gross 10 x 100 = 1,000.00, charges 29.66 + 26.94 = 56.60, net 943.40
    assert buy.total + sell.total == D("56.60")
    assert D("1000.00") - buy.total - sell.total == D("943.40")


def test_mis_round_trip_worked_by_hand_with_brokerage_capped():
    # BUY 100 @ 1,234.50: V = 123,450
    buy = charges("MIS", "BUY", D("1234.50"), 100)
    assert buy.brokerage == D("20")  # 0.03% x 123,450 = 37.035 > 20: the cap
    assert buy.stt == 0  # intraday STT on sells only
    assert buy.exchange == D("3.666465")  # 123,450 x 297 = 36,664,650 -> / 10^7
    assert buy.sebi == D("0.12345")  # 123,450 / 10^6
    assert buy.stamp == D("3.7035")  # 0.003% x 123,450 = 123,450 x 3 / 10^5
    assert buy.gst == D("4.2821847")  # 0.18 x (20 + 3.666465 + 0.12345) = 0.18 x 23.789915
    assert buy.fees == D("23.79")  # 23.789915 -> 23.79
    assert buy.taxes == D("7.99")  # 0 + 3.7035 + 4.2821847 = 7.9856847 -> 7.99
    assert buy.total == D("31.78")

    # SELL 100 @ 1,240.00: V = 124,000
    sell = charges("MIS", "SELL", D("1240.00"), 100)
    assert sell.brokerage == D("20")  # 0.03% x 124,000 = 37.2 > 20
    assert sell.stt == D("31")  # 0.025% x 124,000
    assert sell.exchange == D("3.6828")  # 124,000 x 297 / 10^7
    assert sell.sebi == D("0.124")  # 124,000 / 10^6
    assert sell.stamp == 0
    assert sell.gst == D("4.285224")  # 0.18 x (20 + 3.6828 + 0.124) = 0.18 x 23.8068
    assert sell.fees == D("23.81")  # 23.8068 -> 23.81
    assert sell.taxes == D("35.29")  # 31 + 4.285224 = 35.285224 -> 35.29
    assert sell.total == D("59.10")

    # the round trip: gross 100 x 5.50 = 550.00, charges 31.78 + 59.10 = 90.88, net 459.12
    assert buy.total + sell.total == D("90.88")
    assert D("550.00") - buy.total - sell.total == D("459.12")


def test_small_mis_trade_pays_percentage_brokerage_below_the_cap():
    # BUY 10 @ 500.00: V = 5,000; 0.03% x 5,000 = 1.50 < 20
    buy = charges("MIS", "BUY", D("500.00"), 10)
    assert buy.brokerage == D("1.5")
    assert buy.exchange == D("0.1485")  # 5,000 x 297 / 10^7
    assert buy.sebi == D("0.005")  # 5,000 / 10^6
    assert buy.stamp == D("0.15")  # 0.003% x 5,000
    assert buy.gst == D("0.29763")  # 0.18 x (1.5 + 0.1485 + 0.005) = 0.18 x 1.6535
    assert buy.fees == D("1.65")  # 1.6535 -> 1.65
    assert buy.taxes == D("0.45")  # 0.15 + 0.29763 = 0.44763 -> 0.45
    # SELL the same: STT 0.025% x 5,000 = 1.25, no stamp
    sell = charges("MIS", "SELL", D("500.00"), 10)
    assert sell.fees == D("1.65")
    assert sell.taxes == D("1.55")  # 1.25 + 0.29763 = 1.54763 -> 1.55
    # at V = 60,000 the percentage is 18.00, still under the cap; at V = 70,000 it is 21.00 -> 20
    assert charges("MIS", "BUY", D("600.00"), 100).brokerage == D("18")
    assert charges("MIS", "BUY", D("700.00"), 100).brokerage == D("20")


def test_fees_and_taxes_round_half_up_at_an_exact_half_paisa():
    # CNC BUY 100 @ 1,500.00: V = 150,000
    # fees = 150,000 x (297 + 10) / 10^7 = 4.455 + 0.15 = 4.605: half-up 4.61 (half-even would give 4.60)
    # taxes = 150 (STT) + 22.5 (stamp) + 0.18 x 4.605 (= 0.8289) = 173.3289 -> 173.33
    c = charges("CNC", "BUY", D("1500.00"), 100)
    assert (c.fees, c.taxes) == (D("4.61"), D("173.33"))
    # MIS SELL 1 @ 20.00 with GST set to 0: taxes = 0.025% x 20 = 0.005: half-up 0.01 (half-even: 0.00)
    # fees = 0.03% x 20 + 20 x 297 / 10^7 + 20 / 10^6 = 0.006 + 0.000594 + 0.00002 = 0.006614 -> 0.01
    no_gst = ChargeTable.with_overrides(NSE_EQUITY, {"MIS": {"gst": 0}})
    c = charges("MIS", "SELL", D("20.00"), 1, no_gst)
    assert c.taxes == D("0.01") and c.fees == D("0.01")
    assert c.total == D("0.02")
    # the caller's decimal context (low precision, banker's rounding) changes nothing
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 3, ROUND_HALF_EVEN
        c = charges("CNC", "BUY", D("1500.00"), 100)
        assert c.exchange == D("4.455") and c.fees == D("4.61") and c.taxes == D("173.33")


def test_zero_quantity_gives_zero_charges_and_amounts_are_decimal():
    c = charges("MIS", "SELL", D("1234.50"), 0)
    assert c == Charges(*([D(0)] * 8))
    assert c.total == 0
    c = charges("CNC", "BUY", 2500, 10)  # a whole-rupee int price is exact too
    assert c.fees == D("0.77") and c.taxes == D("28.89")
    assert all(isinstance(getattr(c, f), Decimal) for f in Charges.__slots__)
    assert str(c.fees) == "0.77" and str(charges("CNC", "SELL", D("0"), 5).taxes) == "0.00"


def test_nse_equity_table_holds_the_published_rates():
    assert NSE_EQUITY.rates("CNC") == ChargeRates(
        brokerage_rate=D("0"), brokerage_cap=None, stt_buy=D("0.001"), stt_sell=D("0.001"),
        exchange=D("0.0000297"), sebi=D("0.000001"), stamp_buy=D("0.00015"), gst=D("0.18"),
    )  # fmt: skip
    assert NSE_EQUITY.rates("MIS") == ChargeRates(
        brokerage_rate=D("0.0003"), brokerage_cap=D("20"), stt_buy=D("0"), stt_sell=D("0.00025"),
        exchange=D("0.0000297"), sebi=D("0.000001"), stamp_buy=D("0.00003"), gst=D("0.18"),
    )  # fmt: skip
    assert D("10") / D("10000000") == NSE_EQUITY.mis.sebi  # ₹10 per crore


def test_with_overrides_changes_only_the_rates_named():
    table = ChargeTable.with_overrides(
        NSE_EQUITY, {"MIS": {"brokerage_rate": "0.0005", "brokerage_cap": 15.5}, "CNC": {"stamp_buy": 0.0002}}
    )
    assert table.mis.brokerage_rate == D("0.0005") and table.mis.brokerage_cap == D("15.5")
    # a JSON float becomes the Decimal it reads as, not its binary expansion 0.000200000000000000009...
    assert table.cnc.stamp_buy == D("0.0002") and str(table.cnc.stamp_buy) == "0.0002"
    # every other rate is the base's
    for name in ChargeRates.__slots__:
        if name not in ("brokerage_rate", "brokerage_cap"):
            assert getattr(table.mis, name) == getattr(NSE_EQUITY.mis, name), name
        if name != "stamp_buy":
            assert getattr(table.cnc, name) == getattr(NSE_EQUITY.cnc, name), name
    # the base is unchanged (frozen) and None / {} give it back
    assert NSE_EQUITY.mis.brokerage_rate == D("0.0003")
    assert ChargeTable.with_overrides(NSE_EQUITY, None) is NSE_EQUITY
    assert ChargeTable.with_overrides(NSE_EQUITY, {}) == NSE_EQUITY
    # the override is used: MIS BUY 100 @ 1,234.50 now pays min(15.5, 0.05% x 123,450 = 61.725) = 15.5
    assert charges("MIS", "BUY", D("1234.50"), 100, table).brokerage == D("15.5")
    # a null cap removes the ceiling: 0.03% x 123,450 = 37.035
    uncapped = ChargeTable.with_overrides(NSE_EQUITY, {"MIS": {"brokerage_cap": None}})
    assert uncapped.mis.brokerage_cap is None
    assert charges("MIS", "BUY", D("1234.50"), 100, uncapped).brokerage == D("37.035")


@pytest.mark.parametrize(
    ("doc", "where", "message"),
    [
        ({"MIS": {"stt_sell": "x"}}, None, "configuration.charges.MIS.stt_sell: must be a number ≥ 0, got 'x'"),
        ({"MIS": {"stt_sell": "-0.1"}}, None, "configuration.charges.MIS.stt_sell: must be a number ≥ 0, got '-0.1'"),
        ({"CNC": {"gst": -1}}, None, "configuration.charges.CNC.gst: must be a number ≥ 0, got -1"),
        ({"CNC": {"gst": True}}, None, "configuration.charges.CNC.gst: must be a number ≥ 0, got True"),
        ({"CNC": {"gst": None}}, None, "configuration.charges.CNC.gst: must be a number ≥ 0, got None"),
        ({"CNC": {"gst": "NaN"}}, None, "configuration.charges.CNC.gst: must be a number ≥ 0, got 'NaN'"),
        ({"CNC": {"gst": float("inf")}}, None, "configuration.charges.CNC.gst: must be a number ≥ 0, got inf"),
        ({"CNC": {"gst": [1]}}, None, "configuration.charges.CNC.gst: must be a number ≥ 0, got [1]"),
        ({"MIS": {"brokerage": "1"}}, None, "configuration.charges.MIS.brokerage: unknown key"),
        ({"NRML": {"gst": "0.18"}}, None, "configuration.charges.NRML: unknown product"),
        ({"mis": {"gst": "0.18"}}, None, "configuration.charges.mis: unknown product"),
        ({"MIS": "cheap"}, None, "configuration.charges.MIS: must be an object"),
        (["MIS"], None, "configuration.charges: must be an object"),
        ({"MIS": {"stamp_buy": "?"}}, "brokers_broker[zerodha].configuration.charges",
         "brokers_broker[zerodha].configuration.charges.MIS.stamp_buy: must be a number ≥ 0, got '?'"),
    ],
)  # fmt: skip
def test_with_overrides_refuses_bad_documents_naming_the_path(doc, where, message):
    args = (NSE_EQUITY, doc) if where is None else (NSE_EQUITY, doc, where)
    with pytest.raises(ConfigError) as raised:
        ChargeTable.with_overrides(*args)
    assert str(raised.value).startswith(message), str(raised.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("NRML", "BUY", D("10"), 1), "product must be one of CNC, MIS, got 'NRML'"),
        (("mis", "BUY", D("10"), 1), "product must be one of CNC, MIS, got 'mis'"),
        (("MIS", "SHORT", D("10"), 1), "side must be one of BUY, SELL, got 'SHORT'"),
        (("CNC", "buy", D("10"), 1), "side must be one of BUY, SELL, got 'buy'"),
        (("CNC", "BUY", 10.5, 1), "price must be a Decimal, got float"),
        (("CNC", "BUY", "10", 1), "price must be a Decimal, got str"),
        (("CNC", "BUY", D("-0.01"), 1), "price must be a finite number ≥ 0"),
        (("CNC", "BUY", D("NaN"), 1), "price must be a finite number ≥ 0"),
        (("CNC", "BUY", D("10"), -1), "quantity must be an int ≥ 0, got -1"),
        (("CNC", "BUY", D("10"), 1.0), "quantity must be an int ≥ 0, got 1.0"),
        (("CNC", "BUY", D("10"), True), "quantity must be an int ≥ 0, got True"),
    ],
)
def test_bad_input_raises_config_error(args, message):
    with pytest.raises(ConfigError) as raised:
        charges(*args)
    assert str(raised.value).startswith(message), str(raised.value)
    with pytest.raises(ConfigError, match="product must be one of CNC, MIS"):
        NSE_EQUITY.rates("NRML")
