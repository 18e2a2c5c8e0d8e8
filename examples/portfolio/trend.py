"""Long-only trend: hold the symbol while its fast EMA is above the slow one.

Sized to put ``fraction`` of the strategy's own equity (its sub-portfolio, not the whole
book's) into the position, so it grows and shrinks with the capital the allocator gives it.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from rustybt_api import Algorithm, Context


class Trend(Algorithm):
    fast = 20
    slow = 120
    fraction = Decimal("0.9")

    def initialize(self, ctx: Context) -> None:
        self.symbol = ctx.symbols[0]
        self.fast_ema = self.indicator("EMA", self.symbol, period=self.fast)
        self.slow_ema = self.indicator("EMA", self.symbol, period=self.slow)

    def on_tick(self, ctx: Context) -> None:
        if not self.slow_ema.ready:
            return
        position = ctx.portfolio.position(self.symbol)
        if self.fast_ema.value > self.slow_ema.value and position == 0:
            price = ctx.history(self.symbol).decimal("close")
            quantity = (ctx.portfolio.equity * self.fraction / price).quantize(Decimal(1), ROUND_DOWN)
            if quantity > 0:
                self.buy(self.symbol, quantity)
        elif self.fast_ema.value < self.slow_ema.value and position > 0:
            self.close(self.symbol)
