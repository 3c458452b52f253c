"""strategies_strategy rows -> deployments: named and declarative rows, invalid rows as error objects."""

from __future__ import annotations

import orjson
import pytest

from engine.domain import Timeframe
from engine.strategy import IndicatorView, InvalidStrategyRow, SignalType, deployment_from_row, deployments_from_rows
from engine.strategy.declarative import DeclarativeStrategy
from strategies.ema_cross import EmaCross
from tests.strategies.series import bars

DEMO = {
    "id": "6f1c0000-0000-0000-0000-000000000001",
    "user_id": "6f1c0000-0000-0000-0000-0000000000aa",
    "name": "ema_cross",
    "parameters": orjson.dumps({"strategy": "ema_cross", "symbols": ["RELIANCE", "tcs"], "timeframe": "1m",
                                "params": {}}).decode(),  # fmt: skip
    "entry_conditions": "{}",
    "exit_conditions": "{}",
    "risk_management": "{}",
    "is_active": True,
}

DECLARATIVE = {
    "id": "d1",
    "user_id": "u1",
    "name": "RSI dip buyer",
    "parameters": {"symbols": ["INFY"], "confidence": 0.7},
    "entry_conditions": {"timeframe": "15m", "all": [{"left": "rsi(14)", "op": "<", "right": 30},
                                                     {"left": "close", "op": ">", "right": "sma(20)"}]},  # fmt: skip
    "exit_conditions": {"left": "rsi(14)", "op": ">", "right": 55},
    "risk_management": {"target_atr": 3, "stop_atr": 1.5},
    "is_active": True,
}


def test_the_demo_row_names_a_builtin():
    [d] = deployments_from_rows([DEMO])
    assert isinstance(d.strategy, EmaCross)
    assert d.symbols == {"RELIANCE", "TCS"} and d.timeframes == {Timeframe.M1}
    assert (d.user_id, d.strategy_id, d.name) == (DEMO["user_id"], DEMO["id"], "ema_cross")


def test_a_declarative_row():
    d = deployment_from_row(DECLARATIVE)
    assert isinstance(d.strategy, DeclarativeStrategy)
    assert d.timeframes == {Timeframe.M15} and d.symbols == {"INFY"}
    assert d.strategy.required_indicators() == ["rsi(14)", "sma(20)", "atr(14)"]
    assert (d.strategy.risk.target_atr, d.strategy.risk.stop_atr) == (3.0, 1.5)


def test_inactive_rows_are_skipped_and_symbols_default_to_all():
    assert deployments_from_rows([{**DEMO, "is_active": False}]) == []
    row = {**DEMO, "parameters": {"strategy": "macd_cross", "params": {"fast": 5, "slow": 20}}}
    [d] = deployments_from_rows([row])
    assert d.symbols is None and d.timeframes == {Timeframe.M5}


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"parameters": {"strategy": "nope"}}, "parameters.strategy", "unknown strategy 'nope'"),
        ({"parameters": {}}, "parameters.strategy", "names no strategy"),
        ({"parameters": {"strategy": "ema_cross", "params": {"fast": "x"}}}, "parameters.params", "'fast'"),
        ({"parameters": {"strategy": "ema_cross", "params": [1]}}, "parameters.params", "must be an object"),
        ({"parameters": {"strategy": "ema_cross", "params": {"risk": 1}}}, "parameters.params", "'risk'"),
        ({"parameters": {"strategy": "ema_cross", "symbols": []}}, "parameters.symbols", "non-empty list"),
        ({"parameters": {"strategy": "ema_cross", "timeframe": "3m"}}, "parameters.timeframe", "unknown timeframe"),
        ({"parameters": "{not json"}, "parameters", "not valid JSON"),
        ({"risk_management": {"target_atr": -1}}, "risk_management.target_atr", ">= 0.0"),
        ({"entry_conditions": {"any": [{"left": "close", "op": ">", "right": "ema(0)"}]}},
         "entry_conditions.any[0].right", "timeperiod"),
        ({"entry_conditions": {"left": "close", "op": ">", "right": 1}, "exit_conditions": {"not": 3}},
         "exit_conditions.not", "must be an object"),
        ({"entry_conditions": {"left": "close", "op": ">", "right": 1}, "parameters": {"confidence": 2}},
         "parameters.confidence", "[0, 1]"),
        ({"entry_conditions": {"timeframe": "1h", "left": "close", "op": ">", "right": 1},
          "parameters": {"timeframe": "5m"}}, "parameters.timeframe", "contradicts"),
    ],
)
def test_invalid_rows_become_error_objects_naming_the_path(change, path, message):
    errors: list[InvalidStrategyRow] = []
    good = {**DEMO, "id": "good"}
    deployments = deployments_from_rows([{**DEMO, **change}, good], errors)
    assert [d.strategy_id for d in deployments] == ["good"]
    [error] = errors
    assert error.path == path and message in error.problem
    assert error.as_dict() == {"error": "InvalidStrategyRow", "strategy_id": DEMO["id"], "user_id": DEMO["user_id"],
                               "name": "ema_cross", "path": path, "message": error.problem}  # fmt: skip


