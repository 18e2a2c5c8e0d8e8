"""Benchmark of the report: one round trip every ``every`` bars (20,000 trades over 1M bars),
alternately long and short, and a recorded value every ``record_every`` bars."""

from rustybt_api import Algorithm, Context


class ReportTrades(Algorithm):
    every = 50
    record_every = 100

    def initialize(self, ctx: Context) -> None:
        self.ticks = 0
        self.symbol = ctx.symbols[0]

    def on_tick(self, ctx: Context) -> None:
        self.ticks += 1
        phase = self.ticks % self.every
        if phase == 0:
            if (self.ticks // self.every) % 2:
                self.buy(self.symbol, 1)
            else:
                self.sell(self.symbol, 1)
        elif phase == self.every // 2:
            self.close(self.symbol)
        if self.ticks % self.record_every == 0:
            self.record(f"{self.symbol}.phase", self.ticks // self.record_every % 7)
