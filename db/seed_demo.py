"""The demo tenant: one PRO trader with brokers, a paper account, cash and strategies.

:func:`seed_demo` is idempotent: every row is looked up by its natural key (the user's
email, a broker's name, a strategy's name for that user, ...) and inserted only when
missing, with a stable id; existing rows are never modified, with one exception below. It
runs in one transaction under an advisory lock, so concurrent runs create each row once.

Paper trading (docs/orders.md) books into the rows the order path's sinks use:

* the paper account is the demo user's account on the ``Paper`` broker row (created by
  migration 0120_orders, id ``PAPER_BROKER_ID``), with the id ``paper_account_id(user)`` and
  ``broker_user_id = 'PAPER'``, no credentials; the profile's ``trading_preferences`` says
  ``{"mode": "PAPER", "paper_broker_account_id": ...}``;
* the portfolio is ``Paper Portfolio`` with the id ``paper_portfolio_id(user)``, holding
  ``paper_cash`` (``SHAREWISE_PAPER_CASH``) as available cash and total value; its
  ``updated_at`` stays NULL until the engine books into it (it is the market time of the
  latest book, and a book is written only if it is not older than that);
* the ``ema_cross`` strategy trades: its ``risk_management`` holds
  ``"execution": {"mode": "paper", "product": "MIS", "quantity": 10}``. This is the exception:
  an ``ema_cross`` row seeded before paper trading, whose ``risk_management`` has no
  ``execution``, gets it added (its other keys kept), and the result's ``updated`` says so.

The Zerodha, AngelOne and Upstox broker rows are seeded for the live adapters to come.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from db.connect import connect
from engine.errors import ConfigError
from engine.orders.ids import PAPER_BROKER_ID, PAPER_BROKER_NAME, paper_account_id, paper_portfolio_id

DEMO_EMAIL = "demo@sharewise.local"
#: namespace of the demo tenant's uuid5 ids
DEMO_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://sharewise.local/demo-tenant")
#: pg_advisory_xact_lock key of a seeding transaction
SEED_LOCK = 0x5348_4152_4557_4453
#: ₹10,00,000: the default starting cash of the paper portfolio (SHAREWISE_PAPER_CASH's default)
DEMO_CASH = Decimal("1000000.00")
NIFTY_SYMBOLS = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK"]
SEGMENTS = ["EQ", "FO", "CD", "COM"]

EXCHANGES = ["NSE", "BSE", "NFO", "BFO", "CDS", "MCX"]
#: (name, display name, API base URL, API name)
BROKERS = [
    ("Zerodha", "Zerodha (Kite Connect)", "https://api.kite.trade", "Kite Connect v3"),
    ("AngelOne", "Angel One (SmartAPI)", "https://apiconnect.angelbroking.com", "SmartAPI"),
    ("Upstox", "Upstox", "https://api.upstox.com/v2", "Upstox API v2"),
]

#: how the demo's ema_cross row trades (docs/orders.md, "execution")
PAPER_EXECUTION = {"mode": "paper", "product": "MIS", "quantity": 10}
#: the strategy that trades on paper in the demo
TRADING_STRATEGY = "ema_cross"

STRATEGIES = [
    ("ema_cross", "EMA crossover on 1-minute bars: BUY when the fast EMA crosses above the slow one, SELL below."),
    ("rsi_reversion", "RSI mean reversion on 1-minute bars: BUY when RSI leaves oversold, SELL when overbought."),
]


@dataclass(frozen=True, slots=True)
class _Row:
    """Natural-key lookup and insert of one row: ``find`` selects ``id`` with ``key`` as its parameters.

    A new row's id is ``id`` when given, else uuid5 of its label in :data:`DEMO_NAMESPACE`.
    """

    label: str
    table: str
    find: str
    key: tuple[Any, ...]
    values: dict[str, Any]
    id: uuid.UUID | None = None


async def seed_demo(dsn: str, paper_cash: Decimal = DEMO_CASH) -> dict[str, Any]:
    """Create the demo tenant where missing; return its ids and what this call created.

    ``paper_cash`` is the starting cash of a new paper portfolio (the CLI passes ``SHAREWISE_PAPER_CASH``).
    Result keys: ``user_id``, ``profile_id``, ``broker_ids`` (name -> id, the Paper broker included),
    ``paper_account_id``, ``portfolio_id`` (the paper portfolio), ``subscription_id``, ``strategy_ids``
    (name -> id), ``created``: the labels of the rows inserted now (empty on a rerun), and ``updated``:
    what this call changed in existing rows (empty unless an old ``ema_cross`` row gained its
    ``execution``). Raises ConfigError when the schema is not migrated, and the errors of
    :func:`db.connect.connect`.
    """
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SEED_LOCK)
            return await _seed(conn, paper_cash)
    except asyncpg.UndefinedTableError as exc:
        raise ConfigError(f"the platform schema is missing ({exc}): run `sharewise db migrate` first") from exc
    finally:
        await conn.close()


async def _seed(conn: asyncpg.Connection, paper_cash: Decimal) -> dict[str, Any]:
    created: list[str] = []
    updated: list[str] = []

    async def ensure(row: _Row) -> uuid.UUID:
        return await _ensure(conn, row, created)

    user_id = await ensure(_user())
    broker_ids = {name: await ensure(_broker(name, *rest)) for name, *rest in BROKERS}
    broker_ids[PAPER_BROKER_NAME] = await ensure(_paper_broker())
    paper_id = await ensure(_paper_account(user_id, broker_ids[PAPER_BROKER_NAME]))
    result = {
        "user_id": user_id,
        "profile_id": await ensure(_profile(user_id, paper_id)),
        "broker_ids": broker_ids,
        "paper_account_id": paper_id,
        "portfolio_id": await ensure(_portfolio(user_id, paper_cash)),
        "subscription_id": await ensure(_subscription(user_id)),
        "strategy_ids": {name: await ensure(_strategy(user_id, name, text)) for name, text in STRATEGIES},
    }
    if await conn.fetchval(_ADD_EXECUTION, result["strategy_ids"][TRADING_STRATEGY], json.dumps(PAPER_EXECUTION)):
        updated.append(f"paper execution of strategy {TRADING_STRATEGY}")
    return result | {"created": created, "updated": updated}


#: an ema_cross row seeded before paper trading gains its execution object, its other keys kept
_ADD_EXECUTION = """
UPDATE public.strategies_strategy
SET risk_management = coalesce(risk_management, '{}'::jsonb) || jsonb_build_object('execution', $2::jsonb)
WHERE id = $1 AND jsonb_typeof(coalesce(risk_management, '{}'::jsonb)) = 'object'
  AND NOT coalesce(risk_management, '{}'::jsonb) ? 'execution'
