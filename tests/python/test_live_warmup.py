"""Live warm-up (issue 14 §3): before its first live bar a session loads the history its
indicators (or its `warmup`) need, from the replay file or the exchange, so indicators and
`ctx.history()` are ready at once, in a first session and after a restart. Oracle: TA-Lib's SMA
over the bars the source serves."""

from __future__ import annotations

import json
import math
import subprocess
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import talib

from conftest import ROOT
from test_live_exchange import MARKET, SYMBOL, Fake, Live, fake_exchange, live, script, write_config  # noqa: F401
from test_live_paper import MINUTE, file_bars, generated, run_live

PROBE = ROOT / "tests" / "fixtures" / "live" / "warmup_probe.py"
DECLARED = ROOT / "tests" / "fixtures" / "live" / "warmup_declared.py"


def warm_lines(out: Path) -> list[dict[str, Any]]:
    lines = (out / "log.txt").read_text().splitlines()
    return [json.loads(line.split("WARM ", 1)[1]) for line in lines if "WARM " in line]


def sma_oracle(closes: list[float], period: int) -> float:
    return float(talib.SMA(np.array(closes, dtype=float), timeperiod=period)[-1])


def test_a_first_replay_session_has_no_earlier_bars_and_says_so(tmp_path):
    data = generated(tmp_path / "W.csv", 60, seed=21)
    first = run_live(PROBE, data, "W", tmp_path / "state", tmp_path / "out", quiet=False)
    assert first.returncode == 0, first.stderr
    assert "warm-up: no bars before the first live bar (50 wanted) in the replay file" in first.stderr
    seen = warm_lines(first.out)
    assert (seen[0]["len"], seen[0]["ready"]) == (1, False)
    # Like a backtest from the file's first bar: ready at the 50th.
    assert [s["ready"] for s in seen].index(True) == 49


def test_a_restarted_replay_session_is_warm_at_its_first_bar(tmp_path):
    data = generated(tmp_path / "W.csv", 120, seed=22)
    closes = [float(b["close"]) for b in file_bars(data)]
    state = tmp_path / "state"
    one = run_live(PROBE, data, "W", state, tmp_path / "out1", "--max-bars", "70")
    assert one.returncode == 0, one.stderr
    two = run_live(PROBE, data, "W", state, tmp_path / "out2", quiet=False)
    assert two.returncode == 0, two.stderr
    assert "warm-up: 50 of 50 bars of history per symbol from the replay file" in two.stderr
    first = warm_lines(two.out)[0]
    # The bars the first session traded (the last 50) and the first live bar (index 70).
    bars = file_bars(data)
    assert first["time_ns"] == bars[70]["open_ns"] + MINUTE
    assert first["len"] == 51 and first["first_open_ns"] == bars[20]["open_ns"]
    assert first["ready"]
    assert math.isclose(first["sma"], sma_oracle(closes[:71], 50), rel_tol=1e-12)
    # The same value an uninterrupted session has at that bar.
    whole = run_live(PROBE, data, "W", tmp_path / "state_whole", tmp_path / "out_whole")
    same_bar = next(s for s in warm_lines(whole.out) if s["time_ns"] == first["time_ns"])
    assert math.isclose(first["sma"], same_bar["sma"], rel_tol=1e-12)


def test_a_declared_warmup_loads_that_many_bars(tmp_path):
    data = generated(tmp_path / "D.csv", 80, seed=23)
    state = tmp_path / "state"
    one = run_live(DECLARED, data, "D", state, tmp_path / "out1", "--max-bars", "40")
    assert one.returncode == 0, one.stderr
    two = run_live(DECLARED, data, "D", state, tmp_path / "out2", quiet=False)
    assert two.returncode == 0, two.stderr
    assert "warm-up: 30 of 30 bars of history per symbol" in two.stderr
    assert warm_lines(two.out)[0]["len"] == 31
    # Also a parameter: none on the command line.
    three = run_live(DECLARED, data, "D", tmp_path / "state3", tmp_path / "out3", "--param", "warmup=0",
                     quiet=False)
    assert three.returncode == 0, three.stderr
    assert "warm-up" not in three.stderr


def test_a_warmup_that_is_not_a_bar_count_is_refused(tmp_path):
    data = generated(tmp_path / "E.csv", 20, seed=24)
    bad = run_live(DECLARED, data, "E", tmp_path / "state", tmp_path / "out", "--param", "warmup=-3")
    assert bad.returncode != 0
    assert "`warmup` must be a whole number of bars (0 or more), not `-3`" in bad.stderr


