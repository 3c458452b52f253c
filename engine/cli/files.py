"""The files the CLI reads for the core: instrument lists.

Each function opens a file, decodes it and hands the text to the core's parser
(``engine.instruments``), which knows nothing of files. Errors are :class:`ConfigError`
(exit code 2) naming the file.
"""

from __future__ import annotations

from importlib import resources

from engine.errors import ConfigError
from engine.instruments import Instrument, InstrumentRegistry, parse_instruments
from engine.settings import Settings


def builtin_instruments() -> list[Instrument]:
    """The packaged list (``engine/data/instruments.csv``): NIFTY, BANKNIFTY and the NIFTY 50 constituents."""
    text = resources.files("engine").joinpath("data/instruments.csv").read_text(encoding="utf-8")
    return parse_instruments(text, "built-in instruments.csv")


def load_instruments(settings: Settings) -> InstrumentRegistry:
    """The built-in list plus the ``SHAREWISE_INSTRUMENTS`` file; raise :class:`ConfigError` on a bad file."""
    instruments = builtin_instruments()
    path = settings.instruments_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read instrument file {path}: {exc.strerror or exc}") from exc
        instruments += parse_instruments(text, str(path))
    return InstrumentRegistry(instruments)
