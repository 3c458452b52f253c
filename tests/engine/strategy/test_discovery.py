"""Discovery: built-ins, an installed third-party plugin, broken plugins reported not fatal; the scaffold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.app import app
from engine.errors import ConfigError
from engine.strategy import available, create
from engine.strategy.scaffold import plugin_files

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "examples" / "plugin"
#: ``strategy list --json``'s rows of the built-ins as they were before typed configs.
LISTED_BUILTINS = Path(__file__).with_name("strategy_list_builtins.json")
BIN = Path(sys.executable).parent
BUILTINS = ["ema_cross", "rsi_reversion", "macd_cross", "bollinger_breakout", "adx_trend", "donchian_breakout"]


def _sharewise(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "sharewise"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)  # fmt: skip


def _installed_from_here() -> bool:
    probe = ("import importlib.metadata as m, json, sys\n"
             "try: print(json.loads(m.distribution('sharewise-example-plugin').read_text('direct_url.json'))['url'])\n"
             "except Exception: print('')")  # fmt: skip
    url = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
    return url == PLUGIN.as_uri()


@pytest.fixture(scope="session")
def example_plugin() -> str:
    """The example plugin installed (editable, no dependencies) into the test interpreter's environment."""
    if not _installed_from_here():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(PLUGIN)],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
    return "roc_momentum"


def test_builtins_are_available_in_order():
    infos = available()
    assert list(infos)[:6] == BUILTINS
    assert {infos[n].source for n in BUILTINS} == {"builtin"}
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        create("nope")


def test_the_installed_plugin_is_listed_with_its_package_and_parameters(example_plugin):
    result = _sharewise("strategy", "list", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    by_name = {s["name"]: s for s in doc["strategies"]}
    assert list(by_name)[:6] == BUILTINS
    plugin = by_name[example_plugin]
    assert plugin["source"] == "sharewise-example-plugin" and plugin["version"] == "0.1.0"
    assert plugin["reference"] == "sharewise_example.roc_momentum:RocMomentum"
    assert [p["name"] for p in plugin["params"]] == ["period", "threshold"]
    assert by_name["ema_cross"]["params"][0] == {"name": "fast", "type": "int", "default": 9, "min": 2, "max": 500,
                                                 "choices": None, "help": "fast EMA period"}  # fmt: skip
    table = _sharewise("strategy", "list", env={"COLUMNS": "200"})
    assert table.returncode == 0 and "roc_momentum" in table.stdout and "sharewise-example-plugin" in table.stdout


def test_strategy_list_json_shows_the_builtins_parameters_as_before_typed_configs():
    result = CliRunner().invoke(app, ["strategy", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["strategies"][: len(BUILTINS)]
    # Compared as JSON text: 25.0 and 25 are equal numbers but not the same listing.
    assert json.dumps(rows) == json.dumps(json.loads(LISTED_BUILTINS.read_text()))


def test_broken_plugins_are_reported_and_do_not_hide_the_others(tmp_path):
    info = tmp_path / "broken_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sharewise.strategies]\n"
        "missing = nowhere_at_all.module:Strategy\n"
        "not_a_strategy = json:loads\n"
        "ema_cross = json:loads\n"
        "mismatch = strategies.rsi_reversion:RsiReversion\n"
    )
    result = _sharewise("strategy", "list", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["strategies"]][:6] == BUILTINS
    problems = {p["name"]: p["problem"] for p in doc["problems"]}
    assert "ModuleNotFoundError" in problems["missing"]
    assert "not a subclass" in problems["not_a_strategy"]
    assert "already taken by builtin" in problems["ema_cross"]
    assert "differs from the class name attribute 'rsi_reversion'" in problems["mismatch"]


def test_strategy_new_scaffolds_a_package_whose_test_passes(tmp_path):
    result = _sharewise("strategy", "new", "my_breakout", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "sharewise-my-breakout"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["sharewise.strategies"] == {
        "my_breakout": "sharewise_my_breakout.strategy:MyBreakout"
    }
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
    again = _sharewise("strategy", "new", "my_breakout", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_the_scaffolded_strategy_declares_a_typed_config(tmp_path, monkeypatch):
    for relative, text in plugin_files("my_channel").items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    from sharewise_my_channel import MyChannel

    assert MyChannel.config_class.__name__ == "MyChannelConfig"
    assert [p.describe() for p in MyChannel.params] == [{"name": "period", "type": "int", "default": 20, "min": 2,
                                                         "max": 500, "choices": None, "help": "SMA period"}]  # fmt: skip
    assert MyChannel(period=30).cfg.period == 30 and MyChannel(period=30).indicators() == ["sma(30)"]


@pytest.mark.parametrize(("name", "message"), [("Bad-Name", "lower-case identifier"), ("ema_cross", "already taken")])
def test_scaffold_refuses_bad_or_taken_names(name, message):
    with pytest.raises(ConfigError, match=message):
        plugin_files(name)
