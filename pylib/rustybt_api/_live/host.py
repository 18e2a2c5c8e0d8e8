"""The facade the Rust host calls through pyo3 (``src/python/venue.rs``).

Every method takes str/int arguments and returns JSON text: money as decimal strings (never in
exponent notation, never through a float), times as integer milliseconds. The Rust side
deserializes it into plain structs (``src/live/venue.rs``); ``tests/fixtures/venue/*.json`` are
samples of exactly this output, checked on both sides so the two cannot drift apart.

Every failure of the client layer is raised as one type, ``VenueError``, whose ``kind`` tells the
host what to do (see ``KINDS``). Anything else that escapes (``TypeError``, ``KeyError``, ...) is a
bug of the host or of this module and is deliberately not caught: the host reports it as
``internal`` with the traceback.

See docs/live-exchange-testing.md, "The venue boundary".
"""

from __future__ import annotations

import difflib
import functools
import json
import time
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

import ccxt

from .ccxt_client import Backoff, CcxtBroker, InstrumentRules, Masker, OrderIntent, OrderState, RetryPolicy, _plain, connect
from .ws_feed import MAX_TRADE_BAR_MS, AccountStream, CandleStream, TradeStream, offers_candles, offers_orders, offers_trades
from .errors import (
    AuthenticationFailed,
    ClientIdConflict,
    ExchangeRefused,
    ExchangeUnavailable,
    LiveBrokerError,
    OrderNotCancellable,
    OutcomeUnknown,
    RateLimited,
    RuleViolation,
    UnknownOrder,
)

__all__ = ["KINDS", "HostVenue", "VenueError", "open_venue"]

KINDS = (
    "rejected",  # the exchange refused (insufficient balance, filter failure, ...): no order exists
    "rule_violation",  # the request breaks the market's rules or is malformed: nothing was sent
    "outcome_unknown",  # retries exhausted, the order may or may not exist: reconcile by client id
    "unavailable",  # transient failures outlasted the retries (for an order: it was not placed)
    "rate_limited",  # the exchange asked for a longer wait than the policy allows (retry_after_s)
    "authentication",  # bad key, signature or permission
    "client_id_conflict",  # the client id is used on the exchange by a different order
    "not_cancellable",  # cancel of a final order (state_json holds its state)
    "unknown_order",  # the exchange has no such order
    "unknown_symbol",  # no such market (the message lists close matches)
    "internal",  # anything else the layer reports (e.g. an order status word it does not know)
)
# at most this many events are kept between two take_events() calls; older ones are counted
MAX_EVENTS = 10_000


