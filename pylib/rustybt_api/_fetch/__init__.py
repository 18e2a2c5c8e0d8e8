"""Market-data adapters the Rust host calls through pyo3 for ``rustybt data fetch`` (private).

``open_source(spec, options_json)`` returns an object with this protocol (see
``src/python/fetch.rs``, which is its only caller):

- ``now_ms() -> int``: the source's clock (the exchange's server time where it has one), which
  decides which bar is still forming;
- ``resolve(symbol, timeframe) -> str``: JSON ``{"symbol", "interval_ms", "page_limit"}`` or a
  ``FetchError`` (``unknown_symbol``, ``bad_timeframe``);
- ``page(symbol, timeframe, since_ms, until_ms, now_ms)``: the closed bars with
  ``since_ms <= open < until_ms`` of at most one request, as
  ``(times_ms, open, high, low, close, volume, next_ms, done)``: the price and volume columns are
  exact decimal texts (never through a float on this side), ``next_ms`` is where the next page
  starts, ``done`` says the range is exhausted (or the forming bar was reached);
- ``events(symbol, since_ms, until_ms) -> str``: JSON ``[{"time_ms", "kind", "value"}]`` of
  splits and dividends (``[]`` for exchanges).

Every failure is raised as ``FetchError`` with a ``kind`` the host maps to an exit code; any
other exception is a bug and reaches the host with its traceback.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Protocol

__all__ = ["FetchError", "Source", "decimal_text", "open_source"]

KINDS = (
    "unknown_symbol",  # the source has no such market / ticker
    "bad_timeframe",  # the source has no such bar interval
    "bad_source",  # no such exchange or adapter
    "unavailable",  # network errors, 5xx and rate limits outlasted the retries
    "refused",  # the source refused the request (a 4xx other than rate limiting)
)

Page = tuple[list[int], list[str], list[str], list[str], list[str], list[str], int, bool]


class FetchError(Exception):
    """The one exception type of the adapters; ``kind`` is one of ``KINDS``."""

    def __init__(self, kind: str, message: str):
        if kind not in KINDS:
            raise ValueError(f"FetchError kind must be one of {KINDS}, not {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Source(Protocol):
    def now_ms(self) -> int: ...

    def resolve(self, symbol: str, timeframe: str) -> str: ...

    def page(self, symbol: str, timeframe: str, since_ms: int, until_ms: int, now_ms: int) -> Page: ...

    def events(self, symbol: str, since_ms: int, until_ms: int) -> str: ...


def decimal_text(value: Any) -> str:
    """Plain decimal text (no exponent, no trailing zeros) of an exchange's number: a string is
    taken as sent; a float is taken at its shortest round-trip text (``repr``), which is the
    exchange's own text whenever that had at most 15 significant digits."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a number: {value!r}")
    d = Decimal(value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value))
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def open_source(spec: str, options_json: str) -> Source:
    """``ccxt:<exchange_id>`` or ``yahoo``; options: ``{"url": str|None, "timeout_ms": int,
    "retry": {...}, "cache_dir": str|None}``."""
    options: dict[str, Any] = json.loads(options_json)
    if spec.startswith("ccxt:"):
        from .ccxt_source import CcxtSource

        return CcxtSource(spec[len("ccxt:"):], options)
    if spec == "yahoo":
        from .yahoo_source import YahooSource

        return YahooSource(options)
    raise FetchError("bad_source", f"unknown source {spec!r}: use `ccxt:<exchange>` (e.g. `ccxt:binance`) or `yahoo`")
