"""AngelOne SmartAPI (https://smartapi.angelbroking.com/docs/Orders), one account.

* place: ``POST {base}/rest/secure/angelbroking/order/v1/placeOrder``, JSON: ``variety`` NORMAL (STOPLOSS for
  SL-M), ``tradingsymbol`` ``<SYMBOL>-EQ``, ``symboltoken`` (from the instrument map: ``smartapi_token``),
  ``transactiontype``, ``exchange`` NSE, ``ordertype`` MARKET/LIMIT/STOPLOSS_MARKET, ``producttype``
  INTRADAY (MIS) / DELIVERY (CNC), ``duration`` DAY, ``price``, ``triggerprice``, ``quantity``, ``ordertag``
  (values as text, as the SDKs send them);
* status: ``GET …/getOrderBook`` and ``GET …/details/{uniqueorderid}``; cancel: ``POST …/cancelOrder``
  ``{"variety", "orderid"}``;
* headers ``Authorization: Bearer <jwt>``, ``X-PrivateKey``, ``X-UserType: USER``, ``X-SourceID: WEB``,
  ``X-ClientLocalIP``, ``X-ClientPublicIP``, ``X-MACAddress``;
* answers ``{"status", "message", "errorcode", "data"}`` where ``status`` may be ``"false"``; token errors
  (AG8001 invalid, AG8002 expired, AG8003 missing, AG8004 API key) also come as ``{"success": false,
  "errorCode"}`` with HTTP 200 -> BrokerTokenExpired; the rate limit is a text/plain 403 -> paced retry;
  AB2001 (internal error) and 5xx -> transient; other errors -> BrokerRejected.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.credentials import Credentials, Secret
from engine.ports import BrokerOrder, OrderRequest

from .errors import BrokerRejected, BrokerTokenExpired
from .http import HttpBrokerAdapter, RateLimited, Transient, broker_order, decimal_or_none, int_or_zero, ist_time, our_status, plain

PREFIX = "/rest/secure/angelbroking/order/v1"
TIME_FORMAT = "%d-%b-%Y %H:%M:%S"
TOKEN_CODES = frozenset({"AG8001", "AG8002", "AG8003", "AG8004"})
TRANSIENT_CODES = frozenset({"AB2001"})
RATE_LIMIT_TEXT = "exceeding access rate"
ORDER_TYPES = {"MARKET": "MARKET", "LIMIT": "LIMIT", "SL-M": "STOPLOSS_MARKET"}
PRODUCTS = {"MIS": "INTRADAY", "CNC": "DELIVERY"}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class SmartApiAdapter(HttpBrokerAdapter):
    """One SmartAPI account at ``base_url`` (``https://apiconnect.angelbroking.com`` or a stand-in).
    ``instruments`` maps our symbol to ``{"smartapi_token": …}``."""

    name = "smartapi"
    rate_per_second = 20.0

    def __init__(self, base_url: str, *, api_key: Secret, access_token: Secret, client_local_ip: str = "127.0.0.1",
                 client_public_ip: str = "127.0.0.1", mac_address: str = "00:00:00:00:00:00", **kwargs: Any) -> None:
        super().__init__(base_url, secrets=[api_key, access_token], **kwargs)
        self._api_key = api_key
        self._access_token = access_token
        self._client = {"X-ClientLocalIP": client_local_ip, "X-ClientPublicIP": client_public_ip, "X-MACAddress": mac_address}
        self._unique: dict[str, str] = {}  # orderid -> uniqueorderid
        self._variety: dict[str, str] = {}  # orderid -> variety

    @classmethod
    def from_credentials(cls, credentials: Credentials, **kwargs: Any) -> "SmartApiAdapter":
        if credentials.api_key is None:
            raise BrokerRejected(cls.name, "a SmartAPI account needs its API key", code="no_api_key")
        return cls(credentials.api_base_url or "https://apiconnect.angelbroking.com", api_key=credentials.api_key,
                   access_token=credentials.access_token, account_id=credentials.account_id, **kwargs)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token.reveal()}", "X-PrivateKey": self._api_key.reveal(),
                "X-UserType": "USER", "X-SourceID": "WEB", **self._client,
                "Accept": "application/json", "Content-Type": "application/json"}

    def _answer(self, status: int, body: Any, text: str) -> Any:
        if status == 429 or (status == 403 and not isinstance(body, dict) and RATE_LIMIT_TEXT in text):
            raise RateLimited()
        envelope = body if isinstance(body, dict) else {}
        code = envelope.get("errorcode") or envelope.get("errorCode") or None
        message = self._scrub(str(envelope.get("message") or text[:200] or f"HTTP {status}"))
        if code in TOKEN_CODES:
            raise BrokerTokenExpired(self.name, message, code=code, status=status)
        if status >= 500 or code in TRANSIENT_CODES:
            raise Transient(f"HTTP {status} {code or ''}: {message}", status, code)
        if status >= 400:
            raise BrokerRejected(self.name, message, code=code, status=status)
        if not envelope:
            raise Transient(f"HTTP {status}: not a SmartAPI answer", status)
        ok = envelope["status"] if "status" in envelope else envelope.get("success")
        if not _truthy(ok):
            raise BrokerRejected(self.name, message, code=code, status=status)
        data = envelope.get("data")
        return None if data == "null" else data

    def _place_call(self, order: OrderRequest) -> tuple[str, str, dict[str, Any]]:
        token = self._instrument(order.symbol, "smartapi_token", order.tag)
        payload = {
            "variety": "STOPLOSS" if order.order_type == "SL-M" else "NORMAL",
            "tradingsymbol": f"{order.symbol}-EQ",
            "symboltoken": token,
            "transactiontype": order.side,
            "exchange": "NSE",
            "ordertype": ORDER_TYPES[order.order_type],
            "producttype": PRODUCTS[order.product],
            "duration": "DAY",
            "price": plain(order.price) if order.order_type == "LIMIT" and order.price is not None else "0",
            "triggerprice": plain(order.trigger_price) if order.order_type == "SL-M" and order.trigger_price is not None else "0",
            "quantity": str(order.quantity),
            "ordertag": order.tag,
        }
        return "POST", f"{PREFIX}/placeOrder", {"payload": payload}

    def _placed(self, data: Any) -> str:
        order_id = str(data["orderid"])
        if data.get("uniqueorderid"):
            self._unique[order_id] = str(data["uniqueorderid"])
        return order_id

    async def _row(self, broker_order_id: str) -> Mapping[str, Any]:
        for row in await self._day_orders():
            if str(row.get("orderid")) == broker_order_id:
                return row
        raise BrokerRejected(self.name, f"order {broker_order_id} is not in the order book", code="AB1013")

    async def _cancel_call(self, broker_order_id: str) -> tuple[str, str, dict[str, Any]]:
        variety = self._variety.get(broker_order_id)
        if variety is None:
            variety = str((await self._row(broker_order_id)).get("variety") or "NORMAL")
        return "POST", f"{PREFIX}/cancelOrder", {"payload": {"variety": variety, "orderid": broker_order_id}}

    async def _day_orders(self) -> list[dict[str, Any]]:
        rows = await self._read("GET", f"{PREFIX}/getOrderBook")
        return list(rows) if isinstance(rows, list) else []

    async def _fetch(self, broker_order_id: str) -> BrokerOrder:
        unique = self._unique.get(broker_order_id)
        if unique is None:
            return self._order(await self._row(broker_order_id))
        return self._order(await self._read("GET", f"{PREFIX}/details/{unique}"))

    def _row_tag(self, row: Mapping[str, Any]) -> str | None:
        return row.get("ordertag") or None

    def _order(self, row: Mapping[str, Any]) -> BrokerOrder:
        order_id = str(row["orderid"])
        if row.get("uniqueorderid"):
            self._unique[order_id] = str(row["uniqueorderid"])
        if row.get("variety"):
            self._variety[order_id] = str(row["variety"])
        word = row.get("orderstatus") or row.get("status")
        return broker_order(order_id, row.get("ordertag") or "", our_status(word), int_or_zero(row.get("filledshares")),
                            decimal_or_none(row.get("averageprice")), row.get("text"),
                            ist_time(row.get("updatetime"), TIME_FORMAT))
