"""A strategy row's ``risk_management.execution``: whether and how its signals trade (docs/orders.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from enum import StrEnum
from collections.abc import Mapping
from typing import Any

from engine.errors import DocumentError

WHERE = "risk_management.execution"
_KEYS = frozenset({"mode", "broker_account", "product", "quantity", "capital", "slippage_bps"})
_MAX_SLIPPAGE_BPS = Decimal(1000)


class Product(StrEnum):
    MIS = "MIS"  # intraday: may go short, squared off at 15:20 IST
    CNC = "CNC"  # delivery: long only, carried over


@dataclass(frozen=True, slots=True)
class Execution:
    """How a trading row's signals become orders: paper or live (through ``broker_account``), product, size,
    slippage (paper fills only: a live fill is the broker's)."""

    product: Product
    quantity: int | None = None
    capital: Decimal | None = None
    slippage_bps: Decimal = Decimal(0)
    mode: str = "paper"
    broker_account: str | None = None  # live: the brokers_userbrokeraccount id orders go through

    @property
    def live(self) -> bool:
        return self.mode == "live"

    @classmethod
    def from_json(cls, doc: Any, where: str = WHERE) -> Execution:
        """Validated settings; raise :class:`DocumentError` naming the bad key's path."""
        if not isinstance(doc, Mapping):
            raise DocumentError(where, "must be an object")
        if unknown := sorted(set(doc) - _KEYS):
            raise DocumentError(f"{where}.{unknown[0]}", f"unknown key; known: {', '.join(sorted(_KEYS))}")
        mode = doc.get("mode")
        if mode not in ("paper", "live"):
            raise DocumentError(f"{where}.mode", f"must be 'paper' or 'live', got {mode!r}")
        account = doc.get("broker_account")
        if mode == "live":
            if not isinstance(account, str) or not _is_uuid(account):
                raise DocumentError(f"{where}.broker_account", "'live' needs the id of a connected broker account"
                                    f" (sharewise broker list), got {account!r}")
            account = str(uuid.UUID(account))
        elif account is not None:
            raise DocumentError(f"{where}.broker_account", "only a 'live' row names a broker account")
        try:
            product = Product(doc.get("product"))
        except ValueError:
            raise DocumentError(f"{where}.product", f"must be 'MIS' or 'CNC', got {doc.get('product')!r}") from None
        quantity, capital = doc.get("quantity"), doc.get("capital")
        if (quantity is None) == (capital is None):
            raise DocumentError(where, "needs exactly one of 'quantity' (shares) and 'capital' (₹ per entry)")
        if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1):
            raise DocumentError(f"{where}.quantity", f"must be an integer ≥ 1, got {quantity!r}")
        return cls(
            product=product,
            quantity=quantity,
            capital=None if capital is None else _amount(capital, f"{where}.capital", minimum=Decimal("0.01")),
            slippage_bps=_amount(doc.get("slippage_bps", 0), f"{where}.slippage_bps", maximum=_MAX_SLIPPAGE_BPS),
            mode=mode,
            broker_account=account,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mode": self.mode, "product": str(self.product), "slippage_bps": str(self.slippage_bps)}
        if self.broker_account is not None:
            doc["broker_account"] = self.broker_account
        if self.quantity is not None:
            doc["quantity"] = self.quantity
        else:
            doc["capital"] = str(self.capital)
        return doc

    def quantity_at(self, price: Decimal) -> int:
        """Shares of one entry at ``price``: the fixed quantity, or floor(capital / price) (0 when it buys none)."""
        if self.quantity is not None:
            return self.quantity
        assert self.capital is not None
        return int((self.capital / price).to_integral_value(ROUND_FLOOR)) if price > 0 else 0


def _amount(value: Any, where: str, minimum: Decimal = Decimal(0), maximum: Decimal | None = None) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DocumentError(where, f"must be a number, got {value!r}")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise DocumentError(where, f"must be a number, got {value!r}") from None
    if not amount.is_finite() or amount < minimum or (maximum is not None and amount > maximum):
        bound = f" and ≤ {maximum}" if maximum is not None else ""
        raise DocumentError(where, f"must be a number ≥ {minimum}{bound}, got {value!r}")
    return amount


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
