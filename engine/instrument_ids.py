"""Broker identifiers of our equities: the ISIN (Upstox's ``instrument_token`` is ``NSE_EQ|<ISIN>``) and the
SmartAPI symbol token (NSE's own token number, which Kite calls ``exchange_token``).

The live adapters (``sinks/brokers/``) take these as an ``instruments`` mapping, symbol ->
``{"isin": ..., "smartapi_token": ...}``. Two sources feed it:

* :func:`builtin_broker_ids` — ``engine/data/broker_instruments.csv``, shipped with the engine for the equities
  of ``instruments.csv`` (sources in ``engine/data/README.md``);
* :func:`parse_broker_dump` — a broker's own instrument dump, recognised from its content (not its name, which
  users rename): Kite's ``instruments`` CSV, AngelOne's ``OpenAPIScripMaster.json``, Upstox's ``complete.csv``
  or ``NSE.json``/``complete.json``, each possibly gzip-compressed. ``sharewise instruments load`` stores the
  result; :func:`merge` lays it over the shipped file field by field.

Identifiers change (a split gives a new ISIN, a demerger a new symbol), so the shipped file is a starting
point and a fresh dump always wins. Only NSE cash equities are kept: these are what the adapters trade.
Pure: bytes in, dicts out; the CLI reads the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from engine.errors import ConfigError

#: the identifier fields, in column order of ``broker_instruments.csv``
FIELDS = ("isin", "smartapi_token")
#: symbol -> {field: value}; a field without a value is absent, never an empty string
BrokerIds = dict[str, dict[str, str]]
#: what a row picker returns for an NSE equity: (symbol, its identifiers); None for any other row
Picked = tuple[str, dict[str, str]] | None

KITE_CSV = "kite-csv"
SMARTAPI_JSON = "smartapi-json"
UPSTOX_CSV = "upstox-csv"
UPSTOX_JSON = "upstox-json"
#: every format :func:`parse_broker_dump` recognises, with what a user would call it
FORMATS = {
    KITE_CSV: "Kite instruments CSV (api.kite.trade/instruments)",
    SMARTAPI_JSON: "AngelOne OpenAPIScripMaster.json",
    UPSTOX_CSV: "Upstox complete.csv",
    UPSTOX_JSON: "Upstox NSE.json / complete.json",
}

_GZIP_MAGIC = b"\x1f\x8b"
_KITE_COLUMNS = {"instrument_token", "exchange_token", "tradingsymbol", "instrument_type", "segment", "exchange"}
_UPSTOX_CSV_COLUMNS = {"instrument_key", "exchange_token", "tradingsymbol", "instrument_type", "exchange"}
_SMARTAPI_KEYS = {"token", "symbol", "exch_seg"}
_UPSTOX_JSON_KEYS = {"instrument_key", "segment", "trading_symbol"}


@dataclass(frozen=True, slots=True)
class BrokerDump:
    """What a dump held: its format (a key of :data:`FORMATS`), how many instruments in all, and the identifiers
    of its NSE equities."""

    format: str
    rows: int
    ids: BrokerIds = field(default_factory=dict)


def builtin_broker_ids() -> BrokerIds:
    """The packaged ``engine/data/broker_instruments.csv`` (``symbol,isin,smartapi_token``; an empty cell: unknown)."""
    text = resources.files("engine").joinpath("data/broker_instruments.csv").read_text(encoding="utf-8")
    return parse_broker_ids_csv(text, "built-in broker_instruments.csv")


def parse_broker_ids_csv(text: str, where: str) -> BrokerIds:
    """Our own ``symbol,isin,smartapi_token`` CSV; ConfigError naming ``where`` when a column is missing."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"symbol", *FIELDS} - set(reader.fieldnames or ())
    if missing:
        raise ConfigError(f"{where}: missing column(s) {', '.join(sorted(missing))}")
    found: BrokerIds = {}
    for row in reader:
        symbol = (row["symbol"] or "").strip()
        if symbol:
            found[symbol] = _present({name: row[name] for name in FIELDS})
    return found


def merge(base: Mapping[str, Mapping[str, str]], loaded: Mapping[str, Mapping[str, str]]) -> BrokerIds:
    """``base`` with ``loaded`` over it, field by field: a loaded value replaces the base one, a missing or empty
    loaded value keeps it (a dump without ISINs must not erase the ISINs we have)."""
    merged: BrokerIds = {symbol: _present(ids) for symbol, ids in base.items()}
    for symbol, ids in loaded.items():
        merged[symbol] = merged.get(symbol, {}) | _present(ids)
    return merged


def parse_broker_dump(data: bytes, where: str) -> BrokerDump:
    """The NSE equities of a broker's instrument dump (``data``: the file's bytes, gzip or not).

    Raises ConfigError naming ``where`` for bytes that are not UTF-8 text, or text in none of :data:`FORMATS`.
    """
    text = _text(_gunzip(data, where), where)
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _parse_json(stripped, where)
    return _parse_csv(text, where)


def _gunzip(data: bytes, where: str) -> bytes:
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{where}: a damaged gzip file ({exc})") from None


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a broker instrument dump (not UTF-8 text); expected "
                          f"{_expected()}") from None


