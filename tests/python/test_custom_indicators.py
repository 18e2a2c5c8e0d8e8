"""Custom Python indicators and ``talib.<FUNC>`` through the real engine: called once per closed
bar, cached, zero-copy, no lookahead on higher timeframes, incremental == vectorized, timing
report, and every error path."""

from __future__ import annotations

import json

from conftest import ROOT

# One indicator of each kind, recording what the engine passes in.
PROBES = '''
import json
import numpy as np
from rustybt_api import Algorithm, Indicator

LOG = {"update": [], "calculate": []}

class Doubler(Indicator):
    """Incremental: update once per bar."""
    def update(self, bar):
        LOG["update"].append((bar.index, bar.time_ns, bar.close))
        return bar.close * 2

class Range(Indicator):
    """Vectorized, with a window: calculate per bar over the last `period` bars."""
    period = 4
    warm_up = 4
    window = 4
    outputs = ("high", "width")
    def calculate(self, bars):
        LOG["calculate"].append((len(bars), int(bars.time_ns[-1])))
        assert bars.close.flags.writeable is False
        high = np.maximum.accumulate(bars.high[::-1])[::-1]  # something vectorized
        width = np.full(len(bars), np.nan)
        if len(bars) >= self.period:
            width[-1] = bars.high[-self.period:].max() - bars.low[-self.period:].min()
        return {"high": np.full(len(bars), bars.high.max()), "width": width}

class Probe(Algorithm):
    def initialize(self, ctx):
        s = ctx.symbols[0]
        self.s = s
        self.doubler = self.indicator(Doubler, s)
        self.again = self.indicator(Doubler, s)
        self.range = self.indicator(Range, s)
        self.hourly = self.indicator(Doubler, s, timeframe="1h")
        self.pointer = None
        self.bad = []
        self.ticks = 0

    def on_tick(self, ctx):
        self.ticks += 1
        bars = ctx.history(self.s)
        n = len(bars)
        if len(self.doubler) != n or len(self.range) != n:
            self.bad.append(("length", n, len(self.doubler), len(self.range)))
        if self.doubler.value != bars.close[-1] * 2:
            self.bad.append(("value", n))
        hours = ctx.history(self.s, "1h")
        if len(self.hourly) != len(hours):
            self.bad.append(("hourly length", n, len(self.hourly), len(hours)))
        if len(hours) and self.hourly.value != hours.close[-1] * 2:
            self.bad.append(("hourly value", n))
        values = self.range.output("width")
        if self.pointer is None:
            self.pointer = values.ctypes.data
        elif values.ctypes.data != self.pointer:
            self.bad.append(("pointer moved", n))
        if values.flags.writeable:
            self.bad.append(("writeable", n))
        if n >= 4:
            expect = bars.high[-4:].max() - bars.low[-4:].min()
            if values[-1] != expect:
                self.bad.append(("width", n, values[-1], expect))
        if self.range.ready != (n >= 4):
            self.bad.append(("ready", n))

    def on_stop(self, ctx):
        bars = ctx.history(self.s)
        base_updates = [u for u in LOG["update"] if u[1] in set(bars.time_ns.tolist())]
        report = {
            "same_handle": self.again is self.doubler,
            "bars": len(bars),
            "hours": len(ctx.history(self.s, "1h")),
            "updates": len(LOG["update"]),
            "update_indices": [u[0] for u in LOG["update"]][:5],
            "calculates": len(LOG["calculate"]),
            "calculate_lengths": sorted(set(c[0] for c in LOG["calculate"])),
            "bad": self.bad[:10],
            "output_names": self.range.output_names,
            "latest": self.range.latest,
            "name": self.doubler.name,
        }
        with open(OUT, "w") as f:
            json.dump(report, f)
'''


