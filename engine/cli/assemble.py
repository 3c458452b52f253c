"""Wiring the engine from its parts: schema, topics, active strategies, the worker. Used by ``up`` and ``worker``."""

from __future__ import annotations

import gc
from pathlib import Path

import logging
from typing import Any

from engine.cli.files import load_instruments
from engine.instruments import InstrumentRegistry
from engine.pipeline import SignalPipeline
from engine.settings import Settings
from engine.strategy.deployments import InvalidStrategyRow, deployments_from_rows
from engine.strategy.runner import Deployment, StrategyRunner

log = logging.getLogger("sharewise")

_ACTIVE_STRATEGIES = (
    "SELECT id, user_id, name, strategy_type, parameters, entry_conditions, exit_conditions, risk_management,"
    " is_active FROM strategies_strategy WHERE is_active ORDER BY created_at, id"
)
_MODELS = (
    "SELECT id::text AS id, user_id::text AS user_id, name, model_type, features, hyperparameters, file_path"
    " FROM ai_studio_mlmodel WHERE id = ANY($1::uuid[])"
)
_LEASES = (
    "SELECT id::text AS id, model_id::text AS model_id, lessee_id::text AS lessee_id, start_date, end_date,"
    " coalesce(is_active, TRUE) AS is_active FROM ai_studio_modellease WHERE model_id = ANY($1::uuid[])"
)


async def prepare(settings: Settings, dsn: str, bootstrap: str) -> list[str]:
    """Migrate the schema and create the engine's topics; return the migrations applied."""
    from db.migrate import migrate
    from streams.admin import ensure_topics
    from streams.topics import engine_topics

    applied = await migrate(dsn)
    await ensure_topics(bootstrap, engine_topics(settings.partitions))
    return applied


async def active_deployments(dsn: str, *, home: Path | None = None,
                             log_errors: bool = True) -> tuple[list[Deployment], list[InvalidStrategyRow]]:
    """The active strategies of every user, ready to run; invalid rows come back as errors. ``home``: where
    ``sharewise model import`` stored the model files (``SHAREWISE_HOME``), for ML rows."""
    from db.connect import connect

    conn = await connect(dsn)
    try:
        rows = [dict(r) for r in await conn.fetch(_ACTIVE_STRATEGIES)]
        for row in rows:
            row["id"], row["user_id"] = str(row["id"]), str(row["user_id"]) if row["user_id"] else None
        models = await model_catalog(conn, rows, home)
    finally:
        await conn.close()
    errors: list[InvalidStrategyRow] = []
    deployments = deployments_from_rows(rows, errors, models)
    for err in errors if log_errors else ():
        log.warning("strategy row skipped: %s", err)
    return deployments, errors


async def keep_deployments_fresh(worker: Any, dsn: str, interval: float, home: Path | None = None) -> None:
    """Every ``interval`` seconds, read the active strategy rows, models and leases again and make the worker run
    exactly those (EngineWorker.reload): a row or lease added, changed or ended takes effect without a restart.
    A database outage skips a round; anything else stops the worker (it fails loudly)."""
    import asyncio

    from db.connect import retryable

    seen = {(d.key, d.revision) for d in worker.pipeline.runner.deployments}
    said: set[str] = set()
    while not worker.failed.is_set():
        await asyncio.sleep(interval)
        try:
            deployments, errors = await active_deployments(dsn, home=home, log_errors=False)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not retryable(exc):
                worker.latch.trip("strategy reload", exc)
                return
            log.warning("cannot read the strategy rows (%s); the running ones go on", exc)
            continue
        for err in errors:
            if str(err) not in said:
                log.warning("strategy row skipped: %s", err)
        said = {str(err) for err in errors}
        try:
            await refresh_usage(dsn)  # at least once a minute while leases run (docs/models.md, "Usage")
        except Exception as exc:  # noqa: BLE001 - classified below
            if not retryable(exc):
                worker.latch.trip("lease usage", exc)
                return
            log.warning("cannot refresh the leases' usage (%s); next round", exc)
        now = {(d.key, d.revision) for d in deployments}
        if now != seen:
            try:
                done = await worker.reload(deployments)
            except Exception as exc:  # noqa: BLE001 - a reload that fails half-way must stop the worker
                worker.latch.trip("strategy reload", exc)
                return
            log.info("strategies reloaded (%s): %d active, %d added or changed, %d removed", done, len(deployments),
                     len(now - seen), len(seen - now))
            seen = now


async def refresh_usage(dsn: str) -> int:
    """Recount every lease's usage from the signals PostgreSQL holds (db.model_usage); return leases changed."""
    from db.connect import connect
    from db.model_usage import refresh_lease_usage

    conn = await connect(dsn)
    try:
        return await refresh_lease_usage(conn)
    finally:
        await conn.close()


