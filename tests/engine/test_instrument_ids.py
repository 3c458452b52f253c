"""Broker identifiers (engine/instrument_ids.py): the shipped file, each broker's dump format, and the merge rules.

The samples are written in each broker's real layout (column order and key names of Kite's ``instruments``
CSV, AngelOne's ``OpenAPIScripMaster.json``, Upstox's ``complete.csv`` and ``NSE.json``), with a few rows that
must be left out: indices, derivatives, other exchanges, non-equity series.
"""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import re
from importlib import resources

import pytest

from engine.cli.files import builtin_instruments
from engine.errors import ConfigError
from engine.instrument_ids import (
    KITE_CSV,
    SMARTAPI_JSON,
    UPSTOX_CSV,
    UPSTOX_JSON,
    builtin_broker_ids,
    merge,
    parse_broker_dump,
    parse_broker_ids_csv,
)

KITE = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange\n"
    "738561,2885,RELIANCE,RELIANCE INDUSTRIES,0,,,0.05,1,EQ,NSE,NSE\n"
    "408065,1594,INFY,INFOSYS,0,,,0.05,1,EQ,NSE,NSE\n"
    "256265,1001,NIFTY 50,NIFTY 50,0,,,0,0,EQ,INDICES,NSE\n"
    "128083204,500325,RELIANCE,RELIANCE INDUSTRIES,0,,,0.05,1,EQ,BSE,BSE\n"
    "12345602,48225,NIFTY25O0625000CE,NIFTY,0,2025-10-06,25000,0.05,75,CE,NFO-OPT,NFO\n"
)

SMARTAPI = [
    {"token": "2885", "symbol": "RELIANCE-EQ", "name": "RELIANCE", "expiry": "", "strike": "-1.000000",
     "lotsize": "1", "instrumenttype": "", "exch_seg": "NSE", "tick_size": "5.000000"},
    {"token": "11536", "symbol": "TCS-EQ", "name": "TCS", "expiry": "", "strike": "-1.000000",
     "lotsize": "1", "instrumenttype": "", "exch_seg": "NSE", "tick_size": "5.000000"},
    {"token": "99926000", "symbol": "Nifty 50", "name": "NIFTY", "expiry": "", "strike": "0.000000",
     "lotsize": "1", "instrumenttype": "AMXIDX", "exch_seg": "NSE", "tick_size": "0.000000"},
    {"token": "500325", "symbol": "RELIANCE", "name": "RELIANCE", "expiry": "", "strike": "-1.000000",
     "lotsize": "1", "instrumenttype": "", "exch_seg": "BSE", "tick_size": "5.000000"},
    {"token": "52509", "symbol": "RELIANCE28OCT25FUT", "name": "RELIANCE", "expiry": "28OCT2025",
     "strike": "-1.000000", "lotsize": "500", "instrumenttype": "FUTSTK", "exch_seg": "NFO", "tick_size": "10.000000"},
]

UPSTOX_CSV_TEXT = (
    "instrument_key,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,option_type,exchange\n"
    "NSE_EQ|INE002A01018,2885,RELIANCE,RELIANCE INDUSTRIES LTD,0,,,0.05,1,EQUITY,,NSE_EQ\n"
    "NSE_EQ|INE467B01029,11536,TCS,TATA CONSULTANCY SERV LT,0,,,0.05,1,EQUITY,,NSE_EQ\n"
    "NSE_INDEX|Nifty 50,26000,NIFTY,Nifty 50,0,,,0,0,INDEX,,NSE_INDEX\n"
    "NSE_FO|52509,52509,RELIANCE25OCTFUT,RELIANCE INDUSTRIES LTD,0,2025-10-28,0,0.1,500,FUTSTK,,NSE_FO\n"
)

UPSTOX_JSON_DOC = [
    {"segment": "NSE_EQ", "name": "RELIANCE INDUSTRIES LTD", "exchange": "NSE", "isin": "INE002A01018",
     "instrument_type": "EQ", "instrument_key": "NSE_EQ|INE002A01018", "lot_size": 1,
     "freeze_quantity": 100000.0, "exchange_token": "2885", "tick_size": 10.0, "trading_symbol": "RELIANCE",
     "short_name": "Reliance Industries", "security_type": "NORMAL"},
    {"segment": "NSE_INDEX", "name": "Nifty 50", "exchange": "NSE", "instrument_type": "INDEX",
     "instrument_key": "NSE_INDEX|Nifty 50", "exchange_token": "26000", "trading_symbol": "NIFTY"},
    {"segment": "NSE_EQ", "name": "749RJ35", "exchange": "NSE", "isin": "IN2920250163", "instrument_type": "SG",
     "instrument_key": "NSE_EQ|IN2920250163", "exchange_token": "758718", "trading_symbol": "749RJ35"},
]


def test_a_kite_csv_gives_the_nse_equities_with_their_exchange_token():
    dump = parse_broker_dump(KITE.encode(), "instruments.csv")
    assert (dump.format, dump.rows) == (KITE_CSV, 5)
    assert dump.ids == {"RELIANCE": {"smartapi_token": "2885"}, "INFY": {"smartapi_token": "1594"}}


