"""What the pipeline emits, as wire messages and database rows, with deterministic ids.

* a bar's id is ``uuid5(BAR_NAMESPACE, "symbol|timeframe|bar_time")``;
* a signal's id is ``uuid5(SIGNAL_NAMESPACE, "user|strategy|symbol|timeframe|bar_time")``, where
  strategy is the ``strategies_strategy`` id (or the strategy name for a deployment without a row);
* a notification's id is ``uuid5(NOTIFICATION_NAMESPACE, signal id)`` (or of the failure it reports).

Replaying the same ticks therefore yields the same ids, and the sinks' ``ON CONFLICT DO
NOTHING`` drops the repeats. Message formats: ``docs/topics.md``; the database rows they become
are built next to the tables, in :mod:`sinks.rows`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

import numpy as np
import orjson

from engine.domain import IST, Bar
from engine.indicators import DEFAULT_COLUMNS
from engine.strategy.runner import EmittedSignal, StrategyFailure, json_number
from engine.strategy.signals import SignalRecord, signal_record

BAR_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e01")
SIGNAL_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e02")
NOTIFICATION_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e03")


def bar_id(bar: Bar) -> uuid.UUID:
    return bar_message_id(bar.symbol, bar.timeframe.label, bar.time.isoformat())


def bar_message_id(symbol: str, timeframe: str, time_iso: str) -> uuid.UUID:
    """The id of the bar a ``market.bars`` object describes (its ``symbol``, ``timeframe``, ``time``)."""
    return uuid.uuid5(BAR_NAMESPACE, f"{symbol}|{timeframe}|{time_iso}")


def bar_message(bar: Bar, row: np.ndarray, positions: np.ndarray) -> dict[str, Any]:
    """The ``market.bars`` object of a closed bar; ``positions`` picks the default columns out of ``row``."""
    return {
        "symbol": bar.symbol,
        "timeframe": bar.timeframe.label,
        "time": bar.time.isoformat(),
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "indicators": {name: json_number(row[p]) for name, p in zip(DEFAULT_COLUMNS, positions)},
    }


def bars_packet(bars: Sequence[Bar], rows: np.ndarray, positions: np.ndarray) -> bytes:
    """Newline-delimited ``market.bars`` objects."""
    return b"\n".join(orjson.dumps(bar_message(b, r, positions)) for b, r in zip(bars, rows))


def signal_id(rec: SignalRecord) -> uuid.UUID:
    strategy = rec.strategy_id or rec.strategy_name
    return uuid.uuid5(SIGNAL_NAMESPACE, f"{rec.user_id}|{strategy}|{rec.symbol}|{rec.timeframe}|{rec.bar_time.isoformat()}")


def signal_message(signal: EmittedSignal, now: datetime) -> dict[str, Any]:
    """The ``signals`` object: ``trading_signal`` columns plus ``timeframe`` and ``bar_time``; ``now`` (the
    adapter's clock) stamps ``created_at``/``updated_at`` only, never an id or a decision."""
    rec = signal_record(signal)
    stamp = now.isoformat()
    return {
        "id": str(signal_id(rec)),
        "timestamp": rec.bar_time.isoformat(),
        "symbol": rec.symbol,
        "strategy_name": rec.strategy_name,
        "signal_type": rec.signal_type,
        "confidence_score": _text(rec.confidence_score),
        "entry_price": _text(rec.entry_price),
        "target_price": _text(rec.target_price),
        "stop_loss": _text(rec.stop_loss),
        "valid_until": rec.valid_until.astimezone(IST).isoformat() if rec.valid_until else None,
        "backtest_result": {},
        "executed": False,
        "executed_price": None,
        "user_id": rec.user_id,
        "created_by_strategy_id": rec.strategy_id,
        "market_data": dict(rec.market_data),
        "created_at": stamp,
        "updated_at": stamp,
        "timeframe": rec.timeframe,
        "bar_time": rec.bar_time.isoformat(),
    }


def signal_notification(msg: dict[str, Any]) -> dict[str, Any]:
    """The owner's notification of a signal (one per signal)."""
    title = f"{msg['signal_type']} {msg['symbol']} ({msg['strategy_name']}, {msg['timeframe']})"
    parts = [f"entry {msg['entry_price']}"]
    parts += [f"target {msg['target_price']}"] if msg["target_price"] else []
    parts += [f"stop {msg['stop_loss']}"] if msg["stop_loss"] else []
    confidence = float(msg["confidence_score"])
    return notification(
        uuid.uuid5(NOTIFICATION_NAMESPACE, msg["id"]), msg["user_id"], title,
        f"{title} at bar {msg['bar_time']}: {', '.join(parts)}, confidence {msg['confidence_score']}.",
        "SIGNAL", "HIGH" if confidence >= 0.8 else "MEDIUM", msg["created_at"],
    )  # fmt: skip


def failure_notification(failure: StrategyFailure, now: datetime) -> dict[str, Any] | None:
    """The owner's notification of a strategy failure (stamped ``now``); None for a deployment without an owner."""
    if failure.user_id is None:
        return None
    key = f"failure|{failure.user_id}|{failure.strategy_id}|{failure.kind}|{failure.symbol}|{failure.bar_time}"
    title = f"Strategy {failure.strategy_name} {'disabled' if failure.disabled else 'failed'}"
    return notification(
        uuid.uuid5(NOTIFICATION_NAMESPACE, key), failure.user_id, title[:200], failure.message, "SYSTEM",
        "URGENT" if failure.disabled else "HIGH", now.isoformat(),
    )  # fmt: skip


def notification(ident: uuid.UUID | str, user_id: str, title: str, message: str, kind: str, priority: str,
                 created_at: str) -> dict[str, Any]:
    """A ``notifications`` message (the ``notifications_notification`` columns)."""
    return {
        "id": str(ident), "user_id": user_id, "title": title, "message": message, "notification_type": kind,
        "priority": priority, "is_read": False, "delivery_methods": ["in_app"], "created_at": created_at,
    }  # fmt: skip


def _text(d: Decimal | None) -> str | None:
    return None if d is None else str(d)
