"""ctx.latest(field): the latest bar of every symbol as one zero-copy, read-only array."""

from __future__ import annotations

import json

LATEST = '''
import json
import numpy as np
from rustybt_api import Algorithm

class Panel(Algorithm):
    def initialize(self, ctx):
        self.bad = []
        self.pointer = ctx.latest("close").ctypes.data
        self.first = ctx.latest("close").copy()
        self.leaders = []

    def on_tick(self, ctx):
        close = ctx.latest()
        if close.ctypes.data != self.pointer:
            self.bad.append("pointer moved")
        if close.flags.writeable:
            self.bad.append("writeable")
        times = ctx.latest("time_ns")
        counts = ctx.latest("bars")
        for i, symbol in enumerate(ctx.symbols):
            bars = ctx.history(symbol)
            if len(bars) == 0:
                if not (np.isnan(close[i]) and counts[i] == 0 and times[i] == np.iinfo(np.int64).min):
                    self.bad.append(("empty", symbol))
                continue
            for field in ("open", "high", "low", "close", "volume"):
                if ctx.latest(field)[i] != getattr(bars, field)[-1]:
                    self.bad.append((field, symbol, len(bars)))
            if times[i] != bars.time_ns[-1] or counts[i] != len(bars):
                self.bad.append(("time/bars", symbol))
        # One NumPy operation across symbols per tick.
        if not np.isnan(close).any():
            self.leaders.append(ctx.symbols[int(np.argmax(close))])

    def on_stop(self, ctx):
        try:
            ctx.latest("nope")
            error = None
        except ValueError as e:
            error = str(e)
        with open(OUT, "w") as f:
            json.dump({"bad": self.bad[:5], "first_all_nan": bool(np.isnan(self.first).all()),
                       "leaders": len(self.leaders), "error": error}, f)
'''


def test_latest_is_a_live_zero_copy_cross_section(run_rustybt, write_algo, bars_csv, tmp_path):
    import datetime as dt

    report = tmp_path / "report.json"
    a = bars_csv(rows=120, seed=1, name="AAA")
    b = bars_csv(rows=60, seed=2, name="BBB", start=dt.datetime(2024, 1, 1, 0, 30, tzinfo=dt.timezone.utc))
    c = bars_csv(rows=40, seed=3, name="CCC", interval=dt.timedelta(minutes=3))
    result = run_rustybt(
        "run", "--algo", write_algo(LATEST.replace("OUT", repr(str(report)))),
        "--data", a, "--data", b, "--data", c, "--no-progress", "--quiet",
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(report.read_text())
    assert got["bad"] == []
    assert got["first_all_nan"] is True
    assert got["leaders"] > 0
    assert "unknown field `nope`" in got["error"]
