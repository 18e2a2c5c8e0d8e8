"""Moving-average crossover on every loaded symbol, long only, on built-in indicators.

Buys ``quantity`` when the fast simple moving average of closes crosses above the slow one and
the position is flat; closes the position when it crosses back below. Decisions are taken at a
bar's close and fill at the next bar's open (the engine guarantees it).

The engine computes both SMAs in Rust as bars close (equal to TA-Lib's SMA); the algorithm only
reads ``.value``. ``sma_cross_arrays.py`` is the same strategy computed in Python over the
zero-copy arrays: same trades, same equity.
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
        # Per symbol: [symbol, fast SMA, slow SMA, bars seen, previous difference, long?]
        self.books = [
            [s, self.indicator("SMA", s, period=self.fast), self.indicator("SMA", s, period=self.slow), 0, None, False]
            for s in ctx.symbols
        ]

    def on_tick(self, ctx: Context) -> None:
        for book in self.books:
            symbol, fast, slow, seen, previous, long = book
            n = len(slow)
            if n == seen:
                continue  # no new bar of this symbol at this tick
            book[3] = n
            if not slow.ready:
                continue
            diff = fast.value - slow.value
            if -TIE < diff < TIE:
                diff = 0.0
            book[4] = diff
            if previous is None:
                continue
            if diff > 0 and previous <= 0 and not long:
                self.buy(symbol, self.quantity)
                book[5] = True
            elif diff < 0 and previous >= 0 and long:
                self.close(symbol)
                book[5] = False
