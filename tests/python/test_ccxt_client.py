"""The live client layer (``rustybt_api._live``) with the real ccxt client against the fake
Binance on 127.0.0.1: Decimal exactness, closed candles, idempotent submits, retries, errors."""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api._live import (  # noqa: E402
    ENGINE_STATES,
    AuthenticationFailed,
    CcxtBroker,
    ClientIdConflict,
    ExchangeRefused,
    ExchangeUnavailable,
    OrderIntent,
    OrderNotCancellable,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    RetryPolicy,
    RuleViolation,
    UnknownOrder,
    connect,
    map_status,
)
from tests.support.fake_binance import FakeBinance, Market  # noqa: E402

MINUTE = 60_000
T0 = 1_700_000_000_000 // MINUTE * MINUTE
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05, seed=7)


def new_fake(**kw: object) -> FakeBinance:
    defaults: dict[str, object] = dict(
        markets=[Market("BTCUSDT", "BTC", "USDT"), Market("ETHUSDT", "ETH", "USDT", tick_size="0.1", min_price="0.1", step_size="0.001", min_qty="0.001")],
        balances={"USDT": "10000", "BTC": "1"},
        prices={"BTCUSDT": "100", "ETHUSDT": "50"},
        api_key="k-PUBLIC-0123456789abcdef",
        secret="s-SECRET-fedcba9876543210",
    )
    defaults.update(kw)
    return FakeBinance(**defaults)  # type: ignore[arg-type]


def new_broker(fake: FakeBinance, **kw: object) -> CcxtBroker:
    args: dict[str, object] = dict(
        api_key=fake.api_key, secret=fake.secret, urls=fake.url, timeout_ms=500, recv_window_ms=300, settle_margin_ms=0, rate_limit_ms=1, retry=FAST
    )
    args.update(kw)
    return connect("binance", **args)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with new_fake() as f:
        yield f


@pytest.fixture
def broker(fake: FakeBinance) -> CcxtBroker:
    b = new_broker(fake)
    b.load_markets()
    return b


def buy(cid: str, qty: str = "0.1", **kw: object) -> OrderIntent:
    return OrderIntent(cid, "BTC/USDT", "buy", D(qty), **kw)  # type: ignore[arg-type]


def posts(fake: FakeBinance) -> list[str]:
    return [r.params.get("newClientOrderId", "") for r in fake.requests_for("POST", "order")]


# ------------------------------------------------------------------------- rules and candles


def test_rules_are_exact_decimals_from_the_exchange(broker: CcxtBroker) -> None:
    btc = broker.rules("BTC/USDT")
    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (D("0.01"), D("0.00001"), D("0.00001"), D("5"))
    assert btc.exchange_symbol == "BTCUSDT" and (btc.base, btc.quote) == ("BTC", "USDT")
    eth = broker.rules("ETH/USDT")
    assert (eth.tick_size, eth.step_size) == (D("0.1"), D("0.001"))
    assert all(isinstance(v, D) for v in (btc.max_qty, btc.min_price, btc.max_price, btc.max_notional))
    with pytest.raises(RuleViolation, match="unknown market"):
        broker.rules("DOGE/USDT")


def test_closed_candles_only_and_exact(fake: FakeBinance, broker: CcxtBroker) -> None:
    rows = [[T0 + i * MINUTE, "0.1", "0.2", "0.1", "0.2", "1.1"] for i in range(5)]
    fake.add_candles("BTCUSDT", "1m", rows)
    fake.set_time(T0 + 4 * MINUTE + 1)  # candle 4 is forming; the fake serves it
    candles = broker.fetch_closed_candles("BTC/USDT", "1m", T0, T0 + 4 * MINUTE + 1)
    assert [c.open_time_ms for c in candles] == [T0 + i * MINUTE for i in range(4)]
    assert candles[0].close_time_ms == T0 + MINUTE
    c = candles[0]
    assert c.open + c.high == D("0.3") and isinstance(c.volume, D)  # 0.1 + 0.2, exactly
    # the boundary: at exactly open + 1m the candle has closed
    assert len(broker.fetch_closed_candles("BTC/USDT", "1m", T0, T0 + 5 * MINUTE)) == 5
    assert broker.fetch_closed_candles("BTC/USDT", "1m", T0 + 4 * MINUTE, T0 + 5 * MINUTE - 1) == []


