"""``sharewise broker connect|list|disconnect|orders``: users' live broker accounts, their tokens sealed at rest.

The access token is read from stdin only (``--access-token -``; a terminal is prompted without echo):
a token on the command line shows in ``ps`` and lands in shell history, so any other value is refused
(exit 2) without being repeated. Tokens are sealed with the key of ``engine/cli/secret_key.py``
(``SHAREWISE_SECRET_KEY``, or ``$SHAREWISE_HOME/secrets/secret_key``, generated on first use) before they
reach the database (``db/broker_accounts.py``), and no command prints, logs or returns them: ``list``
shows whether a token is stored and the API key masked. ``disconnect`` makes an account inactive and wipes
its tokens; the row stays, since its orders reference it. Connects and disconnects are logged (without
secrets) to ``$SHAREWISE_HOME/logs/broker.log``. ``orders`` sets the broker's own view of an account's orders of
the day (its order book, read with the account's adapter) beside ours (``trading_order``), matched by tag.

Like ``sharewise orders``, each command talks to ``SHAREWISE_DATABASE_URL`` when set, else to the embedded
PostgreSQL under ``SHAREWISE_HOME``, migrated first.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Sequence, TextIO

import typer
from rich.markup import escape
from rich.table import Column, Table

from engine.cli.console import clean_errors, out
from engine.cli.environment import load_settings
from engine.cli.logs import file_logger
from engine.cli.orders_cmd import _money, _plain, _print_json, _user_id, _when
from engine.cli.runtime import with_database
from engine.credentials import MAX_TOKEN_CHARS
from engine.domain import IST
from engine.errors import AccountUnavailable, ConfigError, EngineError, TransientError
from engine.orders.ids import PAPER_BROKER_ID, order_tag
from engine.ports import BrokerOrder
from engine.settings import Settings

broker_app = typer.Typer(help="Users' live broker accounts (Zerodha, AngelOne, Upstox): connect, list, disconnect, "
                              "orders.",
                         no_args_is_help=True)
log = logging.getLogger("sharewise.broker")

#: the --broker flag (any case) -> brokers_broker.name
BROKER_FLAGS = {"zerodha": "Zerodha", "angelone": "AngelOne", "upstox": "Upstox"}
#: the message refusing a token given on the command line (the value is never repeated)
TOKEN_ON_ARGV = ("--access-token takes only '-': pipe the token on stdin (or type it at the prompt). A token on "
                 "the command line shows in `ps` and stays in shell history: treat that one as exposed and "
                 "create a new one")
#: what `broker list --json` gives per account
LIST_KEYS = ("id", "user_id", "email", "broker", "client_code", "api_key", "is_active", "has_token",
             "has_refresh_token", "token_expires_at", "last_sync", "created_at", "updated_at")


@clean_errors
def connect(
    user: str = typer.Option(..., "--user", help="Email of the user the account belongs to."),
    broker: str = typer.Option(..., "--broker", help="zerodha, angelone or upstox."),
    api_key: str = typer.Option(..., "--api-key",
                                help="The app's API key at the broker (stored in clear; shown masked)."),
    access_token: str = typer.Option(..., "--access-token", metavar="-",
                                     help="Only '-': the token is read from stdin (argv shows in `ps`)."),
    client_code: str = typer.Option(None, "--client-code", help="The user's client code (user id) at the broker."),
    json_out: bool = typer.Option(False, "--json", help="Print {account_id, user, broker, client_code, created}."),
) -> None:
    """Connect (or reconnect) a user's account at a broker: the access token from stdin, sealed at rest."""
    from db.broker_accounts import broker_id_by_name, connect_account
    from engine.cli.secret_key import load_secret_box

    if access_token != "-":
        raise ConfigError(TOKEN_ON_ARGV)
    name = _broker_name(broker)
    token = read_token(sys.stdin)
    settings = load_settings()
    box = load_secret_box(settings)

    async def write(conn: Any) -> Any:
        user_id = await _user_id(conn, user)
        broker_id = await broker_id_by_name(conn, name)
        if broker_id is None:
            raise ConfigError(f"no broker row named {name}: `sharewise db seed-demo` creates the "
                              f"Zerodha, AngelOne and Upstox rows")
        return await connect_account(conn, box, user_id=user_id, broker_id=broker_id, api_key=api_key,
                                     access_token=token, client_code=client_code)

    done = with_database(settings, write)
    audit_log(settings).info("broker account %s %s: user %s, broker %s, client code %s, token sealed with key %s",
             done.account_id, "created" if done.created else "reconnected", user, name, client_code, box.key_id)
    if json_out:
        _print_json({"account_id": done.account_id, "user": user, "broker": name, "client_code": client_code,
                     "created": done.created})
        return
    how = "connected" if done.created else "reconnected"
    out.print(f"{how} {name} account {done.account_id} of {escape(user)} (token sealed at rest)", soft_wrap=True)