def klines(fake: Fake, start_ms: int, limit: int) -> list[list[Any]]:
    url = f"{fake.url}/klines?symbol={MARKET}&interval=1s&startTime={start_ms}&limit={limit}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def assert_warm_at_first_bar(fake: Fake, start: int, out: Path) -> None:
    """The probe's first live bar saw 51 bars (50 of warm-up) and an SMA(50) equal to TA-Lib's
    over the exchange's candles up to it."""
    first = warm_lines(out)[0]
    served = klines(fake, start - 80_000, 1000)
    upto = [row for row in served if row[0] + 1000 <= first["time_ns"] // 1_000_000]
    assert first["len"] == 51 and first["ready"], first
    assert first["first_open_ns"] == upto[-51][0] * 1_000_000
    assert math.isclose(first["sma"], sma_oracle([float(r[4]) for r in upto], 50), rel_tol=1e-12)


def exchange_with_history(tmp_path: Path, seed: int) -> tuple[Fake, int, Path]:
    """The fake exchange with 80 one-second candles before its clock's first (what it has of the
    past), that first's open time, and a folder for the session."""
    spec = script(bars=40)
    start = spec["clock"]["start_ms"]
    spec["history"] = [{"symbol": MARKET, "interval": "1s", "start_ms": start - 80_000, "count": 80,
                        "price": "64000.10", "seed": seed}]
    folder = tmp_path / "session"
    folder.mkdir()
    return Fake(spec, tmp_path), start, folder


def test_an_exchange_session_is_warm_at_its_first_live_bar_first_and_after_a_restart(
        binary: Path, tmp_path: Path):
    fake, start, folder = exchange_with_history(tmp_path, seed=3)
    try:
        session = Live(binary, fake, folder / "state", write_config(folder), folder, PROBE)
        one = session.run(max_bars=3)
        assert one.returncode == 0, one.stderr
        assert_warm_at_first_bar(fake, start, one.out)
        # The restart warms up on the exchange's candles too, those the first session traded
        # included.
        two = session.run(max_bars=2)
        assert two.returncode == 0, two.stderr
        again = warm_lines(two.out)[0]
        served = klines(fake, start - 80_000, 1000)
        upto = [row for row in served if row[0] + 1000 <= again["time_ns"] // 1_000_000]
        assert again["len"] == 51 and again["ready"], again
        assert math.isclose(again["sma"], sma_oracle([float(r[4]) for r in upto], 50), rel_tol=1e-12)
    finally:
        fake.stop()


def kline_starts(fake: Fake) -> list[int]:
    return [int(r["params"]["startTime"]) for r in fake.requests()
            if r["path"] == "klines" and "startTime" in r.get("params", {})]


def test_an_exchange_session_warms_up_from_the_catalog_and_asks_the_exchange_for_the_tail_only(
        binary: Path, tmp_path: Path):
    fake, start, folder = exchange_with_history(tmp_path, seed=5)
    try:
        # The catalog holds the exchange's candles up to 20 s before the clock's first.
        catalog = tmp_path / "catalog"
        iso = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        fetched = subprocess.run(
            [str(binary), "data", "--catalog", str(catalog), "fetch", "--source", "ccxt:binance", "--exchange-url",
             fake.url, "--symbols", SYMBOL, "--timeframe", "1s", "--start", iso(start - 80_000), "--end",
             iso(start - 20_000), "--no-progress"], capture_output=True, text=True, timeout=60)
        assert fetched.returncode == 0, fetched.stderr
        asked_before = len(kline_starts(fake))
        session = Live(binary, fake, folder / "state", write_config(folder), folder, PROBE)
        one = session.run(max_bars=3, env=session.env(RUSTYBT_DATA=str(catalog)))
        assert one.returncode == 0, one.stderr
        warm_asks = kline_starts(fake)[asked_before:]
        assert_warm_at_first_bar(fake, start, one.out)
        # The warm-up says where its bars came from; the exchange was asked only from the
        # catalog's last bar on (the catalog's own candles were not asked for again).
        audit = [json.loads(line) for line in (folder / "state" / "audit.jsonl").read_text().splitlines()]
        [said] = [e["fields"]["message"] for e in audit
                  if "warm-up:" in str(e.get("fields", {}).get("message", ""))]
        assert said.startswith("warm-up: 50 of 50 bars of history per symbol from the catalog (ccxt:binance 1s, "), said
        # The catalog ends 20 s before the clock's first candle; the session's first bar is that
        # one or a few later (or one earlier, when it starts before the clock does).
        from_catalog = int(said.split("1s, ")[1].split(" bars")[0])
        from_exchange = int(said.split("ccxt:binance (")[1].split(" bars")[0])
        assert from_catalog + from_exchange == 50 and 20 <= from_catalog <= 40, said
        assert warm_asks and min(warm_asks) >= start - 20_000, (warm_asks, start)
    finally:
        fake.stop()
