"""The README's frames are the frames the server sends: same keys, same JSON types, every time in IST.

The messages come from the engine itself (a replayed minute session through the pipeline, its signals
through the paper order stage), published to Kafka as the worker does, and read back over a real
websocket. Each README example (README, "Frames") is parsed and compared with the real frame of its op.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from db.connect import connect
from engine.domain import Timeframe
from engine.orders.execution import Execution, Product
from engine.orders.risk import RiskLimits
from engine.orders.stage import PartitionBooks, clock_bar, clock_input, signal_input
from engine.outputs import bars_packet, signal_message, signal_notification
from engine.ticks import decode_packets
from tests.sinks.feed.support import FeedClient, FeedEnv, Publisher, add_user, issue_token
from tests.streams.support import ema_cross_pipeline, make_minute_history

README = Path(__file__).resolve().parents[3] / "README.md"
SYMBOLS = ("RELIANCE", "TCS")
IST_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+05:30$")


def readme_frames() -> dict[str, dict[str, Any]]:
    """The server -> client examples of the README's "Frames" section, by op."""
    text = README.read_text()
    section = text[text.index("#### Server -> client"):]
    block = section[section.index("```json") + len("```json"):]
    block = block[: block.index("```")]
    return {frame["op"]: frame for frame in map(orjson.loads, filter(str.strip, block.splitlines()))}


def session_messages(tmp_path: Path, user: str) -> dict[str, list[dict[str, Any]]]:
    """One replayed session of an ema_cross row (minute history: every tick closes a bar) through the
    pipeline, its signals through the paper order stage: the messages the worker would publish."""
    path = tmp_path / "history.jsonl"
    make_minute_history(path, SYMBOLS, sessions=1)
    pipeline = ema_cross_pipeline(user, SYMBOLS)
    registry = pipeline.registry
    books = PartitionBooks(Decimal("1000000"), lambda _: RiskLimits(max_positions=50))
    execution = Execution(Product.MIS, quantity=10)
    out: dict[str, list[dict[str, Any]]] = {"bars": [], "signals": [], "notifications": [], "orders": []}
    lines = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
    for start in range(0, len(lines), len(SYMBOLS)):
        decoded = decode_packets(lines[start: start + len(SYMBOLS)], registry)
        _, step = pipeline.feed(decoded.inst, decoded.ts_ns, decoded.price, decoded.qty)
        if step.bars:
            out["bars"] += map(orjson.loads, bars_packet(step.bars, step.rows, pipeline.default_positions).split(b"\n"))
        for sig in step.signals:
            message = orjson.loads(orjson.dumps(signal_message(sig, datetime.now().astimezone())))
            out["signals"].append(message)
            out["notifications"].append(signal_notification(message))
            books.add(orjson.dumps(signal_input(0, execution, message)))
        minutes = [b for b in step.bars if b.timeframe is Timeframe.M1]
        if minutes:
            through = max(b.open_ns for b in minutes) + 60 * 10**9
            books.add(orjson.dumps(clock_input({0: through}, [clock_bar(b.symbol, b.open_ns, b.open, b.high, b.low,
                                                                           b.close) for b in minutes])))
            out["orders"] += [m for topic, _, m in books.advance() if topic == "orders"]
    return out


def json_type(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}[type(value)]


def same_shape(example: Any, real: Any, path: str, problems: list[str]) -> None:
    """Keys and JSON types of ``example`` and ``real`` agree (null stands for any type; arrays by first item)."""
    if example is None or real is None:
        return
    if json_type(example) != json_type(real):
        problems.append(f"{path}: README has {json_type(example)}, the server sends {json_type(real)}")
    elif isinstance(example, dict):
        free = path.endswith((".indicators", ".features", ".backtest_result"))  # keys depend on the strategy
        if not free and set(example) != set(real):
            problems.append(f"{path}: README keys {sorted(set(example) ^ set(real))} differ from the server's")
        for key in set(example) & set(real):
            same_shape(example[key], real[key], f"{path}.{key}", problems)
    elif isinstance(example, list) and example and real:
        same_shape(example[0], real[0], f"{path}[0]", problems)
    elif isinstance(example, str) and IST_TIME.match(example) and not IST_TIME.match(real):
        problems.append(f"{path}: {real!r} is not an ISO 8601 time with the IST offset")


