"""A local stand-in for the Binance spot REST API (``/api/v3``), good enough for the unmodified
ccxt ``binance`` client.

Runs in-process::

    with FakeBinance(markets=[Market("BTCUSDT", "BTC", "USDT")], balances={"USDT": "1000"}) as fake:
        ex = ccxt.binance({...}); ex.urls["api"]["public"] = ex.urls["api"]["private"] = fake.url

or as a script for end-to-end tests of the Rust binary::

    python -m tests.support.fake_binance --port 0 --script scenario.json

(prints ``LISTENING http://127.0.0.1:PORT/api/v3`` on stdout once ready). Script keys for long
kline histories (``rustybt data fetch``): ``history`` (a list of ``{"symbol", "interval",
"start_ms", "count", "price"?, "seed"?}``, see ``generate_history``), ``max_klines_limit`` (a page
holds at most this many candles whatever the client asks) and ``time_follows_clock``
(``/api/v3/time`` answers ``now_ms`` instead of the wall clock). A fault's ``skip`` lets that many
matching requests through first (a 429 on the third page).

The REST side uses only the standard library. All money is ``decimal.Decimal``; numbers go over the wire as
Binance formats them (strings with 8 decimals). The fake checks the API key header, the
HMAC-SHA256 signature and the timestamp/recvWindow like Binance, applies the PRICE_FILTER,
LOT_SIZE and (MIN_)NOTIONAL filters, matches market and limit orders against a scripted price, and
keeps a request log. Faults can be queued for the next matching request (see ``Fault``).

Control endpoints for out-of-process tests live under ``/_fake/`` (not part of Binance's API):
``GET /_fake/requests``, ``GET /_fake/orders``, ``GET /_fake/balances``, ``POST /_fake/advance``
(JSON ``{"symbol":..., "price":..., "qty": optional}``), ``POST /_fake/fault`` (a fault as JSON),
``POST /_fake/candle`` (JSON ``{"symbol", "interval", "candle": [open_ms, o, h, l, c, v]}``;
appended and matched against resting orders, see ``append_candle``),
``POST /_fake/time`` (JSON ``{"now_ms": int|null}``), ``POST /_fake/clock`` (JSON
``{"paused": bool}``; only with a script ``clock`` section, see ``Clock``), ``GET /_fake/trades``
(every execution as ``myTrades`` shows it), ``POST /_fake/balances`` (JSON ``{"asset", "free"}``
or ``{"asset", "delta"}``: changes a free balance behind the client's back, see ``set_balance``).

With a script key ``websocket`` the fake also serves Binance's kline and trade streams on a second port
(``WsScript``, ``WsServer``; script mode prints ``WEBSOCKET ws://127.0.0.1:PORT/ws`` after the
LISTENING line): ``GET /_fake/ws`` (its log of connects, refusals, subscriptions and drops),
``POST /_fake/ws`` (JSON ``{"down_s": seconds}``: cuts every socket and refuses new ones that long).
The websocket side needs the ``websockets`` package; the REST side only the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import hmac
import itertools
import json
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

D = Decimal
ZERO = Decimal(0)

INTERVALS_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}

CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")


def fmt(value: Decimal) -> str:
    """Binance's wire format: a plain decimal string with 8 places."""
    return f"{value:.8f}"


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class ApiError(Exception):
    """A Binance error reply: HTTP status plus {"code", "msg"}."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


# ----------------------------------------------------------------------------------- scripting


@dataclass
class Market:
    symbol: str
    base: str
    quote: str
    tick_size: str = "0.01"
    min_price: str = "0.01"
    max_price: str = "1000000"
    step_size: str = "0.00001"
    min_qty: str = "0.00001"
    max_qty: str = "9000"
    min_notional: str = "5"
    max_notional: str = "9000000"
    notional_filter: str = "NOTIONAL"  # or "MIN_NOTIONAL" (the older filter some symbols still carry)
    status: str = "TRADING"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Market":
        return cls(**{k: str(v) for k, v in data.items()})

    def exchange_info(self) -> dict[str, Any]:
        if self.notional_filter == "MIN_NOTIONAL":
            notional = {
                "filterType": "MIN_NOTIONAL",
                "minNotional": fmt(D(self.min_notional)),
                "applyToMarket": True,
                "avgPriceMins": 5,
            }
        else:
            notional = {
                "filterType": "NOTIONAL",
                "minNotional": fmt(D(self.min_notional)),
                "applyMinToMarket": True,
                "maxNotional": fmt(D(self.max_notional)),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            }
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(D(self.min_price)),
                    "maxPrice": fmt(D(self.max_price)),
                    "tickSize": fmt(D(self.tick_size)),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(D(self.min_qty)),
                    "maxQty": fmt(D(self.max_qty)),
                    "stepSize": fmt(D(self.step_size)),
                },
                notional,
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "NONE"],
        }


@dataclass
class Fault:
    """Applied to the next request(s) matching ``method`` and ``path`` (path relative to /api/v3,
    e.g. ``"order"``; ``"*"`` matches any) and, if given, ``when`` (params that must be equal).

    kinds:
      - ``"status"``: reply ``status`` (429, 418, 500, 503, ...) with ``body`` (JSON) and
        ``retry_after`` seconds in a Retry-After header; the request is NOT processed, unless
        ``also_process=True`` (a gateway that fails after the backend took the request).
      - ``"delay"``: sleep ``delay_s`` before answering; with ``process=True`` (default) the request
        is processed before the sleep, so the order exists although the client timed out.
      - ``"drop"``: process the request, then close the connection without any reply (the
        "exchange accepted the order but the ack was lost" case); ``process=False`` drops it unseen.
      - ``"reject"``: HTTP 400 with ``code``/``msg`` (default -2010 insufficient balance), not processed.
    """

    kind: str
    method: str = "*"
    path: str = "*"
    status: int = 503
    body: Any = None
    retry_after: float | None = None
    delay_s: float = 0.0
    process: bool = True
    code: int = -2010
    msg: str = "Account has insufficient balance for requested action."
    when: dict[str, str] | None = None
    times: int = 1
    also_process: bool = False
    skip: int = 0  # let this many matching requests through before the fault applies

    def matches(self, method: str, path: str, params: dict[str, str]) -> bool:
        if self.method not in ("*", method) or self.path not in ("*", path):
            return False
        return all(params.get(k) == str(v) for k, v in (self.when or {}).items())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Fault":
        return cls(**data)


@dataclass
class Trade:
    id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    def wire(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "id": self.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    price: Decimal
    orig_qty: Decimal
    time: int
    executed_qty: Decimal = ZERO
    cumulative_quote: Decimal = ZERO
    status: str = "NEW"
    update_time: int = 0
    locked: Decimal = ZERO  # what the order still holds locked (quote for buys, base for sells)
    lock_price: Decimal = ZERO  # the price at which a buy locked its quote
    trades: list[Trade] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED", "PENDING_CANCEL")

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def wire(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cumulative_quote),
            "status": self.status,
            "timeInForce": self.time_in_force or "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(ZERO),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass
class RequestRecord:
    time: float
    method: str
    path: str
    params: dict[str, str]
    status: int = 0
    fault: str | None = None
    error_code: int | None = None


@dataclass
class Clock:
    """Script mode's market clock: every ``wall_ms_per_bar`` of wall time the fake's virtual time
    advances by one ``interval`` and the next candle of each ``path`` appears (and is matched, as
    ``append_candle`` does). Candle k of a path opens at ``start_ms + k * interval``; its open is
    the previous close (the first one's open is its own close), high/low are max/min of open and
    close, volume 10. Virtual time starts at ``start_ms`` (nothing has closed yet) and stops once
    every path is used up; ``paused`` (``POST /_fake/clock``) holds it where it is."""

    start_ms: int
    interval: str
    wall_ms_per_bar: int
    path: dict[str, list[str]]
    paused: bool = False
    # the first candle appears at its own close in wall time (start_ms + interval), not one
    # wall_ms_per_bar after the fake started: a candle is then served exactly when it closes
    align_to_wall: bool = False
    bars: int = 0  # candles appended per path so far

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Clock":
        clock = cls(
            start_ms=int(data["start_ms"]),
            interval=str(data["interval"]),
            wall_ms_per_bar=int(data["wall_ms_per_bar"]),
            path={sym: [str(p) for p in prices] for sym, prices in data["path"].items()},
            paused=bool(data.get("paused", False)),
            align_to_wall=bool(data.get("align_to_wall", False)),
        )
        if clock.interval not in INTERVALS_MS:
            raise ValueError(f"clock.interval {clock.interval!r} is not one of {', '.join(INTERVALS_MS)}")
        if clock.wall_ms_per_bar <= 0:
            raise ValueError("clock.wall_ms_per_bar must be > 0")
        if clock.start_ms % INTERVALS_MS[clock.interval]:
            raise ValueError(f"clock.start_ms {clock.start_ms} is not a multiple of {clock.interval}")
        return clock

    @property
    def length(self) -> int:
        return max((len(p) for p in self.path.values()), default=0)

    @property
    def exhausted(self) -> bool:
        return self.bars >= self.length

    def candle(self, symbol: str, k: int) -> list[Any] | None:
        prices = self.path[symbol]
        if k >= len(prices):
            return None
        close = D(prices[k])
        open_ = D(prices[k - 1]) if k > 0 else close
        return [self.start_ms + k * INTERVALS_MS[self.interval], open_, max(open_, close), min(open_, close), close, D(10)]


# ------------------------------------------------------------------------------ websocket


@dataclass
class WsScript:
    """The websocket stand-in (script key ``websocket``): Binance's market streams at
    ``ws://HOST:PORT/ws`` (any path under ``/ws``), ``SUBSCRIBE``/``UNSUBSCRIBE`` requests and
    ``<symbol>@kline_<interval>`` events. Every candle appended (by the clock or
    ``POST /_fake/candle``) goes out as a final kline (``"x": true``); with a clock, half way
    through each bar the candle then forming goes out as ``"x": false`` with the close
    ``forming_close`` (a price no closed candle has: a feed that trades it shows). ``drops``: bar
    numbers k at whose half-bar point every socket is cut (TCP abort, no close frame) and new
    connections are refused (HTTP 503) for ``down_bars`` bars, so the finals of bars k .. k +
    down_bars − 1 never reach the client. With a clock, every bar's trades go out in its wall
    time on ``<symbol>@trade`` and ``<symbol>@aggTrade`` (raw events with Binance's ``p``/``q``
    texts, trade time ``T`` and event time ``E``; see ``BAR_TRADES``): aggregated they are
    exactly the bar's REST kline, and a cut at the half-bar point loses the bar's last two
    trades. A connection may also subscribe to the account's order
    events (the WebSocket API's ``userDataStream.subscribe.signature``, signed like a REST
    request): every order change then goes out as an ``executionReport``."""

    drops: list[int] = field(default_factory=list)
    down_bars: float = 2.0
    forming_close: str = "11111.11"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WsScript":
        return cls(drops=[int(k) for k in data.get("drops", [])], down_bars=float(data.get("down_bars", 2.0)),
                   forming_close=str(data.get("forming_close", "11111.11")))


# A clock bar's trades: (fraction of the bar at which it is sent and stamped, price, quantity).
# "a"/"b" are the high then the low on even bars, the low then the high on odd ones; the
# quantities add up to the clock candle's volume (10), so the trades aggregate to its kline.
BAR_TRADES = ((0.1, "open", "1.5"), (0.35, "a", "2.25"), (0.6, "b", "3.125"), (0.85, "close", "3.125"))


class WsServer:
    """The websocket side of the fake, on its own port and asyncio thread. ``log`` records
    connects, refusals, subscriptions and drops (``GET /_fake/ws``)."""

    def __init__(self, fake: "FakeBinance", host: str, script: WsScript):
        self.fake, self.host, self.script = fake, host, script
        self.port = 0
        self.log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()  # not the fake's: the clock thread sends holding that one
        self.down_until = 0.0  # time.monotonic() before which connections are refused
        self._subs: dict[Any, set[str]] = {}
        self._user: dict[Any, int] = {}  # user data subscriptions: connection -> subscription id
        self._next_subscription = -1
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop: Any = None
        self._send_lock: Any = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="fake-binance-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake's websocket server did not start")

    def stop(self) -> None:
        if self._thread is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)
            self._thread = None

    def _note(self, event: str, **data: Any) -> None:
        with self._log_lock:
            self.log.append({"time": time.time(), "event": event, **data})

    def _main(self) -> None:
        from websockets.asyncio.server import serve

        async def run() -> None:
            self._stop, self._send_lock = asyncio.Event(), asyncio.Lock()
            async with serve(self._handle, self.host, 0, process_request=self._gate, ping_interval=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                self._ready.set()
                await self._stop.wait()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(run())

    def _gate(self, connection: Any, request: Any) -> Any:
        from http import HTTPStatus

        if not request.path.startswith("/ws"):
            return connection.respond(HTTPStatus.NOT_FOUND, "no such stream path\n")
        if time.monotonic() < self.down_until:
            self._note("refused")
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "the stream is down\n")
        return None

    async def _handle(self, connection: Any) -> None:
        self._subs[connection] = set()
        self._note("connect", path=connection.request.path)
        try:
            async for text in connection:
                msg = json.loads(text)
                method, streams = msg.get("method"), [str(s) for s in msg.get("params") or []]
                if method == "SUBSCRIBE":
                    self._subs[connection].update(streams)
                    self._note("subscribe", streams=streams)
                    await connection.send(json.dumps({"result": None, "id": msg.get("id")}))
                elif method == "userDataStream.subscribe.signature":
                    reply = self._user_data_subscribe(msg.get("params") or {})
                    if "result" in reply:
                        self._user[connection] = reply["result"]["subscriptionId"]
                    self._note("user_data", ok="result" in reply)
                    await connection.send(json.dumps({"id": msg.get("id"), **reply}))
                elif method == "UNSUBSCRIBE":
                    self._subs[connection].difference_update(streams)
                    await connection.send(json.dumps({"result": None, "id": msg.get("id")}))
                else:
                    await connection.send(json.dumps({"error": {"code": 2, "msg": f"Invalid request {method!r}"}, "id": msg.get("id")}))
        except Exception:  # noqa: BLE001 - a cut connection ends the handler like a closed one
            pass
        finally:
            self._subs.pop(connection, None)
            self._user.pop(connection, None)

    def _user_data_subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        """Binance's WebSocket API ``userDataStream.subscribe.signature``: the API key, a
        timestamp within the receive window and an HMAC-SHA256 of the sorted parameters."""
        fake = self.fake
        signature = str(params.get("signature", ""))
        query = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        expected = hmac.new(fake.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        if params.get("apiKey") != fake.api_key:
            return {"status": 401, "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}}
        if not hmac.compare_digest(signature, expected):
            return {"status": 400, "error": {"code": -1022, "msg": "Signature for this request is not valid."}}
        window = int(params.get("recvWindow", 5000))
        if abs(int(time.time() * 1000) - int(params.get("timestamp", 0))) > window + 1000:
            return {"status": 400, "error": {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}}
        self._next_subscription += 1
        return {"status": 200, "result": {"subscriptionId": self._next_subscription}}

    def user_event(self, event: dict[str, Any]) -> None:
        """Sends an account event to every user data subscription (from any thread)."""
        self._call(self._send_user(event))

    async def _send_user(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            for connection, subscription in list(self._user.items()):
                try:
                    await connection.send(json.dumps({"subscriptionId": subscription, "event": event}))
                except Exception:  # noqa: BLE001 - a connection that just died misses it
                    pass

    def kline(self, symbol: str, interval: str, row: list[Any], final: bool) -> None:
        """Sends a kline event to every subscriber of the stream (from any thread)."""
        step = INTERVALS_MS[interval]
        t = int(row[0])
        k = {"t": t, "T": t + step - 1, "s": symbol, "i": interval, "f": 1, "L": 1, "o": fmt(_dec(row[1])),
             "c": fmt(_dec(row[4])), "h": fmt(_dec(row[2])), "l": fmt(_dec(row[3])), "v": fmt(_dec(row[5])), "n": 1,
             "x": final, "q": fmt(_dec(row[4]) * _dec(row[5])), "V": "0", "Q": "0", "B": "0"}
        text = json.dumps({"e": "kline", "E": int(time.time() * 1000), "s": symbol, "k": k})
        self._call(self._send_all(f"{symbol.lower()}@kline_{interval}", text))

    def trade(self, symbol: str, trade_id: int, price: Decimal, qty: Decimal, time_ms: int) -> None:
        """Sends one trade to the subscribers of ``<symbol>@trade`` and ``<symbol>@aggTrade``."""
        common = {"E": time_ms + 1, "s": symbol, "p": fmt(price), "q": fmt(qty), "T": time_ms, "m": False, "M": True}
        stream = symbol.lower()
        self._call(self._send_all(f"{stream}@trade", json.dumps({"e": "trade", **common, "t": trade_id})))
        self._call(self._send_all(f"{stream}@aggTrade", json.dumps({"e": "aggTrade", **common, "a": trade_id, "f": trade_id, "l": trade_id})))

    def drop(self, down_s: float) -> None:
        """Cuts every socket and refuses new ones for ``down_s`` seconds."""
        self.down_until = time.monotonic() + down_s
        self._call(self._drop_all(down_s))

    def _call(self, coroutine: Any) -> None:
        # not waited for: the loop runs them in order (FIFO, and one send lock)
        if self._thread is None:
            coroutine.close()
            return
        asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _send_all(self, stream: str, text: str) -> None:
        async with self._send_lock:
            for connection, streams in list(self._subs.items()):
                if stream in streams:
                    try:
                        await connection.send(text)
                    except Exception:  # noqa: BLE001 - a connection that just died misses it
                        pass

    async def _drop_all(self, down_s: float) -> None:
        async with self._send_lock:
            self._note("drop", connections=len(self._subs), down_s=down_s)
            for connection in list(self._subs):
                connection.transport.abort()
            self._user.clear()


# ---------------------------------------------------------------------------------- the fake


class FakeBinance:
    """The fake exchange. Thread-safe: the HTTP threads and the test thread share one lock."""

    def __init__(
        self,
        markets: Iterable[Market] = (),
        balances: dict[str, Any] | None = None,
        prices: dict[str, Any] | None = None,
        candles: dict[str, dict[str, list[list[Any]]]] | None = None,
        *,
        api_key: str = "fake-api-key",
        secret: str = "fake-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        now_ms: int | None = None,
        taker_fee: str = "0.001",
        maker_fee: str = "0.001",
        faults: Iterable[Fault] = (),
        clock: Clock | None = None,
        max_klines_limit: int = 1000,
        time_follows_clock: bool = False,
        websocket: WsScript | None = None,
    ):
        self.lock = threading.RLock()
        # like exchanges that cap a page lower than the limit asked for (Binance: 1000)
        self.max_klines_limit = max_klines_limit
        # /time answers the scripted clock (now_ms) instead of the wall clock: a client that
        # asks the exchange which candle is forming (`data fetch`) then sees the scripted time
        self.time_follows_clock = time_follows_clock
        self._sorted_opens: dict[tuple[str, str], list[int]] = {}
        self.clock = clock
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = threading.Event()
        self._clock_wake = threading.Event()
        self.api_key = api_key
        self.secret = secret
        self.host, self.port = host, port
        self.markets: dict[str, Market] = {m.symbol: m for m in markets}
        self.balances: dict[str, list[Decimal]] = {
            a: [_dec(v), ZERO] for a, v in (balances or {}).items()
        }  # asset -> [free, locked]
        self.prices: dict[str, Decimal] = {s: _dec(p) for s, p in (prices or {}).items()}
        self.liquidity: dict[str, Decimal | None] = {}
        self.fill_plans: dict[str, list[Decimal]] = {}
        self.candles: dict[tuple[str, str], dict[int, list[Any]]] = {}
        for sym, by_interval in (candles or {}).items():
            for interval, rows in by_interval.items():
                self.add_candles(sym, interval, rows)
        self._now_ms = now_ms
        self.taker_fee, self.maker_fee = D(taker_fee), D(maker_fee)
        self.faults: list[Fault] = list(faults)
        self.orders: list[Order] = []
        self.trades: list[Trade] = []
        self.requests: list[RequestRecord] = []
        self._order_ids = itertools.count(1000)
        self._trade_ids = itertools.count(1)
        self._ws_trade_ids = itertools.count(1)  # the market's trades on the websocket
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ws = None if websocket is None else WsServer(self, host, websocket)

    # ---- lifecycle
    def start(self) -> "FakeBinance":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-binance", daemon=True)
        self._thread.start()
        if self.ws is not None:
            self.ws.start()
        if self.clock is not None:
            with self.lock:
                self._now_ms = self.clock.start_ms  # nothing has closed yet
            self._clock_thread = threading.Thread(target=self._run_clock, name="fake-binance-clock", daemon=True)
            self._clock_thread.start()
        return self

    def stop(self) -> None:
        if self.ws is not None:
            self.ws.stop()
        self._clock_stop.set()
        self._clock_wake.set()
        if self._clock_thread is not None:
            self._clock_thread.join(timeout=5)
            self._clock_thread = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeBinance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v3"

    # ---- clock: wall time for signatures/timestamps; candle visibility may use a virtual time
    def now_ms(self) -> int:
        return self._now_ms if self._now_ms is not None else int(time.time() * 1000)

    def set_time(self, now_ms: int | None) -> None:
        with self.lock:
            self._now_ms = now_ms

    def tick(self) -> list[Trade]:
        """One step of the clock: virtual time advances by one interval and the next candle of
        every path is appended and matched. Nothing happens once the paths are used up."""
        with self.lock:
            clock = self.clock
            if clock is None or clock.exhausted:
                return []
            k = clock.bars
            fills: list[Trade] = []
            for symbol in clock.path:
                row = clock.candle(symbol, k)
                if row is not None:
                    fills += self.append_candle(symbol, clock.interval, row)
            clock.bars += 1
            # the candle just appended has closed: now = its open + interval
            self._now_ms = clock.start_ms + clock.bars * INTERVALS_MS[clock.interval]
            return fills

    def set_paused(self, paused: bool) -> None:
        with self.lock:
            if self.clock is None:
                raise ApiError(400, -1000, "this fake has no clock (script key 'clock')")
            self.clock.paused = paused
        self._clock_wake.set()

    def _run_clock(self) -> None:
        """Ticks the clock in wall time; with a websocket, each bar's trades (``BAR_TRADES``) and
        its half-bar point (``_half_bar``) go out at their fractions of the bar first."""
        assert self.clock is not None
        period = self.clock.wall_ms_per_bar / 1000
        next_at = time.monotonic() + period
        if self.clock.align_to_wall:
            first_close_ms = self.clock.start_ms + INTERVALS_MS[self.clock.interval]
            next_at = time.monotonic() + max(0.0, first_close_ms / 1000 - time.time())
        points: list[tuple[float, Callable[[float], None]]] = []
        if self.ws is not None:
            points = sorted([(f, self._bar_trade(j)) for j, (f, _, _) in enumerate(BAR_TRADES)] + [(0.5, self._half_bar)], key=lambda p: p[0])
        done = 0  # points of the current bar done (kept over a pause: nothing is sent twice)
        while not self._clock_stop.is_set():
            wake_at = next_at if done == len(points) else next_at - period * (1 - points[done][0])
            self._clock_wake.wait(max(0.0, wake_at - time.monotonic()))
            self._clock_wake.clear()
            if self._clock_stop.is_set():
                return
            with self.lock:
                if self.clock.exhausted:
                    return
                paused = self.clock.paused
            if paused:
                next_at = time.monotonic() + period  # a full bar of wall time after resuming
                continue
            while done < len(points) and time.monotonic() >= next_at - period * (1 - points[done][0]):
                points[done][1](period)
                done += 1
            if time.monotonic() >= next_at:
                self.tick()
                next_at += period
                done = 0

    def _bar_trade(self, j: int) -> Callable[[float], None]:
        """Sends trade ``j`` of ``BAR_TRADES`` of the forming bar of every path."""

        def send(period: float) -> None:
            ws, clock = self.ws, self.clock
            assert ws is not None and clock is not None
            fraction, role, qty = BAR_TRADES[j]
            with self.lock:
                k = clock.bars
                for symbol in clock.path:
                    row = clock.candle(symbol, k)
                    if row is None:
                        continue
                    which = role if role not in ("a", "b") else "high" if (role == "a") == (k % 2 == 0) else "low"
                    price = {"open": row[1], "high": row[2], "low": row[3], "close": row[4]}[which]
                    time_ms = row[0] + int(fraction * INTERVALS_MS[clock.interval])
                    ws.trade(symbol, next(self._ws_trade_ids), _dec(price), D(qty), time_ms)

        return send

    def _half_bar(self, period: float) -> None:
        """With a websocket: the forming candle's update, then a scheduled drop (``WsScript``)."""
        ws, clock = self.ws, self.clock
        if ws is None or clock is None:
            return
        with self.lock:
            k = clock.bars
            for symbol in clock.path:
                row = clock.candle(symbol, k)
                if row is not None:
                    forming = D(ws.script.forming_close)
                    ws.kline(symbol, clock.interval, [row[0], row[1], max(row[1], forming), min(row[1], forming), forming, D(1)], final=False)
        if k in ws.script.drops:
            ws.drop(ws.script.down_bars * period)

    # ---- test-facing scripting
    def inject(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        fault = fault or Fault(**kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def add_candles(self, symbol: str, interval: str, rows: Iterable[list[Any]]) -> None:
        """Rows are ``[open_ms, open, high, low, close, volume]`` (numbers or strings)."""
        with self.lock:
            book = self.candles.setdefault((symbol, interval), {})
            self._sorted_opens.pop((symbol, interval), None)
            for row in rows:
                book[int(row[0])] = [int(row[0])] + [fmt(_dec(v)) for v in row[1:6]]

    def append_candle(self, symbol: str, interval: str, row: list[Any]) -> list[Trade]:
        """Adds a candle and matches resting limit orders through it: buys whose limit the low
        reaches and sells whose limit the high reaches fill (at their limit, as makers); the
        current price becomes the close."""
        with self.lock:
            self.add_candles(symbol, interval, [row])
            low, high, close = _dec(row[3]), _dec(row[2]), _dec(row[4])
            fills = self.advance(symbol, low) + self.advance(symbol, high)
            self.prices[symbol] = close
        if self.ws is not None:
            self.ws.kline(symbol, interval, row, final=True)
        return fills

    def set_fill_plan(self, symbol: str, chunks: Iterable[Any]) -> None:
        """The next market order on ``symbol`` fills in these chunks (quantities); anything left
        over after the plan expires (status EXPIRED, like a market order that ran out of book)."""
        with self.lock:
            self.fill_plans[symbol] = [_dec(c) for c in chunks]

    def set_liquidity(self, symbol: str, qty: Any | None) -> None:
        """Caps what an immediate (IOC/FOK/crossing) order can take at the current price."""
        with self.lock:
            self.liquidity[symbol] = None if qty is None else _dec(qty)

    def advance(self, symbol: str, price: Any, qty: Any | None = None) -> list[Trade]:
        """Moves the price; resting limit orders the price crosses fill (at their limit price, as
        makers), at most ``qty`` in total if given (that is how partial fills are scripted)."""
        price = _dec(price)
        budget = None if qty is None else _dec(qty)
        fills: list[Trade] = []
        with self.lock:
            self.prices[symbol] = price
            for order in self.orders:
                if order.symbol != symbol or order.type != "LIMIT" or not order.is_open:
                    continue
                crosses = price <= order.price if order.side == "BUY" else price >= order.price
                if not crosses:
                    continue
                take = order.remaining if budget is None else min(order.remaining, budget)
                if take <= 0:
                    break
                fills.append(self._fill(order, order.price, take, maker=True))
                if budget is not None:
                    budget -= take
        return fills

    def set_balance(self, asset: str, *, free: Any | None = None, delta: Any | None = None) -> None:
        """Changes an asset's free balance behind the client's back (a deposit, a withdrawal, a
        trade made elsewhere): to ``free``, or by ``delta``. The locked part is left alone."""
        if (free is None) == (delta is None):
            raise ValueError("give exactly one of free= and delta=")
        with self.lock:
            entry = self.balances.setdefault(asset, [ZERO, ZERO])
            value = _dec(free) if free is not None else entry[0] + _dec(delta)
            if value < 0:
                raise ApiError(400, -1000, f"the free {asset} balance would be negative ({value})")
            entry[0] = value

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        with self.lock:
            free, locked = self.balances.get(asset, [ZERO, ZERO])
            return free, locked

    def order_by_client_id(self, client_id: str) -> Order | None:
        with self.lock:
            found = [o for o in self.orders if o.client_order_id == client_id]
            return found[-1] if found else None

    def requests_for(self, method: str, path: str) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # ---- request handling (called from the HTTP threads)
    def take_fault(self, method: str, path: str, params: dict[str, str]) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path, params):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def authenticate(self, headers: Any, query: str, body: str, params: dict[str, str]) -> None:
        key = headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if "signature" not in params:
            raise ApiError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        if "timestamp" not in params:
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        total = "".join(
            "&".join(p for p in part.split("&") if p and not p.startswith("signature=")) for part in (query, body)
        )
        expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"].lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except ValueError:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'timestamp'.") from None
        if recv_window > 60000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        server = int(time.time() * 1000)
        if ts >= server + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - ts > recv_window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def dispatch(self, method: str, path: str, params: dict[str, str]) -> Any:
        public = {
            ("GET", "ping"): lambda p: {},
            ("GET", "time"): lambda p: {"serverTime": self.now_ms() if self.time_follows_clock else int(time.time() * 1000)},
            ("GET", "exchangeInfo"): self._exchange_info,
            ("GET", "klines"): self._klines,
            ("GET", "ticker/price"): self._ticker_price,
        }
        private = {
            ("GET", "account"): self._account,
            ("POST", "order"): self._new_order,
            ("GET", "order"): self._get_order,
            ("DELETE", "order"): self._cancel_order,
            ("GET", "openOrders"): self._open_orders,
            ("GET", "allOrders"): self._all_orders,
            ("GET", "myTrades"): self._my_trades,
        }
        if (method, path) in public:
            return public[(method, path)](params), False
        if (method, path) in private:
            return private[(method, path)], True
        raise ApiError(404, -1000, f"Unknown endpoint {method} /api/v3/{path}")

    # ---- endpoints
    def _exchange_info(self, p: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            wanted = [p["symbol"]] if "symbol" in p else list(self.markets)
            if "symbols" in p:
                wanted = json.loads(p["symbols"])
            for s in wanted:
                self._market(s)
            return {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                ],
                "exchangeFilters": [],
                "symbols": [self.markets[s].exchange_info() for s in wanted],
            }

    def _market(self, symbol: str | None) -> Market:
        if not symbol:
            raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.markets:
            raise ApiError(400, -1121, "Invalid symbol.")
        return self.markets[symbol]

    def _ticker_price(self, p: dict[str, str]) -> Any:
        with self.lock:
            self._market(p.get("symbol"))
            return {"symbol": p["symbol"], "price": fmt(self.prices[p["symbol"]])}

    def _klines(self, p: dict[str, str]) -> list[list[Any]]:
        self._market(p.get("symbol"))
        interval = p.get("interval")
        if interval not in INTERVALS_MS:
            raise ApiError(400, -1120, "Invalid interval.")
        step = INTERVALS_MS[interval]
        limit = int(p.get("limit", "500"))
        if not 1 <= limit <= 1000:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        start = int(p["startTime"]) if "startTime" in p else None
        end = int(p["endTime"]) if "endTime" in p else None
        with self.lock:
            now = self.now_ms()
            key = (p["symbol"], interval)
            book = self.candles.get(key, {})
            if key not in self._sorted_opens:
                self._sorted_opens[key] = sorted(book)
            every = self._sorted_opens[key]
            limit = min(limit, self.max_klines_limit)
            # like Binance: every candle that has opened is served, including the forming one
            lo = bisect.bisect_left(every, start) if start is not None else 0
            hi = bisect.bisect_right(every, min(now, end) if end is not None else now)
            opens = every[lo:hi]
            opens = opens[:limit] if start is not None else opens[-limit:]
            out = []
            for t in opens:
                row = book[t]
                quote_volume = fmt(D(row[4]) * D(row[5]))
                out.append([t, row[1], row[2], row[3], row[4], row[5], t + step - 1, quote_volume, 1, "0.00000000", "0.00000000", "0"])
            return out

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            balances = [
                {"asset": a, "free": fmt(free), "locked": fmt(locked)}
                for a, (free, locked) in sorted(self.balances.items())
                if p.get("omitZeroBalances") != "true" or free or locked
            ]
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": fmt(self.maker_fee), "taker": fmt(self.taker_fee), "buyer": fmt(ZERO), "seller": fmt(ZERO)},
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": int(time.time() * 1000),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _find(self, p: dict[str, str], code: int, msg: str) -> Order:
        symbol = p.get("symbol")
        self._market(symbol)
        if "orderId" in p:
            found = [o for o in self.orders if str(o.order_id) == p["orderId"] and o.symbol == symbol]
        elif "origClientOrderId" in p:
            found = [o for o in self.orders if o.client_order_id == p["origClientOrderId"] and o.symbol == symbol]
        else:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if not found:
            raise ApiError(400, code, msg)
        return found[-1]

    def _get_order(self, p: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            return self._find(p, -2013, "Order does not exist.").wire()

    def _cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            order = self._find(p, -2011, "Unknown order sent.")
            if not order.is_open:
                raise ApiError(400, -2011, "Unknown order sent.")
            self._release(order)
            order.status = "CANCELED"
            order.update_time = int(time.time() * 1000)
            self._order_event(order, "CANCELED")
            wire = order.wire()
            wire["origClientOrderId"] = order.client_order_id
            wire["clientOrderId"] = p.get("newClientOrderId", f"cancel-{order.order_id}")
            wire["transactTime"] = order.update_time
            return wire

    def _open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        with self.lock:
            if "symbol" in p:
                self._market(p["symbol"])
            return [o.wire() for o in self.orders if o.is_open and p.get("symbol", o.symbol) == o.symbol]

    def _all_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        with self.lock:
            self._market(p.get("symbol"))
            rows = [o for o in self.orders if o.symbol == p["symbol"]]
            if "orderId" in p:
                rows = [o for o in rows if o.order_id >= int(p["orderId"])]
            if "startTime" in p:
                rows = [o for o in rows if o.time >= int(p["startTime"])]
            if "endTime" in p:
                rows = [o for o in rows if o.time <= int(p["endTime"])]
            limit = int(p.get("limit", "500"))
            rows = rows[:limit] if "orderId" in p or "startTime" in p else rows[-limit:]
            return [o.wire() for o in rows]

    def _my_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        with self.lock:
            self._market(p.get("symbol"))
            rows = [t for t in self.trades if t.symbol == p["symbol"]]
            if "orderId" in p:
                rows = [t for t in rows if str(t.order_id) == p["orderId"]]
            if "fromId" in p:
                rows = [t for t in rows if t.id >= int(p["fromId"])]
            if "startTime" in p:
                rows = [t for t in rows if t.time >= int(p["startTime"])]
            if "endTime" in p:
                rows = [t for t in rows if t.time <= int(p["endTime"])]
            limit = int(p.get("limit", "500"))
            rows = rows[:limit] if "fromId" in p or "startTime" in p else rows[-limit:]
            return [t.wire() for t in rows]

    def _param_dec(self, p: dict[str, str], name: str) -> Decimal:
        raw = p.get(name)
        if raw is None or raw == "":
            raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        try:
            value = D(raw)
        except InvalidOperation:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.") from None
        if not value.is_finite() or value <= 0:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.")
        return value

    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            m = self._market(p.get("symbol"))
            side = p.get("side")
            if side not in ("BUY", "SELL"):
                raise ApiError(400, -1117, "Invalid side.")
            otype = p.get("type")
            if otype not in ("MARKET", "LIMIT"):
                raise ApiError(400, -1116, "Invalid orderType.")
            if "quoteOrderQty" in p:
                raise ApiError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")  # not modelled
            qty = self._param_dec(p, "quantity")
            tif = None
            price = self.prices.get(m.symbol)
            if otype == "LIMIT":
                tif = p.get("timeInForce")
                if tif is None:
                    raise ApiError(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
                if tif not in ("GTC", "IOC", "FOK"):
                    raise ApiError(400, -1115, "Invalid timeInForce.")
                price = self._param_dec(p, "price")
                if price < D(m.min_price) or price > D(m.max_price) or (price - D(m.min_price)) % D(m.tick_size) != 0:
                    raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
            elif "price" in p:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            if price is None:
                raise ApiError(400, -1013, "Market is closed.")
            if qty < D(m.min_qty) or qty > D(m.max_qty) or (qty - D(m.min_qty)) % D(m.step_size) != 0:
                raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
            if qty * price < D(m.min_notional):
                raise ApiError(400, -1013, f"Filter failure: {m.notional_filter}")
            client_id = p.get("newClientOrderId") or f"web_{next(self._order_ids)}"
            if not CLIENT_ID_RE.match(client_id):
                raise ApiError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_]{1,36}$'.")
            # Binance: a client order id must be unique among OPEN orders (a closed order's id can be reused)
            if any(o.client_order_id == client_id and o.is_open for o in self.orders):
                raise ApiError(400, -2010, "Duplicate order sent.")
            # funds: buys lock quote (at the limit price, or the current price for market orders)
            need_asset, need = (m.quote, qty * price) if side == "BUY" else (m.base, qty)
            free = self.balances.setdefault(need_asset, [ZERO, ZERO])[0]
            if free < need:
                raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
            now = int(time.time() * 1000)
            order = Order(next(self._order_ids), client_id, m.symbol, side, otype, tif, price if otype == "LIMIT" else ZERO, qty, now)
            self.balances[need_asset][0] -= need
            self.balances[need_asset][1] += need
            order.locked = need
            order.lock_price = price
            self.orders.append(order)
            self._match_on_arrival(order, price)
            if order.status == "NEW":
                self._order_event(order, "NEW")
            wire = order.wire()
            wire["transactTime"] = now
            wire["fills"] = [
                {"price": fmt(t.price), "qty": fmt(t.qty), "commission": fmt(t.commission), "commissionAsset": t.commission_asset, "tradeId": t.id}
                for t in order.trades
            ]
            return wire

    def _match_on_arrival(self, order: Order, market_price: Decimal) -> None:
        current = self.prices.get(order.symbol)
        if order.type == "MARKET":
            plan = self.fill_plans.pop(order.symbol, None)
            if plan is None:
                cap = self.liquidity.get(order.symbol)
                plan = [order.orig_qty if cap is None else min(cap, order.orig_qty)]
            for chunk in plan:
                take = min(chunk, order.remaining)
                if take > 0:
                    self._fill(order, market_price, take, maker=False)
            if order.remaining > 0:
                self._expire(order)
            return
        crosses = current is not None and (current <= order.price if order.side == "BUY" else current >= order.price)
        if crosses:
            cap = self.liquidity.get(order.symbol)
            available = order.orig_qty if cap is None else min(cap, order.orig_qty)
            if order.time_in_force == "FOK" and available < order.orig_qty:
                self._expire(order)
                return
            if available > 0:
                self._fill(order, current, available, maker=False)
        if order.remaining > 0 and order.time_in_force in ("IOC", "FOK"):
            self._expire(order)

    def _expire(self, order: Order) -> None:
        self._release(order)
        order.status = "EXPIRED"
        order.update_time = int(time.time() * 1000)
        self._order_event(order, "EXPIRED")

    def _release(self, order: Order) -> None:
        m = self.markets[order.symbol]
        asset = m.quote if order.side == "BUY" else m.base
        self.balances[asset][1] -= order.locked
        self.balances[asset][0] += order.locked
        order.locked = ZERO

    def _fill(self, order: Order, price: Decimal, qty: Decimal, *, maker: bool) -> Trade:
        m = self.markets[order.symbol]
        quote_amount = price * qty
        rate = self.maker_fee if maker else self.taker_fee
        now = int(time.time() * 1000)
        if order.side == "BUY":
            # locked quote was computed at the order's price (limit) or arrival price (market)
            release = order.lock_price * qty
            self.balances[m.quote][1] -= release
            order.locked -= release
            self.balances[m.quote][0] += release - quote_amount  # price improvement comes back
            commission = (qty * rate).quantize(D("1E-8"))
            self.balances.setdefault(m.base, [ZERO, ZERO])[0] += qty - commission
            fee_asset = m.base
        else:
            self.balances[m.base][1] -= qty
            order.locked -= qty
            commission = (quote_amount * rate).quantize(D("1E-8"))
            self.balances.setdefault(m.quote, [ZERO, ZERO])[0] += quote_amount - commission
            fee_asset = m.quote
        trade = Trade(next(self._trade_ids), order.order_id, order.symbol, order.side, price, qty, commission, fee_asset, now, maker)
        order.executed_qty += qty
        order.cumulative_quote += quote_amount
        order.trades.append(trade)
        order.update_time = now
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        if order.status == "FILLED" and order.locked:
            self._release(order)
        self.trades.append(trade)
        self._order_event(order, "TRADE", trade)
        return trade

    def _order_event(self, order: Order, execution: str, trade: Trade | None = None) -> None:
        """An ``executionReport`` to the user data streams (the websocket side), if any."""
        if self.ws is None:
            return
        event = {
            "e": "executionReport", "E": int(time.time() * 1000), "s": order.symbol, "c": order.client_order_id,
            "S": order.side, "o": order.type, "f": order.time_in_force or "GTC", "q": fmt(order.orig_qty),
            "p": fmt(order.price), "P": fmt(ZERO), "F": fmt(ZERO), "g": -1, "C": "", "x": execution, "X": order.status,
            "r": "NONE", "i": order.order_id, "l": fmt(trade.qty if trade else ZERO), "z": fmt(order.executed_qty),
            "L": fmt(trade.price if trade else ZERO), "n": fmt(trade.commission if trade else ZERO),
            "N": trade.commission_asset if trade else None, "T": order.update_time or order.time,
            "t": trade.id if trade else -1, "I": 1, "w": order.is_open, "m": bool(trade and trade.is_maker), "M": False,
            "O": order.time, "Z": fmt(order.cumulative_quote), "Y": fmt(trade.price * trade.qty if trade else ZERO),
            "Q": fmt(ZERO), "W": order.time, "V": "EXPIRE_MAKER",
        }
        self.ws.user_event(event)

    # ---- control endpoints (for out-of-process tests)
    def control(self, method: str, path: str, body: dict[str, Any]) -> Any:
        with self.lock:
            if (method, path) == ("GET", "requests"):
                return [asdict(r) for r in self.requests]
            if (method, path) == ("GET", "orders"):
                return [o.wire() for o in self.orders]
            if (method, path) == ("GET", "balances"):
                return {a: {"free": str(f), "locked": str(l)} for a, (f, l) in self.balances.items()}
            if (method, path) == ("POST", "balances"):
                if not isinstance(body.get("asset"), str) or ("free" in body) == ("delta" in body):
                    raise ApiError(400, -1000, 'POST /_fake/balances takes {"asset", "free"} or {"asset", "delta"}')
                self.set_balance(body["asset"], free=body.get("free"), delta=body.get("delta"))
                free, locked = self.balance(body["asset"])
                return {"asset": body["asset"], "free": str(free), "locked": str(locked)}
            if (method, path) == ("GET", "trades"):
                return [t.wire() for t in self.trades]
            if (method, path) == ("POST", "advance"):
                return [t.wire() for t in self.advance(body["symbol"], body["price"], body.get("qty"))]
            if (method, path) == ("POST", "liquidity"):
                # caps what an arriving order can take at once ("0": every limit order rests)
                self.set_liquidity(body["symbol"], body.get("qty"))
                return {}
            if (method, path) == ("POST", "fill_plan"):
                # the next market order on `symbol` fills in these chunks (the rest expires)
                self.fill_plans[body["symbol"]] = [_dec(c) for c in body["chunks"]]
                return {}
            if (method, path) == ("POST", "fault"):
                self.inject(Fault.from_dict(body))
                return {}
            if (method, path) == ("POST", "candle"):
                return [t.wire() for t in self.append_candle(body["symbol"], body["interval"], body["candle"])]
            if (method, path) == ("POST", "time"):
                self.set_time(body.get("now_ms"))
                return {}
            if (method, path) == ("GET", "ws"):
                if self.ws is None:
                    raise ApiError(400, -1000, "this fake has no websocket (script key 'websocket')")
                return list(self.ws.log)
            if (method, path) == ("POST", "ws"):
                if self.ws is None:
                    raise ApiError(400, -1000, "this fake has no websocket (script key 'websocket')")
                self.ws.drop(float(body.get("down_s", 0)))
                return {}
            if (method, path) == ("POST", "clock"):
                if not isinstance(body.get("paused"), bool):
                    raise ApiError(400, -1000, 'POST /_fake/clock takes {"paused": true|false}')
                self.set_paused(body["paused"])
                return {"paused": body["paused"], "bars": self.clock.bars, "now_ms": self.now_ms()}  # type: ignore[union-attr]
        raise ApiError(404, -1000, f"Unknown control endpoint {method} {path}")

    # ---- scripts
    @classmethod
    def from_script(cls, path: str | Path, **kwargs: Any) -> "FakeBinance":
        text = Path(path).read_text()
        if str(path).endswith(".toml"):
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        fake = cls(
            markets=[Market.from_dict(m) for m in data.get("markets", [])],
            balances=data.get("balances"),
            prices=data.get("prices"),
            candles=data.get("candles"),
            api_key=data.get("api_key", "fake-api-key"),
            secret=data.get("secret", "fake-secret"),
            now_ms=data.get("now_ms"),
            faults=[Fault.from_dict(f) for f in data.get("faults", [])],
            clock=Clock.from_dict(data["clock"]) if "clock" in data else None,
            max_klines_limit=int(data.get("max_klines_limit", 1000)),
            time_follows_clock=bool(data.get("time_follows_clock", False)),
            websocket=WsScript.from_dict(data["websocket"]) if "websocket" in data else None,
            **kwargs,
        )
        for spec in data.get("history", []):
            fake.add_candles(spec["symbol"], spec["interval"], generate_history(**{k: v for k, v in spec.items() if k not in ("symbol", "interval")}, interval=spec["interval"]))
        return fake


def generate_history(start_ms: int, count: int, interval: str, price: str = "100.00", seed: int = 0) -> list[list[Any]]:
    """``count`` candles from ``start_ms`` (a script's ``history`` entries): a deterministic walk
    of cent steps, open = previous close, volume with 3 decimals. Same arguments, same candles."""
    step = INTERVALS_MS[interval]
    cent, close = D("0.01"), D(price)
    state = seed * 2654435761 % 2**32 or 1
    rows: list[list[Any]] = []
    for k in range(count):
        state = (1103515245 * state + 12345) % 2**31  # a tiny LCG: no numpy needed in the fake
        open_ = close
        close = max(cent, open_ + cent * (state % 41 - 20))
        high = max(open_, close) + cent * (state % 7)
        low = max(cent, min(open_, close) - cent * (state % 5))
        rows.append([start_ms + k * step, open_, high, low, close, D(state % 100_000) / 1000])
    return rows


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBinance
    server_version = "FakeBinance/1.0"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if parts.path.startswith("/_fake/"):
            try:
                self._reply(200, fake.control(method, parts.path[len("/_fake/"):], json.loads(body) if body else {}))
            except ApiError as e:
                self._reply(e.status, {"code": e.code, "msg": e.msg})
            return
        if not parts.path.startswith("/api/v3/"):
            self._reply(404, {"code": -1000, "msg": f"Unknown path {parts.path}"})
            return
        path = parts.path[len("/api/v3/"):]
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        record = RequestRecord(time.time(), method, path, {k: v for k, v in params.items() if k != "signature"})
        with fake.lock:
            fake.requests.append(record)
        fault = fake.take_fault(method, path, params)
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "status":
                if fault.also_process:
                    self._process(method, path, params, parts.query, body, record, dry=False)
                headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                body_out = fault.body
                if body_out is None:
                    if fault.status in (418, 429):
                        body_out = {"code": -1003, "msg": "Too many requests; current limit of IP request weight is 6000 per 1 MINUTE. Please use WebSocket Streams for live updates to avoid bans."}
                    else:
                        body_out = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
                record.status = fault.status
                self._reply(fault.status, body_out, headers)
                return
            if fault.kind == "reject":
                record.status, record.error_code = 400, fault.code
                self._reply(400, {"code": fault.code, "msg": fault.msg})
                return
        status, payload = self._process(method, path, params, parts.query, body, record, dry=fault is not None and not fault.process)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the connection die
            except OSError:
                pass
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
        try:
            self._reply(status, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); the request has been processed all the same

    def _process(self, method: str, path: str, params: dict[str, str], query: str, body: str, record: RequestRecord, dry: bool) -> tuple[int, Any]:
        fake = self.fake
        if dry:
            record.status = 0
            return 200, {}
        try:
            handler, private = fake.dispatch(method, path, params)
            if private:
                fake.authenticate(self.headers, query, body, params)
                payload = handler(params)
            else:
                payload = handler
            record.status = 200
            return 200, payload
        except ApiError as e:
            record.status, record.error_code = e.status, e.code
            return e.status, {"code": e.code, "msg": e.msg}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake Binance spot REST API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--script", help="JSON or TOML file: markets, balances, prices, candles, faults, clock")
    args = parser.parse_args(argv)
    fake = FakeBinance.from_script(args.script, host=args.host, port=args.port) if args.script else FakeBinance(host=args.host, port=args.port)
    fake.start()
    print(f"LISTENING {fake.url}", flush=True)
    if fake.ws is not None:
        print(f"WEBSOCKET {fake.ws.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
