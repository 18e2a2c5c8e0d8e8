"""Host-side live trading support (private: the Rust host calls it through pyo3).

``connect("binance", api_key=..., secret=...)`` returns a ``CcxtBroker`` around the real ccxt
client: instrument rules, closed candles, idempotent order submission, cancels, balances and
positions, all in ``decimal.Decimal``. See docs/live-exchange-testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AuthenticationFailed,
    ClientIdConflict,
    ExchangeRefused,
    ExchangeUnavailable,
    LiveBrokerError,
    OrderNotCancellable,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    RuleViolation,
    UnknownOrder,
)

# ccxt is imported on first use: a paper session imports this package for
# `_live.state` and would otherwise pay ccxt's import (about half a second) at its start.
_CCXT_NAMES = frozenset({"ENGINE_STATES", "Backoff", "Balance", "Candle", "CcxtBroker", "Fill", "InstrumentRules", "OrderIntent", "OrderState", "RetryPolicy", "connect", "map_status"})

if TYPE_CHECKING:
    from .ccxt_client import (
        ENGINE_STATES,
        Backoff,
        Balance,
        Candle,
        CcxtBroker,
        Fill,
        InstrumentRules,
        OrderIntent,
        OrderState,
        RetryPolicy,
        connect,
        map_status,
    )


def __getattr__(name: str) -> Any:
    if name in _CCXT_NAMES:
        from . import ccxt_client

        return getattr(ccxt_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENGINE_STATES",
    "AuthenticationFailed",
    "Backoff",
    "Balance",
    "Candle",
    "CcxtBroker",
    "ClientIdConflict",
    "ExchangeRefused",
    "ExchangeUnavailable",
    "Fill",
    "InstrumentRules",
    "LiveBrokerError",
    "OrderIntent",
    "OrderNotCancellable",
    "OrderRejected",
    "OrderState",
    "OutcomeUnknown",
    "RateLimited",
    "RetryPolicy",
    "RuleViolation",
    "UnknownOrder",
    "connect",
    "map_status",
]
