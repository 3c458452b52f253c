"""Reading the engine's CSV inputs: open, find the named columns, stream rows with their line numbers.

Shared by the file tools (``sharewise bars``, ``sharewise indicators``, backtests). Errors are
:class:`ConfigError` naming the file: missing or unreadable file, empty file, missing columns.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from engine.errors import ConfigError


@contextlib.contextmanager
def csv_rows(path: Path, columns: Sequence[str], on_bytes: Callable[[int], None] | None = None,
             report_every: int = 1 << 16) -> Iterator[tuple[Any, list[int]]]:
    """``(reader, positions)``: a ``csv.reader`` past the header (``reader.line_num`` is the file line)
    and the position of each of ``columns`` in a row. Header names are matched case-insensitively,
    in any order; extra columns are ignored. ``on_bytes(n)`` reports bytes read, for progress bars.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.reader(_text_lines(handle, on_bytes, report_every))
        yield reader, _positions(path, columns, next(reader, None))


def _text_lines(handle: BinaryIO, on_bytes: Callable[[int], None] | None, every: int) -> Iterator[str]:
    pending = 0
    for raw in handle:
        pending += len(raw)
        if on_bytes is not None and pending >= every:
            on_bytes(pending)
            pending = 0
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{handle.name}: not UTF-8 text") from None
    if on_bytes is not None:
        on_bytes(pending)


def _positions(path: Path, columns: Sequence[str], header: list[str] | None) -> list[int]:
    """Positions of ``columns`` in ``header``; raise naming every missing one."""
    if header is None:
        raise ConfigError(f"{path}: empty file, want a header {','.join(columns)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in columns if c not in names]
    if missing:
        raise ConfigError(f"{path}: missing column {', '.join(repr(c) for c in missing)} (header: {','.join(header)})")
    return [names.index(c) for c in columns]
