"""Kite Connect postbacks: ``POST /postbacks/kite`` on the feed server's postback listener (docs/orders.md).

Kite POSTs an order's state to the platform app's postback URL when it completes, is cancelled or rejected,
or fills in part. The listener verifies ``checksum`` = sha256(order_id + order_timestamp + api_secret) with
``SHAREWISE_KITE_API_SECRET`` (sinks.brokers.kite.kite_postback), finds the connected Zerodha account of the
payload's ``user_id`` (``brokers_userbrokeraccount.broker_user_id``), and writes the order's state to
``orders.inputs`` as a ``broker`` input keyed by the account's user. In log order, the order stage then has
the router read that order from the broker at once (a ``refresh``): the checksum covers only the order id and
time, so the fill itself is taken from the broker's API, never from the body. Polls go on: a postback Kite
never sends, or one refused here, is caught by the next poll. Counts by outcome are in
:attr:`PostbackListener.counts`.

Answers: 200 ``{"status":"ok"}`` (written, or ignored: an order without our tag); 400 unreadable; 403 a checksum
that does not verify; 404 a Kite user no account is connected for; 413 too large; 503 Kafka did not take it.

Why a listener of its own: the feed's websocket server (the ``websockets`` library) answers only GET requests,
so a POST cannot reach it; this one (aiohttp) runs beside it in the same process.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from engine.errors import EngineError
from engine.orders.stage import broker_input
from sinks.brokers.kite import PostbackRefused, kite_postback
from streams.commands import send_order_input

log = logging.getLogger("sharewise.postbacks")
MAX_BODY = 64 * 1024
PATH = "/postbacks/kite"

_ACCOUNT = """
SELECT a.id::text AS id, a.user_id::text AS user_id FROM public.brokers_userbrokeraccount a
JOIN public.brokers_broker b ON b.id = a.broker_id
WHERE lower(b.name) = 'zerodha' AND a.broker_user_id = $1
ORDER BY a.created_at, a.id LIMIT 1
"""


class PostbackListener:
    """The aiohttp app of ``POST /postbacks/kite``; ``await start(host, port)``, ``await stop()``."""

    def __init__(self, pool: asyncpg.Pool, bootstrap: str, api_secret: str) -> None:
        self.pool, self.bootstrap, self._secret = pool, bootstrap, api_secret
        self.counts: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        assert self._site is not None and self._site._server is not None
        return self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def start(self, host: str, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self._postback)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    def _answer(self, outcome: str, status: int, **body: Any) -> web.Response:
        self.counts[outcome] += 1
        return web.Response(status=status, body=orjson.dumps(body or {"status": "ok"}), content_type="application/json")

    async def _postback(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer("too_large", 413, error=f"a postback is at most {MAX_BODY} bytes")
        try:
            user, order = kite_postback(body, self._secret)
        except PostbackRefused as exc:
            forged = "checksum" in str(exc)
            log.warning("Kite postback refused: %s", exc)
            return self._answer("bad_checksum" if forged else "unreadable", 403 if forged else 400, error=str(exc))
        if not order.tag:
            return self._answer("not_ours", 200)
        account = await self.pool.fetchrow(_ACCOUNT, user)
        if account is None:
            log.warning("Kite postback for user %s, who has no connected account: ignored", user)
            return self._answer("unknown_user", 404, error="no connected account for this Kite user")
        message = broker_input(account["user_id"], account["id"], order)
        try:
            await send_order_input(self.bootstrap, account["user_id"].encode(), orjson.dumps(message),
                                   "Kite postback", timeout=5.0)
        except EngineError as exc:  # the router's next poll reads the same state: nothing is lost
            log.warning("Kite postback of order %s not passed on (%s); the next poll reads it", order.broker_order_id,
                        exc)
            return self._answer("kafka_unavailable", 503, error="not accepted now")
        return self._answer("accepted", 200)
