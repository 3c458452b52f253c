"""The registry: names and parameters in, validated specs and column names out; IndicatorSet misuse."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import BadData, ConfigError
from engine.indicators import DEFAULT_COLUMNS, IndicatorSet, IndicatorSpec, default_set, parse, spec

BRIEF_COLUMNS = (
    "sma_20 ema_20 wma_20 dema_20 tema_20 rsi_14 macd_12_26_9 macd_signal_12_26_9 macd_hist_12_26_9 "
    "bb_upper_20_2 bb_middle_20_2 bb_lower_20_2 atr_14 adx_14 plus_di_14 minus_di_14 stoch_k_14_3_3 "
    "stoch_d_14_3_3 cci_20 mfi_14 obv willr_14 roc_10 mom_10 stddev_20"
).split()


def test_default_columns_are_the_25_of_the_contract() -> None:
    assert list(DEFAULT_COLUMNS) == BRIEF_COLUMNS
    assert default_set(3).columns == DEFAULT_COLUMNS


@pytest.mark.parametrize(("text", "columns"), [
    ("ema(50)", ("ema_50",)),
    (" EMA ( 50 ) ", ("ema_50",)),
    ("rsi(7)", ("rsi_7",)),
    ("rsi", ("rsi_14",)),  # TA-Lib's default period
    ("macd(12,26,9).signal", ("macd_signal_12_26_9",)),
    ("macd", ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9")),
    ("bbands(20,2)", ("bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2")),  # lower deviation = upper
    ("bbands(20,2,3).lower", ("bb_lower_20_2_3",)),
    ("bbands(20,2.5).upper", ("bb_upper_20_2.5",)),
    ("stddev(20)", ("stddev_20",)),
    ("stddev(20,2)", ("stddev_20_2",)),
    ("stoch(14,3,3).k", ("stoch_k_14_3_3",)),
    ("adx(14)", ("adx_14",)),
    ("dmi(14)", ("plus_di_14", "minus_di_14", "adx_14")),
    ("ema_cascade(9)", ("ema_9", "dema_9", "tema_9")),
    ("change(5)", ("roc_5", "mom_5")),
    ("obv", ("obv",)),
    ("highest_high(20)", ("highest_high_20",)),
])
def test_parse_gives_columns(text: str, columns: tuple[str, ...]) -> None:
    assert parse(text).columns == columns


@pytest.mark.parametrize("column", [*BRIEF_COLUMNS, "bb_lower_20_2_3", "stddev_20_2", "lowest_low_5", "ema_2"])
def test_every_column_name_parses_back_to_its_spec(column: str) -> None:
    assert parse(column).columns == (column,)


def test_aliases_and_structured_specs_are_the_same_spec() -> None:
    assert parse("adx(14)") == IndicatorSpec("dmi", (14,), "adx") == spec("adx", 14)
    assert parse("macd(12,26,9).hist") == spec("macd", 12, 26, 9, output="hist")
    assert str(parse("bbands(20,2).upper")) == "bbands(20,2,2).upper"
    assert str(parse("tema_20")) == "tema(20)" and str(parse("mom")) == "mom(10)"
    assert parse(str(parse("macd(5, 35, 1).signal"))) == parse("macd(5,35,1).signal")


@pytest.mark.parametrize(("text", "complaint"), [
    ("emaa(20)", "unknown indicator 'emaa'"),
    ("ema(20", "not understood"),
    ("ema(20).signal", "ema has a single output"),
    ("macd(12,26,9).slow", "no output 'slow'"),
    ("adx(14).adx", "adx has a single output"),
    ("sma(20,3)", "at most 1 parameters"),
    ("sma(2.5)", "timeperiod must be an integer"),
    ("sma(1)", "timeperiod must be >= 2"),
    ("rsi(x)", "parameter 'x' is not a number"),
    ("macd(12,,9)", "empty parameter"),
    ("bbands(20,nan)", "not a finite number"),
    ("ema_twenty", "not understood"),
    ("", "not understood"),
])
def test_bad_specs_raise_config_error_naming_them(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert complaint in str(caught.value)
    assert repr(text) in str(caught.value)
    assert caught.value.exit_code == 2


def test_hand_built_specs_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        IndicatorSet([], 1)
    with pytest.raises(ConfigError, match="must be >= 2"):
        IndicatorSet([IndicatorSpec("ema", (0,))], 1)


def test_shared_state_and_duplicate_columns() -> None:
    dmi = IndicatorSet(["dmi(14)"], 1)
    parts = IndicatorSet(["adx(14)", "plus_di(14)", "minus_di(14)", "adx_14"], 1)
    assert parts.columns == ("adx_14", "plus_di_14", "minus_di_14")
    assert parts.state_bytes_per_instrument == dmi.state_bytes_per_instrument
    one = np.zeros(1, np.int64)
    for k in range(40):
        bar = (100.0 + k % 7, 101.0 + k % 5, 99.0 - k % 3, 100.0 + k % 4, 10.0)
        got, want = parts.update(one, *bar), dmi.update(one, *bar)
    assert np.array_equal(got[0], want[0][[2, 0, 1]], equal_nan=True)


def test_indicators_sharing_state_run_once() -> None:
    trio = IndicatorSet(["tema(20)", "dema(20)", "ema(20)", "roc(10)", "mom(10)"], 1)
    assert trio.columns == ("tema_20", "dema_20", "ema_20", "roc_10", "mom_10")
    alone = IndicatorSet(["ema_cascade(20)", "change(10)"], 1)
    assert trio.state_bytes_per_instrument == alone.state_bytes_per_instrument
    assert len(trio.snapshot(0)) == len(alone.snapshot(0))


def test_state_is_bounded_by_the_longest_window() -> None:
    small, large = IndicatorSet(["sma(20)"], 1), IndicatorSet(["sma(2000)"], 1)
    assert large.state_bytes_per_instrument - small.state_bytes_per_instrument == 1980 * 8
    assert default_set(1).state_bytes_per_instrument < 4096


def test_update_misuse_changes_nothing() -> None:
    iset = IndicatorSet(["sma(2)"], 2)
    before = iset.snapshot(np.arange(2))
    with pytest.raises(ConfigError, match="instrument index 2 outside 0..1"):
        iset.update(np.array([0, 2]), [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ConfigError, match="differ in shape"):
        iset.update(np.array([0, 1]), [1.0, 1.0], [1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    assert iset.snapshot(np.arange(2)) == before
    with pytest.raises(ConfigError, match="capacity"):
        IndicatorSet(["sma(2)"], 0)
    with pytest.raises(ConfigError, match="instrument indices"):
        iset.reset(5)


def test_grow_keeps_state_and_adds_fresh_instruments() -> None:
    iset = IndicatorSet(["ema(3)"], 1)
    one = np.zeros(1, np.int64)
    for price in (1.0, 2.0, 3.0):
        iset.update(one, price, price, price, price, 1.0)
    kept = iset.snapshot(0)
    iset.grow(3)
    iset.grow(2)  # never shrinks
    assert iset.capacity == 3
    assert iset.snapshot(0) == kept
    assert iset.snapshot(2) == IndicatorSet(["ema(3)"], 1).snapshot(0)
    assert iset.update(np.array([0, 2]), 4.0, [4.0, 4.0], [4.0, 4.0], [4.0, 4.0], [1.0, 1.0])[0, 0] == 3.0


def test_snapshot_must_match_the_set_and_the_indices() -> None:
    iset = IndicatorSet(["ema(5)", "rsi(3)"], 4)
    blob = iset.snapshot(np.array([0, 1]))
    with pytest.raises(ConfigError, match="different indicator set"):
        IndicatorSet(["ema(6)", "rsi(3)"], 4).restore(np.array([0, 1]), blob)
    with pytest.raises(ConfigError, match="holds 2 instruments, 3 indices given"):
        iset.restore(np.array([0, 1, 2]), blob)
    with pytest.raises(BadData) as caught:
        iset.restore(np.array([0, 1]), blob[:-8])
    assert caught.value.reason == "bad_snapshot"
    with pytest.raises(BadData):
        iset.restore(np.array([0, 1]), b"pickle me not")
