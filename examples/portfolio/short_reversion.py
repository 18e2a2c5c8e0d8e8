"""Short-side mean reversion: sell short when the close stretches ``entry`` standard
deviations above its rolling mean, cover when it comes back to the mean.

Uses the zero-copy close array of the engine (NumPy) for the rolling statistics.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from rustybt_api import Algorithm, Context


class ShortReversion(Algorithm):
    window = 60
    entry = 2.0
    fraction = Decimal("0.5")

    def initialize(self, ctx: Context) -> None:
        self.symbol = ctx.symbols[0]

    def on_tick(self, ctx: Context) -> None:
        bars = ctx.history(self.symbol)
        closes = bars.close
        if len(closes) < self.window:
            return
        recent = closes[-self.window :]
        mean, std = recent.mean(), recent.std()
        if std == 0:
            return
        z = (recent[-1] - mean) / std
        position = ctx.portfolio.position(self.symbol)
        if z > self.entry and position == 0:
            price = bars.decimal("close")  # exact, not through the float array
            quantity = (ctx.portfolio.equity * self.fraction / price).quantize(Decimal(1), ROUND_DOWN)
            if quantity > 0:
                self.sell(self.symbol, quantity)
        elif z < 0 and position < 0:
            self.close(self.symbol)
