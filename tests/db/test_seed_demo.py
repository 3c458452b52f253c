"""The demo tenant: complete, plausible, and created exactly once however often it is seeded."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

import pytest

from db.connect import connect
from db.seed_demo import seed_demo
from engine.errors import ConfigError
from engine.orders.ids import PAPER_BROKER_ID, paper_account_id, paper_portfolio_id
from tests.fixtures.postgres import drop_database, make_database

TABLES = ["users_customuser", "users_userprofile", "brokers_broker", "brokers_userbrokeraccount",
          "portfolios_portfolio", "subscriptions_subscription", "strategies_strategy"]

# Verhoeff tables (multiplication, permutation), as used by Aadhaar's check digit
_MUL = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_PERM = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
for _ in range(7):
    _PERM.append([_PERM[-1][[1, 5, 7, 6, 2, 8, 3, 0, 9, 4][d]] for d in range(10)])


def verhoeff_valid(number: str) -> bool:
    check = 0
    for i, digit in enumerate(reversed(number)):
        check = _MUL[check][_PERM[i % 8][int(digit)]]
    return check == 0


async def snapshot(dsn: str) -> dict[str, list[dict]]:
    conn = await connect(dsn)
    try:
        return {t: [dict(r) for r in await conn.fetch(f"SELECT * FROM {t} ORDER BY id")] for t in TABLES}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def seeded(pg_server):
    """One database seeded twice: the first result, the second result, the rows after each run."""
    dsn = make_database(pg_server)
    first = asyncio.run(seed_demo(dsn))
    rows_after_first = asyncio.run(snapshot(dsn))
    second = asyncio.run(seed_demo(dsn))
    yield first, second, rows_after_first, asyncio.run(snapshot(dsn))
    drop_database(pg_server, dsn)


def test_second_seed_creates_and_changes_nothing(seeded):
    first, second, rows_after_first, rows_after_second = seeded
    assert len(first["created"]) == 10 and second["created"] == []
    assert first["updated"] == second["updated"] == []
    assert {k: v for k, v in first.items() if k != "created"} == {k: v for k, v in second.items() if k != "created"}
    assert rows_after_second == rows_after_first


def test_demo_user_is_a_pro_trader_with_a_fake_but_valid_kyc_profile(seeded):
    _, _, rows, _ = seeded
    (user,) = rows["users_customuser"]
    assert (user["email"], user["subscription_tier"], user["is_active"]) == ("demo@sharewise.local", "PRO", True)
    (profile,) = rows["users_userprofile"]
    assert profile["user_id"] == user["id"]
    assert re.fullmatch(r"[A-Z]{3}[PCHFATBLJG][A-Z][0-9]{4}[A-Z]", profile["pan_number"])
    aadhaar = profile["aadhar_number"]
    assert re.fullmatch(r"[2-9][0-9]{11}", aadhaar) and verhoeff_valid(aadhaar)
    assert not verhoeff_valid(aadhaar[:-1] + str((int(aadhaar[-1]) + 1) % 10))
    assert profile["risk_tolerance"] in {"LOW", "MEDIUM", "HIGH"} and profile["max_daily_loss"] > 0


def test_three_brokers_with_real_api_urls_and_a_paper_account_on_the_paper_broker(seeded):
    first, _, rows, _ = seeded
    urls = {b["name"]: b["api_base_url"] for b in rows["brokers_broker"]}
    assert urls == {"Zerodha": "https://api.kite.trade", "AngelOne": "https://apiconnect.angelbroking.com",
                    "Upstox": "https://api.upstox.com/v2", "Paper": None}
    assert all("EQ" in json.loads(b["supported_segments"]) for b in rows["brokers_broker"])
    assert first["broker_ids"]["Paper"] == PAPER_BROKER_ID
    (account,) = rows["brokers_userbrokeraccount"]
    assert account["id"] == first["paper_account_id"] == paper_account_id(str(first["user_id"]))
    assert (account["broker_id"], account["broker_user_id"], account["api_key"]) == (PAPER_BROKER_ID, "PAPER", None)
    preferences = json.loads(rows["users_userprofile"][0]["trading_preferences"])
    assert preferences["mode"] == "PAPER" and preferences["paper_broker_account_id"] == str(account["id"])


def test_ten_lakh_rupees_in_the_paper_portfolio_and_one_active_pro_subscription(seeded):
    first, _, rows, _ = seeded
    (portfolio,) = rows["portfolios_portfolio"]
    assert portfolio["id"] == first["portfolio_id"] == paper_portfolio_id(str(first["user_id"]))
    assert portfolio["name"] == "Paper Portfolio" and portfolio["user_id"] == first["user_id"]
    assert portfolio["available_cash"] == portfolio["total_value"] == Decimal("1000000.00")
    assert portfolio["updated_at"] is None  # no book yet: any market time's book may be written over it
    (subscription,) = rows["subscriptions_subscription"]
    assert (subscription["plan_name"], subscription["is_active"]) == ("PRO", True)


def test_ema_cross_trades_on_paper_and_rsi_reversion_gives_signals_only(seeded):
    _, _, rows, _ = seeded
    risk = {s["name"]: json.loads(s["risk_management"]) for s in rows["strategies_strategy"]}
    assert risk["ema_cross"] == {"execution": {"mode": "paper", "product": "MIS", "quantity": 10}}
    assert "execution" not in risk["rsi_reversion"]


def test_paper_cash_sets_the_starting_cash_of_a_new_paper_portfolio(pg_dsn):
    result = asyncio.run(seed_demo(pg_dsn, paper_cash=Decimal("250000.50")))
    portfolio = asyncio.run(snapshot(pg_dsn))["portfolios_portfolio"][0]
    assert portfolio["id"] == result["portfolio_id"]
    assert portfolio["available_cash"] == portfolio["total_value"] == Decimal("250000.50")


def test_an_ema_cross_row_seeded_before_paper_trading_gains_its_execution_and_keeps_its_other_keys(pg_dsn):
    async def run() -> tuple[dict, dict, dict]:
        first = await seed_demo(pg_dsn)
        conn = await connect(pg_dsn)
        try:
            await conn.execute("UPDATE strategies_strategy SET risk_management = '{\"stop_atr\": 1.5}'"
                               " WHERE id = $1", first["strategy_ids"]["ema_cross"])
            upgraded = await seed_demo(pg_dsn)
            again = await seed_demo(pg_dsn)
            risk = await conn.fetchval("SELECT risk_management FROM strategies_strategy WHERE id = $1",
                                       first["strategy_ids"]["ema_cross"])
        finally:
            await conn.close()
        return upgraded, again, json.loads(risk)

    upgraded, again, risk = asyncio.run(run())
    assert (upgraded["created"], upgraded["updated"]) == ([], ["paper execution of strategy ema_cross"])
    assert (again["created"], again["updated"]) == ([], [])
    assert risk == {"stop_atr": 1.5, "execution": {"mode": "paper", "product": "MIS", "quantity": 10}}


def test_active_technical_strategies_on_nifty_symbols(seeded):
    _, _, rows, _ = seeded
    strategies = {s["name"]: s for s in rows["strategies_strategy"]}
    assert {"ema_cross", "rsi_reversion"} <= set(strategies)
    for name, row in strategies.items():
        assert (row["is_active"], row["strategy_type"]) == (True, "TECHNICAL")
        parameters = json.loads(row["parameters"])
        assert parameters["strategy"] == name and parameters["timeframe"] == "1m"
        assert {"RELIANCE", "TCS", "INFY"} <= set(parameters["symbols"])


def test_concurrent_seeds_create_one_tenant(pg_dsn):
    async def twice():
        return await asyncio.gather(seed_demo(pg_dsn), seed_demo(pg_dsn))

    a, b = asyncio.run(twice())
    assert sorted([len(a["created"]), len(b["created"])]) == [0, 10]
    assert {t: len(rows) for t, rows in asyncio.run(snapshot(pg_dsn)).items()} == {
        "users_customuser": 1, "users_userprofile": 1, "brokers_broker": 4, "brokers_userbrokeraccount": 1,
        "portfolios_portfolio": 1, "subscriptions_subscription": 1, "strategies_strategy": 2}


def test_seed_on_an_unmigrated_database_is_a_config_error(pg_empty_dsn):
    with pytest.raises(ConfigError, match="sharewise db migrate"):
        asyncio.run(seed_demo(pg_empty_dsn))
