"""Finding strategies: every class declared in the ``sharewise.strategies`` entry point group.

The built-ins in ``strategies/`` are declared there by this engine's own ``pyproject.toml`` (so the
core never imports them) and are listed first, as ``source: "builtin"``; plugins follow by name.

A third-party package declares, in its ``pyproject.toml``::

    [project.entry-points."sharewise.strategies"]
    my_strategy = "my_package.module:MyStrategy"

The entry point name must equal the class's ``name``. A plugin that cannot be
imported, is not a :class:`~engine.strategy.api.Strategy` subclass, has a
mismatched name, or reuses a built-in's name is not offered; it is listed in
:func:`problems` instead, so one broken package never hides the others.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Mapping

from engine.errors import ConfigError
from engine.strategy.api import Risk, Strategy

GROUP = "sharewise.strategies"
#: the distribution whose entry points are the built-ins (strategies/, declared in pyproject.toml)
DISTRIBUTION = "sharewise-engine"
BUILTIN = "builtin"
#: display order of the built-ins (names only: the core never imports them)
BUILTIN_ORDER = ("ema_cross", "rsi_reversion", "macd_cross", "bollinger_breakout", "adx_trend", "donchian_breakout")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    """A discoverable strategy: ``source`` is ``"builtin"`` or the distribution name of its plugin."""

    name: str
    version: str
    source: str
    reference: str
    cls: type[Strategy]

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def describe(self) -> dict[str, Any]:
        """JSON-able row of ``sharewise strategy list --json``."""
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "reference": self.reference,
            "summary": self.summary,
            "params": [p.describe() for p in self.cls.params],
        }


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """An entry point that could not be offered, and why."""

    name: str
    source: str
    reference: str
    problem: str


def available() -> dict[str, StrategyInfo]:
    """Every usable strategy by name: the built-ins first, then plugins in name order (cached: see :func:`refresh`)."""
    return dict(_scan()[0])


def problems() -> list[PluginProblem]:
    """The entry points of group ``sharewise.strategies`` that are not usable, with the reason."""
    return list(_scan()[1])


def create(name: str, params: Mapping[str, Any] | None = None, risk: Risk | None = None) -> Strategy:
    """A configured instance of strategy ``name``; raise :class:`ConfigError` for an unknown name or bad params."""
    infos = available()
    info = infos.get(name)
    if info is None:
        raise ConfigError(f"unknown strategy {name!r}; available: {', '.join(infos) or 'none'}")
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"{name}: parameters must be an object, got {type(params).__name__}")
    values = dict(params or {})
    if "risk" in values:
        raise ConfigError(f"{name}: unknown parameter 'risk' (risk settings come from risk_management)")
    return info.cls(risk=risk, **values)


def refresh() -> None:
    """Forget the cached scan (after installing a plugin into the running interpreter)."""
    _scan.cache_clear()


@functools.cache
def _scan() -> tuple[dict[str, StrategyInfo], list[PluginProblem]]:
    """Built-ins (this distribution's entry points, in their declared order), then plugins by name."""
    found: dict[str, StrategyInfo] = {}
    trouble: list[PluginProblem] = []
    mine = [ep for ep in entry_points(group=GROUP) if _source(ep) == BUILTIN]
    others = sorted((ep for ep in entry_points(group=GROUP) if _source(ep) != BUILTIN), key=lambda e: (e.name, e.value))
    for ep in _declared_order(mine) + others:
        source = _source(ep)
        try:
            cls = _plugin_class(ep, found)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break discovery
            trouble.append(PluginProblem(ep.name, source, ep.value, f"{type(exc).__name__}: {exc}"))
            continue
        found[ep.name] = StrategyInfo(ep.name, str(cls.version), source, ep.value, cls)
    return found, trouble


def _plugin_class(ep: EntryPoint, found: Mapping[str, StrategyInfo]) -> type[Strategy]:
    if ep.name in found:
        raise ConfigError(f"name {ep.name!r} is already taken by {found[ep.name].source}")
    if not NAME.match(ep.name):
        raise ConfigError(f"entry point name {ep.name!r} is not a lower-case identifier")
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"{ep.value} is not a subclass of engine.strategy.Strategy")
    if cls.name != ep.name:
        raise ConfigError(f"entry point name {ep.name!r} differs from the class name attribute {cls.name!r}")
    return cls


def _source(ep: EntryPoint) -> str:
    """``builtin`` for this engine's own strategies, else the distribution that declares the plugin."""
    name = ep.dist.name if ep.dist is not None else "?"
    return BUILTIN if re.sub(r"[-_.]+", "-", name).lower() == DISTRIBUTION else name


def _declared_order(eps: list[EntryPoint]) -> list[EntryPoint]:
    """The built-ins in the order ``strategy list`` has always shown them (entry points come sorted by name)."""
    rank = {name: k for k, name in enumerate(BUILTIN_ORDER)}
    return sorted(eps, key=lambda ep: (rank.get(ep.name, len(rank)), ep.name))
