"""Bars from any ccxt exchange: the real ccxt client, paged with ``fetch_ohlcv(since, limit)``.

The client is built by ``_live.ccxt_client.connect`` (as ``rustybt live`` builds it): the
exchange's own rate limit (``enableRateLimit``), retries with exponential backoff and jitter on
transient errors (network, timeouts, 429/418 honouring Retry-After, 5xx), and ``url`` redirecting
every REST API of the exchange (a testnet, or a local stand-in in tests).

Exactness: ccxt parses OHLCV numbers with ``exchange.number``, ``float`` by default. For the
duration of a ``fetch_ohlcv`` call it is set to ``str`` (a mode ccxt supports), so an exchange
that sends decimal strings (Binance and most others) hands its own digits through untouched. An
exchange that sends JSON numbers has them parsed as floats by ``json`` before ccxt sees them;
those are taken at their shortest round-trip text (``repr``), which is the exchange's text for
any number of up to 15 significant digits.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Callable, TypeVar

import ccxt

from .._live.ccxt_client import RetryPolicy, connect
from .._live.errors import ExchangeUnavailable, LiveBrokerError, RateLimited
from . import FetchError, Page, decimal_text

T = TypeVar("T")
DEFAULT_PAGE_LIMIT = 500


class CcxtSource:
    def __init__(self, exchange_id: str, options: dict[str, Any]):
        if exchange_id not in ccxt.exchanges:
            close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
            hint = f"; did you mean {', '.join(f'`ccxt:{c}`' for c in close)}?" if close else ""
            raise FetchError("bad_source", f"ccxt has no exchange `{exchange_id}`{hint}")
        retry = options.get("retry")
        self.broker = connect(
            exchange_id,
            api_key="",
            secret="",
            urls=options.get("url"),
            timeout_ms=int(options.get("timeout_ms", 10_000)),
            retry=RetryPolicy(**retry) if retry else None,
        )
        self.exchange = self.broker.exchange
        self.url = options.get("url")
        self._markets_loaded = False

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """One request with the client's retries; its failures as ``FetchError``."""
        try:
            return self.broker._call(what, fn)
        except (ExchangeUnavailable, RateLimited) as err:
            where = f" at {self.url}" if self.url else ""
            raise FetchError("unavailable", f"{self.exchange.id}{where}: {err}") from None
        except LiveBrokerError as err:
            raise FetchError("refused", f"{self.exchange.id}: {err}") from None

    def _markets(self) -> dict[str, Any]:
        if not self._markets_loaded:
            self._call("load_markets", self.exchange.load_markets)
            self._markets_loaded = True
        return self.exchange.markets or {}

    def now_ms(self) -> int:
        ex = self.exchange
        if ex.has.get("fetchTime"):
            # the exchange's clock decides which candle is still forming, whatever ours says
            return int(self._call("fetch_time", ex.fetch_time))
        return int(ex.milliseconds())

    def resolve(self, symbol: str, timeframe: str) -> str:
        ex = self.exchange
        if not ex.has.get("fetchOHLCV"):
            raise FetchError("bad_source", f"{ex.id} does not serve bars (ccxt has no fetchOHLCV for it)")
        frames = list((ex.timeframes or {}).keys())
        if timeframe not in frames:
            raise FetchError("bad_timeframe", f"{ex.id} has no `{timeframe}` bars; it has: {', '.join(frames)}")
        markets = self._markets()
        if symbol not in markets:
            close = difflib.get_close_matches(symbol, list(markets), n=3)
            hint = f"; did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
            raise FetchError("unknown_symbol", f"{ex.id} has no market `{symbol}`{hint}")
        market = markets[symbol]
        features = ((ex.features or {}).get(market.get("type") or "spot") or {}).get("fetchOHLCV") or {}
        limit = features.get("limit") if isinstance(features, dict) else None
        return json.dumps(
            {
                "symbol": symbol,
                "interval_ms": int(ex.parse_timeframe(timeframe) * 1000),
                "page_limit": int(limit or DEFAULT_PAGE_LIMIT),
            }
        )

    def _ohlcv(self, symbol: str, timeframe: str, since_ms: int, limit: int) -> list[list[Any]]:
        ex = self.exchange
        ex.number = str  # see the module docstring: the exchange's digits, not a float
        try:
            rows: list[list[Any]] = ex.fetch_ohlcv(symbol, timeframe, since_ms, limit)
        finally:
            ex.number = float
        return rows

    def page(self, symbol: str, timeframe: str, since_ms: int, until_ms: int, now_ms: int) -> Page:
        info = json.loads(self.resolve(symbol, timeframe))
        tf_ms: int = info["interval_ms"]
        # never ask for more than the range holds: the last page does not overshoot `until`
        want = max(1, min(info["page_limit"], math.ceil((until_ms - since_ms) / tf_ms)))
        rows = self._call("fetch_ohlcv", lambda: self._ohlcv(symbol, timeframe, since_ms, want))
        times: list[int] = []
        cols: list[list[str]] = [[], [], [], [], []]
        next_ms, done = since_ms, False
        for row in rows:
            t = int(row[0])
            if t < since_ms or (times and t <= times[-1]):
                continue  # before the range, or repeated: never duplicated
            if t >= until_ms:
                # the range is done; it is covered to the end of its last bar
                done, next_ms = True, max(next_ms, until_ms)
                break
            if t + tf_ms > now_ms:
                done, next_ms = True, t  # the forming candle is not a bar yet
                break
            times.append(t)
            for col, value in zip(cols, row[1:6]):
                col.append(decimal_text(value))
            next_ms = t + tf_ms
        if not times and not done:
            done = True  # nothing at or after `since`: the exchange has no more bars
        elif not done and next_ms >= until_ms:
            done = True
        return times, cols[0], cols[1], cols[2], cols[3], cols[4], next_ms, done

    def events(self, symbol: str, since_ms: int, until_ms: int) -> str:
        return "[]"
