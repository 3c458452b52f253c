"""Charges of one executed NSE equity order: brokerage, STT, exchange charge, SEBI fee, stamp duty, GST.

For an order of value V = fill price x quantity (all :class:`~decimal.Decimal`, never float):

===========================  ===========================  ======================  ==================================
component                    CNC (delivery)               MIS (intraday)          source, effective from
===========================  ===========================  ======================  ==================================
brokerage                    0                            min(₹20, 0.03% of V)    Zerodha's brokerage
STT                          0.1% of V, buy and sell      0.025% of V, sell only  Finance Act 2013 rates
exchange transaction charge  0.00297% of V                0.00297% of V           NSE uniform charges, 1 Oct 2024
SEBI turnover fee            ₹10/crore (0.0001% of V)     same                    SEBI, 1 Jun 2021
stamp duty                   0.015% of V, buy only        0.003% of V, buy only   Indian Stamp Act amdt, 1 Jul 2020
GST                          18% of (brokerage +          same                    GST, 1 Jul 2017
                             exchange charge + SEBI fee)
===========================  ===========================  ======================  ==================================

``fees`` = brokerage + exchange charge + SEBI fee and ``taxes`` = STT + stamp duty + GST, each rounded half-up
to the paisa (0.01); GST is computed on the unrounded components, and the components are kept unrounded.
The arithmetic runs in a private decimal context (60 digits, explicit rounding), so the caller's decimal
context never changes a result. :data:`NSE_EQUITY` is the table above; a broker's
``brokers_broker.configuration.charges`` overrides single rates of it (:meth:`ChargeTable.with_overrides`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from typing import Any, Mapping

from engine.errors import ConfigError

PRODUCTS: tuple[str, ...] = ("CNC", "MIS")
SIDES: tuple[str, ...] = ("BUY", "SELL")

_PAISA = Decimal("0.01")
_ZERO = Decimal(0)
#: wide enough that every product of a price, a quantity and a rate is exact
_CONTEXT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])


@dataclass(frozen=True, slots=True)
class ChargeRates:
    """One product's rates, each a :class:`Decimal` fraction of the order value V (``Decimal("0.0003")`` = 0.03%).

    ``brokerage_cap`` is a ₹ ceiling on the brokerage of one order (``None``: no ceiling); ``stt_buy`` and
    ``stt_sell`` apply to the side named; ``stamp_buy`` applies to buys only; ``gst`` is the fraction of
    brokerage + exchange charge + SEBI fee charged as GST.
    """

    brokerage_rate: Decimal
    brokerage_cap: Decimal | None
    stt_buy: Decimal
    stt_sell: Decimal
    exchange: Decimal
    sebi: Decimal
    stamp_buy: Decimal
    gst: Decimal


#: the keys of a product's object in ``brokers_broker.configuration.charges``
RATE_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ChargeRates))


@dataclass(frozen=True, slots=True)
class ChargeTable:
    """The rates of both products. :meth:`rates` picks one; :meth:`with_overrides` applies a broker's changes."""

    cnc: ChargeRates
    mis: ChargeRates

    def rates(self, product: str) -> ChargeRates:
        """The rates of ``product`` (``"CNC"`` or ``"MIS"``); :class:`ConfigError` for anything else."""
        if product == "CNC":
            return self.cnc
        if product == "MIS":
            return self.mis
        raise ConfigError(f"product must be one of {', '.join(PRODUCTS)}, got {product!r}")

    @classmethod
    def with_overrides(
        cls, base: ChargeTable, doc: Mapping[str, Any] | None, where: str = "configuration.charges"
    ) -> ChargeTable:
        """``base`` with the rates ``doc`` names replaced; every other rate is kept.

        ``doc`` is like ``{"MIS": {"brokerage_rate": "0.0003", "brokerage_cap": "20"}, "CNC": {...}}``: values
        are numbers or numeric strings ≥ 0 (``brokerage_cap`` may also be ``null``: no ceiling). ``None`` or
        ``{}`` gives ``base``. An unknown product or key, or a bad value, raises :class:`ConfigError` whose
        message starts with the full path, e.g. ``configuration.charges.MIS.stt_sell: must be a number ≥ 0,
        got 'x'``.
        """
        if doc is None:
            return base
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{where}: must be an object, got {type(doc).__name__}")
        table = base
        for product, changes in doc.items():
            path = f"{where}.{product}"
            if product not in PRODUCTS:
                raise ConfigError(f"{path}: unknown product (expected one of {', '.join(PRODUCTS)})")
            if not isinstance(changes, Mapping):
                raise ConfigError(f"{path}: must be an object, got {type(changes).__name__}")
            values: dict[str, Decimal | None] = {}
            for key, raw in changes.items():
                if key not in RATE_KEYS:
                    raise ConfigError(f"{path}.{key}: unknown key (expected one of {', '.join(RATE_KEYS)})")
                if key == "brokerage_cap" and raw is None:
                    values[key] = None
                else:
                    values[key] = _non_negative(raw, f"{path}.{key}")
            field = "cnc" if product == "CNC" else "mis"
            table = replace(table, **{field: replace(getattr(table, field), **values)})
        return table


