"""Runs many deployed strategies on micro-batches of closed bars, each isolated from the others.

The live pipeline and ``sharewise backtest`` drive the same :class:`StrategyRunner`:

1. build one ``IndicatorSet`` with :meth:`StrategyRunner.indicator_specs` (plus
   the default columns), one series per (symbol x timeframe);
2. for each micro-batch of closed bars, in series order, call
   :meth:`StrategyRunner.on_bars` with the bars and their indicator rows;
3. drain :meth:`StrategyRunner.take_failures` into owner notifications;
4. checkpoint with :meth:`snapshot` / :meth:`restore`.

Isolation: an exception, an invalid return value (see
:func:`engine.strategy.api.check_intents`), an I/O attempt (see
:mod:`engine.strategy.guard`) or a call slower than ``budget_ms`` is a
*failure* of that deployment: its signals of that bar are dropped (except a
slow call's, which are valid, merely late), a :class:`StrategyFailure` is
queued, and after ``max_failures`` failures the deployment is disabled.
Nothing a strategy does reaches the caller as an exception. A strategy that
never returns cannot be interrupted in-process: the budget only reports it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import orjson

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.indicators import parse
from engine.orders.execution import Execution
from engine.strategy.api import (
    PRICE_FIELDS,
    BadIntent,
    IndicatorView,
    SignalIntent,
    Strategy,
    check_intents,
    series_key,
)
from engine.strategy.guard import guarded

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True, eq=False)
class Deployment:
    """One strategy instance running for one owner on some symbols and timeframes.

    ``name`` is the ``strategy_name`` its signals carry; ``symbols`` None means
    every symbol; ``strategy_id`` is the ``strategies_strategy`` row (None for
    a built-in run directly, e.g. by a backtest). ``key`` identifies it in
    failures and snapshots; ``revision`` (a digest of its row) tells a reload
    whether it changed.
    """

    strategy: Strategy
    name: str
    timeframes: frozenset[Timeframe] = frozenset({Timeframe.M5})
    symbols: frozenset[str] | None = None
    user_id: str | None = None
    strategy_id: str | None = None
    revision: str | None = None
    execution: Execution | None = None  # the row trades (docs/orders.md); None: signals only

    @property
    def key(self) -> str:
        return f"{self.user_id or '-'}/{self.strategy_id or self.name}"

    def wants(self, symbol: str, timeframe: Timeframe) -> bool:
        return timeframe in self.timeframes and (self.symbols is None or symbol in self.symbols)


@dataclass(frozen=True, slots=True)
class EmittedSignal:
    """A validated intent of one deployment at one bar (prices not yet rounded: see ``signals``)."""

    user_id: str | None
    strategy_name: str
    strategy_id: str | None
    bar: Bar
    intent: SignalIntent
    execution: Execution | None = None


class FailureKind(StrEnum):
    ERROR = "error"  # on_bar (or on_start) raised
    GARBAGE = "garbage"  # the return value is not a valid list of SignalIntent
    IO = "io"  # an I/O attempt was refused
    SLOW = "slow"  # on_bar took longer than the budget


@dataclass(frozen=True, slots=True)
class StrategyFailure:
    """One failure of a deployment, for its owner's notification. ``disabled``: this one disabled it."""

    user_id: str | None
    strategy_id: str | None
    strategy_name: str
    kind: FailureKind
    detail: str
    symbol: str | None
    bar_time: str | None
    failures: int
    disabled: bool

    @property
    def message(self) -> str:
        where = f" on {self.symbol} bar {self.bar_time}" if self.symbol else ""
        tail = " The strategy has been disabled." if self.disabled else ""
        return f"Strategy {self.strategy_name!r} failed ({self.kind}){where}: {self.detail}.{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "strategy_id": self.strategy_id,
            "strategy_name": self.strategy_name,
            "kind": str(self.kind),
            "detail": self.detail,
            "symbol": self.symbol,
            "bar_time": self.bar_time,
            "failures": self.failures,
            "disabled": self.disabled,
        }


