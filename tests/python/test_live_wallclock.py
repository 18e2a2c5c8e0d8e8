"""`rustybt live` on an exchange feed between bars: scheduled callbacks fire at their wall-clock
time (not at the next bar), and an exchange broker refuses what it cannot send (brackets, OCO,
in-place modify) with a reason instead of sending half of it.

The fake Binance (tests/support/fake_binance.py) runs as a process; its clock is paused or slow,
so no bar closes during the checks that need time to pass between bars."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import BIN, ROOT

ENV = {**os.environ, "RUSTYBT_HOME": str(ROOT), "RUSTYBT_API_KEY": "fake-api-key",
       "RUSTYBT_API_SECRET": "fake-secret"}
CONFIG = """
[live]
status_line = false
[exchange]
rate_limit = "1ms"
settle_margin = "1ms"
recv_window = "1s"
"""


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[str]:
    """A BTCUSDT market whose 1-second bars start far in the future: none closes during a test."""
    start = (int(time.time() * 1000) // 1000 + 3600) * 1000
    script = {
        "markets": [{"symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": "0.01",
                     "step_size": "0.00001", "min_notional": "5"}],
        "balances": {"USDT": "10000"},
        "prices": {"BTCUSDT": "64000.10"},
        "clock": {"start_ms": start, "interval": "1s", "wall_ms_per_bar": 1000,
                  "path": {"BTCUSDT": ["64000.10"]}, "paused": True},
    }
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_binance", "--port", "0",
                             "--script", str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line
    yield line.split()[1]
    proc.terminate()
    proc.wait(timeout=10)


def start_live(tmp_path: Path, url: str, algo: str, broker: str) -> subprocess.Popen[str]:
    (tmp_path / "algo.py").write_text(algo)
    (tmp_path / "live.toml").write_text(CONFIG)
    argv = [str(BIN), "live", "--algo", str(tmp_path / "algo.py"), "--broker", broker,
            "--feed", "ccxt:binance", "--symbols", "BTC/USDT", "--timeframe", "1s",
            "--exchange-url", url, "--state", str(tmp_path / "state"), "--out", str(tmp_path / "out"),
            "--config", str(tmp_path / "live.toml")]
    return subprocess.Popen(argv, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


SCHEDULED = """
from rustybt_api import Algorithm

class Heartbeat(Algorithm):
    def initialize(self, ctx):
        self.started = ctx.time_ns
        self.beats = []
        self.schedule(self.beat, every="1s")

    def beat(self, ctx):
        self.beats.append(ctx.time_ns)
        self.log.info(f"beat {ctx.time_ns} bars {len(ctx.history('BTC/USDT'))}")

    def on_tick(self, ctx):
        raise AssertionError("no bar closes in this test")
"""


def test_scheduled_callbacks_fire_on_the_wall_clock_between_bars(tmp_path: Path, fake: str) -> None:
    proc = start_live(tmp_path, fake, SCHEDULED, "paper")
    # Wait for three beats on the terminal (a loaded machine starts slower than a fixed sleep).
    lines: list[str] = []
    streams = [threading.Thread(target=lambda f=f: lines.extend(f), daemon=True) for f in (proc.stdout, proc.stderr)]
    for t in streams:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and sum(" beat " in x for x in list(lines)) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    for t in streams:
        t.join(timeout=10)
    out, err = "", "".join(lines)
    assert code == 0, err
    beats = [line for line in (out + err).splitlines() if " beat " in line]
    times = [int(line.split(" beat ")[1].split()[0]) for line in beats]
    # every="1s": once per second of wall time although no bar closed; never two per second.
    assert len(times) >= 3, out + err
    # (A callback runs just after its occurrence, later under load: the gaps between the times
    # it sees vary, but each falls in its own whole second.)
    seconds = [t // 1_000_000_000 for t in times]
    assert all(b > a for a, b in zip(seconds, seconds[1:])), times
    # Each fires at (just after) its occurrence, a whole second, with no bar seen yet.
    assert all(t % 1_000_000_000 < 500_000_000 for t in times), times
    assert all(line.endswith("bars 0") for line in beats)
    assert "stopped by signal" in err


BRACKET = """
from decimal import Decimal
from rustybt_api import Algorithm, OrderError

class Linked(Algorithm):
    def initialize(self, ctx):
        self.schedule(self.place, every="1s")
        self.done = False

    def place(self, ctx):
        if self.done:
            return
        self.done = True
        self.bracket("BTC/USDT", "buy", Decimal("0.01"), limit=Decimal("60000"),
                     take_profit=Decimal("70000"), stop_loss=Decimal("50000"))
        single = self.buy("BTC/USDT", Decimal("0.01"), limit=Decimal("60000"))
        try:
            single.modify(price=Decimal("60001"))
        except OrderError as e:
            self.log.info(f"modify refused: {e}")
"""


def test_an_exchange_broker_refuses_brackets_and_modify(tmp_path: Path, fake: str) -> None:
    proc = start_live(tmp_path, fake, BRACKET, "ccxt:binance")
    time.sleep(4)
    code, out, err = stop(proc)
    assert code == 0, err
    assert "modify refused: an order at an exchange cannot be modified in place" in out + err
    with open(tmp_path / "out" / "orders.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    final = {}
    for row in rows:
        final[row["order_id"]] = row
    reasons = {r["reason"] for r in final.values() if r["status"] == "rejected"}
    assert any("brackets and OCO groups are paper-only" in r for r in reasons), final
    # The single limit order went to the exchange: exactly one POST order was made.
    with urllib.request.urlopen(fake.replace("/api/v3", "/_fake/requests")) as reply:
        requests = json.loads(reply.read())
    posts = [r for r in requests if r["method"] == "POST" and r["path"] == "order"]
    assert len(posts) == 1, posts
    accepted = [r for r in final.values() if r["status"] == "accepted"]
    assert len(accepted) == 1
