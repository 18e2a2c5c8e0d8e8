"""rustybt's Python API: subclass ``Algorithm`` and run it with ``rustybt run --algo FILE``.

Imports work without the engine (for editors, mypy and unit tests); the engine attaches the
native objects when it runs the algorithm.
"""

from __future__ import annotations

from .algorithm import Algorithm
from .allocator import AllocationState, Allocator
from .indicator import Indicator
from ._parameters import Param
from .slippage import SlippageBar, SlippageModel, SlippageOrder
from .errors import (
    AlgorithmFailed,
    BacktestError,
    EngineError,
    IndicatorError,
    NotAttachedError,
    OrderError,
    RustybtError,
    UnknownSymbolError,
)
from .types import (
    Bar,
    Bars,
    Context,
    Fill,
    IndicatorHandle,
    Logger,
    MarketOn,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Portfolio,
    Price,
    Quantity,
    Side,
    TimeInForce,
)

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "AllocationState",
    "Allocator",
    "AlgorithmFailed",
    "BacktestError",
    "Bar",
    "Bars",
    "Context",
    "EngineError",
    "Fill",
    "IndicatorError",
    "Indicator",
    "IndicatorHandle",
    "Logger",
    "MarketOn",
    "NotAttachedError",
    "Order",
    "OrderError",
    "OrderEvent",
    "Param",
    "OrderStatus",
    "OrderType",
    "Portfolio",
    "Price",
    "Quantity",
    "RustybtError",
    "Side",
    "SlippageBar",
    "SlippageModel",
    "SlippageOrder",
    "TimeInForce",
    "UnknownSymbolError",
]
