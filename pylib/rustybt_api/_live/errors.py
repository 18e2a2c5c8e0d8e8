"""Errors of the live broker layer. Every message is credential-free (see ``Masker``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import RustybtError

if TYPE_CHECKING:  # pragma: no cover
    from .ccxt_client import OrderState


class LiveBrokerError(RustybtError):
    """Base class of the live broker errors. ``source`` names the ccxt exception behind it."""

    def __init__(self, message: str, *, source: str | None = None, code: str | None = None):
        super().__init__(message)
        self.source = source
        self.code = code


class RuleViolation(LiveBrokerError, ValueError):
    """The intent breaks the market's rules (tick, lot step, min/max quantity or price, min
    notional) or is malformed. Raised before anything is sent; nothing is ever rounded."""


class ExchangeRefused(LiveBrokerError):
    """The exchange answered a request with a definitive error (bad request, unknown symbol, ...)."""


class OrderRejected(ExchangeRefused):
    """The exchange refused the order (insufficient balance, filter failure, ...). Definitive:
    the order does not exist on the exchange."""


class UnknownOrder(LiveBrokerError, KeyError):
    """The exchange has no order with this client id / exchange id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OrderNotCancellable(LiveBrokerError):
    """Cancel refused because the order is already final (filled, cancelled, expired, rejected).
    ``state`` is the order's final state as the exchange reports it."""

    def __init__(self, message: str, state: "OrderState", **kw: Any):
        super().__init__(message, **kw)
        self.state = state


class AuthenticationFailed(LiveBrokerError):
    """Bad API key, bad signature or missing permission."""


class RateLimited(LiveBrokerError):
    """The exchange asked us to wait longer than the retry policy allows (HTTP 429/418 with a
    long Retry-After, i.e. an IP ban). ``retry_after_s`` says how long."""

    def __init__(self, message: str, retry_after_s: float | None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(LiveBrokerError):
    """Retries are exhausted and it is not known whether the exchange has the order (the last
    lookup by client id failed too). Reconcile by ``client_id`` later; never resend blindly."""

    def __init__(self, message: str, client_id: str, **kw: Any):
        super().__init__(message, **kw)
        self.client_id = client_id


class ClientIdConflict(LiveBrokerError):
    """The exchange already has an order under this client id, but it is not this intent (other
    side, quantity, type or price). The journal must never reuse a client id."""


class ExchangeUnavailable(LiveBrokerError):
    """A read or cancel still failed with a transient error after every retry."""
