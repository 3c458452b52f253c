"""Indicator specs as strategies name them, resolved through the indicator registry.

A strategy asks for indicators by registry spec (``"ema(9)"``,
``"macd(12,26,9).signal"``, or a column name such as ``"ema_9"``); the runner
hands it values by column name (``ema_9``, ``macd_signal_12_26_9``).
:func:`column_of` is the one place that maps one to the other, so strategies
never spell column names by hand.
"""

from __future__ import annotations

import functools

from engine.errors import ConfigError
from engine.indicators import parse


@functools.lru_cache(maxsize=4096)
def column_of(spec: str) -> str:
    """The column holding the single value of ``spec``; raise :class:`ConfigError` for a bad or multi-output spec.

    Cached: strategies may call it on every bar.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"indicator spec must be a string, got {type(spec).__name__}")
    columns = parse(spec).columns
    if len(columns) != 1:
        outputs = ", ".join(f"{spec}.{o}" for o in parse(spec).outputs)
        raise ConfigError(f"indicator spec {spec!r} has {len(columns)} outputs; pick one: {outputs}")
    return columns[0]
