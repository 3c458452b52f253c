"""The feature names of a model mapped to the columns the engine computes for every bar.

A model is only useful live if the engine can hand it the same numbers it was trained on, so each
feature must be a bar field or one indicator column; anything else is refused at import, not at the
first bar.
"""

from __future__ import annotations

from typing import Iterable

from engine.errors import ConfigError
from engine.indicators import parse
from engine.models.onnx_check import ModelRefused

#: bar fields a model may read as they are
BAR_FIELDS = ("open", "high", "low", "close", "volume")


def feature_columns(names: Iterable[str]) -> list[str]:
    """The engine column of each feature, in order: ``close`` -> ``close``, ``ema(50)`` -> ``ema_50``,
    ``macd(12,26,9).hist`` -> ``macd_hist_12_26_9``.

    Raises :class:`engine.models.ModelRefused` naming a feature that is empty, unknown, repeated or an
    indicator of several columns (``macd(12,26,9)`` without an output).
    """
    columns: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise ModelRefused("a feature name is empty")
        if name.lower() in BAR_FIELDS:
            column = name.lower()
        else:
            try:
                spec = parse(name)
            except ConfigError:
                raise ModelRefused(f"feature {name!r} is unknown: use a bar field ({', '.join(BAR_FIELDS)}) "
                                   f"or one indicator column such as rsi_14, ema(50) or macd(12,26,9).hist") from None
            if len(spec.columns) != 1:
                raise ModelRefused(f"feature {name!r} gives {len(spec.columns)} columns "
                                   f"({', '.join(spec.columns)}): name one of them")
            column = spec.columns[0]
        if column in columns:
            raise ModelRefused(f"feature {name!r} repeats column {column}")
        columns.append(column)
    if not columns:
        raise ModelRefused("a model needs at least one feature")
    return columns
