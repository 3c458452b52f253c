"""Live broker adapters (issue 13): :class:`engine.ports.BrokerAdapter` over each broker's REST API (aiohttp).

* :class:`.kite.KiteAdapter` — Zerodha Kite Connect v3;
* :class:`.smartapi.SmartApiAdapter` — AngelOne SmartAPI;
* :class:`.upstox.UpstoxAdapter` — Upstox v2;
* errors in :mod:`.errors`; pacing, retries and idempotent placement in :mod:`.http`;
* :func:`adapter_for` — the adapter of an account's :class:`engine.credentials.Credentials` (by
  ``brokers_broker.name``: Zerodha, AngelOne, Upstox).

Broker identifiers (Upstox's ISIN, SmartAPI's symbol token) come from the ``instruments`` mapping handed to an
adapter (``{"RELIANCE": {"isin": "INE002A01018", "smartapi_token": "2885"}}``): ``db.instrument_ids.broker_ids`` gives
it (the shipped ``engine/data/broker_instruments.csv`` with what ``sharewise instruments load`` stored over it).
"""

from __future__ import annotations

from typing import Any

from engine.credentials import Credentials

from .errors import BrokerError, BrokerRejected, BrokerTokenExpired, BrokerUnavailable
from .http import HttpBrokerAdapter, InstrumentMap, TokenBucket
from .kite import KiteAdapter
from .smartapi import SmartApiAdapter
from .upstox import UpstoxAdapter

#: ``brokers_broker.name`` (lower case) -> its adapter class
ADAPTERS: dict[str, type[HttpBrokerAdapter]] = {"zerodha": KiteAdapter, "angelone": SmartApiAdapter, "upstox": UpstoxAdapter}


def adapter_for(credentials: Credentials, *, instruments: InstrumentMap | None = None, **kwargs: Any) -> HttpBrokerAdapter:
    """The adapter of an active account, at its broker's ``api_base_url``; ``kwargs`` go to the adapter
    (``bucket``, ``clock``, ``sleep``, ``timeout``...). Raises BrokerRejected for a broker without an adapter."""
    cls = ADAPTERS.get((credentials.broker or "").lower())
    if cls is None:
        raise BrokerRejected("sharewise", f"no live adapter for broker {credentials.broker!r}", code="unknown_broker")
    return cls.from_credentials(credentials, instruments=instruments, **kwargs)  # type: ignore[attr-defined]


__all__ = ["ADAPTERS", "BrokerError", "BrokerRejected", "BrokerTokenExpired", "BrokerUnavailable", "HttpBrokerAdapter",
           "KiteAdapter", "SmartApiAdapter", "TokenBucket", "UpstoxAdapter", "adapter_for"]
