"""Market-neutral pair: long the cheap leg and short the rich one when the spread of their
log prices stretches ``entry`` standard deviations from its rolling mean; flat when it
reverts. Equal notional on both legs, so the book's net exposure stays near zero.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import numpy as np

from rustybt_api import Algorithm, Context


class Pair(Algorithm):
    window = 240
    entry = 2.0
    exit = 0.5
    fraction = Decimal("0.4")  # of equity, per leg

    def initialize(self, ctx: Context) -> None:
        self.a, self.b = ctx.symbols[0], ctx.symbols[1]
        self.side = 0  # +1: long a / short b; -1: the reverse

    def on_tick(self, ctx: Context) -> None:
        bars_a, bars_b = ctx.history(self.a), ctx.history(self.b)
        a, b = bars_a.close, bars_b.close
        n = min(len(a), len(b))
        if n < self.window:
            return
        spread = np.log(a[n - self.window : n]) - np.log(b[n - self.window : n])
        std = spread.std()
        if std == 0:
            return
        z = (spread[-1] - spread.mean()) / std
        if self.side == 0 and abs(z) > self.entry:
            self.side = -1 if z > 0 else 1  # spread rich: short a, long b
            self.enter(ctx, bars_a.decimal("close"), bars_b.decimal("close"))
        elif self.side != 0 and abs(z) < self.exit:
            self.close(self.a)
            self.close(self.b)
            self.side = 0

    def enter(self, ctx: Context, price_a: Decimal, price_b: Decimal) -> None:
        notional = ctx.portfolio.equity * self.fraction
        qty_a = (notional / price_a).quantize(Decimal(1), ROUND_DOWN)
        qty_b = (notional / price_b).quantize(Decimal(1), ROUND_DOWN)
        if qty_a == 0 or qty_b == 0:
            return
        if self.side > 0:
            self.buy(self.a, qty_a)
            self.sell(self.b, qty_b)
        else:
            self.sell(self.a, qty_a)
            self.buy(self.b, qty_b)