RETURNING id
"""


async def _ensure(conn: asyncpg.Connection, row: _Row, created: list[str]) -> uuid.UUID:
    """The id of the row found by its natural key, inserting it (id = ``row.id`` or uuid5 of its label) if absent."""
    found = await conn.fetchval(row.find, *row.key)
    if found is not None:
        return found
    values = {"id": row.id or uuid.uuid5(DEMO_NAMESPACE, row.label)} | row.values
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO public.{row.table} ({columns}) VALUES ({params})", *values.values())
    created.append(row.label)
    return values["id"]


def _user() -> _Row:
    return _Row(
        "user demo@sharewise.local",
        "users_customuser",
        "SELECT id FROM public.users_customuser WHERE email = $1",
        (DEMO_EMAIL,),
        {"email": DEMO_EMAIL, "username": "demo", "first_name": "Demo", "last_name": "Trader",
         "role": "USER", "subscription_tier": "PRO"},
    )


def _profile(user_id: uuid.UUID, paper_account_id: uuid.UUID) -> _Row:
    preferences = {"mode": "PAPER", "paper_broker_account_id": str(paper_account_id), "default_timeframe": "1m"}
    return _Row(
        "profile of demo@sharewise.local",
        "users_userprofile",
        "SELECT id FROM public.users_userprofile WHERE user_id = $1 ORDER BY created_at LIMIT 1",
        (user_id,),
        # PAN: 5 letters (4th P = individual, 5th D = surname), 4 digits, 1 letter; the Aadhaar
        # number is UIDAI's published test number (12 digits, Verhoeff check digit valid).
        {"user_id": user_id, "pan_number": "ABCPD1234F", "aadhar_number": "999999990019",
         "risk_tolerance": "MEDIUM", "max_daily_loss": Decimal("25000.00"),
         "preferred_brokers": json.dumps(["Zerodha"]), "trading_preferences": json.dumps(preferences),
         "kyc_verified": False},
    )


def _broker(name: str, display_name: str, api_base_url: str, api: str) -> _Row:
    return _Row(
        f"broker {name}",
        "brokers_broker",
        "SELECT id FROM public.brokers_broker WHERE name = $1 ORDER BY created_at LIMIT 1",
        (name,),
        {"name": name, "display_name": display_name, "api_base_url": api_base_url, "is_active": True,
         "supported_segments": json.dumps(SEGMENTS),
         "configuration": json.dumps({"api": api, "exchanges": EXCHANGES})},
    )


def _paper_broker() -> _Row:
    """The Paper broker row as migration 0120_orders creates it (found by its fixed id)."""
    return _Row(
        "broker Paper",
        "brokers_broker",
        "SELECT id FROM public.brokers_broker WHERE id = $1",
        (PAPER_BROKER_ID,),
        {"name": PAPER_BROKER_NAME, "display_name": "Paper trading", "api_base_url": None, "is_active": True,
         "supported_segments": json.dumps(["EQ"]), "configuration": json.dumps({})},
        id=PAPER_BROKER_ID,
    )


def _paper_account(user_id: uuid.UUID, broker_id: uuid.UUID) -> _Row:
    return _Row(
        "paper broker account",
        "brokers_userbrokeraccount",
        "SELECT id FROM public.brokers_userbrokeraccount WHERE user_id = $1 AND broker_id = $2",
        (user_id, broker_id),
        {"user_id": user_id, "broker_id": broker_id, "broker_user_id": "PAPER", "is_active": True},
        id=paper_account_id(str(user_id)),
    )


def _portfolio(user_id: uuid.UUID, paper_cash: Decimal) -> _Row:
    ident = paper_portfolio_id(str(user_id))
    return _Row(
        "paper portfolio",
        "portfolios_portfolio",
        "SELECT id FROM public.portfolios_portfolio WHERE id = $1",
        (ident,),
        {"user_id": user_id, "name": "Paper Portfolio", "total_value": paper_cash, "available_cash": paper_cash,
         "updated_at": None},
        id=ident,
    )


def _subscription(user_id: uuid.UUID) -> _Row:
    return _Row(
        "active PRO subscription",
        "subscriptions_subscription",
        "SELECT id FROM public.subscriptions_subscription WHERE user_id = $1 AND is_active",
        (user_id,),
        {"user_id": user_id, "plan_name": "PRO", "start_date": date.today(), "is_active": True,
         "auto_renew": True, "payment_status": "PAID", "amount": Decimal("999.00"), "billing_cycle": "MONTHLY",
         "features": json.dumps({"live_signals": True, "strategies": 10, "websocket_feed": True}),
         "usage_limits": json.dumps({"active_strategies": 10, "symbols_per_strategy": 50})},
    )


def _strategy(user_id: uuid.UUID, name: str, description: str) -> _Row:
    parameters = {"strategy": name, "symbols": NIFTY_SYMBOLS, "timeframe": "1m", "params": {}}
    risk = {"execution": PAPER_EXECUTION} if name == TRADING_STRATEGY else {}
    return _Row(
        f"strategy {name}",
        "strategies_strategy",
        "SELECT id FROM public.strategies_strategy WHERE user_id = $1 AND name = $2 ORDER BY created_at LIMIT 1",
        (user_id, name),
        {"user_id": user_id, "name": name, "description": description, "strategy_type": "TECHNICAL",
         "parameters": json.dumps(parameters), "risk_management": json.dumps(risk), "is_active": True},
    )
