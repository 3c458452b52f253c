"""``sharewise instruments load FILE`` and ``sharewise instruments ids``: the broker identifiers of our equities.

The live adapters need an ISIN (Upstox) and NSE's symbol token (SmartAPI) per symbol. The engine ships them
for its built-in equities (``engine/data/broker_instruments.csv``); ``load`` reads a broker's own dump — Kite's
``instruments`` CSV, AngelOne's ``OpenAPIScripMaster.json``, Upstox's ``complete.csv`` / ``NSE.json``, gzip
or not, recognised from the content (``engine/instrument_ids.py``) — and stores the identifiers of the symbols
our registry knows (built-in instruments plus ``SHAREWISE_INSTRUMENTS``) in ``engine.broker_instrument``.
A dump holds tens of thousands of instruments; storing only ours keeps the table the size of what we trade.
``ids`` shows the result: the shipped file with the stored rows over it, field by field.

Like ``sharewise broker``, each command talks to ``SHAREWISE_DATABASE_URL`` when set, else to the embedded
PostgreSQL under ``SHAREWISE_HOME``, migrated first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from engine.cli.console import clean_errors, out
from engine.cli.environment import load_settings
from engine.cli.files import load_instruments
from engine.cli.orders_cmd import _plain, _print_json
from engine.cli.runtime import with_database
from engine.errors import ConfigError
from engine.instrument_ids import FIELDS, FORMATS, builtin_broker_ids, merge, parse_broker_dump

instruments_app = typer.Typer(help="Broker identifiers (ISIN, SmartAPI symbol token) of our instruments.",
                              no_args_is_help=True)

#: the ``source`` of an identifier that comes from the shipped file
PACKAGED = "packaged"
#: what ``ids --json`` gives per symbol
IDS_KEYS = ("symbol", "isin", "smartapi_token", "source", "loaded_at")


@clean_errors
def load(
    file: Path = typer.Argument(..., metavar="FILE", help="A broker's instrument dump (Kite CSV, AngelOne "
                                "OpenAPIScripMaster.json, Upstox complete.csv / NSE.json; .gz accepted)."),
    json_out: bool = typer.Option(False, "--json", help="Print {file, format, rows, equities, saved}."),
) -> None:
    """Load the ISINs and symbol tokens of our symbols from a broker's instrument dump (Kite, AngelOne, Upstox)."""
    from db.instrument_ids import save_broker_ids

    dump = parse_broker_dump(read_dump(file), str(file))
    settings = load_settings()
    known = {instrument.symbol for instrument in load_instruments(settings)}
    ours = {symbol: ids for symbol, ids in dump.ids.items() if symbol in known}
    unknown = len(dump.ids) - len(ours)
    saved = with_database(settings, lambda conn: save_broker_ids(conn, ours, file.name))
    if json_out:
        _print_json({"file": str(file), "format": dump.format, "rows": dump.rows, "equities": len(dump.ids),
                     "saved": saved})
        return
    out.print(f"{escape(str(file))}: {FORMATS[dump.format]}, {dump.rows:,} instrument(s), "
              f"{len(dump.ids):,} NSE equities", soft_wrap=True)
    out.print(f"saved the identifiers of {saved} of our symbol(s); skipped {unknown:,} unknown to our registry")


def read_dump(path: Path) -> bytes:
    """The bytes of ``path``; ConfigError (exit 2) for a missing, unreadable or non-regular file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not an instrument dump") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


@clean_errors
def ids(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array, one object per equity."),
) -> None:
    """Our equities with their ISIN and SmartAPI symbol token, and where each comes from; missing ones marked."""
    from db.instrument_ids import broker_id_rows

    settings = load_settings()
    equities = [i.symbol for i in load_instruments(settings) if i.kind == "equity"]
    stored = with_database(settings, broker_id_rows)
    rows = identifier_rows(equities, stored)
    if json_out:
        _print_json([{k: _plain(r[k]) for k in IDS_KEYS} for r in rows])
        return
    table = Table("symbol", "isin", "smartapi token", "source")
    for r in rows:
        table.add_row(escape(r["symbol"]), *(escape(r[k]) if r[k] else "[yellow]missing[/]" for k in FIELDS),
                      escape(r["source"] or "-"))
    out.print(table)
    incomplete = sum(1 for r in rows if not all(r[k] for k in FIELDS))
    out.print(f"{len(rows)} equities, {incomplete} with an identifier missing"
              + (": `sharewise instruments load FILE` adds them from a broker's dump" if incomplete else ""))


def identifier_rows(symbols: list[str], stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per symbol: the merged identifiers (None when unknown), and the source — the file last loaded
    for it, else :data:`PACKAGED` when the shipped file has it, else None."""
    packaged = builtin_broker_ids()
    loaded = {s: {k: row[k] for k in FIELDS if row[k]} for s, row in stored.items()}
    merged = merge(packaged, loaded)
    rows = []
    for symbol in symbols:
        known = merged.get(symbol, {})
        source = stored[symbol]["source"] if symbol in stored else (PACKAGED if packaged.get(symbol) else None)
        loaded_at = stored[symbol]["loaded_at"] if symbol in stored else None
        rows.append({"symbol": symbol, **{k: known.get(k) for k in FIELDS}, "source": source,
                     "loaded_at": loaded_at})
    return rows


def register(app: typer.Typer) -> None:
    instruments_app.command("load")(load)
    instruments_app.command("ids")(ids)
    app.add_typer(instruments_app, name="instruments")