#: NSE equity with Zerodha's brokerage (see the module's table for sources and dates)
NSE_EQUITY = ChargeTable(
    cnc=ChargeRates(
        brokerage_rate=Decimal("0"),  # Zerodha: free equity delivery
        brokerage_cap=None,
        stt_buy=Decimal("0.001"),  # 0.1%, delivery, both sides (Finance Act 2013 rates)
        stt_sell=Decimal("0.001"),
        exchange=Decimal("0.0000297"),  # 0.00297%, NSE uniform charges from 1 Oct 2024
        sebi=Decimal("0.000001"),  # ₹10 per crore = 10 / 1,00,00,000, from 1 Jun 2021
        stamp_buy=Decimal("0.00015"),  # 0.015%, delivery buys, Indian Stamp Act amendment from 1 Jul 2020
        gst=Decimal("0.18"),  # 18% on brokerage + exchange charge + SEBI fee, from 1 Jul 2017
    ),
    mis=ChargeRates(
        brokerage_rate=Decimal("0.0003"),  # Zerodha intraday: 0.03% ...
        brokerage_cap=Decimal("20"),  # ... or ₹20 per executed order, whichever is lower
        stt_buy=Decimal("0"),
        stt_sell=Decimal("0.00025"),  # 0.025%, intraday sells only (Finance Act 2013 rates)
        exchange=Decimal("0.0000297"),
        sebi=Decimal("0.000001"),
        stamp_buy=Decimal("0.00003"),  # 0.003%, intraday buys, from 1 Jul 2020
        gst=Decimal("0.18"),
    ),
)


@dataclass(frozen=True, slots=True)
class Charges:
    """The charges of one executed order.

    The six components are exact (unrounded) ₹ amounts; ``fees`` (brokerage + exchange charge + SEBI fee) and
    ``taxes`` (STT + stamp duty + GST) are their sums rounded half-up to the paisa. ``total`` = fees + taxes.
    """

    brokerage: Decimal
    stt: Decimal
    exchange: Decimal
    sebi: Decimal
    stamp: Decimal
    gst: Decimal
    fees: Decimal
    taxes: Decimal

    @property
    def total(self) -> Decimal:
        """fees + taxes (exact: both are whole paise)."""
        return self.fees + self.taxes


def charges(product: str, side: str, price: Decimal, quantity: int, table: ChargeTable = NSE_EQUITY) -> Charges:
    """The charges of one executed order of ``quantity`` shares at ``price`` (₹ per share).

    ``product`` is ``"CNC"`` or ``"MIS"``, ``side`` ``"BUY"`` or ``"SELL"``; ``price`` a finite
    :class:`Decimal` (or int) ≥ 0 (a float is refused: money is never float); ``quantity`` an int ≥ 0 (0 gives
    zero charges). Bad input raises :class:`ConfigError`.
    """
    rates = table.rates(product)
    if side not in SIDES:
        raise ConfigError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if isinstance(price, bool) or not isinstance(price, (Decimal, int)):
        raise ConfigError(f"price must be a Decimal, got {type(price).__name__} {price!r}")
    if not Decimal(price).is_finite() or price < 0:
        raise ConfigError(f"price must be a finite number ≥ 0, got {price!r}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ConfigError(f"quantity must be an int ≥ 0, got {quantity!r}")
    buy = side == "BUY"
    with localcontext(_CONTEXT):
        value = Decimal(price) * quantity
        brokerage = value * rates.brokerage_rate
        if rates.brokerage_cap is not None:
            brokerage = min(brokerage, rates.brokerage_cap)
        stt = value * (rates.stt_buy if buy else rates.stt_sell)
        exchange = value * rates.exchange
        sebi = value * rates.sebi
        stamp = value * rates.stamp_buy if buy else _ZERO
        gst = rates.gst * (brokerage + exchange + sebi)
        fees = (brokerage + exchange + sebi).quantize(_PAISA, rounding=ROUND_HALF_UP)
        taxes = (stt + stamp + gst).quantize(_PAISA, rounding=ROUND_HALF_UP)
    return Charges(brokerage, stt, exchange, sebi, stamp, gst, fees, taxes)


def _non_negative(raw: object, path: str) -> Decimal:
    """``raw`` (a number or numeric string) as a finite :class:`Decimal` ≥ 0; :class:`ConfigError` naming ``path``."""
    value: Decimal | None = None
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = Decimal(raw)
    elif isinstance(raw, float):
        value = Decimal(repr(raw))  # the shortest repr: 0.0003 -> Decimal("0.0003"), not the binary expansion
    elif isinstance(raw, str):
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            value = None
    if value is None or not value.is_finite() or value < 0:
        raise ConfigError(f"{path}: must be a number ≥ 0, got {raw!r}")
    return value.copy_abs()  # -0 -> 0
