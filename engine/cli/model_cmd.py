"""``sharewise model import|list|show|export|lease|leases``: users' ML models and the leases of them.

``import`` takes only ONNX files (``engine/models/onnx_check.py``): a pickle or joblib file runs code when
loaded, so it is recognised by its first bytes and refused (exit 2) without being loaded, and so is any
graph with custom operators or external tensors, or one whose input does not fit the features named.
An accepted file is stored as ``$SHAREWISE_HOME/models/<sha256>.onnx`` (``engine/cli/model_store.py``)
and recorded in ``ai_studio_mlmodel`` as COMPLETED; importing it again under the same name finds that row.
``export`` copies a stored file out after checking its bytes still match their hash. ``lease`` records a
lease of a model by its owner to another user (``ai_studio_modellease``).

Like ``sharewise orders``, each command talks to ``SHAREWISE_DATABASE_URL`` when set, else to the embedded
PostgreSQL under ``SHAREWISE_HOME``, migrated first.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from engine.cli.console import clean_errors, out, parse_day
from engine.cli.environment import load_settings
from engine.cli.orders_cmd import _money, _plain, _print_json, _user_id, _when
from engine.cli.runtime import with_database
from engine.errors import ConfigError
from engine.models.runtime import DEFAULT_LABELS  # what a classifier's labels mean when --labels is not given

model_app = typer.Typer(help="ML models (ONNX only): import, list, show, export; lease them to other users.",
                        no_args_is_help=True)

MODEL_TYPES = ("CLASSIFICATION", "REGRESSION")
SIDES = ("BUY", "SELL")


@clean_errors
def import_model(
    file: Path = typer.Argument(..., metavar="FILE.onnx", help="The ONNX model file (pickle/joblib are refused)."),
    owner: str = typer.Option(..., "--owner", help="Email of the user who owns the model."),
    name: str = typer.Option(..., "--name", help="The model's name."),
    features: str = typer.Option(..., "--features",
                                 help="Input columns in order, comma separated: close, volume, rsi_14, ema(50), "
                                      "macd(12,26,9).hist …"),
    model_type: str = typer.Option("CLASSIFICATION", "--type", help="CLASSIFICATION or REGRESSION."),
    algorithm: str = typer.Option(None, "--algorithm", help="e.g. RANDOM_FOREST (informative)."),
    threshold: float = typer.Option(None, "--threshold",
                                    help="CLASSIFICATION: the least probability to act on (0-1, optional); "
                                         "REGRESSION: the |value| that makes a signal (required, > 0)."),
    labels: str = typer.Option(None, "--labels",
                               help='JSON mapping labels to BUY/SELL; default {"1": "BUY", "-1": "SELL"}.'),
    description: str = typer.Option(None, "--description", help="Free text."),
    json_out: bool = typer.Option(False, "--json", help="Print {id, name, sha256, size, created}."),
) -> None:
    """Import an ONNX model for a user: checked, stored under HOME by its sha256, recorded as COMPLETED."""
    from db.models import insert_model
    from engine.cli.model_store import relative_path, store_model
    from engine.models import feature_columns, inspect_model

    kind = model_type.upper()
    if kind not in MODEL_TYPES:
        raise ConfigError(f"--type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    if not name.strip():
        raise ConfigError("--name must not be empty")
    hyperparameters = {"threshold": _threshold(kind, threshold), "labels": _labels(labels)}
    columns = feature_columns(features.split(","))
    settings = load_settings()
    data = _read_bounded(file, settings.model_max_bytes)
    info = inspect_model(data, model_type=kind, features=columns, max_bytes=settings.model_max_bytes)
    store_model(settings.home, data)

    async def write(conn: Any) -> tuple[str, bool]:
        owner_id = await _user_id(conn, owner)
        return await insert_model(conn, owner_id=owner_id, name=name.strip(), info=info, features=columns,
                                  model_type=kind, algorithm=algorithm, hyperparameters=hyperparameters,
                                  description=description, file_path=relative_path(info.sha256))

    model_id, created = with_database(settings, write)
    if json_out:
        _print_json({"id": model_id, "name": name.strip(), "sha256": info.sha256, "size": info.size,
                     "created": created})
        return
    how = "imported" if created else "already imported as"
    out.print(f"{how} model {model_id} ({escape(name.strip())}, {kind}, {info.size} bytes, sha256 {info.sha256})",
              soft_wrap=True)


def _read_bounded(file: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing one over ``max_bytes`` before reading it all."""
    from engine.models import ModelRefused

    try:
        with file.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"no file {file}") from None
    except IsADirectoryError:
        raise ConfigError(f"{file} is a directory, not a model file") from None
    except PermissionError:
        raise ConfigError(f"{file} cannot be read (permission denied)") from None
    if len(data) > max_bytes:
        raise ModelRefused(f"the model is over the limit of {max_bytes} bytes (SHAREWISE_MODEL_MAX_BYTES)")
    return data


