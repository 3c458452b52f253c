"""The strategy plugin API: what a strategy is given, what it returns, and how it is configured.

A strategy is a *decision*, not a process. At each closed bar of a series
(symbol x timeframe) it receives the :class:`~engine.domain.Bar` and an
:class:`IndicatorView` (that bar's indicator values and the previous bar's),
and returns a list of :class:`SignalIntent`. It does no I/O: no files, no
network, no database, no subprocesses, no clock. The runner
(:mod:`engine.strategy.runner`) enforces what it can: it hands strategies no
handle to anything outside, blocks audited I/O events (``open``,
``socket.connect``, ``subprocess.Popen``, ...) raised while ``on_bar`` runs,
times every call, validates every return value, and disables a deployment
that fails too often.

Configuration is declared, not parsed by hand: a strategy names its frozen
:class:`~engine.strategy.config.StrategyConfig` subclass
(``class EmaCross(Strategy[EmaCrossConfig])``) or, the pre-typed way, a
``params`` tuple of :class:`Param`; ``Strategy(**values)`` validates the values
once and raises :class:`~engine.errors.ConfigError` naming the strategy and the
bad parameter. Target and stop loss come from ATR multiples in :class:`Risk`
(a strategy row's ``risk_management``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Generic, Iterator, Mapping, Sequence, TypeVar, cast, get_args, get_origin

from engine.domain import Bar, ns_to_datetime
from engine.errors import ConfigError, DocumentError  # noqa: F401 - DocumentError is part of this API
from engine.strategy.config import Param, StrategyConfig, config_from_params, is_number
from engine.strategy.specs import column_of

#: Price fields every :class:`IndicatorView` holds besides the indicator columns.
PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


class SignalType(StrEnum):
    """The four signal types of ``trading_signal.signal_type``. BUY/COVER are bullish, SELL/SHORT bearish."""

    BUY = "BUY"
    SELL = "SELL"
    SHORT = "SHORT"
    COVER = "COVER"

    @property
    def bullish(self) -> bool:
        return self in (SignalType.BUY, SignalType.COVER)


@dataclass(frozen=True, slots=True)
class SignalIntent:
    """What a strategy wants to say about one bar. The runner validates it (see :func:`check_intent`).

    ``confidence`` is in [0, 1]; ``entry`` is a finite positive price (normally
    the bar's close); ``target``/``stop_loss`` are finite positive prices or
    ``None``; ``valid_until`` an aware datetime or ``None``; ``market_data`` a
    small JSON-able dict stored with the signal.
    """

    signal_type: SignalType
    confidence: float
    entry: float
    target: float | None = None
    stop_loss: float | None = None
    valid_until: datetime | None = None
    note: str = ""
    market_data: Mapping[str, Any] | None = None


class BadIntent(ValueError):
    """A strategy returned something that is not a valid list of :class:`SignalIntent`."""


def check_intents(result: object) -> list[SignalIntent]:
    """Return ``result`` if it is a list of valid intents; raise :class:`BadIntent` saying what is wrong."""
    if not isinstance(result, list):
        raise BadIntent(f"on_bar must return a list of SignalIntent, got {type(result).__name__}")
    for i, intent in enumerate(result):
        problem = _intent_problem(intent)
        if problem:
            raise BadIntent(f"intent [{i}]: {problem}")
    return result


def _intent_problem(intent: object) -> str | None:
    if not isinstance(intent, SignalIntent):
        return f"not a SignalIntent but {type(intent).__name__}"
    if not isinstance(intent.signal_type, SignalType):
        return f"signal_type {intent.signal_type!r} is not a SignalType"
    if not is_number(intent.confidence) or not 0.0 <= intent.confidence <= 1.0:
        return f"confidence {intent.confidence!r} outside [0, 1]"
    for name in ("entry", "target", "stop_loss"):
        value = getattr(intent, name)
        if value is None and name != "entry":
            continue
        if not is_number(value) or not math.isfinite(value) or value <= 0 or value >= 1e10:
            return f"{name} {value!r} is not a finite positive price"
    if intent.valid_until is not None and (
        not isinstance(intent.valid_until, datetime) or intent.valid_until.utcoffset() is None
    ):
        return "valid_until must be an aware datetime or None"
    if intent.market_data is not None and not isinstance(intent.market_data, Mapping):
        return "market_data must be a mapping or None"
    return None


@dataclass(frozen=True, slots=True)
class Risk:
    """Target and stop loss as multiples of ATR(``atr_period``), from a row's ``risk_management``.

    Keys: ``target_atr`` (default 2), ``stop_atr`` (default 1), ``atr_period``
    (default 14), ``valid_bars`` (default 1: a signal stays valid until the end
    of the next bar). Unknown keys are ignored (the platform stores others).
    """

    target_atr: float = 2.0
    stop_atr: float = 1.0
    atr_period: int = 14
    valid_bars: int = 1

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None, where: str = "risk_management") -> Risk:
        """Validated :class:`Risk`; raise :class:`DocumentError` naming ``where.key`` for a bad value."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise DocumentError(where, "must be an object")
        checks = (
            Param("target_atr", float, 2.0, min=0.0, max=100.0),
            Param("stop_atr", float, 1.0, min=0.0, max=100.0),
            Param("atr_period", int, 14, min=1, max=500),
            Param("valid_bars", int, 1, min=0, max=10_000),
        )
        values = {}
        for param in checks:
            if param.name in doc:
                try:
                    values[param.name] = param.coerce(doc[param.name])
                except ConfigError as exc:
                    raise DocumentError(f"{where}.{param.name}", str(exc)) from None
        return cls(**values)

    @property
    def atr_spec(self) -> str:
        return f"atr({self.atr_period})"

    @property
    def atr_column(self) -> str:
        return column_of(self.atr_spec)


class IndicatorView(Mapping[str, float]):
    """Read-only view of one bar of one series: column name -> value (a Python float, NaN when unknown).

    Keys are the indicator columns (``ema_9``, ``atr_14``, ``macd_signal_12_26_9``
    ...) and the price fields ``open high low close volume``. :meth:`prev`
    gives the previous bar's value of the same series (NaN before the second
    bar). The runner builds one per bar and shares it between the strategies
    that see that bar; it must not be kept after ``on_bar`` returns.
    """

    __slots__ = ("_index", "_row", "_prev")

    def __init__(self, index: Mapping[str, int], row: Sequence[float], prev: Sequence[float] | None) -> None:
        self._index = index
        self._row = row
        self._prev = prev

    @classmethod
    def from_values(cls, current: Mapping[str, float], prev: Mapping[str, float] | None = None) -> IndicatorView:
        """A view built from plain dicts, for tests: keys of ``current`` define the columns."""
        names = list(current)
        index = {name: i for i, name in enumerate(names)}
        row = [float(current[n]) for n in names]
        prev_row = None if prev is None else [float(prev.get(n, math.nan)) for n in names]
        return cls(index, row, prev_row)

    def __getitem__(self, name: str) -> float:
        try:
            return self._row[self._index[name]]
        except KeyError:
            raise _missing(name) from None

    def prev(self, name: str) -> float:
        """Value of ``name`` at the previous bar of this series; NaN when there is none."""
        try:
            i = self._index[name]
        except KeyError:
            raise _missing(name) from None
        return math.nan if self._prev is None else self._prev[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def _missing(name: str) -> KeyError:
    return KeyError(f"no column {name!r} in this view (did indicators() ask for it?)")


ConfigT = TypeVar("ConfigT", bound=StrategyConfig)


class Strategy(ABC, Generic[ConfigT]):
    """Base class of every strategy (built-in, plugin, declarative).

    Subclasses set ``name`` (the discovery name, ``[a-z][a-z0-9_]*``) and
    ``version``, name their parameters' class as the type argument
    (``class EmaCross(Strategy[EmaCrossConfig])``; none: no parameters), and
    implement :meth:`indicators` and :meth:`on_bar`. ``self.cfg`` is the
    validated, frozen config (``self.cfg.fast``), ``self.config`` a read-only
    mapping of the same values and ``self.risk`` the :class:`Risk` settings.
    Per-series memory goes in :meth:`series_state` (it follows the series'
    partition in checkpoints); anything else in :meth:`save_state`/:meth:`load_state`.

    After class creation ``config_class`` and ``params`` describe the same
    parameters: a class declaring the pre-typed ``params`` tuple of
    :class:`Param` gets a ``config_class`` built from it, so both ways share
    one validation path (docs/strategies.md, "Migrating a params plugin").
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    params: ClassVar[tuple[Param, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive ``config_class`` and ``params`` from the one the class declares; ``TypeError`` if both or bad."""
        super().__init_subclass__(**kwargs)
        typed = _config_argument(cls)
        if "params" in cls.__dict__:
            if typed is not None:
                raise TypeError(f"{cls.__qualname__} declares both {typed.__qualname__} and params; keep one")
            cls.config_class = config_from_params(f"{cls.__name__}Config", cls.params, cls.__module__)
        elif typed is not None:
            cls.config_class = typed
        cls.params = cls.config_class.params()

    def __init__(self, *, risk: Risk | None = None, **values: Any) -> None:
        """Validate ``values`` once (:meth:`StrategyConfig.from_mapping`), then :meth:`configure`.

        Raise :class:`ConfigError` prefixed with the strategy's name for an
        unknown parameter, a bad value or a broken cross-field rule.
        """
        try:
            config = self.config_class.from_mapping(values)
        except ConfigError as exc:
            raise ConfigError(f"{self.name}: {exc}") from exc
        self.cfg: ConfigT = cast(ConfigT, config)
        self.config: Mapping[str, Any] = MappingProxyType(config.as_dict())
        self.risk = risk or Risk()
        self._series: dict[str, dict[str, Any]] = {}
        self.configure()

    def configure(self) -> None:
        """Called at the end of ``__init__``, after validation: derive what :meth:`on_bar` needs
        (column names, see :meth:`columns`). Default: nothing. Cross-field rules belong in
        :meth:`StrategyConfig.check`; pre-typed plugins may still raise :class:`ConfigError` here."""

    def columns(self) -> list[str]:
        """The column of each of :meth:`indicators`, in order (``["ema(9)"]`` -> ``["ema_9"]``)."""
        return [column_of(spec) for spec in self.indicators()]

    @abstractmethod
    def indicators(self) -> list[str]:
        """Registry specs this strategy reads, e.g. ``["ema(9)", "ema(21)"]``. ATR for risk is added for you."""

    @abstractmethod
    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        """Decide at the close of ``bar``. Pure: no I/O, no clock, no randomness; return ``[]`` for no signal."""

    def required_indicators(self) -> list[str]:
        """:meth:`indicators` plus the ATR the risk settings need, without duplicates, in order."""
        return list(dict.fromkeys([*self.indicators(), self.risk.atr_spec]))

    def on_start(self) -> None:
        """Called once before the first bar (the place to warm up caches; not I/O-guarded)."""

    def on_stop(self) -> None:
        """Called once when the deployment is removed or the runner stops."""

    def save_state(self) -> dict[str, Any]:
        """JSON-able state beyond :meth:`series_state` for checkpoints. Default: none."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`save_state` returned. Default: nothing."""

    def series_state(self, bar: Bar) -> dict[str, Any]:
        """Mutable JSON-able dict private to this strategy and ``bar``'s series; checkpointed per symbol."""
        return self._series.setdefault(series_key(bar.symbol, bar.timeframe.label), {})

    def dump_series_state(self, chosen: Callable[[str], bool]) -> dict[str, dict[str, Any]]:
        """The per-series states whose series key passes ``chosen`` (the runner's checkpoints)."""
        return {key: state for key, state in self._series.items() if chosen(key)}

    def merge_series_state(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Adopt per-series states from a checkpoint (series absent from ``states`` are kept)."""
        self._series.update({key: dict(state) for key, state in states.items()})

    def drop_series_state(self, chosen: Callable[[str], bool]) -> None:
        """Forget the per-series states whose series key passes ``chosen``."""
        self._series = {key: state for key, state in self._series.items() if not chosen(key)}

    def atr(self, ind: IndicatorView) -> float:
        """This bar's ATR for the risk settings (NaN during warm-up)."""
        return ind.get(self.risk.atr_column, math.nan)

    def intent(
        self, signal_type: SignalType, bar: Bar, ind: IndicatorView, confidence: float, note: str = ""
    ) -> SignalIntent:
        """The standard intent at ``bar``'s close, target and stop from ATR x :attr:`risk` multiples.

        Bullish types put the target above and the stop below the close;
        bearish ones the other way round. While ATR is unknown (warm-up), or a
        level would not be a positive price, that level is ``None``.
        ``valid_until`` is the end of the bar ``risk.valid_bars`` bars later.
        """
        atr = self.atr(ind)
        close = bar.close
        target = stop = None
        if math.isfinite(atr) and atr > 0:
            sign = 1.0 if signal_type.bullish else -1.0
            target = _positive_or_none(close + sign * self.risk.target_atr * atr)
            stop = _positive_or_none(close - sign * self.risk.stop_atr * atr)
        valid_until = None
        if self.risk.valid_bars:
            valid_until = ns_to_datetime(bar.end_ns + self.risk.valid_bars * bar.timeframe.width_ns)
        return SignalIntent(signal_type, confidence, close, target, stop, valid_until, note)

    def emit(self, signal: SignalType | None, bar: Bar, ind: IndicatorView, strength: float) -> list[SignalIntent]:
        """``[]`` when ``signal`` is None, else the standard :meth:`intent`, confidence from ``strength``."""
        return [] if signal is None else [self.intent(signal, bar, ind, confidence_from(strength))]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": dict(self.config)}


def _config_argument(cls: type[Strategy[Any]]) -> type[StrategyConfig] | None:
    """The config class ``cls`` names as its base's type argument (``Strategy[EmaCrossConfig]``), if any.

    None for no argument or a type variable (an intermediate generic base);
    ``TypeError`` for an argument that is not a :class:`StrategyConfig` subclass.
    """
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, Strategy)):
            continue
        [argument] = get_args(base)
        if isinstance(argument, TypeVar):
            return None
        if not (isinstance(argument, type) and issubclass(argument, StrategyConfig)):
            raise TypeError(f"{cls.__qualname__}: {argument!r} is not a StrategyConfig subclass")
        return argument
    return None


def _positive_or_none(price: float) -> float | None:
    return price if price > 0 else None


def series_key(symbol: str, timeframe_label: str) -> str:
    """The string key of a series in snapshots: ``"RELIANCE|5m"``."""
    return f"{symbol}|{timeframe_label}"


def crossed_above(ind: IndicatorView, left: str, right: str | float) -> bool:
    """Previous bar ``left <= right`` and current bar ``left > right`` (False while any value is NaN)."""
    now_l, prev_l = ind[left], ind.prev(left)
    now_r, prev_r = (ind[right], ind.prev(right)) if isinstance(right, str) else (right, right)
    return prev_l <= prev_r and now_l > now_r


def crossed_below(ind: IndicatorView, left: str, right: str | float) -> bool:
    """Previous bar ``left >= right`` and current bar ``left < right`` (False while any value is NaN)."""
    now_l, prev_l = ind[left], ind.prev(left)
    now_r, prev_r = (ind[right], ind.prev(right)) if isinstance(right, str) else (right, right)
    return prev_l >= prev_r and now_l < now_r


def buy_sell(buy: bool, sell: bool) -> SignalType | None:
    """BUY if ``buy``, else SELL if ``sell``, else None."""
    return SignalType.BUY if buy else SignalType.SELL if sell else None


def confidence_from(strength: float) -> float:
    """Built-ins' confidence: ``0.5 + 0.45 * clamp(strength, 0, 1)``; NaN strength counts as 0."""
    return 0.5 + 0.45 * (min(strength, 1.0) if strength > 0.0 else 0.0)


def ratio(numerator: float, denominator: float) -> float:
    """``|numerator| / denominator``, or NaN when the denominator is not a positive number."""
    return abs(numerator) / denominator if denominator > 0 else math.nan
