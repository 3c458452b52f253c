"""From ``strategies_strategy`` rows to :class:`~engine.strategy.runner.Deployment` objects.

A row is one of two kinds:

* **named**: ``parameters.strategy`` names a built-in or plugin; ``parameters.params``
  (object) configures it. Example (the demo tenant)::

      {"strategy": "ema_cross", "symbols": ["RELIANCE", "TCS"], "timeframe": "1m", "params": {}}

* **declarative**: ``entry_conditions`` is a non-empty rule document
  (:mod:`engine.strategy.rules`), ``exit_conditions`` optional; ``parameters.confidence``
  (0..1, default 0.6) is the signals' confidence.

Both kinds read ``parameters.symbols`` (a list of symbols; absent or ``"*"``: every
symbol), ``parameters.timeframe`` (a label or a list of labels; default ``5m``; a
declarative entry root may name it instead) and ``risk_management`` (see
:class:`~engine.strategy.api.Risk`). Inactive rows are skipped. An invalid row becomes
an :class:`InvalidStrategyRow` naming the JSON path of the problem (for the owner's
notification); it never stops the other rows from loading.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

import orjson

from engine.domain import Timeframe
from engine.errors import ConfigError
from engine.models.runtime import ModelCatalog
from engine.orders.execution import Execution
from engine.strategy import discovery
from engine.strategy.api import DocumentError, Risk, Strategy
from engine.strategy.declarative import DEFAULT_CONFIDENCE, DeclarativeStrategy
from engine.strategy.rules import parse_rule
from engine.strategy.runner import Deployment

DEFAULT_TIMEFRAME = Timeframe.M5
JSON_COLUMNS = ("parameters", "entry_conditions", "exit_conditions", "risk_management")


class InvalidStrategyRow(ConfigError):
    """A strategy row that cannot run; ``path`` is the JSON path of the bad value inside the row."""

    def __init__(self, row: Mapping[str, Any], path: str, problem: str) -> None:
        super().__init__(f"strategy {row.get('name')!r} ({row.get('id')}): {path}: {problem}")
        self.strategy_id = _text(row.get("id"))
        self.user_id = _text(row.get("user_id"))
        self.name = str(row.get("name") or "")
        self.path = path
        self.problem = problem

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": "InvalidStrategyRow",
            "strategy_id": self.strategy_id,
            "user_id": self.user_id,
            "name": self.name,
            "path": self.path,
            "message": self.problem,
        }


def deployments_from_rows(
    rows: Iterable[Mapping[str, Any]], errors: list[InvalidStrategyRow] | None = None,
    models: ModelCatalog | None = None,
) -> list[Deployment]:
    """Deployments of the active, valid rows, in row order. Invalid rows go to ``errors`` (when given).
    ``models``: the models and leases an ML row may name (engine.models.runtime).

    Never raises for a bad row.
    """
    deployments = []
    for row in rows:
        try:
            deployment = deployment_from_row(row, models)
        except InvalidStrategyRow as exc:
            if errors is not None:
                errors.append(exc)
            continue
        if deployment is not None:
            deployments.append(deployment)
    return deployments


def deployment_from_row(row: Mapping[str, Any], models: ModelCatalog | None = None) -> Deployment | None:
    """The deployment of one row, None if inactive; raise :class:`InvalidStrategyRow`.

    A row of ``strategy_type`` ``ML`` deploys ``parameters.model`` (an id of ``models``): its user must own the
    model or hold a lease on it, and a lessee's row runs only on bars inside a lease (engine/models/strategy.py).
    """
    if not isinstance(row, Mapping):
        raise InvalidStrategyRow({}, "$", f"a row must be a mapping, got {type(row).__name__}")
    if not row.get("is_active", False):
        return None
    docs = {column: _json(row, column) for column in JSON_COLUMNS}
    params = docs["parameters"] or {}
    if not isinstance(params, Mapping):
        raise InvalidStrategyRow(row, "parameters", "must be an object")
    try:
        risk = Risk.from_json(docs["risk_management"] or {})
        model_name = None
        if str(row.get("strategy_type") or "").upper() == "ML":
            strategy, rule_timeframe = _model(row, params, risk, models), None
            model_name = strategy.meta.name  # type: ignore[attr-defined]
        elif docs["entry_conditions"]:
            strategy, rule_timeframe = _declarative(docs, params, risk)
        else:
            strategy, rule_timeframe = _named(params, risk), None
        timeframes = _timeframes(params, rule_timeframe)
        symbols = _symbols(params)
        execution = _execution(docs["risk_management"])
    except DocumentError as exc:
        raise InvalidStrategyRow(row, exc.path, exc.problem) from None
    return Deployment(
        strategy=strategy,
        name=model_name or str(row.get("name") or strategy.name),
        timeframes=timeframes,
        symbols=symbols,
        user_id=_text(row.get("user_id")),
        strategy_id=_text(row.get("id")),
        revision=_revision(row, docs, getattr(strategy, "revision_extra", None)),
        execution=execution,
    )


def _model(row: Mapping[str, Any], params: Mapping[str, Any], risk: Risk, models: ModelCatalog | None) -> Strategy:
    from engine.models.strategy import ModelStrategy

    model_id = params.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise DocumentError("parameters.model", "an ML row names its model's id (sharewise model list)")
    if models is not None and model_id in models.errors:
        raise DocumentError("parameters.model", f"model {model_id} cannot run: {models.errors[model_id]}")
    found = None if models is None else models.models.get(model_id)
    if found is None:
        raise DocumentError("parameters.model", f"no model {model_id}")
    meta, runtime = found
    user = _text(row.get("user_id"))
    leases = None
    if user != meta.owner_id:
        leases = models.leases_of(model_id, user or "")  # type: ignore[union-attr]
        if not leases:
            raise DocumentError("parameters.model", f"the row's user neither owns model {model_id} ({meta.name}) nor"
                                                    " holds a lease on it")
    try:
        return ModelStrategy(meta, runtime, leases, risk)
    except ConfigError as exc:
        raise DocumentError("parameters.model", str(exc)) from None


def _named(params: Mapping[str, Any], risk: Risk) -> Strategy:
    name = params.get("strategy")
    if not isinstance(name, str) or not name:
        raise DocumentError("parameters.strategy", "names no strategy, and entry_conditions is empty")
    if name not in discovery.available():
        known = ", ".join(discovery.available())
        raise DocumentError("parameters.strategy", f"unknown strategy {name!r}; available: {known}")
    values = params.get("params") or {}
    if not isinstance(values, Mapping):
        raise DocumentError("parameters.params", "must be an object")
    try:
        return discovery.create(name, values, risk)
    except ConfigError as exc:
        raise DocumentError("parameters.params", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a plugin's constructor must not crash the loader
        raise DocumentError("parameters.strategy", f"{name} failed to start: {type(exc).__name__}: {exc}") from None


def _declarative(docs: Mapping[str, Any], params: Mapping[str, Any], risk: Risk) -> tuple[Strategy, Timeframe | None]:
    entry = parse_rule(docs["entry_conditions"], "entry_conditions")
    exit_ = parse_rule(docs["exit_conditions"], "exit_conditions", entry=False) if docs["exit_conditions"] else None
    confidence = params.get("confidence", DEFAULT_CONFIDENCE)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise DocumentError("parameters.confidence", f"must be a number in [0, 1], got {confidence!r}")
    return DeclarativeStrategy(entry, exit_, float(confidence), risk), entry.timeframe


def _execution(risk: Any) -> Execution | None:
    """``risk_management.execution``: the row trades (docs/orders.md); absent, it gives signals only."""
    if not isinstance(risk, Mapping) or risk.get("execution") is None:
        return None
    return Execution.from_json(risk["execution"])


def _timeframes(params: Mapping[str, Any], from_rule: Timeframe | None) -> frozenset[Timeframe]:
    raw = params.get("timeframe")
    if raw is None:
        return frozenset({from_rule or DEFAULT_TIMEFRAME})
    labels = raw if isinstance(raw, list) else [raw]
    if not labels or not all(isinstance(label, str) for label in labels):
        raise DocumentError("parameters.timeframe", "must be a timeframe label or a non-empty list of labels")
    try:
        timeframes = frozenset(Timeframe.parse(label) for label in labels)
    except ConfigError as exc:
        raise DocumentError("parameters.timeframe", str(exc)) from None
    if from_rule is not None and timeframes != {from_rule}:
        contradiction = f"{raw!r} contradicts entry_conditions.timeframe {from_rule.label!r}"
        raise DocumentError("parameters.timeframe", contradiction)
    return timeframes


def _symbols(params: Mapping[str, Any]) -> frozenset[str] | None:
    raw = params.get("symbols")
    if raw is None or raw == "*":
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s.strip() for s in raw):
        raise DocumentError("parameters.symbols", 'must be a non-empty list of symbols, or "*" for every symbol')
    return frozenset(s.strip().upper() for s in raw)


def _revision(row: Mapping[str, Any], docs: Mapping[str, Any], extra: Any = None) -> str:
    """A digest of what defines the deployment: name, owner and the JSON columns (for a model, also its file and
    the lessee's leases: a lease added or ended is a new revision)."""
    content = {"name": row.get("name"), "user_id": _text(row.get("user_id")), "type": row.get("strategy_type"),
               "extra": extra, **docs}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:16]


def _json(row: Mapping[str, Any], column: str) -> Any:
    """A JSONB column as a Python value (asyncpg hands JSONB over as text unless a codec is set)."""
    value = row.get(column)
    if isinstance(value, (str, bytes)):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidStrategyRow(row, column, f"is not valid JSON: {exc}") from None
    return value


def _text(value: object) -> str | None:
    return None if value is None else str(value)
