"""Logging set-up: for long-running commands a file under ``$SHAREWISE_HOME/logs`` and warnings on stderr;
for a short command's own record (such as ``sharewise broker``'s audit lines), a logger with a file of its own."""

from __future__ import annotations

import logging
import sys

from engine.settings import Settings, redact


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(settings: Settings, name: str, *, stderr_level: int = logging.WARNING) -> None:
    """Root logger at the configured level (never DEBUG by accident: aiokafka's debug records cost 13%)."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    fmt = _Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s")
    to_file = logging.FileHandler(settings.log_dir / f"{name}.log")
    to_file.setFormatter(fmt)
    to_err = logging.StreamHandler(sys.stderr)
    to_err.setFormatter(fmt)
    to_err.setLevel(stderr_level)
    # a record the command itself reports as its one red error line (a worker's failure) stays in the file
    to_err.addFilter(lambda record: not getattr(record, "file_only", False))
    root = logging.getLogger()
    root.handlers[:] = [to_file, to_err]
    root.setLevel(settings.log_level)
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def file_logger(settings: Settings, logger: str, name: str) -> logging.Logger:
    """The logger ``logger`` at INFO, writing only to ``$SHAREWISE_HOME/logs/<name>.log`` (URL passwords redacted)."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(settings.log_dir / f"{name}.log")
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    found = logging.getLogger(logger)
    for old in found.handlers:
        old.close()
    found.handlers[:] = [handler]
    found.setLevel(logging.INFO)
    found.propagate = False
    return found
