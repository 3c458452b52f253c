"""Live broker adapters (issue 13): :class:`engine.ports.BrokerAdapter` over each broker's REST API (aiohttp).

* :class:`.kite.KiteAdapter` — Zerodha Kite Connect v3;
* :class:`.smartapi.SmartApiAdapter` — AngelOne SmartAPI;
* :class:`.upstox.UpstoxAdapter` — Upstox v2;
* errors in :mod:`.errors`; pacing, retries and idempotent placement in :mod:`.http`.
"""

from .errors import BrokerError, BrokerRejected, BrokerTokenExpired, BrokerUnavailable
from .http import HttpBrokerAdapter, TokenBucket
from .kite import KiteAdapter
from .smartapi import SmartApiAdapter
from .upstox import UpstoxAdapter

__all__ = ["BrokerError", "BrokerRejected", "BrokerTokenExpired", "BrokerUnavailable", "HttpBrokerAdapter",
           "KiteAdapter", "SmartApiAdapter", "TokenBucket",
           "UpstoxAdapter"]
