"""`rustybt live` on the websocket feed (`--feed-mode ws`, and bars aggregated from trades with
`--feed-mode ws-trades`; docs/live.md "Websocket data"): the release binary, the real ccxt.pro
client and the fake Binance's kline and trade streams (`tests/support/fake_binance.py`, script
key ``websocket``). The fake cuts every socket at
scripted bars and refuses reconnects for two bars, and half way through every bar it streams the
forming candle with a close no closed candle has. Each session on the websocket feed is compared
with a session on the REST feed (`--feed-mode poll`) over the same price path: the same bars,
the same orders and fills, the same equity. Nothing reaches the internet.
"""

from __future__ import annotations

import subprocess
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from test_live_exchange import RESTING, Fake, Live, Run, running_journal_fills, script, wait_for, write_config

FORMING = "11111.11"  # the fake's close of every forming candle: never a bar
# 24 one-second bars: up, down, up (the flip buys at bar 2 and sells at bar 5)
PATH = [f"{64000 + 10 * i}.10" for i in range(8)] + [f"{64070 - 15 * i}.25" for i in range(8)] + \
       [f"{63950 + 7 * i}.05" for i in range(8)]
BARS = 20


class WsFake(Fake):
    """The fake with its websocket side (the second line it prints)."""

    def __init__(self, script: dict[str, Any], folder: Path):
        super().__init__(script, folder)
        # printed right after LISTENING (maybe already buffered: no select on the pipe here)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("WEBSOCKET ws://127.0.0.1:"), line
        self.ws_url = line.split()[1]
        self.start_ms = 0  # the clock's, set by the fixture

    def ws_log(self) -> list[dict[str, Any]]:
        return self.call("GET", "ws")

    def klines_requests(self) -> int:
        return sum(1 for r in self.requests() if r["path"] == "klines")


@pytest.fixture
def session(binary: Path, tmp_path: Path) -> Iterator[Callable[..., tuple[Live, WsFake]]]:
    fakes: list[WsFake] = []

    def make(name: str, *, drops: list[int] = (), down_bars: float = 2.0) -> tuple[Live, WsFake]:  # type: ignore[assignment]
        folder = tmp_path / name
        folder.mkdir()
        scenario = script(path=PATH)
        # candle k appears at its close in wall time: a market order sent on bar k fills at its
        # close on either feed (the fake fills market orders at its current price)
        scenario["clock"]["align_to_wall"] = True
        scenario["websocket"] = {"drops": list(drops), "down_bars": down_bars, "forming_close": FORMING}
        fake = WsFake(scenario, folder)
        fake.start_ms = scenario["clock"]["start_ms"]
        fakes.append(fake)
        return Live(binary, fake, folder / "state", write_config(folder), folder), fake

    yield make
    for fake in fakes:
        fake.stop()


def run_with(live: Live, *extra: str, max_bars: int = BARS) -> Run:
    out = live.next_out()
    argv = live.argv(max_bars=max_bars, params={}, out=out) + list(extra)
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=live.env(), cwd=live.folder)
    return Run(proc.returncode, proc.stdout, proc.stderr, out, time.monotonic() - started)


def bars_seen(run: Run) -> list[str]:
    """The algorithm's view of every bar, in order: ``BAR n close C``."""
    return [line.split("Flip: ")[1] for line in run.log() if "Flip: BAR" in line]


def trading(run: Run) -> dict[str, Any]:
    """What must be equal between two feeds over the same path (times differ: each fake's
    clock starts when it does)."""
    return {
        "bars": bars_seen(run),
        "orders": [line.split("Flip: ")[1] for line in run.log() if "Flip: ORDER" in line or "Flip: FILL" in line],
        "fills": [(r["side"], r["qty"], r["price"], r["fee"]) for r in run.results("fills.csv")],
        "equity": [r["equity"] for r in run.results("equity.csv")],
    }


def assert_trades_like(streamed: Run, polled: Run, fake: WsFake) -> None:
    """The session on a stream cut at bars 4 and 11 has the same 20 bars, orders, fills and
    equity as the REST feed, never saw the forming candle, and its sockets really dropped,
    were refused, reconnected (subscribing again) and said so."""
    ws_result, poll_result = trading(streamed), trading(polled)
    assert len(ws_result["bars"]) == BARS
    assert ws_result == poll_result
    assert [D(b.split(" close ")[1]) for b in ws_result["bars"]] == [D(p) for p in PATH[:BARS]]
    assert all(FORMING not in line for line in streamed.log())
    kinds = [e["event"] for e in fake.ws_log()]
    assert kinds.count("drop") == 2, kinds
    assert kinds.count("refused") >= 2, kinds
    assert kinds.count("subscribe") >= 3, kinds
    assert streamed.stderr.count("websocket down") == 2, streamed.stderr
    assert streamed.stderr.count("websocket reconnected") == 2, streamed.stderr