def read_token(stdin: TextIO) -> str:
    """The access token: a prompt without echo on a terminal, else stdin (one line, no spaces).

    Raises ConfigError for an empty token, one with inner whitespace or one longer than
    :data:`engine.credentials.MAX_TOKEN_CHARS`; no message repeats what was read.
    """
    text = getpass.getpass("access token (not echoed): ") if stdin.isatty() else stdin.read(MAX_TOKEN_CHARS + 2)
    token = text.strip()
    if not token:
        raise ConfigError("no access token on stdin: pipe it in, e.g. `… --access-token - < token.txt`")
    if len(token) > MAX_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(f"the access token on stdin must be one line without spaces, at most "
                          f"{MAX_TOKEN_CHARS} characters")
    return token


def _broker_name(flag: str) -> str:
    try:
        return BROKER_FLAGS[flag.lower()]
    except KeyError:
        raise ConfigError(f"--broker must be one of {', '.join(BROKER_FLAGS)}, got {flag!r}") from None


@clean_errors
def list_accounts(
    user: str = typer.Option(None, "--user", help="Only this user's accounts (email)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON array, one object per account."),
) -> None:
    """Accounts: id, user, broker, client code, API key (masked), active, token stored or not, expiry, last sync."""
    from db.broker_accounts import account_rows

    async def read(conn: Any) -> list[dict[str, Any]]:
        user_id = await _user_id(conn, user) if user else None
        return await account_rows(conn, user_id=user_id)

    rows = with_database(load_settings(), read)
    if json_out:
        _print_json([_listed(r) for r in rows])
        return
    if not rows:
        out.print("no broker accounts" + (f" of {escape(user)}" if user else ""))
        return
    fold = {"overflow": "fold"}  # an id or email is shown whole, over two lines in a narrow terminal
    table = Table(Column("account", **fold), Column("user", **fold), Column("broker", **fold),
                  Column("client code", **fold), Column("api key", no_wrap=True), "active", "token",
                  "expires (IST)", "last sync (IST)")
    for r in rows:
        table.add_row(r["id"], escape(r["email"] or r["user_id"] or "-"), escape(r["broker"] or "-"),
                      escape(r["client_code"] or "-"), r["api_key"] or "-",
                      "[green]yes[/]" if r["is_active"] else "[yellow]no[/]", "yes" if r["token"] else "no",
                      _when(r["token_expires_at"]), _when(r["last_sync"]))
    out.print(table)
    out.print(f"{len(rows)} account(s)")


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    """One account as ``--json`` gives it (:data:`LIST_KEYS`)."""
    renamed = {"has_token": row["token"], "has_refresh_token": row["refresh_token"]}
    return {k: _plain(renamed[k] if k in renamed else row[k]) for k in LIST_KEYS}


@clean_errors
def disconnect(
    account: str = typer.Argument(..., metavar="ACCOUNT", help="The account id (`sharewise broker list`)."),
) -> None:
    """Disconnect an account: inactive, its tokens wiped. The row stays: its orders reference it."""
    from db.broker_accounts import disconnect_account

    settings = load_settings()
    was_connected = with_database(settings, lambda conn: disconnect_account(conn, account))
    if was_connected:
        audit_log(settings).info("broker account %s disconnected: inactive, tokens wiped", account)
        out.print(f"disconnected account {escape(account)}: inactive, tokens wiped")
    else:
        out.print(f"account {escape(account)} was already disconnected")


