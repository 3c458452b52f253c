"""``sharewise db migrate|status|seed-demo``: the platform schema and the demo tenant.

Each command talks to ``SHAREWISE_DATABASE_URL`` when set, else to the embedded
PostgreSQL under ``SHAREWISE_HOME`` (started for the command, stopped after it unless
``sharewise services start`` keeps it running).
"""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from engine.cli.console import clean_errors, out
from engine.cli.environment import load_settings

db_app = typer.Typer(help="Database: apply migrations, show their status, seed the demo tenant.", no_args_is_help=True)


@db_app.command("migrate")
@clean_errors
def migrate_cmd() -> None:
    """Apply pending migrations in order (each in a transaction, under an advisory lock)."""
    from db.embedded import resolve_dsn
    from db.migrate import migrate

    applied = asyncio.run(migrate(resolve_dsn(load_settings())))
    for name in applied:
        out.print(f"applied {name}")
    out.print(f"{len(applied)} migration(s) applied" if applied else "nothing to apply: schema up to date")


@db_app.command("status")
@clean_errors
def status_cmd() -> None:
    """Show every migration as applied (with its time) or pending."""
    from db.embedded import resolve_dsn
    from db.migrate import migration_status

    rows = asyncio.run(migration_status(resolve_dsn(load_settings())))
    table = Table("migration", "state", "applied at")
    for name, applied_at in rows:
        state = "applied" if applied_at else "[yellow]pending[/]"
        table.add_row(name, state, applied_at.isoformat(timespec="seconds") if applied_at else "-")
    out.print(table)
    pending = sum(1 for _, applied_at in rows if applied_at is None)
    out.print(f"{len(rows) - pending} applied, {pending} pending")


@db_app.command("seed-demo")
@clean_errors
def seed_demo_cmd() -> None:
    """Create the demo tenant (demo@sharewise.local) where missing, its paper portfolio holding SHAREWISE_PAPER_CASH."""
    from db.embedded import resolve_dsn
    from db.seed_demo import DEMO_EMAIL, seed_demo

    settings = load_settings()
    result = asyncio.run(seed_demo(resolve_dsn(settings), paper_cash=settings.paper_cash))
    for label in result["created"]:
        out.print(f"created {label}")
    for label in result["updated"]:
        out.print(f"updated {label}")
    if not result["created"] and not result["updated"]:
        out.print(f"demo tenant {DEMO_EMAIL} already exists: nothing created")
    out.print(f"user id: {result['user_id']}")
    out.print(f"paper broker account id: {result['paper_account_id']}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


# importing them registers `db retention` and `db backup|backups|restore|schedule` on db_app
from engine.cli import db_backup_cmd, db_retention_cmd  # noqa: E402,F401
