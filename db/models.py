"""Leased ML models (``ai_studio_mlmodel``) and their leases (``ai_studio_modellease``).

* :func:`insert_model` — a model imported by its owner, COMPLETED; importing the same file under the same
  name again finds the row instead of adding one, so a retried import is harmless;
* :func:`model_row`, :func:`list_models` — what ``sharewise model show|list`` print;
* :func:`insert_lease` — a lease of a model to another user; the lessor is always the model's owner, so
  nobody can lease out a model that is not theirs;
* :func:`list_leases` — every lease with its model's name and both users' emails.

JSONB columns are written as text cast to ``jsonb`` and decoded on the way out (the connections carry no
JSON codec). All SQL is parameterised; functions that write run in a transaction of their own.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from engine.errors import ConfigError

if TYPE_CHECKING:  # the checks themselves (and onnx) are the CLI's business
    from engine.models import ModelInfo

LEASE_TYPES = ("MONTHLY", "QUARTERLY", "ANNUAL")
#: statuses of a model that may be leased
LEASABLE = ("COMPLETED", "PUBLISHED")
#: the keys of a :func:`model_row` / :func:`list_models` row, in order
MODEL_KEYS = ("id", "user_id", "owner_email", "name", "description", "model_type", "algorithm", "features",
              "hyperparameters", "training_config", "status", "file_path", "model_size", "is_published",
              "created_at", "updated_at")
#: the keys of a :func:`list_leases` row, in order
LEASE_KEYS = ("id", "model_id", "model_name", "lessor_email", "lessee_email", "lease_type", "price",
              "performance_fee_percentage", "start_date", "end_date", "is_active", "auto_renew",
              "total_signals_generated", "total_profit_shared", "usage_stats", "created_at")
_JSON_COLUMNS = ("features", "hyperparameters", "training_config", "usage_stats")

_MODEL_SELECT = """
SELECT m.id, m.user_id, u.email AS owner_email, m.name, m.description, m.model_type, m.algorithm, m.features,
       m.hyperparameters, m.training_config, m.status, m.file_path, m.model_size, m.is_published, m.created_at,
       m.updated_at
FROM public.ai_studio_mlmodel m LEFT JOIN public.users_customuser u ON u.id = m.user_id
"""


async def insert_model(conn: asyncpg.Connection, *, owner_id: str, name: str, info: ModelInfo, features: list[str],
                       model_type: str, algorithm: str | None, hyperparameters: dict[str, Any],
                       description: str | None, file_path: str) -> tuple[str, bool]:
    """(id, created) of the owner's model ``name`` stored at ``file_path`` (named by its sha256).

    The same owner, name and file give the existing row's id and ``created`` False; nothing is written.
    A lock per owner and name serialises two imports of the same model running at once.
    """
    config = onnx_config(info)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"mlmodel:{owner_id}:{name}")
        found = await conn.fetchval(
            "SELECT id FROM public.ai_studio_mlmodel WHERE user_id = $1 AND name = $2 AND file_path = $3"
            " ORDER BY created_at LIMIT 1", uuid.UUID(owner_id), name, file_path)
        if found is not None:
            return str(found), False
        model_id = await conn.fetchval(
            "INSERT INTO public.ai_studio_mlmodel (user_id, name, description, model_type, algorithm, features,"
            " hyperparameters, training_config, status, file_path, model_size)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, 'COMPLETED', $9, $10) RETURNING id",
            uuid.UUID(owner_id), name, description, model_type, algorithm, _json(features), _json(hyperparameters),
            _json(config), file_path, info.size)
    return str(model_id), True


def onnx_config(info: ModelInfo) -> dict[str, Any]:
    """What ``training_config`` holds about a stored ONNX file: its sha256 and how to call the graph.

    ``sharewise model import`` stores exactly this; ``sharewise model train`` stores it too, plus how the
    model was trained, so ``model show`` and the runtime read both kinds of model the same way.
    """
    return {"format": "onnx", "sha256": info.sha256, "input": info.input_name, "label_output": info.label_output,
            "probability_output": info.probability_output, "zipmap": info.zipmap, "classes": info.classes}


async def model_row(conn: asyncpg.Connection, model_id: str) -> dict[str, Any] | None:
    """The model (:data:`MODEL_KEYS`) with its owner's email, or None."""
    row = await conn.fetchrow(_MODEL_SELECT + " WHERE m.id = $1", uuid.UUID(model_id))
    return None if row is None else _decoded(row)


