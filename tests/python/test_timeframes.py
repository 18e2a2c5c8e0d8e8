"""Higher timeframes built by the engine: equal to a resample of the base bars, closed bars only."""

from __future__ import annotations

import json

import pandas as pd

from conftest import read_bars

MTF_ALGO = '''
import json
from rustybt_api import Algorithm

class Mtf(Algorithm):
    report = ""
    timeframe = "15m"

    def initialize(self, ctx):
        self.rows = []
        self.symbol = ctx.symbols[0]

    def on_tick(self, ctx):
        bars = ctx.history(self.symbol, self.timeframe)
        again = ctx.history(self.symbol, self.timeframe)
        forming = ctx.forming(self.symbol, self.timeframe)
        self.rows.append({
            "now": ctx.time_ns,
            "len": len(bars),
            "last_start": int(bars.time_ns[-1]) if len(bars) else None,
            "forming_start": forming["start"] if forming else None,
            "forming_count": forming["count"] if forming else None,
            "writeable": bool(bars.close.flags.writeable),
            "same_pointer": bars.close.ctypes.data == again.close.ctypes.data,
            "base": type(bars.close.base).__name__,
            "timeframe": bars.timeframe,
        })

    def on_stop(self, ctx):
        bars = ctx.history(self.symbol, self.timeframe)
        final = {
            "time": [int(t) for t in bars.time_ns],
            "open": bars.open.tolist(), "high": bars.high.tolist(), "low": bars.low.tolist(),
            "close": bars.close.tolist(), "volume": bars.volume.tolist(), "count": bars.count.tolist(),
        }
        with open(self.report, "w") as f:
            json.dump({"rows": self.rows, "final": final}, f)
'''


def _resample(path, rule, drop_every=None):
    frame = pd.read_csv(path)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame = frame.set_index("timestamp")
    agg = frame.resample(rule, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    agg["count"] = frame["close"].resample(rule, label="left", closed="left").count()
    return agg[agg["count"] > 0]


def test_higher_timeframe_equals_a_resample_and_never_shows_the_forming_bar(
    run_rustybt, write_algo, bars_csv, tmp_path
):
    data = bars_csv(rows=300, seed=4)
    # Remove a few base bars: the 15-minute bars around them must report a short count.
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0]] + [l for i, l in enumerate(lines[1:]) if i not in (20, 21, 100)]) + "\n")
    report = tmp_path / "mtf.json"
    result = run_rustybt("run", "--algo", write_algo(MTF_ALGO), "--data", data, "--param", f"report={report}")
    assert result.returncode == 0, result.stderr
    probe = json.loads(report.read_text())
    expected = _resample(data, "15min")
    final = probe["final"]
    assert len(final["time"]) == len(expected)
    assert final["time"] == [int(t.value) for t in expected.index]
    for column in ("open", "high", "low", "close", "volume"):
        assert final[column] == [float(v) for v in expected[column]], column
    assert final["count"] == [int(v) for v in expected["count"]]
    assert 13 in final["count"] and 14 in final["count"]

    minute = 60 * 1_000_000_000
    fifteen = 15 * minute
    for row in probe["rows"]:
        # Only 15-minute bars whose end is at or before now are visible...
        visible = sum(1 for t in final["time"] if t + fifteen <= row["now"])
        assert row["len"] == visible, row
        # ...and the forming one, if any, is the bucket holding the latest base bar.
        if row["forming_start"] is not None:
            assert row["forming_start"] + fifteen > row["now"]
        assert row["writeable"] is False and row["same_pointer"]
        assert row["base"] == "AggregateBuffer" and row["timeframe"] == "15m"


def test_daily_weekly_and_monthly_buckets_follow_the_calendar(run_rustybt, write_algo, bars_csv, tmp_path):
    import datetime as dt

    data = bars_csv(rows=24 * 75, seed=8, interval=dt.timedelta(hours=1))  # 75 days of hourly bars
    for timeframe, rule in (("1d", "1D"), ("1w", "W-MON"), ("1M", "MS")):
        report = tmp_path / f"{timeframe}.json"
        result = run_rustybt(
            "run", "--algo", write_algo(MTF_ALGO, name=f"mtf_{timeframe}"), "--data", data,
            "--param", f"report={report}", "--param", f"timeframe={timeframe}",
        )
        assert result.returncode == 0, result.stderr
        final = json.loads(report.read_text())["final"]
        expected = _resample(data, rule)
        if rule == "W-MON":  # pandas labels weekly bins by their end; rustybt by their Monday start
            frame = pd.read_csv(data)
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
            naive = frame["timestamp"].dt.tz_localize(None)
            week = naive.dt.to_period("W-SUN").dt.start_time.dt.tz_localize("UTC")
            expected = frame.groupby(week).agg(close=("close", "last"), count=("close", "count"))
        # The last bucket is still forming when the data ends (its end is after the last
        # bar's close): the engine never shows it.
        last_close = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=24 * 75)
        length = {"1d": pd.DateOffset(days=1), "1w": pd.DateOffset(weeks=1), "1M": pd.DateOffset(months=1)}
        expected = expected[[start + length[timeframe] <= last_close for start in expected.index]]
        assert final["time"] == [int(t.value) for t in expected.index], timeframe
        assert final["close"] == [float(v) for v in expected["close"]], timeframe
        assert sum(final["count"]) == int(expected["count"].sum())


def test_bad_timeframe_is_a_clear_error(run_rustybt, write_algo, bars_csv):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class Bad(Algorithm):
            def on_tick(self, ctx):
                ctx.history(ctx.symbols[0], "5y")
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=5))
    assert result.returncode == 1
    assert "unknown unit" in result.stderr


HTF_INDICATOR_ALGO = '''
import json
import numpy as np
import talib
from rustybt_api import Algorithm

class HourlyRsi(Algorithm):
    report = ""

    def initialize(self, ctx):
        self.symbol = ctx.symbols[0]
        self.rsi = self.indicator("RSI", self.symbol, timeframe="1h", period=5)
        self.ok = True
        self.values_seen = 0

    def on_tick(self, ctx):
        hourly = ctx.history(self.symbol, "1h")
        # One value per closed hourly bar: the forming hour never feeds the indicator.
        if len(self.rsi) != len(hourly):
            self.ok = False
        if len(hourly) > 5:
            expected = talib.RSI(hourly.close, timeperiod=5)[-1]
            if abs(expected - self.rsi.value) > 1e-9 * max(1.0, abs(expected)):
                self.ok = False
            self.values_seen += 1

    def on_stop(self, ctx):
        hourly = ctx.history(self.symbol, "1h")
        same = bool(np.array_equal(talib.RSI(hourly.close, timeperiod=5), self.rsi.values, equal_nan=True))
        with open(self.report, "w") as f:
            json.dump({"ok": self.ok, "same": same, "seen": self.values_seen, "name": self.rsi.name,
                       "hours": len(hourly)}, f)
'''


def test_indicator_on_a_higher_timeframe_sees_only_closed_bars(run_rustybt, write_algo, bars_csv, tmp_path):
    report = tmp_path / "htf.json"
    result = run_rustybt(
        "run", "--algo", write_algo(HTF_INDICATOR_ALGO), "--data", bars_csv(rows=24 * 60, seed=9),
        "--param", f"report={report}",
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(report.read_text())
    assert probe["ok"] and probe["same"]
    assert probe["hours"] == 24 and probe["seen"] > 1000
    assert probe["name"] == "RSI(5)@1h"
