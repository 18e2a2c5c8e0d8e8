"""The ccxt broker client the Rust host calls through pyo3 (``rustybt live --broker ccxt:<id>``).

Guarantees (see docs/live-exchange-testing.md):
- money is ``decimal.Decimal`` end to end: prices, quantities, balances and fees are parsed from
  the exchange's raw strings (the ``info`` payload / raw endpoint replies), never via a float;
  intents are sent as decimal strings;
- an intent is checked against the market's rules before it is sent and refused with a reason
  (``RuleViolation``); nothing is rounded;
- ``submit`` is idempotent per client order id: after any transient failure the order is looked up
  by client id before a resend, a resend waits out the exchange's recvWindow first (a request still
  in flight can no longer be accepted), and a "duplicate order" reply fetches the existing order;
- transient errors (ccxt ``OperationFailed``: ``NetworkError``, ``RequestTimeout``,
  ``DDoSProtection``, ``RateLimitExceeded``, ``ExchangeNotAvailable``, ...) are retried with
  exponential backoff and jitter (seedable, capped, bounded attempts), honouring Retry-After;
- credentials never appear in reprs, exception messages or ccxt's log records.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping, TypeVar

import ccxt

from .errors import (
    AuthenticationFailed,
    ClientIdConflict,
    ExchangeRefused,
    ExchangeUnavailable,
    LiveBrokerError,
    OrderNotCancellable,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    RuleViolation,
    UnknownOrder,
)

__all__ = [
    "Backoff",
    "Balance",
    "Candle",
    "CcxtBroker",
    "Fill",
    "InstrumentRules",
    "OrderIntent",
    "OrderState",
    "RetryPolicy",
    "ENGINE_STATES",
    "connect",
    "map_status",
]

ZERO = Decimal(0)
T = TypeVar("T")
ENGINE_STATES = ("new", "accepted", "triggered", "partially_filled", "filled", "cancelled", "rejected", "expired")
FINAL_STATES = frozenset({"filled", "cancelled", "rejected", "expired"})
# where the URLs we did not redirect point, so that nothing can reach the internet by accident
UNROUTED_URL = "http://127.0.0.1:9/not-configured"
# Binance: newClientOrderId must match this; most exchanges accept a subset of it
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


# ------------------------------------------------------------------------------------ helpers


def _dec(value: Any, what: str) -> Decimal:
    """A Decimal from an exchange string (or int). Floats are refused: they would already have
    lost the exchange's digits."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what}: expected a decimal string, got {type(value).__name__} {value!r}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what}: not a number: {value!r}") from None


def _opt_dec(value: Any, what: str) -> Decimal | None:
    if value is None or value == "":
        return None
    return _dec(value, what)


def _plain(value: Decimal) -> Decimal:
    """Drops trailing zeros without switching to exponent notation ("0.01000000" -> 0.01)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


class Masker:
    """Removes credentials (and request signatures) from text."""

    def __init__(self, *secrets: str | None):
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return re.sub(r"(signature=)[^&\s'\"]+", r"\1***", text)


class _MaskingFilter(logging.Filter):
    """Attached to ccxt's logger: ccxt logs request headers (with the API key) at DEBUG."""

    def __init__(self, masker: Masker):
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.masker(record.getMessage())
        record.args = ()
        return True


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class InstrumentRules:
    """A market's trading rules as exact decimals (None = the exchange states no such rule)."""

    symbol: str  # unified ccxt symbol, e.g. "BTC/USDT"
    exchange_symbol: str  # the exchange's id, e.g. "BTCUSDT"
    base: str
    quote: str
    tick_size: Decimal | None
    step_size: Decimal | None
    min_qty: Decimal | None
    max_qty: Decimal | None
    min_price: Decimal | None
    max_price: Decimal | None
    min_notional: Decimal | None
    max_notional: Decimal | None
    active: bool = True

    def validate(
        self,
        quantity: Decimal,
        price: Decimal | None = None,
        *,
        reference_price: Decimal | None = None,
    ) -> None:
        """Raises ``RuleViolation`` naming the first broken rule. ``price`` is the limit price;
        for a market order the notional is checked at ``reference_price`` when one is given."""
        sym = self.symbol
        if not self.active:
            raise RuleViolation(f"{sym}: market is not trading")
        if quantity <= 0:
            raise RuleViolation(f"{sym}: quantity {quantity} must be > 0")
        if self.min_qty is not None and quantity < self.min_qty:
            raise RuleViolation(f"{sym}: quantity {quantity} is below the minimum {self.min_qty}")
        if self.max_qty is not None and self.max_qty > 0 and quantity > self.max_qty:
            raise RuleViolation(f"{sym}: quantity {quantity} is above the maximum {self.max_qty}")
        if self.step_size is not None and self.step_size > 0 and quantity % self.step_size != 0:
            raise RuleViolation(f"{sym}: quantity {quantity} is not a multiple of the lot step {self.step_size}")
        if price is not None:
            if price <= 0:
                raise RuleViolation(f"{sym}: price {price} must be > 0")
            if self.min_price is not None and self.min_price > 0 and price < self.min_price:
                raise RuleViolation(f"{sym}: price {price} is below the minimum {self.min_price}")
            if self.max_price is not None and self.max_price > 0 and price > self.max_price:
                raise RuleViolation(f"{sym}: price {price} is above the maximum {self.max_price}")
            if self.tick_size is not None and self.tick_size > 0 and price % self.tick_size != 0:
                raise RuleViolation(f"{sym}: price {price} is not a multiple of the tick size {self.tick_size}")
        at = price if price is not None else reference_price
        if at is not None:
            notional = quantity * at
            if self.min_notional is not None and notional < self.min_notional:
                raise RuleViolation(f"{sym}: notional {notional} is below the minimum {self.min_notional}")
            if self.max_notional is not None and self.max_notional > 0 and notional > self.max_notional:
                raise RuleViolation(f"{sym}: notional {notional} is above the maximum {self.max_notional}")


