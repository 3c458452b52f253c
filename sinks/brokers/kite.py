"""Zerodha Kite Connect v3 (https://kite.trade/docs/connect/v3/orders/), one account.

* place: ``POST {base}/orders/regular``, form-encoded: ``tradingsymbol`` (our symbol), ``exchange`` NSE,
  ``transaction_type``, ``order_type`` MARKET/LIMIT/SL-M, ``quantity``, ``product`` MIS/CNC, ``validity`` DAY,
  ``tag``, and ``price`` (LIMIT) / ``trigger_price`` (SL-M);
* status: ``GET {base}/orders`` (the day's orders) and ``GET {base}/orders/{order_id}`` (its history: the last row
  is its state); cancel: ``DELETE {base}/orders/regular/{order_id}``;
* headers ``X-Kite-Version: 3`` and ``Authorization: token api_key:access_token``;
* answers ``{"status": "success", "data": …}`` / ``{"status": "error", "error_type", "message"}``: 403
  ``TokenException`` -> BrokerTokenExpired, 429 -> paced retry, 5xx -> transient, other 4xx -> BrokerRejected.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from typing import Any, Mapping

from engine.credentials import Credentials, Secret
from engine.ports import BrokerOrder, OrderRequest

from .errors import BrokerRejected, BrokerTokenExpired
from .http import HttpBrokerAdapter, RateLimited, Transient, broker_order, decimal_or_none, int_or_zero, ist_time, our_status, plain

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class KiteAdapter(HttpBrokerAdapter):
    """One Kite Connect account at ``base_url`` (``https://api.kite.trade`` or a stand-in)."""

    name = "kite"
    rate_per_second = 10.0

    def __init__(self, base_url: str, *, api_key: Secret, access_token: Secret, **kwargs: Any) -> None:
        super().__init__(base_url, secrets=[api_key, access_token], **kwargs)
        self._api_key = api_key
        self._access_token = access_token

    @classmethod
    def from_credentials(cls, credentials: Credentials, **kwargs: Any) -> "KiteAdapter":
        if credentials.api_key is None:
            raise BrokerRejected(cls.name, "a Kite account needs its API key", code="no_api_key")
        return cls(credentials.api_base_url or "https://api.kite.trade", api_key=credentials.api_key,
                   access_token=credentials.access_token, account_id=credentials.account_id, **kwargs)

    def _headers(self) -> dict[str, str]:
        return {"X-Kite-Version": "3",
                "Authorization": f"token {self._api_key.reveal()}:{self._access_token.reveal()}"}

    def _answer(self, status: int, body: Any, text: str) -> Any:
        if status == 429:
            raise RateLimited()
        envelope = body if isinstance(body, dict) else {}
        error_type = envelope.get("error_type")
        message = self._scrub(str(envelope.get("message") or text[:200] or f"HTTP {status}"))
        if status == 403 or error_type == "TokenException":
            raise BrokerTokenExpired(self.name, message, code=error_type or "TokenException", status=status)
        if status >= 500:
            raise Transient(f"HTTP {status} {error_type or ''}: {message}".replace("  ", " "), status, error_type)
        if status >= 400:
            raise BrokerRejected(self.name, message, code=error_type, status=status)
        if envelope.get("status") != "success":
            raise Transient(f"HTTP {status}: not a Kite answer", status)
        return envelope.get("data")

    def _place_call(self, order: OrderRequest) -> tuple[str, str, dict[str, Any]]:
        form = {
            "tradingsymbol": order.symbol,
            "exchange": "NSE",
            "transaction_type": order.side,
            "order_type": order.order_type,
            "quantity": str(order.quantity),
            "product": order.product,
            "validity": "DAY",
            "tag": order.tag,
        }
        if order.order_type == "LIMIT" and order.price is not None:
            form["price"] = plain(order.price)
        if order.order_type == "SL-M" and order.trigger_price is not None:
            form["trigger_price"] = plain(order.trigger_price)
        return "POST", "/orders/regular", {"form": form}

    def _placed(self, data: Any) -> str:
        return str(data["order_id"])

    async def _cancel_call(self, broker_order_id: str) -> tuple[str, str, dict[str, Any]]:
        return "DELETE", f"/orders/regular/{broker_order_id}", {}

    async def _day_orders(self) -> list[dict[str, Any]]:
        return list(await self._read("GET", "/orders") or [])

    async def _fetch(self, broker_order_id: str) -> BrokerOrder:
        history = await self._read("GET", f"/orders/{broker_order_id}") or []
        if not history:
            raise BrokerRejected(self.name, f"no history for order {broker_order_id}", code="not_found")
        return self._order(history[-1])

    def _row_tag(self, row: Mapping[str, Any]) -> str | None:
        return row.get("tag")

    def _order(self, row: Mapping[str, Any]) -> BrokerOrder:
        at = ist_time(row.get("exchange_update_timestamp"), TIME_FORMAT) or ist_time(row.get("order_timestamp"), TIME_FORMAT)
        return broker_order(str(row["order_id"]), row.get("tag") or "", our_status(row.get("status")),
                            int_or_zero(row.get("filled_quantity")), decimal_or_none(row.get("average_price")),
                            row.get("status_message"), at)


class PostbackRefused(Exception):
    """A postback that is not Kite's: unreadable, incomplete, or its checksum does not verify."""


def kite_postback(body: bytes, api_secret: str) -> tuple[str, BrokerOrder]:
    """(Kite user id, the order) of a postback, once ``checksum`` = sha256(order_id + order_timestamp + api_secret)
    verifies (https://kite.trade/docs/connect/v3/postbacks/); raises :class:`PostbackRefused`. The payload's order
    fields are those of an order book row."""
    try:
        payload = json.loads(body)
        order_id, stamp, checksum = str(payload["order_id"]), str(payload["order_timestamp"]), str(payload["checksum"])
        user = str(payload["user_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PostbackRefused(f"not a Kite postback ({type(exc).__name__}: {exc})") from None
    expected = hashlib.sha256(f"{order_id}{stamp}{api_secret}".encode()).hexdigest()
    if not hmac.compare_digest(expected, checksum.lower()):
        raise PostbackRefused(f"postback of order {order_id}: the checksum does not verify")
    return user, KiteAdapter._order(None, payload)  # type: ignore[arg-type]  # reads the row only
