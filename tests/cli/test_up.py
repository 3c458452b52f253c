"""``sharewise up`` as a user runs it: embedded broker and PostgreSQL, the synthetic feed, then SIGINT or SIGTERM.

It must stop cleanly (exit 0), leave no child process behind, and stop the embedded database it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from db.embedded import postgres_status
from engine.settings import Settings
from tests.fixtures.postgres import private_home


def _env(home) -> dict[str, str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREWISE_")}
    env["SHAREWISE_HOME"] = str(home)
    env["COLUMNS"] = "160"
    env["SHAREWISE_WS_PORT"] = "0"  # a free port: runs can share a machine
    return env


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_runs_the_flow_then_stops_cleanly_on_a_signal(sig):
    with private_home("sharewise-up-") as home:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "up", "--speed", "600", "--rate", "3000"],
                                env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            children: set[int] = set()
            bars_seen = False
            while time.monotonic() < deadline and proc.poll() is None and not bars_seen:
                children |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
                log = (home / "logs" / "up.log")
                bars_seen = log.exists() and "assumed at offset" in log.read_text()
                time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert bars_seen, "the worker never took its partitions"
            time.sleep(3)  # let ticks become bars and signals
            assert postgres_status(Settings(home=home))["running"]
            if sig == signal.SIGTERM:  # once is enough: ops commands find the broker of a running `up`
                seen = subprocess.run([sys.executable, "-m", "engine.cli", "monitor", "--once", "--json", "--window",
                                       "0"], env=_env(home), capture_output=True, text=True, timeout=60)
                assert "market.ticks" in json.loads(seen.stdout)["topics"], seen.stdout + seen.stderr
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr[-3000:]
        assert "stopped cleanly" in stdout
        assert "Traceback" not in stderr
        assert children, "up started no child process (the embedded broker is one)"
        time.sleep(0.5)
        alive = [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"left behind: {alive}"
        assert not postgres_status(Settings(home=home))["running"]
        assert not (home / "broker.json").exists()


def test_up_with_stdout_piped_to_a_file_prints_a_plain_progress_line_every_10_seconds(tmp_path):
    with private_home("sharewise-up-") as home:
        log = tmp_path / "up.out"
        with log.open("w") as stdout:
            proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "up", "--speed", "600", "--rate", "3000"],
                                    env=_env(home), stdout=stdout, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and proc.poll() is None and log.read_text().count("progress:") < 2:
                    time.sleep(0.5)
                lines = [line for line in log.read_text().splitlines() if line.startswith("progress:")]
                proc.send_signal(signal.SIGTERM)
                _, stderr = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0, stderr[-3000:]
        assert len(lines) >= 2, log.read_text()[-3000:]
        fields = ("ticks", "dlq", "bars", "signals", "lag", "sink backlog")
        assert all(all(f" {f} " in line for f in fields) for line in lines), lines
        assert int(lines[-1].split("ticks ")[1].split(" ")[0].replace(",", "")) > 0  # ticks flowed
        assert "\x1b[" not in log.read_text()  # no terminal control codes in a file
        assert "stopped cleanly" in log.read_text()
