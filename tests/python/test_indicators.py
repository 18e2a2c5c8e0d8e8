"""Built-in indicators from Python: TA-Lib equality, zero-copy values, no lookahead, errors."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT

COMPARE_ALGO = '''
import json
import numpy as np
import talib
from rustybt_api import Algorithm

CASES = [
    ("SMA", {"period": 10}, lambda b: talib.SMA(b.close, timeperiod=10)),
    ("EMA", {"timeperiod": 20}, lambda b: talib.EMA(b.close, timeperiod=20)),
    ("RSI", {"timeperiod": 14}, lambda b: talib.RSI(b.close, timeperiod=14)),
    ("ATR", {"timeperiod": 14}, lambda b: talib.ATR(b.high, b.low, b.close, timeperiod=14)),
    ("MACD", {}, lambda b: talib.MACD(b.close)[0]),
    ("BBANDS", {"timeperiod": 20}, lambda b: talib.BBANDS(b.close, timeperiod=20)[1]),
    ("ADX", {"timeperiod": 14}, lambda b: talib.ADX(b.high, b.low, b.close, timeperiod=14)),
    ("OBV", {}, lambda b: talib.OBV(b.close, b.volume)),
]

class Compare(Algorithm):
    report = ""

    def initialize(self, ctx):
        self.symbol = ctx.symbols[0]
        self.handles = [(n, self.indicator(n, self.symbol, **p), f) for n, p, f in CASES]
        self.checks = {"lengths_ok": True, "pointer_stable": True, "max_rel_error": {}, "ready_at": {}}
        self.pointers = {}
        self.tick = 0

    def on_tick(self, ctx):
        self.tick += 1
        bars = ctx.history(self.symbol)
        for name, handle, _ in self.handles:
            values = handle.values
            if len(values) != len(bars) or len(handle) != len(bars):
                self.checks["lengths_ok"] = False
            pointer = values.ctypes.data
            if self.pointers.setdefault(name, pointer) != pointer:
                self.checks["pointer_stable"] = False
            if handle.ready and name not in self.checks["ready_at"]:
                self.checks["ready_at"][name] = len(bars)
            assert values.flags.writeable is False
            same = values[-1] == handle.value or (np.isnan(values[-1]) and np.isnan(handle.value))
            assert same, (name, values[-1], handle.value)

    def on_stop(self, ctx):
        bars = ctx.history(self.symbol)
        for name, handle, reference in self.handles:
            expected = reference(bars)
            got = handle.values
            nan_match = bool(np.array_equal(np.isnan(expected), np.isnan(got)))
            mask = ~np.isnan(expected)
            denominator = np.maximum(np.abs(expected[mask]), 1e-12)
            error = float(np.max(np.abs(got[mask] - expected[mask]) / denominator)) if mask.any() else 0.0
            self.checks["max_rel_error"][name] = [error, nan_match, int(np.argmax(mask))]
        self.checks["base"] = type(self.handles[0][1].values.base).__name__
        self.checks["outputs"] = self.handles[4][1].output_names
        self.checks["latest_keys"] = sorted(self.handles[5][1].latest)
        with open(self.report, "w") as f:
            json.dump(self.checks, f)
'''


def test_builtin_indicators_equal_talib_and_are_zero_copy(run_rustybt, write_algo, bars_csv, tmp_path):
    report = tmp_path / "compare.json"
    data = bars_csv(rows=800, seed=21, volatility=0.003)
    result = run_rustybt("run", "--algo", write_algo(COMPARE_ALGO), "--data", data, "--param", f"report={report}")
    assert result.returncode == 0, result.stderr
    checks = json.loads(report.read_text())
    assert checks["lengths_ok"] and checks["pointer_stable"]
    assert checks["base"] == "OutputBuffer"
    assert checks["outputs"] == ["macd", "macdsignal", "macdhist"]
    assert checks["latest_keys"] == ["lowerband", "middleband", "upperband"]
    for name, (error, nan_match, first_value) in checks["max_rel_error"].items():
        assert nan_match, f"{name}: NaN where TA-Lib has none, or the reverse"
        assert error <= 1e-9, f"{name}: relative error {error}"
        # ready flips exactly at TA-Lib's first value
        assert checks["ready_at"][name] == first_value + 1, name


def test_sma_cross_on_builtins_matches_the_python_version(run_rustybt, bars_csv, tmp_path):
    data = bars_csv(rows=5000, seed=11, volatility=0.002)
    python = run_rustybt("run", "--algo", ROOT / "algorithms" / "sma_cross_arrays.py", "--data", data)
    builtin = run_rustybt("run", "--algo", ROOT / "algorithms" / "sma_cross.py", "--data", data)
    assert python.returncode == 0 and builtin.returncode == 0, builtin.stderr
    assert python.metrics()["final_equity"] == builtin.metrics()["final_equity"]
    assert python.metrics()["num_trades"] == builtin.metrics()["num_trades"]


@pytest.mark.parametrize(
    "call, message",
    [
        ('self.indicator("NOPE", ctx.symbols[0])', "unknown indicator"),
        ('self.indicator("SMA", ctx.symbols[0], bogus=3)', "bogus"),
        ('self.indicator("SMA", ctx.symbols[0], period="x")', "must be a number"),
        ('self.indicator("SMA", ctx.symbols[0]).output("nope")', "has no output `nope`"),
        ('self.indicator("SMA", "ZZZ")', "unknown symbol `ZZZ`"),
    ],
)
def test_indicator_errors_are_clear(run_rustybt, write_algo, bars_csv, call, message):
    algo = write_algo(
        f"""
        from rustybt_api import Algorithm

        class Bad(Algorithm):
            def initialize(self, ctx):
                {call}
        """
    )
    result = run_rustybt("run", "--algo", algo, "--data", bars_csv(rows=20))
    assert result.returncode == 1
    result.assert_clean_failure()
    assert message in result.stderr.lower() or message in result.stderr