def test_a_ws_session_with_dropped_sockets_trades_like_the_rest_feed(session: Callable[..., tuple[Live, WsFake]]) -> None:
    poll_live, poll_fake = session("poll")
    polled = run_with(poll_live, "--feed-mode", "poll")
    assert polled.returncode == 0, polled.stderr
    assert "websocket" not in polled.stderr
    assert poll_fake.ws_log() == []  # the poll feed never connects

    ws_live, ws_fake = session("ws", drops=[4, 11])
    streamed = run_with(ws_live, "--feed-mode", "ws", "--exchange-ws-url", ws_fake.ws_url)
    assert streamed.returncode == 0, streamed.stderr
    assert "market data: binance websocket stream" in streamed.stderr

    assert_trades_like(streamed, polled, ws_fake)
    # most bars came by websocket: far fewer candle requests than on the REST feed
    assert ws_fake.klines_requests() < poll_fake.klines_requests() / 2, (ws_fake.klines_requests(), poll_fake.klines_requests())


def test_a_trades_session_with_mid_bar_cuts_trades_like_the_rest_feed(session: Callable[..., tuple[Live, WsFake]]) -> None:
    """Bars aggregated from the fake's trade stream (each bar's four trades, sent in its wall
    time), with the socket cut at the half of bars 4 and 11 (their last two trades never reach
    the client) and refused for two bars: the bars the stream did not see whole (the first
    one, those cut or missed, the one it reconnected in) come from REST, the rest from the
    trades, and the session trades exactly as on the REST feed."""
    poll_live, poll_fake = session("poll")
    polled = run_with(poll_live, "--feed-mode", "poll")
    assert polled.returncode == 0, polled.stderr

    live, fake = session("trades", drops=[4, 11])
    streamed = run_with(live, "--feed-mode", "ws-trades", "--exchange-ws-url", fake.ws_url)
    assert streamed.returncode == 0, streamed.stderr
    assert "market data: binance websocket trades, aggregated into bars (REST fills gaps" in streamed.stderr

    assert_trades_like(streamed, polled, fake)
    assert "came after its bar" not in streamed.stderr  # no late trade
    subscribed = [e["streams"] for e in fake.ws_log() if e["event"] == "subscribe"]
    assert all(s == ["btcusdt@trade"] for s in subscribed), subscribed
    # REST was asked only for bars around the start (a slow start connects later) and the cuts
    # (cut at k + ½, refused until k + 2½, then reconnecting with backoff): every other bar
    # came from the trades
    assert fake.klines_requests() < poll_fake.klines_requests(), (fake.klines_requests(), poll_fake.klines_requests())
    asked = {(int(r["params"]["startTime"]) - fake.start_ms) // 1000 for r in fake.requests() if r["path"] == "klines"}
    assert all(k <= 3 or 4 <= k <= 9 or 11 <= k <= 16 for k in asked), sorted(asked)
    assert not asked & {10, 17, 18, 19}, sorted(asked)


def test_the_feed_mode_comes_from_the_config_file_unless_the_flag_overrides_it(session: Callable[..., tuple[Live, WsFake]]) -> None:
    live, fake = session("config")
    live.config = write_config(live.folder, live={"feed_mode": "ws-trades"})
    run = run_with(live, "--exchange-ws-url", fake.ws_url, max_bars=3)
    assert run.returncode == 0, run.stderr
    assert "market data: binance websocket trades, aggregated into bars" in run.stderr
    # the flag wins over the file
    polled = run_with(live, "--feed-mode", "poll", "--exchange-ws-url", fake.ws_url, max_bars=2)
    assert polled.returncode == 0, polled.stderr
    assert "market data: binance websocket" not in polled.stderr
    # a bad value is a usage error naming the file and the key, before anything starts
    live.config = write_config(live.folder, live={"feed_mode": "socket"})
    bad = run_with(live, "--exchange-ws-url", fake.ws_url, max_bars=1)
    assert bad.returncode == 2, bad.stderr
    assert str(live.config) in bad.stderr and 'live.feed_mode = "socket" is not a feed mode' in bad.stderr, bad.stderr
    assert "`ws-trades`" in bad.stderr


def test_an_unreachable_websocket_falls_back_to_polling_and_says_so(session: Callable[..., tuple[Live, WsFake]]) -> None:
    live, fake = session("down")
    # nothing listens on port 9: every connection attempt fails
    run = run_with(live, "--feed-mode", "ws", "--exchange-ws-url", "ws://127.0.0.1:9/ws", max_bars=8)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("websocket down") == 1, run.stderr  # reported once, not per retry
    assert "polling REST until it reconnects" in run.stderr
    bars = bars_seen(run)
    assert [D(b.split(" close ")[1]) for b in bars] == [D(p) for p in PATH[:8]]
    assert [line.split("Flip: ")[1] for line in run.log() if "Flip: ORDER" in line] == [
        "ORDER buy 0.01 bar 2 accepted None", "ORDER sell 0.005 bar 5 accepted None"]
    # the audit log has the notice too
    assert "websocket down" in (live.state / "audit.jsonl").read_text()


def test_feed_mode_choices_and_errors(session: Callable[..., tuple[Live, WsFake]]) -> None:
    live, fake = session("modes")
    bad = run_with(live, "--feed-mode", "socket", max_bars=1)
    assert bad.returncode == 2 and "`--feed-mode socket` is not a feed mode" in bad.stderr
    assert "use `auto`, `ws`, `ws-trades` or `poll`" in bad.stderr
    # auto with a redirected REST URL and no websocket URL: polls, and says why
    auto = run_with(live, max_bars=2)
    assert auto.returncode == 0, auto.stderr
    assert "market data: polling binance (no websocket stream: binance: the REST URL is redirected" in auto.stderr
    assert fake.ws_log() == []
    # ws where there is no stream to open: a usage error, before any bar
    refused = run_with(live, "--feed-mode", "ws", max_bars=2)
    assert refused.returncode == 2, refused.stderr
    assert "binance: no websocket stream" in refused.stderr and "no websocket URL is given" in refused.stderr


def test_order_updates_by_websocket_wake_the_broker(session: Callable[..., tuple[Live, WsFake]]) -> None:
    """A resting limit buy fills in three parts while no bar arrives (the clock is paused): each
    part is journaled well within the 2 s between regular polls, because the fake's
    executionReport on the user data stream wakes the broker's poll (measured: about 50 ms)."""
    live, fake = session("orders")
    live.algo = RESTING
    out = live.next_out()
    argv = live.argv(max_bars=6, params={"limit": "63990.00"}, out=out) + [
        "--feed-mode", "ws", "--exchange-ws-url", fake.ws_url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=live.env(), cwd=live.folder)
    try:
        wait_for("the resting order at the exchange", lambda: [o for o in fake.orders() if o["status"] == "NEW"], timeout=30)
        wait_for("the user data subscription", lambda: ("user_data", True) in [(e["event"], e.get("ok")) for e in fake.ws_log()])
        fake.call("POST", "clock", {"paused": True})
        lags = []
        for part in range(3):
            time.sleep(0.7)  # a different phase of the 2 s poll each time
            sent = time.monotonic()
            fake.call("POST", "advance", {"symbol": "BTCUSDT", "price": "63990.00", "qty": "0.003"})
            wait_for(f"part {part + 1} in the journal", lambda: len(running_journal_fills(live)) == part + 1, timeout=10, every=0.02)
            lags.append(time.monotonic() - sent)
        fake.call("POST", "clock", {"paused": False})
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "order updates: binance websocket stream" in stderr, stderr
    assert all(lag < 1.0 for lag in lags), (lags, stderr)  # polling alone: up to 2 s
    assert [D(f["quantity"]) for f in running_journal_fills(live)] == [D("0.003")] * 3
    kinds = [(e["event"], e.get("ok")) for e in fake.ws_log()]
    assert ("user_data", True) in kinds, kinds


def test_order_updates_are_polled_on_the_poll_feed(session: Callable[..., tuple[Live, WsFake]]) -> None:
    live, fake = session("orders-poll")
    live.algo = RESTING
    run = run_with(live, "--feed-mode", "poll", max_bars=3)
    assert run.returncode == 0, run.stderr
    assert "order updates" not in run.stderr and fake.ws_log() == []
