"""The instrument universe: which symbols the engine trades, each with a dense int index.

The built-in list (``engine/data/instruments.csv``) holds the NIFTY 50 index
(symbol ``NIFTY``), the NIFTY BANK index (``BANKNIFTY``) and the fifty NIFTY 50
constituents. ``SHAREWISE_INSTRUMENTS`` names an extra file, either one symbol
per line (``#`` comments and blank lines ignored) or a CSV with the same header
as the built-in file (``symbol`` required; ``name``, ``kind``, ``typical_price``
optional). Extra symbols get the indices after the built-in ones, in file
order; a symbol listed twice keeps its first entry. This module parses the
lists' text; the CLI reads the files (``engine/cli/files.py``, ``load_instruments``).

Indices are dense (``0 .. len-1``) and index the per-instrument state arrays of
the bar and indicator kernels. They are stable for a given pair of files: state
checkpoints are taken per instrument index, so change the extra file only
together with a fresh checkpoint.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from engine.errors import ConfigError

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9&._-]{0,49}$")
DEFAULT_TYPICAL_PRICE = 1000.0


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable symbol. ``typical_price`` seeds synthetic feeds; ``kind`` is ``equity`` or ``index``."""

    symbol: str
    name: str
    kind: str = "equity"
    typical_price: float = DEFAULT_TYPICAL_PRICE


class InstrumentRegistry:
    """Symbol <-> dense index mapping. Immutable after construction.

    The hot path uses :attr:`index` directly (``registry.index.get(symbol)``).
    """

    __slots__ = ("instruments", "symbols", "index")

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        kept: dict[str, Instrument] = {}
        for inst in instruments:
            kept.setdefault(inst.symbol, inst)
        self.instruments: tuple[Instrument, ...] = tuple(kept.values())
        self.symbols: tuple[str, ...] = tuple(kept)
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_symbols(cls, symbols: Iterable[str]) -> InstrumentRegistry:
        """A registry of bare symbols (no validation), e.g. for a file tool that accepts any symbol."""
        return cls(Instrument(s, s) for s in symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.index

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self.instruments)


def parse_instruments(text: str, where: str) -> list[Instrument]:
    """The instruments of a list's text: one symbol per line, or CSV with a ``symbol`` header.

    ``where`` names the list in errors. Raise :class:`ConfigError` naming the line of a bad entry.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    first = next((ln for ln in lines if ln and not ln.startswith("#")), "")
    if first.split(",")[0].strip().lower() == "symbol":
        return _parse_csv(text, where)
    return [_instrument(ln, {}, where, no) for no, ln in enumerate(lines, 1) if ln and not ln.startswith("#")]


def _parse_csv(text: str, where: str) -> list[Instrument]:
    rows = csv.DictReader(io.StringIO(text))
    if "symbol" not in (rows.fieldnames or []):
        raise ConfigError(f"{where}: missing column 'symbol'")
    return [_instrument(row["symbol"] or "", row, where, no) for no, row in enumerate(rows, 2)]


def _instrument(symbol: str, row: dict[str, str], where: str, line: int) -> Instrument:
    symbol = symbol.strip()
    if not _SYMBOL.match(symbol):
        raise ConfigError(f"{where} line {line}: {symbol!r} is not a valid symbol (A-Z 0-9 & . _ -, at most 50)")
    price = (row.get("typical_price") or "").strip()
    try:
        typical = float(price) if price else DEFAULT_TYPICAL_PRICE
    except ValueError:
        raise ConfigError(f"{where} line {line}: typical_price {price!r} is not a number") from None
    if not typical > 0:
        raise ConfigError(f"{where} line {line}: typical_price must be > 0, got {price!r}")
    kind = (row.get("kind") or "equity").strip()
    return Instrument(symbol, (row.get("name") or symbol).strip(), kind, typical)