@dataclass(slots=True)
class _Slot:
    """Mutable bookkeeping of one deployment."""

    deployment: Deployment
    failures: int = 0
    disabled: bool = False
    started: bool = False
    reads: tuple[str, ...] | None = None  # the indicator columns its strategy asked for (signals' market_data)


def _with_indicators(slot: _Slot, view: IndicatorView, intents: Sequence[SignalIntent]) -> list[SignalIntent]:
    """``intents`` with ``market_data["indicators"]``: the values of the columns the strategy asked for, at
    the decision (NaN as None), next to what the strategy put there itself."""
    if not intents:
        return []
    if slot.reads is None:
        specs = slot.deployment.strategy.required_indicators()
        slot.reads = tuple(dict.fromkeys(c for spec in specs for c in parse(spec).columns if c in view))
    read = {c: json_number(view[c]) for c in slot.reads}
    return [replace(i, market_data={**(i.market_data or {}), "indicators": read}) for i in intents]


def json_number(x: float) -> float | None:
    """JSON-safe value: NaN/inf become null; -0.0 becomes 0.0 (jsonb has no negative zero)."""
    return float(x) + 0.0 if math.isfinite(x) else None


@dataclass(slots=True)
class _Layout:
    """The column layout of the rows the runner holds: indicator columns then the price fields."""

    columns: tuple[str, ...] = ()
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, columns: Sequence[str]) -> _Layout:
        names = tuple(c for c in columns if c not in PRICE_FIELDS) + PRICE_FIELDS
        return cls(names, {name: i for i, name in enumerate(names)})