async def model_catalog(conn: Any, rows: list[dict[str, Any]], home: Path | None = None) -> Any:
    """The models the active ML rows name, loaded (file read, sha256 checked, onnxruntime session), and their
    leases (engine.models.runtime.ModelCatalog). A model that cannot be loaded is an error of the rows naming it."""
    import uuid

    import orjson

    from engine.cli.model_store import read_model
    from engine.errors import ConfigError
    from engine.models.runtime import DEFAULT_LABELS, Lease, ModelCatalog, ModelMeta, ModelRuntime

    wanted = set()
    for row in rows:
        if str(row.get("strategy_type") or "").upper() != "ML":
            continue
        params = row.get("parameters")
        params = orjson.loads(params) if isinstance(params, (str, bytes)) else params
        try:
            wanted.add(str(uuid.UUID(str((params or {}).get("model")))))
        except (ValueError, AttributeError):
            continue  # the loader names the bad parameters.model
    catalog = ModelCatalog()
    if not wanted:
        return catalog
    for m in await conn.fetch(_MODELS, sorted(wanted)):
        hyper = _json_value(m["hyperparameters"]) or {}
        path = Path(m["file_path"] or "")  # models/<sha256>.onnx under SHAREWISE_HOME
        meta = ModelMeta(m["id"], m["user_id"], m["name"], path.stem, str(m["model_type"]).upper(),
                         tuple(_json_value(m["features"]) or ()), hyper.get("threshold"),
                         dict(hyper.get("labels") or DEFAULT_LABELS))
        try:
            runtime = _RUNTIMES.get((meta.id, meta.sha256))
            if runtime is None or runtime.meta != meta:
                data = read_model(home, str(path)) if home is not None else path.read_bytes()
                runtime = _RUNTIMES[(meta.id, meta.sha256)] = ModelRuntime(meta, data)
            catalog.models[m["id"]] = (meta, runtime)
        except OSError as exc:
            catalog.errors[m["id"]] = f"its file {path} cannot be read ({exc.strerror or exc})"
        except ConfigError as exc:
            catalog.errors[m["id"]] = str(exc)
    catalog.leases = [Lease(r["id"], r["model_id"], r["lessee_id"], r["start_date"], r["end_date"], r["is_active"])
                      for r in await conn.fetch(_LEASES, sorted(wanted))]
    return catalog


#: loaded models by (id, sha256): every reload's deployments of a model share one session (one run per batch)
_RUNTIMES: dict[tuple[str, str], Any] = {}


def _json_value(value: Any) -> Any:
    import orjson

    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def tune_gc() -> None:
    """For a long-running engine process, once started: what start-up allocated leaves the collector's sight
    (``gc.freeze``) and young objects are collected less often. The order stage keeps large, long-lived books,
    and the default thresholds made it spend a third of its time in the collector (benchmarks/orders.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def make_worker(settings: Settings, bootstrap: str, dsn: str, deployments: list[Deployment], **kw: Any) -> Any:
    """An :class:`streams.worker.EngineWorker` running ``deployments`` on the configured instruments, writing its
    outputs to PostgreSQL (sinks.rows) and its checkpoints too (db.checkpoints)."""
    from db.checkpoints import PostgresCheckpointStore
    from sinks.rows import output_sinks
    from streams.worker import EngineWorker

    registry: InstrumentRegistry = load_instruments(settings)

    def make_pipeline(chosen: list[Deployment] | None = None) -> SignalPipeline:
        runner = StrategyRunner(deployments if chosen is None else chosen)
        return SignalPipeline(registry, runner, lateness_s=settings.allowed_lateness_s)

    kw.setdefault("brokers", broker_accounts(settings, dsn))
    return EngineWorker(settings, bootstrap, dsn, registry, make_pipeline, sinks=output_sinks(dsn),
                        checkpoints=PostgresCheckpointStore(dsn), **kw)


#: why an account's credentials cannot be used -> the rejection reason of its orders (docs/orders.md)
_ACCOUNT_REASONS = {"token_expired": "broker_token_expired", "inactive": "broker_account_inactive",
                    "no_token": "broker_account_inactive"}


def broker_accounts(settings: Settings, dsn: str) -> Any:
    """The order router's ``open_account``: an account's adapter (sinks.brokers) from its sealed credentials
    (db.broker_accounts, key of engine/cli/secret_key.py) and the broker identifiers of our instruments.
    An account that cannot trade raises :class:`engine.errors.AccountUnavailable` with the rejection reason;
    a database outage is waited out."""
    import asyncio

    from db.broker_accounts import account_credentials
    from db.connect import connect, retryable
    from engine.cli.secret_key import load_secret_box
    from engine.credentials import CredentialsUnavailable, SecretUnreadable
    from engine.errors import AccountUnavailable
    from sinks.brokers import BrokerRejected, adapter_for

    async def open_account(account_id: str) -> Any:
        while True:
            try:
                conn = await connect(dsn)
                try:
                    creds = await account_credentials(conn, account_id, load_secret_box(settings))
                    instruments = await _instrument_ids(conn)
                finally:
                    await conn.close()
                return adapter_for(creds, instruments=instruments)
            except CredentialsUnavailable as exc:
                raise AccountUnavailable(_ACCOUNT_REASONS.get(exc.reason, "broker_account_unknown"), str(exc)) from exc
            except SecretUnreadable as exc:
                raise AccountUnavailable("broker_secret_unreadable", str(exc)) from exc
            except BrokerRejected as exc:  # a broker without an adapter
                raise AccountUnavailable("broker_account_unknown", str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - an outage is waited out; anything else stops the worker
                if not retryable(exc):
                    raise
                log.warning("cannot read broker account %s from PostgreSQL (%s); retrying", account_id, exc)
                await asyncio.sleep(1.0)

    return open_account


async def _instrument_ids(conn: Any) -> dict[str, dict[str, str]]:
    """Our symbols' broker identifiers (ISIN, SmartAPI token): the shipped file under ``sharewise instruments load``."""
    from db.instrument_ids import broker_ids

    return await broker_ids(conn)
