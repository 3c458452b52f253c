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
from functools import lru_cache
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

import orjson

from engine.domain import DAY_NS, NS_PER_MIN, Timeframe, bar_span, datetime_to_ns
from engine.errors import BadData, ConfigError
from engine.orders.charges import NSE_EQUITY, ChargeTable
from engine.orders.desk import BrokerUpdate, Desk, MinuteBar, Quote, TradeSignal, iso
from engine.orders.execution import Execution
from engine.orders.risk import RiskLimits, TradingState
from engine.ports import BrokerOrder
from engine.strategy.signals import round_price

#: the ``through`` of a source whose input has ended (``up --until-drained`` flushed it)
END_OF_TIME = 2**62 // NS_PER_MIN * NS_PER_MIN  # minute-aligned: clocks are floored to the minute
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
    sources: dict[int, int] = field(default_factory=dict)  # source partition -> highest through (ns)
    idle: set[int] = field(default_factory=set)  # sources that said they are caught up and silent
    expected: int | None = None  # market.ticks partitions: all must report before anything is decided
    watermark: int = -1
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> signal input, not yet decided
    bars: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (symbol, open) -> raw bar, undecided
    decided: dict[str, int] = field(default_factory=dict)  # signal id -> decision time
    desks: dict[str, Desk] = field(default_factory=dict)
    quotes: dict[str, Quote] = field(default_factory=dict)
    counters: StageCounters = field(default_factory=StageCounters)
    _parsed: dict[str, TradeSignal] = field(default_factory=dict)  # the buffered signals, parsed
    _touched: dict[str, Desk] = field(default_factory=dict)  # desks changed since the last advance()
    _late: bool = False  # an input at or before the watermark waits to be decided
    _held_by: dict[str, set[str]] = field(default_factory=dict)  # symbol -> users holding it
    _holds: dict[str, set[str]] = field(default_factory=dict)  # user -> symbols held
    _forgot_day: int = -1

    # --- input -------------------------------------------------------------------------------

    def add(self, value: bytes) -> None:
        """Take one ``orders.inputs`` message and decide whatever it makes due; raise :class:`BadData` for one
        the engine did not write. Decisions depend only on the sequence of messages, never on batches."""
        try:
            doc = orjson.loads(value)
            kind = doc["kind"]
            if kind == "signal":
                self._add_signal(doc)
            elif kind == "clock":
                throughs = {int(k): None if v is None else _ns(v) for k, v in doc["sources"].items()}
                self._add_clock(throughs, doc["bars"], doc.get("partitions"))
            elif kind == "risk":
                self._command(doc)
            elif kind == "broker":
                self._broker(doc)
            else:
                raise BadData("unknown_kind", f"orders.inputs message of kind {kind!r}")
        except (ValueError, KeyError, TypeError, ArithmeticError, ConfigError) as exc:
            raise BadData("unreadable", f"orders.inputs message: {type(exc).__name__}: {exc}") from exc
        self._decide()

    @staticmethod
    def user_of(value: bytes) -> str | None:
        """The user a signal or risk message is for (the caller loads their limits before :meth:`add`)."""
        try:
            doc = orjson.loads(value)
            return str(doc["signal"]["user_id"]) if doc["kind"] == "signal" else str(doc.get("user_id") or "") or None
        except (ValueError, KeyError, TypeError):
            return None

    def _add_signal(self, doc: dict[str, Any]) -> None:
        sig = trade_signal(doc)  # validates now, not at decision time
        if sig.id in self.decided or sig.id in self.signals:
            self.counters.repeats += 1
            return
        if sig.decision_ns <= self.watermark:
            self.counters.late += 1
            self._late = True
        self.signals[sig.id] = doc
        self._parsed[sig.id] = sig

    def _add_clock(self, throughs: dict[int, int | None], bars: list[dict[str, Any]], partitions: Any) -> None:
        for raw in bars:
            minute_bar(raw)  # a bar that cannot be read is bad data now, not a failure at decision time
            key = (str(raw["symbol"]), _open_ns(raw["time"]))
            close_ns = key[1] + NS_PER_MIN
            quote = self.quotes.get(key[0])
            if (quote is not None and close_ns <= quote.at_ns) or key in self.bars:
                self.counters.repeats += 1
                continue
            if close_ns <= self.watermark:
                self.counters.late += 1
                self._late = True
            self.bars[key] = raw
        if partitions is not None:
            self.expected = int(partitions)
        for source, through in throughs.items():
            if through is None:
                self.idle.add(source)  # caught up and silent: not waited for until it speaks again
                self.sources.setdefault(source, -1)
            else:
                self.idle.discard(source)
                before = self.sources.get(source)
                # clocks only move forward, except after an end of input: new input means the source resumed
                self.sources[source] = through if before is None or before >= END_OF_TIME else max(before, through)

    def apply_manual(self, states: Mapping[str, tuple[TradingState, str | None]]) -> None:
        """Bring the desks to the hand-set states saved in PostgreSQL (``sharewise risk`` run while no stage was
        reading): a desk whose state differs changes now, at the watermark, as if the command had just come."""
        for user, (state, reason) in sorted(states.items()):
            desk = self.desks.get(user)
            if desk is not None and (desk.manual, desk.manual_reason) != (state, reason):
                self._command({"user_id": user, "state": str(state), "reason": reason, "at": None})

    def _command(self, doc: dict[str, Any]) -> None:
        state = TradingState.parse(doc["state"])
        desk = self._desk(str(doc["user_id"]))
        at = max(self.watermark, desk.as_of)
        if at <= 0 and doc.get("at"):  # no market time yet: the command's own time
            at = datetime_to_ns(datetime.fromisoformat(doc["at"]))
        desk.set_state(state, doc.get("reason"), at)
        self._touched[desk.user_id] = desk
        self._reindex(desk)
        self.counters.commands += 1

    def on_broker(self, user_id: str, update: BrokerUpdate) -> None:
        """A broker's answer about a live order of ``user_id``, applied at the watermark (docs/orders.md, "Live
        orders"); an answer for a user this partition has no desk for is ignored."""
        desk = self.desks.get(user_id)
        if desk is None:
            return
        desk.on_broker(update, max(self.watermark, desk.as_of))
        self._touched[user_id] = desk
        self._reindex(desk)

    def _broker(self, doc: dict[str, Any]) -> None:
        """A broker's word that came through the log (a Kite postback): the order's state is read again from the
        broker (a ``refresh`` command), since a postback's checksum covers only its order id and time, not the
        fill it reports. It makes a fill known at once instead of at the next poll."""
        u = doc["update"]
        user, tag = str(doc["user_id"]), str(u["tag"])
        desk = self.desks.get(user)
        if desk is not None and (command := desk.refresh(tag, str(doc["account"]))) is not None:
            desk.out.append(("broker", command))
            self._touched[user] = desk

    def live_commands(self) -> list[Output]:
        """The broker commands that resume every live order in flight (at a take-over: engine.orders.desk)."""
        return [("broker", d.user_id, cmd) for d in self.desks.values() for cmd in d.live_commands()]

    # --- decisions ---------------------------------------------------------------------------

    @property
    def clock(self) -> int | None:
        """Once every expected source has reported: the lowest ``through`` of the sources that are not idle, or,
        when all are idle (caught up and silent: everything they had is here), the highest of them."""
        if not self.sources or (self.expected is not None and any(p not in self.sources for p in range(self.expected))):
            return None
        active = [t for p, t in self.sources.items() if p not in self.idle]
        return min(active) if active else max(self.sources.values())

    def _decide(self) -> None:
        """Move the watermark to :attr:`clock` and decide every buffered input at or before it.

        At the end of input (every source at :data:`END_OF_TIME`) everything buffered is decided, the
        watermark stops at the last decided input's time (market time, never the end of time, so the next
        run's inputs are neither late nor stamped in a far future) and the sources are forgotten: nothing
        more is decided until every source of the next input has reported.
        """
        clock = self.clock
        if clock is not None and clock >= END_OF_TIME:
            due = self._due(END_OF_TIME)
            if due:
                self.watermark = max(self.watermark, max(_time_of(e) for e in due))
            self.sources.clear()  # input has ended: the next input's sources must all report afresh
            self.idle.clear()
        elif clock is not None and clock > self.watermark:
            self.watermark = clock
            due = self._due(clock)
        elif self._late:
            due = self._due(self.watermark)
        else:
            return  # nothing new is due
        self._late = False
        for event in due:
            if isinstance(event, TradeSignal):
                desk = self._desk(event.user_id)
                desk.on_signal(event)
                self.decided[event.id] = event.decision_ns
                self._touched[desk.user_id] = desk
                self._reindex(desk)
            else:
                self._on_bar(*event)
            self.counters.decisions += 1
        self._forget_old()

    def advance(self) -> list[Output]:
        """What was decided since the last call: each touched user's orders and notifications, then their book."""
        out: list[Output] = []
        for desk in self._touched.values():
            out += [(topic, desk.user_id, msg) for topic, msg in desk.out]
            desk.out.clear()
            out.append(("portfolios", desk.user_id, desk.book()))
        self._touched.clear()
        return out

    def _due(self, w: int) -> list[tuple[tuple[str, int], dict[str, Any]] | TradeSignal]:
        """The buffered inputs at or before ``w``, removed from the buffer, in decision order."""
        bars = [(key, raw) for key, raw in self.bars.items() if key[1] + NS_PER_MIN <= w]
        for key, _ in bars:
            del self.bars[key]
        sigs = [s for s in self._parsed.values() if s.decision_ns <= w]
        for s in sigs:
            del self.signals[s.id], self._parsed[s.id]
        events: list[tuple[tuple[Any, ...], Any]] = [((k[1] + NS_PER_MIN, 0, k[0]), (k, raw)) for k, raw in bars]
        events += [((s.decision_ns, 1, s.symbol, s.strategy_key, s.timeframe, s.id), s) for s in sigs]
        events.sort(key=lambda e: e[0])
        return [e for _, e in events]

    def _on_bar(self, key: tuple[str, int], raw: dict[str, Any]) -> None:
        """A 1m bar: the desks holding its symbol enter its time, the quote moves, then they apply it."""
        symbol, close_ns = key[0], key[1] + NS_PER_MIN
        holders = [self.desks[u] for u in sorted(self._held_by.get(symbol, ()))]
        for desk in holders:
            desk.enter(close_ns)
        quote = self.quotes.get(symbol)
        if quote is None or close_ns > quote.at_ns:
            self.quotes[symbol] = Quote(Decimal(raw["close"]), close_ns)
        if not holders:
            return
        bar = minute_bar(raw)
        for desk in holders:
            desk.on_bar(bar)
            self._touched[desk.user_id] = desk
            self._reindex(desk)

    def _reindex(self, desk: Desk) -> None:
        """Keep :attr:`_held_by` (symbol -> users with an open position in it) true for ``desk``."""
        now = {p.symbol for p in desk.positions.values()}
        before = self._holds.get(desk.user_id, set())
        for symbol in before - now:
            self._held_by[symbol].discard(desk.user_id)
        for symbol in now - before:
            self._held_by.setdefault(symbol, set()).add(desk.user_id)
        self._holds[desk.user_id] = now

    def _desk(self, user_id: str) -> Desk:
        desk = self.desks.get(user_id)
        if desk is None:
            desk = Desk(user_id, self.limits_of(user_id), self.paper_cash, self.quotes, self.table)
            if (manual := self.manual.get(user_id)) is not None:
                desk.manual, desk.manual_reason = manual
            self.desks[user_id] = desk
        return desk

    def _forget_old(self) -> None:
        """Once a day of market time, forget the ids of signals decided two days ago."""
        if self.watermark <= 0 or self.watermark // DAY_NS == self._forgot_day:
            return
        self._forgot_day = self.watermark // DAY_NS
        horizon = self.watermark - _REMEMBER_NS
        self.decided = {k: t for k, t in self.decided.items() if t >= horizon}

    # --- checkpoints ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": {str(k): v for k, v in self.sources.items()}, "idle": sorted(self.idle),
            "expected": self.expected, "watermark": self.watermark,
            "signals": list(self.signals.values()), "bars": list(self.bars.values()),
            "decided": self.decided,
            "desks": [d.to_json() for d in self.desks.values()],
            "quotes": {s: [str(q.price), q.at_ns] for s, q in self.quotes.items()},
        }  # fmt: skip

    def restore(self, doc: Mapping[str, Any]) -> None:
        """Load a :meth:`to_json` checkpoint into this (empty) book."""
        self.sources = {int(k): int(v) for k, v in doc["sources"].items()}
        self.idle = set(doc["idle"])
        self.expected = doc["expected"]
        self.watermark = int(doc["watermark"])
        self.signals = {s["signal"]["id"]: s for s in doc["signals"]}
        self._parsed = {k: trade_signal(v) for k, v in self.signals.items()}
        self.bars = {(str(b["symbol"]), _open_ns(b["time"])): b for b in doc["bars"]}
        self.decided = dict(doc["decided"])
        self.quotes.clear()
        self.quotes.update({s: Quote(Decimal(p), int(t)) for s, (p, t) in doc["quotes"].items()})
        self.desks = {}
        for d in doc["desks"]:
            desk = self.desks[d["user_id"]] = Desk.from_json(d, self.limits_of(d["user_id"]), self.quotes, self.table)
            self._reindex(desk)


