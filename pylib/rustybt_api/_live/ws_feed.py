"""Closed candles from an exchange's websocket (ccxt.pro ``watch_ohlcv``), for the Rust feed
(``src/live/feed.rs``, ``ExchangeFeed`` with a stream), and the account's order updates
(``watch_orders``), which wake the Rust broker's poll; see docs/live.md, "Websocket data".

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
from decimal import Decimal
from typing import Any, Self

import ccxt
import ccxt.pro

from .ccxt_client import CcxtBroker, _dec, _plain

__all__ = ["AccountStream", "CandleStream", "offers_candles", "offers_orders"]

# exchanges whose raw kline event carries an "is closed" flag this module reads (exact texts)
RAW_KLINES = ("binance", "binanceus")


def offers_candles(exchange_id: str) -> bool:
    """Whether ccxt.pro has a websocket candle stream for this exchange."""
    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchOHLCV"))


def offers_orders(exchange_id: str) -> bool:
    """Whether ccxt.pro has a websocket stream of the account's orders for this exchange."""
    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchOrders"))


def _text(value: Decimal) -> str:
    return format(_plain(value), "f")


def _pro_exchange(broker: CcxtBroker, ws_url: str | None, raw: bool, sink: Any) -> Any:
    """A ccxt.pro exchange with the broker's settings, REST URLs and markets, its websocket URLs
    pointed at ``ws_url`` when given. With ``raw``, Binance's kline events go to ``sink`` before
    ccxt parses them."""
    sync = broker.exchange
    base = getattr(ccxt.pro, sync.id)
    if raw:

        class RawKlines(base):  # type: ignore[misc,valid-type]
            def handle_ohlcv(self, client: Any, message: Any) -> Any:
                kline = message.get("k") if isinstance(message, dict) else None
                if isinstance(kline, dict):
                    sink(kline)
                return super().handle_ohlcv(client, message)

        base = RawKlines
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


class CandleStream(_Stream):
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
        self.exchange_id = broker.exchange.id
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.raw = self.exchange_id in RAW_KLINES if raw is None else raw
        self._tf_ms = broker.exchange.parse_timeframe(timeframe) * 1000
        self._interval = broker.exchange.safe_string(broker.exchange.timeframes, timeframe, timeframe)
        self._by_id = {broker.rules(s).exchange_symbol.upper(): broker.rules(s).symbol for s in self.symbols}
        self._candles: deque[list[Any]] = deque()
        # per symbol: open time of the newest candle passed on (the generic path's "superseded")
        self._last_open: dict[str, int] = {}
        ex = _pro_exchange(broker, ws_url, self.raw, self._on_raw_kline)
        super().__init__(ex, f"rustybt-ws-{self.exchange_id}", min_delay_s, max_delay_s)

    def __repr__(self) -> str:
        return f"CandleStream({self.exchange_id!r}, {self.symbols!r}, {self.timeframe!r})"

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

    def _on_raw_kline(self, k: dict[str, Any]) -> None:
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


class AccountStream(_Stream):
    """The account's order updates (ccxt.pro ``watch_orders``), as a wake-up for the broker: it
    counts the updates and the Rust side polls REST (the source of truth for states and fills,
    exact) as soon as one arrives instead of at its next 2 s poll."""

    def __init__(self, broker: CcxtBroker, ws_url: str | None, *, min_delay_s: float = 0.2, max_delay_s: float = 5.0):
        self.exchange_id = broker.exchange.id
        self._updates = 0
        self._lock = threading.Lock()
        ex = _pro_exchange(broker, ws_url, False, None)
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
