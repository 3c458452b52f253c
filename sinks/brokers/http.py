"""What the three HTTP adapters share: the session, pacing, retries, error classification hooks, idempotent place.

Each adapter (:mod:`.kite`, :mod:`.smartapi`, :mod:`.upstox`) is one account's connection to its broker; it says
how to write a request (:meth:`HttpBrokerAdapter._place_call` and friends), how to read an answer
(:meth:`HttpBrokerAdapter._answer`) and how to read an order (``_order``). This module does the rest:

* **pacing** — every request takes a token from the account's :class:`TokenBucket` (Kite 10/s, SmartAPI 20/s,
  Upstox 10/s); pass the same ``bucket`` to every adapter of one account;
* **429** (and SmartAPI's 403 "exceeding access rate") — the gateway did nothing: the same request is sent again
  after a backoff (``backoff * 2**(n-1)``, at most ``backoff_cap``), at most ``rate_retries`` times, then
  :class:`BrokerUnavailable`;
* **5xx, network errors, timeouts** — reads are retried ``attempts`` times; a placement is never sent again before
  the day's orders were listed and matched by tag (``place`` returns the order the broker already has);
* **idempotent place** — ``place`` first looks for an order with its tag (the engine's order id): calling it again
  after a lost answer, or after a restart, returns that order instead of sending a second one;
* **token errors** raise :class:`BrokerTokenExpired` at once, from the first answer: nothing loops.

Secrets (:class:`engine.credentials.Secret`) are revealed only while the headers of a request are built; no
message, ``repr`` or log line carries them. The clock and the sleep are injectable, so tests run in fake time.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable, Mapping

import aiohttp

from engine.credentials import Secret
from engine.ports import BrokerOrder, OrderRequest

from .errors import BrokerError, BrokerRejected, BrokerUnavailable, scrub

IST = timezone(timedelta(hours=5, minutes=30), "IST")
FINAL = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})
SIDES = frozenset({"BUY", "SELL"})
ORDER_TYPES = frozenset({"MARKET", "LIMIT", "SL-M"})
PRODUCTS = frozenset({"MIS", "CNC"})
TAG_MAX = 20

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
#: our symbol -> its broker identifiers: ``{"isin": "INE002A01018", "smartapi_token": "2885"}``
InstrumentMap = Mapping[str, Mapping[str, str]]


class TokenBucket:
    """At most ``rate`` requests a second on average, bursts of ``capacity`` (default ``rate``); waits with
    ``sleep`` measured by ``clock`` (seconds, monotonic)."""

    def __init__(self, rate: float, *, capacity: float | None = None, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._at = clock()
        self._lock: asyncio.Lock | None = None

    async def take(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await self._sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1  # at most a rounding error below zero after the wait

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now


class RateLimited(Exception):
    """An answer saying the request was throttled (nothing was done): send it again after a backoff."""


class Transient(Exception):
    """A 5xx, a network error or a timeout: the outcome is unknown. ``detail`` names it (never a secret)."""

    def __init__(self, detail: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code


def our_status(word: str | None) -> str:
    """A broker's status word (any case) as ours: COMPLETE, CANCELLED, REJECTED, else OPEN (open, trigger
    pending, the transient stages: put order req received, validation pending, cancel pending...)."""
    text = (word or "").strip().upper()
    if text == "COMPLETE":
        return "COMPLETE"
    if text.startswith("CANCELLED"):
        return "CANCELLED"
    if text == "REJECTED":
        return "REJECTED"
    return "OPEN"


def decimal_or_none(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def int_or_zero(value: Any) -> int:
    number = decimal_or_none(value)
    return int(number) if number is not None else 0


def ist_time(text: Any, fmt: str) -> datetime | None:
    """A broker's IST wall-clock stamp as an aware datetime; None if absent or unreadable."""
    if not text or not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip(), fmt).replace(tzinfo=IST)
    except ValueError:
        return None


def plain(value: Decimal) -> str:
    """A price as the brokers take it in text: ``2500.5``, ``0``."""
    text = format(value.normalize(), "f")
    return text


