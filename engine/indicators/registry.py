"""Ask for indicators by name: ``parse("ema(50)")``, ``parse("macd(12,26,9).signal")``.

Three spellings are accepted, all case-insensitive:

* a call: ``ema(50)``, ``bbands(20,2)``, ``stoch(14,3,3).k``, ``obv`` — missing trailing
  parameters take TA-Lib's defaults; ``.output`` picks one output of a multi-output family;
* an alias of one output: ``adx(14)``, ``plus_di(14)``, ``minus_di(14)``;
* a column name: ``ema_20``, ``macd_signal_12_26_9``, ``bb_upper_20_2`` (what
  :attr:`IndicatorSpec.columns` produces), so every column name parses back to its spec.

Every malformed spec raises :class:`~engine.errors.ConfigError` naming it. The catalogue of
families is :mod:`engine.indicators.catalogue`. :class:`IndicatorSet` turns specs into kernel
state for many instruments; :func:`default_set` builds the 25 :data:`DEFAULT_COLUMNS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from engine.errors import ConfigError
from engine.indicators import checkpoint, kernel
from engine.indicators.catalogue import ALIASES, COLUMN_PREFIXES, FAMILIES, Family

_ALIAS_OF = {target: alias for alias, target in ALIASES.items()}
_CALL = re.compile(r"^(?P<name>[a-z_]+)(?:\((?P<args>[^()]*)\))?(?:\.(?P<output>[a-z_]+))?$")
_COLUMN = re.compile(r"^(?P<prefix>[a-z_]+?)(?P<args>(?:_-?[0-9.]+)*)$")


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """A validated request: a family, its full parameter tuple, and one output or all (None).

    Build it with :func:`parse` or :func:`spec`, which fill defaults and validate.
    """

    family: str
    params: tuple[float, ...]
    output: str | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        """The family outputs this spec asks for, in kernel order."""
        names = tuple(name for name, _ in FAMILIES[self.family].outputs)
        return names if self.output is None else (self.output,)

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names of :attr:`outputs`, e.g. ``("macd_signal_12_26_9",)``."""
        family = FAMILIES[self.family]
        shown = family.shown(self.params) if family.shown else self.params
        suffix = "".join(f"_{_format(v)}" for v in shown)
        prefixes = dict(family.outputs)
        return tuple(prefixes[name] + suffix for name in self.outputs)

    def __str__(self) -> str:
        """Canonical text: ``ema(20)``, ``macd(12,26,9).signal``; parses back to this spec."""
        args = ",".join(_format(v) for v in self.params)
        name, output = _ALIAS_OF.get((self.family, self.output), self.family), self.output
        if name != self.family:
            output = None
        text = f"{name}({args})" if args else name
        return f"{text}.{output}" if output else text


def parse(text: str) -> IndicatorSpec:
    """Parse one spec in any of the accepted spellings. Raises ConfigError naming ``text``."""
    cleaned = re.sub(r"\s+", "", str(text)).lower()
    call = _CALL.match(cleaned)
    if call and (call["args"] is not None or call["name"] in FAMILIES or call["name"] in ALIASES):
        args = call["args"].split(",") if call["args"] else []
        return _build(text, call["name"], [_number(text, a) for a in args], call["output"])
    column = _COLUMN.match(cleaned)
    if column and column["prefix"] in COLUMN_PREFIXES:
        family, output = COLUMN_PREFIXES[column["prefix"]]
        args = [_number(text, a) for a in column["args"].split("_")[1:]]
        return _build(text, family, args, output)
    raise ConfigError(f"indicator spec {text!r}: not understood; expected e.g. 'ema(20)', "
                      f"'macd(12,26,9).signal' or 'ema_20'; known: {', '.join(known_names())}")


def spec(name: str, *params: float, output: str | None = None) -> IndicatorSpec:
    """Structured form of :func:`parse`: ``spec("macd", 12, 26, 9, output="signal")``."""
    return _build(f"{name}{params}", name.lower(), list(params), output)


def as_spec(item: str | IndicatorSpec) -> IndicatorSpec:
    """A spec from text or a spec (re-validated, so hand-built specs are checked too)."""
    if isinstance(item, IndicatorSpec):
        return spec(item.family, *item.params, output=item.output)
    return parse(item)


def known_names() -> list[str]:
    """Every name :func:`parse` accepts as a call."""
    return sorted([*FAMILIES, *ALIASES])


