"""Exceptions the engine raises into algorithm code. Import and catch them by name."""

from __future__ import annotations

__all__ = [
    "RustybtError",
    "OrderError",
    "UnknownSymbolError",
    "IndicatorError",
    "EngineError",
    "NotAttachedError",
    "BacktestError",
    "AlgorithmFailed",
]


class RustybtError(Exception):
    """Base class of every rustybt exception."""


class OrderError(RustybtError, ValueError):
    """An order was refused: bad quantity (NaN, float, zero, negative), unknown side, ..."""


class UnknownSymbolError(RustybtError, KeyError):
    """A symbol that is not loaded in this run. Load it with ``--data FILE``."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class IndicatorError(RustybtError, ValueError):
    """An unknown built-in indicator, parameter or output, or an invalid parameter value."""


class EngineError(RustybtError):
    """The engine could not complete a request (e.g. a Decimal overflow in the books)."""


class NotAttachedError(RustybtError, RuntimeError):
    """An Algorithm method that needs the engine was called outside ``rustybt run``."""


class BacktestError(RustybtError, ValueError):
    """``testing.backtest`` could not start: bad data, settings or parameters."""


class AlgorithmFailed(RustybtError):
    """The algorithm raised during ``testing.backtest``. ``result`` holds the partial results;
    the message includes the algorithm's own traceback (file and line)."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
