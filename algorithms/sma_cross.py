"""Moving-average crossover on every loaded symbol, long only.

Buys ``quantity`` when the fast simple moving average of closes crosses above the slow one and
the position is flat; closes the position when it crosses back below. Decisions are taken at a
bar's close and fill at the next bar's open (the engine guarantees it).
"""

from __future__ import annotations

from rustybt_api import Algorithm, Context

# Means of 2-decimal prices differ by at least 1/3000 of a cent when they differ at all; a
# smaller float difference is rounding noise and is treated as a tie.
TIE = 1e-9


class SmaCross(Algorithm):
    fast = 10
    slow = 30
    quantity = 10

    def initialize(self, ctx: Context) -> None:
        if not 0 < self.fast < self.slow:
            raise ValueError(f"need 0 < fast < slow, got fast={self.fast} slow={self.slow}")
        self.previous: dict[str, float | None] = {s: None for s in ctx.symbols}
        self.seen: dict[str, int] = {s: 0 for s in ctx.symbols}
        self.long: dict[str, bool] = {s: False for s in ctx.symbols}

    def on_tick(self, ctx: Context) -> None:
        for symbol in ctx.symbols:
            bars = ctx.history(symbol)
            n = len(bars)
            if n == self.seen[symbol] or n < self.slow:
                continue  # no new bar of this symbol, or not enough history yet
            self.seen[symbol] = n
            close = bars.close
            diff = close[n - self.fast :].sum() / self.fast - close[n - self.slow :].sum() / self.slow
            if abs(diff) < TIE:
                diff = 0.0
            previous = self.previous[symbol]
            self.previous[symbol] = diff
            if previous is None:
                continue
            if diff > 0 and previous <= 0 and not self.long[symbol]:
                self.buy(symbol, self.quantity)
                self.long[symbol] = True
            elif diff < 0 and previous >= 0 and self.long[symbol]:
                self.close(symbol)
                self.long[symbol] = False
