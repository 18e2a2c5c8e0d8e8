"""Host-side live trading support (private: the Rust host calls it through pyo3).

``connect("binance", api_key=..., secret=...)`` returns a ``CcxtBroker`` around the real ccxt
client: instrument rules, closed candles, idempotent order submission, cancels, balances and
positions, all in ``decimal.Decimal``. See docs/live-exchange-testing.md.
"""

from __future__ import annotations

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