class StrategyRunner:
    """Evaluates deployments on closed bars; keeps the previous row of every series. Not thread-safe."""

    def __init__(self, deployments: Iterable[Deployment] = (), max_failures: int = 5, budget_ms: float = 50.0):
        if max_failures < 1 or not budget_ms > 0:
            raise ConfigError("max_failures must be >= 1 and budget_ms > 0")
        self.max_failures = max_failures
        self.budget_ns = int(budget_ms * 1e6)
        self.failures: list[StrategyFailure] = []
        self._slots: dict[str, _Slot] = {}
        self._routes: dict[tuple[str, Timeframe], list[_Slot]] = {}
        self._layout = _Layout()
        self._prev: dict[str, list[float]] = {}
        for deployment in deployments:
            self.add(deployment)

    # --- deployments -------------------------------------------------------------------------

    def add(self, deployment: Deployment) -> None:
        """Deploy (replacing a deployment with the same key, which is stopped); calls ``on_start``."""
        self.remove(deployment.key)
        slot = _Slot(deployment)
        self._slots[deployment.key] = slot
        self._routes.clear()
        try:
            with guarded():
                deployment.strategy.on_start()
            slot.started = True
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's failure must not escape
            self._fail(slot, FailureKind.ERROR, f"on_start raised {_describe(exc)}", None, disable=True)

    def remove(self, key: str) -> None:
        """Stop and forget the deployment ``key`` (no-op if absent); ``on_stop`` errors are ignored."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        self._routes.clear()
        if slot.started:
            try:
                slot.deployment.strategy.on_stop()
            except (Exception, SystemExit):  # noqa: BLE001 - stopping must always succeed
                pass

    def replace(self, deployments: Iterable[Deployment]) -> None:
        """Make the deployed set exactly ``deployments`` (a reload from the database).

        A deployment whose key and (non-None) ``revision`` are already deployed
        is kept as it runs — state, failure count, disabled flag; others are
        (re)started.
        """
        wanted = {d.key: d for d in deployments}
        for key in [k for k in self._slots if k not in wanted]:
            self.remove(key)
        for key, deployment in wanted.items():
            current = self._slots.get(key)
            if current is None or not _same(current.deployment, deployment):
                self.add(deployment)

    def stop(self) -> None:
        """Stop every deployment (``on_stop``)."""
        for key in list(self._slots):
            self.remove(key)

    @property
    def trades(self) -> bool:
        """Some deployment trades (its row has ``risk_management.execution``)."""
        return any(slot.deployment.execution is not None for slot in self._slots.values())

    @property
    def deployments(self) -> list[Deployment]:
        return [slot.deployment for slot in self._slots.values()]

    def status(self) -> list[dict[str, Any]]:
        """Per deployment: key, name, failures, disabled."""
        return [
            {"key": k, "name": s.deployment.name, "failures": s.failures, "disabled": s.disabled}
            for k, s in self._slots.items()
        ]

    def indicator_specs(self) -> list[str]:
        """Union of every deployment's indicator specs (ATR for risk included), first-seen order."""
        specs = [spec for slot in self._slots.values() for spec in slot.deployment.strategy.required_indicators()]
        return list(dict.fromkeys(specs))

    def take_failures(self) -> list[StrategyFailure]:
        """The failures queued since the last call (oldest first), removing them from :attr:`failures`."""
        taken, self.failures = self.failures, []
        return taken

    # --- evaluation --------------------------------------------------------------------------

    def on_bars(self, bars: Sequence[Bar], rows: np.ndarray, columns: Sequence[str]) -> list[EmittedSignal]:
        """Evaluate every deployment wanting each bar, in order; ``rows[i]`` are ``bars[i]``'s indicator values.

        ``columns`` names the columns of ``rows`` (an ``IndicatorSet``'s
        ``.columns``). Bars of one series must come in time order. Never raises
        because of a strategy; returns the signals in bar order, then
        deployment order.
        """
        self._adopt(columns)
        if not bars:
            return []
        table = self._table(bars, rows, columns)
        emitted: list[tuple[tuple[int, int], list[EmittedSignal]]] = []
        batches: dict[int, _ModelBatch] = {}
        order = {key: i for i, key in enumerate(self._slots)}
        for i, (bar, row) in enumerate(zip(bars, table.tolist())):
            key = series_key(bar.symbol, bar.timeframe.label)
            view = IndicatorView(self._layout.index, row, self._prev.get(key))
            for slot in self._route(bar.symbol, bar.timeframe):
                if slot.disabled:
                    continue
                at = (i, order[slot.deployment.key])
                strategy: Any = slot.deployment.strategy
                runtime = getattr(strategy, "model_runtime", None)
                if runtime is None:
                    emitted.append((at, self._evaluate(slot, bar, view)))
                    continue
                batch = batches.get(id(runtime))
                if batch is None:
                    batch = batches[id(runtime)] = _ModelBatch(runtime)
                row_index = batch.row_of(i, strategy, bar, view)  # the bar's features: once per model, not per row
                if row_index is not None and not isinstance(lease := strategy.lease_for(bar), str):
                    batch.items.append((at, slot, bar, view, row_index, lease))
            self._prev[key] = row
        for batch in batches.values():
            if batch.items:
                emitted += self._evaluate_model(batch)
        if batches:  # model signals come after the loop: back to bar order, then deployment order
            emitted.sort(key=lambda e: e[0])
        return [signal for _, signals in emitted for signal in signals]

    def _evaluate_model(self, batch: _ModelBatch) -> list[tuple[tuple[int, int], list[EmittedSignal]]]:
        """One run of a model over this batch's bars, shared by all its deployments (engine/models/strategy.py)."""
        items = batch.items
        try:
            with guarded() as attempt:
                predictions = batch.runtime.predict(np.asarray(batch.rows, dtype=np.float32))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a model's failure is each deployment's failure
            self._fail_model(batch, FailureKind.ERROR, f"the model run raised {_describe(exc)}")
            return []
        if attempt.event is not None:
            self._fail_model(batch, FailureKind.IO, f"refused I/O {attempt.event}")
            return []
        out = []
        for at, slot, bar, view, row_index, lease in items:
            side, confidence = predictions[row_index]
            if side is None:
                continue
            d = slot.deployment
            intents = d.strategy.intents_for(bar, view, side, confidence, batch.rows[row_index],  # type: ignore[attr-defined]
                                             lease)
            out.append((at, [EmittedSignal(d.user_id, d.name, d.strategy_id, bar, i, d.execution)
                             for i in _with_indicators(slot, view, intents)]))
        return out

    def _fail_model(self, batch: _ModelBatch, kind: FailureKind, detail: str) -> None:
        """A failed run: a failure of each deployment in it, at its first bar; the model's owner is told too."""
        owner = getattr(batch.runtime.meta, "owner_id", None)
        first: dict[int, tuple[_Slot, Bar]] = {}
        for _, slot, bar, *_ in batch.items:
            first.setdefault(id(slot), (slot, bar))
        for slot, bar in first.values():
            self._fail(slot, kind, detail, bar)
            if owner is not None and slot.deployment.user_id != owner:
                self.failures.append(replace(self.failures[-1], user_id=owner))

    def _table(self, bars: Sequence[Bar], rows: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """Rows in the runner's layout (indicator columns, then bar prices), one fresh array per bar."""
        table = np.empty((len(bars), len(self._layout.columns)), dtype=np.float64)
        indicator_idx = [i for i, c in enumerate(columns) if c not in PRICE_FIELDS]
        table[:, : len(indicator_idx)] = np.asarray(rows, dtype=np.float64).reshape(len(bars), -1)[:, indicator_idx]
        prices = [[b.open, b.high, b.low, b.close, b.volume] for b in bars]
        table[:, len(indicator_idx) :] = np.asarray(prices, dtype=np.float64).reshape(len(bars), len(PRICE_FIELDS))
        return table

    def _route(self, symbol: str, timeframe: Timeframe) -> list[_Slot]:
        route = self._routes.get((symbol, timeframe))
        if route is None:
            route = [s for s in self._slots.values() if s.deployment.wants(symbol, timeframe)]
            self._routes[(symbol, timeframe)] = route
        return route

    def _evaluate(self, slot: _Slot, bar: Bar, view: IndicatorView) -> list[EmittedSignal]:
        deployment = slot.deployment
        started = time.perf_counter_ns()
        try:
            with guarded() as attempt:
                result = deployment.strategy.on_bar(bar, view)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - isolation: counted, never raised
            kind = FailureKind.IO if attempt.event else FailureKind.ERROR
            self._fail(slot, kind, f"on_bar raised {_describe(exc)}", bar)
            return []
        elapsed = time.perf_counter_ns() - started
        if attempt.event is not None:
            self._fail(slot, FailureKind.IO, f"refused I/O {attempt.event}", bar)
            return []
        try:
            intents = check_intents(result)
        except BadIntent as exc:
            self._fail(slot, FailureKind.GARBAGE, str(exc), bar)
            return []
        if elapsed > self.budget_ns:
            budget = f"budget {self.budget_ns / 1e6:g} ms"
            self._fail(slot, FailureKind.SLOW, f"on_bar took {elapsed / 1e6:.1f} ms ({budget})", bar)
        return [EmittedSignal(deployment.user_id, deployment.name, deployment.strategy_id, bar, i, deployment.execution)
                for i in _with_indicators(slot, view, intents)]

    def _fail(self, slot: _Slot, kind: FailureKind, detail: str, bar: Bar | None, disable: bool = False) -> None:
        slot.failures += 1
        disabling = not slot.disabled and (disable or slot.failures >= self.max_failures)
        slot.disabled = slot.disabled or disabling
        d = slot.deployment
        symbol, bar_time = (bar.symbol, bar.time.isoformat()) if bar else (None, None)
        self.failures.append(
            StrategyFailure(d.user_id, d.strategy_id, d.name, kind, detail, symbol, bar_time, slot.failures, disabling)
        )

    # --- layout and checkpoints --------------------------------------------------------------

    def _adopt(self, columns: Sequence[str]) -> None:
        """Switch to the layout of ``columns`` when it changed, remapping the stored previous rows."""
        layout = _Layout.of(columns)
        if layout.columns == self._layout.columns:
            return
        self._prev = {k: _remap(row, self._layout.columns, layout) for k, row in self._prev.items()}
        self._layout = layout

    def forget(self, symbols: Iterable[str]) -> None:
        """Drop the previous rows and per-series strategy state of ``symbols`` (a partition given up)."""
        gone = set(symbols)
        chosen = lambda key: key.split("|", 1)[0] in gone  # noqa: E731
        self._prev = {k: row for k, row in self._prev.items() if not chosen(k)}
        for slot in self._slots.values():
            slot.deployment.strategy.drop_series_state(chosen)

    def snapshot(self, symbols: Iterable[str] | None = None) -> bytes:
        """JSON bytes of the previous rows and deployment states, limited to ``symbols`` if given.

        A deployment's :meth:`Strategy.save_state` is included whole; its
        per-series state only for the chosen symbols. Restoring the snapshots
        of several partitions into one runner merges them.
        """
        keep = None if symbols is None else set(symbols)
        chosen = lambda key: keep is None or key.split("|", 1)[0] in keep  # noqa: E731
        doc = {
            "format": SNAPSHOT_FORMAT,
            "columns": list(self._layout.columns),
            "series": {k: row for k, row in self._prev.items() if chosen(k)},
            "deployments": {
                key: {
                    "failures": slot.failures,
                    "disabled": slot.disabled,
                    "state": slot.deployment.strategy.save_state(),
                    "series": slot.deployment.strategy.dump_series_state(chosen),
                }
                for key, slot in self._slots.items()
            },
        }
        return orjson.dumps(doc)

    def restore(self, blob: bytes) -> None:
        """Merge a :meth:`snapshot` into this runner; raise :class:`ConfigError` if it is not one.

        Deployments that are not deployed here are ignored; a strategy whose
        ``load_state`` raises is counted as a failure.
        """
        doc = _load_snapshot(blob)
        source = tuple(doc["columns"])
        if not self._layout.columns:
            self._layout = _Layout.of(source)
        for key, values in doc["series"].items():
            row = [math.nan if v is None else float(v) for v in values]
            self._prev[key] = _remap(row, source, self._layout)
        for key, saved in doc["deployments"].items():
            slot = self._slots.get(key)
            if slot is not None:
                self._restore_slot(slot, saved)

    def _restore_slot(self, slot: _Slot, saved: Mapping[str, Any]) -> None:
        slot.failures = max(slot.failures, int(saved.get("failures", 0)))
        slot.disabled = slot.disabled or bool(saved.get("disabled", False))
        strategy = slot.deployment.strategy
        strategy.merge_series_state(saved.get("series", {}))
        try:
            strategy.load_state(saved.get("state", {}))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - isolation
            self._fail(slot, FailureKind.ERROR, f"load_state raised {_describe(exc)}", None)


@dataclass(slots=True)
class _ModelBatch:
    """One model's share of a micro-batch: each bar's feature row once, and the deployments' bars that use it."""

    runtime: Any
    rows: list[list[float]] = field(default_factory=list)
    items: list[tuple[tuple[int, int], _Slot, Bar, IndicatorView, int, Any]] = field(default_factory=list)
    _index: dict[int, int | None] = field(default_factory=dict)  # bar position -> row (None: a feature unknown)

    def row_of(self, position: int, strategy: Any, bar: Bar, view: IndicatorView) -> int | None:
        if position not in self._index:
            values = strategy.features(view)
            self._index[position] = None if values is None else len(self.rows)
            if values is not None:
                self.rows.append(values)
        return self._index[position]


def _same(running: Deployment, new: Deployment) -> bool:
    return running is new or (new.revision is not None and running.revision == new.revision)


def _remap(row: Sequence[float], source: Sequence[str], layout: _Layout) -> list[float]:
    out = [math.nan] * len(layout.columns)
    for i, name in enumerate(source):
        j = layout.index.get(name)
        if j is not None and i < len(row):
            out[j] = row[i]
    return out


def _load_snapshot(blob: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"not a strategy runner snapshot: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        raise ConfigError("not a strategy runner snapshot (format missing or unsupported)")
    return doc


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