def test_catch_up_across_a_gap_pages(fake: FakeBinance) -> None:
    n = 2_345
    fake.add_candles("BTCUSDT", "1m", [[T0 + i * MINUTE, "1", "2", "0.5", str(D("1.5") + D(i) / 100), "3"] for i in range(n + 1)])
    fake.set_time(T0 + n * MINUTE + 10)
    broker = new_broker(fake)
    since = T0 + 100 * MINUTE  # the last bar seen before the pause was #99
    candles = broker.fetch_closed_candles("BTC/USDT", "1m", since, T0 + n * MINUTE + 10, page_limit=500)
    assert [c.open_time_ms for c in candles] == [T0 + i * MINUTE for i in range(100, n)]  # no gap, no dup
    assert candles[-1].close == D("1.5") + D(n - 1) / 100
    assert len(fake.requests_for("GET", "klines")) == 5  # ceil((2345 - 100 + 1) / 500) pages


def test_candle_fetch_retries_a_5xx(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.add_candles("BTCUSDT", "1m", [[T0, "1", "1", "1", "1", "1"]])
    fake.inject(kind="status", method="GET", path="klines", status=502, body={})
    assert len(broker.fetch_closed_candles("BTC/USDT", "1m", T0, T0 + MINUTE)) == 1
    assert [b.error for b in broker.backoffs] == ["ExchangeNotAvailable"]


# ------------------------------------------------------------------------------- submitting


def test_submit_market_order_decimal_state(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.set_fill_plan("BTCUSDT", ["0.1", "0.2"])
    state = broker.submit(buy("rbt-1-1", "0.3"))
    assert (state.client_id, state.status, state.raw_status) == ("rbt-1-1", "filled", "FILLED")
    assert (state.filled, state.remaining, state.average_price) == (D("0.3"), D(0), D(100))
    assert state.fees == {"BTC": D("0.0003")}
    assert posts(fake) == ["rbt-1-1"]
    assert fake.requests_for("POST", "order")[0].params["quantity"] == "0.3"


def test_decimal_prices_stay_exact_on_the_wire(fake: FakeBinance, broker: CcxtBroker) -> None:
    price = D("0.1") + D("0.2")  # 0.30000000000000004 as floats
    fake.advance("ETHUSDT", "0.5")
    state = broker.submit(OrderIntent("rbt-1-2", "ETH/USDT", "buy", D("20.001"), type="limit", limit_price=price))
    sent = fake.requests_for("POST", "order")[0].params
    assert (sent["price"], sent["quantity"], sent["timeInForce"]) == ("0.3", "20.001", "GTC")
    assert state.limit_price == D("0.3") and state.quantity == D("20.001") and state.status == "accepted"
    assert fake.balance("USDT") == (D("10000") - D("6.0003"), D("6.0003"))


def test_rule_violations_are_refused_before_sending(fake: FakeBinance, broker: CcxtBroker) -> None:
    bad = [
        (buy("r1", "0.000015"), "lot step"),
        (buy("r2", "0.000001"), "below the minimum"),
        (buy("r3", "10000"), "above the maximum"),
        (buy("r4", "1", type="limit", limit_price=D("99.999")), "tick size"),
        (buy("r5", "0.01", type="limit", limit_price=D("99")), "notional"),
        (buy("r6", "0.01", reference_price=D("100")), "notional"),
        (buy("r7", "0", type="market"), "must be > 0"),
        (OrderIntent("r8", "BTC/USDT", "buy", 0.1), "decimal.Decimal"),  # type: ignore[arg-type]
        (buy("r9", "1", type="limit"), "needs limit_price"),
        (buy("r10", "1", type="stop"), "type must be"),
        (buy("bad id!", "1"), "client id"),
        (buy("x" * 37, "1"), "client id"),
        (OrderIntent("r11", "BTC/USDT", "hold", D(1)), "side"),
        (buy("r12", "1", type="limit", limit_price=D("99"), time_in_force="GTD"), "time_in_force"),
    ]
    for intent, reason in bad:
        with pytest.raises(RuleViolation, match=reason):
            broker.submit(intent)
    assert posts(fake) == []


def test_retry_after_5xx_succeeds(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="status", method="POST", path="order", status=503)
    state = broker.submit(buy("rbt-5xx"))
    assert state.status == "filled"
    # one rejected send, one lookup by client id (not found), one resend: one order
    assert posts(fake) == ["rbt-5xx", "rbt-5xx"]
    assert [r.params.get("origClientOrderId") for r in fake.requests_for("GET", "order")] == ["rbt-5xx"]
    assert [o.client_order_id for o in fake.orders] == ["rbt-5xx"]
    assert [b.error for b in broker.backoffs] == ["OperationFailed"]


def test_429_backs_off_for_retry_after(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="status", method="GET", path="account", status=429, retry_after=0.4)
    started = time.monotonic()
    balances = broker.balances()
    waited = time.monotonic() - started
    assert balances["USDT"].free == D("10000")
    assert waited >= 0.4
    (event,) = broker.backoffs
    assert (event.retry_after_s, event.error) == (0.4, "DDoSProtection") and event.delay_s >= 0.4
    fake.inject(kind="status", method="POST", path="order", status=429, retry_after=0.2)
    started = time.monotonic()
    assert broker.submit(buy("rbt-429")).status == "filled"
    assert time.monotonic() - started >= 0.2
    assert [o.client_order_id for o in fake.orders] == ["rbt-429"]


def test_418_ban_is_surfaced_not_slept(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="status", method="GET", path="account", status=418, retry_after=3600)
    started = time.monotonic()
    with pytest.raises(RateLimited) as err:
        broker.balances()
    assert err.value.retry_after_s == 3600 and time.monotonic() - started < 1


def test_timeout_after_accept_places_exactly_one_order(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="delay", method="POST", path="order", delay_s=1.0)  # > the 0.5 s client timeout
    state = broker.submit(buy("rbt-timeout"))
    assert state.status == "filled" and state.client_id == "rbt-timeout"
    assert posts(fake) == ["rbt-timeout"]  # never resent: the lookup found it
    assert len(fake.orders) == 1
    assert [b.error for b in broker.backoffs] == ["RequestTimeout"]


def test_dropped_ack_places_exactly_one_order(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="drop", method="POST", path="order")
    state = broker.submit(buy("rbt-drop", type="limit", limit_price=D("99")))
    assert (state.status, state.exchange_id) == ("accepted", str(fake.orders[0].order_id))
    assert posts(fake) == ["rbt-drop"] and len(fake.orders) == 1


def test_lost_request_is_resent_once_after_the_recv_window(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="drop", method="POST", path="order", process=False)  # never reached the book
    started = time.monotonic()
    state = broker.submit(buy("rbt-lost"))
    assert time.monotonic() - started >= 0.3  # the lookup that allows a resend waits out recvWindow
    assert state.status == "filled"
    assert posts(fake) == ["rbt-lost", "rbt-lost"] and len(fake.orders) == 1


def test_duplicate_client_id_returns_the_existing_order(fake: FakeBinance, broker: CcxtBroker) -> None:
    intent = buy("rbt-dup", type="limit", limit_price=D("95"))
    first = broker.submit(intent)
    again = broker.submit(intent)  # e.g. the host restarted and replays its journal
    assert again.exchange_id == first.exchange_id and again.status == "accepted"
    assert len(fake.orders) == 1
    assert fake.requests_for("POST", "order")[1].error_code == -2010


def test_retries_exhausted(fake: FakeBinance) -> None:
    broker = new_broker(fake, retry=RetryPolicy(max_attempts=3, base_delay_s=0.001, seed=1))
    broker.load_markets()
    fake.inject(kind="status", method="POST", path="order", status=503, times=10)
    with pytest.raises(ExchangeUnavailable, match="not placed after 3 attempts"):
        broker.submit(buy("rbt-down"))
    assert fake.orders == []
    # sends fail AND lookups fail: nobody knows -> OutcomeUnknown, never a blind resend
    fake.faults.clear()
    fake.inject(kind="drop", method="POST", path="order", times=10)
    fake.inject(kind="status", method="GET", path="order", status=503, times=10)
    with pytest.raises(OutcomeUnknown) as err:
        broker.submit(buy("rbt-unknown"))
    assert err.value.client_id == "rbt-unknown"
    assert posts(fake).count("rbt-unknown") == 1
    fake.faults.clear()
    assert broker.fetch_order_by_client_id("rbt-unknown").status == "filled"  # reconciliation


def test_exchange_rejections(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="reject", method="POST", path="order")
    with pytest.raises(OrderRejected, match="insufficient balance"):
        broker.submit(buy("rbt-rej1"))
    with pytest.raises(OrderRejected, match="insufficient balance"):
        broker.submit(buy("rbt-rej2", "200", type="limit", limit_price=D("99")))
    assert fake.orders == [] and posts(fake) == ["rbt-rej1", "rbt-rej2"]


# ---------------------------------------------------------------------- cancel, query, states


def test_cancel_paths(fake: FakeBinance, broker: CcxtBroker) -> None:
    broker.submit(buy("rbt-c1", type="limit", limit_price=D("90")))
    state = broker.cancel("rbt-c1")
    assert state.status == "cancelled" and state.client_id == "rbt-c1"
    assert broker.cancel("rbt-c1").status == "cancelled"  # idempotent
    broker.submit(buy("rbt-c2"))
    with pytest.raises(OrderNotCancellable) as err:
        broker.cancel("rbt-c2")
    assert err.value.state.status == "filled"
    with pytest.raises(UnknownOrder, match="no such order"):
        broker.cancel("rbt-never", symbol="BTC/USDT")
    with pytest.raises(UnknownOrder):
        broker.cancel(exchange_id="424242", symbol="BTC/USDT")
    with pytest.raises(UnknownOrder):
        broker.fetch_order_by_client_id("rbt-never", "BTC/USDT")
    s = broker.submit(buy("rbt-c3", type="limit", limit_price=D("90")))
    assert broker.cancel(exchange_id=s.exchange_id, symbol="BTC/USDT").status == "cancelled"


def test_partial_fills_and_status_mapping(fake: FakeBinance, broker: CcxtBroker) -> None:
    broker.submit(buy("rbt-p1", "1", type="limit", limit_price=D("90")))
    fake.advance("BTCUSDT", "89", qty="0.25")
    s = broker.fetch_order_by_client_id("rbt-p1")
    assert (s.status, s.filled, s.remaining, s.average_price) == ("partially_filled", D("0.25"), D("0.75"), D(90))
    assert s.fees == {"BTC": D("0.00025")}
    assert [o.client_id for o in broker.open_orders()] == ["rbt-p1"]
    assert broker.open_orders("ETH/USDT") == []
    c = broker.cancel("rbt-p1")
    assert (c.status, c.filled) == ("cancelled", D("0.25"))
    fake.set_liquidity("BTCUSDT", "0.4")
    ioc = broker.submit(buy("rbt-ioc", "1", type="limit", limit_price=D("100"), time_in_force="IOC"))
    assert (ioc.status, ioc.raw_status, ioc.filled) == ("expired", "EXPIRED", D("0.4"))


@pytest.mark.parametrize(
    "raw, filled, state",
    [
        ("NEW", "0", "accepted"),
        ("PARTIALLY_FILLED", "0.1", "partially_filled"),
        ("FILLED", "1", "filled"),
        ("CANCELED", "0.3", "cancelled"),
        ("REJECTED", "0", "rejected"),
        ("EXPIRED", "0", "expired"),
        ("EXPIRED_IN_MATCH", "0", "expired"),
        ("PENDING_CANCEL", "0", "accepted"),
        ("PENDING_CANCEL", "0.2", "partially_filled"),
        ("TRIGGERED", "0", "triggered"),
        ("PENDING_NEW", "0", "new"),
        ("open", "0", "accepted"),
        ("open", "0.5", "partially_filled"),
        ("closed", "1", "filled"),
        ("canceled", "0", "cancelled"),
    ],
)
def test_map_status(raw: str, filled: str, state: str) -> None:
    assert map_status(raw, D(filled)) == state
    assert state in ENGINE_STATES


def test_map_status_refuses_unknown_words() -> None:
    with pytest.raises(Exception, match="unknown order status"):
        map_status("HALF_BAKED")


def test_balances_and_positions(fake: FakeBinance, broker: CcxtBroker) -> None:
    broker.submit(buy("rbt-b1", "0.5"))
    broker.submit(buy("rbt-b2", "0.1", type="limit", limit_price=D("80")))
    bal = broker.balances()
    assert bal["USDT"].free == D("10000") - D("50") - D("8") and bal["USDT"].used == D("8")
    assert bal["USDT"].total == D("9950")
    assert bal["BTC"].total == D("1.4995")
    assert "ETH" not in bal  # zero balances are left out
    assert broker.positions() == {"BTC": D("1.4995")}


# ------------------------------------------------------------------------------ credentials


def test_credentials_are_masked(fake: FakeBinance, caplog: pytest.LogCaptureFixture) -> None:
    key, secret = fake.api_key, fake.secret
    broker = new_broker(fake)
    assert key not in repr(broker) and secret not in repr(broker) and "***" in repr(broker)
    with caplog.at_level(logging.DEBUG):
        broker.balances()  # ccxt logs request headers (X-MBX-APIKEY) at DEBUG
    assert caplog.records and key not in caplog.text and secret not in caplog.text
    wrong = new_broker(fake, secret="not-" + secret)
    with pytest.raises(AuthenticationFailed) as err:
        wrong.balances()
    text = str(err.value) + repr(err.value)
    assert "-1022" in text and key not in text and secret not in text and "signature=" not in text.replace("signature=***", "")
    assert err.value.__cause__ is None and err.value.__suppress_context__  # tracebacks show only ours
    with pytest.raises(AuthenticationFailed, match="-2015"):
        new_broker(fake, api_key="nobody").balances()


def test_failing_get_urls_are_masked(fake: FakeBinance) -> None:
    broker = new_broker(fake, retry=RetryPolicy(max_attempts=1))
    fake.inject(kind="delay", method="GET", path="account", delay_s=1.0)
    with pytest.raises(ExchangeUnavailable) as err:
        broker.balances()  # RequestTimeout: ccxt's message holds the signed URL
    assert "RequestTimeout" in str(err.value) and "signature=***" in str(err.value)


# ----------------------------------------------------------------------------- retry policy


def test_retry_policy_is_seedable_capped_and_honours_retry_after() -> None:
    p = RetryPolicy(base_delay_s=0.1, multiplier=2, max_delay_s=1.0, jitter=0.5, seed=3)
    a = [p.delay(n, random.Random(3)) for n in range(1, 8)]
    b = [p.delay(n, random.Random(3)) for n in range(1, 8)]
    assert a == b
    for n, d in enumerate(a, start=1):
        cap = min(1.0, 0.1 * 2 ** (n - 1))
        assert cap * 0.5 <= d <= cap
    assert p.delay(1, random.Random(0), retry_after_s=2.5) == 2.5


def test_rate_limiter_is_on(fake: FakeBinance) -> None:
    broker = new_broker(fake, rate_limit_ms=100)
    assert broker.exchange.enableRateLimit
    broker.balances()
    started = time.monotonic()
    broker.balances()
    assert time.monotonic() - started >= 0.1  # ccxt throttled the second request


# --------------------------------------------------------------------------------- property


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=6),
    price_cents=st.integers(min_value=5_000, max_value=15_000),
)
def test_partial_fills_sum_and_balances_are_conserved(chunks: list[int], price_cents: int) -> None:
    step = D("0.001")
    limit = D(price_cents) / 100
    qty = sum(chunks) * step + 200 * step  # never fully filled by the chunks, so it stays partial
    with new_fake(balances={"USDT": "100000", "BTC": "0"}, prices={"BTCUSDT": "1000"}) as fake:  # rests
        broker = new_broker(fake)
        broker.submit(OrderIntent("rbt-h", "BTC/USDT", "buy", qty, type="limit", limit_price=limit))
        for c in chunks:
            fake.advance("BTCUSDT", limit - D("0.01"), qty=c * step)
        s = broker.fetch_order_by_client_id("rbt-h")
        trades = broker.exchange.fetch_my_trades("BTC/USDT")
        filled = sum(chunks) * step
        assert s.filled == filled == sum(D(t["info"]["qty"]) for t in trades)
        assert s.status == "partially_filled" and s.remaining == qty - filled
        assert s.average_price == limit and s.cumulative_quote == filled * limit
        bal = broker.balances()
        # quote: what was spent plus what is still locked equals the starting cash, exactly
        assert bal["USDT"].free + bal["USDT"].used + filled * limit == D("100000")
        assert bal["USDT"].used == (qty - filled) * limit
        assert bal["BTC"].total == filled - s.fees["BTC"]
        c = broker.cancel("rbt-h")
        assert c.status == "cancelled" and broker.balances()["USDT"].used == 0