def _build(text: str, name: str, args: list[float], output: str | None) -> IndicatorSpec:
    if name in ALIASES:
        if output is not None:
            raise ConfigError(f"indicator spec {text!r}: {name} has a single output")
        name, output = ALIASES[name]
    family = FAMILIES.get(name)
    if family is None:
        raise ConfigError(f"indicator spec {text!r}: unknown indicator {name!r}; known: {', '.join(known_names())}")
    outputs = [o for o, _ in family.outputs]
    if len(outputs) == 1 and output not in (None, outputs[0]):
        raise ConfigError(f"indicator spec {text!r}: {name} has a single output")
    if output is not None and output not in outputs:
        raise ConfigError(f"indicator spec {text!r}: {name} has no output {output!r}; outputs: {', '.join(outputs)}")
    if len(outputs) == 1:
        output = None
    return IndicatorSpec(family.name, _complete(text, family, args), output)


def _complete(text: str, family: Family, args: list[float]) -> tuple[float, ...]:
    """Fill defaults, then check count, integrality and minimums."""
    if len(args) > len(family.params):
        raise ConfigError(f"indicator spec {text!r}: {family.name} takes at most {len(family.params)} "
                          f"parameters ({', '.join(p.name for p in family.params)})")
    values: dict[str, float] = {}
    for i, param in enumerate(family.params):
        if i < len(args):
            value = args[i]
        else:
            value = values[param.default_from] if param.default_from else param.default
        if not param.real and value != int(value):
            raise ConfigError(f"indicator spec {text!r}: {param.name} must be an integer, got {_format(value)}")
        if value < param.minimum:
            raise ConfigError(f"indicator spec {text!r}: {param.name} must be >= {_format(param.minimum)}, "
                              f"got {_format(value)}")
        values[param.name] = float(value) if param.real else int(value)
    return tuple(values.values())


