"""The strategy API: parameters, intents, the indicator view, risk levels, the shared rounding."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.strategy import (
    DocumentError,
    EmittedSignal,
    IndicatorView,
    Param,
    Risk,
    SignalIntent,
    SignalType,
    round_price,
    signal_record,
)
from engine.strategy.api import BadIntent, check_intents
from strategies.ema_cross import EmaCross

#: 2026-01-05 15:25 IST: the last 5-minute bar of the session
LAST_BAR_NS = 1_767_584_700_000_000_000 + 370 * 60 * 1_000_000_000


def test_param_coercion_and_bounds():
    p = Param("n", int, 9, min=2, max=10)
    assert p.coerce(3) == 3 and p.coerce(4.0) == 4
    for bad, message in [(4.5, "must be int"), (True, "must be int"), (1, ">= 2"), (11, "<= 10"), ("3", "must be int")]:
        with pytest.raises(ConfigError, match=message):
            p.coerce(bad)
    assert Param("x", float, 1.0).coerce(2) == 2.0
    with pytest.raises(ConfigError, match="one of"):
        Param("mode", str, "a", choices=("a", "b")).coerce("c")


def test_check_intents_accepts_valid_lists_only():
    good = SignalIntent(SignalType.SELL, 1.0, 10.0, 9.0, 11.0, datetime(2026, 1, 5, tzinfo=timezone.utc))
    assert check_intents([good]) == [good] and check_intents([]) == []
    with pytest.raises(BadIntent, match="tuple"):
        check_intents((good,))
    with pytest.raises(BadIntent, match="valid_until"):
        check_intents([SignalIntent(SignalType.SELL, 1.0, 10.0, valid_until=datetime(2026, 1, 5))])
    with pytest.raises(BadIntent, match="target inf"):
        check_intents([SignalIntent(SignalType.SELL, 1.0, 10.0, target=math.inf)])


def test_indicator_view_is_read_only_with_prev_and_clear_missing_keys():
    view = IndicatorView.from_values({"ema_9": 1.5, "close": 10.0}, {"ema_9": 1.0})
    assert dict(view) == {"ema_9": 1.5, "close": 10.0}
    assert view.prev("ema_9") == 1.0 and math.isnan(view.prev("close"))
    with pytest.raises(KeyError, match="ema_50"):
        view["ema_50"]
    with pytest.raises(TypeError):
        view["ema_9"] = 2.0  # type: ignore[index]


def test_risk_from_json_and_levels_for_both_directions():
    assert Risk.from_json({"target_atr": 3, "note": "ignored"}) == Risk(target_atr=3.0)
    with pytest.raises(DocumentError) as info:
        Risk.from_json({"atr_period": 0})
    assert info.value.path == "risk_management.atr_period"
    strategy = EmaCross(risk=Risk(target_atr=3, stop_atr=0.5, valid_bars=2))
    bar = Bar("TCS", Timeframe.M5, LAST_BAR_NS - 10 * 60 * 1_000_000_000, 100, 100, 100, 100, 1, 1)
    view = IndicatorView.from_values({"atr_14": 2.0})
    buy = strategy.intent(SignalType.BUY, bar, view, 0.7)
    sell = strategy.intent(SignalType.SELL, bar, view, 0.7)
    assert (buy.target, buy.stop_loss) == (106.0, 99.0) and (sell.target, sell.stop_loss) == (94.0, 101.0)
    assert buy.valid_until == datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)  # 15:15 IST bar: its end + 2 bars


def test_round_price_rounds_the_decimal_spelling_half_up():
    assert [round_price(x) for x in (2.675, 1.005, 0.125, 100.0, 1234.5649)] == [
        Decimal("2.68"), Decimal("1.01"), Decimal("0.13"), Decimal("100.00"), Decimal("1234.56")
    ]
    assert round_price(None) is None


def test_signal_record_is_what_the_sink_and_the_backtest_write():
    bar = Bar("TCS", Timeframe.M5, LAST_BAR_NS, 100, 101, 99, 100.125, 1, 1)
    intent = SignalIntent(SignalType.BUY, 0.8333, 100.125, 104.3751, None, None, "cross", {"ema_9": 1.0})
    record = signal_record(EmittedSignal("u", "ema_cross", "s", bar, intent))
    assert (record.entry_price, record.target_price, record.stop_loss) == (Decimal("100.13"), Decimal("104.38"), None)
    assert record.confidence_score == Decimal("0.83") and record.timeframe == "5m"
    assert record.market_data == {"ema_9": 1.0, "note": "cross"}
    assert record.as_json() == {"time": "2026-01-05T15:25:00+05:30", "symbol": "TCS", "signal_type": "BUY",
                                "entry_price": 100.13, "target_price": 104.38, "stop_loss": None,
                                "confidence_score": 0.83}  # fmt: skip
