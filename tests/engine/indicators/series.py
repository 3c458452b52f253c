"""Generated bar series that stress indicators, and TA-Lib's batch answer for any spec.

The series are what trips indicator code in practice: random walks with gaps (jumps of
-50%..+100%), flat stretches (open = high = low = close for dozens of bars: zero ranges),
zero-volume runs, one-bar spikes in the high, tick-rounded prices (ties everywhere), and
price scales from 1e-6 to 1e7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import talib

from engine.indicators import IndicatorSpec
from engine.indicators.catalogue import FAMILIES


@dataclass(frozen=True, slots=True)
class Bars:
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.close)

    def slice(self, start: int, stop: int) -> Bars:
        return Bars(*(a[start:stop] for a in (self.open, self.high, self.low, self.close, self.volume)))


def random_walk(n: int, seed: int, scale: float = 1000.0, tick: float | None = None) -> Bars:
    """A walk with gaps, flat stretches, zero-volume runs and spikes (see the module doc)."""
    rng = np.random.default_rng(seed)
    close = scale * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    for start in rng.integers(0, n, max(1, n // 1500)):
        close[start:start + rng.integers(5, 80)] = close[start]
    for start in rng.integers(1, n, max(1, n // 2000)):
        close[start:] *= rng.choice([0.5, 0.8, 1.25, 2.0])
    if tick:
        close = np.maximum(np.round(close / tick) * tick, tick)
    opens = np.r_[close[0], close[:-1]]
    high = np.maximum(opens, close) * (1 + np.abs(rng.normal(0.0, 0.003, n)))
    low = np.minimum(opens, close) * (1 - np.abs(rng.normal(0.0, 0.003, n)))
    if tick:
        high = np.maximum(np.round(high / tick) * tick, np.maximum(opens, close))
        low = np.minimum(np.maximum(np.round(low / tick) * tick, tick), np.minimum(opens, close))
    flat = np.r_[False, close[1:] == close[:-1]]
    opens[flat] = high[flat] = low[flat] = close[flat]
    high[rng.integers(0, n, max(1, n // 5000))] *= 3.0
    volume = rng.integers(0, 5000, n).astype(np.float64)
    volume[rng.random(n) < 0.1] = 0.0
    for start in rng.integers(0, n, max(1, n // 3000)):
        volume[start:start + rng.integers(10, 40)] = 0.0
    return Bars(opens, high, low, close, volume)


def constant(n: int, price: float = 123.45, volume: float = 10.0) -> Bars:
    """Every bar identical: every range, change and deviation is exactly zero."""
    p = np.full(n, price)
    return Bars(p, p.copy(), p.copy(), p.copy(), np.full(n, volume))


def single_outputs(specs: list[IndicatorSpec]) -> list[IndicatorSpec]:
    """Each spec split into one spec per output it asks for."""
    singles = []
    for spec in specs:
        many = len(FAMILIES[spec.family].outputs) > 1
        singles.extend(IndicatorSpec(spec.family, spec.params, out if many else None) for out in spec.outputs)
    return singles


def talib_reference(spec: IndicatorSpec, bars: Bars) -> np.ndarray:
    """TA-Lib's batch function on ``bars`` for a single-output spec (NaN during warm-up)."""
    h, l, c, v, p = bars.high, bars.low, bars.close, bars.volume, spec.params  # noqa: E741
    by_close = {"sma": talib.SMA, "wma": talib.WMA, "rsi": talib.RSI}
    by_bar = {"atr": talib.ATR, "willr": talib.WILLR, "cci": talib.CCI}
    outputs = {
        "macd": lambda: dict(zip(("macd", "signal", "hist"), talib.MACD(c, *p))),
        "bbands": lambda: dict(zip(("upper", "middle", "lower"), talib.BBANDS(c, p[0], p[1], p[2], 0))),
        "stoch": lambda: dict(zip(("k", "d"), talib.STOCH(h, l, c, p[0], p[1], 0, p[2], 0))),
        "dmi": lambda: {"adx": talib.ADX(h, l, c, *p), "plus_di": talib.PLUS_DI(h, l, c, *p),
                        "minus_di": talib.MINUS_DI(h, l, c, *p)},
        "ema_cascade": lambda: {"ema": talib.EMA(c, *p), "dema": talib.DEMA(c, *p), "tema": talib.TEMA(c, *p)},
        "change": lambda: {"roc": talib.ROC(c, *p), "mom": talib.MOM(c, *p)},
    }
    if spec.family in by_close:
        return by_close[spec.family](c, *p)
    if spec.family in by_bar:
        return by_bar[spec.family](h, l, c, *p)
    if spec.family in outputs:
        return outputs[spec.family]()[spec.output]
    return _other(spec.family, p, h, l, c, v)


def _other(family: str, p: tuple, h: np.ndarray, l: np.ndarray, c: np.ndarray,  # noqa: E741
           v: np.ndarray) -> np.ndarray:
    if family == "mfi":
        return talib.MFI(h, l, c, v, *p)
    if family == "obv":
        return talib.OBV(c, v)
    if family == "stddev":
        return talib.STDDEV(c, *p)
    if family in ("highest", "lowest"):
        return talib.MAX(h, *p) if family == "highest" else talib.MIN(l, *p)
    source = h if family == "highest_high" else l
    if p[0] == 1:
        window = source
    else:
        window = talib.MAX(source, *p) if family == "highest_high" else talib.MIN(source, *p)
    return np.r_[np.nan, window[:-1]]  # the window of the previous bars