@dataclass(frozen=True)
class Candle:
    open_time_ms: int
    close_time_ms: int  # open + timeframe (exclusive end), so a candle is closed once now >= this
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class OrderIntent:
    """What the engine wants sent. ``client_id`` is chosen by the caller and derived from the
    journal (e.g. ``rbt-<run>-<seq>``): the same intent always carries the same id."""

    client_id: str
    symbol: str
    side: str  # "buy" | "sell"
    quantity: Decimal
    type: str = "market"  # "market" | "limit"
    limit_price: Decimal | None = None
    time_in_force: str = "GTC"  # limit orders: "GTC" | "IOC" | "FOK"
    reference_price: Decimal | None = None  # for the min-notional check of market orders


@dataclass(frozen=True)
class OrderState:
    client_id: str | None
    exchange_id: str
    symbol: str
    side: str
    type: str
    status: str  # one of ENGINE_STATES
    raw_status: str  # the exchange's own word
    quantity: Decimal
    filled: Decimal
    remaining: Decimal
    average_price: Decimal | None
    limit_price: Decimal | None
    cumulative_quote: Decimal
    fees: dict[str, Decimal] = field(default_factory=dict)  # asset -> amount
    timestamp_ms: int | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES


@dataclass(frozen=True)
class Fill:
    """One trade of the account, as the exchange reports it."""

    trade_id: int
    exchange_order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int
    is_maker: bool


@dataclass(frozen=True)
class Balance:
    free: Decimal
    used: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.used