def test_a_smartapi_scrip_master_gives_the_eq_series_of_nse_without_the_suffix():
    dump = parse_broker_dump(json.dumps(SMARTAPI).encode(), "OpenAPIScripMaster.json")
    assert (dump.format, dump.rows) == (SMARTAPI_JSON, 5)
    assert dump.ids == {"RELIANCE": {"smartapi_token": "2885"}, "TCS": {"smartapi_token": "11536"}}


def test_an_upstox_csv_gives_the_isin_from_the_instrument_key():
    dump = parse_broker_dump(UPSTOX_CSV_TEXT.encode(), "complete.csv")
    assert (dump.format, dump.rows) == (UPSTOX_CSV, 4)
    assert dump.ids == {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"},
                        "TCS": {"isin": "INE467B01029", "smartapi_token": "11536"}}


def test_an_upstox_json_keeps_equities_only():
    dump = parse_broker_dump(json.dumps(UPSTOX_JSON_DOC).encode(), "NSE.json")
    assert (dump.format, dump.rows) == (UPSTOX_JSON, 3)
    assert dump.ids == {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"}}


@pytest.mark.parametrize("data, fmt", [(KITE.encode(), KITE_CSV), (json.dumps(UPSTOX_JSON_DOC).encode(), UPSTOX_JSON),
                                       (UPSTOX_CSV_TEXT.encode(), UPSTOX_CSV)])
def test_gzip_is_read_like_the_plain_file(data, fmt):
    assert parse_broker_dump(gzip.compress(data), "x.gz") == parse_broker_dump(data, "x")
    assert parse_broker_dump(gzip.compress(data), "x.gz").format == fmt


def test_a_byte_order_mark_and_crlf_lines_are_accepted():
    dump = parse_broker_dump(b"\xef\xbb\xbf" + KITE.replace("\n", "\r\n").encode(), "instruments.csv")
    assert dump.ids["INFY"] == {"smartapi_token": "1594"}


@pytest.mark.parametrize("data, says", [
    (pickle.dumps({"RELIANCE": 2885}), "not UTF-8 text"),
    (b"symbol,isin\nRELIANCE,INE002A01018\n", "its first line has isin, symbol"),
    (b'{"token": "2885"}', "its first line has"),
    (b'[{"a": 1}]', "a JSON list of objects with a"),
    (b"[1, 2", "invalid JSON"),
    (b"", "its first line has nothing"),
    (b"\x1f\x8b\x08\x00garbage", "a damaged gzip file"),
])
def test_a_file_in_no_known_format_is_a_config_error_naming_it(data, says):
    with pytest.raises(ConfigError) as error:
        parse_broker_dump(data, "/tmp/dump.bin")
    message = str(error.value)
    assert message.startswith("/tmp/dump.bin: ") and says in message
    assert error.value.exit_code == 2
    if "damaged" not in says:
        assert "Kite instruments CSV" in message and "OpenAPIScripMaster.json" in message


def test_merge_overrides_field_by_field_and_never_erases():
    base = {"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"}, "TCS": {"isin": "INE467B01029"}}
    loaded = {"RELIANCE": {"smartapi_token": "9999", "isin": ""}, "TCS": {"smartapi_token": "11536"},
              "NEW": {"isin": "INE000000000", "smartapi_token": " "}}
    assert merge(base, loaded) == {
        "RELIANCE": {"isin": "INE002A01018", "smartapi_token": "9999"},
        "TCS": {"isin": "INE467B01029", "smartapi_token": "11536"},
        "NEW": {"isin": "INE000000000"},
    }
    assert base["RELIANCE"]["smartapi_token"] == "2885"  # inputs untouched


def test_our_own_csv_needs_its_columns_and_drops_empty_cells():
    assert parse_broker_ids_csv("symbol,isin,smartapi_token\nA,,12\n", "f") == {"A": {"smartapi_token": "12"}}
    with pytest.raises(ConfigError, match="f: missing column"):
        parse_broker_ids_csv("symbol,isin\nA,B\n", "f")


def test_the_packaged_file_covers_every_equity_of_instruments_csv():
    equities = [i.symbol for i in builtin_instruments() if i.kind == "equity"]
    indices = [i.symbol for i in builtin_instruments() if i.kind == "index"]
    shipped = builtin_broker_ids()
    text = resources.files("engine").joinpath("data/broker_instruments.csv").read_text(encoding="utf-8")
    assert next(csv.reader([text.splitlines()[0]])) == ["symbol", "isin", "smartapi_token"]
    assert sorted(shipped) == sorted(equities) and len(equities) == 50
    assert not set(indices) & set(shipped)
    isins = [ids["isin"] for ids in shipped.values() if "isin" in ids]
    assert all(re.fullmatch(r"INE[0-9A-Z]{9}", isin) for isin in isins)
    assert len(set(isins)) == len(isins)
    tokens = [ids["smartapi_token"] for ids in shipped.values() if "smartapi_token" in ids]
    assert all(token.isdigit() for token in tokens) and len(set(tokens)) == len(tokens)
    assert shipped["RELIANCE"] == {"isin": "INE002A01018", "smartapi_token": "2885"}
