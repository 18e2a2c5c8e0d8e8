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


SESSION_ALGO = '''
import json
from rustybt_api import Algorithm

class SessionBars(Algorithm):
    report = ""

    def initialize(self, ctx):
        self.symbol = ctx.symbols[0]
        self.first_hour = None
        self.appeared = []

    def on_tick(self, ctx):
        hourly = ctx.history(self.symbol, "1h")
        if len(hourly) and self.first_hour is None:
            self.first_hour = str(hourly.time[0].astype("datetime64[m]"))
        # Each hourly bar as it appears: when, its start and how many base bars it holds.
        if len(hourly) > len(self.appeared):
            self.appeared.append(
                {"now": ctx.time_ns, "start": int(hourly.time_ns[-1]), "count": int(hourly.count[-1])}
            )

    def on_stop(self, ctx):
        daily = ctx.history(self.symbol, "1d")
        with open(self.report, "w") as f:
            json.dump({
                "first_hour": self.first_hour,
                "hourly": self.appeared,
                "daily_start": [str(t.astype("datetime64[m]")) for t in daily.time],
                "daily_count": daily.count.tolist(),
            }, f)
'''


def test_hourly_and_daily_bars_follow_the_new_york_session(run_rustybt, write_algo, bars_csv, tmp_path):
    import datetime as dt

    # Every minute from Friday 8 March 2024 00:00 UTC for four days; New York moves from EST
    # to EDT on Sunday 10 March.
    start = dt.datetime(2024, 3, 8, tzinfo=dt.timezone.utc)
    data = bars_csv(rows=4 * 1440, seed=11, start=start)
    report = tmp_path / "session.json"
    result = run_rustybt(
        "run", "--algo", write_algo(SESSION_ALGO), "--data", data, "--param", f"report={report}",
        "--timezone", "America/New_York", "--session-open", "09:30", "--session-close", "16:00",
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(report.read_text())
    assert probe["first_hour"] == "2024-03-08T14:30"  # 09:30 EST

    minute = 60 * 1_000_000_000
    hourly = probe["hourly"]
    assert len(hourly) == 4 * 7
    for day in range(4):
        bars = hourly[day * 7:(day + 1) * 7]
        # 09:30, 10:30, ... 15:30: six full hours, then the half hour to the 16:00 close.
        assert [b["count"] for b in bars] == [60] * 6 + [30]
        first = pd.Timestamp(bars[0]["start"], tz="UTC")
        assert first.tz_convert("America/New_York").strftime("%H:%M") == "09:30"
        assert [b["start"] - bars[0]["start"] for b in bars] == [k * 60 * minute for k in range(7)]
        # Each bar appears at its end: the last one at the 16:00 close, 30 minutes after it opened.
        for b in bars[:-1]:
            assert b["now"] == b["start"] + 60 * minute
        assert bars[-1]["now"] == bars[-1]["start"] + 30 * minute
    # Monday is in daylight time: 09:30 EDT is 13:30 UTC.
    assert pd.Timestamp(hourly[21]["start"], tz="UTC") == pd.Timestamp("2024-03-11T13:30", tz="UTC")

    assert probe["daily_start"] == [
        "2024-03-08T14:30", "2024-03-09T14:30", "2024-03-10T13:30", "2024-03-11T13:30",
    ]
    assert probe["daily_count"] == [390] * 4


def test_bad_timezone_and_session_times_are_usage_errors(run_rustybt, write_algo, bars_csv, tmp_path):
    algo = write_algo(
        """
        from rustybt_api import Algorithm

        class Idle(Algorithm):
            pass
        """
    )
    data = bars_csv(rows=5)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--timezone", "America/NewYork")
    assert result.returncode == 2, result.stderr
    assert "--timezone: `America/NewYork` is not an IANA time zone" in result.stderr
    assert "did you mean `America/New_York`?" in result.stderr
    assert "Asia/Tokyo" in result.stderr  # what is accepted
    result.assert_clean_failure()

    result = run_rustybt("run", "--algo", algo, "--data", data, "--session-open", "9h30")
    assert result.returncode == 2, result.stderr
    assert "--session-open: `9h30` is not a time of day" in result.stderr
    assert "HH:MM" in result.stderr

    config = tmp_path / "market.toml"
    config.write_text('[market]\ntimezone = "Europe/London"\nsession_close = "24:00"\n')
    result = run_rustybt("run", "--algo", algo, "--data", data, "--config", config)
    assert result.returncode == 2, result.stderr
    assert "market.session_close: `24:00` is not a time of day" in result.stderr
    result.assert_clean_failure()