def test_custom_indicators_run_once_per_closed_bar_and_are_shared(run_rustybt, write_algo, bars_csv, tmp_path):
    report_path = tmp_path / "report.json"
    algo = write_algo(PROBES.replace("OUT", repr(str(report_path))))
    data = bars_csv(rows=300, seed=3)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["bad"] == []
    assert report["same_handle"] is True
    assert report["bars"] == 300
    # The shared Doubler on base bars: one update per bar; the hourly one: one per closed hour.
    assert report["hours"] == 5  # 300 minutes = 5 closed hours
    assert report["updates"] == 300 + 5
    assert report["update_indices"] == [0, 1, 2, 3, 4]
    assert report["calculates"] == 300
    assert report["calculate_lengths"] == [1, 2, 3, 4]
    assert report["output_names"] == ["high", "width"]
    assert set(report["latest"]) == {"high", "width"}
    assert report["name"] == "Doubler()"
    rows = {r["indicator"]: r for r in result.csv_rows("indicators.csv")}
    assert rows["Doubler() on TEST"]["calls"] == "300"
    assert rows["Doubler() on TEST @1h"]["calls"] == "5"
    assert rows["Doubler() on TEST @1h"]["timeframe"] == "1h"
    assert rows["Range(period=4) on TEST"]["calls"] == "300"
    assert rows["Range(period=4) on TEST"]["bars"] == str(1 + 2 + 3 + 4 * 297)
    assert float(rows["Range(period=4) on TEST"]["mean_us"]) > 0
    assert "Range(period=4) on TEST" in result.stderr  # the end-of-run table


HIGHER = '''
import json
import numpy as np
from rustybt_api import Algorithm
from indicators.market_structure import MarketStructure

class Trend(Algorithm):
    def initialize(self, ctx):
        self.s = ctx.symbols[0]
        self.ms = self.indicator(MarketStructure, self.s, timeframe="15m", swing=2)
        self.seen = []
        self.bad = []

    def on_tick(self, ctx):
        hours = ctx.history(self.s, "15m")
        if len(self.ms) != len(hours):
            self.bad.append(("len", len(self.ms), len(hours)))
        # Every value was computed from closed 15-minute bars only: recompute from what is
        # visible now and compare the latest.
        if len(hours):
            visible = MarketStructure(swing=2).calculate(hours)
            for i, name in enumerate(self.ms.output_names):
                got, want = self.ms.output(name)[-1], visible[i][-1] if isinstance(visible, tuple) else visible[name][-1]
                if not (got == want or (np.isnan(got) and np.isnan(want))):
                    self.bad.append((name, len(hours), got, want))
            # The newest closed 15m bar ended at or before now.
            end = int(hours.time_ns[-1]) + 15 * 60 * 10**9
            if end > ctx.time_ns:
                self.bad.append(("unclosed bar", end, ctx.time_ns))

    def on_stop(self, ctx):
        hours = ctx.history(self.s, "15m")
        full = MarketStructure(swing=2).calculate(hours)
        full = full if isinstance(full, dict) else dict(zip(self.ms.output_names, full))
        equal = all(
            np.array_equal(self.ms.output(n), np.asarray(full[n]), equal_nan=True)
            for n in self.ms.output_names
        )
        events = int(np.nansum(np.abs(self.ms.output("bos")))) + int(np.nansum(np.abs(self.ms.output("choch"))))
        with open(OUT, "w") as f:
            json.dump({"bad": self.bad[:5], "equal": equal, "events": events, "bars": len(hours)}, f)
'''


def test_indicator_on_higher_timeframe_incremental_equals_vectorized_without_lookahead(
    run_rustybt, write_algo, bars_csv, tmp_path
):
    report_path = tmp_path / "report.json"
    algo_dir = tmp_path / "project" / "algorithms"
    algo_dir.mkdir(parents=True)
    (tmp_path / "project" / "indicators").symlink_to(ROOT / "indicators")
    algo = algo_dir / "trend.py"
    algo.write_text(HIGHER.replace("OUT", repr(str(report_path))))
    data = bars_csv(rows=3000, seed=11, volatility=0.003)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["bad"] == []
    assert report["equal"] is True  # engine's incremental update() == one vectorized calculate()
    assert report["bars"] == 200
    assert report["events"] > 3  # the comparison covered real breaks of structure


