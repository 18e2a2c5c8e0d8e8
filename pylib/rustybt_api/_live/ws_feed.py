"""Closed candles from an exchange's websocket (ccxt.pro ``watch_ohlcv``, or ``watch_trades``
aggregated into bars by ``TradeBars``), for the Rust feed (``src/live/feed.rs``,
``ExchangeFeed`` with a stream), and the account's order updates (``watch_orders``), which wake
the Rust broker's poll; see docs/live.md, "Websocket data".

ccxt.pro is asyncio and the session loop is not: a ``CandleStream`` runs its own event loop in a
background thread, which keeps the subscription (reconnecting with backoff after a drop) and puts
every closed candle and every connection change in thread-safe queues. The Rust feed drains them
with ``take()`` on each poll (a short call holding the GIL; the loop never waits on the socket).

Only closed candles are passed on, never the forming one:
- Binance: the raw kline event (``k``), whose ``x`` flag says the candle is final; its price texts
  are kept as they are (ccxt's own parse turns them into floats);
- other exchanges: a candle is closed once the same connection shows a later one, with its last
  state on that connection (so the exchange must send a candle's final state before the next
  candle's first: the REST poll that follows each bar's due time is the safety net); its numbers
  are ccxt's floats turned back into their shortest decimal text (``number_to_string``), as the
  REST path does.

What the stream missed while it was down, the Rust side fills through REST after a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

import ccxt
import ccxt.pro

from .ccxt_client import CcxtBroker, _dec, _plain

__all__ = ["AccountStream", "CandleStream", "TradeBars", "TradeStream", "offers_candles", "offers_orders", "offers_trades"]

# exchanges whose raw kline event carries an "is closed" flag this module reads (exact texts)
RAW_KLINES = ("binance", "binanceus")
# exchanges whose raw trade event (``trade``/``aggTrade``: ``p``, ``q``, ``T``, ``E``) this module reads
RAW_TRADES = ("binance", "binanceus")
# trades aggregate into bars of at most a day: longer candles (weeks from Monday, calendar
# months) are not multiples of a fixed length from the epoch
MAX_TRADE_BAR_MS = 86_400_000


def offers_candles(exchange_id: str) -> bool:
    """Whether ccxt.pro has a websocket candle stream for this exchange."""
    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchOHLCV"))


def offers_trades(exchange_id: str) -> bool:
    """Whether ccxt.pro has a websocket trade stream for this exchange."""
    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchTrades"))


def offers_orders(exchange_id: str) -> bool:
    """Whether ccxt.pro has a websocket stream of the account's orders for this exchange."""
    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchOrders"))


def _text(value: Decimal) -> str:
    return format(_plain(value), "f")


def _pro_exchange(broker: CcxtBroker, ws_url: str | None, raw: str | None, sink: Any) -> Any:
    """A ccxt.pro exchange with the broker's settings, REST URLs and markets, its websocket URLs
    pointed at ``ws_url`` when given. With ``raw`` ``"klines"`` (``"trades"``), Binance's kline
    (trade) events go to ``sink`` before ccxt parses them."""
    sync = broker.exchange
    base = getattr(ccxt.pro, sync.id)
    if raw == "klines":

        class RawKlines(base):  # type: ignore[misc,valid-type]
            def handle_ohlcv(self, client: Any, message: Any) -> Any:
                kline = message.get("k") if isinstance(message, dict) else None
                if isinstance(kline, dict):
                    sink(kline)
                return super().handle_ohlcv(client, message)

        base = RawKlines
    elif raw == "trades":

        class RawTrades(base):  # type: ignore[misc,valid-type]
            def handle_trade(self, client: Any, message: Any) -> Any:
                if isinstance(message, dict):
                    sink(message)
                return super().handle_trade(client, message)

        base = RawTrades
    ex = base({"apiKey": sync.apiKey, "secret": sync.secret, "timeout": sync.timeout, "options": dict(sync.options)})
    api = dict(ex.urls.get("api") or {})
    for name, url in (sync.urls.get("api") or {}).items():
        if isinstance(url, str):
            api[name] = url
    if ws_url is not None:

        def point(value: Any) -> Any:
            return {k: point(v) for k, v in value.items()} if isinstance(value, dict) else ws_url

        api["ws"] = point(api.get("ws") or {"spot": ws_url})
    ex.urls["api"] = api
    if sync.markets:
        ex.set_markets(sync.markets, sync.currencies)
    return ex