# --- the orders.inputs messages (docs/orders.md) ---------------------------------------------


def _time_of(event: Any) -> int:
    return event.decision_ns if isinstance(event, TradeSignal) else event[0][1] + NS_PER_MIN


def signal_input(source: int, execution: Execution, signal_message: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "signal", "source": source, "execution": execution.to_json(), "signal": signal_message}


def broker_input(user_id: str, account: str, order: BrokerOrder) -> dict[str, Any]:
    """A ``broker`` input: what a broker said about a live order outside the router's polls (a Kite postback)."""
    return {"kind": "broker", "user_id": user_id, "account": account, "update": {
        "tag": order.tag, "status": order.status, "broker_order_id": order.broker_order_id,
        "filled_quantity": order.filled_quantity,
        "average_price": None if order.average_price is None else str(order.average_price),
        "exchange_timestamp": None if order.updated_at is None else order.updated_at.isoformat(),
        "reason": order.rejection_reason}}


def clock_input(throughs: Mapping[int, int | None], bars: list[dict[str, Any]],
                partitions: int | None = None) -> dict[str, Any]:
    """A clock: each source's ``through`` (ns; None: caught up and silent), the 1m bars (:func:`clock_bar`)
    those sources closed, and how many sources there are (``partitions``: each must report before any
    decision; None: the sources heard from so far, as in a backtest)."""
    doc: dict[str, Any] = {"kind": "clock", "sources": {str(s): t for s, t in throughs.items()}, "bars": bars}
    if partitions is not None:
        doc["partitions"] = partitions
    return doc