def test_rows_that_are_not_mappings_do_not_crash():
    errors: list[InvalidStrategyRow] = []
    assert deployments_from_rows([None, 3], errors) == []  # type: ignore[list-item]
    assert [e.path for e in errors] == ["$", "$"]


def _run(strategy, closes_rsi):
    out = []
    for k, (close, rsi, prev) in enumerate(closes_rsi):
        [bar] = bars([close])
        view = IndicatorView.from_values({"rsi_14": rsi, "close": close, "atr_14": 1.0}, {"rsi_14": prev, "close": close})
        out += [(k, i.signal_type) for i in strategy.on_bar(bar, view)]
    return out


def test_declarative_position_model_enters_on_a_rising_edge_and_exits_once():
    row = {**DECLARATIVE, "entry_conditions": {"left": "rsi(14)", "op": "<", "right": 30}}
    strategy = deployment_from_row(row).strategy
    rsi = [50, 25, 20, 60, 40, 25, 60]
    steps = [(100.0, r, p) for r, p in zip(rsi, [50, *rsi[:-1]])]
    # enter at 1 (edge), hold through 2, exit at 3 (rsi > 55), re-enter at 5, exit at 6
    assert _run(strategy, steps) == [(1, SignalType.BUY), (3, SignalType.SELL), (5, SignalType.BUY), (6, SignalType.SELL)]


def test_declarative_short_entries_are_covered_and_without_exit_every_edge_fires():
    short = {**DECLARATIVE, "entry_conditions": {"signal": "SHORT", "left": "rsi(14)", "op": "crosses_above",
                                                 "right": 70}}  # fmt: skip
    steps = [(100.0, 75, 65), (100.0, 60, 75)]
    assert _run(deployment_from_row(short).strategy, steps) == [(0, SignalType.SHORT), (1, SignalType.COVER)]
    no_exit = {**DECLARATIVE, "entry_conditions": {"left": "rsi(14)", "op": "<", "right": 30}, "exit_conditions": {}}
    steps = [(100.0, r, 50) for r in (20, 20, 40, 20)]
    assert _run(deployment_from_row(no_exit).strategy, steps) == [(0, SignalType.BUY), (3, SignalType.BUY)]


def test_a_reload_keeps_unchanged_deployments_running_and_restarts_changed_ones():
    from engine.strategy import StrategyRunner

    runner = StrategyRunner(deployments_from_rows([DEMO, DECLARATIVE]))
    before = {d.key: d for d in runner.deployments}
    changed = {**DECLARATIVE, "parameters": {"symbols": ["INFY"], "confidence": 0.9}}
    runner.replace(deployments_from_rows([DEMO, changed]))
    after = {d.key: d for d in runner.deployments}
    assert after["6f1c0000-0000-0000-0000-0000000000aa/6f1c0000-0000-0000-0000-000000000001"] is before[
        "6f1c0000-0000-0000-0000-0000000000aa/6f1c0000-0000-0000-0000-000000000001"
    ]
    assert after["u1/d1"] is not before["u1/d1"] and after["u1/d1"].strategy.confidence == 0.9
    runner.replace(deployments_from_rows([changed]))
    assert [d.key for d in runner.deployments] == ["u1/d1"]
