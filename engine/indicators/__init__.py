"""Incremental technical indicators: numba kernels with TA-Lib parity, per-instrument state.

Use :func:`parse` / :func:`spec` to name indicators, :class:`IndicatorSet` to hold their state
for many instruments and advance it by micro-batches, :func:`default_set` for the 25 default
columns (:data:`DEFAULT_COLUMNS`).
"""

from engine.indicators.registry import (
    DEFAULT_COLUMNS,
    DEFAULT_SPECS,
    IndicatorSet,
    IndicatorSpec,
    default_set,
    parse,
    spec,
)

__all__ = ["DEFAULT_COLUMNS", "DEFAULT_SPECS", "IndicatorSet", "IndicatorSpec", "default_set", "parse", "spec"]
