"""Declarative strategies: a JSON rule grammar, validated on load, evaluated without eval/exec.

A declarative strategy is a ``strategies_strategy`` row whose
``entry_conditions`` is a non-empty rule document. Grammar (``docs/strategies.md``
has the full reference)::

    root      := condition + optional "timeframe": "1m"|"5m"|"15m"|"1h"|"1d"
                 + optional "signal": "BUY"|"SHORT"          (entry root only)
    condition := {"all": [condition, ...]}                   every one is true
               | {"any": [condition, ...]}                   at least one is true
               | {"not": condition}
               | {"left": operand, "op": OP, "right": operand}
    OP        := ">" | ">=" | "<" | "<=" | "==" | "!=" | "crosses_above" | "crosses_below"
    operand   := number | "open"|"high"|"low"|"close"|"volume" | "<indicator spec>"
               | {"price": "close"} | {"indicator": "ema(9)"} | {"value": 30}

``crosses_above`` means previous bar ``left <= right`` and current bar
``left > right`` (``crosses_below`` mirrors it). Logic is three-valued: a
comparison touching an unknown value (NaN, e.g. during warm-up) is *unknown*,
``not unknown`` is unknown, ``all``/``any`` follow Kleene logic, and only a
*true* root fires. Every error is a :class:`RuleError` whose ``path`` names
the bad node, e.g. ``entry_conditions.all[2].left``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from engine.domain import Timeframe
from engine.errors import ConfigError
from engine.strategy.api import PRICE_FIELDS, DocumentError, IndicatorView, SignalType
from engine.strategy.specs import column_of

MAX_DEPTH = 16
MAX_CHILDREN = 64
COMPARISONS = (">", ">=", "<", "<=", "==", "!=")
CROSSES = ("crosses_above", "crosses_below")


class RuleError(DocumentError):
    """A rule document is invalid; ``path`` is the JSON path of the bad node."""


@dataclass(frozen=True, slots=True)
class Operand:
    """A constant (``column`` is None) or a column of the view (``spec`` is the registry spec, if any)."""

    value: float = math.nan
    column: str | None = None
    spec: str | None = None

    def now(self, ind: IndicatorView) -> float:
        return self.value if self.column is None else ind[self.column]

    def before(self, ind: IndicatorView) -> float:
        return self.value if self.column is None else ind.prev(self.column)


@dataclass(frozen=True, slots=True)
class Compare:
    left: Operand
    op: str
    right: Operand


@dataclass(frozen=True, slots=True)
class Junction:
    """``all`` (``every=True``) or ``any`` of ``children``."""

    every: bool
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    child: Node


Node = Compare | Junction | Negation


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated root: its condition tree, timeframe and signal type (entry roots)."""

    node: Node
    timeframe: Timeframe | None = None
    signal: SignalType = SignalType.BUY

    def specs(self) -> list[str]:
        """Registry specs the rule reads, in first-use order, without duplicates."""
        return list(dict.fromkeys(_specs(self.node)))

    def holds(self, ind: IndicatorView) -> bool:
        """True when the rule is true at this bar (unknown counts as not true)."""
        return evaluate(self.node, ind) is True


def parse_rule(doc: object, path: str, entry: bool = True) -> Rule:
    """Validate rule document ``doc`` found at ``path``; raise :class:`RuleError` naming the bad node."""
    if not isinstance(doc, Mapping):
        raise RuleError(path, f"must be an object, got {_kind(doc)}")
    extras = {"timeframe", "signal"} if entry else set()
    condition = {k: v for k, v in doc.items() if k not in extras}
    timeframe = _timeframe(doc["timeframe"], f"{path}.timeframe") if "timeframe" in doc and entry else None
    signal = _signal(doc["signal"], f"{path}.signal") if "signal" in doc and entry else SignalType.BUY
    return Rule(_condition(condition, path, 0), timeframe, signal)


