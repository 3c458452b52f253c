"""Training runs of ``sharewise model train``: rows of ``ai_studio_mlmodel``, ``ai_studio_trainingjob`` and
``ai_studio_computeusage``.

A run is one model row and one job row, written as it goes so another session (or a web page) can watch it:

* :func:`start_training` — the model (TRAINING) and its job (RUNNING, progress 0), in one transaction, so a
  job never exists without its model;
* :func:`record_progress` — the job's progress and the log entries since the last write;
* :func:`finish_training` — model COMPLETED with its file and scores, job COMPLETED at 100 %, and the
  compute used billed as one ``ai_studio_computeusage`` row, all in one transaction: a reader never sees a
  COMPLETED model whose bill is missing;
* :func:`fail_training` — model FAILED and job FAILED or CANCELLED with the reason.

JSONB columns are written as text cast to ``jsonb`` (the connections carry no JSON codec); all SQL is
parameterised.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

async def start_training(conn: asyncpg.Connection, *, owner_id: str, name: str, algorithm: str, features: list[str],
                         hyperparameters: dict[str, Any], job_name: str,
                         first_log: dict[str, Any]) -> tuple[str, str]:
    """(model id, job id) of a new CLASSIFICATION model in TRAINING and its RUNNING job at progress 0."""
    async with conn.transaction():
        model_id = await conn.fetchval(
            "INSERT INTO public.ai_studio_mlmodel (user_id, name, model_type, algorithm, features, hyperparameters,"
            " status) VALUES ($1, $2, 'CLASSIFICATION', $3, $4::jsonb, $5::jsonb, 'TRAINING') RETURNING id",
            uuid.UUID(owner_id), name, algorithm, _json(features), _json(hyperparameters))
        job_id = await conn.fetchval(
            "INSERT INTO public.ai_studio_trainingjob (model_id, user_id, job_name, status, progress, started_at,"
            " logs) VALUES ($1, $2, $3, 'RUNNING', 0, now(), $4::jsonb) RETURNING id",
            model_id, uuid.UUID(owner_id), job_name, _json([first_log]))
    return str(model_id), str(job_id)


async def record_progress(conn: asyncpg.Connection, job_id: str, progress: int, logs: list[dict[str, Any]]) -> None:
    """Set the RUNNING job's progress (never lowering it) and append ``logs`` to its log list."""
    await conn.execute(
        "UPDATE public.ai_studio_trainingjob SET progress = GREATEST(progress, $2), logs = logs || $3::jsonb,"
        " updated_at = now() WHERE id = $1 AND status = 'RUNNING'",
        uuid.UUID(job_id), progress, _json(logs))


async def finish_training(conn: asyncpg.Connection, *, owner_id: str, model_id: str, job_id: str, file_path: str,
                          model_size: int, performance_metrics: dict[str, Any], feature_importance: dict[str, float],
                          backtest_results: dict[str, Any], training_config: dict[str, Any],
                          training_metrics: dict[str, Any], logs: list[dict[str, Any]],
                          resource_usage: dict[str, Any], compute_hours: Decimal, cost: Decimal,
                          usage_date: date) -> str:
    """Mark the model and its job COMPLETED and bill the compute; return the computeusage row's id."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE public.ai_studio_mlmodel SET status = 'COMPLETED', file_path = $2, model_size = $3,"
            " performance_metrics = $4::jsonb, feature_importance = $5::jsonb, backtest_results = $6::jsonb,"
            " training_config = $7::jsonb, updated_at = now() WHERE id = $1",
            uuid.UUID(model_id), file_path, model_size, _json(performance_metrics), _json(feature_importance),
            _json(backtest_results), _json(training_config))
        await conn.execute(
            "UPDATE public.ai_studio_trainingjob SET status = 'COMPLETED', progress = 100, completed_at = now(),"
            " compute_hours = $2, logs = logs || $3::jsonb, training_metrics = $4::jsonb,"
            " validation_metrics = $5::jsonb, resource_usage = $6::jsonb, error_message = NULL, updated_at = now()"
            " WHERE id = $1",
            uuid.UUID(job_id), compute_hours, _json(logs), _json(training_metrics), _json(performance_metrics),
            _json(resource_usage))
        usage_id = await conn.fetchval(
            "INSERT INTO public.ai_studio_computeusage (user_id, training_job_id, usage_date, compute_hours, cost,"
            " resource_type) VALUES ($1, $2, $3, $4, $5, 'CPU') RETURNING id",
            uuid.UUID(owner_id), uuid.UUID(job_id), usage_date, compute_hours, cost)
    return str(usage_id)


async def fail_training(conn: asyncpg.Connection, *, model_id: str, job_id: str, job_status: str, error: str,
                        logs: list[dict[str, Any]], compute_hours: Decimal | None = None) -> None:
    """Mark the model FAILED and the job ``job_status`` (FAILED or CANCELLED) with ``error``.

    Only a job still RUNNING changes: a run that already completed is never turned into a failure.
    """
    if job_status not in ("FAILED", "CANCELLED"):
        raise ValueError(f"a failed job is FAILED or CANCELLED, not {job_status!r}")
    async with conn.transaction():
        changed = await conn.execute(
            "UPDATE public.ai_studio_trainingjob SET status = $2, error_message = $3, completed_at = now(),"
            " logs = logs || $4::jsonb, compute_hours = COALESCE($5, compute_hours), updated_at = now()"
            " WHERE id = $1 AND status = 'RUNNING'",
            uuid.UUID(job_id), job_status, error, _json(logs), compute_hours)
        if changed.endswith(" 1"):
            await conn.execute(
                "UPDATE public.ai_studio_mlmodel SET status = 'FAILED', updated_at = now() WHERE id = $1",
                uuid.UUID(model_id))


def _json(value: Any) -> str:
    """JSON text; NaN and infinities (an undefined ROC AUC) become null, which JSONB accepts."""
    return orjson.dumps(value).decode()
