"""Settings: one frozen object parsed once from ``SHAREWISE_*`` environment variables.

A pure parser: :meth:`Settings.from_env` reads the mapping it is handed; the CLI hands it the
process environment and the user's state directory (``engine/cli/environment.py``).

=============================  ==========================================  =========================
variable                       meaning                                     default
=============================  ==========================================  =========================
``SHAREWISE_HOME``             all state: database, broker, logs, secrets  the user's state dir
``SHAREWISE_DATABASE_URL``     external PostgreSQL; nothing embedded runs  (embedded PostgreSQL)
``SHAREWISE_KAFKA``            external Kafka ``kafka://host:port[,…]``    (embedded Tansu broker)
``SHAREWISE_LOG_LEVEL``        log level of the engine's loggers           ``INFO``
``SHAREWISE_PARTITIONS``       partitions of the engine's topics           ``8``
``SHAREWISE_ALLOWED_LATENESS`` seconds a late tick may still update a bar  ``2``
``SHAREWISE_WS_HOST``          websocket feed host                         ``127.0.0.1``
``SHAREWISE_WS_PORT``          websocket feed port                         ``8765``
``SHAREWISE_JWT_SECRET``       token signing secret                        generated under HOME
``SHAREWISE_SECRET_KEY``       broker token key: 32 bytes, base64 or hex   generated under HOME
``SHAREWISE_INSTRUMENTS``      extra instrument list file (one per line)   (built-in NIFTY 50 list)
``SHAREWISE_METRICS_PORT``     port of ``/metrics`` (0: any free port)     (no metrics endpoint)
``SHAREWISE_METRICS_HOST``     address ``/metrics`` listens on             ``127.0.0.1``
``SHAREWISE_MAX_MESSAGE_BYTES`` largest Kafka message the engine produces  ``1000000``
``SHAREWISE_SEND_TIMEOUT``     seconds before an undelivered send fails    ``30``
``SHAREWISE_DRAIN_TIMEOUT``    ``--until-drained``: seconds without progress before exit 3  ``120``
``SHAREWISE_PAPER_CASH``       starting cash (₹) of a paper portfolio      ``1000000``
``SHAREWISE_RELOAD_S``         seconds between reads of strategy rows/leases ``30``
``SHAREWISE_KITE_API_SECRET``  the Kite Connect app's secret: postbacks    (postbacks off)
``SHAREWISE_POSTBACK_PORT``    port of the feed's postback listener        ``8766`` (0: any free)
``SHAREWISE_MODEL_MAX_BYTES``  largest ONNX model file ``model import`` takes  ``52428800`` (50 MB)
``SHAREWISE_CPU_HOUR_PRICE``  price (₹) of one CPU hour of ``model train``  ``10.00``
``SHAREWISE_WAL_ARCHIVE``     archive the embedded server's WAL (``on``/``off``)  ``on``
=============================  ==========================================  =========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Mapping

from engine.credentials import decode_key
from engine.errors import ConfigError

#: the smallest message limit that still holds a dead-letter record with a useful prefix of its original
MIN_MESSAGE_BYTES = 16_384
#: the variables that name a path: the CLI expands a leading ``~`` in them before parsing
PATH_VARIABLES = ("SHAREWISE_HOME", "SHAREWISE_INSTRUMENTS")
_PASSWORD_IN_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@]*):(?P<pw>[^@/]*)@")


def redact(text: str) -> str:
    """Replace any password embedded in a URL inside ``text`` by ``***``."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


