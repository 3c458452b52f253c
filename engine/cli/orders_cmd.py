"""``sharewise orders``, ``positions`` and ``risk halt|reduce|resume|status``: paper trading as a trader sees it.

Each command talks to ``SHAREWISE_DATABASE_URL`` when set, else to the embedded PostgreSQL
under ``SHAREWISE_HOME`` (started for the command and stopped after it unless ``sharewise
services start`` keeps it running), migrated first. Times are shown in market time (IST).

``risk halt|reduce|resume`` persists the hand-set trading state (``engine.trading_state``), which
the order stage loads when it starts, and then tells a running engine: through Kafka
(``SHAREWISE_KAFKA``, else the embedded broker kept by ``sharewise services start`` or owned by a
running ``up``/``worker``) it sends a risk command to ``orders.inputs`` (docs/orders.md). With no
broker running, or one the engine has not used yet, nothing is sent and the command says the
engine will load the state when it starts: the state is saved either way (exit 0).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from engine.cli.console import clean_errors, err, out
from engine.cli.environment import load_settings
from engine.cli.runtime import with_database
from engine.domain import IST
from engine.errors import ConfigError, TransientError
from engine.settings import Settings

risk_app = typer.Typer(help="The trading state set by hand: halt, reduce (exits only), resume; status.",
                       no_args_is_help=True)

STATUSES = ("PENDING", "OPEN", "COMPLETE", "CANCELLED", "REJECTED")
#: risk subcommand -> the trading state it sets
RISK_STATES = {"halt": "HALTED", "reduce": "REDUCING", "resume": "ACTIVE"}
STATE_STYLE = {"ACTIVE": "green", "REDUCING": "yellow", "HALTED": "bold red"}
STATUS_STYLE = {"PENDING": "cyan", "OPEN": "cyan", "COMPLETE": "green", "CANCELLED": "yellow", "REJECTED": "red"}


# --- orders ------------------------------------------------------------------------------------


@clean_errors
def orders(
    user: str = typer.Option(None, "--user", help="Only this user's orders (email)."),
    status: str = typer.Option(None, "--status", help="Only orders in this status: " + ", ".join(STATUSES) + "."),
    limit: int = typer.Option(100, "-n", "--limit", min=1, help="How many of the newest to show."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array of the trading_order rows."),
) -> None:
    """Orders, newest first: time, user, symbol, side, type, quantity, price or trigger, status, fills, charges."""
    from db.trading import order_rows

    wanted = _status(status)

    async def read(conn: Any) -> list[dict[str, Any]]:
        user_id = await _user_id(conn, user) if user else None
        return await order_rows(conn, user_id=user_id, status=wanted, limit=limit)

    rows = with_database(load_settings(), read)
    if json_out:
        _print_json([{k: _plain(v) for k, v in row.items()} for row in rows])
        return
    if not rows:
        out.print("no orders" + (f" of {user}" if user else "") + (f" in status {wanted}" if wanted else ""))
        return
    table = Table("time (IST)", "user", "symbol", "side", "type", "qty", "price / trigger", "status", "filled",
                  "avg price", "fees", "taxes", "rejection")
    for r in rows:
        style = STATUS_STYLE.get(r["status"] or "", "")
        table.add_row(
            _when(r["order_timestamp"] or r["created_at"]), escape(r["email"] or str(r["user_id"])), r["symbol"],
            r["transaction_type"], r["order_type"], str(r["quantity"]), _price_or_trigger(r),
            f"[{style}]{r['status']}[/]" if style else str(r["status"]), str(r["filled_quantity"] or 0),
            _money(r["average_price"]), _money(r["fees"]), _money(r["taxes"]), escape(r["rejection_reason"] or ""),
        )  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} order(s), newest first")


def _status(status: str | None) -> str | None:
    if status is None:
        return None
    if status.upper() not in STATUSES:
        raise ConfigError(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status.upper()


def _price_or_trigger(row: dict[str, Any]) -> str:
    parts = []
    if row["price"] is not None:
        parts.append(_money(row["price"]))
    if row["trigger_price"] is not None:
        parts.append(f"trigger {_money(row['trigger_price'])}")
    return " / ".join(parts) or "market"


# --- positions ---------------------------------------------------------------------------------


@clean_errors
def positions(
    user: str = typer.Option(None, "--user", help="Only this user (email)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array, one object per user."),
) -> None:
    """Per user: holdings (quantity, average, current, unrealised P&L), the paper portfolio and the trading state."""
    from db.trading import books

    async def read(conn: Any) -> list[Any]:
        user_id = await _user_id(conn, user) if user else None
        return await books(conn, user_id=user_id)

    found = with_database(load_settings(), read)
    if json_out:
        _print_json([{
            "user_id": b.user_id, "email": b.email, "trading_state": b.trading_state, "state_reason": b.state_reason,
            "portfolio": None if b.portfolio is None else {k: _plain(v) for k, v in b.portfolio.items()},
            "holdings": [{k: _plain(v) for k, v in h.items()} for h in b.holdings],
        } for b in found])  # fmt: skip
        return
    if not found:
        out.print("no paper portfolios or trading states yet")
        return
    for b in found:
        _print_book(b)


def _print_book(b: Any) -> None:
    state = f"[{STATE_STYLE.get(b.trading_state, '')}]{b.trading_state}[/]"
    line = f"[bold]{escape(b.email)}[/] ({b.user_id}): trading state {state}"
    if b.state_reason:
        line += f" ({escape(b.state_reason)})"
    if b.state is not None and b.effective_state is not None and b.state != b.effective_state:
        line += f"; set by hand: {b.state}" + (f" ({escape(b.reason)})" if b.reason else "")
    out.print(line, soft_wrap=True)
    p = b.portfolio
    if p is None:
        out.print("  no paper portfolio yet")
    else:
        booked = f"as of {_when(p['updated_at'])}" if p["updated_at"] else "no book yet"
        out.print(f"  {escape(p['name'] or '')} ({booked}): cash {_money(p['available_cash'])}, invested "
                  f"{_money(p['invested_amount'])}, realised {_money(p['realized_pnl'])}, unrealised "
                  f"{_money(p['unrealized_pnl'])}, total value {_money(p['total_value'])}", soft_wrap=True)
    if b.holdings:
        table = Table("symbol", "qty", "avg price", "current", "unrealised", "price at (IST)")
        for h in b.holdings:
            table.add_row(h["symbol"], str(h["quantity"]), _money(h["average_price"]), _money(h["current_price"]),
                          _money(h["unrealized_pnl"]), _when(h["last_price_update"]))
        out.print(table)
    elif p is not None:
        out.print("  no holdings (flat)")


# --- risk --------------------------------------------------------------------------------------


def _risk_command(name: str, state: str) -> Callable[..., None]:
    @clean_errors
    def command(
        user: str = typer.Option(..., "--user", help="Email of the user."),
        reason: str = typer.Option(None, "--reason", help="Why (shown with the state and in notifications)."),
    ) -> None:
        _set_state(user, state, reason)

    command.__doc__ = {
        "HALTED": "Halt a user's trading: no new orders; the engine closes open positions.",
        "REDUCING": "Let a user only reduce: exits are allowed, entries are rejected.",
        "ACTIVE": "Resume a user's trading (back to ACTIVE).",
    }[state]
    command.__name__ = f"risk_{name}"
    return command


def _set_state(user: str, state: str, reason: str | None) -> None:
    from db.trading import set_manual_state

    settings = load_settings()
    changed_at = datetime.now(timezone.utc)

    async def write(conn: Any) -> str:
        user_id = await _user_id(conn, user)
        await set_manual_state(conn, user_id, state, reason, changed_at)
        return user_id

    user_id = with_database(settings, write)
    why = f" ({escape(reason)})" if reason else ""
    out.print(f"{escape(user)}: trading state [{STATE_STYLE[state]}]{state}[/]{why}, set by hand at "
              f"{_when(changed_at)} IST", soft_wrap=True)
    message = {"kind": "risk", "id": str(uuid.uuid4()), "user_id": user_id, "state": state, "reason": reason,
               "at": changed_at.isoformat()}
    out.print(_tell_engine(settings, message), soft_wrap=True)


def _tell_engine(settings: Settings, message: dict[str, Any]) -> str:
    """Send the risk command to a running engine; say what happened (the state is saved whatever happens)."""
    from engine.cli.runtime import recorded_broker

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # an unreachable broker is reported once, below
    bootstrap = settings.kafka_bootstrap or recorded_broker(settings)
    later = "the engine will load this state when it starts"
    if bootstrap is None:
        return f"no Kafka broker is running: {later}"
    try:
        sent = asyncio.run(_send(bootstrap, message))
    except TransientError as exc:
        err.print(f"[yellow]warning:[/] {exc}", soft_wrap=True)
        return f"the risk command was not sent: {later}"
    if not sent:
        return f"the engine has not run on the broker at {bootstrap} yet (no topic orders.inputs): {later}"
    return f"risk command sent to the engine through {bootstrap} (applied at its partition's watermark)"


async def _send(bootstrap: str, message: dict[str, Any]) -> bool:
    from streams.admin import list_topics
    from streams.commands import send_risk_command
    from streams.topics import ORDERS_INPUTS

    if ORDERS_INPUTS not in await list_topics(bootstrap):
        return False
    await send_risk_command(bootstrap, message)
    return True


@clean_errors
def risk_status(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array, one object per user."),
) -> None:
    """Per user with a trading state: the state set by hand and the effective one of the latest book."""
    from db.trading import trading_states

    rows = with_database(load_settings(), trading_states)
    if json_out:
        keys = ("user_id", "email", "state", "reason", "changed_at", "effective_state", "effective_reason", "as_of")
        _print_json([{k: _plain(row[k]) for k in keys} for row in rows])
        return
    if not rows:
        out.print("no trading states: every user is ACTIVE")
        return
    table = Table("user", "set by hand", "reason", "changed at (IST)", "effective", "reason", "as of (IST)")
    for r in rows:
        effective = r["effective_state"]
        table.add_row(
            escape(r["email"]), f"[{STATE_STYLE[r['state']]}]{r['state']}[/]", escape(r["reason"] or ""),
            _when(r["changed_at"]), f"[{STATE_STYLE[effective]}]{effective}[/]" if effective else "-",
            escape(r["effective_reason"] or ""),
            _when(r["as_of"]),
        )  # fmt: skip
    out.print(table)


# --- shared ------------------------------------------------------------------------------------


async def _user_id(conn: Any, email: str) -> str:
    from db.trading import user_id_by_email

    user_id = await user_id_by_email(conn, email)
    if user_id is None:
        raise ConfigError(f"no user with email {email!r}")
    return user_id



def _plain(value: Any) -> Any:
    """A JSON value: decimals as strings (exact), times as ISO 8601 in IST, ids as strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(IST).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _print_json(doc: Any) -> None:
    print(orjson.dumps(doc).decode())


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def register(app: typer.Typer) -> None:
    app.command("orders")(orders)
    app.command("positions")(positions)
    for name, state in RISK_STATES.items():
        risk_app.command(name)(_risk_command(name, state))
    risk_app.command("status")(risk_status)
    app.add_typer(risk_app, name="risk")