class VenueError(Exception):
    """The one exception type of the facade. ``message`` is already free of credentials."""

    def __init__(self, kind: str, message: str, *, retry_after_s: float | None = None, state_json: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"VenueError kind must be one of {KINDS}, not {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.state_json = state_json


# ------------------------------------------------------------------------------------ JSON


def _num(value: Decimal | None) -> str | None:
    """Exact decimal text without exponent ("0.00001000" -> "0.00001", 1E-7 -> "0.0000001")."""
    return None if value is None else format(_plain(value), "f")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _dec_field(obj: Mapping[str, Any], name: str, *, optional: bool = False) -> Decimal | None:
    """A decimal from the host's JSON: it must be a string (a JSON number would have passed
    through a float somewhere)."""
    value = obj.get(name)
    if value is None:
        if optional:
            return None
        raise ValueError(f"intent field {name!r} is missing")
    if not isinstance(value, str):
        raise TypeError(f"intent field {name!r} must be a decimal string, got {type(value).__name__}")
    return Decimal(value)


# ------------------------------------------------------------------------------------ errors

T = TypeVar("T")


def _translated(method: Callable[..., T]) -> Callable[..., T]:
    """Turns the client layer's exceptions into ``VenueError``; lets programming errors through."""

    @functools.wraps(method)
    def wrapper(self: "HostVenue", *args: Any) -> T:
        try:
            return method(self, *args)
        except VenueError:
            raise
        except LiveBrokerError as err:
            raise self._venue_error(err) from None
        except ccxt.BaseError as err:
            # a ccxt error the layer did not wrap: classify it the way the layer would
            raise self._venue_error(self.broker._translate(err, method.__name__)) from None

    return wrapper


# ------------------------------------------------------------------------------------ facade


class HostVenue:
    """One exchange connection for one live session. Not thread-safe (the host has one loop)."""

    def __init__(self, broker: CcxtBroker, *, ws_url: str | None = None, urls_redirected: bool = False):
        self.broker = broker
        # the websocket URL (None: the exchange's own), and whether the REST URLs were redirected
        # (then a stream needs its own URL too: nothing may reach the real exchange by accident)
        self._ws_url = ws_url
        self._urls_redirected = urls_redirected
        self._mask = broker._mask
        self._events: deque[dict[str, Any]] = deque()
        self._dropped_events = 0
        # exchange order id -> client order id, from every order state seen (for fills)
        self._client_ids: dict[str, str] = {}
        # the session's symbols (from markets()): the positions account_view reports
        self._symbols: list[str] = []
        broker.on_backoff = self._on_backoff
        self._count_requests(broker.exchange)

    def __repr__(self) -> str:
        return f"HostVenue({self.broker!r})"

    # ---- events
    def _push(self, event: dict[str, Any]) -> None:
        if len(self._events) >= MAX_EVENTS:
            self._events.popleft()
            self._dropped_events += 1
        self._events.append(event)

    def _on_backoff(self, b: Backoff) -> None:
        self._push(
            {
                "type": "backoff",
                "time_ms": int(time.time() * 1000),
                "operation": self._mask(b.operation),
                "attempt": b.attempt,
                "wait_s": b.delay_s,
                "retry_after_s": b.retry_after_s,
                "reason": b.error,
            }
        )

    def _count_requests(self, exchange: ccxt.Exchange) -> None:
        """Wraps the exchange's one HTTP entry point so every request becomes an event.

        ``outcome``: ``ok``; ``refused`` (a definitive reply: order not found, order rejected, bad
        request; the exchange works, it said no); ``failed`` (network error, timeout, 429/418,
        5xx, bad credentials: what the error-rate breaker counts)."""
        fetch = exchange.fetch

        def counted(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            event = {"type": "request", "time_ms": int(time.time() * 1000), "method": method, "endpoint": urlsplit(url).path, "outcome": "ok", "error": None}
            try:
                return fetch(url, method, headers, body)
            except ccxt.BaseError as err:
                failed = isinstance(err, (ccxt.OperationFailed, ccxt.AuthenticationError, ccxt.PermissionDenied))
                event["outcome"], event["error"] = ("failed" if failed else "refused"), type(err).__name__
                raise
            except Exception as err:
                event["outcome"], event["error"] = "failed", type(err).__name__
                raise
            finally:
                self._push(event)

        exchange.fetch = counted

    def take_events(self) -> str:
        """Everything since the last call, oldest first: ``request`` and ``backoff`` events, and
        a ``dropped`` event first if more than ``MAX_EVENTS`` piled up."""
        out = list(self._events)
        self._events.clear()
        if self._dropped_events:
            out.insert(0, {"type": "dropped", "count": self._dropped_events})
            self._dropped_events = 0
        return _dumps(out)

    # ---- errors
    def _venue_error(self, err: LiveBrokerError) -> VenueError:
        msg = self._mask(str(err))
        if isinstance(err, OrderNotCancellable):
            return VenueError("not_cancellable", msg, state_json=_dumps(self._order(err.state)))
        if isinstance(err, RateLimited):
            return VenueError("rate_limited", msg, retry_after_s=err.retry_after_s)
        for cls, kind in (
            (OutcomeUnknown, "outcome_unknown"),
            (ClientIdConflict, "client_id_conflict"),
            (AuthenticationFailed, "authentication"),
            (UnknownOrder, "unknown_order"),
            (RuleViolation, "rule_violation"),
            (ExchangeRefused, "rejected"),  # OrderRejected, and reads the exchange refused
            (ExchangeUnavailable, "unavailable"),
        ):
            if isinstance(err, cls):
                return VenueError(kind, msg)
        return VenueError("internal", msg)

    def _rules(self, symbol: str) -> InstrumentRules:
        """The market's rules, or ``unknown_symbol`` naming close matches."""
        if not isinstance(symbol, str):
            raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
        if not self.broker._rules:
            self.broker.load_markets()
        rules = self.broker._rules.get(symbol)
        if rules is not None:
            return rules
        known = sorted(self.broker._rules)
        by_id = [r.symbol for r in self.broker._rules.values() if r.exchange_symbol.upper() == symbol.replace("/", "").replace("-", "").upper()]
        close = by_id + [s for s in difflib.get_close_matches(symbol.upper(), known, n=5, cutoff=0.6) if s not in by_id]
        hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(known)} markets loaded)"
        raise VenueError("unknown_symbol", f"{self.broker.exchange.id} has no market {symbol!r}{hint}")

    # ---- order states
    def _order(self, s: OrderState, client_order_id: str | None = None) -> dict[str, Any]:
        # an order without a client id (placed elsewhere, on an exchange without them) is keyed
        # "exchange:<id>": ':' is not allowed in client ids, so it cannot collide with the journal's
        cid = s.client_id or client_order_id or f"exchange:{s.exchange_id}"
        self._client_ids[s.exchange_id] = cid
        return {
            "client_order_id": cid,
            "exchange_order_id": s.exchange_id,
            "symbol": s.symbol,
            "side": s.side,
            "order_type": s.type,
            "status": s.status,
            "raw_status": s.raw_status,
            "quantity": _num(s.quantity),
            "filled": _num(s.filled),
            "limit_price": _num(s.limit_price),
            "average_price": _num(s.average_price),
            "fees": [{"asset": a, "amount": _num(v)} for a, v in sorted(s.fees.items())],
            "reason": f"the exchange reports {s.raw_status}" if s.status in ("rejected", "expired") else None,
            "time_ms": s.timestamp_ms,
        }

    def _intent(self, intent_json: str) -> OrderIntent:
        d = json.loads(intent_json)
        self._rules(d["symbol"])
        order_type = d.get("order_type", "market")
        return OrderIntent(
            client_id=d["client_order_id"],
            symbol=d["symbol"],
            side=d["side"],
            quantity=_dec_field(d, "quantity"),  # type: ignore[arg-type]
            type=order_type,
            limit_price=_dec_field(d, "limit_price", optional=True),
            time_in_force=str(d.get("time_in_force") or "gtc").upper(),
            reference_price=_dec_field(d, "reference_price", optional=True),
        )

    # ---- the interface
    @_translated
    def markets(self, symbols_json: str) -> str:
        """``{symbol: rules}`` for the given symbols (a JSON list; empty = every market). The
        symbols are the session's: ``account_view`` reports positions for them."""
        symbols = json.loads(symbols_json)
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise TypeError("markets() takes a JSON list of symbol strings")
        self.broker.load_markets()
        chosen = [self._rules(s) for s in symbols] if symbols else list(self.broker._rules.values())
        if symbols:
            self._symbols = list(dict.fromkeys(symbols))
        return _dumps(
            {
                r.symbol: {
                    "exchange_symbol": r.exchange_symbol,
                    "base": r.base,
                    "quote": r.quote,
                    "active": r.active,
                    "tick_size": _num(r.tick_size),
                    "lot_step": _num(r.step_size),
                    "min_qty": _num(r.min_qty),
                    "max_qty": _num(r.max_qty),
                    "min_price": _num(r.min_price),
                    "max_price": _num(r.max_price),
                    "min_notional": _num(r.min_notional),
                    "max_notional": _num(r.max_notional),
                }
                for r in chosen
            }
        )

    @_translated
    def closed_candles(self, symbol: str, timeframe: str, since_ms: int, now_ms: int) -> str:
        """``[[open_ms, "o", "h", "l", "c", "v"], ...]``: every closed candle with open >= since_ms."""
        self._rules(symbol)
        offered = self.broker.exchange.timeframes or {}
        if offered and timeframe not in offered:
            raise VenueError("rule_violation", f"{self.broker.exchange.id} has no timeframe {timeframe!r}; it offers {', '.join(offered)}")
        candles = self.broker.fetch_closed_candles(symbol, timeframe, int(since_ms), int(now_ms))
        return _dumps([[c.open_time_ms, _num(c.open), _num(c.high), _num(c.low), _num(c.close), _num(c.volume)] for c in candles])

    @_translated
    def submit(self, intent_json: str) -> str:
        intent = self._intent(intent_json)
        return _dumps(self._order(self.broker.submit(intent), intent.client_id))

    @_translated
    def resume(self, intent_json: str, sent_at_ms: int) -> str:
        intent = self._intent(intent_json)
        return _dumps(self._order(self.broker.resume(intent, sent_at_ms=int(sent_at_ms)), intent.client_id))

    @_translated
    def lookup(self, client_order_id: str, symbol: str) -> str:
        """The order's state, or ``null`` if the exchange never had it."""
        self._rules(symbol)
        try:
            state = self.broker.fetch_order_by_client_id(client_order_id, symbol)
        except UnknownOrder:
            return "null"
        return _dumps(self._order(state, client_order_id))

    @_translated
    def cancel(self, client_order_id: str, symbol: str) -> str:
        self._rules(symbol)
        try:
            return _dumps(self._order(self.broker.cancel(client_order_id, symbol=symbol), client_order_id))
        except OrderNotCancellable as err:
            # the final state's client id is the one asked about (the reply may lack it)
            raise VenueError("not_cancellable", self._mask(str(err)), state_json=_dumps(self._order(err.state, client_order_id))) from None

    @_translated
    def open_orders(self) -> str:
        """Every open order of the account (without fees: the exchange lists none for them)."""
        return _dumps([self._order(s) for s in self.broker.open_orders()])

    @_translated
    def fills(self, symbol: str, from_trade_id: str | None, since_ms: int | None) -> str:
        """The account's trades on ``symbol`` from trade id ``from_trade_id`` (inclusive: replays
        are harmless, the journal keeps each trade once) or time ``since_ms``, oldest first."""
        rules = self._rules(symbol)
        start: int | None = None
        if from_trade_id is not None:
            if not str(from_trade_id).isdigit():
                raise VenueError("rule_violation", f"{self.broker.exchange.id} trade ids are integers, got {from_trade_id!r}")
            start = int(from_trade_id)
        fills = self.broker.fetch_fills(symbol, from_trade_id=start, since_ms=None if since_ms is None else int(since_ms))
        unknown = sorted({f.exchange_order_id for f in fills if f.exchange_order_id not in self._client_ids}, key=_order_key)
        if unknown:
            self._learn_client_ids(rules, unknown)
        return _dumps(
            [
                {
                    "trade_id": str(f.trade_id),
                    "client_order_id": self._client_ids.get(f.exchange_order_id),
                    "exchange_order_id": f.exchange_order_id,
                    "symbol": f.symbol,
                    "side": f.side,
                    "price": _num(f.price),
                    "quantity": _num(f.quantity),
                    "fee": _num(f.fee),
                    "fee_asset": f.fee_asset,
                    "time_ms": f.time_ms,
                    "is_maker": f.is_maker,
                }
                for f in fills
            ]
        )

    def _learn_client_ids(self, rules: InstrumentRules, exchange_ids: list[str]) -> None:
        """Client ids of orders this process has not seen (placed before a restart): on Binance
        one ``allOrders`` page from the oldest unknown order id on; elsewhere one lookup each.
        An order that is still unknown afterwards leaves the fill's client id null."""
        ex = self.broker.exchange
        if self.broker._is_binance and all(i.isdigit() for i in exchange_ids):
            wanted = set(exchange_ids)
            params: dict[str, Any] = {"symbol": rules.exchange_symbol, "orderId": int(exchange_ids[0]), "limit": 1000}
            for _ in range(100):  # pages of 1000 orders; bounded so a misbehaving reply cannot loop
                rows = self.broker._call("allOrders", functools.partial(ex.privateGetAllOrders, dict(params)))
                for row in rows:
                    self._client_ids[str(row["orderId"])] = str(row["clientOrderId"])
                wanted -= {str(r["orderId"]) for r in rows}
                if not wanted or len(rows) < params["limit"]:
                    break
                params["orderId"] = max(int(r["orderId"]) for r in rows) + 1
            return
        for oid in exchange_ids:
            try:
                order = self.broker._call("fetch order", functools.partial(ex.fetch_order, oid, rules.symbol))
            except UnknownOrder:
                continue
            if order.get("clientOrderId"):
                self._client_ids[oid] = str(order["clientOrderId"])

    @_translated
    def balances(self) -> str:
        """``{asset: total}`` (free + locked), non-zero only."""
        return _dumps({a: _num(b.total) for a, b in sorted(self.broker.balances().items())})

    @_translated
    def account_view(self, cash_asset: str) -> str:
        """The broker side of reconciliation, shaped like Rust's ``reconcile::AccountView``:
        positions by market symbol (the base asset's total balance, for the session's symbols
        from ``markets()``, or every market quoted in ``cash_asset`` before that), the balance of
        ``cash_asset`` only (the book tracks no other), open orders by client order id."""
        if not self.broker._rules:
            self.broker.load_markets()
        symbols = self._symbols or [s for s, r in self.broker._rules.items() if r.quote == cash_asset]
        by_base: dict[str, str] = {}
        for s in symbols:
            base = self._rules(s).base
            if base in by_base:
                raise VenueError("internal", f"account_view: {by_base[base]} and {s} share the base asset {base}; a spot balance cannot be split between them")
            by_base[base] = s
        totals = {a: b.total for a, b in self.broker.balances().items()}
        positions = {by_base[a]: _num(q) for a, q in totals.items() if a in by_base and a != cash_asset and q != 0}
        open_orders = {}
        for state in self.broker.open_orders():
            o = self._order(state)
            open_orders[o["client_order_id"]] = {"symbol": state.symbol, "side": state.side, "remaining": _num(state.remaining), "filled": _num(state.filled)}
        return _dumps({"positions": positions, "balances": {cash_asset: _num(totals.get(cash_asset, Decimal(0)))}, "open_orders": open_orders})

    @_translated
    def open_stream(self, symbols_json: str, timeframe: str, source: str = "any") -> CandleStream | TradeStream:
        """Starts the websocket stream of the closed bars of ``symbols`` (see ``ws_feed``):
        ``source`` ``candles`` (``watch_ohlcv``), ``trades`` (``watch_trades`` aggregated into
        bars) or ``any`` (candles where offered, else trades); ``unavailable`` naming why when
        there is none to start."""
        symbols = json.loads(symbols_json)
        ex_id = self.broker.exchange.id
        if source not in ("any", "candles", "trades"):
            raise VenueError("internal", f"open_stream: unknown source {source!r}")
        candles, trades = offers_candles(ex_id), offers_trades(ex_id)
        if source == "candles" and not candles or source == "any" and not (candles or trades):
            raise VenueError("unavailable", f"ccxt.pro has no websocket candles (watchOHLCV){'' if source == 'candles' else ' nor trades (watchTrades)'} for {ex_id}")
        if source == "trades" and not trades:
            raise VenueError("unavailable", f"ccxt.pro has no websocket trades (watchTrades) for {ex_id}")
        if self._urls_redirected and self._ws_url is None:
            raise VenueError("unavailable", f"{ex_id}: the REST URL is redirected and no websocket URL is given")
        for symbol in symbols:
            self._rules(symbol)
        offered = self.broker.exchange.timeframes or {}
        if offered and timeframe not in offered:
            raise VenueError("rule_violation", f"{ex_id} has no timeframe {timeframe!r}; it offers {', '.join(offered)}")
        if source == "trades" or source == "any" and not candles:
            if self.broker.exchange.parse_timeframe(timeframe) * 1000 > MAX_TRADE_BAR_MS:
                # asked for trades: an error; "any" (auto, ws) finds no usable stream: auto polls
                kind = "rule_violation" if source == "trades" else "unavailable"
                raise VenueError(kind, f"bars of {timeframe} cannot be aggregated from trades (at most 1d: longer candles are not aligned to the epoch)")
            return TradeStream(self.broker, symbols, timeframe, self._ws_url).start()
        return CandleStream(self.broker, symbols, timeframe, self._ws_url).start()

    @_translated
    def open_account_stream(self) -> AccountStream:
        """Starts the websocket stream of the account's order updates (a wake-up for the host's
        polls); ``unavailable`` naming why when there is none to start."""
        ex = self.broker.exchange
        if not offers_orders(ex.id):
            raise VenueError("unavailable", f"ccxt.pro has no websocket order updates (watchOrders) for {ex.id}")
        if not ex.apiKey or not ex.secret:
            raise VenueError("unavailable", f"{ex.id}: order updates need the API key and secret")
        if self._urls_redirected and self._ws_url is None:
            raise VenueError("unavailable", f"{ex.id}: the REST URL is redirected and no websocket URL is given")
        return AccountStream(self.broker, self._ws_url).start()

    def close(self) -> None:
        self.broker.close()