def _threshold(kind: str, value: float | None) -> float | None:
    if kind == "REGRESSION":
        if value is None or not value > 0:
            raise ConfigError("a REGRESSION model needs --threshold > 0: the |value| that makes a signal")
        return value
    if value is not None and not 0 < value <= 1:
        raise ConfigError(f"--threshold of a CLASSIFICATION model is a probability in (0, 1], got {value}")
    return value


def _labels(text: str | None) -> dict[str, str]:
    if text is None:
        return dict(DEFAULT_LABELS)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--labels is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not doc:
        raise ConfigError('--labels must be a JSON object mapping labels to BUY or SELL, e.g. {"1": "BUY"}')
    for key, side in doc.items():
        if not isinstance(side, str) or side.upper() not in SIDES:
            raise ConfigError(f"--labels maps {key!r} to {side!r}: each label maps to BUY or SELL")
    return {str(k): str(v).upper() for k, v in doc.items()}


@clean_errors
def list_models(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array, one object per model."),
) -> None:
    """Models: id, name, owner, type, algorithm, status, features, size, created."""
    from db.models import list_models as rows_of

    rows = with_database(load_settings(), rows_of)
    if json_out:
        _print_json([_json_model(r) for r in rows])
        return
    if not rows:
        out.print("no models: `sharewise model import` adds one")
        return
    fold = {"overflow": "fold"}
    table = Table(Column("model", **fold), Column("name", **fold), Column("owner", **fold), "type", "algorithm",
                  "status", Column("features", **fold), "bytes", "created (IST)")
    for r in rows:
        table.add_row(r["id"], escape(r["name"]), escape(r["owner_email"] or "-"), r["model_type"],
                      escape(r["algorithm"] or "-"), r["status"] or "-", escape(", ".join(r["features"] or [])),
                      str(r["model_size"] or "-"), _when(r["created_at"]))
    out.print(table)
    out.print(f"{len(rows)} model(s)")


@clean_errors
def show(
    model: str = typer.Argument(..., metavar="ID", help="The model id (`sharewise model list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the model as one JSON object."),
) -> None:
    """One model: its row, with the stored file's path and the graph's input and outputs."""
    row = _model(model)
    if json_out:
        _print_json(_json_model(row))
        return
    config = row["training_config"] or {}
    lines = [
        ("id", row["id"]), ("name", row["name"]), ("owner", row["owner_email"] or "-"),
        ("type", row["model_type"]), ("algorithm", row["algorithm"] or "-"), ("status", row["status"] or "-"),
        ("features", ", ".join(row["features"] or [])), ("hyperparameters", json.dumps(row["hyperparameters"])),
        ("file", row["file_path"] or "-"), ("bytes", str(row["model_size"] or "-")),
        ("sha256", config.get("sha256", "-")), ("input", config.get("input", "-")),
        ("label output", config.get("label_output", "-")),
        ("probability output", f"{config.get('probability_output') or '-'}"
                               + (" (ZipMap)" if config.get("zipmap") else "")),
        ("description", row["description"] or "-"), ("created (IST)", _when(row["created_at"])),
    ]
    table = Table(show_header=False, box=None)
    for key, value in lines:
        table.add_row(f"[bold]{key}[/]", escape(str(value)))
    out.print(table)


