"""``sharewise instruments load|ids`` as a user runs them: real subprocesses and a real database.

Three dumps (Kite CSV, AngelOne JSON, Upstox gzip JSON) go into one database; ``ids --json`` must show each
field from the last file that gave it, the shipped file underneath, and a symbol of ``SHAREWISE_INSTRUMENTS``
that the shipped file does not know.
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

from db.instrument_ids import broker_id_rows
from engine.cli.instruments_cmd import IDS_KEYS, PACKAGED
from tests.cli.test_broker_cli import query, sharewise
from tests.engine.test_instrument_ids import SMARTAPI

# a symbol outside the shipped list, known to the registry through SHAREWISE_INSTRUMENTS
EXTRA = "TMCV"
KITE = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange\n"
    "738561,2885,RELIANCE,RELIANCE INDUSTRIES,0,,,0.05,1,EQ,NSE,NSE\n"
    f"194507524,759782,{EXTRA},TATA MOTORS,0,,,0.05,1,EQ,NSE,NSE\n"
    "3050241,11915,YESBANK,YES BANK,0,,,0.01,1,EQ,NSE,NSE\n"
    "256265,1001,NIFTY 50,NIFTY 50,0,,,0,0,EQ,INDICES,NSE\n"
)
UPSTOX = [
    {"segment": "NSE_EQ", "name": "TATA MOTORS LIMITED", "exchange": "NSE", "isin": "INE1TAE01010",
     "instrument_type": "EQ", "instrument_key": "NSE_EQ|INE1TAE01010", "lot_size": 1, "exchange_token": "",
     "tick_size": 10.0, "trading_symbol": EXTRA},
    {"segment": "NSE_INDEX", "name": "Nifty 50", "exchange": "NSE", "instrument_type": "INDEX",
     "instrument_key": "NSE_INDEX|Nifty 50", "exchange_token": "26000", "trading_symbol": "NIFTY"},
]


def run(home: Path, dsn: str, *args: str, extra: Path | None = None):
    env = {"SHAREWISE_INSTRUMENTS": str(extra)} if extra else None
    return sharewise("instruments", *args, home=home, database_url=dsn, env=env)


def extra_list(tmp_path: Path) -> Path:
    path = tmp_path / "extra.csv"
    path.write_text(f"symbol,name,kind,typical_price\n{EXTRA},Tata Motors,equity,400\n")
    return path


def test_three_dumps_load_and_ids_shows_each_field_from_where_it_came(pg_dsn, tmp_path):
    home, extra = tmp_path / "home", extra_list(tmp_path)
    kite, angel, upstox = tmp_path / "instruments.csv", tmp_path / "OpenAPIScripMaster.json", tmp_path / "NSE.json.gz"
    kite.write_text(KITE)
    angel.write_text(json.dumps(SMARTAPI))
    upstox.write_bytes(gzip.compress(json.dumps(UPSTOX).encode()))

    loads = [run(home, pg_dsn, "load", str(f), "--json", extra=extra) for f in (kite, angel, upstox)]
    assert all(r.returncode == 0 for r in loads), [r.stderr for r in loads]
    assert [json.loads(r.stdout) for r in loads] == [
        {"file": str(kite), "format": "kite-csv", "rows": 4, "equities": 3, "saved": 2},  # YESBANK is not ours
        {"file": str(angel), "format": "smartapi-json", "rows": 5, "equities": 2, "saved": 2},
        {"file": str(upstox), "format": "upstox-json", "rows": 2, "equities": 1, "saved": 1},
    ]

    listed = run(home, pg_dsn, "ids", "--json", extra=extra)
    assert listed.returncode == 0, listed.stderr
    rows = {r["symbol"]: r for r in json.loads(listed.stdout)}
    assert all(list(r) == list(IDS_KEYS) for r in rows.values())
    assert len(rows) == 51 and "NIFTY" not in rows and "YESBANK" not in rows
    # the token from Kite, the ISIN from Upstox: the later load kept the earlier field it did not give
    assert {k: rows[EXTRA][k] for k in ("isin", "smartapi_token", "source")} == {
        "isin": "INE1TAE01010", "smartapi_token": "759782", "source": "NSE.json.gz"}
    assert rows[EXTRA]["loaded_at"] is not None
    # RELIANCE: the AngelOne file gave it last; the shipped ISIN stays underneath
    assert {k: rows["RELIANCE"][k] for k in ("isin", "smartapi_token", "source")} == {
        "isin": "INE002A01018", "smartapi_token": "2885", "source": "OpenAPIScripMaster.json"}
    assert (rows["HDFCBANK"]["isin"], rows["HDFCBANK"]["source"], rows["HDFCBANK"]["loaded_at"]) == (
        "INE040A01034", PACKAGED, None)

    table = run(home, pg_dsn, "ids", extra=extra)
    assert table.returncode == 0, table.stderr
    assert "INE1TAE01010" in table.stdout and "51 equities, 0 with an identifier missing" in table.stdout


def test_a_second_load_is_idempotent_and_unknown_symbols_are_counted(pg_dsn, tmp_path):
    kite = tmp_path / "instruments.csv"
    kite.write_text(KITE)
    first = run(tmp_path, pg_dsn, "load", str(kite))
    stored = query(pg_dsn, "SELECT symbol, isin, smartapi_token, source FROM engine.broker_instrument ORDER BY 1")
    second = run(tmp_path, pg_dsn, "load", str(kite))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "saved the identifiers of 1 of our symbol(s); skipped 2 unknown to our registry" in second.stdout
    assert "Kite instruments CSV" in second.stdout
    again = query(pg_dsn, "SELECT symbol, isin, smartapi_token, source FROM engine.broker_instrument ORDER BY 1")
    assert [tuple(r) for r in again] == [tuple(r) for r in stored] == [("RELIANCE", None, "2885", "instruments.csv")]


def test_a_pickle_garbage_or_missing_file_exits_2_with_one_clear_line(pg_dsn, tmp_path):
    pickled = tmp_path / "ids.pkl"
    pickled.write_bytes(pickle.dumps({"RELIANCE": "2885"}))
    garbage = tmp_path / "notes.csv"
    garbage.write_text("hello,world\n1,2\n")
    cases = {pickled: "not UTF-8 text", garbage: "its first line has hello, world",
             tmp_path / "absent.csv": "no such file", tmp_path: "is a directory"}
    for path, says in cases.items():
        result = run(tmp_path, pg_dsn, "load", str(path))
        assert result.returncode == 2, (path, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and says in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert query(pg_dsn, "SELECT count(*) FROM engine.broker_instrument")[0][0] == 0


def test_broker_ids_lays_the_table_over_the_shipped_file(pg_dsn):
    import asyncio

    import asyncpg

    from db.instrument_ids import broker_ids, save_broker_ids

    async def main():
        conn = await asyncpg.connect(pg_dsn)
        try:
            saved = await save_broker_ids(conn, {"RELIANCE": {"smartapi_token": "2885", "isin": ""},
                                                 "NEWCO": {"isin": "INE000A00001"}}, "dump.csv")
            await save_broker_ids(conn, {"NEWCO": {"smartapi_token": "42"}}, "later.csv")
            return saved, await broker_ids(conn), await broker_id_rows(conn)
        finally:
            await conn.close()

    saved, ids, rows = asyncio.run(main())
    assert saved == 2
    assert ids["RELIANCE"] == {"isin": "INE002A01018", "smartapi_token": "2885"}
    assert ids["NEWCO"] == {"isin": "INE000A00001", "smartapi_token": "42"}
    assert rows["NEWCO"]["source"] == "later.csv" and rows["RELIANCE"]["isin"] is None