class _Stream:
    """A ccxt.pro subscription kept on a background thread with its own asyncio loop: a dropped
    or refused connection is reported and retried with backoff (``min_delay_s`` doubling up to
    ``max_delay_s``); a failure retrying cannot fix ends it. Subclasses say what to watch
    (``_watch``) and what to keep of each result (``_keep``)."""

    def __init__(self, exchange: Any, name: str, min_delay_s: float, max_delay_s: float):
        self._ex = exchange
        self.min_delay_s, self.max_delay_s = min_delay_s, max_delay_s
        self._events: deque[dict[str, Any]] = deque()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.connected = False

    # ---- the caller's side
    def start(self) -> Self:
        self._thread.start()
        return self

    def _take_events(self) -> list[dict[str, Any]]:
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the subscription and the thread (closing the socket)."""
        if not self._thread.is_alive():
            return

        def cancel() -> None:
            if self._task is not None:
                self._task.cancel()

        self._loop.call_soon_threadsafe(cancel)
        self._thread.join(timeout_s)

    # ---- the background thread
    def _event(self, kind: str, reason: str | None = None) -> None:
        self._events.append({"type": kind, "time_ms": int(time.time() * 1000), "reason": reason})

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._run())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.run_until_complete(self._ex.close())
            self._loop.close()

    async def _watch(self) -> Any:
        raise NotImplementedError

    def _keep(self, result: Any) -> None:
        """What to keep of one result (runs on the stream's thread)."""

    def _dropped(self) -> None:
        """After a drop, before reconnecting."""

    async def _run(self) -> None:
        delay = self.min_delay_s
        while True:
            try:
                result = await self._watch()
            except (ccxt.NetworkError, ccxt.ExchangeNotAvailable) as err:
                # dropped, refused or timed out: tell the Rust side (it polls REST meanwhile), retry
                self._event("disconnected" if self.connected else "unavailable", f"{type(err).__name__}: {err}")
                self.connected = False
                self._dropped()
                await asyncio.sleep(delay)
                delay = min(self.max_delay_s, delay * 2)
                continue
            except ccxt.BaseError as err:
                # not a connection problem (an unsupported timeframe or market, bad keys): give up
                self._event("failed", f"{type(err).__name__}: {err}")
                return
            if not self.connected:
                self.connected = True
                delay = self.min_delay_s
                self._event("connected")
            self._keep(result)


class _BarStream(_Stream):
    """A subscription whose ``take`` hands the Rust feed closed bars of ``symbols`` at
    ``timeframe`` (``CandleStream``, ``TradeStream``); ``raw`` (``"klines"``, ``"trades"``
    or ``None``) sends Binance's raw events to ``_on_raw``."""

    def __init__(
        self,
        broker: CcxtBroker,
        symbols: list[str],
        timeframe: str,
        ws_url: str | None,
        raw: str | None,
        min_delay_s: float,
        max_delay_s: float,
    ):
        self.exchange_id = broker.exchange.id
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self._by_id = {broker.rules(s).exchange_symbol.upper(): broker.rules(s).symbol for s in self.symbols}
        self._candles: deque[list[Any]] = deque()
        ex = _pro_exchange(broker, ws_url, raw, self._on_raw)
        super().__init__(ex, f"rustybt-ws-{raw or 'bars'}-{self.exchange_id}", min_delay_s, max_delay_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.exchange_id!r}, {self.symbols!r}, {self.timeframe!r})"

    def _on_raw(self, message: dict[str, Any]) -> None:
        """A raw event (on the stream's thread)."""


