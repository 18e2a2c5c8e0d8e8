"""The fake Binance spot API against the unmodified ccxt ``binance`` client (no internet)."""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal as D
from pathlib import Path
from typing import Iterator

import ccxt
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.fake_binance import INTERVALS_MS, FakeBinance, Market  # noqa: E402

MINUTE = 60_000
T0 = 1_700_000_000_000 // MINUTE * MINUTE  # a minute boundary


def make_client(fake: FakeBinance, *, secret: str | None = None, api_key: str | None = None, timeout_ms: int = 2000) -> ccxt.binance:
    ex = ccxt.binance(
        {
            "apiKey": fake.api_key if api_key is None else api_key,
            "secret": fake.secret if secret is None else secret,
            "timeout": timeout_ms,
            "rateLimit": 1,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
        }
    )
    for name in ex.urls["api"]:
        ex.urls["api"][name] = "http://127.0.0.1:9/unused"  # anything else fails loudly
    ex.urls["api"]["public"] = ex.urls["api"]["private"] = fake.url
    return ex


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    candles = [[T0 + i * MINUTE, "100", "101", "99", "100.5", "2"] for i in range(10)]
    with FakeBinance(
        [Market("BTCUSDT", "BTC", "USDT"), Market("ETHUSDT", "ETH", "USDT", tick_size="0.1", step_size="0.001", min_qty="0.001", notional_filter="MIN_NOTIONAL")],
        balances={"USDT": "10000", "BTC": "1"},
        prices={"BTCUSDT": "100", "ETHUSDT": "50"},
        candles={"BTCUSDT": {"1m": candles}},
        now_ms=T0 + 9 * MINUTE + 30_000,  # the 10th candle is forming
    ) as f:
        yield f


@pytest.fixture
def ex(fake: FakeBinance) -> ccxt.binance:
    client = make_client(fake)
    client.load_markets()
    return client


def test_ccxt_loads_markets_with_filters(ex: ccxt.binance, fake: FakeBinance) -> None:
    assert sorted(ex.symbols) == ["BTC/USDT", "ETH/USDT"]
    btc = ex.market("BTC/USDT")
    assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 0.00001)
    assert btc["limits"]["cost"]["min"] == 5.0  # from the NOTIONAL filter
    assert ex.market("ETH/USDT")["limits"]["cost"]["min"] == 5.0  # from the older MIN_NOTIONAL filter
    # load_markets stayed on spot: only exchangeInfo was requested
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "exchangeInfo")]


def test_klines_serve_the_forming_candle_like_binance(ex: ccxt.binance) -> None:
    rows = ex.fetch_ohlcv("BTC/USDT", "1m")
    assert len(rows) == 10  # 9 closed + the forming one: the client must drop it
    assert rows[-1][0] == T0 + 9 * MINUTE
    raw = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 3})
    assert [r[0] for r in raw] == [T0 + 7 * MINUTE, T0 + 8 * MINUTE, T0 + 9 * MINUTE]  # latest 3
    assert raw[0][1:6] == ["100.00000000", "101.00000000", "99.00000000", "100.50000000", "2.00000000"]
    assert raw[0][6] == T0 + 8 * MINUTE - 1  # Binance's close time: the last millisecond
    page = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "startTime": T0 + MINUTE, "endTime": T0 + 4 * MINUTE, "limit": 2})
    assert [r[0] for r in page] == [T0 + MINUTE, T0 + 2 * MINUTE]
    page = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "startTime": T0 + MINUTE, "endTime": T0 + 4 * MINUTE})
    assert [r[0] for r in page] == [T0 + i * MINUTE for i in range(1, 5)]


def test_klines_bad_interval_and_symbol(ex: ccxt.binance) -> None:
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "7m"})
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        ex.publicGetKlines({"symbol": "NOPE", "interval": "1m"})
    assert INTERVALS_MS["1h"] == 3_600_000