def _number(text: str, arg: str) -> float:
    if arg == "":
        raise ConfigError(f"indicator spec {text!r}: empty parameter")
    try:
        value = float(arg)
    except ValueError:
        raise ConfigError(f"indicator spec {text!r}: parameter {arg!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"indicator spec {text!r}: parameter {arg!r} is not a finite number")
    return value


def _format(value: float) -> str:
    """``20`` for integral values, ``2.5`` otherwise (shortest repr)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class IndicatorSet:
    """Indicator state for ``capacity`` instruments, advanced by micro-batches of bars.

    Identical families with identical parameters share one kernel instance (``adx(14)`` and
    ``plus_di(14)`` are one state). Columns keep the order in which they were first asked for;
    a column asked for twice appears once. State per instrument is fixed at construction
    (bounded by the longest window); nothing grows with the number of bars.
    """

    def __init__(self, specs: Iterable[str | IndicatorSpec], capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"indicator set capacity must be >= 1, got {capacity}")
        self.specs = tuple(as_spec(s) for s in specs)
        if not self.specs:
            raise ConfigError("indicator set needs at least one indicator")
        self._program, self._floats, self.columns, width = _compile(self.specs)
        self._state = np.zeros((capacity, width), dtype=np.float64)
        self._layout = checkpoint.fingerprint(self._program, self._floats)

    @property
    def capacity(self) -> int:
        return self._state.shape[0]

    @property
    def state_bytes_per_instrument(self) -> int:
        return self._state.shape[1] * self._state.itemsize

    def grow(self, capacity: int) -> None:
        """Make room for at least ``capacity`` instruments; new ones start fresh. Never shrinks."""
        if capacity > self.capacity:
            fresh = np.zeros((capacity - self.capacity, self._state.shape[1]), dtype=np.float64)
            self._state = np.concatenate([self._state, fresh])

    def update(self, inst, open_, high, low, close, volume) -> np.ndarray:  # noqa: ANN001
        """Advance the instruments ``inst[j]`` by bar ``j``, in order; one row of values per bar.

        All arguments are equal-length sequences (or scalars for a single bar); ``open_`` is
        accepted for a uniform bar signature but no supported indicator reads it. Prices and
        volumes must be finite, as TA-Lib requires: a NaN would stay in the instrument's state
        until :meth:`reset` (bad bars belong in the dead-letter topic, not here). Returns a new
        float64 array ``[len(inst), len(columns)]``, NaN where TA-Lib has no value yet. Raises
        ConfigError (and changes nothing) on unequal lengths or an index outside the capacity.
        """
        idx = _contiguous(inst, np.int64)
        h, l, c, v = (_contiguous(a, np.float64) for a in (high, low, close, volume))  # noqa: E741
        n = idx.shape[0]
        same_shape = idx.shape == h.shape == l.shape == c.shape == v.shape
        if idx.ndim != 1 or not same_shape or np.size(open_) not in (1, n):
            raise ConfigError("indicator update: inst, open, high, low, close, volume differ in shape")
        out = np.empty((n, len(self.columns)))
        bad = kernel.run(self._program, self._floats, self._state, idx, h, l, c, v, out)
        if bad >= 0:
            raise ConfigError(f"indicator update: instrument index {idx[bad]} outside 0..{self.capacity - 1}")
        return out

    def reset(self, inst_idx) -> None:  # noqa: ANN001
        """Forget everything about the given instruments (an int or an index array)."""
        self._state[self._rows(inst_idx)] = 0.0

    def snapshot(self, inst_indices) -> bytes:  # noqa: ANN001
        """The exact state of the given instruments, as bytes (see :mod:`.checkpoint`)."""
        return checkpoint.pack(self._state[self._rows(inst_indices)], self._layout)

    def restore(self, inst_indices, blob: bytes) -> None:  # noqa: ANN001
        """Load a :meth:`snapshot` into the given instruments (same count, same set layout).

        Restoring then continuing gives bit-for-bit what an uninterrupted run gives.
        """
        rows = self._rows(inst_indices)
        self._state[rows] = checkpoint.unpack(blob, self._state.shape[1], len(rows), self._layout)

    def _rows(self, inst_idx) -> np.ndarray:  # noqa: ANN001
        rows = np.atleast_1d(np.asarray(inst_idx, dtype=np.int64))
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= self.capacity)):
            raise ConfigError(f"instrument indices must lie in 0..{self.capacity - 1}")
        return rows


def _contiguous(values, dtype: type) -> np.ndarray:  # noqa: ANN001
    """``values`` as a C-contiguous array (at least 1-d) of ``dtype``, not copied if it is one."""
    if type(values) is np.ndarray and values.dtype == dtype and values.flags.c_contiguous:
        return values
    return np.ascontiguousarray(values, dtype=dtype)


def _instances(specs: tuple[IndicatorSpec, ...]) -> list[IndicatorSpec]:
    """One spec (all outputs) per distinct family and parameters, in first-asked order."""
    seen: dict[tuple[str, tuple[float, ...]], IndicatorSpec] = {}
    for s in specs:
        seen.setdefault((s.family, s.params), IndicatorSpec(s.family, s.params))
    return list(seen.values())


def _state_size(s: IndicatorSpec) -> int:
    family = FAMILIES[s.family]
    return family.state_size(*(int(v) for v, p in zip(s.params, family.params) if not p.real))


def _compile(specs: tuple[IndicatorSpec, ...]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], int]:
    """The kernel program (see :mod:`.kernel`), its real parameters, the columns, the row width."""
    instances = _instances(specs)
    program = np.full((len(instances), kernel.PROGRAM_WIDTH), -1, dtype=np.int64)
    floats = np.zeros((len(instances), kernel.FLOAT_WIDTH), dtype=np.float64)
    wanted: list[set[str]] = [set() for _ in instances]
    columns: list[str] = []
    for s in specs:
        k = instances.index(IndicatorSpec(s.family, s.params))
        outputs = [name for name, _ in FAMILIES[s.family].outputs]
        for output, column in zip(s.outputs, s.columns):
            if column not in columns:
                columns.append(column)
            program[k, kernel.COL0 + outputs.index(output)] = columns.index(column)
            wanted[k].add(output)
    offset = kernel.COUNTER_SLOTS
    for k, inst in enumerate(instances):
        family = FAMILIES[inst.family]
        ints = [int(v) for v, p in zip(inst.params, family.params) if not p.real] + list(family.fixed)
        if family.derived is not None:
            ints += family.derived(wanted[k])
        reals = [float(v) for v, p in zip(inst.params, family.params) if p.real]
        program[k, [kernel.OP, kernel.OFFSET]] = family.opcode, offset
        program[k, kernel.P0:kernel.P0 + len(ints)] = ints
        floats[k, :len(reals)] = reals
        offset += _state_size(inst)
    return program, floats, tuple(columns), offset


#: the 25 default columns, in the order of the CLI and the stream
DEFAULT_SPECS = (
    "sma(20)", "ema(20)", "wma(20)", "dema(20)", "tema(20)", "rsi(14)", "macd(12,26,9)", "bbands(20,2,2)",
    "atr(14)", "adx(14)", "plus_di(14)", "minus_di(14)", "stoch(14,3,3)", "cci(20)", "mfi(14)", "obv",
    "willr(14)", "roc(10)", "mom(10)", "stddev(20,1)",
)


def default_set(capacity: int) -> IndicatorSet:
    """The 25-column :data:`DEFAULT_COLUMNS` set for ``capacity`` instruments."""
    return IndicatorSet(DEFAULT_SPECS, capacity)


DEFAULT_COLUMNS: tuple[str, ...] = tuple(c for s in DEFAULT_SPECS for c in parse(s).columns)
