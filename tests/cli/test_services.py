"""``sharewise services start|status|stop``: services outlive the command, other commands reuse them, stop ends them."""

from __future__ import annotations

import json
import subprocess
import sys

from db.embedded import postgres_status
from engine.settings import Settings
from streams.broker import pid_alive
from tests.cli.test_up import _env
from tests.fixtures.postgres import private_home


def _sw(home, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=_env(home), capture_output=True,
                          text=True, timeout=120)


def test_services_start_are_reused_then_stopped():
    with private_home("sharewise-svc-") as home:
        started = _sw(home, "services", "start")
        assert started.returncode == 0, started.stderr
        state = json.loads((home / "services.json").read_text())
        broker_pid = state["broker"]["pid"]
        assert pid_alive(broker_pid) and postgres_status(Settings(home=home))["running"]

        status = _sw(home, "services", "status")
        assert status.returncode == 0 and "running" in status.stdout

        migrated = _sw(home, "db", "migrate")  # reuses the kept database; must not stop it
        assert migrated.returncode == 0, migrated.stderr
        assert postgres_status(Settings(home=home))["running"] and pid_alive(broker_pid)

        stopped = _sw(home, "services", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not pid_alive(broker_pid)
        assert not postgres_status(Settings(home=home))["running"]
        assert not (home / "services.json").exists()
        assert _sw(home, "services", "stop").stdout.strip().startswith("no services recorded")