def test_market_order_fills_and_moves_balances_exactly(ex: ccxt.binance, fake: FakeBinance) -> None:
    order = ex.create_order("BTC/USDT", "market", "buy", "0.3", None, {"clientOrderId": "c1"})
    assert order["info"]["status"] == "FILLED" and order["clientOrderId"] == "c1"
    assert order["info"]["executedQty"] == "0.30000000"
    assert order["info"]["cummulativeQuoteQty"] == "30.00000000"
    assert order["info"]["fills"][0]["commission"] == "0.00030000"  # 0.1% taker fee, in BTC
    assert fake.balance("USDT") == (D("9970"), D(0))
    assert fake.balance("BTC") == (D("1.2997"), D(0))
    bal = ex.fetch_balance()
    assert bal["info"]["balances"][0] == {"asset": "BTC", "free": "1.29970000", "locked": "0.00000000"}


def test_limit_order_rests_locks_funds_fills_on_advance(ex: ccxt.binance, fake: FakeBinance) -> None:
    order = ex.create_order("BTC/USDT", "limit", "buy", "1", "90", {"clientOrderId": "lim1"})
    assert order["status"] == "open" and order["info"]["status"] == "NEW"
    assert fake.balance("USDT") == (D("9910"), D("90"))
    assert [o["clientOrderId"] for o in ex.fetch_open_orders("BTC/USDT")] == ["lim1"]
    fake.advance("BTCUSDT", "95")  # not crossed
    assert ex.fetch_order(order["id"], "BTC/USDT")["info"]["status"] == "NEW"
    fake.advance("BTCUSDT", "89.5", qty="0.4")  # crossed, partially
    got = ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "lim1"})
    assert got["info"]["status"] == "PARTIALLY_FILLED" and got["info"]["executedQty"] == "0.40000000"
    assert fake.balance("USDT") == (D("9910"), D("54"))
    fake.advance("BTCUSDT", "89")
    got = ex.fetch_order(order["id"], "BTC/USDT")
    assert got["info"]["status"] == "FILLED" and got["info"]["cummulativeQuoteQty"] == "90.00000000"
    assert fake.balance("USDT") == (D("9910"), D(0))
    assert fake.balance("BTC")[0] == D("1") + D("1") - D("0.001")
    trades = ex.fetch_my_trades("BTC/USDT")
    assert [t["info"]["qty"] for t in trades] == ["0.40000000", "0.60000000"]
    assert all(t["info"]["isMaker"] for t in trades)
    assert [o["info"]["status"] for o in ex.fetch_orders("BTC/USDT")] == ["FILLED"]  # allOrders


def test_ioc_and_fok_expire_like_binance(ex: ccxt.binance, fake: FakeBinance) -> None:
    fake.set_liquidity("BTCUSDT", "0.25")
    ioc = ex.create_order("BTC/USDT", "limit", "buy", "1", "101", {"timeInForce": "IOC"})
    assert (ioc["info"]["status"], ioc["info"]["executedQty"]) == ("EXPIRED", "0.25000000")
    fok = ex.create_order("BTC/USDT", "limit", "buy", "1", "101", {"timeInForce": "FOK"})
    assert (fok["info"]["status"], fok["info"]["executedQty"]) == ("EXPIRED", "0.00000000")
    assert fake.balance("USDT") == (D("10000") - D("25"), D(0))  # nothing stays locked


def test_market_order_fill_plan_gives_partial_fills(ex: ccxt.binance, fake: FakeBinance) -> None:
    fake.set_fill_plan("BTCUSDT", ["0.1", "0.2"])
    order = ex.create_order("BTC/USDT", "market", "sell", "0.5")
    assert [f["qty"] for f in order["info"]["fills"]] == ["0.10000000", "0.20000000"]
    assert (order["info"]["status"], order["info"]["executedQty"]) == ("EXPIRED", "0.30000000")
    assert fake.balance("BTC") == (D("0.7"), D(0))


def test_cancel_and_unknown_order(ex: ccxt.binance, fake: FakeBinance) -> None:
    order = ex.create_order("BTC/USDT", "limit", "sell", "0.5", "120")
    assert fake.balance("BTC") == (D("0.5"), D("0.5"))
    cancelled = ex.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["info"]["status"] == "CANCELED"
    assert fake.balance("BTC") == (D("1"), D(0))
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        ex.cancel_order(order["id"], "BTC/USDT")  # already cancelled: Binance says "Unknown order sent."
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        ex.cancel_order("999999", "BTC/USDT")
    assert fake.requests_for("DELETE", "order")[-1].status == 400
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        ex.fetch_order("999999", "BTC/USDT")