@dataclass(frozen=True)
class Backoff:
    """One wait before a retry, for the host's log (and for tests)."""

    operation: str
    attempt: int
    delay_s: float
    retry_after_s: float | None
    error: str  # ccxt class name


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``min(max_delay, base * multiplier**(n-1))``, of which the
    last ``jitter`` fraction is random. A Retry-After from the exchange raises the wait to at least
    that; a Retry-After above ``max_retry_after_s`` is not waited out but raised (``RateLimited``)."""

    max_attempts: int = 5
    base_delay_s: float = 0.2
    multiplier: float = 2.0
    max_delay_s: float = 5.0
    jitter: float = 0.5
    max_retry_after_s: float = 60.0
    seed: int | None = None

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        d = min(self.max_delay_s, self.base_delay_s * self.multiplier ** (attempt - 1))
        d = d * (1 - self.jitter) + d * self.jitter * rng.random()
        if retry_after_s is not None:
            d = max(d, retry_after_s)
        return d


# ---------------------------------------------------------------------------- status mapping

_BINANCE_STATES = {
    "NEW": "accepted",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "CANCELLED": "cancelled",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",  # expired by self-trade prevention
    "TRIGGERED": "triggered",
    "PENDING_NEW": "new",
}
_UNIFIED_STATES = {"closed": "filled", "canceled": "cancelled", "rejected": "rejected", "expired": "expired"}


def map_status(raw_status: str | None, filled: Decimal = ZERO) -> str:
    """Exchange status (Binance words, or ccxt's unified ones) -> engine state.

    PENDING_CANCEL and ccxt's "open"/"canceling" are still working orders: accepted, or
    partially_filled once something has filled. An unknown word raises (never guess)."""
    if raw_status is None:
        raise LiveBrokerError("order has no status")
    upper = raw_status.upper()
    if upper in ("PENDING_CANCEL", "OPEN", "CANCELING", "ACCEPTED"):
        return "partially_filled" if filled > 0 else "accepted"
    if upper in _BINANCE_STATES:
        return _BINANCE_STATES[upper]
    if raw_status in _UNIFIED_STATES:
        return _UNIFIED_STATES[raw_status]
    raise LiveBrokerError(f"unknown order status {raw_status!r}")


# Binance codes that refuse a request before it reaches the matching engine: malformed requests
# (-1100..-1199), filter failures (-1013), NEW_ORDER_REJECTED (-2010). ccxt reports some of them as
# a plain ExchangeError (e.g. -1013 on api.binance.com); with these codes there is nothing to look up.
_CODE_RE = re.compile(r'"code"\s*:\s*(-?\d+)')


def _definitive_refusal(err: Exception) -> bool:
    m = _CODE_RE.search(str(err))
    if m is None:
        return False
    code = int(m.group(1))
    return code in (-1013, -2010) or -1199 <= code <= -1100


# ------------------------------------------------------------------------------------ broker


class CcxtBroker:
    """Wraps one real ccxt exchange object. Not thread-safe: the host calls it from one thread."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        recv_window_ms: int | None = None,
        settle_margin_ms: int = 1_000,
        on_backoff: Callable[[Backoff], None] | None = None,
    ):
        self.exchange = exchange
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(self.retry.seed)
        self._sleep = sleep
        self._mask = Masker(exchange.apiKey, exchange.secret)
        self._filter = _MaskingFilter(self._mask)
        exchange.logger.addFilter(self._filter)
        self.recv_window_ms = recv_window_ms
        # Binance refuses timestamps more than 1 s ahead of its clock, so a request signed by a
        # clock that is ahead can stay acceptable up to recvWindow + 1 s after it was sent
        self.settle_margin_ms = settle_margin_ms
        self.on_backoff = on_backoff
        self.backoffs: deque[Backoff] = deque(maxlen=1000)
        self._rules: dict[str, InstrumentRules] = {}
        self._symbol_of_client_id: dict[str, str] = {}
        self._is_binance = exchange.id in ("binance", "binanceus")

    def close(self) -> None:
        """Detaches the log filter; the broker must not be used afterwards."""
        self.exchange.logger.removeFilter(self._filter)

    def __repr__(self) -> str:
        return f"CcxtBroker(exchange={self.exchange.id!r}, api_key='***', secret='***')"

    __str__ = __repr__

    # ---- error translation and retries
    def _translate(self, err: Exception, what: str, *, order: bool = False) -> LiveBrokerError:
        msg = self._mask(f"{what}: {type(err).__name__}: {err}")
        src = type(err).__name__
        if isinstance(err, ccxt.AuthenticationError) or isinstance(err, ccxt.PermissionDenied):
            return AuthenticationFailed(msg, source=src)
        if isinstance(err, ccxt.OrderNotFound):
            return UnknownOrder(msg, source=src)
        if isinstance(err, ccxt.OperationFailed):
            return ExchangeUnavailable(msg, source=src)
        if isinstance(err, (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest, ccxt.BadSymbol, ccxt.ExchangeError)):
            return (OrderRejected if order else ExchangeRefused)(msg, source=src)
        return LiveBrokerError(msg, source=src)

    def _retry_after(self, err: Exception) -> float | None:
        if not isinstance(err, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            return None
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        raw = headers.get("Retry-After") if hasattr(headers, "get") else None
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None

    def _wait(self, operation: str, attempt: int, err: Exception) -> None:
        retry_after = self._retry_after(err)
        if retry_after is not None and retry_after > self.retry.max_retry_after_s:
            raise RateLimited(
                self._mask(f"{operation}: rate limited for {retry_after}s ({type(err).__name__})"),
                retry_after,
                source=type(err).__name__,
            ) from None
        delay = self.retry.delay(attempt, self._rng, retry_after)
        name = err.source if isinstance(err, LiveBrokerError) and err.source else type(err).__name__
        event = Backoff(operation, attempt, delay, retry_after, name)
        self.backoffs.append(event)
        if self.on_backoff is not None:
            self.on_backoff(event)
        self._sleep(delay)

    def _call(self, operation: str, fn: Callable[[], T], *, order: bool = False) -> T:
        """Runs an idempotent request with retries on transient errors."""
        last: Exception | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return fn()
            except ccxt.OperationFailed as err:
                last = err
                if attempt < self.retry.max_attempts:
                    self._wait(operation, attempt, err)
            except ccxt.BaseError as err:
                raise self._translate(err, operation, order=order) from None
        assert last is not None
        raise self._translate(last, f"{operation} (after {self.retry.max_attempts} attempts)") from None

    # ---- markets
    def load_markets(self, reload: bool = False) -> dict[str, InstrumentRules]:
        markets = self._call("load_markets", lambda: self.exchange.load_markets(reload))
        self._rules = {sym: self._rules_of(m) for sym, m in markets.items()}
        return dict(self._rules)

    def rules(self, symbol: str) -> InstrumentRules:
        if not self._rules:
            self.load_markets()
        try:
            return self._rules[symbol]
        except KeyError:
            raise RuleViolation(f"unknown market {symbol!r}") from None

    def _rules_of(self, m: Mapping[str, Any]) -> InstrumentRules:
        info = m.get("info") or {}
        filters = {f.get("filterType"): f for f in info.get("filters", [])} if isinstance(info, dict) else {}
        if self._is_binance and filters:
            # Binance's own strings: exact, and exactly what the exchange checks
            price_f = filters.get("PRICE_FILTER", {})
            lot_f = filters.get("LOT_SIZE", {})
            notional_f = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}

            def g(f: dict[str, Any], key: str) -> Decimal | None:
                v = _opt_dec(f.get(key), key)
                return None if v is None else _plain(v)

            return InstrumentRules(
                m["symbol"], m["id"], m["base"], m["quote"],
                tick_size=g(price_f, "tickSize"), step_size=g(lot_f, "stepSize"),
                min_qty=g(lot_f, "minQty"), max_qty=g(lot_f, "maxQty"),
                min_price=g(price_f, "minPrice"), max_price=g(price_f, "maxPrice"),
                min_notional=g(notional_f, "minNotional"), max_notional=g(notional_f, "maxNotional"),
                active=bool(m.get("active", True)),
            )
        # any other exchange: ccxt's unified structure. Its numbers are floats; ccxt's
        # number_to_string gives their shortest exact decimal form (the exchange's digits).
        ex = self.exchange

        def num(v: Any) -> Decimal | None:
            return None if v is None else _plain(Decimal(ex.number_to_string(v)))

        def step(v: Any) -> Decimal | None:
            if v is None:
                return None
            if ex.precisionMode == ccxt.DECIMAL_PLACES:
                return Decimal(1).scaleb(-int(v))
            if ex.precisionMode == ccxt.TICK_SIZE:
                return num(v)
            return None  # SIGNIFICANT_DIGITS has no fixed step

        prec, lim = m.get("precision", {}), m.get("limits", {})
        return InstrumentRules(
            m["symbol"], m["id"], m["base"], m["quote"],
            tick_size=step(prec.get("price")), step_size=step(prec.get("amount")),
            min_qty=num(lim.get("amount", {}).get("min")), max_qty=num(lim.get("amount", {}).get("max")),
            min_price=num(lim.get("price", {}).get("min")), max_price=num(lim.get("price", {}).get("max")),
            min_notional=num(lim.get("cost", {}).get("min")), max_notional=num(lim.get("cost", {}).get("max")),
            active=m.get("active") is not False,
        )

    # ---- candles
    def fetch_closed_candles(
        self,
        symbol: str,
        timeframe: str,
        since_ms: int,
        now_ms: int,
        *,
        page_limit: int = 1000,
        max_pages: int = 10_000,
    ) -> list[Candle]:
        """Every candle with ``since_ms <= open`` that has closed by ``now_ms`` (open + timeframe
        <= now), oldest first, paging as needed. The forming candle is never returned."""
        rules = self.rules(symbol)
        tf_ms = self.exchange.parse_timeframe(timeframe) * 1000
        out: list[Candle] = []
        start = since_ms
        for _ in range(max_pages):
            if start + tf_ms > now_ms:
                break
            rows = self._call("fetch_closed_candles", functools.partial(self._raw_klines, rules, timeframe, start, page_limit))
            last_open = None
            done = False  # a short page does not end the catch-up (some exchanges cap the limit lower)
            for row in rows:
                candle = self._candle(row, tf_ms)
                if candle.open_time_ms < start or (last_open is not None and candle.open_time_ms <= last_open):
                    continue  # out of order or repeated: skip, never duplicate
                last_open = candle.open_time_ms
                if candle.close_time_ms > now_ms:
                    done = True  # the forming candle (and anything after it) is not a bar yet
                    break
                out.append(candle)
            if last_open is None or done:
                break
            start = last_open + tf_ms
        return out

    def _raw_klines(self, rules: InstrumentRules, timeframe: str, start: int, limit: int) -> list[list[Any]]:
        ex = self.exchange
        if self._is_binance:
            interval = ex.safe_string(ex.timeframes, timeframe, timeframe)
            klines: list[list[Any]] = ex.publicGetKlines({"symbol": rules.exchange_symbol, "interval": interval, "startTime": start, "limit": limit})
            return klines
        # other exchanges: ccxt's parsed OHLCV (floats) turned back into their shortest decimal text
        return [[r[0]] + [ex.number_to_string(v) for v in r[1:6]] for r in ex.fetch_ohlcv(rules.symbol, timeframe, start, limit)]

    @staticmethod
    def _candle(row: list[Any], tf_ms: int) -> Candle:
        t = int(row[0])
        o, h, l, c, v = (_dec(x, "candle") for x in row[1:6])
        return Candle(t, t + tf_ms, o, h, l, c, v)

    # ---- orders
    def submit(self, intent: OrderIntent) -> OrderState:
        """Places the order once, whatever fails on the way. Raises ``RuleViolation`` (nothing
        sent), ``OrderRejected`` (the exchange refused; no order exists), ``OutcomeUnknown``
        (retries exhausted and the lookup failed too: reconcile by client id later)."""
        ex = self.exchange
        self._check_intent(intent)
        rules = self.rules(intent.symbol)
        price = intent.limit_price if intent.type == "limit" else None
        rules.validate(intent.quantity, price, reference_price=intent.reference_price)
        self._symbol_of_client_id[intent.client_id] = intent.symbol
        params: dict[str, Any] = {"clientOrderId": intent.client_id}
        if intent.type == "limit":
            params["timeInForce"] = intent.time_in_force
        amount = str(intent.quantity)
        price_s = None if price is None else str(price)
        op = f"submit {intent.client_id}"
        ambiguous_since: float | None = None
        last: Exception | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            if ambiguous_since is not None:
                # the previous send may have reached the exchange: look before resending. A send
                # still in flight is refused by the exchange once its recvWindow has passed, so a
                # "not found" only counts after that.
                self._settle(ambiguous_since)
                try:
                    return self._same(intent, self.fetch_order_by_client_id(intent.client_id, intent.symbol, retries=False))
                except UnknownOrder:
                    pass  # definitely not placed: resend under the same client id
                except ExchangeUnavailable as err:  # transient: wait and look again
                    last = err
                    if attempt < self.retry.max_attempts:
                        self._wait(op + " lookup", attempt, err)
                    continue
            try:
                sent_at = time.time()
                reply = ex.create_order(rules.symbol, intent.type, intent.side, amount, price_s, dict(params))
                return self._state(reply.get("info") or {}, rules, reply)
            except ccxt.OperationFailed as err:  # transient, and maybe placed
                last = err
                ambiguous_since = sent_at
                if attempt < self.retry.max_attempts:
                    self._wait(op, attempt, err)
            except ccxt.BaseError as err:
                if "Duplicate order" in str(err):  # the exchange has it already (an open order)
                    return self._same(intent, self.fetch_order_by_client_id(intent.client_id, intent.symbol))
                if type(err) is ccxt.ExchangeError and not _definitive_refusal(err):
                    # an unclassified reply (e.g. a 5xx with an unknown code from a gateway that may
                    # have passed the order on): look once, never resend
                    self._settle(sent_at)
                    try:
                        return self._same(intent, self.fetch_order_by_client_id(intent.client_id, intent.symbol))
                    except UnknownOrder:
                        raise OrderRejected(self._mask(f"{op}: refused by {ex.id}: {err}"), source="ExchangeError") from None
                if isinstance(err, (ccxt.InvalidOrder, ccxt.InsufficientFunds)) and not isinstance(err, ccxt.OrderNotFound):
                    raise OrderRejected(self._mask(f"{op}: rejected by {ex.id}: {err}"), source=type(err).__name__) from None
                raise self._translate(err, op, order=True) from None
        # out of attempts: one last lookup decides
        if ambiguous_since is not None:
            self._settle(ambiguous_since)
            try:
                return self._same(intent, self.fetch_order_by_client_id(intent.client_id, intent.symbol, retries=False))
            except UnknownOrder:
                raise ExchangeUnavailable(
                    self._mask(f"{op}: not placed after {self.retry.max_attempts} attempts (last error: {type(last).__name__})"),
                    source=type(last).__name__,
                ) from None
            except ExchangeUnavailable:
                pass
        raise OutcomeUnknown(
            self._mask(f"{op}: outcome unknown after {self.retry.max_attempts} attempts (last error: {type(last).__name__}: {last})"),
            intent.client_id,
            source=type(last).__name__,
        )

    @staticmethod
    def _same(intent: OrderIntent, state: OrderState) -> OrderState:
        """The order found under the intent's client id must be that intent."""
        diffs = []
        if state.side != intent.side:
            diffs.append(f"side {state.side}")
        if state.type != intent.type:
            diffs.append(f"type {state.type}")
        if state.quantity != intent.quantity:
            diffs.append(f"quantity {state.quantity}")
        if intent.type == "limit" and state.limit_price != intent.limit_price:
            diffs.append(f"limit price {state.limit_price}")
        if diffs:
            raise ClientIdConflict(
                f"client id {intent.client_id} is already used on the exchange by order {state.exchange_id} "
                f"({', '.join(diffs)}), which is not this intent"
            )
        return state

    def resume(self, intent: OrderIntent, *, sent_at_ms: int | None = None) -> OrderState:
        """For an intent the journal recorded as sent but never saw acknowledged (the host died
        between send and ack): returns the exchange's state of the order if it has it, otherwise
        submits it. ``submit`` alone must not be used here: Binance accepts a client id again once
        the first order is no longer open, so a blind resend could double a filled order.

        "Not found" only counts once the first send can no longer arrive: ``sent_at_ms`` (from
        the journal) + recvWindow + margin; without it the wait starts now."""
        self._check_intent(intent)
        self._symbol_of_client_id[intent.client_id] = intent.symbol
        self._settle(time.time() if sent_at_ms is None else sent_at_ms / 1000)
        try:
            return self._same(intent, self.fetch_order_by_client_id(intent.client_id, intent.symbol))
        except UnknownOrder:
            return self.submit(intent)

    def _settle(self, sent_at: float) -> None:
        window = self.recv_window_ms
        if window is None:
            window = self.exchange.safe_integer(self.exchange.options, "recvWindow", 0) or 0
        remaining = sent_at + (window + self.settle_margin_ms) / 1000 - time.time()
        if remaining > 0:
            self._sleep(remaining)

    @staticmethod
    def _check_intent(intent: OrderIntent) -> None:
        if not isinstance(intent.client_id, str) or not CLIENT_ID_RE.match(intent.client_id):
            raise RuleViolation(f"client id {intent.client_id!r} must match {CLIENT_ID_RE.pattern}")
        if intent.side not in ("buy", "sell"):
            raise RuleViolation(f"{intent.client_id}: side must be 'buy' or 'sell', not {intent.side!r}")
        if intent.type not in ("market", "limit"):
            raise RuleViolation(f"{intent.client_id}: type must be 'market' or 'limit', not {intent.type!r}")
        for name in ("quantity", "limit_price", "reference_price"):
            v = getattr(intent, name)
            if v is not None and (not isinstance(v, Decimal) or not v.is_finite()):
                raise RuleViolation(f"{intent.client_id}: {name} must be a finite decimal.Decimal, not {type(v).__name__} {v!r}")
        if intent.type == "limit":
            if intent.limit_price is None:
                raise RuleViolation(f"{intent.client_id}: a limit order needs limit_price")
            if intent.time_in_force not in ("GTC", "IOC", "FOK"):
                raise RuleViolation(f"{intent.client_id}: time_in_force must be GTC, IOC or FOK")
        elif intent.limit_price is not None:
            raise RuleViolation(f"{intent.client_id}: a market order takes no limit_price")

    def fetch_order_by_client_id(self, client_id: str, symbol: str | None = None, *, with_fees: bool = True, retries: bool = True) -> OrderState:
        """The exchange's view of the order with this client id; ``UnknownOrder`` if it has none."""
        symbol = symbol or self._symbol_of_client_id.get(client_id)
        if symbol is None:
            raise LiveBrokerError(f"fetch_order_by_client_id({client_id!r}) needs the symbol")
        rules = self.rules(symbol)
        op = f"fetch order {client_id}"

        def go() -> OrderState:
            reply = self.exchange.fetch_order(None, rules.symbol, {"clientOrderId": client_id})
            return self._state(reply.get("info") or {}, rules, reply, with_fees=with_fees)

        if retries:
            return self._call(op, go)
        try:
            return go()
        except ccxt.BaseError as err:
            raise self._translate(err, op) from None

    def cancel(self, client_id: str | None = None, *, exchange_id: str | None = None, symbol: str | None = None) -> OrderState:
        """Cancels by client id (or exchange id). Returns the cancelled order's state, also when
        an earlier attempt had already cancelled it. ``OrderNotCancellable`` if it is final in
        another way (filled, expired, rejected); ``UnknownOrder`` if the exchange never had it."""
        if (client_id is None) == (exchange_id is None):
            raise ValueError("cancel: give exactly one of client_id or exchange_id")
        symbol = symbol or (self._symbol_of_client_id.get(client_id) if client_id else None)
        if symbol is None:
            raise LiveBrokerError("cancel needs the symbol")
        rules = self.rules(symbol)
        key = client_id or exchange_id
        op = f"cancel {key}"
        params = {"clientOrderId": client_id} if client_id else {}
        try:
            reply = self._call(op, lambda: self.exchange.cancel_order(exchange_id, rules.symbol, dict(params)), order=True)
            return self._state(reply.get("info") or {}, rules, reply, with_fees=True)
        except (UnknownOrder, OrderRejected) as err:
            # Binance answers -2011 "Unknown order sent." both for unknown and for final orders
            state = self._lookup(client_id, exchange_id, rules)
            if state is None:
                raise UnknownOrder(f"{op}: {self.exchange.id} has no such order", source=err.source) from None
            if state.status == "cancelled":
                return state
            raise OrderNotCancellable(f"{op}: order is already {state.status}", state, source=err.source) from None

    def _lookup(self, client_id: str | None, exchange_id: str | None, rules: InstrumentRules) -> OrderState | None:
        params = {"clientOrderId": client_id} if client_id else {}
        try:
            reply = self._call("lookup", lambda: self.exchange.fetch_order(exchange_id, rules.symbol, dict(params)))
        except UnknownOrder:
            return None
        return self._state(reply.get("info") or {}, rules, reply, with_fees=True)

    def fetch_fills(self, symbol: str, *, from_trade_id: int | None = None, since_ms: int | None = None, page_limit: int = 1000, max_pages: int = 1000) -> list[Fill]:
        """The account's trades on ``symbol`` (each fill once, oldest first, exact), from trade id
        ``from_trade_id`` (inclusive) or time ``since_ms``; pages through everything after it.
        The engine applies these to its ledger; ``exchange_order_id`` links them to orders."""
        rules = self.rules(symbol)
        ex = self.exchange
        if not self._is_binance:
            trades = self._call("fetch_fills", lambda: ex.fetch_my_trades(rules.symbol, since_ms, page_limit))
            return [self._fill_unified(t, rules) for t in trades]
        out: list[Fill] = []
        params: dict[str, Any] = {"symbol": rules.exchange_symbol, "limit": page_limit}
        if from_trade_id is not None:
            params["fromId"] = from_trade_id
        elif since_ms is not None:
            params["startTime"] = since_ms
        else:
            params["fromId"] = 0
        for _ in range(max_pages):
            rows = self._call("fetch_fills", functools.partial(ex.privateGetMyTrades, dict(params)))
            fresh = [r for r in rows if not out or int(r["id"]) > out[-1].trade_id]
            out.extend(self._fill_binance(r, rules) for r in fresh)
            if len(rows) < page_limit or not fresh:
                break
            params.pop("startTime", None)
            params["fromId"] = out[-1].trade_id + 1
        return out

    def _fill_binance(self, r: Mapping[str, Any], rules: InstrumentRules) -> Fill:
        return Fill(
            trade_id=int(r["id"]),
            exchange_order_id=str(r["orderId"]),
            symbol=rules.symbol,
            side="buy" if r["isBuyer"] else "sell",
            price=_dec(r["price"], "price"),
            quantity=_dec(r["qty"], "qty"),
            fee=_dec(r["commission"], "commission"),
            fee_asset=self.exchange.safe_currency_code(r["commissionAsset"]),
            time_ms=int(r["time"]),
            is_maker=bool(r["isMaker"]),
        )

    def _fill_unified(self, t: Mapping[str, Any], rules: InstrumentRules) -> Fill:
        ex = self.exchange
        fee = t.get("fee") or {}
        return Fill(
            trade_id=int(t["id"]) if str(t["id"]).isdigit() else t["id"],
            exchange_order_id=str(t.get("order")),
            symbol=rules.symbol,
            side=t["side"],
            price=Decimal(ex.number_to_string(t["price"])),
            quantity=Decimal(ex.number_to_string(t["amount"])),
            fee=Decimal(ex.number_to_string(fee.get("cost") or 0)),
            fee_asset=fee.get("currency") or "",
            time_ms=int(t["timestamp"]),
            is_maker=t.get("takerOrMaker") == "maker",
        )

    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        if not self._rules:
            self.load_markets()
        sym = None if symbol is None else self.rules(symbol).symbol
        replies = self._call("open_orders", lambda: self.exchange.fetch_open_orders(sym))
        return [self._state(r.get("info") or {}, self.rules(r["symbol"]), r) for r in replies]

    def balances(self) -> dict[str, Balance]:
        """Non-zero balances, exact."""
        reply = self._call("balances", lambda: self.exchange.fetch_balance())
        out: dict[str, Balance] = {}
        info = reply.get("info")
        if self._is_binance and isinstance(info, dict) and "balances" in info:
            for row in info["balances"]:
                b = Balance(_dec(row["free"], "free"), _dec(row["locked"], "locked"))
                if b.total != 0:
                    out[self.exchange.safe_currency_code(row["asset"])] = b
            return out
        ex = self.exchange
        for asset, row in reply.items():
            if asset in ("info", "free", "used", "total", "timestamp", "datetime") or not isinstance(row, dict):
                continue
            free = Decimal(ex.number_to_string(row.get("free") or 0))
            used = Decimal(ex.number_to_string(row.get("used") or 0))
            if free + used != 0:
                out[asset] = Balance(free, used)
        return out

    def positions(self, cash_assets: Iterable[str] | None = None) -> dict[str, Decimal]:
        """Spot positions: the non-zero total balances of assets that are the base of a loaded
        market, except the cash assets (default: every quote asset of the loaded markets)."""
        if not self._rules:
            self.load_markets()
        cash = set(cash_assets) if cash_assets is not None else {r.quote for r in self._rules.values()}
        bases = {r.base for r in self._rules.values()}
        return {a: b.total for a, b in self.balances().items() if a in bases and a not in cash}

    # ---- order state
    def _state(self, info: Mapping[str, Any], rules: InstrumentRules, unified: Mapping[str, Any], *, with_fees: bool = False) -> OrderState:
        ex = self.exchange
        if self._is_binance and "status" in info:
            qty = _dec(info.get("origQty", "0"), "origQty")
            filled = _dec(info.get("executedQty", "0"), "executedQty")
            quote = _dec(info.get("cummulativeQuoteQty", "0"), "cummulativeQuoteQty")
            raw = str(info["status"])
            limit = _opt_dec(info.get("price"), "price")
            fees: dict[str, Decimal] = {}
            fills = info.get("fills")
            if fills is None and with_fees and filled > 0:
                fills = self._call(
                    "fetch fills",
                    lambda: [t["info"] for t in ex.fetch_order_trades(str(info["orderId"]), rules.symbol)],
                )
            for f in fills or []:
                asset = ex.safe_currency_code(f["commissionAsset"])
                fees[asset] = fees.get(asset, ZERO) + _dec(f["commission"], "commission")
            return OrderState(
                client_id=info.get("clientOrderId") if "origClientOrderId" not in info else info["origClientOrderId"],
                exchange_id=str(info["orderId"]),
                symbol=rules.symbol,
                side=str(info["side"]).lower(),
                type=str(info["type"]).lower(),
                status=map_status(raw, filled),
                raw_status=raw,
                quantity=qty,
                filled=filled,
                remaining=qty - filled,
                average_price=(quote / filled) if filled > 0 else None,
                limit_price=limit if limit else None,
                cumulative_quote=quote,
                fees=fees,
                timestamp_ms=info.get("updateTime") or info.get("transactTime") or info.get("time"),
            )
        # other exchanges: the unified order (floats -> shortest exact text)
        def d(key: str) -> Decimal | None:
            v = unified.get(key)
            return None if v is None else Decimal(ex.number_to_string(v))

        qty, filled = d("amount") or ZERO, d("filled") or ZERO
        fees = {}
        for fee in unified.get("fees") or []:
            if fee and fee.get("cost") is not None:
                fees[fee["currency"]] = fees.get(fee["currency"], ZERO) + Decimal(ex.number_to_string(fee["cost"]))
        raw = unified.get("status") or "open"
        return OrderState(
            client_id=unified.get("clientOrderId"), exchange_id=str(unified["id"]), symbol=rules.symbol,
            side=unified.get("side") or "", type=unified.get("type") or "", status=map_status(raw, filled),
            raw_status=raw, quantity=qty, filled=filled, remaining=qty - filled, average_price=d("average"),
            limit_price=d("price"), cumulative_quote=d("cost") or ZERO, fees=fees, timestamp_ms=unified.get("timestamp"),
        )