def test_connect_routes_every_api_and_knows_sandbox(fake: FakeBinance) -> None:
    broker = new_broker(fake)
    api = broker.exchange.urls["api"]
    assert api["public"] == api["private"] == fake.url  # given as one base URL: every API goes there
    broker = connect("binance", api_key="k", secret="s", urls={"public": fake.url, "private": fake.url})
    api = broker.exchange.urls["api"]
    assert {u for name, u in api.items() if name not in ("public", "private")} == {"http://127.0.0.1:9/not-configured"}
    sandbox = connect("binance", api_key="k", secret="s", sandbox=True)  # builds only; no request
    assert "testnet" in sandbox.exchange.urls["api"]["public"]
    with pytest.raises(Exception, match="unknown ccxt exchange"):
        connect("no-such-exchange", api_key="k", secret="s")


def test_on_backoff_callback_and_close(fake: FakeBinance) -> None:
    seen: list[str] = []
    broker = new_broker(fake, on_backoff=lambda b: seen.append(f"{b.operation}:{b.error}"))
    fake.inject(kind="status", method="GET", path="openOrders", status=500)
    assert broker.open_orders("BTC/USDT") == []
    assert seen == ["open_orders:OperationFailed"]
    filters = len(broker.exchange.logger.filters)
    broker.close()
    assert len(broker.exchange.logger.filters) == filters - 1


