"""The order stage's decisions for one partition of ``orders.inputs``: merge in market time, then decide.

Inputs come from every partition of ``market.ticks`` (a *source*) in whatever order Kafka delivers
them. :class:`PartitionBooks` buffers them, keeps the highest ``through`` each source has reported
(its clock), and decides only up to the lowest of those (the watermark), in one fixed order: by
market time; at one time 1m bars before signals; then symbol, strategy, timeframe, id
(docs/orders.md, "Market time and the watermark"). The desks it drives (engine.orders.desk) hold
positions, cash and P&L; :meth:`PartitionBooks.to_json` is its checkpoint.

Repeats are harmless: a signal already decided or buffered, and a bar at or before a symbol's
latest close, are dropped (and counted). An input older than the watermark that is not a repeat
(a source heard from for the first time, behind the others) is decided at once and counted as late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

import orjson

from engine.domain import DAY_NS, Timeframe, bar_span, datetime_to_ns
from engine.errors import BadData, ConfigError
from engine.orders.charges import NSE_EQUITY, ChargeTable
from engine.orders.desk import Desk, MinuteBar, Quote, TradeSignal, iso
from engine.orders.execution import Execution
from engine.orders.risk import RiskLimits, TradingState
from engine.strategy.signals import round_price

#: the ``through`` of a source whose input has ended (``up --until-drained`` flushed it)
END_OF_TIME = 2**62
#: decided signal ids are remembered this long after their decision (repeats come from replays of seconds)
_REMEMBER_NS = 2 * DAY_NS

Output = tuple[str, str, dict[str, Any]]  # (topic, user_id key, message)


@dataclass(slots=True)
class StageCounters:
    decisions: int = 0  # signals and bars decided
    repeats: int = 0  # inputs dropped as already decided or buffered
    late: int = 0  # inputs older than the watermark that were not repeats
    commands: int = 0


@dataclass(slots=True)
class PartitionBooks:
    """The desks of the users of one ``orders.inputs`` partition, and that partition's merge of its sources."""

    paper_cash: Decimal
    limits_of: Callable[[str], RiskLimits]
    manual: Mapping[str, tuple[TradingState, str | None]] = field(default_factory=dict)
    table: ChargeTable = NSE_EQUITY
    sources: dict[int, int] = field(default_factory=dict)  # source partition -> through (ns)
    watermark: int = -1
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> signal input, not yet decided
    bars: dict[tuple[str, int], MinuteBar] = field(default_factory=dict)  # (symbol, open) -> bar, not yet decided
    commands: list[dict[str, Any]] = field(default_factory=list)
    decided: dict[str, int] = field(default_factory=dict)  # signal id -> decision time
    desks: dict[str, Desk] = field(default_factory=dict)
    quotes: dict[str, Quote] = field(default_factory=dict)
    counters: StageCounters = field(default_factory=StageCounters)

    # --- input -------------------------------------------------------------------------------

    def add(self, value: bytes) -> None:
        """Take one ``orders.inputs`` message; raise :class:`BadData` for one the engine did not write."""
        try:
            doc = orjson.loads(value)
            kind = doc["kind"]
            if kind == "signal":
                self._add_signal(doc)
            elif kind == "clock":
                self._add_clock({int(k): _ns(v) for k, v in doc["sources"].items()}, doc["bars"])
            elif kind == "risk":
                TradingState.parse(doc["state"])
                str(doc["user_id"])
                self.commands.append(doc)
            else:
                raise BadData("unknown_kind", f"orders.inputs message of kind {kind!r}")
        except (ValueError, KeyError, TypeError, ArithmeticError, ConfigError) as exc:
            raise BadData("unreadable", f"orders.inputs message: {type(exc).__name__}: {exc}") from exc

    def _add_signal(self, doc: dict[str, Any]) -> None:
        sig = trade_signal(doc)  # validates now, not at decision time
        if sig.id in self.decided or sig.id in self.signals:
            self.counters.repeats += 1
            return
        if sig.decision_ns <= self.watermark:
            self.counters.late += 1
        self.signals[sig.id] = doc

    def _add_clock(self, throughs: dict[int, int], bars: list[dict[str, Any]]) -> None:
        for raw in bars:
            bar = minute_bar(raw)
            quote = self.quotes.get(bar.symbol)
            if (quote is not None and bar.close_ns <= quote.at_ns) or (bar.symbol, bar.open_ns) in self.bars:
                self.counters.repeats += 1
                continue
            if bar.close_ns <= self.watermark:
                self.counters.late += 1
            self.bars[(bar.symbol, bar.open_ns)] = bar
        for source, through in throughs.items():
            self.sources[source] = max(self.sources.get(source, through), through)

    def users_without_limits(self, known: Callable[[str], bool]) -> set[str]:
        """Users of buffered signals and commands whose limits ``known`` does not have yet."""
        users = {doc["signal"]["user_id"] for doc in self.signals.values()} | {c["user_id"] for c in self.commands}
        return {u for u in users if u not in self.desks and not known(u)}

    # --- decisions ---------------------------------------------------------------------------

    def advance(self) -> list[Output]:
        """Apply commands, then decide every buffered input up to the watermark; return what follows."""
        touched: dict[str, Desk] = {}
        for cmd in self.commands:
            desk = self._desk(cmd["user_id"])
            desk.set_state(TradingState.parse(cmd["state"]), cmd.get("reason"), max(self.watermark, desk.as_of, 0))
            touched[desk.user_id] = desk
            self.counters.commands += 1
        self.commands.clear()
        if self.sources:
            self.watermark = max(self.watermark, min(self.sources.values()))
        for event in self._due():
            if isinstance(event, MinuteBar):
                self._on_bar(event, touched)
            else:
                desk = self._desk(event.user_id)
                desk.on_signal(event)
                self.decided[event.id] = event.decision_ns
                touched[desk.user_id] = desk
            self.counters.decisions += 1
        self._forget_old()
        out: list[Output] = []
        for desk in touched.values():
            out += [(topic, desk.user_id, msg) for topic, msg in desk.out]
            desk.out.clear()
            out.append(("portfolios", desk.user_id, desk.book()))
        return out

    def _due(self) -> list[MinuteBar | TradeSignal]:
        """The buffered inputs at or before the watermark, removed from the buffer, in decision order."""
        w = self.watermark
        bars = [b for k, b in self.bars.items() if b.close_ns <= w]
        for b in bars:
            del self.bars[(b.symbol, b.open_ns)]
        sigs = [trade_signal(doc) for doc in self.signals.values()]
        sigs = [s for s in sigs if s.decision_ns <= w]
        for s in sigs:
            del self.signals[s.id]
        events: list[tuple[tuple[Any, ...], MinuteBar | TradeSignal]] = [((b.close_ns, 0, b.symbol), b) for b in bars]
        events += [((s.decision_ns, 1, s.symbol, s.strategy_key, s.timeframe, s.id), s) for s in sigs]
        events.sort(key=lambda e: e[0])
        return [e for _, e in events]

    def _on_bar(self, bar: MinuteBar, touched: dict[str, Desk]) -> None:
        holders = [d for d in self.desks.values() if any(p.symbol == bar.symbol for p in d.positions.values())]
        for desk in holders:
            desk.enter(bar.close_ns)
        quote = self.quotes.get(bar.symbol)
        if quote is None or bar.close_ns > quote.at_ns:
            self.quotes[bar.symbol] = Quote(bar.close, bar.close_ns)
        for desk in holders:
            desk.on_bar(bar)
            touched[desk.user_id] = desk

    def _desk(self, user_id: str) -> Desk:
        desk = self.desks.get(user_id)
        if desk is None:
            desk = Desk(user_id, self.limits_of(user_id), self.paper_cash, self.quotes, self.table)
            if (manual := self.manual.get(user_id)) is not None:
                desk.manual, desk.manual_reason = manual
            self.desks[user_id] = desk
        return desk

    def _forget_old(self) -> None:
        if self.watermark <= 0 or len(self.decided) < 10_000:
            return
        horizon = self.watermark - _REMEMBER_NS
        self.decided = {k: t for k, t in self.decided.items() if t >= horizon}

    # --- checkpoints ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": {str(k): v for k, v in self.sources.items()}, "watermark": self.watermark,
            "signals": list(self.signals.values()), "bars": [_bar_json(b) for b in self.bars.values()],
            "commands": self.commands, "decided": self.decided,
            "desks": [d.to_json() for d in self.desks.values()],
            "quotes": {s: [str(q.price), q.at_ns] for s, q in self.quotes.items()},
        }  # fmt: skip

    def restore(self, doc: Mapping[str, Any]) -> None:
        """Load a :meth:`to_json` checkpoint into this (empty) book."""
        self.sources = {int(k): int(v) for k, v in doc["sources"].items()}
        self.watermark = int(doc["watermark"])
        self.signals = {s["signal"]["id"]: s for s in doc["signals"]}
        self.bars = {(b.symbol, b.open_ns): b for b in map(minute_bar, doc["bars"])}
        self.commands = list(doc["commands"])
        self.decided = dict(doc["decided"])
        self.quotes.clear()
        self.quotes.update({s: Quote(Decimal(p), int(t)) for s, (p, t) in doc["quotes"].items()})
        self.desks = {}
        for d in doc["desks"]:
            self.desks[d["user_id"]] = Desk.from_json(d, self.limits_of(d["user_id"]), self.quotes, self.table)


