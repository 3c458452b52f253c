"""The engine's CSV inputs, from their text: find the named columns, stream rows with their line numbers.

Shared by the file tools (``sharewise bars``, ``sharewise indicators``, backtests) and replays.
Pure: the caller hands in the lines (the CLI opens the files: ``engine/cli/files.py``) and
``where``, the name errors cite. Errors are :class:`ConfigError` naming it: an empty text, missing
columns.
"""

from __future__ import annotations

import csv
import itertools
from typing import Any, Iterable, Iterator, Sequence

from engine.errors import ConfigError


def csv_rows(lines: Iterable[str], columns: Sequence[str], where: str) -> tuple[Any, list[int]]:
    """``(reader, positions)``: a ``csv.reader`` past the header (``reader.line_num`` is the file line)
    and the position of each of ``columns`` in a row. Header names are matched case-insensitively,
    in any order; extra columns are ignored.
    """
    reader = csv.reader(lines)
    return reader, _positions(where, columns, next(reader, None))


def peek_header(lines: Iterable[str]) -> tuple[set[str], Iterator[str]]:
    """The column names of a CSV's header (stripped, lower-cased; none for an empty text), and every
    line of it, header included, still to be read: to choose a parser before parsing."""
    rest = iter(lines)
    first = next(rest, "")
    names = {h.strip().lower() for h in next(csv.reader([first]), [])}
    return names, itertools.chain([first], rest)


def _positions(where: str, columns: Sequence[str], header: list[str] | None) -> list[int]:
    """Positions of ``columns`` in ``header``; raise naming every missing one."""
    if header is None:
        raise ConfigError(f"{where}: empty file, want a header {','.join(columns)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in columns if c not in names]
    if missing:
        raise ConfigError(f"{where}: missing column {', '.join(repr(c) for c in missing)} (header: {','.join(header)})")
    return [names.index(c) for c in columns]
