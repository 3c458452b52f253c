"""Strategy parameters as typed, frozen configuration: declared once, validated once.

A strategy's parameters are the fields of a frozen dataclass deriving from
:class:`StrategyConfig`, each declared with :func:`param` (default, limits,
help; the type comes from the annotation), as ``strategies/macd_cross.py``
does and docs/strategies.md ("Parameters") describes.

Every construction validates: each value given is coerced by its
:class:`Param` (the JSON rules of :meth:`Param.coerce`), then
:meth:`StrategyConfig.check` applies the cross-field rules.
:meth:`StrategyConfig.from_mapping` adds the refusal of unknown names; a
strategy calls it once, when it is built. A pre-typed ``params`` tuple of
:class:`Param` becomes the same kind of class through
:func:`config_from_params` (docs/strategies.md, "Migrating a params plugin"),
so there is one validation path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import MISSING, Field, dataclass, field, fields, make_dataclass
from typing import Any, Iterable, Mapping, Self, get_type_hints

import numpy as np

from engine.errors import ConfigError

#: The types a parameter may have (JSON's scalars).
PARAM_TYPES: tuple[type, ...] = (int, float, bool, str)

_LIMITS = "sharewise.param"  # key of param()'s limits in a dataclass field's metadata


def is_number(value: object) -> bool:
    """True for an int, float or numpy number; False for a bool (JSON's ``true`` is no number)."""
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter: ``type`` is ``int``, ``float``, ``bool`` or ``str``.

    :meth:`coerce` accepts the value from JSON (an int for a float parameter, a
    float with an integral value for an int one) and enforces ``min``/``max``
    (inclusive) and ``choices``.
    """

    name: str
    type: type
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def coerce(self, value: Any) -> Any:
        """The validated value; raise :class:`ConfigError` naming this parameter."""
        value = self._typed(value)
        if self.min is not None and value < self.min:
            raise ConfigError(f"parameter {self.name!r} must be >= {self.min}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"parameter {self.name!r} must be <= {self.max}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"parameter {self.name!r} must be one of {list(self.choices)}, got {value!r}")
        return value

    def _typed(self, value: Any) -> Any:
        bad = ConfigError(f"parameter {self.name!r} must be {self.type.__name__}, got {value!r}")
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise bad
            return value
        if not is_number(value) or not math.isfinite(value):
            raise bad
        if self.type is int:
            if float(value) != int(value):
                raise bad
            return int(value)
        return float(value)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (``sharewise strategy list --json``)."""
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "choices": list(self.choices) if self.choices is not None else None,
            "help": self.help,
        }


def param(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Iterable[Any] | None = None,
    help: str = "",
) -> Any:
    """A :class:`StrategyConfig` field: its default and the limits its :class:`Param` enforces.

    The parameter's name and type are the field's. The default is the
    author's declaration, taken as is (never coerced), as ``Param`` always did.
    """
    limits = {"min": min, "max": max, "choices": None if choices is None else tuple(choices), "help": help}
    return field(default=default, metadata={_LIMITS: limits})


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    """Base of every strategy's parameters: a frozen dataclass whose fields are declared with :func:`param`.

    Construction coerces every value that is not its field's default
    (:meth:`Param.coerce`) and then runs :meth:`check`, raising
    :class:`ConfigError` naming the parameter; an instance is therefore
    always valid, and immutable (assigning a field raises
    ``dataclasses.FrozenInstanceError``). A subclass must itself be declared
    with ``@dataclass(frozen=True, slots=True)``; a declaration that cannot be
    validated (a field without :func:`param`, a type other than int, float,
    bool or str) raises ``TypeError`` when its strategy class is defined.
    """

    def __post_init__(self) -> None:
        for spec in self.params():
            value = getattr(self, spec.name)
            if value is not spec.default:
                # Frozen: the one write allowed is the coerced value, during construction.
                object.__setattr__(self, spec.name, spec.coerce(value))
        self.check()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """The config of JSON-like ``values`` (absent names keep their defaults).

        Raise :class:`ConfigError` naming the parameter for an unknown name, a
        value of the wrong type, out of range or not among the choices, and
        whatever :meth:`check` raises.
        """
        known = [spec.name for spec in cls.params()]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r}; known: {', '.join(known) or 'none'}")
        return cls(**values)

    @classmethod
    def params(cls) -> tuple[Param, ...]:
        """One :class:`Param` per field, in declaration order; raise ``TypeError`` for a bad declaration."""
        return _declared(cls)

    def check(self) -> None:
        """Cross-field rules, run once per construction after every value is coerced. Default: none.

        Override it to raise :class:`ConfigError` naming the parameters
        involved (:meth:`require_less` covers the common ``a < b``).
        """

    def require_less(self, lower: str, upper: str) -> None:
        """Raise :class:`ConfigError` naming both parameters unless ``lower``'s value is below ``upper``'s."""
        low, high = getattr(self, lower), getattr(self, upper)
        if not low < high:
            raise ConfigError(f"parameter {lower!r} ({low}) must be < {upper!r} ({high})")

    def as_dict(self) -> dict[str, Any]:
        """Parameter name -> value, in declaration order."""
        return {spec.name: getattr(self, spec.name) for spec in self.params()}


def config_from_params(name: str, params: Iterable[Param], module: str) -> type[StrategyConfig]:
    """The :class:`StrategyConfig` subclass ``name`` equivalent to a pre-typed ``params`` tuple.

    Each ``Param(n, t, d, min, max, choices, help)`` becomes the field
    ``n: t = param(d, min=..., max=..., choices=..., help=...)``
    (docs/strategies.md, "Migrating a params plugin").
    """
    specs = [
        (p.name, p.type, param(p.default, min=p.min, max=p.max, choices=p.choices, help=p.help)) for p in params
    ]
    config = make_dataclass(name, specs, bases=(StrategyConfig,), frozen=True, slots=True)
    config.__module__ = module
    return config


@functools.cache
def _declared(cls: type[StrategyConfig]) -> tuple[Param, ...]:
    if "__dataclass_params__" not in cls.__dict__ or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__qualname__} must be declared with @dataclass(frozen=True, slots=True)")
    hints = get_type_hints(cls)
    return tuple(_param_of(cls, f, hints[f.name]) for f in fields(cls))


def _param_of(cls: type[StrategyConfig], f: Field[Any], kind: Any) -> Param:
    where = f"{cls.__qualname__}.{f.name}"
    limits = f.metadata.get(_LIMITS)
    if limits is None or f.default is MISSING:
        raise TypeError(f"{where} must be declared with param(default, ...)")
    if kind not in PARAM_TYPES:
        raise TypeError(f"{where}: a parameter is an int, float, bool or str, not {kind!r}")
    if hasattr(StrategyConfig, f.name):
        raise TypeError(f"{where}: the name is taken by StrategyConfig.{f.name}")
    return Param(f.name, kind, f.default, **limits)
