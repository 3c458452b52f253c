"""The one place the CLI reads the process environment: every command builds its settings here."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from engine.settings import PATH_VARIABLES, Settings


def load_settings() -> Settings:
    """Settings from this process's ``SHAREWISE_*`` variables (README "Configuration").

    A leading ``~`` in a path variable is the user's home; ``SHAREWISE_HOME`` defaults to the
    user's state directory (``~/.local/state/sharewise``). Raise ConfigError naming a bad variable.
    """
    env = {name: os.path.expanduser(value) if name in PATH_VARIABLES else value for name, value in os.environ.items()}
    return Settings.from_env(env, default_home=Path(platformdirs.user_state_dir("sharewise")).expanduser())
