"""Benchmark: the cost of one indicator per bar, by kind (``--param kind=...``).

update: a custom Indicator with update(bar) returning the close (the bare call cost);
calculate: a custom Indicator whose calculate(bars) returns its 10-bar window's closes;
talib: ``talib.SMA`` by name (real TA-Lib over a 30-bar window); builtin: the Rust SMA(30).
"""

from rustybt_api import Algorithm, Indicator


class Passthrough(Indicator):
    def update(self, bar):
        return bar.close


class WindowCloses(Indicator):
    window = 10

    def calculate(self, bars):
        return bars.close


class IndicatorCost(Algorithm):
    kind = "update"

    def initialize(self, ctx):
        symbol = ctx.symbols[0]
        if self.kind == "update":
            self.handle = self.indicator(Passthrough, symbol)
        elif self.kind == "calculate":
            self.handle = self.indicator(WindowCloses, symbol)
        elif self.kind == "talib":
            self.handle = self.indicator("talib.SMA", symbol, timeperiod=30)
        elif self.kind == "builtin":
            self.handle = self.indicator("SMA", symbol, timeperiod=30)
        else:
            raise ValueError(f"unknown kind {self.kind}")

    def on_tick(self, ctx):
        pass