def test_duplicate_client_id_only_among_open_orders(ex: ccxt.binance, fake: FakeBinance) -> None:
    ex.create_order("BTC/USDT", "limit", "buy", "0.1", "90", {"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        ex.create_order("BTC/USDT", "limit", "buy", "0.1", "90", {"clientOrderId": "dup"})
    assert len(fake.orders) == 1
    ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "done"})
    ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "done"})  # Binance allows it
    assert len(fake.orders) == 3


def test_filters_and_funds_are_enforced(ex: ccxt.binance, fake: FakeBinance) -> None:
    req = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        ex.privatePostOrder({**req, "quantity": "0.000011", "price": "90"})
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        ex.privatePostOrder({**req, "quantity": "0.1", "price": "90.001"})
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):  # -1013 (ccxt: BadRequest off binance.com)
        ex.privatePostOrder({**req, "quantity": "0.01", "price": "90"})
    with pytest.raises(ccxt.InsufficientFunds):
        ex.privatePostOrder({**req, "quantity": "200", "price": "90"})
    assert fake.orders == []


def test_signature_key_and_timestamp_are_checked(fake: FakeBinance) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        make_client(fake, secret="wrong-secret").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        make_client(fake, api_key="wrong-key").fetch_balance()
    # a correctly signed request that is too old
    query = f"timestamp={int(time.time() * 1000) - 10_000}&recvWindow=5000"
    sig = hmac.new(fake.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    reply = requests.get(f"{fake.url}/account?{query}&signature={sig}", headers={"X-MBX-APIKEY": fake.api_key}, timeout=5)
    assert reply.status_code == 400 and reply.json()["code"] == -1021
    query = f"timestamp={int(time.time() * 1000)}"
    sig = hmac.new(fake.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    reply = requests.get(f"{fake.url}/account?{query}&signature={sig}", headers={"X-MBX-APIKEY": fake.api_key}, timeout=5)
    assert reply.status_code == 200 and reply.json()["accountType"] == "SPOT"


def test_fault_injection_as_ccxt_sees_it(ex: ccxt.binance, fake: FakeBinance) -> None:
    fake.inject(kind="status", method="GET", path="account", status=429, retry_after=3)
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_balance()
    assert ex.last_response_headers["Retry-After"] == "3"
    fake.inject(kind="status", method="GET", path="account", status=418, retry_after=120)
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_balance()
    fake.inject(kind="status", method="GET", path="account", status=503)
    with pytest.raises(ccxt.OperationFailed):  # -1001 internal error
        ex.fetch_balance()
    fake.inject(kind="status", method="GET", path="account", status=502, body={})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_balance()
    fake.inject(kind="reject", method="POST", path="order")
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("BTC/USDT", "market", "buy", "0.1")
    assert fake.orders == []
    ex.fetch_balance()  # the faults are used up
    assert [r.fault for r in fake.requests_for("GET", "account")] == ["status"] * 4 + [None]


def test_drop_and_delay_leave_the_order_placed(fake: FakeBinance) -> None:
    ex = make_client(fake, timeout_ms=300)
    ex.load_markets()
    fake.inject(kind="drop", method="POST", path="order")
    with pytest.raises(ccxt.NetworkError):
        ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "lost-ack"})
    assert fake.order_by_client_id("lost-ack").status == "FILLED"
    fake.inject(kind="delay", method="POST", path="order", delay_s=1.0)
    started = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "slow"})
    assert time.monotonic() - started < 0.9
    assert fake.order_by_client_id("slow").status == "FILLED"
    fake.inject(kind="drop", method="POST", path="order", process=False)
    with pytest.raises(ccxt.NetworkError):
        ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "never"})
    assert fake.order_by_client_id("never") is None


def test_fault_matching_by_params(ex: ccxt.binance, fake: FakeBinance) -> None:
    fake.inject(kind="reject", method="POST", path="order", when={"newClientOrderId": "b"}, code=-2010, msg="Order would immediately match and take.")
    ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "a"})
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        ex.create_order("BTC/USDT", "market", "buy", "0.1", None, {"clientOrderId": "b"})
    assert [o.client_order_id for o in fake.orders] == ["a"]