def test_positions_respect_cash_assets(fake: FakeBinance, broker: CcxtBroker) -> None:
    broker.submit(OrderIntent("rbt-eth", "ETH/USDT", "buy", D("1"), reference_price=D("50")))
    assert broker.positions() == {"BTC": D("1"), "ETH": D("0.999")}
    assert broker.positions(cash_assets={"USDT", "BTC"}) == {"ETH": D("0.999")}


def test_gateway_errors_after_the_backend_took_the_order(fake: FakeBinance, broker: CcxtBroker) -> None:
    # a 5xx with a code ccxt does not know: placed or not? look once, never resend
    fake.inject(kind="status", method="POST", path="order", status=500, body={"code": -9999, "msg": "odd"}, also_process=True)
    assert broker.submit(buy("rbt-gw1")).status == "filled"
    fake.inject(kind="status", method="POST", path="order", status=500, body={"code": -9999, "msg": "odd"})
    with pytest.raises(OrderRejected, match="odd"):
        broker.submit(buy("rbt-gw2"))
    # a 504 (ccxt: RequestTimeout) after the backend placed it
    fake.inject(kind="status", method="POST", path="order", status=504, body={}, also_process=True)
    assert broker.submit(buy("rbt-gw3")).status == "filled"
    assert posts(fake) == ["rbt-gw1", "rbt-gw2", "rbt-gw3"]
    assert [o.client_order_id for o in fake.orders] == ["rbt-gw1", "rbt-gw3"]


