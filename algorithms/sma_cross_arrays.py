"""Moving-average crossover on every loaded symbol, long only, computed in Python.

The same strategy as ``sma_cross.py`` (which reads two built-in SMAs): it shows how to work
directly on the zero-copy history arrays, and is the "Python per bar" benchmark.

Buys ``quantity`` when the fast simple moving average of closes crosses above the slow one and
the position is flat; closes the position when it crosses back below. Decisions are taken at a
bar's close and fill at the next bar's open (the engine guarantees it).

The means are kept as running sums over the engine's zero-copy close arrays: each tick reads
the newest close and the ones leaving the windows, so a tick costs the same at bar 100 and at
bar 1,000,000.
"""

from __future__ import annotations

import math

from rustybt_api import Algorithm, Context

# Means of 2-decimal prices differ by at least 1/3000 of a cent when they differ at all; a
# smaller float difference is rounding noise and is treated as a tie.
TIE = 1e-9
# Running float sums drift by rounding; recompute them exactly this often.
RESYNC_EVERY = 10_000


class SmaCrossArrays(Algorithm):
    fast = 10
    slow = 30
    quantity = 10

    def initialize(self, ctx: Context) -> None:
        if not 0 < self.fast < self.slow:
            raise ValueError(f"need 0 < fast < slow, got fast={self.fast} slow={self.slow}")
        # Per symbol: [bars seen, fast sum, slow sum, previous difference or None, long?]
        self.state = {s: [0, 0.0, 0.0, None, False] for s in ctx.symbols}

    def on_tick(self, ctx: Context) -> None:
        fast, slow = self.fast, self.slow
        for symbol, state in self.state.items():
            bars = ctx.history(symbol)
            n = len(bars)
            if n == state[0]:
                continue  # no new bar of this symbol at this tick
            state[0] = n
            close = bars.close
            if n % RESYNC_EVERY == 0 or n <= slow:
                state[1] = math.fsum(close[max(0, n - fast) :].tolist())
                state[2] = math.fsum(close[max(0, n - slow) :].tolist())
            else:
                newest = close.item(n - 1)
                state[1] += newest - close.item(n - 1 - fast)
                state[2] += newest - close.item(n - 1 - slow)
            if n < slow:
                continue
            diff = state[1] / fast - state[2] / slow
            if -TIE < diff < TIE:
                diff = 0.0
            previous = state[3]
            state[3] = diff
            if previous is None:
                continue
            if diff > 0 and previous <= 0 and not state[4]:
                self.buy(symbol, self.quantity)
                state[4] = True
            elif diff < 0 and previous >= 0 and state[4]:
                self.close(symbol)
                state[4] = False