def all_times_in_ist(frame: Any, path: str = "") -> list[str]:
    if isinstance(frame, dict):
        return [p for k, v in frame.items() for p in all_times_in_ist(v, f"{path}.{k}")]
    if isinstance(frame, list):
        return [p for i, v in enumerate(frame) for p in all_times_in_ist(v, f"{path}[{i}]")]
    if isinstance(frame, str) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", frame) and not IST_TIME.match(frame):
        return [f"{path}: {frame}"]
    return []


def test_every_readme_frame_is_what_the_server_sends(feed_env: FeedEnv, tmp_path: Path) -> None:
    user = asyncio.run(add_user(feed_env.dsn, tier="ELITE"))
    messages = session_messages(tmp_path, user)
    assert len(messages["signals"]) >= 3 and {m["status"] for m in messages["orders"]} >= {"OPEN", "COMPLETE"}

    async def scenario() -> dict[str, dict[str, Any]]:
        conn = await connect(feed_env.dsn)
        try:
            portfolio = await conn.fetchval("INSERT INTO portfolios_portfolio (user_id, available_cash) VALUES"
                                            " ($1, 990000.50) RETURNING id", user)
            await conn.execute("INSERT INTO portfolios_holding (portfolio_id, symbol, quantity, average_price,"
                               " current_price, last_price_update) VALUES ($1, 'TCS', 10, 3850.5, 3861.0, now())",
                               portfolio)
            await conn.execute(
                "INSERT INTO analytics_marketdata (symbol, timestamp, open_price, high_price, low_price, close_price,"
                " volume, timeframe, technical_indicators) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                *(lambda b: (b["symbol"], datetime.fromisoformat(b["time"]), Decimal(str(b["open"])),
                             Decimal(str(b["high"])), Decimal(str(b["low"])), Decimal(str(b["close"])),
                             int(b["volume"]), b["timeframe"], orjson.dumps(b["indicators"]).decode()))(
                    messages["bars"][-1]))
        finally:
            await conn.close()
        real: dict[str, dict[str, Any]] = {}
        async with feed_env.server() as server, Publisher(feed_env) as pub:
            client = await FeedClient.authed(server.address, await issue_token(feed_env, user))
            for channel in ("signals", "orders", "notifications"):
                real["subscribed"] = await client.subscribe(channel)
            real["subscribed_bars"] = await client.subscribe("bars", symbols=["TCS"])
            for channel in ("signals", "orders", "notifications"):
                for message in messages[channel]:
                    await pub.personal(channel, message)
            await pub.bars(messages["bars"][-8:])
            await pub.flush()
            expected = sum(len(messages[c]) for c in ("signals", "orders", "notifications"))
            expected += sum(1 for b in messages["bars"][-8:] if b["symbol"] == "TCS")
            for frame in await client.take(expected):
                real.setdefault(frame["op"], frame)
                assert not all_times_in_ist(frame), all_times_in_ist(frame)
            last = messages["bars"][-1]
            real["history"] = await client.request({"op": "history", "channel": "bars", "symbol": last["symbol"],
                                                    "timeframe": last["timeframe"], "limit": 300})
            real["positions"] = await client.request({"op": "positions"})
            real["unsubscribed"] = await client.request({"op": "unsubscribe", "channel": "orders"})
            real["pong"] = await client.request({"op": "ping", "id": 7})
            real["error"] = await client.request({"op": "subscribe", "channel": "signals", "since_seq": -1})
            await client.close()
        return real

    real = asyncio.run(scenario())
    examples = readme_frames()
    real["auth_ok"] = {"op": "auth_ok", "user_id": user, "tier": "ELITE",
                       "channels": ["signals", "orders", "notifications", "bars"]}
    assert set(examples) <= set(real), f"README shows ops the test did not see: {set(examples) - set(real)}"
    problems: list[str] = []
    for op, example in examples.items():
        same_shape(example, real[op], op, problems)
    assert not problems, "\n".join(problems)
    signal = real["signal"]["data"]
    assert isinstance(signal["entry_price"], float) and isinstance(signal["confidence_score"], float)
    assert set(signal["market_data"]["indicators"]) == {"ema_9", "ema_21", "atr_14"}
    assert real["history"]["data"] and all_times_in_ist(real["history"]) == []