def test_a_reused_client_id_for_another_intent_is_a_conflict(fake: FakeBinance, broker: CcxtBroker) -> None:
    broker.submit(buy("rbt-same", "0.1", type="limit", limit_price=D("90")))
    with pytest.raises(ClientIdConflict, match="quantity 0.1"):
        broker.submit(buy("rbt-same", "0.2", type="limit", limit_price=D("90")))
    with pytest.raises(ClientIdConflict, match="limit price 90"):
        broker.submit(buy("rbt-same", "0.1", type="limit", limit_price=D("91")))
    assert len(fake.orders) == 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    # in 0.000001 (finer than the 0.00001 lot step) and 0.001 (finer than the 0.01 tick); half of
    # the draws are on the grid, so both outcomes are exercised
    qty_units=st.one_of(st.integers(1, 300_000).map(lambda k: k * 10), st.integers(1, 3_000_000)),
    price_units=st.one_of(st.integers(1, 200_000).map(lambda k: k * 10), st.integers(1, 2_000_000)),
)
def test_client_rules_agree_with_the_exchange_filters(fake: FakeBinance, qty_units: int, price_units: int) -> None:
    """An intent the client lets through is accepted by the exchange's filters, and one it
    refuses would have been refused by them: the pre-check neither over- nor under-blocks."""
    qty, price = D(qty_units) / 1_000_000, D(price_units) / 1_000
    broker = new_broker(fake)
    try:
        broker.rules("BTC/USDT").validate(qty, price)
        ok = True
    except RuleViolation:
        ok = False
    ex = broker.exchange
    with fake.lock:
        fake.balances["USDT"] = [D("1E12"), D(0)]
    try:
        ex.privatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": str(qty), "price": str(price)})
        accepted = True
    except Exception as err:  # noqa: BLE001 - any refusal must be a filter failure
        assert "Filter failure" in str(err), err
        accepted = False
    event(f"accepted={accepted}")
    assert ok == accepted, (qty, price)


