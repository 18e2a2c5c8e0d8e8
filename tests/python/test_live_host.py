"""The venue facade the Rust host calls (``rustybt_api._live.host``), with the real ccxt client
against the fake Binance: every method, every error kind the fake can produce, exact decimal
strings, no credentials in any output, and the JSON shape the Rust side parses."""

from __future__ import annotations

import json
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api._live.host import KINDS, HostVenue, VenueError, open_venue  # noqa: E402
from tests.support import venue_fixtures as fx  # noqa: E402
from tests.support.fake_binance import FakeBinance  # noqa: E402

MINUTE = fx.MINUTE
T0 = fx.T0


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with fx.new_fake() as f:
        yield f


@pytest.fixture
def venue(fake: FakeBinance) -> Iterator[HostVenue]:
    v = open_venue("binance", fx.config(fake))
    v.markets(json.dumps(["BTC/USDT", "ETH/USDT"]))
    yield v
    v.close()


def error_of(call: Any, *args: Any) -> VenueError:
    with pytest.raises(VenueError) as info:
        call(*args)
    assert info.value.kind in KINDS
    return info.value


def posts(fake: FakeBinance) -> list[str]:
    return [r.params.get("newClientOrderId", "") for r in fake.requests_for("POST", "order")]


# ----------------------------------------------------------------------- the Rust contract