TALIB_ORACLE = '''
import json
import numpy as np
import talib
from rustybt_api import Algorithm

CASES = [
    ("SMA", {"timeperiod": 10}),
    ("STOCH", {}),
    ("BBANDS", {"timeperiod": 20, "nbdevup": 2.5}),
    ("WILLR", {}),
    ("AROON", {}),
    ("LINEARREG_SLOPE", {"timeperiod": 9}),
    ("CDLENGULFING", {}),
    ("ULTOSC", {}),
    ("CORREL", {}),
    ("RSI", {"timeperiod": 14}),
    ("EMA", {"timeperiod": 30}),
    ("MACD", {}),
    ("ADX", {}),
    ("TRIX", {"timeperiod": 10}),
    ("KAMA", {"timeperiod": 10}),
    ("OBV", {}),
    ("SAR", {}),
]

class Oracle(Algorithm):
    def initialize(self, ctx):
        self.s = ctx.symbols[0]
        self.handles = [(n, p, self.indicator("talib." + n, self.s, **p)) for n, p in CASES]
        self.late = None

    def on_tick(self, ctx):
        # Attached mid-run: catches up with one calculate over the closed bars.
        if len(ctx.history(self.s)) == 2500:
            self.late = self.indicator("talib.WMA", self.s, timeperiod=7)

    def on_stop(self, ctx):
        b = ctx.history(self.s)
        cols = {"open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume}
        report = {}
        for name, params, handle in self.handles:
            from talib import abstract
            f = abstract.Function(name)
            inputs = []
            for _, c in f.info["input_names"].items():
                inputs += [c] if isinstance(c, str) else list(c)
            full = getattr(talib, name)(*(cols[c] for c in inputs), **params)
            full = full if isinstance(full, (list, tuple)) else [full]
            worst = 0.0
            nan_ok = True
            for out_name, expected in zip(handle.output_names, full):
                got = handle.output(out_name)
                expected = np.asarray(expected, dtype=float)
                nan_ok &= bool(np.array_equal(np.isnan(got), np.isnan(expected)))
                mask = ~np.isnan(expected)
                scale = max(np.abs(expected[mask]).max(), 1e-300)
                worst = max(worst, float(np.abs(got[mask] - expected[mask]).max() / scale))
            report[name] = {"worst": worst, "nan_ok": nan_ok, "len": len(handle)}
        late = talib.WMA(b.close, 7)
        report["late"] = bool(np.allclose(self.late.values, late, equal_nan=True, rtol=1e-12))
        with open(OUT, "w") as f:
            json.dump(report, f)
'''


def test_any_talib_function_by_name_equals_talib_on_the_full_history(run_rustybt, write_algo, bars_csv, tmp_path):
    report_path = tmp_path / "report.json"
    algo = write_algo(TALIB_ORACLE.replace("OUT", repr(str(report_path))))
    data = bars_csv(rows=6000, seed=5)
    result = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report.pop("late") is True
    for name, row in report.items():
        assert row["len"] == 6000, name
        assert row["nan_ok"], name
        # Within 1e-9 of the output's scale: exact windows differ only by rounding; EMA-style
        # ones have settled (KAMA's window is ~4,800 bars, so 6,000 bars exercise it).
        assert row["worst"] <= 1e-9, (name, row["worst"])
    rows = {r["indicator"]: r for r in result.csv_rows("indicators.csv")}
    # Windows, not the whole history: SMA(10) passes 10 bars per call once warmed up.
    sma = rows["talib.SMA(timeperiod=10) on TEST"]
    assert int(sma["bars"]) == sum(range(1, 10)) + 10 * (6000 - 9)


