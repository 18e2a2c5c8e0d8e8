"""rustybt's Python API: subclass ``Algorithm`` and run it with ``rustybt run --algo FILE``.

Imports work without the engine (for editors, mypy and unit tests); the engine attaches the
native objects when it runs the algorithm.
"""

from __future__ import annotations

from .algorithm import Algorithm
from .indicator import Indicator
from ._parameters import Param
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

TYPE_CHECKING = False  # `typing` itself is not imported at run time (mypy knows the name)
if TYPE_CHECKING:
    from .allocator import AllocationState, Allocator
    from .slippage import SlippageBar, SlippageModel, SlippageOrder
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
else:
    # Imported on first use (PEP 562): their `dataclasses` (which imports `inspect`) and `typing`
    # cost ~10 ms of every start, before the first tick, and most algorithms use neither.
    _LAZY = {"AllocationState": "allocator", "Allocator": "allocator", "SlippageBar": "slippage",
             "SlippageModel": "slippage", "SlippageOrder": "slippage"}
    _LAZY.update(dict.fromkeys(("Bar", "Bars", "Context", "Fill", "IndicatorHandle", "Logger", "MarketOn",
                                "Order", "OrderEvent", "OrderStatus", "OrderType", "Portfolio", "Price",
                                "Quantity", "Side", "TimeInForce"), "types"))

    def __getattr__(name: str) -> object:
        from importlib import import_module

        if name in ("allocator", "slippage", "types"):  # the submodules, as after an eager import
            return import_module(f"{__name__}.{name}")
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value

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
