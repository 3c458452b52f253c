"""The files of a new strategy plugin package (``sharewise strategy new NAME``).

:func:`plugin_files` returns relative path -> text; the CLI writes them. The
package installs with ``pip install -e DIR``, declares its strategy in the
``sharewise.strategies`` entry point group, and ships a test that passes as
generated (``python -m pytest`` inside DIR).
"""

from __future__ import annotations

from engine.errors import ConfigError
from engine.strategy.discovery import NAME, available


def class_name(name: str) -> str:
    """``my_breakout`` -> ``MyBreakout``."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def plugin_files(name: str) -> dict[str, str]:
    """Files of plugin package ``sharewise-<name>``; raise :class:`ConfigError` for a bad or taken name."""
    if not NAME.match(name):
        raise ConfigError(f"strategy name {name!r} must be a lower-case identifier like 'my_breakout'")
    if name in available():
        raise ConfigError(f"strategy name {name!r} is already taken by {available()[name].source}")
    package = f"sharewise_{name}"
    values = {"name": name, "package": package, "cls": class_name(name), "dist": f"sharewise-{name.replace('_', '-')}"}
    return {
        "pyproject.toml": _PYPROJECT.format(**values),
        "README.md": _README.format(**values),
        f"{package}/__init__.py": _INIT.format(**values),
        f"{package}/strategy.py": _STRATEGY.format(**values),
        "tests/test_strategy.py": _TEST.format(**values),
    }


_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "ShareWise strategy plugin: {name}"
requires-python = ">=3.11"
dependencies = ["sharewise-engine"]

[project.entry-points."sharewise.strategies"]
{name} = "{package}.strategy:{cls}"

[tool.setuptools.packages.find]
include = ["{package}*"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

_README = """\
# {dist}

A ShareWise strategy plugin providing `{name}`.

    pip install -e .                      # register the entry point
    sharewise strategy list               # {name} appears, source {dist}
    python -m pytest                      # its tests
    sharewise backtest --strategy {name} ticks.csv --json
"""

_INIT = '''\
"""ShareWise strategy plugin ``{name}``."""

from {package}.strategy import {cls}

__all__ = ["{cls}"]
'''

_STRATEGY = '''\
"""``{name}``: BUY when the close crosses above its SMA(period), SELL when it crosses below.

Replace the logic with yours. Rules of the game: ``on_bar`` is pure (no files,
network, clock or randomness), reads only ``bar`` and ``ind``, and returns a
list of SignalIntent (``[]`` for nothing). Import everything at module level.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Bar
from engine.strategy import (
    IndicatorView,
    SignalIntent,
    Strategy,
    StrategyConfig,
    buy_sell,
    crossed_above,
    crossed_below,
    param,
)


@dataclass(frozen=True, slots=True)
class {cls}Config(StrategyConfig):
    """Parameters of :class:`{cls}`, validated once when the strategy is built."""

    period: int = param(20, min=2, max=500, help="SMA period")


class {cls}(Strategy[{cls}Config]):
    """Close crosses its simple moving average."""

    name = "{name}"
    version = "0.1.0"

    def configure(self) -> None:
        [self.sma] = self.columns()

    def indicators(self) -> list[str]:
        return [f"sma({{self.cfg.period}})"]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        signal = buy_sell(crossed_above(ind, "close", self.sma), crossed_below(ind, "close", self.sma))
        return self.emit(signal, bar, ind, strength=0.5)  # confidence 0.5 + 0.45 * strength
'''

_TEST = '''\
"""Hand-made bars for ``{name}``: the close crosses above its SMA at the second bar."""

from __future__ import annotations

from engine.domain import Bar, Timeframe
from engine.strategy import IndicatorView, SignalType

from {package} import {cls}


def _bar(close: float) -> Bar:
    return Bar("RELIANCE", Timeframe.M5, 1_767_584_700_000_000_000, close, close, close, close, 100.0, 1)


def test_buys_when_close_crosses_above_sma():
    strategy = {cls}()
    ind = IndicatorView.from_values(
        {{"close": 101.0, "sma_20": 100.0, "atr_14": 2.0}}, prev={{"close": 99.0, "sma_20": 100.0}}
    )
    [intent] = strategy.on_bar(_bar(101.0), ind)
    assert intent.signal_type is SignalType.BUY
    assert (intent.entry, intent.target, intent.stop_loss) == (101.0, 105.0, 99.0)


def test_nothing_without_a_cross():
    ind = IndicatorView.from_values({{"close": 101.0, "sma_20": 100.0}}, prev={{"close": 100.5, "sma_20": 100.0}})
    assert {cls}().on_bar(_bar(101.0), ind) == []
'''
