"""The websocket candle stream (``rustybt_api._live.ws_feed.CandleStream``) with the real ccxt.pro
client against the fake Binance's kline streams on 127.0.0.1 (in process): only closed candles,
exactly the REST candles' texts, Binance's raw path and the generic "superseded" path, and what a
dropped socket loses (the Rust feed fills it through REST, see test_live_ws.py)."""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api._live import connect  # noqa: E402
from rustybt_api._live.host import HostVenue, VenueError, open_venue  # noqa: E402
from rustybt_api._live.ws_feed import CandleStream, offers_candles  # noqa: E402
from tests.support.fake_binance import Clock, FakeBinance, Market, WsScript  # noqa: E402

FORMING = "11111.11"
PRICES = [f"{100 + i}.{i:02d}" for i in range(14)]  # 14 half-second bars
BAR_MS = 500


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    # cut at the half of bar 4, refused for one bar: bar 4's final never reaches the client
    start = int(time.time() * 1000) // 1000 * 1000 + 1000
    clock = Clock(start, "1s", BAR_MS, {"BTCUSDT": PRICES})
    with FakeBinance(markets=[Market("BTCUSDT", "BTC", "USDT")], balances={"USDT": "1000"}, prices={"BTCUSDT": PRICES[0]},
                     clock=clock, websocket=WsScript(drops=[4], down_bars=1.0, forming_close=FORMING)) as f:
        yield f


def collect(stream: CandleStream, fake: FakeBinance) -> tuple[list[list[Any]], list[str]]:
    candles: list[list[Any]] = []
    events: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        update = json.loads(stream.take())
        candles += update["candles"]
        events += [e["type"] for e in update["events"]]
        assert fake.clock is not None
        if fake.clock.exhausted and (candles and candles[-1][1] >= fake.clock.start_ms + 12_000):
            break
        time.sleep(0.05)
    stream.close()
    return candles, events


@pytest.mark.parametrize("raw", [True, False], ids=["binance-raw-klines", "generic-superseded"])
def test_streamed_candles_are_the_closed_rest_candles_and_a_drop_loses_some(fake: FakeBinance, raw: bool) -> None:
    broker = connect("binance", api_key="k", secret="s", urls=fake.url)
    broker.load_markets()
    assert fake.ws is not None
    stream = CandleStream(broker, ["BTC/USDT"], "1s", fake.ws.url, raw=raw, min_delay_s=0.05).start()
    candles, events = collect(stream, fake)
    assert fake.clock is not None
    rest = {c.open_time_ms: c for c in broker.fetch_closed_candles("BTC/USDT", "1s", fake.clock.start_ms, fake.now_ms())}
    assert len(rest) == len(PRICES)
    # every streamed candle is a closed REST candle, text for text (plain decimals, as the REST path gives them)
    for symbol, open_ms, o, h, low, c, v in candles:
        r = rest[open_ms]
        assert symbol == "BTC/USDT"
        assert [D(t) for t in (o, h, low, c, v)] == [r.open, r.high, r.low, r.close, r.volume]
        assert all("E" not in t for t in (o, h, low, c, v))  # plain decimal text
        assert c != FORMING
    opens = [(open_ms - fake.clock.start_ms) // 1000 for _, open_ms, *_ in candles]
    assert opens == sorted(set(opens)), "each candle once, in order"
    # bar 4 closed while the socket was cut or refused: the stream never saw it
    assert 4 not in opens
    assert {0, 1, 2, 3, 7, 8, 9, 10, 11, 12} <= set(opens)
    assert events[0] == "connected" and "disconnected" in events and events.count("connected") == 2, events
    kinds = [e["event"] for e in fake.ws.log]
    assert kinds.count("drop") == 1 and kinds.count("subscribe") == 2, kinds


def test_the_facade_opens_a_stream_only_where_one_can_be_reached(fake: FakeBinance) -> None:
    assert offers_candles("binance") and not offers_candles("no-such-exchange")
    config = {"api_key": "k", "secret": "s", "urls": fake.url, "timeout_ms": 2000}
    # a redirected REST URL without a websocket URL: nothing streams (nothing may reach Binance)
    host = open_venue("binance", json.dumps(config))
    with pytest.raises(VenueError) as err:
        host.open_stream('["BTC/USDT"]', "1s")
    assert err.value.kind == "unavailable" and "no websocket URL is given" in err.value.message
    assert fake.ws is not None
    host = open_venue("binance", json.dumps({**config, "ws_url": fake.ws.url}))
    with pytest.raises(VenueError) as err:
        host.open_stream('["BTC/USTD"]', "1s")
    assert err.value.kind == "unknown_symbol"
    with pytest.raises(VenueError) as err:
        host.open_stream('["BTC/USDT"]', "7s")
    assert err.value.kind == "rule_violation" and "no timeframe '7s'" in err.value.message
    stream = host.open_stream('["BTC/USDT"]', "1s")
    assert isinstance(host, HostVenue) and isinstance(stream, CandleStream)
    deadline = time.monotonic() + 10
    got: list[list[Any]] = []
    while not got and time.monotonic() < deadline:
        got = json.loads(stream.take())["candles"]
        time.sleep(0.05)
    stream.close()
    assert got and got[0][0] == "BTC/USDT"