def test_script_mode_runs_as_a_process(tmp_path: Path) -> None:
    script = {
        "api_key": "k1",
        "secret": "s1",
        "now_ms": T0 + 2 * MINUTE + 1,
        "markets": [{"symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": "0.01"}],
        "balances": {"USDT": "1000"},
        "prices": {"BTCUSDT": "100"},
        "candles": {"BTCUSDT": {"1m": [[T0, "1", "2", "0.5", "1.5", "10"], [T0 + MINUTE, "1.5", "2", "1", "1.25", "5"], [T0 + 2 * MINUTE, "1", "1", "1", "1", "1"]]}},
        "faults": [{"kind": "status", "method": "GET", "path": "account", "status": 503}],
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(script))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_binance", "--port", "0", "--script", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)  # never hang on a broken start
        assert ready, "the fake did not start"
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("LISTENING http://127.0.0.1:")
        url = line.split()[1]
        ex = ccxt.binance({"apiKey": "k1", "secret": "s1", "timeout": 3000, "rateLimit": 1,
                           "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}})
        for name in ex.urls["api"]:
            ex.urls["api"][name] = "http://127.0.0.1:9/unused"
        ex.urls["api"]["public"] = ex.urls["api"]["private"] = url
        assert ex.load_markets()["BTC/USDT"]["precision"]["price"] == 0.01
        assert len(ex.fetch_ohlcv("BTC/USDT", "1m")) == 3
        with pytest.raises(ccxt.OperationFailed):
            ex.fetch_balance()  # the scripted fault
        assert ex.fetch_balance()["info"]["balances"] == [{"asset": "USDT", "free": "1000.00000000", "locked": "0.00000000"}]
        ex.create_order("BTC/USDT", "limit", "buy", "1", "99")
        control = url.replace("/api/v3", "/_fake")
        body = json.dumps({"symbol": "BTCUSDT", "price": "98"}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{control}/advance", body, method="POST"), timeout=5) as r:
            assert len(json.load(r)) == 1
        with urllib.request.urlopen(f"{control}/orders", timeout=5) as r:
            assert [o["status"] for o in json.load(r)] == ["FILLED"]
        with urllib.request.urlopen(f"{control}/requests", timeout=5) as r:
            assert [q["path"] for q in json.load(r)][:2] == ["exchangeInfo", "klines"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]


def test_appending_a_candle_matches_resting_orders(ex: ccxt.binance, fake: FakeBinance) -> None:
    low_buy = ex.create_order("BTC/USDT", "limit", "buy", "0.1", "95")
    high_sell = ex.create_order("BTC/USDT", "limit", "sell", "0.1", "104")
    out_of_reach = ex.create_order("BTC/USDT", "limit", "sell", "0.1", "110")
    trades = fake.append_candle("BTCUSDT", "1m", [T0 + 10 * MINUTE, "100", "105", "94", "101", "7"])
    assert sorted((t.side, t.price) for t in trades) == [("BUY", D("95")), ("SELL", D("104"))]
    status = {o["id"]: o["info"]["status"] for o in ex.fetch_orders("BTC/USDT")}
    assert [status[o["id"]] for o in (low_buy, high_sell, out_of_reach)] == ["FILLED", "FILLED", "NEW"]
    assert fake.prices["BTCUSDT"] == D("101")
    fake.set_time(T0 + 11 * MINUTE)
    assert ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "limit": 1})[0][0] == T0 + 10 * MINUTE


def test_ping_time_and_recv_window_limit(ex: ccxt.binance, fake: FakeBinance) -> None:
    assert ex.publicGetPing() == {}
    assert abs(ex.fetch_time() - time.time() * 1000) < 5_000
    with pytest.raises(ccxt.ExchangeError, match="-1131"):
        ex.fetch_balance({"recvWindow": 70_000})


def test_toml_script(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(
        'api_key = "k"\nsecret = "s"\n'
        '[[markets]]\nsymbol = "ETHUSDT"\nbase = "ETH"\nquote = "USDT"\ntick_size = "0.1"\nmin_price = "0.1"\n'
        '[balances]\nUSDT = "500"\n[prices]\nETHUSDT = "20"\n'
        '[[faults]]\nkind = "reject"\nmethod = "POST"\npath = "order"\n'
    )
    with FakeBinance.from_script(path) as fake:
        client = make_client(fake)
        assert client.load_markets()["ETH/USDT"]["precision"]["price"] == 0.1
        with pytest.raises(ccxt.InsufficientFunds):
            client.create_order("ETH/USDT", "market", "buy", "1")
        assert client.create_order("ETH/USDT", "market", "buy", "1")["info"]["status"] == "FILLED"
        assert fake.balance("USDT") == (D("480"), D(0))


# ------------------------------------------------------------------------------ script clock


def clock_fake(**clock: object) -> FakeBinance:
    from tests.support.fake_binance import Clock

    spec = {"start_ms": T0, "interval": "1m", "wall_ms_per_bar": 60_000, "path": {"BTCUSDT": ["100", "98.5", "103", "101"]}, **clock}
    return FakeBinance([Market("BTCUSDT", "BTC", "USDT")], balances={"USDT": "10000"}, prices={"BTCUSDT": "100"}, clock=Clock.from_dict(spec))


def test_clock_ticks_derive_candles_from_the_path_and_match_orders() -> None:
    with clock_fake(paused=True) as fake:  # paused: only explicit ticks
        ex = make_client(fake)
        assert fake.now_ms() == T0 and ex.fetch_ohlcv("BTC/USDT", "1m") == []
        buy = ex.create_order("BTC/USDT", "limit", "buy", "0.1", "99")
        assert fake.tick() == []  # bar 0: 100 -> 100
        trades = fake.tick()  # bar 1: 100 -> 98.5 crosses the 99 buy
        assert [(t.side, t.price) for t in trades] == [("BUY", D("99"))]
        assert ex.fetch_order(buy["id"], "BTC/USDT")["info"]["status"] == "FILLED"
        fake.tick(), fake.tick()
        assert fake.tick() == [] and fake.clock.exhausted  # type: ignore[union-attr]
        assert fake.now_ms() == T0 + 4 * MINUTE and fake.prices["BTCUSDT"] == D("101")
        rows = ex.publicGetKlines({"symbol": "BTCUSDT", "interval": "1m", "startTime": T0})
        assert [[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows] == [
            [T0 + 0 * MINUTE, "100.00000000", "100.00000000", "100.00000000", "100.00000000", "10.00000000"],
            [T0 + 1 * MINUTE, "100.00000000", "100.00000000", "98.50000000", "98.50000000", "10.00000000"],
            [T0 + 2 * MINUTE, "98.50000000", "103.00000000", "98.50000000", "103.00000000", "10.00000000"],
            [T0 + 3 * MINUTE, "103.00000000", "103.00000000", "101.00000000", "101.00000000", "10.00000000"],
        ]


def test_clock_runs_on_wall_time_pauses_and_stops() -> None:
    with clock_fake(wall_ms_per_bar=40) as fake:
        deadline = time.monotonic() + 5
        while not fake.clock.exhausted and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        assert fake.clock.bars == 4 and fake.now_ms() == T0 + 4 * MINUTE  # type: ignore[union-attr]
        time.sleep(0.1)
        assert fake.clock.bars == 4  # stopped at the end of the path  # type: ignore[union-attr]
    with clock_fake(wall_ms_per_bar=40) as fake:
        fake.set_paused(True)
        held = fake.clock.bars  # type: ignore[union-attr]
        time.sleep(0.2)
        assert fake.clock.bars == held and held < 4  # type: ignore[union-attr]
        fake.set_paused(False)
        deadline = time.monotonic() + 5
        while not fake.clock.exhausted and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        assert fake.clock.bars == 4  # type: ignore[union-attr]


def test_clock_section_is_checked() -> None:
    from tests.support.fake_binance import Clock

    with pytest.raises(ValueError, match="interval"):
        Clock.from_dict({"start_ms": T0, "interval": "7m", "wall_ms_per_bar": 10, "path": {}})
    with pytest.raises(ValueError, match="multiple"):
        Clock.from_dict({"start_ms": T0 + 1, "interval": "1m", "wall_ms_per_bar": 10, "path": {}})
    with FakeBinance([Market("BTCUSDT", "BTC", "USDT")]) as fake:
        req = urllib.request.Request(fake.url.replace("/api/v3", "/_fake/clock"), json.dumps({"paused": True}).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert "no clock" in info.value.read().decode()


def test_script_clock_with_pause_endpoint(tmp_path: Path) -> None:
    script = {
        "api_key": "k1",
        "secret": "s1",
        "markets": [{"symbol": "BTCUSDT", "base": "BTC", "quote": "USDT"}],
        "balances": {"USDT": "1000"},
        "prices": {"BTCUSDT": "100"},
        "clock": {"start_ms": T0, "interval": "1m", "wall_ms_per_bar": 100, "paused": True, "path": {"BTCUSDT": ["100", "101", "102"]}},
    }
    path = tmp_path / "clock.json"
    path.write_text(json.dumps(script))
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_binance", "--port", "0", "--script", str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the fake did not start"
        url = proc.stdout.readline().split()[1]  # type: ignore[union-attr]
        control = url.replace("/api/v3", "/_fake")

        def klines() -> list[list[object]]:
            with urllib.request.urlopen(f"{url}/klines?symbol=BTCUSDT&interval=1m&startTime={T0}", timeout=5) as r:
                return json.load(r)

        def clock(paused: bool) -> dict[str, object]:
            req = urllib.request.Request(f"{control}/clock", json.dumps({"paused": paused}).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r)

        time.sleep(0.3)
        assert klines() == []  # paused from the start
        assert clock(False)["paused"] is False
        deadline = time.monotonic() + 10
        while len(klines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = klines()
        assert [r[4] for r in rows] == ["100.00000000", "101.00000000", "102.00000000"]
        with urllib.request.urlopen(f"{url}/ticker/price?symbol=BTCUSDT", timeout=5) as r:
            assert json.load(r)["price"] == "102.00000000"
        assert clock(True) == {"paused": True, "bars": 3, "now_ms": T0 + 3 * MINUTE}
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stdout.close()  # type: ignore[union-attr]


def test_control_endpoints_for_trades_and_balances(ex: ccxt.binance, fake: FakeBinance) -> None:
    control = fake.url.replace("/api/v3", "/_fake")

    def call(method: str, name: str, body: dict[str, object] | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{control}/{name}", data, method=method), timeout=5) as r:
            return json.load(r)

    ex.create_order("BTC/USDT", "market", "buy", "0.5", params={"newClientOrderId": "c-1"})
    trades = call("GET", "trades")
    assert [(t["orderId"], t["price"], t["qty"], t["commission"], t["commissionAsset"], t["isBuyer"]) for t in trades] == [
        (fake.orders[0].order_id, "100.00000000", "0.50000000", "0.00050000", "BTC", True)
    ]
    # a deposit and a withdrawal behind the client's back; locked amounts stay
    reply = call("POST", "balances", {"asset": "USDT", "delta": "0.005"})
    assert (reply["asset"], D(reply["free"]), D(reply["locked"])) == ("USDT", D("9950.005"), 0)  # type: ignore[index]
    assert fake.balance("USDT") == (D("9950.005"), D(0))
    assert call("POST", "balances", {"asset": "ETH", "free": "2.5"})["free"] == "2.5"  # type: ignore[index]
    fake.set_balance("BTC", delta="-0.25")
    assert fake.balance("BTC") == (D("1.2495"), D(0))
    assert {b["asset"]: b["free"] for b in ex.fetch_balance()["info"]["balances"]}["ETH"] == "2.50000000"
    for bad in ({"asset": "USDT"}, {"asset": "USDT", "free": "1", "delta": "1"}, {"free": "1"}, {"asset": "USDT", "delta": "-1000000"}):
        with pytest.raises(urllib.error.HTTPError) as info:
            call("POST", "balances", bad)
        assert info.value.code == 400
    assert fake.balance("USDT") == (D("9950.005"), D(0))
    with pytest.raises(ValueError, match="exactly one"):
        fake.set_balance("USDT")