def broker_order(broker_order_id: str, tag: str, status: str, filled: int, average: Decimal | None,
                 message: str | None, at: datetime | None) -> BrokerOrder:
    return BrokerOrder(
        broker_order_id=broker_order_id, tag=tag, status=status, filled_quantity=filled,
        average_price=average if filled > 0 and average else None,
        rejection_reason=(message or None) if status == "REJECTED" else None,
        updated_at=at,
    )


class HttpBrokerAdapter:
    """Base of the HTTP adapters; see the module docstring. Subclasses set ``name`` and ``rate_per_second``."""

    name = "http"
    rate_per_second = 10.0

    def __init__(
        self,
        base_url: str,
        *,
        secrets: list[Secret | None],
        account_id: str | None = None,
        instruments: InstrumentMap | None = None,
        bucket: TokenBucket | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 10.0,
        attempts: int = 3,
        rate_retries: int = 5,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not base_url:
            raise ValueError(f"{self.name}: the broker's api_base_url is empty")
        self.base_url = base_url.rstrip("/")
        self.account_id = account_id
        self.instruments: InstrumentMap = instruments or {}
        self._secrets = [s for s in secrets if s is not None]
        self._sleep = sleep
        self.bucket = bucket or TokenBucket(self.rate_per_second, clock=clock, sleep=sleep)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.rate_retries = rate_retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._session = session
        self._own_session = session is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, account_id={self.account_id!r})"

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> "HttpBrokerAdapter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    # ------------------------------------------------------------------ the wire

    def _scrub(self, text: str) -> str:
        return scrub(text, (s.reveal() for s in self._secrets))

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff * 2 ** (attempt - 1))

    def _headers(self) -> dict[str, str]:
        """Every request's headers (the only place a secret is revealed)."""
        raise NotImplementedError

    def _answer(self, status: int, body: Any, text: str) -> Any:
        """The ``data`` of a successful answer; else raise BrokerTokenExpired, BrokerRejected, RateLimited or
        Transient. ``body`` is the parsed JSON (None if the body is not JSON)."""
        raise NotImplementedError

    async def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                    form: Mapping[str, str] | None = None, payload: Any = None) -> Any:
        """One request, sent again only while it is throttled; the answer's data, or raises."""
        throttled = 0
        while True:
            await self.bucket.take()
            headers = self._headers()
            data: Any = None
            if form is not None:
                data = aiohttp.FormData(dict(form))
            elif payload is not None:
                data = json.dumps(payload)
                headers["Content-Type"] = "application/json"
            try:
                async with self._http().request(
                    method, self.base_url + path, params=params, data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    status = response.status
                    text = await response.text()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise Transient(f"{method} {path}: {type(exc).__name__}") from None
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            try:
                return self._answer(status, body, text)
            except RateLimited:
                throttled += 1
                if throttled > self.rate_retries:
                    raise BrokerUnavailable(self.name, f"{method} {path}: still rate limited after "
                                                       f"{self.rate_retries} retries", status=status) from None
                await self._sleep(self._delay(throttled))

    async def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request that changes nothing, retried through transient failures; then BrokerUnavailable."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._call(method, path, **kwargs)
            except Transient as exc:
                if attempt == self.attempts:
                    raise BrokerUnavailable(self.name, self._scrub(exc.detail), status=exc.status, code=exc.code) from None
                await self._sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ what subclasses write

    def _place_call(self, order: OrderRequest) -> tuple[str, str, dict[str, Any]]:
        """(method, path, keyword arguments of :meth:`_call`) placing ``order``."""
        raise NotImplementedError

    def _placed(self, data: Any) -> str:
        """The broker order id in a placement's answer."""
        raise NotImplementedError

    async def _cancel_call(self, broker_order_id: str) -> tuple[str, str, dict[str, Any]]:
        raise NotImplementedError

    async def _day_orders(self) -> list[dict[str, Any]]:
        """The day's orders, as the broker's rows."""
        raise NotImplementedError

    async def _fetch(self, broker_order_id: str) -> BrokerOrder:
        """One order's current state."""
        raise NotImplementedError

    def _order(self, row: Mapping[str, Any]) -> BrokerOrder:
        raise NotImplementedError

    def _row_tag(self, row: Mapping[str, Any]) -> str | None:
        raise NotImplementedError

    # ------------------------------------------------------------------ engine.ports.BrokerAdapter

    def _check(self, order: OrderRequest) -> None:
        problem = None
        if not (order.tag and order.tag.isascii() and order.tag.isalnum() and len(order.tag) <= TAG_MAX):
            problem = f"the tag must be 1 to {TAG_MAX} ASCII letters or digits"
        elif order.side not in SIDES:
            problem = f"side {order.side!r} is not BUY or SELL"
        elif order.order_type not in ORDER_TYPES:
            problem = f"order type {order.order_type!r} is not MARKET, LIMIT or SL-M"
        elif order.product not in PRODUCTS:
            problem = f"product {order.product!r} is not MIS or CNC"
        elif order.quantity < 1:
            problem = "the quantity must be >= 1"
        elif order.order_type == "LIMIT" and not (order.price and order.price > 0):
            problem = "a LIMIT order needs a price > 0"
        elif order.order_type == "SL-M" and not (order.trigger_price and order.trigger_price > 0):
            problem = "an SL-M order needs a trigger price > 0"
        if problem:
            raise BrokerRejected(self.name, problem, code="invalid_order", tag=order.tag)

    def _instrument(self, symbol: str, key: str, tag: str) -> str:
        value = (self.instruments.get(symbol) or {}).get(key)
        if not value:
            raise BrokerRejected(self.name, f"no {key} for {symbol} in the instrument map", code="unknown_instrument", tag=tag)
        return value

    async def orders(self) -> list[BrokerOrder]:
        """The day's orders that carry a tag, as the broker lists them (one request: what a poll of fills reads)."""
        return [self._order(row) for row in await self._day_orders() if self._row_tag(row)]

    async def orders_by_tag(self, tag: str) -> list[BrokerOrder]:
        """The day's orders carrying ``tag``, as the broker lists them."""
        return [self._order(row) for row in await self._day_orders() if self._row_tag(row) == tag]

    async def place(self, order: OrderRequest) -> BrokerOrder:
        """Place ``order`` once: the order the broker already has with its tag is returned instead of a new one.

        Raises BrokerRejected (refused, or an input the adapter cannot send), BrokerTokenExpired (at once), or
        BrokerUnavailable after ``attempts`` sends, each failure followed by a look at the day's orders."""
        self._check(order)
        method, path, kwargs = self._place_call(order)
        existing = await self.orders_by_tag(order.tag)
        if existing:
            return existing[0]
        last: Transient | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                data = await self._call(method, path, **kwargs)
            except Transient as exc:
                last = exc
                await self._sleep(self._delay(attempt))
                existing = await self.orders_by_tag(order.tag)  # reconcile before any resend
                if existing:
                    return existing[0]
                continue
            except BrokerError as exc:
                exc.tag = order.tag
                raise
            return await self._placed_order(self._placed(data), order.tag)
        assert last is not None
        raise BrokerUnavailable(self.name, f"placing {order.tag}: {self._scrub(last.detail)}; no order with this "
                                           f"tag at the broker after {self.attempts} attempts",
                                status=last.status, code=last.code, tag=order.tag, reconciled=True)

    async def _placed_order(self, broker_order_id: str, tag: str) -> BrokerOrder:
        """The placed order's state; if it cannot be read yet (any broker error), OPEN: the broker has it, so no
        error may make the caller believe it was refused."""
        try:
            return await self._fetch(broker_order_id)
        except BrokerError:
            return BrokerOrder(broker_order_id, tag, "OPEN")

    async def cancel(self, broker_order_id: str) -> BrokerOrder:
        """Cancel an open order and return its state; an order already final is returned as it is."""
        last: Transient | None = None
        for attempt in range(1, self.attempts + 1):
            method, path, kwargs = await self._cancel_call(broker_order_id)
            try:
                await self._call(method, path, **kwargs)
            except BrokerRejected:
                current = await self._fetch(broker_order_id)
                if current.status in FINAL:
                    return current
                raise
            except Transient as exc:
                last = exc
                await self._sleep(self._delay(attempt))
                current = await self._fetch(broker_order_id)
                if current.status in FINAL:
                    return current
                continue
            current = await self._fetch(broker_order_id)
            return current
        assert last is not None
        raise BrokerUnavailable(self.name, f"cancelling {broker_order_id}: {self._scrub(last.detail)}",
                                status=last.status, code=last.code)
