"""Cross-sectional momentum: hold the top decile of symbols, rebalanced on a schedule.

Every ``every`` (30 minutes by default) a scheduled callback reads the latest close of every
symbol from the cross-sectional view (``ctx.latest("close")``, one zero-copy array), ranks the
momentum since the previous rebalance with NumPy and holds the top decile, equally weighted: a
name entering the top is bought for the same notional, a name leaving it is sold, and a name that
stays is left alone. No Python runs per bar: the engine calls the callback only when it is due,
and the orders of a rebalance cross into the engine in one call (``self.order_many``).
With ``every = "bar"`` it rebalances at every tick instead (for daily bars).

It is the Python twin of the Rust strategy in ``examples/rust_momentum.rs``: on the same data
both place identical orders and end with identical equity (``tests/python/test_rust_strategy.py``),
which is how ``benches/cross_section.py`` measures what the Python bridge costs.

    rustybt run --algo examples/momentum_top_decile.py --data bars.csv --cash 1000000
"""

from __future__ import annotations

import numpy as np

from rustybt_api import Algorithm


class TopDecileMomentum(Algorithm):
    every = "30m"
    top = 0.1
    """Fraction of the symbols held."""
    invested = 0.4
    """Fraction of the starting cash spread over the held symbols."""

    def initialize(self, ctx):
        self.close = ctx.latest("close")  # a live view: the newest closes at every tick
        n = len(ctx.symbols)
        self.count = min(max(int(np.ceil(n * float(self.top))), 1), n)
        self.notional = float(self.invested) * float(ctx.portfolio.cash) / self.count
        self.previous = None
        self.held = np.zeros(n)
        if self.every != "bar":
            self.schedule(self.rebalance, every=self.every)

    def on_tick(self, ctx):
        if self.every == "bar":
            self.rebalance(ctx)

    def rebalance(self, ctx):
        close = self.close.copy()
        previous, self.previous = self.previous, close
        if previous is None:
            return
        momentum = close / previous - 1.0
        if np.isnan(momentum).any():
            return  # a symbol without bars yet
        # Highest momentum first; ties in symbol order (a stable sort).
        top = np.argsort(-momentum, kind="stable")[: self.count]
        # Names that stay in the top keep their quantity; names that enter get the notional.
        target = np.zeros_like(close)
        target[top] = np.where(self.held[top] > 0, self.held[top], np.floor(self.notional / close[top]))
        # One market order per changed name, in ctx.symbols order, placed in one call.
        self.order_many((target - self.held).astype(np.int64))
        self.held = target
