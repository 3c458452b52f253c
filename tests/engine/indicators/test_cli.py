"""``sharewise indicators`` contract, run as a subprocess the way other programs call it."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.indicators import DEFAULT_COLUMNS, DEFAULT_SPECS, parse
from tests.engine.indicators.series import random_walk, single_outputs, talib_reference

BARS = 300


def sharewise(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from engine.cli.app import main; main()", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def series():  # noqa: ANN201
    return random_walk(BARS, seed=21)


@pytest.fixture()
def bars_csv(tmp_path: Path, series) -> Path:  # noqa: ANN001
    """Columns in another order, an extra column, times with a comma (so quoted)."""
    path = tmp_path / "bars.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["volume", "close", "symbol", "time", "low", "open", "high"])
        for k in range(BARS):
            writer.writerow([repr(float(series.volume[k])), repr(float(series.close[k])), "TCS",
                             f"day {k // 75}, bar {k % 75}", repr(float(series.low[k])),
                             repr(float(series.open[k])), repr(float(series.high[k]))])
    return path


def test_output_is_time_then_the_25_columns_equal_to_talib(bars_csv: Path, tmp_path: Path,
                                                           series) -> None:  # noqa: ANN001
    out = tmp_path / "out.csv"
    done = sharewise("indicators", bars_csv, "--out", out)
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", *DEFAULT_COLUMNS]
    assert [r[0] for r in rows[1:]] == [f"day {k // 75}, bar {k % 75}" for k in range(BARS)]
    cells = np.array([[float(c) if c else np.nan for c in r[1:]] for r in rows[1:]])
    for j, spec in enumerate(single_outputs([parse(s) for s in DEFAULT_SPECS])):
        assert np.array_equal(cells[:, j], talib_reference(spec, series), equal_nan=True), spec.columns[0]
    assert rows[1][1] == "" and rows[1][DEFAULT_COLUMNS.index("obv") + 1] == repr(float(series.volume[0]))


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    done = sharewise("indicators", tmp_path / "nope.csv", "--out", tmp_path / "out.csv")
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("time,open,high,low,close\n2026-01-05T09:15:00+05:30,1,2,0.5,1.5\n")
    done = sharewise("indicators", path, "--out", tmp_path / "out.csv")
    assert done.returncode == 2
    assert "missing column 'volume'" in done.stderr


@pytest.mark.parametrize("bad", ["abc", "nan"])
def test_non_numeric_value_names_line_and_column(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "bars.csv"
    out = tmp_path / "out.csv"
    path.write_text("time,open,high,low,close,volume\nt1,1,2,0.5,1.5,10\nt2,1,2,0.5,1.5,10\n"
                    f"t3,1,2,{bad},1.5,10\n")
    done = sharewise("indicators", path, "--out", out)
    assert done.returncode == 2
    assert "line 4: low" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists(), "no partial output"