class CandleStream(_BarStream):
    """One subscription to the closed candles of ``symbols`` at ``timeframe``. Thread-safe
    between its background thread and the caller of ``take``/``close``."""

    def __init__(
        self,
        broker: CcxtBroker,
        symbols: list[str],
        timeframe: str,
        ws_url: str | None,
        *,
        raw: bool | None = None,
        min_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
    ):
        self.raw = broker.exchange.id in RAW_KLINES if raw is None else raw
        self._interval = broker.exchange.safe_string(broker.exchange.timeframes, timeframe, timeframe)
        # per symbol: open time of the newest candle passed on (the generic path's "superseded")
        self._last_open: dict[str, int] = {}
        super().__init__(broker, symbols, timeframe, ws_url, "klines" if self.raw else None, min_delay_s, max_delay_s)

    def describe(self) -> str:
        """What the session prints about where its bars come from."""
        return "websocket stream"

    def take(self) -> str:
        """``{"candles": [[symbol, open_ms, o, h, l, c, v], ...], "events": [...]}``: everything
        since the last call, oldest first. Events: ``connected``, ``disconnected`` and
        ``unavailable`` (with ``reason``; it retries), ``failed`` (it gave up, with ``reason``)."""
        candles = []
        while self._candles:
            candles.append(self._candles.popleft())
        return json.dumps({"candles": candles, "events": self._take_events()}, separators=(",", ":"))

    async def _watch(self) -> Any:
        return await self._ex.watch_ohlcv_for_symbols([[s, self.timeframe] for s in self.symbols])

    def _keep(self, result: Any) -> None:
        if not self.raw:
            self._superseded(result)

    def _dropped(self) -> None:
        # a candle last seen before the drop may have changed since: only what the next
        # connection shows counts (the Rust side fills the gap through REST)
        for symbol in self.symbols:
            self._ex.ohlcvs.pop(symbol, None)

    def _on_raw(self, k: dict[str, Any]) -> None:
        """Binance: a final kline (``x``) of a subscribed symbol and interval, texts kept."""
        if k.get("x") is not True or k.get("i") != self._interval:
            return
        symbol = self._by_id.get(str(k.get("s", "")).upper())
        if symbol is None:
            return
        open_ms = int(k["t"])
        values = [_text(_dec(k[f], f"kline {f}")) for f in ("o", "h", "l", "c", "v")]
        self._last_open[symbol] = max(open_ms, self._last_open.get(symbol, open_ms))
        self._candles.append([symbol, open_ms, *values])

    def _superseded(self, result: Any) -> None:
        """Other exchanges: ccxt's candle cache (``ohlcvs``) of each symbol that was updated;
        every candle older than the newest one is closed. Passes on those not passed on before."""
        ex = self._ex
        for symbol in result or {}:
            rows = sorted((ex.ohlcvs.get(symbol) or {}).get(self.timeframe) or [], key=lambda r: r[0])
            if len(rows) < 2:
                continue
            last = self._last_open.get(symbol)
            for row in rows[:-1]:
                open_ms = int(row[0])
                if last is not None and open_ms <= last:
                    continue
                values = [_text(Decimal(ex.number_to_string(v))) for v in row[1:6]]
                self._candles.append([symbol, open_ms, *values])
                self._last_open[symbol] = last = open_ms

@dataclass
class _Bar:
    """A bar being built from trades: OHLC by exchange trade time (ties: arrival order)."""

    open_ms: int
    first_ms: int
    last_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def row(self, symbol: str) -> list[Any]:
        return [symbol, self.open_ms, *(_text(v) for v in (self.open, self.high, self.low, self.close, self.volume))]


