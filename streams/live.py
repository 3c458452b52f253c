"""The order router: live orders' commands to their brokers, and the brokers' answers back to the order stage.

The desks (engine.orders.desk) decide; for a live row they emit ``broker`` commands — place, cancel,
follow — instead of paper fills. :class:`LiveRouter` runs them against each account's
:class:`engine.ports.BrokerAdapter`, one account at a time in command order (one lane per account, so
a cancel never overtakes the placement it cancels), and hands every answer to ``deliver``, which applies
it to the books under the worker's lock (docs/orders.md, "Live orders"). Never an order twice: a place
is idempotent by tag in the adapter (it lists the day's orders first), and after a restart the stage
sends a place again only for orders no answer ever acknowledged.

* **fills** are polled: each lane lists its account's day orders once per ``poll_s`` while it follows any
  order, and delivers an order when its status or filled quantity changed; a ``refresh`` (a Kite postback
  said an order changed) reads that order at once;
* **token refused** (``reason`` ``broker_token_expired`` on the adapter's error): the lane goes dead, the
  account is marked inactive (``mark_inactive``), every order on it is rejected with that reason, its
  cancels and follows are parked; the lane looks at the account again (``reopen_s``) and resumes them once
  it is connected again. Nothing is retried in a loop against a refusing broker;
* **refused order** (``broker_rejected``): REJECTED with the broker's message;
* **unavailable** (a :class:`engine.errors.TransientError`): the place is retried with backoff (the adapter
  reconciles by tag before each resend) for ``retry_for_s``, then REJECTED ``broker_unavailable`` if the
  broker still has no order with its tag; cancels and polls are retried until they succeed.

Any other exception is a bug: ``on_failure`` stops the worker (it fails loudly, never half-routes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Awaitable, Callable

from engine.domain import datetime_to_ns
from engine.errors import AccountUnavailable, TransientError
from engine.orders.desk import TOKEN_EXPIRED, BrokerUpdate
from engine.ports import BrokerAdapter, BrokerOrder, OrderRequest

log = logging.getLogger("sharewise.router")

OpenAccount = Callable[[str], Awaitable[BrokerAdapter]]
Deliver = Callable[[int, str, BrokerUpdate], Awaitable[None]]
MarkInactive = Callable[[str], Awaitable[None]]
UNAVAILABLE = "broker_unavailable"


@dataclass(slots=True)
class _Followed:
    partition: int
    user_id: str
    market: bool  # a MARKET order: the run is not settled until it is final
    seen: tuple[str, int] = ("", -1)  # the (status, filled quantity) last delivered


@dataclass(slots=True)
class _Lane:
    """One broker account: its adapter, its commands in order, the orders it follows."""

    account: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    follows: dict[str, _Followed] = field(default_factory=dict)  # tag -> who waits for it
    parked: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # cancels and follows of a dead account
    adapter: BrokerAdapter | None = None
    dead: str | None = None  # why the account takes no orders
    dead_at: float = 0.0
    unfinished: int = 0  # commands submitted and not yet done (a command taken off the queue still counts)
    polled: float = 0.0
    task: asyncio.Task | None = None


class LiveRouter:
    def __init__(self, open_account: OpenAccount, deliver: Deliver, mark_inactive: MarkInactive,
                 on_failure: Callable[[BaseException], None], *, poll_s: float = 1.0, retry_for_s: float = 30.0,
                 reopen_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.open_account, self.deliver, self.mark_inactive = open_account, deliver, mark_inactive
        self.on_failure = on_failure
        self.poll_s, self.retry_for_s, self.reopen_s, self.clock = poll_s, retry_for_s, reopen_s, clock
        self.lanes: dict[str, _Lane] = {}
        self.counts = {"placed": 0, "cancelled": 0, "rejected": 0, "polls": 0, "errors": 0}

    # --- what the stage calls ---------------------------------------------------------------

    def submit(self, partition: int, command: dict[str, Any]) -> None:
        """Queue a desk's ``broker`` command (engine.orders.desk.broker_command); never blocks."""
        account = str(command["account"])
        lane = self.lanes.get(account)
        if lane is None:
            lane = self.lanes[account] = _Lane(account)
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._run(lane), name=f"sharewise.router.{account[:8]}")
        lane.unfinished += 1
        lane.queue.put_nowait((partition, command))

    def settled(self) -> bool:
        """Nothing queued or being sent, and no MARKET order waiting for its fill (what ``--until-drained`` waits
        for; resting exits stay open at the broker by design)."""
        return all(lane.unfinished == 0 and not any(f.market for f in lane.follows.values())
                   for lane in self.lanes.values() if lane.dead is None)

    def forget(self, partition: int) -> None:
        """A revoked partition: its next owner follows its orders from its checkpoint."""
        for lane in self.lanes.values():
            lane.follows = {t: f for t, f in lane.follows.items() if f.partition != partition}

    async def close(self) -> None:
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self.lanes.values():
            close = getattr(lane.adapter, "close", None)
            if close is not None:
                await close()

    # --- one lane ----------------------------------------------------------------------------

    async def _run(self, lane: _Lane) -> None:
        try:
            while True:
                try:
                    item = await asyncio.wait_for(lane.queue.get(), self.poll_s)
                except TimeoutError:
                    item = None
                if item is not None:
                    try:
                        await self._command(lane, *item)
                    finally:
                        lane.unfinished -= 1
                if lane.dead is not None and lane.parked and self.clock() - lane.dead_at >= self.reopen_s:
                    await self._reopen(lane)
                if lane.follows and lane.dead is None and self.clock() - lane.polled >= self.poll_s:
                    await self._poll(lane)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: stop the worker rather than route half the orders
            self.on_failure(exc)
            raise

    async def _adapter(self, lane: _Lane) -> BrokerAdapter | None:
        if lane.adapter is None and lane.dead is None:
            try:
                lane.adapter = await self.open_account(lane.account)
            except AccountUnavailable as exc:
                self._kill(lane, exc.reason, str(exc))
        return lane.adapter

    def _kill(self, lane: _Lane, reason: str, detail: str) -> None:
        if lane.dead is None:
            log.error("broker account %s takes no orders: %s", lane.account, detail)
        lane.dead, lane.dead_at = reason, self.clock()
        lane.parked += [(f.partition, {"op": "follow", "account": lane.account, "user_id": f.user_id, "tag": tag,
                                       "broker_order_id": None,
                                       "order_type": "MARKET" if f.market else ""})
                        for tag, f in lane.follows.items()]
        lane.follows.clear()

    async def _reopen(self, lane: _Lane) -> None:
        """Look at a dead account again: once it is connected, its parked cancels and follows resume."""
        lane.dead_at = self.clock()
        try:
            adapter = await self.open_account(lane.account)
        except AccountUnavailable:
            return
        old = lane.adapter
        lane.adapter, lane.dead = adapter, None
        if old is not None and (close := getattr(old, "close", None)) is not None:
            await close()
        log.warning("broker account %s is connected again: %d parked command(s) resume", lane.account,
                    len(lane.parked))
        for item in lane.parked:
            lane.unfinished += 1
            lane.queue.put_nowait(item)
        lane.parked.clear()

    async def _command(self, lane: _Lane, partition: int, cmd: dict[str, Any]) -> None:
        op, tag, user = cmd["op"], str(cmd["tag"]), str(cmd["user_id"])
        adapter = await self._adapter(lane)
        if adapter is None or lane.dead is not None:
            if op == "place":
                self.counts["rejected"] += 1
                await self.deliver(partition, user, BrokerUpdate(tag, "REJECTED", reason=lane.dead))
            else:
                lane.parked.append((partition, cmd))
            return
        market = cmd.get("order_type") == "MARKET"
        if op == "place":
            await self._place(lane, adapter, partition, user, tag, cmd["order"], market)
        elif op == "cancel":
            await self._cancel(lane, adapter, partition, user, tag, cmd.get("broker_order_id"))
        elif op == "refresh":
            await self._refresh(lane, adapter, partition, user, tag, market)
        else:
            lane.follows.setdefault(tag, _Followed(partition, user, market))

    async def _place(self, lane: _Lane, adapter: BrokerAdapter, partition: int, user: str, tag: str,
                     order: dict[str, Any], market: bool) -> None:
        request = OrderRequest(tag, order["symbol"], order["side"], int(order["quantity"]), order["order_type"],
                               order["product"], _dec(order.get("price")), _dec(order.get("trigger_price")))
        deadline, delay = self.clock() + self.retry_for_s, 0.5
        while True:
            try:
                placed = await adapter.place(request)
            except TransientError as exc:
                self.counts["errors"] += 1
                if self.clock() < deadline:
                    log.warning("placing %s at %s: %s; retrying", tag, lane.account, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if not getattr(exc, "reconciled", False):
                    lane.follows[tag] = _Followed(partition, user, market)  # it may be there: found by tag later
                    return
                self.counts["rejected"] += 1
                await self.deliver(partition, user, BrokerUpdate(tag, "REJECTED", reason=f"{UNAVAILABLE}: {exc}"))
                return
            except Exception as exc:  # noqa: BLE001 - a broker's refusal is classified by its reason
                if (reason := _refusal(exc)) is None:
                    raise
                await self._refused(lane, partition, user, tag, reason, exc)
                return
            self.counts["placed"] += 1
            await self._answer(lane, partition, user, placed, market)
            return

    async def _cancel(self, lane: _Lane, adapter: BrokerAdapter, partition: int, user: str, tag: str,
                      broker_order_id: str | None) -> None:
        delay = 0.5
        while True:
            try:
                if broker_order_id is None:
                    found = await adapter.orders_by_tag(tag)
                    if not found:  # never reached the broker: nothing to cancel
                        await self.deliver(partition, user, BrokerUpdate(tag, "CANCELLED"))
                        return
                    broker_order_id = found[0].broker_order_id
                done = await adapter.cancel(broker_order_id)
            except TransientError as exc:
                self.counts["errors"] += 1
                log.warning("cancelling %s at %s: %s; retrying", tag, lane.account, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception as exc:  # noqa: BLE001 - classified by its reason
                if (reason := _refusal(exc)) is None:
                    raise
                if reason == TOKEN_EXPIRED:
                    await self._refused(lane, partition, user, tag, reason, exc)
                    lane.parked.append((partition, {"op": "cancel", "account": lane.account, "user_id": user,
                                                    "tag": tag, "broker_order_id": broker_order_id}))
                    return
                log.warning("cancel of %s refused by the broker (%s): following it", tag, exc)
                lane.follows.setdefault(tag, _Followed(partition, user, False))
                return
            self.counts["cancelled"] += 1
            await self._answer(lane, partition, user, done, False)
            return

    async def _refresh(self, lane: _Lane, adapter: BrokerAdapter, partition: int, user: str, tag: str,
                       market: bool) -> None:
        """Read one order's state now (a postback said it changed); a failure leaves it to the next poll."""
        try:
            found = await adapter.orders_by_tag(tag)
        except TransientError as exc:
            log.warning("refreshing %s at %s: %s; the next poll reads it", tag, lane.account, exc)
            return
        except Exception as exc:  # noqa: BLE001 - classified by its reason
            if _refusal(exc) != TOKEN_EXPIRED:
                raise
            await self._token_refused(lane, exc)
            return
        if found:
            await self._answer(lane, partition, user, found[0], market)

    async def _token_refused(self, lane: _Lane, exc: Exception) -> None:
        """The broker refused the account's token: the lane goes dead and the account inactive."""
        self._kill(lane, TOKEN_EXPIRED, str(exc))
        await self.mark_inactive(lane.account)

    async def _refused(self, lane: _Lane, partition: int, user: str, tag: str, reason: str, exc: Exception) -> None:
        if reason == TOKEN_EXPIRED:
            await self._token_refused(lane, exc)
            await self.deliver(partition, user, BrokerUpdate(tag, "REJECTED", reason=TOKEN_EXPIRED))
        else:
            await self.deliver(partition, user, BrokerUpdate(tag, "REJECTED", reason=getattr(exc, "message", str(exc))))
        self.counts["rejected"] += 1

    async def _answer(self, lane: _Lane, partition: int, user: str, order: BrokerOrder, market: bool) -> None:
        followed = lane.follows.get(order.tag) or _Followed(partition, user, market)
        await self._deliver_if_new(followed, order)
        if order.status == "OPEN":
            lane.follows[order.tag] = followed
        else:
            lane.follows.pop(order.tag, None)

    async def _deliver_if_new(self, followed: _Followed, order: BrokerOrder) -> None:
        seen = (order.status, order.filled_quantity)
        if seen == followed.seen:
            return
        followed.seen = seen
        await self.deliver(followed.partition, followed.user_id, update_of(order))

    async def _poll(self, lane: _Lane) -> None:
        lane.polled = self.clock()
        adapter = lane.adapter
        assert adapter is not None
        try:
            orders = await adapter.orders()
        except TransientError as exc:
            self.counts["errors"] += 1
            log.warning("polling %s: %s; next poll in %.1fs", lane.account, exc, self.poll_s)
            return
        except Exception as exc:  # noqa: BLE001 - classified by its reason
            if _refusal(exc) != TOKEN_EXPIRED:
                raise
            await self._token_refused(lane, exc)
            return
        self.counts["polls"] += 1
        by_tag = {o.tag: o for o in orders}
        for tag, followed in list(lane.follows.items()):
            order = by_tag.get(tag)
            if order is None:
                continue
            await self._deliver_if_new(followed, order)
            if order.status != "OPEN":
                lane.follows.pop(tag, None)


def update_of(order: BrokerOrder) -> BrokerUpdate:
    """A broker's order as the desk takes it."""
    exchange_ns = datetime_to_ns(order.updated_at) if order.updated_at is not None else None
    return BrokerUpdate(order.tag, order.status, order.broker_order_id, order.filled_quantity, order.average_price,
                        exchange_ns, order.rejection_reason)


def _refusal(exc: BaseException) -> str | None:
    """The rejection reason an adapter's error carries (sinks.brokers.errors: ``broker_token_expired``,
    ``broker_rejected``), or None for anything else."""
    reason = getattr(exc, "reason", None)
    return reason if reason in (TOKEN_EXPIRED, "broker_rejected") else None


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