async def list_models(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every model (:data:`MODEL_KEYS`), oldest first."""
    return [_decoded(r) for r in await conn.fetch(_MODEL_SELECT + " ORDER BY m.created_at, m.id")]


async def insert_lease(conn: asyncpg.Connection, *, model_id: str, lessee_id: str, lease_type: str, price: Decimal,
                       start: date, end: date, performance_fee: Decimal = Decimal(0),
                       auto_renew: bool = False) -> str:
    """The id of a new lease of ``model_id`` to ``lessee_id``, leased by the model's owner.

    Raises ConfigError for an unknown model, one not COMPLETED or PUBLISHED, a lease to the owner, an end
    before the start, a negative price or a performance fee outside 0..100 %.
    """
    if lease_type not in LEASE_TYPES:
        raise ConfigError(f"lease type must be one of {', '.join(LEASE_TYPES)}, got {lease_type!r}")
    if end < start:
        raise ConfigError(f"a lease cannot end ({end}) before it starts ({start})")
    if price < 0:
        raise ConfigError(f"a lease price cannot be negative, got {price}")
    if not Decimal(0) <= performance_fee <= Decimal(100):
        raise ConfigError(f"the performance fee is a percentage from 0 to 100, got {performance_fee}")
    async with conn.transaction():
        model = await conn.fetchrow("SELECT user_id, status FROM public.ai_studio_mlmodel WHERE id = $1 FOR SHARE",
                                    uuid.UUID(model_id))
        if model is None:
            raise ConfigError(f"no model {model_id}")
        if model["status"] not in LEASABLE:
            raise ConfigError(f"model {model_id} is {model['status']}: only a COMPLETED or PUBLISHED model is leased")
        if model["user_id"] is None:
            raise ConfigError(f"model {model_id} has no owner to lease it")
        if str(model["user_id"]) == lessee_id:
            raise ConfigError(f"model {model_id} belongs to that user: an owner does not lease their own model")
        lease_id = await conn.fetchval(
            "INSERT INTO public.ai_studio_modellease (model_id, lessor_id, lessee_id, lease_type, price,"
            " performance_fee_percentage, start_date, end_date, is_active, auto_renew)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE, $9) RETURNING id",
            uuid.UUID(model_id), model["user_id"], uuid.UUID(lessee_id), lease_type, price, performance_fee, start,
            end, auto_renew)
    return str(lease_id)


async def list_leases(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every lease (:data:`LEASE_KEYS`), oldest first."""
    rows = await conn.fetch(
        "SELECT l.id, l.model_id, m.name AS model_name, lessor.email AS lessor_email, lessee.email AS lessee_email,"
        " l.lease_type, l.price, l.performance_fee_percentage, l.start_date, l.end_date, l.is_active, l.auto_renew,"
        " l.total_signals_generated, l.total_profit_shared, l.usage_stats, l.created_at"
        " FROM public.ai_studio_modellease l"
        " LEFT JOIN public.ai_studio_mlmodel m ON m.id = l.model_id"
        " LEFT JOIN public.users_customuser lessor ON lessor.id = l.lessor_id"
        " LEFT JOIN public.users_customuser lessee ON lessee.id = l.lessee_id"
        " ORDER BY l.created_at, l.id")
    return [_decoded(r) for r in rows]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _decoded(row: asyncpg.Record) -> dict[str, Any]:
    """A row as a dict: ids as strings, JSONB columns decoded."""
    doc = dict(row)
    for key, value in doc.items():
        if isinstance(value, uuid.UUID):
            doc[key] = str(value)
        elif key in _JSON_COLUMNS and isinstance(value, str):
            doc[key] = orjson.loads(value)
    return doc