# --- the orders.inputs messages (docs/orders.md) ---------------------------------------------


def signal_input(source: int, execution: Execution, signal_message: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "signal", "source": source, "execution": execution.to_json(), "signal": signal_message}


def clock_input(throughs: Mapping[int, int], bars: list[dict[str, Any]]) -> dict[str, Any]:
    """A clock: each source's ``through`` (ns), and 1m bars (:func:`clock_bar`) those sources closed."""
    return {"kind": "clock", "sources": {str(s): t for s, t in throughs.items()}, "bars": bars}


def clock_bar(symbol: str, open_ns: int, o: float, h: float, low: float, c: float) -> dict[str, Any]:
    """A 1m bar in a clock message: prices rounded to the paisa as the database stores them."""
    return {"symbol": symbol, "time": iso(open_ns), "open": _paisa(o), "high": _paisa(h), "low": _paisa(low),
            "close": _paisa(c)}


def trade_signal(doc: Mapping[str, Any]) -> TradeSignal:
    """The :class:`TradeSignal` of a ``signal`` input; raises KeyError/ValueError/TypeError for a bad one."""
    msg = doc["signal"]
    timeframe = Timeframe.parse(msg["timeframe"])
    bar_ns = datetime_to_ns(datetime.fromisoformat(msg["bar_time"]))
    return TradeSignal(
        id=str(msg["id"]), user_id=str(msg["user_id"]), strategy_id=msg.get("created_by_strategy_id"),
        strategy_name=str(msg["strategy_name"]), symbol=str(msg["symbol"]), timeframe=timeframe.label,
        bullish=msg["signal_type"] in ("BUY", "COVER"), decision_ns=bar_span(bar_ns, timeframe)[1],
        entry_price=Decimal(msg["entry_price"]), target_price=_dec(msg.get("target_price")),
        stop_loss=_dec(msg.get("stop_loss")), execution=Execution.from_json(doc["execution"]), message=dict(msg),
    )  # fmt: skip


def minute_bar(doc: Mapping[str, Any]) -> MinuteBar:
    return MinuteBar(str(doc["symbol"]), datetime_to_ns(datetime.fromisoformat(doc["time"])), Decimal(doc["open"]),
                     Decimal(doc["high"]), Decimal(doc["low"]), Decimal(doc["close"]))


def _bar_json(b: MinuteBar) -> dict[str, Any]:
    return {"symbol": b.symbol, "time": iso(b.open_ns), "open": str(b.open), "high": str(b.high), "low": str(b.low),
            "close": str(b.close)}


def _ns(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"through must be integer nanoseconds, got {value!r}")
    return value


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _paisa(x: float) -> str:
    return str(round_price(x))