def test_a_coded_refusal_is_not_looked_up(fake: FakeBinance, broker: CcxtBroker) -> None:
    # -1131 is unknown to ccxt (a plain ExchangeError) but Binance's -11xx codes refuse the request
    fake.inject(kind="reject", method="POST", path="order", code=-1131, msg="recvWindow must be less than 60000")
    with pytest.raises(OrderRejected, match="-1131"):
        broker.submit(buy("rbt-coded"))
    assert fake.requests_for("GET", "order") == [] and fake.orders == []  # no lookup, no resend
    assert posts(fake) == ["rbt-coded"]


CHILD = """
import sys
sys.path[:0] = {paths!r}
from decimal import Decimal
from rustybt_api._live import connect, OrderIntent
b = connect("binance", api_key={key!r}, secret={secret!r}, urls={url!r}, timeout_ms=30000, rate_limit_ms=1)
print("sending", flush=True)
b.submit(OrderIntent("rbt-crash-1", "BTC/USDT", "buy", Decimal("0.1")))
print("acknowledged", flush=True)
"""


def test_kill_9_after_send_before_ack_then_resume(fake: FakeBinance) -> None:
    fake.inject(kind="delay", method="POST", path="order", delay_s=20)  # processed; the ack hangs
    code = CHILD.format(paths=[str(ROOT / "pylib")], key=fake.api_key, secret=fake.secret, url=fake.url)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while fake.order_by_client_id("rbt-crash-1") is None:
            assert time.monotonic() < deadline and child.poll() is None, "the child never sent"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)  # after send, before ack
        child.wait(timeout=10)
        assert child.stdout is not None and child.stdout.read() == "sending\n"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    # the restarted host: its journal says "sent, no ack"
    broker = new_broker(fake)
    intent = OrderIntent("rbt-crash-1", "BTC/USDT", "buy", D("0.1"))
    assert broker.fetch_order_by_client_id("rbt-crash-1", "BTC/USDT").status == "filled"
    state = broker.resume(intent, sent_at_ms=int(time.time() * 1000) - 10_000)
    assert (state.status, state.filled) == ("filled", D("0.1"))
    assert posts(fake) == ["rbt-crash-1"] and len(fake.orders) == 1
    # a journal entry whose send never reached the exchange is sent now, once
    lost = OrderIntent("rbt-crash-2", "BTC/USDT", "buy", D("0.1"))
    assert broker.resume(lost).status == "filled"
    assert posts(fake) == ["rbt-crash-1", "rbt-crash-2"] and len(fake.orders) == 2