@dataclass(frozen=True, slots=True)
class Settings:
    """Immutable engine configuration. Build it with :meth:`from_env`."""

    home: Path
    database_url: str | None = None
    kafka: str | None = None
    log_level: str = "INFO"
    partitions: int = 8
    allowed_lateness_s: float = 2.0
    ws_host: str = "127.0.0.1"
    ws_port: int = 8765
    jwt_secret: str | None = field(default=None, repr=False)
    #: the AES-256 key sealing broker tokens (engine.credentials); None: the CLI uses the one under HOME
    secret_key: bytes | None = field(default=None, repr=False)
    instruments_file: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    max_message_bytes: int = 1_000_000
    send_timeout_s: float = 30.0
    drain_timeout_s: float = 120.0
    paper_cash: Decimal = Decimal("1000000")
    #: the platform's Kite Connect app secret: verifies postbacks (docs/orders.md); None: no postback listener
    kite_api_secret: str | None = field(default=None, repr=False)
    postback_port: int = 8766
    reload_s: float = 30.0  # how often a running worker re-reads strategy rows, models and leases
    #: the largest model file ``sharewise model import`` accepts (engine.models.onnx_check)
    model_max_bytes: int = 50 * 1024 * 1024
    #: ₹ per CPU hour billed for ``sharewise model train`` (ai_studio_computeusage.cost)
    cpu_hour_price: Decimal = Decimal("10.00")
    #: the embedded server archives its WAL into :attr:`wal_archive_dir` (README "Backups and restore")
    wal_archive: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, default_home: Path | None = None) -> Settings:
        """Parse the ``SHAREWISE_*`` variables of ``env``; raise :class:`ConfigError` naming a bad one.

        ``default_home`` is the home when ``SHAREWISE_HOME`` is unset or empty (the CLI passes the
        user's state directory); without either, ConfigError. Paths are taken as written (no ``~``).
        """
        home = _home(env, default_home)
        kafka = env.get("SHAREWISE_KAFKA") or None
        if kafka and not kafka.startswith("kafka://"):
            raise ConfigError(f"SHAREWISE_KAFKA must look like kafka://host:port[,host:port], got {redact(kafka)!r}")
        db_url = env.get("SHAREWISE_DATABASE_URL") or None
        if db_url and not db_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"SHAREWISE_DATABASE_URL must be a postgresql:// URL, got {redact(db_url)!r}")
        level = env.get("SHAREWISE_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"SHAREWISE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
        instruments = env.get("SHAREWISE_INSTRUMENTS")
        return cls(
            home=home,
            database_url=db_url,
            kafka=kafka,
            log_level=level,
            partitions=_int(env, "SHAREWISE_PARTITIONS", 8, minimum=1),
            allowed_lateness_s=_float(env, "SHAREWISE_ALLOWED_LATENESS", 2.0),
            ws_host=env.get("SHAREWISE_WS_HOST", "127.0.0.1"),
            ws_port=_int(env, "SHAREWISE_WS_PORT", 8765, minimum=0),
            jwt_secret=env.get("SHAREWISE_JWT_SECRET") or None,
            secret_key=_secret_key(env),
            instruments_file=Path(instruments) if instruments else None,
            metrics_port=_int(env, "SHAREWISE_METRICS_PORT", 0, minimum=0) if env.get("SHAREWISE_METRICS_PORT") else None,
            metrics_host=env.get("SHAREWISE_METRICS_HOST") or "127.0.0.1",
            max_message_bytes=_int(env, "SHAREWISE_MAX_MESSAGE_BYTES", 1_000_000, minimum=MIN_MESSAGE_BYTES),
            send_timeout_s=max(_float(env, "SHAREWISE_SEND_TIMEOUT", 30.0), 1.0),
            drain_timeout_s=max(_float(env, "SHAREWISE_DRAIN_TIMEOUT", 120.0), 1.0),
            paper_cash=_money(env, "SHAREWISE_PAPER_CASH", Decimal("1000000")),
            kite_api_secret=env.get("SHAREWISE_KITE_API_SECRET") or None,
            postback_port=_int(env, "SHAREWISE_POSTBACK_PORT", 8766, minimum=0),
            reload_s=max(_float(env, "SHAREWISE_RELOAD_S", 30.0), 0.5),
            model_max_bytes=_int(env, "SHAREWISE_MODEL_MAX_BYTES", 50 * 1024 * 1024, minimum=1),
            cpu_hour_price=_money(env, "SHAREWISE_CPU_HOUR_PRICE", Decimal("10.00")),
            wal_archive=_switch(env, "SHAREWISE_WAL_ARCHIVE", True),
        )

    @property
    def kafka_bootstrap(self) -> str | None:
        """``host:port[,host:port]`` for Kafka clients, or ``None`` when the embedded broker is used."""
        return self.kafka.removeprefix("kafka://") if self.kafka else None

    @property
    def pgdata(self) -> Path:
        return self.home / "postgres"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def wal_archive_dir(self) -> Path:
        return self.backups_dir / "wal"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    def describe(self) -> dict[str, str]:
        """Printable view of the settings, with passwords redacted and secrets hidden."""
        return {
            "home": str(self.home),
            "database": redact(self.database_url) if self.database_url else "embedded PostgreSQL",
            "kafka": self.kafka or "embedded Tansu broker",
            "log_level": self.log_level,
            "partitions": str(self.partitions),
            "allowed_lateness_s": str(self.allowed_lateness_s),
            "websocket": f"{self.ws_host}:{self.ws_port}",
            "jwt_secret": "from SHAREWISE_JWT_SECRET" if self.jwt_secret else "generated under HOME",
            "secret_key": "from SHAREWISE_SECRET_KEY" if self.secret_key else "generated under HOME",
            "metrics": "off" if self.metrics_port is None else f"{self.metrics_host}:{self.metrics_port}",
            "kite_postbacks": f"{self.ws_host}:{self.postback_port}" if self.kite_api_secret else "off",
        }


def _home(env: Mapping[str, str], default: Path | None) -> Path:
    raw = env.get("SHAREWISE_HOME")
    if raw:
        return Path(raw)
    if default is None:
        raise ConfigError("SHAREWISE_HOME is not set and no default home was given")
    return default


def _secret_key(env: Mapping[str, str]) -> bytes | None:
    """SHAREWISE_SECRET_KEY as 32 bytes, or None when unset; ConfigError names the variable, never its value."""
    raw = env.get("SHAREWISE_SECRET_KEY")
    return decode_key(raw, source="SHAREWISE_SECRET_KEY") if raw else None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {raw!r}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"on", "true", "1", "yes"}:
        return True
    if raw in {"off", "false", "0", "no"}:
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _money(env: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = Decimal(raw.replace(",", "").replace("_", ""))
    except ArithmeticError:
        raise ConfigError(f"{name} must be an amount in rupees, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name} must be an amount in rupees ≥ 0, got {raw!r}")
    return value.quantize(Decimal("0.01"))
