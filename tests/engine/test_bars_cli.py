"""``sharewise bars`` contract, run as a subprocess the way other programs call it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from engine.domain import Timeframe
from tests.engine.test_bars import SYMBOLS, make_ticks, pandas_bars

TICKS = """\
time,symbol,price,qty
2026-01-05T09:15:00+05:30,TCS,3100.5,10
2026-01-05T09:15:30+05:30,ZZZ-NOT-LISTED,7.25,1.5
2026-01-05T03:45:40Z,TCS,3101.0,5
2026-01-05T09:16:30+05:30,TCS,3099.25,5
2026-01-05T09:16:00+05:30,TCS,3098.0,5
2026-01-05T09:10:00+05:30,TCS,3099.0,5
2026-01-05T09:17:00+05:30,TCS,nan,5
2026-01-05T09:17:00+05:30,TCS,3099.0,-1
2026-01-05T09:20:00+05:30,INFY,1500.1,3
"""

EXPECTED_1M = """\
symbol,time,open,high,low,close,volume
INFY,2026-01-05T09:20:00+05:30,1500.1,1500.1,1500.1,1500.1,3
TCS,2026-01-05T09:15:00+05:30,3100.5,3101.0,3100.5,3101.0,15
TCS,2026-01-05T09:16:00+05:30,3099.25,3099.25,3099.25,3099.25,5
ZZZ-NOT-LISTED,2026-01-05T09:15:00+05:30,7.25,7.25,7.25,7.25,1.5
"""


def sharewise(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from engine.cli.app import main; main()", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def ticks_csv(tmp_path: Path) -> Path:
    path = tmp_path / "ticks.csv"
    path.write_text(TICKS)
    return path


def test_bars_file_contract_and_reject_counts(ticks_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "bars.csv"
    done = sharewise("bars", ticks_csv, "--timeframe", "1m", "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == EXPECTED_1M
    # 09:16:00 arrives 30 s after 09:16:30: late; 09:10 is before the open.
    for line in ("rejected bad_price: 1", "rejected bad_qty: 1", "rejected out_of_session: 1", "rejected late: 1"):
        assert line in done.stderr
    assert "9 ticks read, 5 used, 4 rejected" in " ".join(done.stderr.split())


def test_bars_to_stdout_by_default(ticks_csv: Path) -> None:
    done = sharewise("bars", ticks_csv, "-t", "1d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "INFY,2026-01-05T09:15:00+05:30,1500.1,1500.1,1500.1,1500.1,3",
        "TCS,2026-01-05T09:15:00+05:30,3100.5,3101.0,3099.25,3099.25,20",
        "ZZZ-NOT-LISTED,2026-01-05T09:15:00+05:30,7.25,7.25,7.25,7.25,1.5",
    ]


def test_bars_match_the_pandas_reference_over_several_sessions(tmp_path: Path) -> None:
    ticks = make_ticks(seed=11, per_day=400)
    times = pd.to_datetime(ticks.ts_ns, utc=True).dt.tz_convert("Asia/Kolkata")
    src = tmp_path / "ticks.csv"
    pd.DataFrame({"time": times.map(lambda t: t.isoformat()), "symbol": ticks.symbol, "price": ticks.price,
                  "qty": ticks.qty}).to_csv(src, index=False)  # fmt: skip
    out = tmp_path / "bars.csv"
    done = sharewise("bars", src, "--timeframe", "1h", "--out", out)
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(out)
    expected = pandas_bars(ticks, Timeframe.H1)
    assert got.symbol.tolist() == expected.symbol.tolist() and set(got.symbol) == set(SYMBOLS)
    assert got.time.tolist() == [
        pd.Timestamp(t, tz="UTC").tz_convert("Asia/Kolkata").isoformat() for t in expected.open_ns
    ]
    for col in ("open", "high", "low", "close", "volume"):
        assert got[col].tolist() == expected[col].tolist()


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["-t", "1m"], "no such file"),
        ("time,symbol,price\n", ["-t", "1m"], "missing column 'qty'"),
        ("time,symbol,price,qty\n2026-01-05T09:15:00+05:30,TCS,1.0,1\n2026-01-05T09:16:00+05:30,TCS,abc,1\n",
         ["-t", "1m"], "line 3: price 'abc' is not a number"),
        ("time,symbol,price,qty\n2026-01-05 09:15:00,TCS,1.0,1\n", ["-t", "1m"], "line 2: time"),
        ("time,symbol,price,qty\n", ["-t", "2m"], "unknown timeframe '2m'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_clear_line(tmp_path: Path, content: str | None, args: list[str],
                                               message: str) -> None:  # fmt: skip
    src = tmp_path / "ticks.csv"
    if content is not None:
        src.write_text(content)
    done = sharewise("bars", src, *args, "--out", tmp_path / "bars.csv")
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bars.csv").exists()