def shape(value: Any) -> Any:
    """The JSON's structure: keys and value types, list lengths (values such as times vary)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, str) and value.startswith("{"):
        return shape(json.loads(value))  # state_json of an error
    return type(value).__name__


def test_output_has_the_shape_of_the_saved_fixtures_the_rust_side_parses() -> None:
    produced = fx.generate()
    saved = {p.stem: json.loads(p.read_text()) for p in sorted(fx.OUT.glob("*.json"))}
    assert sorted(saved) == sorted(produced), "regenerate: python -m tests.support.venue_fixtures"
    for name in produced:
        assert shape(produced[name]) == shape(saved[name]), f"{name}.json: the facade's output changed shape; regenerate the fixtures and update src/live/venue.rs"
    assert saved["kinds"] == list(KINDS)  # src/live/venue.rs checks its VenueErrorKind against this
    assert [e["kind"] for e in produced["errors"]] == ["not_cancellable", "rate_limited", "rejected", "unknown_order", "unknown_symbol", "rule_violation"]


# ------------------------------------------------------------------------ markets, candles


def test_markets_are_exact_decimal_strings(venue: HostVenue) -> None:
    m = json.loads(venue.markets(json.dumps(["BTC/USDT"])))
    assert list(m) == ["BTC/USDT"]
    btc = m["BTC/USDT"]
    assert (btc["lot_step"], btc["min_qty"], btc["tick_size"], btc["min_notional"]) == ("0.00001", "0.00001", "0.01", "5")
    assert (btc["base"], btc["quote"], btc["exchange_symbol"]) == ("BTC", "USDT", "BTCUSDT")
    assert sorted(json.loads(venue.markets("[]"))) == ["BTC/USDT", "ETH/USDT"]  # empty = every market


def test_unknown_symbol_names_close_matches(venue: HostVenue) -> None:
    err = error_of(venue.markets, json.dumps(["BTC/USDT", "BTC/USTD"]))
    assert err.kind == "unknown_symbol" and "'BTC/USTD'" in err.message and "did you mean BTC/USDT" in err.message
    err = error_of(venue.closed_candles, "ETHUSDT", "1m", T0, T0 + MINUTE)
    assert err.kind == "unknown_symbol" and "did you mean ETH/USDT" in err.message  # the exchange's id


def test_closed_candles_exact_and_forming_dropped(venue: HostVenue, fake: FakeBinance) -> None:
    rows = json.loads(venue.closed_candles("BTC/USDT", "1m", T0, T0 + 2 * MINUTE + 1))
    assert [r[0] for r in rows] == [T0, T0 + MINUTE]  # candle 2 is still forming
    assert rows[0][1:] == ["64000.1", "64010", "63990.5", "64000.11", "0.00001"]
    assert D(rows[0][1]) == D("64000.10") and all(isinstance(v, str) for v in rows[0][1:])
    assert json.loads(venue.closed_candles("BTC/USDT", "1m", T0 + 2 * MINUTE, T0 + 2 * MINUTE + 1)) == []
    err = error_of(venue.closed_candles, "BTC/USDT", "7m", T0, T0 + MINUTE)
    assert err.kind == "rule_violation" and "'7m'" in err.message and "1m" in err.message


# ------------------------------------------------------------------------------- orders


def test_submit_market_order_state(venue: HostVenue, fake: FakeBinance) -> None:
    s = json.loads(venue.submit(fx.intent("rbt-h-1", qty="0.0001", reference_price="64000.10")))
    assert (s["client_order_id"], s["status"], s["symbol"], s["side"]) == ("rbt-h-1", "filled", "BTC/USDT", "buy")
    assert (s["quantity"], s["filled"], s["average_price"]) == ("0.0001", "0.0001", "64000.1")
    assert s["fees"] == [{"asset": "BTC", "amount": "0.0000001"}]  # 0.1% of 0.0001: never "1E-7"
    assert s["exchange_order_id"] == str(fake.order_by_client_id("rbt-h-1").order_id)  # type: ignore[union-attr]
    assert isinstance(s["time_ms"], int) and s["reason"] is None


def test_limit_price_reaches_the_exchange_exactly(venue: HostVenue, fake: FakeBinance) -> None:
    fake.advance("BTCUSDT", "65000")  # so that the buy rests
    s = json.loads(venue.submit(fx.intent("rbt-h-2", order_type="limit", limit_price="64000.10", time_in_force="gtc")))
    assert s["status"] == "accepted" and D(s["limit_price"]) == D("64000.10")
    sent = fake.requests_for("POST", "order")[0].params
    assert (D(sent["price"]), sent["quantity"]) == (D("64000.10"), "0.001")  # ccxt writes "64000.1"


def test_ioc_leftover_expires_with_a_reason(venue: HostVenue, fake: FakeBinance) -> None:
    fake.set_liquidity("BTCUSDT", "0.0004")
    s = json.loads(venue.submit(fx.intent("rbt-h-3", order_type="limit", limit_price="64000.10", time_in_force="ioc")))
    assert (s["status"], s["filled"]) == ("expired", "0.0004")
    assert s["reason"] == "the exchange reports EXPIRED"


def test_a_number_instead_of_a_decimal_string_is_a_programming_error(venue: HostVenue, fake: FakeBinance) -> None:
    intent = json.loads(fx.intent("rbt-h-4"))
    intent["quantity"] = 0.001
    with pytest.raises(TypeError, match="decimal string"):
        venue.submit(json.dumps(intent))  # not a VenueError: the host has a bug
    with pytest.raises(json.JSONDecodeError):
        venue.markets("BTC/USDT")
    assert posts(fake) == []


def test_rule_violations_are_refused_before_sending(venue: HostVenue, fake: FakeBinance) -> None:
    assert error_of(venue.submit, fx.intent("rbt-h-5", qty="0.000015")).kind == "rule_violation"
    err = error_of(venue.submit, fx.intent("rbt-h-6", order_type="limit", limit_price="64000.105"))
    assert err.kind == "rule_violation" and "tick size" in err.message
    err = error_of(venue.submit, fx.intent("rbt-h-7", order_type="stop"))
    assert err.kind == "rule_violation" and "type must be" in err.message
    assert error_of(venue.submit, fx.intent("bad id!")).kind == "rule_violation"
    assert posts(fake) == []


def test_resume_returns_the_existing_order_without_resending(venue: HostVenue, fake: FakeBinance) -> None:
    first = json.loads(venue.submit(fx.intent("rbt-h-8")))
    again = json.loads(venue.resume(fx.intent("rbt-h-8"), 0))
    assert again["exchange_order_id"] == first["exchange_order_id"] and again["status"] == "filled"
    assert posts(fake) == ["rbt-h-8"]
    placed = json.loads(venue.resume(fx.intent("rbt-h-9"), 0))  # the exchange never got it
    assert placed["status"] == "filled" and posts(fake) == ["rbt-h-8", "rbt-h-9"]


def test_resume_with_another_intent_under_the_id_is_a_conflict(venue: HostVenue) -> None:
    venue.submit(fx.intent("rbt-h-10"))
    err = error_of(venue.resume, fx.intent("rbt-h-10", qty="0.002"), 0)
    assert err.kind == "client_id_conflict" and "quantity 0.001" in err.message


def test_lookup_found_and_not_found(venue: HostVenue) -> None:
    assert venue.lookup("rbt-h-11", "BTC/USDT") == "null"
    venue.submit(fx.intent("rbt-h-11"))
    s = json.loads(venue.lookup("rbt-h-11", "BTC/USDT"))
    assert s["status"] == "filled" and s["fees"] == [{"asset": "BTC", "amount": "0.000001"}]


def test_cancel_open_cancelled_filled_unknown(venue: HostVenue, fake: FakeBinance) -> None:
    venue.submit(fx.intent("rbt-h-12", order_type="limit", limit_price="60000"))
    assert [o["client_order_id"] for o in json.loads(venue.open_orders())] == ["rbt-h-12"]
    s = json.loads(venue.cancel("rbt-h-12", "BTC/USDT"))
    assert (s["client_order_id"], s["status"], s["raw_status"]) == ("rbt-h-12", "cancelled", "CANCELED")
    assert json.loads(venue.cancel("rbt-h-12", "BTC/USDT"))["status"] == "cancelled"  # idempotent
    assert json.loads(venue.open_orders()) == []
    venue.submit(fx.intent("rbt-h-13"))
    err = error_of(venue.cancel, "rbt-h-13", "BTC/USDT")
    assert err.kind == "not_cancellable" and err.state_json is not None
    state = json.loads(err.state_json)
    assert (state["client_order_id"], state["status"], state["filled"]) == ("rbt-h-13", "filled", "0.001")
    assert error_of(venue.cancel, "rbt-h-404", "BTC/USDT").kind == "unknown_order"


# -------------------------------------------------------------------------------- fills


def test_fills_carry_client_ids_and_continue_from_a_trade_id(venue: HostVenue, fake: FakeBinance) -> None:
    venue.submit(fx.intent("rbt-h-14"))
    venue.submit(fx.intent("rbt-h-15", order_type="limit", limit_price="63000.10"))
    fake.advance("BTCUSDT", "63000")
    fills = json.loads(venue.fills("BTC/USDT", None, None))
    assert [(f["client_order_id"], f["is_maker"], f["price"]) for f in fills] == [("rbt-h-14", False, "64000.1"), ("rbt-h-15", True, "63000.1")]
    assert all(isinstance(f["trade_id"], str) for f in fills)
    assert fake.requests_for("GET", "allOrders") == []  # both orders were seen in this process
    later = json.loads(venue.fills("BTC/USDT", fills[1]["trade_id"], None))  # inclusive
    assert [f["trade_id"] for f in later] == [fills[1]["trade_id"]]
    assert json.loads(venue.fills("ETH/USDT", None, None)) == []
    assert error_of(venue.fills, "BTC/USDT", "abc", None).kind == "rule_violation"


def test_fills_after_a_restart_find_client_ids_with_all_orders(venue: HostVenue, fake: FakeBinance) -> None:
    venue.submit(fx.intent("rbt-h-16"))
    venue.submit(fx.intent("rbt-h-17"))
    fresh = open_venue("binance", fx.config(fake))  # a new process: no order seen yet
    fills = json.loads(fresh.fills("BTC/USDT", None, None))
    assert [f["client_order_id"] for f in fills] == ["rbt-h-16", "rbt-h-17"]
    assert len(fake.requests_for("GET", "allOrders")) == 1  # one page for both
    fresh.close()


# -------------------------------------------------------------------- balances, account


def test_balances_and_account_view(venue: HostVenue, fake: FakeBinance) -> None:
    venue.submit(fx.intent("rbt-h-18", qty="0.0001"))
    venue.submit(fx.intent("rbt-h-19", order_type="limit", limit_price="60000"))
    bal = json.loads(venue.balances())
    assert bal == {"BTC": "1.0000999", "USDT": "99993.59999"}  # 1 + 0.0001 - fee 0.0000001; 100000 - 6.40001
    view = json.loads(venue.account_view("USDT"))
    assert view["positions"] == {"BTC/USDT": "1.0000999"}  # ETH/USDT: zero, left out
    assert view["balances"] == {"USDT": bal["USDT"]}  # total = free + locked
    assert view["open_orders"] == {"rbt-h-19": {"symbol": "BTC/USDT", "side": "buy", "remaining": "0.001", "filled": "0"}}


def test_account_view_before_markets_uses_markets_quoted_in_cash(fake: FakeBinance) -> None:
    v = open_venue("binance", fx.config(fake))
    assert json.loads(v.account_view("USDT"))["positions"] == {"BTC/USDT": "1"}
    assert json.loads(v.account_view("EUR")) == {"positions": {}, "balances": {"EUR": "0"}, "open_orders": {}}


# ------------------------------------------------------------------------------ failures


def test_rejection(venue: HostVenue, fake: FakeBinance) -> None:
    fake.inject(kind="reject", method="POST", path="order", code=-2010, msg="Account has insufficient balance for requested action.")
    err = error_of(venue.submit, fx.intent("rbt-h-20"))
    assert err.kind == "rejected" and "insufficient balance" in err.message and err.retry_after_s is None


def test_429_with_retry_after_is_waited_out_and_reported(venue: HostVenue, fake: FakeBinance) -> None:
    venue.take_events()
    fake.inject(kind="status", method="GET", path="account", status=429, retry_after=0.05)
    assert "USDT" in json.loads(venue.balances())
    events = json.loads(venue.take_events())
    assert [(e["type"], e.get("outcome")) for e in events] == [("request", "failed"), ("backoff", None), ("request", "ok")]
    backoff = events[1]
    assert backoff["retry_after_s"] == 0.05 and backoff["wait_s"] >= 0.05 and backoff["reason"] == "DDoSProtection" and backoff["attempt"] == 1
    assert json.loads(venue.take_events()) == []  # taken


def test_long_retry_after_is_rate_limited(venue: HostVenue, fake: FakeBinance) -> None:
    fake.inject(kind="status", method="GET", path="openOrders", status=418, retry_after=300)
    err = error_of(venue.open_orders)
    assert err.kind == "rate_limited" and err.retry_after_s == 300.0


def test_persistent_5xx_is_unavailable(venue: HostVenue, fake: FakeBinance) -> None:
    fake.inject(kind="status", method="GET", path="klines", status=502, body={}, times=10)
    err = error_of(venue.closed_candles, "BTC/USDT", "1m", T0, T0 + 2 * MINUTE)
    assert err.kind == "unavailable" and "3 attempts" in err.message
    events = json.loads(venue.take_events())
    requests = [e for e in events if e["type"] == "request" and e["endpoint"] == "/api/v3/klines"]
    assert [e["outcome"] for e in requests] == ["failed"] * 3


def test_dropped_ack_is_found_by_lookup_and_not_resent(venue: HostVenue, fake: FakeBinance) -> None:
    fake.inject(kind="drop", method="POST", path="order")
    s = json.loads(venue.submit(fx.intent("rbt-h-21")))
    assert s["status"] == "filled" and posts(fake) == ["rbt-h-21"]


def test_dropped_reads_become_unavailable(venue: HostVenue, fake: FakeBinance) -> None:
    fake.inject(kind="drop", method="GET", path="account", times=10)
    assert error_of(venue.balances).kind == "unavailable"


def test_outcome_unknown_when_even_the_lookup_fails(venue: HostVenue, fake: FakeBinance) -> None:
    fake.inject(kind="drop", method="POST", path="order", times=10)
    fake.inject(kind="status", method="GET", path="order", status=503, times=20)
    err = error_of(venue.submit, fx.intent("rbt-h-22"))
    assert err.kind == "outcome_unknown" and "rbt-h-22" in err.message


def test_bad_credentials(fake: FakeBinance) -> None:
    v = open_venue("binance", fx.config(fake, api_key="k-WRONG-KEY-0000000000", secret="s-WRONG-SECRET-000000"))
    err = error_of(v.balances)
    assert err.kind == "authentication"
    assert "k-WRONG-KEY" not in str(err) and "s-WRONG-SECRET" not in str(err)
    events = json.loads(v.take_events())
    assert [(e["endpoint"], e["outcome"]) for e in events] == [("/api/v3/exchangeInfo", "ok"), ("/api/v3/account", "failed")]  # counted by the error breaker


def test_open_venue_refuses_bad_config(fake: FakeBinance) -> None:
    with pytest.raises(ValueError, match="unknown config keys \\['recvwindow'\\]"):
        open_venue("binance", json.dumps({**json.loads(fx.config(fake)), "recvwindow": 5}))
    err = error_of(open_venue, "no-such-exchange", fx.config(fake))
    assert err.kind == "internal" and "no-such-exchange" in err.message


def test_venue_error_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        VenueError("oops", "x")


# ---------------------------------------------------------------------------- credentials


def test_secrets_never_appear_in_any_output(fake: FakeBinance) -> None:
    v = open_venue("binance", fx.config(fake))
    texts = [repr(v), v.markets("[]"), v.balances(), v.account_view("USDT"), v.submit(fx.intent("rbt-h-23")), v.open_orders(), v.fills("BTC/USDT", None, None)]
    fake.inject(kind="status", method="GET", path="account", status=429, retry_after=0.01)
    texts.append(v.balances())
    fake.inject(kind="reject", method="POST", path="order", msg=f"echo {fake.api_key} {fake.secret}")
    fake.inject(kind="status", method="GET", path="account", status=503, times=10, body={"code": -1001, "msg": f"key {fake.api_key}"})
    for call, args in ((v.submit, (fx.intent("rbt-h-24"),)), (v.balances, ()), (v.cancel, ("rbt-h-23", "BTC/USDT"))):
        err = error_of(call, *args)
        texts += [str(err), err.message, err.state_json or ""]
    texts.append(v.take_events())
    bad = open_venue("binance", fx.config(fake, secret="s-OTHER-SECRET-99999999"))
    texts.append(str(error_of(bad.balances)))
    blob = "\n".join(texts)
    for secret in (fake.api_key, fake.secret, "s-OTHER-SECRET-99999999"):
        assert secret not in blob
    assert "signature=" not in blob or "signature=***" in blob