ERRORS = {
    "raises": (
        '''
class Boom(Indicator):
    def update(self, bar):
        if bar.index == 40:
            raise ValueError("bad bar")
        return bar.close
''',
        "self.indicator(Boom, s)",
        ["ValueError: bad bar", "Boom.update"],
        1,
    ),
    "wrong_length": (
        '''
class Short(Indicator):
    def calculate(self, bars):
        return np.zeros(len(bars) - 1 if len(bars) > 5 else len(bars))
''',
        "self.indicator(Short, s)",
        ["IndicatorError", "Short.calculate output `value` has 5 values for 6 bars"],
        1,
    ),
    "wrong_outputs": (
        '''
class Two(Indicator):
    outputs = ("a", "b")
    def update(self, bar):
        return bar.close
''',
        "self.indicator(Two, s)",
        ["Two.update must return a tuple or dict of 2 outputs (a, b)"],
        1,
    ),
    "not_a_number": (
        '''
class Text(Indicator):
    def update(self, bar):
        return "high"
''',
        "self.indicator(Text, s)",
        ["Text.update gave str where a number was expected"],
        1,
    ),
    "neither_method": (
        '''
class Empty(Indicator):
    pass
''',
        "self.indicator(Empty, s)",
        ["Empty: define calculate(self, bars) (vectorized) or update(self, bar) (incremental)"],
        1,
    ),
    "unknown_parameter": (
        '''
class P(Indicator):
    period = 3
    def update(self, bar):
        return bar.close
''',
        "self.indicator(P, s, perod=5)",
        ["P has no parameter `perod`; it accepts period"],
        1,
    ),
    "bad_warm_up": (
        '''
class W(Indicator):
    warm_up = 0
    def update(self, bar):
        return bar.close
''',
        "self.indicator(W, s)",
        ["W: `warm_up` must be at least 1, got 0"],
        1,
    ),
    "talib_unknown_function": ("", 'self.indicator("talib.NOPE", s)', ["TA-Lib has no function `NOPE`"], 1),
    "talib_unknown_parameter": (
        "",
        'self.indicator("talib.RSI", s, period=14)',
        ["talib.RSI has no parameter period; it accepts timeperiod"],
        1,
    ),
    "talib_short_window": (
        "",
        'self.indicator("talib.SMA", s, timeperiod=30, window=5)',
        ["window=5 is shorter than its lookback + 1 (30 bars)"],
        1,
    ),
    "bad_timeframe": (
        '''
class T(Indicator):
    def update(self, bar):
        return bar.close
''',
        'self.indicator(T, s, timeframe="7x")',
        ["T: `7x` has an unknown unit"],
        1,
    ),
}


def test_indicator_errors_name_the_class_the_method_and_the_line(run_rustybt, write_algo, bars_csv):
    data = bars_csv(rows=100)
    for case, (classes, call, expected, code) in ERRORS.items():
        source = f'''
import numpy as np
from rustybt_api import Algorithm, Indicator
{classes}
class A(Algorithm):
    def initialize(self, ctx):
        s = ctx.symbols[0]
        {call}
'''
        algo = write_algo(source, name=case)
        result = run_rustybt("run", "--algo", algo, "--data", data, "--no-progress", "--quiet")
        assert result.returncode == code, (case, result.stderr)
        result.assert_clean_failure()
        for text in expected:
            assert text in result.stderr, (case, text, result.stderr)
    # The exception inside update points at the user's file and line.
    raising = write_algo(
        f"import numpy as np\nfrom rustybt_api import Algorithm, Indicator\n{ERRORS['raises'][0]}\n"
        "class A(Algorithm):\n    def initialize(self, ctx):\n        self.indicator(Boom, ctx.symbols[0])\n",
        name="raising",
    )
    result = run_rustybt("run", "--algo", raising, "--data", data, "--no-progress", "--quiet")
    assert f"{raising}:7" in result.stderr, result.stderr
    assert "2024-01-01T00:41:00Z" in result.stderr  # the simulated time of bar 40's close


SLOW = '''
import time
from rustybt_api import Algorithm, Indicator

class Sleepy(Indicator):
    def update(self, bar):
        time.sleep(0.0015)
        return bar.close

class A(Algorithm):
    def initialize(self, ctx):
        self.indicator(Sleepy, ctx.symbols[0])
'''


def test_slow_indicators_are_named_at_the_end_of_the_run(run_rustybt, write_algo, bars_csv):
    result = run_rustybt("run", "--algo", write_algo(SLOW), "--data", bars_csv(rows=60), "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "slow indicator: Sleepy() on TEST" in result.stderr
    (row,) = result.csv_rows("indicators.csv")
    assert row["calls"] == "60"
    assert float(row["mean_us"]) >= 1500
    assert row["slow"]


def test_mtf_trend_enters_only_at_five_minute_closes(run_rustybt):
    result = run_rustybt("run", "--algo", ROOT / "algorithms" / "mtf_trend.py", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    fills = result.csv_rows("fills.csv")
    assert result.metrics()["num_trades"] > 5
    # Decisions are taken when a 5-minute bar closes; the order fills at the next 1-minute open,
    # which is the open of the next 5-minute bucket.
    assert all(int(f["time"][14:16]) % 5 == 0 for f in fills), [f["time"] for f in fills][:10]
    rows = {r["indicator"]: r for r in result.csv_rows("indicators.csv")}
    structure = rows["MarketStructure(swing=2) on SYNA @1h"]
    assert structure["calls"] == "168"  # one per closed hour of the 7-day sample
    assert rows["RSI(14) on SYNA @5m"]["calls"] == "2016"
