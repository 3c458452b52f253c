"""Typed strategy configs: validated once at build, frozen, and the pre-typed ``params`` way still works."""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any

import pytest

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.strategy import IndicatorView, Param, SignalIntent, Strategy, StrategyConfig, param

BAR = Bar("TCS", Timeframe.M5, 0, 1, 1, 1, 1, 1, 1)

#: Every config :meth:`BandConfig.check` has seen, in order.
CHECKED: list[StrategyConfig] = []


@dataclass(frozen=True, slots=True)
class BandConfig(StrategyConfig):
    period: int = param(14, min=2, max=500, help="RSI period")
    low: float = param(30.0, min=0.0, max=100.0, help="oversold level")
    high: float = param(70.0, min=0.0, max=100.0, help="overbought level")
    price: str = param("close", choices=("close", "typical"), help="price the RSI reads")
    confirm: bool = param(False, help="wait one bar")

    def check(self) -> None:
        CHECKED.append(self)
        self.require_less("low", "high")


class Band(Strategy[BandConfig]):
    """A typed-config strategy that reads every parameter as an attribute."""

    name = "band"

    def indicators(self) -> list[str]:
        return [f"rsi({self.cfg.period})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        return []


class Legacy(Strategy):
    """A plugin written before typed configs: a ``params`` tuple, string keys, a check in ``configure``."""

    name = "legacy"
    params = (
        Param("period", int, 10, min=1, max=500, help="ROC period in bars"),
        Param("threshold", float, 1.0, min=0.01, max=100.0, help="threshold in percent"),
        Param("label", str, None, help="no default value: taken as declared"),
    )

    def configure(self) -> None:
        if self.config["threshold"] > self.config["period"]:
            raise ConfigError(f"legacy: parameter 'threshold' must be <= 'period' ({self.config['period']})")
        self.roc = f"roc_{self.config['period']}"

    def indicators(self) -> list[str]:
        return [f"roc({self.config['period']})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        return self.emit(None, bar, ind, ind[self.roc] / self.config["threshold"])


def test_values_are_coerced_as_json_carries_them_and_read_as_attributes():
    config = BandConfig.from_mapping({"period": 20.0, "low": 25, "price": "typical", "confirm": True})
    assert config == BandConfig(period=20, low=25.0, high=70.0, price="typical", confirm=True)
    assert type(config.period) is int and type(config.low) is float
    assert Band(period=21).cfg.period == 21 and Band().cfg == BandConfig()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"period": "14"}, "parameter 'period' must be int, got '14'"),
        ({"period": 14.5}, "parameter 'period' must be int"),
        ({"low": True}, "parameter 'low' must be float"),
        ({"confirm": 1}, "parameter 'confirm' must be bool"),
        ({"period": 1}, "parameter 'period' must be >= 2, got 1"),
        ({"high": 101}, "parameter 'high' must be <= 100.0"),
        ({"price": "open"}, "parameter 'price' must be one of \\['close', 'typical'\\]"),
        ({"low": 80}, "parameter 'low' \\(80.0\\) must be < 'high' \\(70.0\\)"),
        ({"span": 3}, "unknown parameter 'span'; known: period, low, high, price, confirm"),
    ],
)
def test_a_bad_value_is_refused_naming_the_parameter_and_the_strategy(values, message):
    with pytest.raises(ConfigError, match=message):
        BandConfig.from_mapping(values)
    with pytest.raises(ConfigError, match=f"^band: {message}"):
        Band(**values)


def test_cross_field_check_runs_once_when_the_strategy_is_built():
    CHECKED.clear()
    strategy = Band(low=20)
    strategy.required_indicators()
    strategy.on_bar(BAR, IndicatorView.from_values({"rsi_14": 50.0}))
    assert CHECKED == [strategy.cfg] and CHECKED[0] is strategy.cfg


def test_the_config_is_frozen_and_its_mapping_read_only():
    strategy = Band(period=20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        strategy.cfg.period = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        strategy.config["period"] = 5  # type: ignore[index]
    assert dict(strategy.config) == {"period": 20, "low": 30.0, "high": 70.0, "price": "close", "confirm": False}
    assert not hasattr(strategy.cfg, "__dict__")


def test_the_declared_fields_describe_the_strategy_parameters():
    assert Band.config_class is BandConfig
    assert Band.params == BandConfig.params()
    assert Band.params[3] == Param("price", str, "close", choices=("close", "typical"), help="price the RSI reads")
    assert [p.describe()["type"] for p in Band.params] == ["int", "float", "float", "str", "bool"]


def test_an_old_style_params_plugin_keeps_working_through_the_same_validation():
    assert Legacy.params[0] == Param("period", int, 10, min=1, max=500, help="ROC period in bars")
    assert Legacy.config_class.params() == Legacy.params
    strategy = Legacy(period=12.0)
    assert dict(strategy.config) == {"period": 12, "threshold": 1.0, "label": None}
    assert strategy.cfg.period == 12 and strategy.indicators() == ["roc(12)"]
    assert strategy.on_bar(BAR, IndicatorView.from_values({"roc_12": 0.1})) == []
    with pytest.raises(ConfigError, match="^legacy: parameter 'period' must be int"):
        Legacy(period="12")
    with pytest.raises(ConfigError, match="^legacy: unknown parameter 'fast'; known: period, threshold, label"):
        Legacy(fast=3)
    with pytest.raises(ConfigError, match="'threshold' must be <= 'period'"):
        Legacy(period=2, threshold=5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        strategy.cfg.period = 5


def test_declarations_that_cannot_be_validated_fail_when_the_strategy_class_is_defined():
    class Undecorated(BandConfig):
        extra: int = param(1)

    @dataclass(frozen=True, slots=True)
    class Bare(StrategyConfig):
        period: int = 14

    @dataclass(frozen=True, slots=True)
    class Listed(StrategyConfig):
        symbols: list = param(())

    for config, message in [(Undecorated, "@dataclass"), (Bare, "Bare.period must be declared with param"),
                            (Listed, "int, float, bool or str")]:  # fmt: skip
        with pytest.raises(TypeError, match=message):
            _strategy_class(config)
    with pytest.raises(TypeError, match="not a StrategyConfig"):
        _strategy_class(dict)
    with pytest.raises(TypeError, match="declares both BandConfig and params"):
        _strategy_class(BandConfig, params=(Param("period", int, 14),))


def _strategy_class(config: type, **namespace: Any) -> type:
    """``class Broken(Strategy[config])`` with ``namespace`` as its body."""
    return types.new_class("Broken", (Strategy[config],), exec_body=lambda body: body.update(namespace))