def test_read_errors_are_typed(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.inject(kind="reject", method="GET", path="account", code=-1104, msg="Not all sent parameters were read.")
    with pytest.raises(ExchangeRefused, match="-1104") as err:
        broker.balances()
    assert not isinstance(err.value, OrderRejected)
    fake.inject(kind="status", method="GET", path="openOrders", status=503, times=10)
    with pytest.raises(ExchangeUnavailable, match="after 4 attempts"):
        broker.open_orders("BTC/USDT")
    assert len(fake.requests_for("GET", "openOrders")) == 4


def test_fills_page_and_match_the_orders(fake: FakeBinance, broker: CcxtBroker) -> None:
    fake.set_fill_plan("BTCUSDT", ["0.1", "0.05", "0.05"])
    market = broker.submit(buy("rbt-f1", "0.2"))
    broker.submit(buy("rbt-f2", "1", type="limit", limit_price=D("90")))
    fake.advance("BTCUSDT", "90", qty="0.3")
    fake.advance("BTCUSDT", "89", qty="0.2")
    cancelled = broker.cancel("rbt-f2")
    assert (cancelled.filled, cancelled.fees) == (D("0.5"), {"BTC": D("0.0005")})  # fees of a cancelled order
    fills = broker.fetch_fills("BTC/USDT", page_limit=2)  # 5 trades in 3 pages
    assert [f.trade_id for f in fills] == [1, 2, 3, 4, 5]
    assert len(fake.requests_for("GET", "myTrades")) >= 3
    by_order: dict[str, D] = {}
    for f in fills:
        by_order[f.exchange_order_id] = by_order.get(f.exchange_order_id, D(0)) + f.quantity
    assert by_order == {market.exchange_id: D("0.2"), cancelled.exchange_id: D("0.5")}
    assert [(f.price, f.is_maker, f.fee_asset) for f in fills[3:]] == [(D(90), True, "BTC")] * 2
    assert sum(f.fee for f in fills) == market.fees["BTC"] + cancelled.fees["BTC"]
    broker.submit(OrderIntent("rbt-f3", "BTC/USDT", "sell", D("0.1")))
    newer = broker.fetch_fills("BTC/USDT", from_trade_id=fills[-1].trade_id + 1)
    assert [(f.trade_id, f.side, f.price, f.fee_asset, f.fee) for f in newer] == [(6, "sell", D(89), "USDT", D("0.0089"))]
