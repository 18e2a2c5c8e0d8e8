"""Bars aggregated from websocket trades (``rustybt_api._live.ws_feed``, docs/live.md
"Websocket data"): ``TradeBars`` against a straightforward reference aggregation over random
trade sequences (hypothesis; exact Decimal), its coverage rules (a bar the connection did not
see whole is never handed out), and ``TradeStream`` with the real ccxt.pro client against the
fake Binance's trade streams on 127.0.0.1 (in process), with a socket cut mid-bar: every bar it
hands out is the REST kline, exactly."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "pylib"))

from rustybt_api._live import connect  # noqa: E402
from rustybt_api._live.host import VenueError, open_venue  # noqa: E402
from rustybt_api._live.ws_feed import TradeBars, TradeStream, offers_trades  # noqa: E402
from tests.support.fake_binance import BAR_TRADES, FakeBinance  # noqa: E402
from test_ws_feed import PRICES, fake  # noqa: E402,F401  (the fake: 14 half-second bars of 1 s, cut at the half of bar 4)

TF = 1000
Trade = tuple[str, int, D, D]  # symbol, trade time ms, price, quantity


def reference(trades: list[Trade]) -> dict[tuple[str, int], list[D]]:
    """The obvious aggregation: per symbol and bucket, open/close of the earliest/latest trade
    (ties: the order given), high/low, summed quantity."""
    groups: dict[tuple[str, int], list[tuple[int, int, D, D]]] = defaultdict(list)
    for n, (symbol, t, p, q) in enumerate(trades):
        groups[(symbol, t - t % TF)].append((t, n, p, q))
    bars = {}
    for key, rows in groups.items():
        rows.sort()
        prices = [p for _, _, p, _ in rows]
        bars[key] = [rows[0][2], max(prices), min(prices), rows[-1][2], sum((q for *_, q in rows), D(0))]
    return bars


def as_bars(rows: list[list[Any]]) -> dict[tuple[str, int], list[D]]:
    out = {}
    for symbol, open_ms, *texts in rows:
        assert all("E" not in t and "e" not in t for t in texts), texts  # plain decimal text
        assert (symbol, open_ms) not in out, "a bar handed out twice"
        out[(symbol, open_ms)] = [D(t) for t in texts]
    return out


decimals = st.builds(lambda units, scale: D(units).scaleb(-scale), st.integers(1, 10**12), st.integers(0, 10))


@st.composite
def exchange_trades(draw: Any) -> list[Trade]:
    """Trades of two symbols as an exchange streams them: each symbol's in time order (ties
    allowed), the symbols interleaved at random."""
    per_symbol = []
    for symbol in ("A/X", "B/X"):
        gaps = draw(st.lists(st.integers(0, 2500), max_size=40))
        t, rows = draw(st.integers(0, 10**6)), []
        for gap in gaps:
            t += gap
            rows.append((symbol, t, draw(decimals), draw(decimals)))
        per_symbol.append(rows)
    order = draw(st.permutations([0] * len(per_symbol[0]) + [1] * len(per_symbol[1])))
    its = [iter(rows) for rows in per_symbol]
    return [next(its[i]) for i in order]


@settings(max_examples=300, deadline=None)
@given(exchange_trades())
def test_bars_from_trades_equal_the_reference_aggregation(trades: list[Trade]) -> None:
    bars = TradeBars(TF, grace_ms=0)
    bars.connected(-(10**9))
    rows = []
    for trade in trades:
        rows += bars.add(*trade)
    rows += bars.due({"A/X": 10**12, "B/X": 10**12})
    assert as_bars(rows) == reference(trades)
    assert bars.warnings == []


@settings(max_examples=200, deadline=None)
@given(exchange_trades(), st.randoms())
def test_the_order_within_a_bar_does_not_matter(trades: list[Trade], rnd: Any) -> None:
    """Trades of one bar that arrive out of time order still give OHLC by trade time."""
    distinct = list({(s, t): (s, t, p, q) for s, t, p, q in trades}.values())  # one trade per time
    by_bucket: dict[tuple[str, int], list[Trade]] = defaultdict(list)
    for trade in distinct:
        by_bucket[(trade[0], trade[1] - trade[1] % TF)].append(trade)
    shuffled: list[Trade] = []
    for key in sorted(by_bucket, key=lambda k: (k[1], k[0])):
        group = by_bucket[key]
        rnd.shuffle(group)
        shuffled += group
    bars = TradeBars(TF, grace_ms=0)
    bars.connected(-(10**9))
    rows = [row for trade in shuffled for row in bars.add(*trade)] + bars.due({"A/X": 10**12, "B/X": 10**12})
    assert as_bars(rows) == reference(sorted(distinct, key=lambda t: t[1]))


@settings(max_examples=300, deadline=None)
@given(exchange_trades(), st.lists(st.tuples(st.integers(0, 80), st.integers(0, 10)), max_size=4), st.integers(0, 3000))
def test_a_bar_the_connection_did_not_see_whole_is_never_handed_out(trades: list[Trade], cuts: list[tuple[int, int]], grace: int) -> None:
    """Connections that drop and reconnect (losing the trades in between), with the wall-clock
    closing: every bar handed out is the full reference bar, once; every bar with trades that
    one connection saw from before its open until a later trade of its symbol is handed out.
    The exchange sends in arrival order, each trade at event time E = max(its time, the previous
    E): a connection gets every trade sent after its first one (until it drops)."""
    full = reference(trades)
    lost: set[int] = set()
    drops_at: set[int] = set()
    for start, length in cuts:
        drops_at.add(start)
        lost.update(range(start, start + length))
    bars = TradeBars(TF, grace_ms=grace)
    rows: list[list[Any]] = []
    segments: list[list[Trade]] = [[]]  # the trades each connection delivered
    firsts: list[int] = []  # each connection's first event time
    up = False
    newest: dict[str, int] = {}
    sent = -(10**9)
    for n, trade in enumerate(trades):
        sent = max(sent, trade[1])
        if n in drops_at and up:
            bars.dropped()
            up = False
            segments.append([])
        if n in lost:
            continue
        if not up:
            firsts.append(sent)
            bars.connected(sent + 1)  # as TradeStream: from its first trade's event time + 1
            up = True
        segments[-1].append(trade)
        rows += bars.add(*trade)
        newest[trade[0]] = max(newest.get(trade[0], trade[1]), trade[1])
        rows += bars.due(newest)  # each symbol's clock: its newest trade time
    got = as_bars(rows)
    for key, bar in got.items():
        assert bar == full[key], (key, bar, full[key])
    for segment in segments:
        if not segment:
            continue
        first_covered = -(-(firsts.pop(0) + 1) // TF) * TF
        last_time = {s: t for s, t, _, _ in segment}
        for symbol, t, _, _ in segment:
            bucket = t - t % TF
            if bucket >= first_covered and last_time[symbol] >= bucket + TF:
                assert (symbol, bucket) in got, (symbol, bucket)
    assert bars.warnings == []


def test_coverage_closing_and_late_trades() -> None:
    bars = TradeBars(1000, grace_ms=500)
    # the connection is known up from 1500 (mid-bar 1000): bar 1000 is not handed out
    assert bars.connected(1500) == 2000
    assert bars.add("A", 1600, D("1"), D("1")) == []
    assert bars.add("A", 2100, D("2.0"), D("0.5")) == []
    assert bars.add("A", 2900, D("3"), D("0.25")) == []
    assert bars.due({"A": 3499}) == [] and bars.due({"B": 9999}) == []  # not yet close + grace
    assert bars.due({"A": 3500}) == [["A", 2000, "2", "3", "2", "3", "0.75"]]
    # a trade of a bar already handed out: a warning, the bar stays as it was handed out
    assert bars.add("A", 2950, D("9"), D("1")) == []
    assert len(bars.warnings) == 1 and "2000 ms) was handed out" in bars.warnings[0]
    # a trade at or after the close hands the bar out at once
    assert bars.add("A", 3000, D("4"), D("1")) == []
    assert bars.add("A", 4000, D("5"), D("1")) == [["A", 3000, "4", "4", "4", "4", "1"]]
    # a drop discards the bar in progress; nothing until the next connection's first covered bar
    bars.dropped()
    assert bars.add("A", 4500, D("6"), D("1")) == []
    assert bars.connected(4700) == 5000
    assert bars.add("A", 4800, D("6"), D("1")) == [] and bars.add("A", 5000, D("7"), D("1")) == []
    assert bars.due({"A": 10_000}) == [["A", 5000, "7", "7", "7", "7", "1"]]
    # a bucket with no trades is never a bar (the feed takes the exchange's candle)
    assert bars.add("A", 8000, D("8"), D("1")) == [] and bars.due({"A": 10_000}) == [["A", 8000, "8", "8", "8", "8", "1"]]
    with pytest.raises(ValueError, match="1 day"):
        TradeBars(7 * 86_400_000)


# ---------------------------------------------------------------------------- against the fake

def test_the_fakes_trades_are_its_klines() -> None:
    assert sum(D(q) for _, _, q in BAR_TRADES) == D(10)  # the clock candle's volume
    assert [role for _, role, _ in BAR_TRADES][::3] == ["open", "close"]


@pytest.mark.parametrize("raw", [True, False], ids=["binance-raw-trades", "generic-ccxt-trades"])
def test_streamed_trade_bars_are_the_rest_klines_and_a_cut_bar_is_left_to_rest(fake: FakeBinance, raw: bool) -> None:
    broker = connect("binance", api_key="k", secret="s", urls=fake.url)
    broker.load_markets()
    assert fake.ws is not None and fake.clock is not None
    stream = TradeStream(broker, ["BTC/USDT"], "1s", fake.ws.url, raw=raw, min_delay_s=0.05, grace_s=0.3).start()
    rows: list[list[Any]] = []
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        update = json.loads(stream.take())
        rows += update["candles"]
        events += update["events"]
        if fake.clock.exhausted and rows and rows[-1][1] >= fake.clock.start_ms + 13_000:
            break
        time.sleep(0.03)
    stream.close()
    rest = {c.open_time_ms: c for c in broker.fetch_closed_candles("BTC/USDT", "1s", fake.clock.start_ms, fake.now_ms())}
    assert len(rest) == len(PRICES)
    for symbol, open_ms, *texts in rows:
        r = rest[open_ms]
        assert symbol == "BTC/USDT"
        assert [D(t) for t in texts] == [r.open, r.high, r.low, r.close, r.volume], open_ms
    opens = [(open_ms - fake.clock.start_ms) // 1000 for _, open_ms, *_ in rows]
    assert opens == sorted(set(opens)), "each bar once, in order"
    kinds = [e["type"] for e in events]
    assert kinds.count("covering") == 2 and "disconnected" in kinds and kinds.count("connected") == 2, kinds
    first, second = [(e["from_ms"] - fake.clock.start_ms) // 1000 for e in events if e["type"] == "covering"]
    # the bar the connection's first trade fell in (0, or 1 on a slow start), bar 4 (cut at its
    # half) and the bars up to the one the reconnect's first trade fell in (5, or 6 after a
    # longer backoff) are REST's; every other came from the stream, the last one by the clock
    # (no later trade)
    assert first in (1, 2) and second in (6, 7), (first, second)
    assert set(opens) == {*range(first, 4), *range(second, 14)}, opens
    assert "warning" not in kinds
    subscribed = [e["streams"] for e in fake.ws.log if e["event"] == "subscribe"]
    assert subscribed and all(s == ["btcusdt@trade"] for s in subscribed), subscribed


def test_the_facade_picks_trades_where_asked_or_where_there_are_no_candles(fake: FakeBinance) -> None:
    assert offers_trades("binance") and not offers_trades("no-such-exchange")
    assert fake.ws is not None
    host = open_venue("binance", json.dumps({"api_key": "k", "secret": "s", "urls": fake.url, "timeout_ms": 2000, "ws_url": fake.ws.url}))
    stream = host.open_stream('["BTC/USDT"]', "1s", "trades")
    assert isinstance(stream, TradeStream) and stream.describe() == "websocket trades, aggregated into bars"
    stream.close()
    candles = host.open_stream('["BTC/USDT"]', "1s", "any")
    assert not isinstance(candles, TradeStream) and candles.describe() == "websocket stream"
    candles.close()
    with pytest.raises(VenueError) as err:
        host.open_stream('["BTC/USDT"]', "1w", "trades")
    assert err.value.kind == "rule_violation" and "cannot be aggregated from trades" in err.value.message
