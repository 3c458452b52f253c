"""Deterministic ids of the order path: orders, their broker tags, order events, paper accounts, portfolios.

Replaying the same signals and bars gives the same ids, so the sinks' upserts write nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache

ORDER_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e04")
ORDER_EVENT_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e05")
ACCOUNT_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e06")
BOOK_NAMESPACE = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e07")

#: the ``brokers_broker`` row of the paper broker (created by migration 0120_orders.sql)
PAPER_BROKER_ID = uuid.UUID("5f0d7c2e-6a51-4c35-9d1e-2b7f5a1c9e10")
PAPER_BROKER_NAME = "Paper"


def order_id(key: str) -> uuid.UUID:
    """The id of the order known by ``key`` (e.g. ``"<signal id>|entry"``, ``"<entry order id>|stop"``)."""
    return uuid.uuid5(ORDER_NAMESPACE, key)


def order_key(key: str) -> str:
    """``str(order_id(key))``, the fast way."""
    return uuid5_text(ORDER_NAMESPACE, key)


def order_tag(ident: uuid.UUID) -> str:
    """The broker tag of an order: 20 lowercase hex digits of its id (Kite and SmartAPI accept ≤ 20 alphanumerics)."""
    return ident.hex[:20]


def order_event_id(ident: uuid.UUID | str, status: str) -> str:
    """The id of one state change of an order (an ``orders`` message): one per (order, status)."""
    return uuid5_text(ORDER_EVENT_NAMESPACE, f"{ident}|{status}")


@lru_cache(maxsize=64)
def _bytes_of(namespace: uuid.UUID) -> bytes:
    return namespace.bytes


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, without building UUID objects (the order path makes millions)."""
    digest = bytearray(hashlib.sha1(_bytes_of(namespace) + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def paper_account_id(user_id: str) -> uuid.UUID:
    """The user's ``brokers_userbrokeraccount`` row on the paper broker."""
    return uuid.uuid5(ACCOUNT_NAMESPACE, f"paper|{user_id}")


def paper_portfolio_id(user_id: str) -> uuid.UUID:
    """The user's ``portfolios_portfolio`` row that paper trading books into."""
    return uuid.uuid5(ACCOUNT_NAMESPACE, f"portfolio|{user_id}")


def book_event_id(user_id: str, as_of_iso: str) -> uuid.UUID:
    """The id of a ``portfolios`` message: the user's book as of a market time."""
    return uuid.uuid5(BOOK_NAMESPACE, f"{user_id}|{as_of_iso}")
