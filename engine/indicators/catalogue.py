"""What the registry can build: every indicator family, its parameters, outputs and state size.

A *family* is one kernel instance type (``macd`` computes three outputs from one state). Public
names are families or *aliases* of one output of a family (``adx`` is ``dmi``'s ``adx``).
Parameters, defaults and minimums are TA-Lib's unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.indicators import averages, channels, directional, kernel, momentum, oscillators, volatility, volume


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: integers go to the kernel's int row, reals to its float row.

    ``default_from`` names an earlier parameter whose value is the default (bbands' lower
    deviation defaults to the upper one).
    """

    name: str
    default: float
    minimum: float
    real: bool = False
    default_from: str | None = None


@dataclass(frozen=True, slots=True)
class Family:
    """One kernel instance type.

    ``outputs`` are (output name, column prefix) in kernel order. ``fixed`` are extra integer
    kernel parameters after the user's; ``derived`` computes more of them from the outputs an
    instance has to produce (an EMA cascade runs only as deep as asked). ``shown`` picks the
    parameters that appear in column names (default: all). ``state_size`` takes the integer
    parameters.
    """

    name: str
    opcode: int
    params: tuple[Param, ...]
    outputs: tuple[tuple[str, str], ...]
    state_size: Callable[..., int]
    fixed: tuple[int, ...] = ()
    derived: Callable[[set[str]], tuple[int, ...]] | None = None
    shown: Callable[[tuple[float, ...]], tuple[float, ...]] | None = None


def _period(default: int, minimum: int = 2) -> tuple[Param, ...]:
    return (Param("timeperiod", default, minimum),)


def _single(name: str, opcode: int, default: int, size: Callable[..., int], minimum: int = 2) -> Family:
    return Family(name, opcode, _period(default, minimum), ((name, name),), size)


def _channel(name: str, is_max: bool, previous: bool) -> Family:
    """TA-Lib MAX/MIN need 2 bars; the previous-bars variant can look back 1 bar."""
    return Family(name, kernel.CHANNEL, _period(20, 1 if previous else 2), ((name, name),),
                  channels.channel_size, fixed=(int(is_max), int(previous)))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    _single("sma", kernel.SMA, 30, averages.sma_size),
    Family("ema_cascade", kernel.EMA_CASCADE, _period(30), (("ema", "ema"), ("dema", "dema"), ("tema", "tema")),
           averages.cascade_size, derived=lambda outs: (1 + max(("ema", "dema", "tema").index(o) for o in outs),)),
    _single("wma", kernel.WMA, 30, averages.wma_size),
    _single("rsi", kernel.RSI, 14, momentum.rsi_size),
    Family("change", kernel.CHANGE, _period(10, 1), (("roc", "roc"), ("mom", "mom")), momentum.change_size),
    _single("atr", kernel.ATR, 14, volatility.atr_size, minimum=1),
    _single("willr", kernel.WILLR, 14, oscillators.willr_size),
    _single("cci", kernel.CCI, 14, oscillators.cci_size),
    _single("mfi", kernel.MFI, 14, volume.mfi_size),
    Family("obv", kernel.OBV, (), (("obv", "obv"),), volume.obv_size),
    Family("macd", kernel.MACD,
           (Param("fastperiod", 12, 2), Param("slowperiod", 26, 2), Param("signalperiod", 9, 1)),
           (("macd", "macd"), ("signal", "macd_signal"), ("hist", "macd_hist")), momentum.macd_size),
    Family("bbands", kernel.BBANDS,
           (Param("timeperiod", 5, 2), Param("nbdevup", 2.0, -3e37, real=True),
            Param("nbdevdn", 2.0, -3e37, real=True, default_from="nbdevup")),
           (("upper", "bb_upper"), ("middle", "bb_middle"), ("lower", "bb_lower")),
           volatility.moments_size, shown=lambda p: p[:2] if p[1] == p[2] else p),
    Family("stddev", kernel.STDDEV, (Param("timeperiod", 5, 2), Param("nbdev", 1.0, -3e37, real=True)),
           (("stddev", "stddev"),), volatility.moments_size, shown=lambda p: p[:1] if p[1] == 1.0 else p),
    Family("stoch", kernel.STOCH,
           (Param("fastk_period", 5, 1), Param("slowk_period", 3, 1), Param("slowd_period", 3, 1)),
           (("k", "stoch_k"), ("d", "stoch_d")), oscillators.stoch_size),
    Family("dmi", kernel.DMI, _period(14),
           (("plus_di", "plus_di"), ("minus_di", "minus_di"), ("adx", "adx")), directional.dmi_size),
    _channel("highest", True, False),
    _channel("lowest", False, False),
    _channel("highest_high", True, True),
    _channel("lowest_low", False, True),
)}

#: public name -> (family, output): one output of a family under its own name. Indicators that
#: share their state are outputs of one family, so a set asking for several runs it once.
ALIASES: dict[str, tuple[str, str]] = {
    "ema": ("ema_cascade", "ema"),
    "dema": ("ema_cascade", "dema"),
    "tema": ("ema_cascade", "tema"),
    "roc": ("change", "roc"),
    "mom": ("change", "mom"),
    "adx": ("dmi", "adx"),
    "plus_di": ("dmi", "plus_di"),
    "minus_di": ("dmi", "minus_di"),
}

#: column prefix -> (family, output), to read column names such as ``macd_signal_12_26_9`` back
COLUMN_PREFIXES: dict[str, tuple[str, str]] = {
    prefix: (family.name, output) for family in FAMILIES.values() for output, prefix in family.outputs
}
