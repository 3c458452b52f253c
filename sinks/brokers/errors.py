"""What a live broker adapter raises (sinks.brokers): one family, structured fields, never a secret.

* :class:`BrokerTokenExpired` — the account's token is refused (Kite 403 ``TokenException``, SmartAPI
  ``AG8001``/``AG8002``/``AG8003``/``AG8004``, also in its HTTP 200 gateway dialect, Upstox 401 ``UDAPI100050``):
  the caller marks the account inactive; nothing retries.
* :class:`BrokerRejected` — the broker refused the request (a 4xx, or an error envelope): ``message`` is the
  broker's own words, for the order's rejection reason.
* :class:`BrokerUnavailable` — 5xx, network errors, timeouts or a rate limit that outlasted the retries; the
  outcome of a placement was reconciled by tag before this is raised (no order is left unknown to the caller
  unless the reconciliation itself failed: ``reconciled`` says which).

Messages are built from the broker's name, HTTP status, error code and the broker's message with the account's
secrets masked (:func:`scrub`), so ``str(exc)`` and ``repr(exc)`` never hold a token.
"""

from __future__ import annotations

from typing import Any, Iterable

from engine.errors import EngineError, TransientError


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every (non-trivial) secret value replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class BrokerError(EngineError):
    """Base of the adapters' errors. ``broker``: ``kite``, ``smartapi`` or ``upstox``; ``code``: the broker's
    error code or type (``TokenException``, ``AG8002``, ``UDAPI100050``...), ``status``: the HTTP status."""

    def __init__(self, broker: str, message: str, *, code: str | None = None, status: int | None = None,
                 tag: str | None = None) -> None:
        where = f"{broker}" + (f" HTTP {status}" if status is not None else "") + (f" {code}" if code else "")
        super().__init__(f"{where}: {message}")
        self.broker = broker
        self.message = message
        self.code = code
        self.status = status
        self.tag = tag

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def as_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "broker": self.broker, "code": self.code, "status": self.status,
                "tag": self.tag, "message": self.message}


class BrokerTokenExpired(BrokerError):
    """The access token (or API key) is refused: the account must be connected again. Never retried."""

    reason = "broker_token_expired"


class BrokerRejected(BrokerError):
    """The broker refused the request; ``message`` is its reason (the order's rejection reason)."""

    reason = "broker_rejected"


class BrokerUnavailable(BrokerError, TransientError):
    """The broker could not be reached or kept failing after the retries. ``reconciled``: the day's orders were
    listed after the last failed placement and no order with its tag was there."""

    reason = "broker_unavailable"

    def __init__(self, broker: str, message: str, *, reconciled: bool = False, **kwargs: Any) -> None:
        super().__init__(broker, message, **kwargs)
        self.reconciled = reconciled
