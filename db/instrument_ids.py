"""Broker identifiers loaded from the brokers' dumps (``engine.broker_instrument``), over the shipped file.

* :func:`save_broker_ids` — upsert what ``sharewise instruments load`` parsed, field by field: a field the dump
  does not give (Kite has no ISIN, AngelOne neither) keeps the stored value, so loading a Kite file after an
  Upstox one adds tokens without erasing ISINs;
* :func:`broker_id_rows` — the stored rows as they are (with source and time);
* :func:`broker_ids` — the mapping the live adapters take: ``engine/data/broker_instruments.csv`` with the
  table over it (:func:`engine.instrument_ids.merge`).

All SQL is parameterised; :func:`save_broker_ids` runs in one transaction (a savepoint inside the caller's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.instrument_ids import FIELDS, BrokerIds, builtin_broker_ids, merge

_UPSERT = """
INSERT INTO engine.broker_instrument (symbol, isin, smartapi_token, source, loaded_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (symbol) DO UPDATE SET
    isin = COALESCE(EXCLUDED.isin, engine.broker_instrument.isin),
    smartapi_token = COALESCE(EXCLUDED.smartapi_token, engine.broker_instrument.smartapi_token),
    source = EXCLUDED.source,
    loaded_at = EXCLUDED.loaded_at
"""


async def save_broker_ids(conn: asyncpg.Connection, rows: Mapping[str, Mapping[str, str]], source: str) -> int:
    """Upsert ``rows`` (symbol -> identifiers) loaded from ``source``; return how many symbols were written.

    An empty or missing field is written as NULL, which keeps the stored value (COALESCE); ``source`` and
    ``loaded_at`` always become this load's.
    """
    args = [(symbol, *(_value(ids, name) for name in FIELDS), source) for symbol, ids in rows.items() if symbol]
    if not args:
        return 0
    async with conn.transaction():
        await conn.executemany(_UPSERT, args)
    return len(args)


async def broker_id_rows(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    """The stored rows by symbol: ``isin``, ``smartapi_token`` (None when unknown), ``source``, ``loaded_at``."""
    found = await conn.fetch("SELECT symbol, isin, smartapi_token, source, loaded_at FROM engine.broker_instrument"
                             " ORDER BY symbol")
    return {r["symbol"]: {k: r[k] for k in ("isin", "smartapi_token", "source", "loaded_at")} for r in found}


async def broker_ids(conn: asyncpg.Connection) -> BrokerIds:
    """The packaged identifiers with the stored ones over them, field by field (a stored value wins)."""
    stored = await broker_id_rows(conn)
    loaded = {symbol: {name: row[name] for name in FIELDS if row[name]} for symbol, row in stored.items()}
    return merge(builtin_broker_ids(), loaded)


def _value(ids: Mapping[str, str], name: str) -> str | None:
    value = (ids.get(name) or "").strip()
    return value or None