def _expected() -> str:
    return ", ".join(FORMATS.values()) + " (gzip or not)"


def _unknown(where: str, what: str) -> ConfigError:
    return ConfigError(f"{where}: not a broker instrument dump ({what}); expected {_expected()}")


# --- CSV: Kite, Upstox complete.csv ---------------------------------------------------------------------------------

def _parse_csv(text: str, where: str) -> BrokerDump:
    reader = csv.DictReader(io.StringIO(text))
    try:
        columns = {name.strip() for name in reader.fieldnames or () if name}
    except csv.Error as exc:
        raise _unknown(where, f"unreadable CSV: {exc}") from None
    if _KITE_COLUMNS <= columns:
        return _collect(KITE_CSV, _rows(reader, where), _kite_row)
    if _UPSTOX_CSV_COLUMNS <= columns:
        return _collect(UPSTOX_CSV, _rows(reader, where), _upstox_csv_row)
    shown = ", ".join(sorted(columns)[:6]) or "nothing"
    raise _unknown(where, f"its first line has {shown}")


def _rows(reader: csv.DictReader[str], where: str) -> Iterator[Mapping[str, Any]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise ConfigError(f"{where}: line {reader.line_num}: {exc}") from None


def _kite_row(row: Mapping[str, Any]) -> Picked:
    """A Kite row: NSE cash equities are exchange NSE, segment NSE, type EQ; ``exchange_token`` is NSE's token."""
    if (_cell(row, "exchange"), _cell(row, "segment"), _cell(row, "instrument_type")) != ("NSE", "NSE", "EQ"):
        return None
    return _cell(row, "tradingsymbol"), {"smartapi_token": _cell(row, "exchange_token")}


def _upstox_csv_row(row: Mapping[str, Any]) -> Picked:
    """An Upstox ``complete.csv`` row: exchange NSE_EQ, type EQUITY (EQ in some files); the ISIN is in the key."""
    if _cell(row, "exchange") != "NSE_EQ" or _cell(row, "instrument_type") not in ("EQUITY", "EQ"):
        return None
    return _cell(row, "tradingsymbol"), {"isin": _isin_of_key(_cell(row, "instrument_key")),
                                         "smartapi_token": _cell(row, "exchange_token")}


# --- JSON: AngelOne, Upstox -----------------------------------------------------------------------------------------

def _parse_json(text: str, where: str) -> BrokerDump:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise _unknown(where, f"invalid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise _unknown(where, "JSON that is not a list")
    objects = [item for item in doc if isinstance(item, dict)]
    keys = set(objects[0]) if objects else set()
    if _SMARTAPI_KEYS <= keys:
        return _collect(SMARTAPI_JSON, objects, _smartapi_row, total=len(doc))
    if _UPSTOX_JSON_KEYS <= keys:
        return _collect(UPSTOX_JSON, objects, _upstox_json_row, total=len(doc))
    raise _unknown(where, "a JSON list of " + (f"objects with {', '.join(sorted(keys)[:6])}" if keys else
                                               "no objects"))


def _smartapi_row(row: Mapping[str, Any]) -> Picked:
    """An AngelOne row: exch_seg NSE and a ``-EQ`` trading symbol (the ``name`` column is not the symbol)."""
    symbol = _cell(row, "symbol")
    if _cell(row, "exch_seg").upper() != "NSE" or not symbol.endswith("-EQ"):
        return None
    return symbol.removesuffix("-EQ"), {"smartapi_token": _cell(row, "token")}


def _upstox_json_row(row: Mapping[str, Any]) -> Picked:
    """An Upstox JSON row: segment NSE_EQ, type EQ; ``isin`` given, else read from the key."""
    if _cell(row, "segment") != "NSE_EQ" or _cell(row, "instrument_type") not in ("EQ", "EQUITY"):
        return None
    isin = _cell(row, "isin") or _isin_of_key(_cell(row, "instrument_key"))
    return _cell(row, "trading_symbol"), {"isin": isin, "smartapi_token": _cell(row, "exchange_token")}


# --- shared ---------------------------------------------------------------------------------------------------------

def _collect(fmt: str, rows: Iterable[Mapping[str, Any]], pick: Callable[[Mapping[str, Any]], Picked],
             *, total: int | None = None) -> BrokerDump:
    """Run ``pick`` over every row; keep the NSE equities it returns (the last row of a symbol wins)."""
    ids: BrokerIds = {}
    seen = 0
    for row in rows:
        seen += 1
        picked = pick(row)
        if picked is not None and picked[0]:
            ids[picked[0]] = _present(picked[1])
    return BrokerDump(fmt, seen if total is None else total, ids)


def _cell(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


def _isin_of_key(key: str) -> str:
    """``NSE_EQ|INE002A01018`` -> ``INE002A01018``."""
    segment, _, isin = key.partition("|")
    return isin if segment == "NSE_EQ" else ""


def _present(ids: Mapping[str, Any]) -> dict[str, str]:
    """The known fields with a value (stripped); empty and unknown fields dropped."""
    return {name: str(ids[name]).strip() for name in FIELDS if ids.get(name) is not None and str(ids[name]).strip()}