# ------------------------------------------------------------------------------------ connect


def connect(
    exchange_id: str,
    *,
    api_key: str,
    secret: str,
    urls: str | Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
    sandbox: bool = False,
    timeout_ms: int = 10_000,
    recv_window_ms: int = 5_000,
    settle_margin_ms: int = 1_000,
    rate_limit: bool = True,
    rate_limit_ms: float | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_backoff: Callable[[Backoff], None] | None = None,
) -> CcxtBroker:
    """Builds the real ccxt exchange and wraps it.

    ``urls``: a base URL for every REST API of the exchange (``str``), or a mapping of ccxt API
    names to URLs (``{"public": ..., "private": ...}``); either way every API URL that is not
    given is pointed at a closed local port, so nothing can reach the real exchange by accident.
    For Binance the options that keep ``load_markets`` on spot endpoints are set by default.
    """
    if exchange_id not in ccxt.exchanges:
        raise LiveBrokerError(f"unknown ccxt exchange {exchange_id!r}")
    opts: dict[str, Any] = {}
    if exchange_id in ("binance", "binanceus"):
        opts.update(
            {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
                "recvWindow": recv_window_ms,
                "defaultType": "spot",
            }
        )
    opts.update(options or {})
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": secret,
        "timeout": timeout_ms,
        "enableRateLimit": rate_limit,
        "options": opts,
    }
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    exchange = getattr(ccxt, exchange_id)(config)
    if sandbox:
        exchange.set_sandbox_mode(True)
    if urls is not None:
        api = exchange.urls.get("api")
        given = {name: urls for name in (api if isinstance(api, dict) else {})} if isinstance(urls, str) else dict(urls)
        if isinstance(api, dict):
            exchange.urls["api"] = {name: given.get(name, UNROUTED_URL) for name in api} | given
        else:
            exchange.urls["api"] = given.get("public", UNROUTED_URL) if isinstance(urls, Mapping) else urls
    return CcxtBroker(
        exchange,
        retry=retry,
        sleep=sleep,
        recv_window_ms=recv_window_ms if exchange_id in ("binance", "binanceus") else 0,
        settle_margin_ms=settle_margin_ms,
        on_backoff=on_backoff,
    )
