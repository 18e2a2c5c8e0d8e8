"""A local stand-in for the Yahoo Finance endpoints the unmodified yfinance library calls for
price history: the cookie page (fc.yahoo.com), ``/v1/test/getcrumb`` and the chart API
``/v8/finance/chart/{ticker}`` with daily and intraday bars, splits and dividends.

rustybt points yfinance at it with ``rustybt data fetch --source yahoo --yahoo-url URL`` (every
Yahoo host is replaced by URL in the session yfinance is given). In process::

    with FakeYahoo({"AAPL": Listing(...)}) as fake:
        ... fake.url ...

Like Yahoo, prices before a split are sent split-adjusted (divided by the ratios of the later
splits), as float32 values widened to double (``187.14999389648438``), volumes multiplied by
the ratios, and dividends adjusted the same way; ``priceHint`` gives the decimals of the quote.
A listing keeps the raw (traded) values, which are what rustybt must store.

Intraday (``1m`` … ``90m``, ``60m``/``1h``) bars are built from a listing's raw one-minute bars
(``minutes``) as Yahoo builds them: buckets counted from the session open (``60m`` bars open at
09:30, 10:30, … 15:30), adjusted like the daily ones, with the day's ``tradingPeriods`` in the
meta. Yahoo's limits are enforced with its answers (HTTP 422): intraday bars only so many days
back (``1m``: 30, ``2m``–``90m``: 60, ``60m``: 730) and at most 7 days of ``1m`` per request.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

D = Decimal


@dataclass
class Listing:
    """Daily bars of one ticker: ``bars`` maps a session date to raw (open, high, low, close,
    volume) texts; ``splits`` maps an ex-date to (numerator, denominator); ``dividends`` maps
    an ex-date to the raw cash amount."""

    bars: dict[dt.date, tuple[str, str, str, str, str]]
    splits: dict[dt.date, tuple[int, int]] = field(default_factory=dict)
    dividends: dict[dt.date, str] = field(default_factory=dict)
    timezone: str = "America/New_York"
    currency: str = "USD"
    instrument: str = "EQUITY"
    price_hint: int = 2
    open_time: dt.time = dt.time(9, 30)
    close_time: dt.time = dt.time(16, 0)
    # raw one-minute bars: UTC epoch seconds of the bar's open -> (open, high, low, close, volume)
    minutes: dict[int, tuple[str, str, str, str, str]] = field(default_factory=dict)

    def factor(self, day: dt.date) -> Fraction:
        """Product of the ratios of the splits after ``day``: what Yahoo divides prices by."""
        f = Fraction(1)
        for ex, (num, den) in self.splits.items():
            if ex > day:
                f *= Fraction(num, den)
        return f


# Yahoo's intraday intervals in minutes, how many days back it keeps them, and its per-request
# limit of one-minute bars
INTRADAY = {"1m": 1, "2m": 2, "5m": 5, "15m": 15, "30m": 30, "60m": 60, "90m": 90, "1h": 60}
LOOKBACK_DAYS = {"1m": 30, "60m": 730, "1h": 730}
ONE_MINUTE_REQUEST_DAYS = 7


def unprocessable(interval: str, lo: int, hi: int, why: str) -> tuple[int, dict[str, Any]]:
    return 422, {"chart": {"result": None, "error": {
        "code": "Unprocessable Entity",
        "description": f"{interval} data not available for startTime={lo} and endTime={hi}. {why}"}}}


def float32(value: Fraction) -> float:
    """The value as Yahoo sends it: rounded to float32, then widened to double."""
    return float(struct.unpack("f", struct.pack("f", float(value)))[0])


def weekdays(start: dt.date, count: int) -> list[dt.date]:
    out, day = [], start
    while len(out) < count:
        if day.weekday() < 5:
            out.append(day)
        day += dt.timedelta(days=1)
    return out


class FakeYahoo:
    def __init__(self, listings: dict[str, Listing], host: str = "127.0.0.1", port: int = 0):
        self.listings = listings
        self.host, self.port = host, port
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "FakeYahoo":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeYahoo":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def chart(self, ticker: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        listing = self.listings.get(ticker)
        if listing is None:
            return 404, {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}}
        tz = ZoneInfo(listing.timezone)

        def stamp(day: dt.date, at: dt.time = listing.open_time) -> int:
            return int(dt.datetime.combine(day, at, tz).timestamp())

        interval = params.get("interval", "1d")
        if interval in INTRADAY:
            return self.intraday(ticker, listing, interval, params)
        days = sorted(listing.bars)
        if "period1" in params:
            lo, hi = int(params["period1"]), int(params["period2"])
            days = [d for d in days if lo <= stamp(d, dt.time(0)) < hi]
        else:
            days = days[-1:]
        quote: dict[str, list[Any]] = {k: [] for k in ("open", "high", "low", "close", "volume")}
        for d in days:
            f = listing.factor(d)
            o, h, l, c, v = listing.bars[d]
            for k, x in zip(("open", "high", "low", "close"), (o, h, l, c)):
                quote[k].append(float32(Fraction(D(x)) / f))
            quote["volume"].append(int(Fraction(D(v)) * f))
        events: dict[str, Any] = {}
        in_range = set(days)
        splits = {str(stamp(d)): {"date": stamp(d), "numerator": n, "denominator": m, "splitRatio": f"{n}:{m}"}
                  for d, (n, m) in listing.splits.items() if d in in_range}
        divs = {str(stamp(d)): {"amount": float(Fraction(D(a)) / listing.factor(d)), "date": stamp(d)}
                for d, a in listing.dividends.items() if d in in_range}
        if splits:
            events["splits"] = splits
        if divs:
            events["dividends"] = divs
        last = days[-1] if days else sorted(listing.bars)[-1]
        offset = int(dt.datetime.combine(last, dt.time(12), tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        period = {"timezone": "EST", "start": stamp(last), "end": stamp(last, dt.time(16)), "gmtoffset": offset}
        meta = {
            "currency": listing.currency, "symbol": ticker, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS",
            "instrumentType": listing.instrument, "firstTradeDate": stamp(sorted(listing.bars)[0]),
            "regularMarketTime": stamp(last, dt.time(16)), "hasPrePostMarketData": True, "gmtoffset": offset,
            "timezone": "EST", "exchangeTimezoneName": listing.timezone,
            "regularMarketPrice": float32(Fraction(D(listing.bars[last][3]))), "priceHint": listing.price_hint,
            "currentTradingPeriod": {"pre": period, "regular": period, "post": period},
            "dataGranularity": params.get("interval", "1d"), "range": params.get("range", ""),
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        result: dict[str, Any] = {"meta": meta, "timestamp": [stamp(d) for d in days], "indicators": {"quote": [quote], "adjclose": [{"adjclose": quote["close"]}]}}
        if events:
            result["events"] = events
        return 200, {"chart": {"result": [result], "error": None}}


    def intraday(self, ticker: str, listing: Listing, interval: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        tz = ZoneInfo(listing.timezone)
        now = int(time.time())
        if "period1" in params:
            lo, hi = int(params["period1"]), int(params["period2"])
        else:  # range=5d: yfinance's request for the trading periods
            lo, hi = now - 5 * 86_400, now
        lookback = LOOKBACK_DAYS.get(interval, 60)
        if lo < now - lookback * 86_400:
            return unprocessable(interval, lo, hi, f"The requested range must be within the last {lookback} days.")
        if interval == "1m" and hi - lo > ONE_MINUTE_REQUEST_DAYS * 86_400:
            return unprocessable(interval, lo, hi, "Only 7 days worth of 1m granularity data are allowed to be fetched per request.")
        size = INTRADAY[interval] * 60
        buckets: dict[int, list[tuple[str, str, str, str, str]]] = {}
        for t in sorted(listing.minutes):
            local = dt.datetime.fromtimestamp(t, tz)
            session_open = int(dt.datetime.combine(local.date(), listing.open_time, tz).timestamp())
            start = session_open + (t - session_open) // size * size
            if lo <= start < hi:
                buckets.setdefault(start, []).append(listing.minutes[t])
        quote: dict[str, list[Any]] = {k: [] for k in ("open", "high", "low", "close", "volume")}
        stamps = sorted(buckets)
        for start in stamps:
            rows = buckets[start]
            f = listing.factor(dt.datetime.fromtimestamp(start, tz).date())
            raw = (D(rows[0][0]), max(D(r[1]) for r in rows), min(D(r[2]) for r in rows), D(rows[-1][3]))
            for k, x in zip(("open", "high", "low", "close"), raw):
                quote[k].append(float32(Fraction(x) / f))
            quote["volume"].append(int(sum(Fraction(D(r[4])) for r in rows) * f))
        days = sorted({dt.datetime.fromtimestamp(t, tz).date() for t in stamps} or {dt.datetime.fromtimestamp(now, tz).date()})

        def period(day: dt.date, a: dt.time, b: dt.time) -> dict[str, Any]:
            start = dt.datetime.combine(day, a, tz)
            return {"timezone": "EST", "start": int(start.timestamp()), "end": int(dt.datetime.combine(day, b, tz).timestamp()),
                    "gmtoffset": int(start.utcoffset().total_seconds())}  # type: ignore[union-attr]

        regular = [[period(d, listing.open_time, listing.close_time)] for d in days]
        current = period(days[-1], listing.open_time, listing.close_time)
        meta = {
            "currency": listing.currency, "symbol": ticker, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS",
            "instrumentType": listing.instrument, "firstTradeDate": int(dt.datetime.combine(sorted(listing.bars or days)[0], listing.open_time, tz).timestamp()),
            "regularMarketTime": current["end"], "hasPrePostMarketData": True, "gmtoffset": current["gmtoffset"],
            "timezone": "EST", "exchangeTimezoneName": listing.timezone, "priceHint": listing.price_hint,
            "regularMarketPrice": quote["close"][-1] if quote["close"] else 0.0,
            "currentTradingPeriod": {"pre": current, "regular": current, "post": current},
            "tradingPeriods": {"pre": [[period(d, dt.time(4), listing.open_time)] for d in days], "regular": regular,
                               "post": [[period(d, listing.close_time, dt.time(20))] for d in days]},
            "dataGranularity": interval, "range": params.get("range", ""),
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        return 200, {"chart": {"result": [{"meta": meta, "timestamp": stamps, "indicators": {"quote": [quote]}}], "error": None}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeYahoo
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query))
        with self.fake.lock:
            self.fake.requests.append((parts.path, params))
        if parts.path.startswith("/v8/finance/chart/"):
            status, payload = self.fake.chart(parts.path.rsplit("/", 1)[1], params)
            self._send(status, json.dumps(payload).encode(), "application/json")
        elif parts.path == "/v1/test/getcrumb":
            self._send(200, b"fakecrumb", "text/plain")
        else:  # fc.yahoo.com: the cookie
            self._send(404, b"", "text/html", {"Set-Cookie": "A3=fake-cookie; Max-Age=31557600; Path=/"})