@clean_errors
def export(
    model: str = typer.Argument(..., metavar="ID", help="The model id (`sharewise model list`)."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the ONNX file."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Copy a stored model out, after checking its bytes still match the sha256 in its name."""
    from engine.cli.model_store import read_model

    if out_file.exists() and not force:
        raise ConfigError(f"{out_file} exists: pass --force to overwrite it")
    row = _model(model)
    data = read_model(load_settings().home, row["file_path"])
    target = out_file.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    out.print(f"exported model {row['id']} ({escape(row['name'])}) to {escape(str(out_file))}, {len(data)} bytes",
              soft_wrap=True)


def _model(model: str) -> dict[str, Any]:
    from db.models import model_row

    ident = _uuid(model, "a model id")
    row = with_database(load_settings(), lambda conn: model_row(conn, ident))
    if row is None:
        raise ConfigError(f"no model {ident}")
    return row


def _uuid(text: str, what: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"{what} is a UUID, got {text!r}") from None


def _json_model(row: dict[str, Any]) -> dict[str, Any]:
    from db.models import MODEL_KEYS

    return {k: _plain(row[k]) for k in MODEL_KEYS}


@clean_errors
def lease(
    model: str = typer.Argument(..., metavar="MODEL_ID", help="The model id (`sharewise model list`)."),
    to: str = typer.Option(..., "--to", help="Email of the user leasing the model."),
    start: str = typer.Option(..., "--start", help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last day, YYYY-MM-DD."),
    price: str = typer.Option(..., "--price", help="Price in ₹ (two decimals)."),
    lease_type: str = typer.Option("MONTHLY", "--lease-type", help="MONTHLY, QUARTERLY or ANNUAL."),
    performance_fee: str = typer.Option("0", "--performance-fee", help="Share of profits, percent (0-100)."),
    json_out: bool = typer.Option(False, "--json", help="Print {id, model_id, lessee, start, end, price}."),
) -> None:
    """Lease a model to another user; the lessor is the model's owner."""
    from db.models import insert_lease

    ident = _uuid(model, "a model id")
    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    amount = _decimal(price, "--price", places=2)
    fee = _decimal(performance_fee, "--performance-fee", places=2)

    async def write(conn: Any) -> str:
        lessee_id = await _user_id(conn, to)
        return await insert_lease(conn, model_id=ident, lessee_id=lessee_id, lease_type=lease_type.upper(),
                                  price=amount, start=first, end=last, performance_fee=fee)

    lease_id = with_database(load_settings(), write)
    if json_out:
        _print_json({"id": lease_id, "model_id": ident, "lessee": to, "lease_type": lease_type.upper(),
                     "start": first.isoformat(), "end": last.isoformat(), "price": str(amount)})
        return
    out.print(f"leased model {ident} to {escape(to)} from {first} to {last} for ₹{_money(amount)}: lease {lease_id}",
              soft_wrap=True)


def _decimal(text: str, flag: str, *, places: int) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"{flag} must be a number, got {text!r}") from None
    if not value.is_finite() or value != value.quantize(Decimal(1).scaleb(-places)):
        raise ConfigError(f"{flag} must be a finite number with at most {places} decimals, got {text!r}")
    return value


@clean_errors
def leases(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array, one object per lease."),
) -> None:
    """Leases: model, lessor, lessee, type, price, period, active, signals generated, usage."""
    from db.models import LEASE_KEYS, list_leases

    rows = with_database(load_settings(), list_leases)
    if json_out:
        _print_json([{k: _plain(r[k]) for k in LEASE_KEYS} for r in rows])  # dates as YYYY-MM-DD
        return
    if not rows:
        out.print("no leases: `sharewise model lease` adds one")
        return
    fold = {"overflow": "fold"}
    table = Table(Column("lease", **fold), Column("model", **fold), Column("lessor", **fold),
                  Column("lessee", **fold), "type", "price (₹)", "fee %", "start", "end", "active", "signals",
                  Column("usage", **fold))
    for r in rows:
        table.add_row(r["id"], escape(f"{r['model_name'] or '-'} ({r['model_id']})"), escape(r["lessor_email"] or "-"),
                      escape(r["lessee_email"] or "-"), r["lease_type"] or "-", _money(r["price"]),
                      str(r["performance_fee_percentage"]), str(r["start_date"]), str(r["end_date"]),
                      "[green]yes[/]" if r["is_active"] else "[yellow]no[/]", str(r["total_signals_generated"] or 0),
                      escape(json.dumps(r["usage_stats"] or {})))
    out.print(table)
    out.print(f"{len(rows)} lease(s)")


def register(app: typer.Typer) -> None:
    model_app.command("import")(import_model)
    model_app.command("list")(list_models)
    model_app.command("show")(show)
    model_app.command("export")(export)
    model_app.command("lease")(lease)
    model_app.command("leases")(leases)
    from engine.cli.model_train_cmd import train_model  # here, not at the top: that module imports this one
    model_app.command("train")(train_model)
    app.add_typer(model_app, name="model")
