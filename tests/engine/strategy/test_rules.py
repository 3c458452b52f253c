"""The declarative rule grammar: valid documents, exact error paths, evaluation, fuzzing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import Timeframe
from engine.strategy import IndicatorView, RuleError, SignalType, column_of, parse_rule
from engine.strategy.rules import evaluate

ENTRY = {
    "timeframe": "15m",
    "signal": "SHORT",
    "all": [
        {"left": "ema(9)", "op": "crosses_below", "right": "ema(21)"},
        {"any": [{"left": "rsi(14)", "op": ">", "right": 70}, {"left": {"price": "close"}, "op": "<", "right": "bbands(20,2).lower"}]},
        {"not": {"left": "volume", "op": "<=", "right": {"value": 1000}}},
    ],
}


def test_a_valid_document_compiles_with_its_specs_timeframe_and_signal():
    rule = parse_rule(ENTRY, "entry_conditions")
    assert rule.timeframe is Timeframe.M15 and rule.signal is SignalType.SHORT
    assert rule.specs() == ["ema(9)", "ema(21)", "rsi(14)", "bbands(20,2).lower"]


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        ({"all": [{"left": "ema(9)", "op": ">", "right": 1}, {"left": "ema(9)", "op": ">", "right": 1},
                  {"left": "emma(9)", "op": ">", "right": 1}]}, "entry_conditions.all[2].left", "emma"),
        ({"all": []}, "entry_conditions.all", "non-empty list"),
        ({"any": [{"left": "close", "op": "=>", "right": 3}]}, "entry_conditions.any[0].op", "unknown operator"),
        ({"not": {"left": "close", "op": ">"}}, "entry_conditions.not.right", "missing"),
        ({"left": "close", "op": ">", "right": {"value": "high"}}, "entry_conditions.right.value", "must be a number"),
        ({"left": "close", "op": ">", "right": {"price": "vwap"}}, "entry_conditions.right.price", "must be one of"),
        ({"left": "close", "op": ">", "right": {"column": "x"}}, "entry_conditions.right.column", "unknown operand key"),
        ({"left": 1, "op": ">", "right": 2}, "entry_conditions", "two constants"),
        ({"left": "close", "op": ">", "right": True}, "entry_conditions.right", "got bool"),
        ({"left": "macd(12,26,9)", "op": ">", "right": 0}, "entry_conditions.left", "3 outputs"),
        ({"all": [{"left": "close", "op": ">", "right": 1}], "when": 1}, "entry_conditions.when", "unknown key"),
        ({"timeframe": "2m", "left": "close", "op": ">", "right": 1}, "entry_conditions.timeframe", "unknown timeframe"),
        ({"signal": "SELL", "left": "close", "op": ">", "right": 1}, "entry_conditions.signal", "BUY or SHORT"),
        ([{"left": "close"}], "entry_conditions", "must be an object"),
        ({"all": ["close > 3"]}, "entry_conditions.all[0]", "must be an object"),
        ({"left": "close", "op": ">", "right": float("nan")}, "entry_conditions.right", "finite"),
    ],
)
def test_invalid_documents_name_the_bad_node(doc, path, message):
    with pytest.raises(RuleError) as info:
        parse_rule(doc, "entry_conditions")
    assert info.value.path == path
    assert message in info.value.problem
    assert info.value.as_dict()["path"] == path


def test_exit_roots_take_no_timeframe():
    with pytest.raises(RuleError) as info:
        parse_rule({"timeframe": "5m", "left": "close", "op": ">", "right": 1}, "exit_conditions", entry=False)
    assert info.value.path == "exit_conditions.timeframe"


def test_depth_is_bounded():
    doc: dict = {"left": "close", "op": ">", "right": 1}
    for _ in range(40):
        doc = {"not": doc}
    with pytest.raises(RuleError, match="nested deeper"):
        parse_rule(doc, "entry_conditions")


def _truth(doc, current, prev=None):
    return evaluate(parse_rule(doc, "r").node, IndicatorView.from_values(current, prev))


def test_crosses_and_comparisons():
    cross = {"left": "ema_9", "op": "crosses_above", "right": "ema_21"}
    assert _truth(cross, {"ema_9": 2, "ema_21": 1}, {"ema_9": 1, "ema_21": 1}) is True
    assert _truth(cross, {"ema_9": 2, "ema_21": 1}, {"ema_9": 1.5, "ema_21": 1}) is False
    assert _truth({"left": "rsi(14)", "op": "crosses_below", "right": 70}, {"rsi_14": 69}, {"rsi_14": 70}) is True
    assert _truth({"left": "close", "op": "==", "right": 5}, {"close": 5}) is True


def test_unknown_values_are_three_valued():
    nan = {"rsi_14": math.nan, "close": 10}
    less = {"left": "rsi_14", "op": "<", "right": 30}
    assert _truth(less, nan) is None
    assert _truth({"not": less}, nan) is None
    assert _truth({"any": [less, {"left": "close", "op": ">", "right": 5}]}, nan) is True
    assert _truth({"all": [less, {"left": "close", "op": ">", "right": 5}]}, nan) is None
    assert _truth({"all": [less, {"left": "close", "op": "<", "right": 5}]}, nan) is False
    assert _truth({"left": "close", "op": "crosses_above", "right": 5}, {"close": 10}) is None


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["close", "ema(9)", "rsi(14)", "macd(12,26,9).signal", "ema(-1)", "foo(", "bbands(20,2)",
                     ">", "crosses_above", "all", "5m", "BUY", ""]),
    st.text(max_size=12),
)
_keys = st.sampled_from(["all", "any", "not", "left", "op", "right", "value", "price", "indicator", "timeframe",
                         "signal", "x"])
_noise = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=4)),
    max_leaves=30,
)
_good_operands = st.one_of(
    st.sampled_from(["close", "high", "ema(9)", "rsi(14)", "macd(12,26,9).signal", "bb_upper_20_2", "atr_14"]),
    st.floats(-1e6, 1e6),
    st.builds(lambda v: {"value": v}, st.integers(-100, 100)),
    st.builds(lambda v: {"indicator": v}, st.sampled_from(["ema(21)", "adx(14)", "cci(20)"])),
)
_bad_operands = st.one_of(
    _scalars,
    st.dictionaries(st.sampled_from(["value", "price", "indicator", "x"]), _scalars, min_size=1, max_size=2),
)
_operands = st.one_of(_good_operands, _good_operands, _good_operands, _good_operands, _bad_operands)
_ops = st.one_of(
    st.sampled_from([">", ">=", "<", "<=", "==", "!=", "crosses_above", "crosses_below"]), st.just("~")
)
_comparison = st.fixed_dictionaries({"left": _operands, "op": _ops, "right": _operands})
_shaped = st.recursive(
    _comparison,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=4)),
        st.builds(lambda c: {"any": c}, st.lists(children, max_size=4)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=20,
)
_documents = st.one_of(_noise, _shaped)


@settings(max_examples=400, deadline=None)
@given(_documents)
def test_fuzzed_documents_raise_nothing_but_rule_errors(doc):
    try:
        rule = parse_rule(doc, "entry_conditions")
    except RuleError as exc:
        assert exc.path.startswith("entry_conditions")
        return
    columns = {c: 1.0 for c in ("open", "high", "low", "close", "volume")}
    columns.update({column_of(spec): 2.0 for spec in rule.specs()})
    view = IndicatorView.from_values(columns, prev={c: 1.5 for c in columns})
    assert rule.holds(view) in (True, False)
