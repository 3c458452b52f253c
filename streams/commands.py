"""Commands to the order stage through ``orders.inputs`` (docs/orders.md, "Messages").

``sharewise risk halt|reduce|resume`` persists the hand-set trading state (db.trading) and then
tells a running engine with :func:`send_risk_command`; the order stage applies it at the
partition's watermark. The message is keyed by user_id, so it lands on the user's partition,
with that user's signals, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from engine.errors import EngineError, ServiceUnavailable
from streams.topics import ORDERS_INPUTS

TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")


def risk_command_bytes(message: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of a risk command; ValueError when it is not ``{"kind": "risk", "user_id", "state", …}``."""
    if message.get("kind") != "risk":
        raise ValueError("a risk command has kind 'risk'")
    user_id, state = message.get("user_id"), message.get("state")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("a risk command names its user_id")
    if state not in TRADING_STATES:
        raise ValueError(f"a risk command's state is one of {', '.join(TRADING_STATES)}, not {state!r}")
    for key in ("id", "at"):
        if not isinstance(message.get(key), str):
            raise ValueError(f"a risk command has a string {key!r}")
    return user_id.encode(), orjson.dumps(dict(message))


async def send_risk_command(bootstrap: str, message: dict, *, timeout: float = 10.0) -> None:
    """Produce ``message`` (``{"kind":"risk","id","user_id","state","reason","at"}``) to ``orders.inputs``,
    key = user_id, acknowledged by every in-sync replica (acks=all).

    Returns once the broker has acknowledged it. Raises ValueError for a malformed message and
    :class:`ServiceUnavailable` when the broker cannot be reached or does not acknowledge within ``timeout``
    (:class:`EngineError` when it refuses the message).
    """
    key, value = risk_command_bytes(message)
    await send_order_input(bootstrap, key, value, "risk command", timeout=timeout)


async def send_order_input(bootstrap: str, key: bytes, value: bytes, what: str, *, timeout: float = 10.0) -> None:
    """Produce one ``orders.inputs`` message (a risk command, a broker's postback), acks=all; raises
    :class:`ServiceUnavailable` or :class:`EngineError` as :func:`send_risk_command` does."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(producer.start(), timeout)
        await asyncio.wait_for(producer.send_and_wait(ORDERS_INPUTS, value, key=key), timeout)
    except (KafkaConnectionError, KafkaTimeoutError, TimeoutError, OSError) as exc:
        raise ServiceUnavailable("Kafka", bootstrap, f"{what} to {ORDERS_INPUTS}: {exc or type(exc).__name__}"
                                 ) from exc
    except KafkaError as exc:
        raise EngineError(f"Kafka at {bootstrap} refused the {what} to {ORDERS_INPUTS}: {exc}") from exc
    finally:
        try:
            await asyncio.wait_for(producer.stop(), timeout)
        except (KafkaError, TimeoutError, OSError):
            pass