#: ``match`` of a ``broker orders`` row, in the order of its counts
MATCHES = ("same", "differs", "only_ours", "only_broker")
#: what ``broker orders --json`` gives per order
ORDER_KEYS = ("tag", "order_id", "time", "symbol", "side", "type", "quantity", "our_status", "our_filled",
              "our_average_price", "broker_status", "broker_filled", "broker_average_price", "broker_order_id",
              "broker_rejection_reason", "match")


@clean_errors
def orders(
    account: str = typer.Argument(..., metavar="ACCOUNT", help="The account id (`sharewise broker list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print {account, broker, orders, counts}."),
) -> None:
    """Today's orders of an account (IST): the broker's own view beside ours, matched by tag."""
    import uuid

    try:
        ident = str(uuid.UUID(account))
    except ValueError:
        raise ConfigError(f"a broker account id is a UUID, got {account!r}") from None
    settings = load_settings()
    start = datetime.combine(datetime.now(IST).date(), time(0), IST)
    name, ours, theirs = asyncio.run(_both_views(settings, ident, start, start + timedelta(days=1)))
    rows = compare_orders(ours, theirs)
    counts = {m: sum(1 for r in rows if r["match"] == m) for m in MATCHES}
    if json_out:
        _print_json({"account": ident, "broker": name, "orders": [_json_row(r) for r in rows], "counts": counts})
        return
    _print_orders(ident, name, rows, counts)


async def _both_views(settings: Settings, account: str, start: datetime,
                      end: datetime) -> tuple[str, list[dict[str, Any]], list[BrokerOrder]]:
    """(broker name, our orders of [start, end), the broker's orders of the day) of an account."""
    from db.broker_accounts import account_broker
    from db.connect import connect
    from db.migrate import migrate
    from db.trading import account_orders
    from engine.cli.assemble import broker_accounts
    from engine.cli.runtime import services
    from sinks.brokers import BrokerError

    with services(settings, kafka=False) as rt:
        assert rt.dsn
        await migrate(rt.dsn)
        conn = await connect(rt.dsn)
        try:
            broker = await account_broker(conn, account)
            if broker is None:
                raise ConfigError(f"no broker account {account}")
            if broker[0] == PAPER_BROKER_ID:
                raise ConfigError(f"{account} is the paper account: it has no broker (`sharewise orders` shows it)")
            ours = await account_orders(conn, account, start, end)
        finally:
            await conn.close()
        try:
            adapter = await broker_accounts(settings, rt.dsn)(account)
        except AccountUnavailable as exc:  # its message starts with the reason (broker_token_expired...)
            raise ConfigError(str(exc)) from None
        try:
            theirs = await adapter.orders()
        except BrokerError as exc:  # the adapters' messages are scrubbed of the account's secrets
            raise _broker_failure(exc) from None
        finally:
            await adapter.close()
    return broker[1] or "-", ours, theirs


def _broker_failure(exc: Any) -> EngineError:
    """A broker's refusal as the CLI reports it: its reason first (``broker_token_expired: kite HTTP 403 ...``);
    an outage keeps the exit code of a transient error."""
    message = f"{exc.reason}: {exc}"
    return TransientError(message) if isinstance(exc, TransientError) else ConfigError(message)