def _order_key(exchange_id: str) -> tuple[int, str]:
    return (int(exchange_id), "") if exchange_id.isdigit() else (0, exchange_id)


def open_venue(exchange_id: str, config_json: str) -> HostVenue:
    """Connects (no request is made yet). ``config_json``: ``api_key``, ``secret``, ``urls`` (str,
    dict or null), ``ws_url`` (the websocket base URL for ``open_stream``, or null),
    ``sandbox``, ``timeout_ms``, ``recv_window_ms``, ``rate_limit_ms`` (null = the exchange's), optional ``settle_margin_ms`` and ``retry`` ``{max_attempts, base_delay_s,
    max_delay_s, seed}``. Unknown keys are refused (a typo must not silently fall back)."""
    config = json.loads(config_json)
    allowed = {"api_key", "secret", "urls", "ws_url", "sandbox", "timeout_ms", "recv_window_ms", "rate_limit_ms", "settle_margin_ms", "retry"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"open_venue: unknown config keys {unknown}; allowed: {sorted(allowed)}")
    retry = config.get("retry")
    kwargs: dict[str, Any] = {
        "api_key": config["api_key"],
        "secret": config["secret"],
        "urls": config.get("urls"),
        "sandbox": bool(config.get("sandbox", False)),
        "timeout_ms": int(config.get("timeout_ms", 10_000)),
        "recv_window_ms": int(config.get("recv_window_ms", 5_000)),
        "rate_limit_ms": config.get("rate_limit_ms"),
        "retry": None if retry is None else RetryPolicy(**retry),
    }
    if config.get("settle_margin_ms") is not None:
        kwargs["settle_margin_ms"] = int(config["settle_margin_ms"])
    try:
        broker = connect(exchange_id, **kwargs)
    except LiveBrokerError as err:
        raise VenueError("internal", Masker(kwargs["api_key"], kwargs["secret"])(str(err))) from None
    return HostVenue(broker, ws_url=config.get("ws_url"), urls_redirected=config.get("urls") is not None)

