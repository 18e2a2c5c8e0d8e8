"""Benchmark: many orders per bar across symbols (the cost of an order event).

At every tick, for every symbol, places ``per_symbol`` limit orders around the close (half of
them marketable, so they fill on the next bar, half resting until they expire at the end of
the next bar by GTD) and a market order every tenth bar: a steady stream of submit, accept,
fill, cancel and expiry events through the book.
"""

from decimal import Decimal

from rustybt_api import Algorithm

CENT = Decimal("0.01")


class OrderHeavy(Algorithm):
    per_symbol = 4

    def initialize(self, ctx):
        self.ticks = 0

    def on_tick(self, ctx):
        self.ticks += 1
        minute = 60 * 10**9
        for symbol in ctx.symbols:
            close = ctx.history(symbol).decimal("close")
            for i in range(self.per_symbol):
                offset = CENT * (i + 1)
                if i % 2:
                    self.buy(symbol, 1, limit=close + offset, good_till=ctx.time_ns + 2 * minute)
                else:
                    self.sell(symbol, 1, limit=close + offset, good_till=ctx.time_ns + 2 * minute)
            if self.ticks % 10 == 0:
                self.close(symbol)
