"""The instrument universe: built-in NIFTY 50 list, extra file, dense indices, partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.cli.files import builtin_instruments, load_instruments
from engine.errors import BadData, ConfigError
from engine.instruments import InstrumentRegistry
from engine.partitioner import partition_for
from engine.settings import Settings


def index_of(registry: InstrumentRegistry, symbol: str) -> int:
    """Dense index of ``symbol``; raise :class:`BadData` ``unknown_symbol`` if it is not listed."""
    try:
        return registry.index[symbol]
    except KeyError:
        raise BadData("unknown_symbol", f"{symbol!r} is not a listed instrument") from None


def indices_in_partition(registry: InstrumentRegistry, partition: int, partitions: int) -> np.ndarray:
    """Sorted int64 indices of the instruments whose ticks land on ``partition``."""
    return np.array(
        [i for i, s in enumerate(registry.symbols) if partition_for(s, partitions) == partition], dtype=np.int64
    )


def settings(tmp_path: Path, extra: Path | None = None) -> Settings:
    env = {"SHAREWISE_HOME": str(tmp_path / "home")}
    if extra is not None:
        env["SHAREWISE_INSTRUMENTS"] = str(extra)
    return Settings.from_env(env)


def test_builtin_list_is_nifty50_plus_two_indices(tmp_path: Path) -> None:
    registry = load_instruments(settings(tmp_path))
    kinds = {i.symbol: i.kind for i in registry}
    assert kinds["NIFTY"] == kinds["BANKNIFTY"] == "index"
    equities = [s for s, k in kinds.items() if k == "equity"]
    assert len(equities) == 50
    assert {"RELIANCE", "TCS", "HDFCBANK", "ICICIBANK", "INFY", "M&M", "BAJAJ-AUTO"} <= set(equities)
    assert all(i.typical_price > 0 for i in registry)
    assert [index_of(registry, s) for s in registry.symbols] == list(range(len(registry)))


def test_unknown_symbol_is_bad_data(tmp_path: Path) -> None:
    registry = load_instruments(settings(tmp_path))
    with pytest.raises(BadData) as info:
        index_of(registry, "ACME")
    assert info.value.reason == "unknown_symbol"
    assert "ACME" not in registry and "TCS" in registry


def test_extra_file_one_symbol_per_line(tmp_path: Path) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text("# my watchlist\nIRCTC\n\nZYDUSLIFE\nTCS\n")
    registry = load_instruments(settings(tmp_path, extra))
    n = len(builtin_instruments())
    assert registry.symbols[n:] == ("IRCTC", "ZYDUSLIFE")  # TCS already listed: keeps its index
    assert index_of(registry, "TCS") < n


def test_extra_file_as_csv(tmp_path: Path) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("symbol,name,kind,typical_price\nIRCTC,Indian Railway Catering,equity,750\nFINNIFTY,,index,\n")
    registry = load_instruments(settings(tmp_path, extra))
    irctc, finnifty = registry.instruments[-2:]
    assert (irctc.symbol, irctc.name, irctc.typical_price) == ("IRCTC", "Indian Railway Catering", 750.0)
    assert (finnifty.kind, finnifty.name) == ("index", "FINNIFTY")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("IRCTC\nbad symbol\n", "line 2"),
        ("symbol,typical_price\nIRCTC,cheap\n", "line 2: typical_price 'cheap'"),
        ("symbol,typical_price\nIRCTC,-5\n", "line 2: typical_price must be > 0"),
    ],
)
def test_bad_extra_file_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_instruments(settings(tmp_path, extra))


def test_missing_extra_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read instrument file"):
        load_instruments(settings(tmp_path, tmp_path / "nope.txt"))


def test_partitions_split_the_universe_exactly(tmp_path: Path) -> None:
    registry = load_instruments(settings(tmp_path))
    parts = [indices_in_partition(registry, p, 8) for p in range(8)]
    assert sorted(i for part in parts for i in part) == list(range(len(registry)))
    for p, part in enumerate(parts):
        assert all(partition_for(registry.symbols[i], 8) == p for i in part)


def test_from_symbols_keeps_first_occurrence_order() -> None:
    registry = InstrumentRegistry.from_symbols(["B", "A", "B"])
    assert registry.symbols == ("B", "A") and registry.index == {"B": 0, "A": 1}