class TradeBars:
    """Bars of ``tf_ms`` milliseconds (aligned to multiples of it from the Unix epoch, UTC, as
    exchanges align their candles up to a day) built from a connection's trades; no I/O and no
    clock of its own, so it can be tested alone.

    A bar is handed out only if the connection covered all of it: the stream says from when it
    covers (``connected(since_ms)``: bars opening at or after it; ``dropped()`` discards every
    bar in progress and covers nothing until the next ``connected``). It is closed when a trade
    of its symbol at or after its close time arrives (``add``), or when the stream's clock is
    ``grace_ms`` past its close (``due``; each symbol's own clock, since an exchange does not
    promise to send the trades of different symbols in time order). A bar without trades is never handed out (the feed
    takes the exchange's candle through REST: exchanges differ on empty candles). A trade that
    arrives after its bar was handed out is reported in ``warnings`` (the bar lacks it)."""

    def __init__(self, tf_ms: int, grace_ms: int = 1000):
        if tf_ms <= 0 or tf_ms > MAX_TRADE_BAR_MS:
            raise ValueError(f"trades aggregate into bars of 1 ms to 1 day, not {tf_ms} ms")
        self.tf_ms, self.grace_ms = tf_ms, grace_ms
        self.covered_from: int | None = None
        self._bars: dict[str, _Bar] = {}
        # per symbol: open times of the bars handed out lately (a late trade's bar is looked up)
        self._handed: dict[str, deque[int]] = {}
        self._newest: dict[str, int] = {}  # per symbol: the newest bar a trade fell in
        self.warnings: list[str] = []

    def bucket(self, time_ms: int) -> int:
        return time_ms - time_ms % self.tf_ms

    def connected(self, since_ms: int) -> int:
        """The connection is known to be up from exchange time ``since_ms``: bars opening at or
        after it are covered. Returns the first covered bar's open time."""
        first = -(-since_ms // self.tf_ms) * self.tf_ms
        self.covered_from = first
        return first

    def dropped(self) -> None:
        self.covered_from = None
        self._bars.clear()

    def add(self, symbol: str, time_ms: int, price: Decimal, qty: Decimal) -> list[list[Any]]:
        """One trade; returns the bars it closed (rows ``[symbol, open_ms, o, h, l, c, v]``)."""
        if self.covered_from is None:
            return []
        open_ms = self.bucket(time_ms)
        if open_ms in self._handed.get(symbol, ()):
            self.warnings.append(f"a trade of {symbol} at {time_ms} ms came after its bar ({open_ms} ms) was handed out: that bar lacks it")
            return []
        newest = self._newest.get(symbol)
        if newest is not None and open_ms < newest:
            return []  # a late trade of a bar not handed out (none, or not covered): REST's
        self._newest[symbol] = open_ms
        closed = []
        bar = self._bars.get(symbol)
        if bar is not None and open_ms > bar.open_ms:
            closed.append(self._hand_out(symbol))
            bar = None
        if bar is not None:
            if time_ms < bar.first_ms:
                bar.first_ms, bar.open = time_ms, price
            if time_ms >= bar.last_ms:
                bar.last_ms, bar.close = time_ms, price
            bar.high, bar.low, bar.volume = max(bar.high, price), min(bar.low, price), bar.volume + qty
        elif open_ms >= self.covered_from:
            self._bars[symbol] = _Bar(open_ms, time_ms, time_ms, price, price, price, price, qty)
        return closed

    def due(self, now_ms: dict[str, int]) -> list[list[Any]]:
        """The bars whose close time their symbol's clock (``now_ms[symbol]``) passed by
        ``grace_ms``."""
        late = [s for s, bar in self._bars.items() if s in now_ms and bar.open_ms + self.tf_ms + self.grace_ms <= now_ms[s]]
        return [self._hand_out(s) for s in late]

    def _hand_out(self, symbol: str) -> list[Any]:
        bar = self._bars.pop(symbol)
        self._handed.setdefault(symbol, deque(maxlen=64)).append(bar.open_ms)
        return bar.row(symbol)


class TradeStream(_BarStream):
    """One subscription to the trades of ``symbols`` (ccxt.pro ``watch_trades``), aggregated into
    bars of ``timeframe`` (``TradeBars``); ``take`` has the shape of ``CandleStream.take``.

    Exact decimals: Binance's raw trade events (``p``, ``q`` texts, trade time ``T``); other
    exchanges' trades are ccxt's numbers turned back into their shortest decimal text.
    Coverage: a connection is known to be up from its first trade's event time (``E``; other
    exchanges: the later of the trade's time and the local clock), so the bar in progress then is
    not handed out, nor any bar in progress at a drop: the Rust feed takes those from REST (the
    ``covering`` event says from which bar on the stream brings bars).
    A symbol's clock for ``TradeBars.due`` is its newest trade time plus the local time elapsed
    since (exchange time, behind it by the network's delay, whatever the local clock says)."""

    def __init__(
        self,
        broker: CcxtBroker,
        symbols: list[str],
        timeframe: str,
        ws_url: str | None,
        *,
        raw: bool | None = None,
        grace_s: float = 1.0,
        min_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
    ):
        self.raw = broker.exchange.id in RAW_TRADES if raw is None else raw
        self.bars = TradeBars(broker.exchange.parse_timeframe(timeframe) * 1000, int(grace_s * 1000))
        self._lock = threading.Lock()
        # per symbol: the newest trade time and time.monotonic() then (the symbol's clock)
        self._clock: dict[str, tuple[int, float]] = {}
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}  # generic path: recent trade ids per symbol
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        super().__init__(broker, symbols, timeframe, ws_url, "trades" if self.raw else None, min_delay_s, max_delay_s)

    def describe(self) -> str:
        return "websocket trades, aggregated into bars"

    def take(self) -> str:
        """As ``CandleStream.take``, the bars closed since the last call; events also
        ``covering`` (``from_ms``: the first bar this connection brings) and ``warning``."""
        with self._lock:
            now = time.monotonic()
            clocks = {s: newest + int((now - seen_at) * 1000) for s, (newest, seen_at) in self._clock.items()}
            self._candles.extend(self.bars.due(clocks))
            candles = list(self._candles)
            self._candles.clear()
            for warning in self.bars.warnings:
                self._event("warning", warning)
            self.bars.warnings.clear()
        return json.dumps({"candles": candles, "events": self._take_events()}, separators=(",", ":"))

    async def _watch(self) -> Any:
        if self._ex.has.get("watchTradesForSymbols"):
            return await self._ex.watch_trades_for_symbols(self.symbols)
        # one watch per symbol, raced: the first to bring trades returns, the others go on
        for symbol in self.symbols:
            if symbol not in self._tasks:
                self._tasks[symbol] = asyncio.ensure_future(self._ex.watch_trades(symbol))
        done, _ = await asyncio.wait(self._tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        trades: list[Any] = []
        for symbol, task in list(self._tasks.items()):
            if task in done:
                del self._tasks[symbol]
                trades += task.result()  # a connection error raises here, as a single watch would
        return trades

    def _keep(self, result: Any) -> None:
        if self.raw:
            return
        now_ms = int(time.time() * 1000)
        for trade in result or []:
            symbol, time_ms = trade.get("symbol"), trade.get("timestamp")
            if symbol not in self.symbols or time_ms is None:
                continue
            if trade.get("id") is not None:
                order, seen = self._seen.setdefault(symbol, (deque(), set()))
                trade_id = str(trade["id"])
                if trade_id in seen:
                    continue  # ccxt handed it out before
                order.append(trade_id)
                seen.add(trade_id)
                if len(order) > 4096:
                    seen.discard(order.popleft())
            price, qty = (Decimal(self._ex.number_to_string(trade[k])) for k in ("price", "amount"))
            self._add(symbol, int(time_ms), max(int(time_ms), now_ms), price, qty)

    def _dropped(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        with self._lock:
            self.bars.dropped()
        for symbol in self.symbols:
            getattr(self._ex, "trades", {}).pop(symbol, None)

    def _on_raw(self, message: dict[str, Any]) -> None:
        """Binance: a raw ``trade``/``aggTrade`` event of a subscribed symbol, texts kept."""
        if message.get("e") not in ("trade", "aggTrade"):
            return
        symbol = self._by_id.get(str(message.get("s", "")).upper())
        if symbol is None:
            return
        time_ms = int(message["T"])
        price, qty = _dec(message["p"], "trade p"), _dec(message["q"], "trade q")
        self._add(symbol, time_ms, int(message.get("E", time_ms)), price, qty)

    def _add(self, symbol: str, time_ms: int, up_since_ms: int, price: Decimal, qty: Decimal) -> None:
        """One trade (on the stream's thread); the connection was up at ``up_since_ms``."""
        with self._lock:
            if self.bars.covered_from is None:
                # the first trade of this connection: it covers the bars opening after it was sent
                first = self.bars.connected(up_since_ms + 1)
                self._events.append({"type": "covering", "time_ms": int(time.time() * 1000), "from_ms": first})
            if symbol not in self._clock or time_ms >= self._clock[symbol][0]:
                self._clock[symbol] = (time_ms, time.monotonic())
            self._candles.extend(self.bars.add(symbol, time_ms, price, qty))


class AccountStream(_Stream):
    """The account's order updates (ccxt.pro ``watch_orders``), as a wake-up for the broker: it
    counts the updates and the Rust side polls REST (the source of truth for states and fills,
    exact) as soon as one arrives instead of at its next 2 s poll."""

    def __init__(self, broker: CcxtBroker, ws_url: str | None, *, min_delay_s: float = 0.2, max_delay_s: float = 5.0):
        self.exchange_id = broker.exchange.id
        self._updates = 0
        self._lock = threading.Lock()
        ex = _pro_exchange(broker, ws_url, None, None)
        super().__init__(ex, f"rustybt-ws-orders-{self.exchange_id}", min_delay_s, max_delay_s)

    def __repr__(self) -> str:
        return f"AccountStream({self.exchange_id!r})"

    def take(self) -> str:
        """``{"updates": n, "events": [...]}``: order updates since the last call, and connection
        events as for ``CandleStream.take``."""
        with self._lock:
            updates, self._updates = self._updates, 0
        return json.dumps({"updates": updates, "events": self._take_events()}, separators=(",", ":"))

    async def _watch(self) -> Any:
        return await self._ex.watch_orders()

    def _keep(self, result: Any) -> None:
        with self._lock:
            self._updates += max(1, len(result or []))
