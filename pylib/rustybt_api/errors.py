"""Exceptions the engine raises into algorithm code. Import and catch them by name."""

from __future__ import annotations

__all__ = [
    "RustybtError",
    "OrderError",
    "UnknownSymbolError",
    "IndicatorError",
    "EngineError",
    "NotAttachedError",
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
