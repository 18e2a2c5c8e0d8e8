"""Bars, splits and dividends from Yahoo Finance through the real yfinance library.

Raw prices: Yahoo's chart API sends prices before a split already divided by the later splits'
ratios (and volumes multiplied by them), dividends likewise. rustybt stores what traded: each
value is multiplied back by the product of the ratios of the splits after its day (volumes
divided), exactly, with fractions. Yahoo sends prices as float32 values widened to double
(``187.14999389648438``); after that product each price is rounded to the decimals Yahoo states
for the instrument (``priceHint``: 2 for US stocks, 4 or more for currencies), which recovers the
quote as long as float32's 7 significant digits hold it. Volumes are whole shares; dividends
are kept to 6 decimals. A day bar's time is the session's date at midnight in the exchange's
time zone (as yfinance gives it), stored in UTC.

``url`` (``--yahoo-url``): every Yahoo host (``query1/query2.finance.yahoo.com``,
``fc.yahoo.com``...) is replaced by this base URL in the HTTP session handed to yfinance (a
documented yfinance parameter), so the unmodified library talks to a local stand-in.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import warnings
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import FetchError, Page, decimal_text

# rustybt timeframe -> Yahoo interval
INTERVALS = {"1m": "1m", "2m": "2m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "60m", "1d": "1d"}
DAY_MS = 86_400_000
# Yahoo keeps intraday bars this many days back, and answers at most this many days of them per
# request (it refuses a request past either limit)
LOOKBACK_DAYS = {"1m": 30, "2m": 60, "5m": 60, "15m": 60, "30m": 60, "1h": 730}
REQUEST_DAYS = {"1m": 7, "2m": 60, "5m": 60, "15m": 60, "30m": 60, "1h": 730}


def _redirecting_session(base: str) -> Any:
    import requests

    target = urlsplit(base)

    class Redirecting(requests.Session):
        """Sends every request for a Yahoo host to ``base`` instead (path and query kept)."""

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            url = url if isinstance(url, str) else url.decode()
            parts = urlsplit(url)
            if parts.hostname and parts.hostname.endswith("yahoo.com"):
                prefix = target.path.rstrip("/")
                url = urlunsplit((target.scheme, target.netloc, prefix + (parts.path or "/"), parts.query, ""))
            return super().request(method if isinstance(method, str) else method.decode(), url, *args, **kwargs)

    return Redirecting()


def _round(value: Fraction, places: int) -> Decimal:
    q = Decimal(1).scaleb(-places)
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(q, rounding=ROUND_HALF_EVEN)


class YahooSource:
    def __init__(self, options: dict[str, Any]):
        # imported as `Any`: yfinance has no type information
        yf: Any = importlib.import_module("yfinance")
        self.yf = yf
        cache = options.get("cache_dir")
        if cache:
            yf.set_tz_cache_location(str(cache))  # yfinance's caches live in the catalog, not in ~
        yf.config.debug.hide_exceptions = False  # errors raise: they become FetchErrors here
        url = options.get("url")
        self.session = _redirecting_session(url) if url else None
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._actions: dict[str, tuple[list[tuple[int, Fraction]], list[tuple[int, float]]]] = {}

    def _ticker(self, symbol: str) -> Any:
        return self.yf.Ticker(symbol, session=self.session) if self.session is not None else self.yf.Ticker(symbol)

    def _history(self, symbol: str, **kw: Any) -> Any:
        yfe: Any = importlib.import_module("yfinance.exceptions")

        try:
            ticker = self._ticker(symbol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas deprecations inside yfinance
                return ticker, ticker.history(auto_adjust=False, actions=True, rounding=False, **kw)
        except (yfe.YFTzMissingError, yfe.YFPricesMissingError) as err:
            if "delisted" in str(err) or isinstance(err, yfe.YFTzMissingError):
                raise FetchError("unknown_symbol", f"Yahoo has no ticker `{symbol}` ({err})") from None
            raise FetchError("refused", f"Yahoo: {err}") from None
        except yfe.YFRateLimitError as err:
            raise FetchError("unavailable", f"Yahoo rate-limited the request: {err}") from None
        except Exception as err:  # yfinance's own, and the HTTP backends' (refused, timeouts)
            if getattr(getattr(err, "response", None), "status_code", None) == 404:
                # no chart for the ticker, and yfinance's fallback lookup found none either
                raise FetchError("unknown_symbol", f"Yahoo has no ticker `{symbol}`") from None
            if isinstance(err, (yfe.YFException, OSError)) or type(err).__module__.split(".")[0] in ("requests", "curl_cffi", "urllib3"):
                raise FetchError("unavailable", f"Yahoo: {type(err).__name__}: {err}") from None
            raise

    def now_ms(self) -> int:
        return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)

    def resolve(self, symbol: str, timeframe: str) -> str:
        if timeframe not in INTERVALS:
            raise FetchError("bad_timeframe", f"Yahoo has no `{timeframe}` bars; it has: {', '.join(INTERVALS)}")
        self._history(symbol, period="5d", interval="1d")  # an unknown ticker fails here
        return json.dumps({"symbol": symbol, "interval_ms": _interval_ms(timeframe), "page_limit": 1_000_000})

    def actions(self, symbol: str) -> tuple[list[tuple[int, Fraction]], list[tuple[int, float]]]:
        """Every split (ex-date ms, ratio) and dividend (ex-date ms, Yahoo's adjusted amount) of
        ``symbol`` up to now, from its daily history. Yahoo divides a bar by the ratios of all
        the splits after it, including those after the range asked for; and an event keeps the
        time of its ex-date's day bar whatever the timeframe fetched, so the 1d and 1m datasets
        of one symbol share one record of it."""
        if symbol not in self._actions:
            _, frame = self._history(symbol, period="max", interval="1d")
            stamps = [int(stamp.value // 1_000_000) for stamp in frame.index]
            splits = [
                (t, Fraction(float(ratio)).limit_denominator(1000))
                for t, ratio in zip(stamps, frame["Stock Splits"])
                if ratio and not math.isnan(ratio)
            ]
            dividends = [(t, float(v)) for t, v in zip(stamps, frame["Dividends"]) if v and not math.isnan(v)]
            self._actions[symbol] = (splits, dividends)
        return self._actions[symbol]

    def page(self, symbol: str, timeframe: str, since_ms: int, until_ms: int, now_ms: int) -> Page:
        tf_ms = _interval_ms(timeframe)
        requested_until = until_ms
        if timeframe in LOOKBACK_DAYS:
            oldest = now_ms - LOOKBACK_DAYS[timeframe] * DAY_MS
            if since_ms < oldest:
                first = dt.datetime.fromtimestamp(oldest / 1000 + 3600, dt.timezone.utc).strftime("%Y-%m-%dT%H:00")
                raise FetchError(  # the request cannot be served: a usage error, not an outage
                    "bad_timeframe",
                    f"Yahoo keeps `{timeframe}` bars for the last {LOOKBACK_DAYS[timeframe]} days only: "
                    f"start at {first} UTC or later (`--start`), or fetch a coarser timeframe",
                )
            # one request covers at most Yahoo's limit; the host asks again from `next_ms`
            until_ms = min(until_ms, since_ms + REQUEST_DAYS[timeframe] * DAY_MS)
        start = dt.datetime.fromtimestamp(since_ms / 1000, dt.timezone.utc)
        end = dt.datetime.fromtimestamp(min(until_ms, now_ms + DAY_MS) / 1000, dt.timezone.utc)
        ticker, frame = self._history(symbol, start=start, end=end, interval=INTERVALS[timeframe])
        hint = int(ticker.history_metadata.get("priceHint") or 2)
        splits, dividends = self.actions(symbol)

        def factor(t_ms: int) -> Fraction:
            """The ratios of the splits after this time: what Yahoo divided it by."""
            f = Fraction(1)
            for when, ratio in splits:
                if when > t_ms:
                    f *= ratio
            return f

        times: list[int] = []
        cols: list[list[str]] = [[], [], [], [], []]
        next_ms = max(since_ms, until_ms)
        for stamp, row in frame.iterrows():
            t = int(stamp.value // 1_000_000)
            if t < since_ms or t >= until_ms or (times and t <= times[-1]):
                continue
            if t + tf_ms > now_ms:
                next_ms = t  # the forming bar (today's, during the session) is not a bar yet
                break
            values = [row["Open"], row["High"], row["Low"], row["Close"]]
            if any(v is None or math.isnan(v) for v in values):
                continue  # Yahoo's empty rows (a holiday with a quote): no bar
            f = factor(t)
            for col, v in zip(cols, values):
                col.append(decimal_text(format(_round(Fraction(Decimal(repr(float(v)))) * f, hint), "f")))
            vol = row["Volume"]
            cols[4].append(decimal_text(format(_round(Fraction(0 if math.isnan(vol) else int(vol)) / f, 0), "f")))
            times.append(t)
        # the events of the span this page covered (not of the forming day)
        events = self._events.setdefault(symbol, [])
        for t, amount in dividends:
            if since_ms <= t < next_ms:
                raw = _round(Fraction(Decimal(repr(amount))) * factor(t), 6)
                events.append({"time_ms": t, "kind": "dividend", "value": decimal_text(format(raw, "f"))})
        for t, ratio in splits:
            if since_ms <= t < next_ms:
                events.append({"time_ms": t, "kind": "split", "value": _ratio_text(ratio)})
        done = next_ms < until_ms or until_ms >= requested_until
        return times, cols[0], cols[1], cols[2], cols[3], cols[4], next_ms, done

    def events(self, symbol: str, since_ms: int, until_ms: int) -> str:
        return json.dumps(sorted(self._events.pop(symbol, []), key=lambda e: (e["time_ms"], e["kind"])))


def _interval_ms(timeframe: str) -> int:
    unit = {"m": 60_000, "h": 3_600_000, "d": DAY_MS}[timeframe[-1]]
    return int(timeframe[:-1]) * unit


def _ratio_text(ratio: Fraction) -> str:
    """`4`, `1.5`, or `1/3` when the ratio has no finite decimal form."""
    den = ratio.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:
        return decimal_text(format(Decimal(ratio.numerator) / Decimal(ratio.denominator), "f"))
    return f"{ratio.numerator}/{ratio.denominator}"
