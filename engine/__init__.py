"""ShareWise signal engine: the pure core (domain, settings, bars, indicators, strategies).

Nothing in this package performs I/O except :mod:`engine.cli`, the composition
root that wires the adapters (``streams``, ``sinks``, ``db``) together.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sharewise-engine")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"