def compare_orders(ours: Sequence[dict[str, Any]], theirs: Sequence[BrokerOrder]) -> list[dict[str, Any]]:
    """Our orders (``trading_order`` rows) beside the broker's, matched by tag (:func:`engine.orders.ids.order_tag`
    of our id): ours in their order, then the broker's orders that are none of ours (a second order at the broker
    with one of our tags among them). ``match``: ``same`` when status, filled quantity, average price (and the
    broker order id, when we know one) agree, else ``differs``; ``only_ours``, ``only_broker``."""
    by_tag: dict[str, list[BrokerOrder]] = {}
    for b in theirs:
        by_tag.setdefault(b.tag, []).append(b)
    rows = []
    for o in ours:
        tag = order_tag(o["id"])
        found = by_tag.get(tag)
        b = found.pop(0) if found else None
        rows.append({
            "tag": tag, "order_id": str(o["id"]), "time": o["order_timestamp"], "symbol": o["symbol"],
            "side": o["transaction_type"], "type": o["order_type"], "quantity": o["quantity"],
            "our_status": o["status"], "our_filled": o["filled_quantity"] or 0, "our_average_price": o["average_price"],
            "broker_status": b and b.status, "broker_filled": b and b.filled_quantity,
            "broker_average_price": b and b.average_price,
            "broker_order_id": b.broker_order_id if b else o["broker_order_id"],
            "broker_rejection_reason": b and b.rejection_reason,
            "match": "only_ours" if b is None else "same" if _agree(o, b) else "differs",
        })
    for left in by_tag.values():
        for b in left:
            rows.append({
                "tag": b.tag, "order_id": None, "time": b.updated_at, "symbol": None, "side": None, "type": None,
                "quantity": None, "our_status": None, "our_filled": None, "our_average_price": None,
                "broker_status": b.status, "broker_filled": b.filled_quantity, "broker_average_price": b.average_price,
                "broker_order_id": b.broker_order_id, "broker_rejection_reason": b.rejection_reason,
                "match": "only_broker",
            })
    return rows


def _agree(ours: dict[str, Any], broker: BrokerOrder) -> bool:
    return (ours["status"] == broker.status and (ours["filled_quantity"] or 0) == broker.filled_quantity
            and _price(ours["average_price"]) == _price(broker.average_price)
            and ours["broker_order_id"] in (None, broker.broker_order_id))


def _price(value: Decimal | None) -> Decimal | None:
    """A price compared to the paisa (``trading_order`` keeps two decimals); zero counts as none."""
    return None if value is None or value == 0 else Decimal(value).quantize(Decimal("0.01"))


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ``broker orders --json`` order: prices as JSON numbers, the time in IST."""
    return {k: float(row[k]) if isinstance(row[k], Decimal) else _plain(row[k]) for k in ORDER_KEYS}


def _print_orders(account: str, broker: str, rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
    if not rows:
        out.print(f"no orders today for account {account} ({escape(broker)}), ours or the broker's")
        return
    colour = {"same": "green", "differs": "red", "only_ours": "yellow", "only_broker": "yellow"}
    table = Table("tag", "symbol", "side", "type", "qty", "ours", "ours filled", "ours avg", "broker",
                  "broker filled", "broker avg", "broker order id", "match",
                  title=f"account {account} ({escape(broker)}), today")
    for r in rows:
        table.add_row(r["tag"], escape(r["symbol"] or "-"), r["side"] or "-", r["type"] or "-", _count(r["quantity"]),
                      r["our_status"] or "-", _count(r["our_filled"]), _money(r["our_average_price"]),
                      r["broker_status"] or "-", _count(r["broker_filled"]), _money(r["broker_average_price"]),
                      escape(r["broker_order_id"] or "-"), f"[{colour[r['match']]}]{r['match']}[/]")
    out.print(table)
    out.print(f"{len(rows)} order(s): " + ", ".join(f"{counts[m]} {m}" for m in MATCHES))


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def audit_log(settings: Settings) -> logging.Logger:
    """The ``sharewise.broker`` logger, writing to ``$SHAREWISE_HOME/logs/broker.log`` (never given a secret)."""
    return file_logger(settings, log.name, "broker")


def register(app: typer.Typer) -> None:
    broker_app.command("connect")(connect)
    broker_app.command("list")(list_accounts)
    broker_app.command("disconnect")(disconnect)
    broker_app.command("orders")(orders)
    app.add_typer(broker_app, name="broker")