def _condition(doc: object, path: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise RuleError(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, Mapping):
        raise RuleError(path, f"a condition must be an object, got {_kind(doc)}")
    keys = set(doc)
    if keys == {"all"} or keys == {"any"}:
        (key,) = keys
        return Junction(key == "all", _children(doc[key], f"{path}.{key}", depth))
    if keys == {"not"}:
        return Negation(_condition(doc["not"], f"{path}.not", depth + 1))
    if keys == {"left", "op", "right"}:
        return _compare(doc, path)
    return _shape_error(keys, path)


def _shape_error(keys: set[object], path: str) -> Node:
    for key in sorted(keys, key=str):
        if key not in {"all", "any", "not", "left", "op", "right"}:
            raise RuleError(f"{path}.{key}", "unknown key; a condition uses all, any, not or left/op/right")
    if keys & {"left", "op", "right"}:
        missing = sorted({"left", "op", "right"} - keys)
        if missing:
            raise RuleError(f"{path}.{missing[0]}", "missing; a comparison needs left, op and right")
    raise RuleError(path, "a condition holds exactly one of all, any, not, or left/op/right")


def _children(items: object, path: str, depth: int) -> tuple[Node, ...]:
    if not isinstance(items, list) or not items:
        raise RuleError(path, "must be a non-empty list of conditions")
    if len(items) > MAX_CHILDREN:
        raise RuleError(path, f"more than {MAX_CHILDREN} conditions")
    return tuple(_condition(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(items))


def _compare(doc: Mapping[str, Any], path: str) -> Compare:
    op = doc["op"]
    if not isinstance(op, str) or op not in COMPARISONS + CROSSES:
        raise RuleError(f"{path}.op", f"unknown operator {op!r}; use one of {', '.join(COMPARISONS + CROSSES)}")
    left = _operand(doc["left"], f"{path}.left")
    right = _operand(doc["right"], f"{path}.right")
    if left.column is None and right.column is None:
        raise RuleError(path, "compares two constants; one side must be a price or an indicator")
    return Compare(left, op, right)


def _operand(doc: object, path: str) -> Operand:
    if isinstance(doc, Mapping):
        return _tagged_operand(doc, path)
    if isinstance(doc, bool) or doc is None:
        raise RuleError(path, f"an operand is a number, a price field or an indicator spec, got {_kind(doc)}")
    if isinstance(doc, (int, float)):
        return _constant(doc, path)
    if isinstance(doc, str):
        return _price(doc) if doc in PRICE_FIELDS else _indicator(doc, path)
    raise RuleError(path, f"an operand is a number, a price field or an indicator spec, got {_kind(doc)}")


def _tagged_operand(doc: Mapping[Any, Any], path: str) -> Operand:
    if len(doc) != 1:
        raise RuleError(path, "an operand object holds exactly one of price, indicator, value")
    ((key, value),) = doc.items()
    if key == "value" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _constant(value, f"{path}.value")
    if key == "price" and isinstance(value, str) and value in PRICE_FIELDS:
        return _price(value)
    if key == "indicator" and isinstance(value, str):
        return _indicator(value, f"{path}.indicator")
    if key in ("value", "price", "indicator"):
        wanted = {"value": "a number", "price": f"one of {', '.join(PRICE_FIELDS)}", "indicator": "a spec string"}
        raise RuleError(f"{path}.{key}", f"must be {wanted[key]}, got {value!r}")
    raise RuleError(f"{path}.{key}", "unknown operand key; use price, indicator or value")


def _constant(value: int | float, path: str) -> Operand:
    number = float(value)
    if not math.isfinite(number):
        raise RuleError(path, f"constant must be finite, got {value!r}")
    return Operand(value=number)


def _price(field: str) -> Operand:
    return Operand(column=field)


def _indicator(spec: str, path: str) -> Operand:
    try:
        return Operand(column=column_of(spec), spec=spec)
    except ConfigError as exc:
        raise RuleError(path, str(exc)) from None


def _timeframe(value: object, path: str) -> Timeframe:
    labels = [tf.label for tf in Timeframe]
    if not isinstance(value, str) or value not in labels:
        raise RuleError(path, f"unknown timeframe {value!r}; use one of {', '.join(labels)}")
    return Timeframe.parse(value)


def _signal(value: object, path: str) -> SignalType:
    if value not in ("BUY", "SHORT"):
        raise RuleError(path, f"entry signal must be BUY or SHORT, got {value!r}")
    return SignalType(value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def evaluate(node: Node, ind: IndicatorView) -> bool | None:
    """Three-valued truth of ``node`` at this bar: True, False, or None (unknown)."""
    if isinstance(node, Compare):
        return _evaluate_compare(node, ind)
    if isinstance(node, Negation):
        inner = evaluate(node.child, ind)
        return None if inner is None else not inner
    unknown = False
    for child in node.children:
        value = evaluate(child, ind)
        if value is None:
            unknown = True
        elif value is not node.every:
            return value
    return None if unknown else node.every


def _evaluate_compare(node: Compare, ind: IndicatorView) -> bool | None:
    left, right = node.left.now(ind), node.right.now(ind)
    if node.op in CROSSES:
        before_l, before_r = node.left.before(ind), node.right.before(ind)
        if math.isnan(left) or math.isnan(right) or math.isnan(before_l) or math.isnan(before_r):
            return None
        if node.op == "crosses_above":
            return before_l <= before_r and left > right
        return before_l >= before_r and left < right
    if math.isnan(left) or math.isnan(right):
        return None
    return _COMPARE[node.op](left, right)


_COMPARE = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _specs(node: Node) -> list[str]:
    if isinstance(node, Compare):
        return [o.spec for o in (node.left, node.right) if o.spec is not None]
    if isinstance(node, Negation):
        return _specs(node.child)
    return [spec for child in node.children for spec in _specs(child)]
