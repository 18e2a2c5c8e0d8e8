"""A local stand-in for the Yahoo Finance endpoints the unmodified yfinance library calls for
price history: the cookie page (fc.yahoo.com), ``/v1/test/getcrumb`` and the chart API
``/v8/finance/chart/{ticker}`` with daily bars, splits and dividends.

rustybt points yfinance at it with ``rustybt data fetch --source yahoo --yahoo-url URL`` (every
Yahoo host is replaced by URL in the session yfinance is given). In process::

    with FakeYahoo({"AAPL": Listing(...)}) as fake:
        ... fake.url ...

Like Yahoo, prices before a split are sent split-adjusted (divided by the ratios of the later
splits), as float32 values widened to double (``187.14999389648438``), volumes multiplied by
the ratios, and dividends adjusted the same way; ``priceHint`` gives the decimals of the quote.
A listing keeps the raw (traded) values, which are what rustybt must store.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import threading
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

    def factor(self, day: dt.date) -> Fraction:
        """Product of the ratios of the splits after ``day``: what Yahoo divides prices by."""
        f = Fraction(1)
        for ex, (num, den) in self.splits.items():
            if ex > day:
                f *= Fraction(num, den)
        return f


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