def clock_bar(symbol: str, open_ns: int, o: float, h: float, low: float, c: float) -> dict[str, Any]:
    """A 1m bar in a clock message: prices rounded to the paisa as the database stores them."""
    return {"symbol": symbol, "time": iso(open_ns), "open": _paisa(o), "high": _paisa(h), "low": _paisa(low),
            "close": _paisa(c)}


def trade_signal(doc: Mapping[str, Any]) -> TradeSignal:
    """The :class:`TradeSignal` of a ``signal`` input; raises KeyError/ValueError/TypeError for a bad one."""
    msg = doc["signal"]
    timeframe = _timeframe(msg["timeframe"])
    bar_ns = datetime_to_ns(datetime.fromisoformat(msg["bar_time"]))
    return TradeSignal(
        id=str(msg["id"]), user_id=str(msg["user_id"]), strategy_id=msg.get("created_by_strategy_id"),
        strategy_name=str(msg["strategy_name"]), symbol=str(msg["symbol"]), timeframe=timeframe.label,
        bullish=msg["signal_type"] in ("BUY", "COVER"), decision_ns=bar_span(bar_ns, timeframe)[1],
        entry_price=Decimal(msg["entry_price"]), target_price=_dec(msg.get("target_price")),
        stop_loss=_dec(msg.get("stop_loss")), execution=_execution(orjson.dumps(doc["execution"])),
        message=dict(msg),
    )  # fmt: skip


def minute_bar(doc: Mapping[str, Any]) -> MinuteBar:
    return MinuteBar(str(doc["symbol"]), _open_ns(doc["time"]), Decimal(doc["open"]), Decimal(doc["high"]),
                     Decimal(doc["low"]), Decimal(doc["close"]))


@lru_cache(maxsize=4096)
def _open_ns(text: str) -> int:
    """A bar time (ISO 8601 with offset) in ns; cached: every symbol's bar of a minute has the same time."""
    return datetime_to_ns(datetime.fromisoformat(text))


@lru_cache(maxsize=1024)
def _execution(doc: bytes) -> Execution:
    """A row's execution settings, parsed once per distinct document (every signal of a row carries it)."""
    return Execution.from_json(orjson.loads(doc))


@lru_cache(maxsize=64)
def _timeframe(label: str) -> Timeframe:
    return Timeframe.parse(label)


def _ns(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"through must be integer nanoseconds, got {value!r}")
    return value


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _paisa(x: float) -> str:
    return str(round_price(x))
