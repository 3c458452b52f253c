"""Upstox API v2 (https://upstox.com/developer/api-documentation/place-order), one account.

* place: ``POST {base}/order/place``, JSON: ``instrument_token`` ``NSE_EQ|<ISIN>`` (the ISIN from the instrument
  map), ``quantity``, ``product`` I (MIS) / D (CNC), ``validity`` DAY, ``price``, ``order_type``
  MARKET/LIMIT/SL-M, ``transaction_type``, ``trigger_price``, ``disclosed_quantity`` 0, ``is_amo`` false, ``tag``
  (numbers and booleans typed, as the API requires);
* status: ``GET {base}/order/retrieve-all`` and ``GET {base}/order/details?order_id=``; cancel:
  ``DELETE {base}/order/cancel?order_id=``;
* header ``Authorization: Bearer <token>``; ``{base}`` includes ``/v2`` (``https://api.upstox.com/v2``);
* errors ``{"status": "error", "errors": [{"errorCode", "message", …}]}``: 401 / UDAPI100050 ->
  BrokerTokenExpired, 429 (UDAPI10005) -> paced retry, 5xx -> transient, other 4xx -> BrokerRejected.

Upstox marks v2 place-order deprecated in favour of v3 (tests/fixtures/brokers/README.md); this adapter speaks v2
as issue 13 asks.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from engine.credentials import Credentials, Secret
from engine.ports import BrokerOrder, OrderRequest

from .errors import BrokerRejected, BrokerTokenExpired
from .http import HttpBrokerAdapter, RateLimited, Transient, broker_order, decimal_or_none, int_or_zero, ist_time, our_status

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TOKEN_CODE = "UDAPI100050"
PRODUCTS = {"MIS": "I", "CNC": "D"}


def _number(value: Decimal | None) -> int | float:
    if value is None:
        return 0
    return int(value) if value == value.to_integral_value() else float(value)


class UpstoxAdapter(HttpBrokerAdapter):
    """One Upstox account at ``base_url`` (``https://api.upstox.com/v2`` or a stand-in).
    ``instruments`` maps our symbol to ``{"isin": …}``."""

    name = "upstox"
    rate_per_second = 10.0

    def __init__(self, base_url: str, *, access_token: Secret, api_key: Secret | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, secrets=[api_key, access_token], **kwargs)
        self._access_token = access_token

    @classmethod
    def from_credentials(cls, credentials: Credentials, **kwargs: Any) -> "UpstoxAdapter":
        return cls(credentials.api_base_url or "https://api.upstox.com/v2", access_token=credentials.access_token,
                   api_key=credentials.api_key, account_id=credentials.account_id, **kwargs)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token.reveal()}", "Accept": "application/json"}

    def _answer(self, status: int, body: Any, text: str) -> Any:
        if status == 429:
            raise RateLimited()
        envelope = body if isinstance(body, dict) else {}
        errors = envelope.get("errors") if isinstance(envelope.get("errors"), list) else []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = first.get("errorCode") or first.get("error_code") or None
        message = self._scrub(str(first.get("message") or text[:200] or f"HTTP {status}"))
        if status == 401 or code == TOKEN_CODE:
            raise BrokerTokenExpired(self.name, message, code=code or TOKEN_CODE, status=status)
        if status >= 500:
            raise Transient(f"HTTP {status} {code or ''}: {message}", status, code)
        if status >= 400 or envelope.get("status") == "error":
            raise BrokerRejected(self.name, message, code=code, status=status)
        if envelope.get("status") != "success":
            raise Transient(f"HTTP {status}: not an Upstox answer", status)
        return envelope.get("data")

    def _place_call(self, order: OrderRequest) -> tuple[str, str, dict[str, Any]]:
        isin = self._instrument(order.symbol, "isin", order.tag)
        payload = {
            "quantity": order.quantity,
            "product": PRODUCTS[order.product],
            "validity": "DAY",
            "price": _number(order.price) if order.order_type == "LIMIT" else 0,
            "tag": order.tag,
            "instrument_token": f"NSE_EQ|{isin}",
            "order_type": order.order_type,
            "transaction_type": order.side,
            "disclosed_quantity": 0,
            "trigger_price": _number(order.trigger_price) if order.order_type == "SL-M" else 0,
            "is_amo": False,
        }
        return "POST", "/order/place", {"payload": payload}

    def _placed(self, data: Any) -> str:
        return str(data["order_id"])

    async def _cancel_call(self, broker_order_id: str) -> tuple[str, str, dict[str, Any]]:
        return "DELETE", "/order/cancel", {"params": {"order_id": broker_order_id}}

    async def _day_orders(self) -> list[dict[str, Any]]:
        rows = await self._read("GET", "/order/retrieve-all")
        return list(rows) if isinstance(rows, list) else []

    async def _fetch(self, broker_order_id: str) -> BrokerOrder:
        return self._order(await self._read("GET", "/order/details", params={"order_id": broker_order_id}))

    def _row_tag(self, row: Mapping[str, Any]) -> str | None:
        return row.get("tag") or None

    def _order(self, row: Mapping[str, Any]) -> BrokerOrder:
        at = ist_time(row.get("exchange_timestamp"), TIME_FORMAT) or ist_time(row.get("order_timestamp"), TIME_FORMAT)
        return broker_order(str(row["order_id"]), row.get("tag") or "", our_status(row.get("status")),
                            int_or_zero(row.get("filled_quantity")), decimal_or_none(row.get("average_price")),
                            row.get("status_message"), at)
