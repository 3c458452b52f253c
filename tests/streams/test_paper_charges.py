"""The Paper broker row's ``configuration.charges`` overrides the NSE table for every paper fill (docs/orders.md)."""

from __future__ import annotations

import asyncio
import subprocess
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import orjson

from db.seed_demo import seed_demo
from engine.orders.ids import PAPER_BROKER_ID
from tests.streams.support import SHAREWISE, engine_env, make_tick_file, up_until_drained

PAISA = Decimal("0.01")


async def _set_charges(dsn: str, charges: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE brokers_broker SET configuration = jsonb_set(configuration, '{charges}', $2::jsonb)"
                           " WHERE id = $1", PAPER_BROKER_ID, orjson.dumps(charges).decode())
    finally:
        await conn.close()


async def _fills(dsn: str) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch("SELECT transaction_type, quantity, average_price, fees, taxes FROM trading_order"
                                " WHERE status = 'COMPLETE'")
    finally:
        await conn.close()


def test_a_broker_override_of_the_charges_applies_to_every_paper_fill(tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    # no brokerage on intraday orders at this broker
    asyncio.run(_set_charges(pg_dsn, {"MIS": {"brokerage_rate": "0", "brokerage_cap": "0"}}))
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=120, late=False)
    summary = up_until_drained(engine_env(tmp_path / "home", broker.bootstrap, pg_dsn), ticks.path)
    fills = asyncio.run(_fills(pg_dsn))
    assert summary["orders"] > 0 and fills, "nothing traded: the test would prove nothing"
    for side, qty, price, fees, taxes in fills:  # the demo row trades MIS
        value = price * qty
        exchange, sebi = value * Decimal("0.0000297"), value * Decimal("0.000001")
        assert fees == (exchange + sebi).quantize(PAISA, ROUND_HALF_UP)  # the brokerage is gone
        stt = value * Decimal("0.00025") if side == "SELL" else Decimal(0)
        stamp = value * Decimal("0.00003") if side == "BUY" else Decimal(0)
        assert taxes == (stt + stamp + Decimal("0.18") * (exchange + sebi)).quantize(PAISA, ROUND_HALF_UP)


def test_a_bad_override_stops_the_worker_naming_the_path(tmp_path, kafka_broker_factory, pg_dsn):
    broker = kafka_broker_factory()
    asyncio.run(seed_demo(pg_dsn))
    asyncio.run(_set_charges(pg_dsn, {"MIS": {"stt_sell": "lots"}}))
    ticks = make_tick_file(tmp_path / "ticks.jsonl", minutes=30, late=False)
    done = subprocess.run([*SHAREWISE, "up", "--replay", str(ticks.path), "--until-drained", "--json"],
                          env=engine_env(tmp_path / "home", broker.bootstrap, pg_dsn), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode != 0
    assert "configuration.charges.MIS.stt_sell" in done.stderr, done.stderr[-2000:]
