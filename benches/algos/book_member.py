"""A member of the portfolio benchmark's book: every `every` ticks (at its own `offset`), it
holds 10 shares of the symbol with the highest latest close over its 20-bar-ago close, read
from the cross-section (one NumPy array per look)."""

from __future__ import annotations

import numpy as np

from rustybt_api import Algorithm, Context


class BookMember(Algorithm):
    every = 30
    offset = 0

    def initialize(self, ctx: Context) -> None:
        self.ticks = 0
        self.held: str | None = None
        self.previous: np.ndarray | None = None

    def on_tick(self, ctx: Context) -> None:
        self.ticks += 1
        if self.ticks % self.every != self.offset:
            return
        latest = ctx.latest("close")
        if self.previous is not None and len(self.previous) == len(latest):
            best = ctx.symbols[int(np.argmax(latest / self.previous))]
            if best != self.held:
                if self.held is not None:
                    self.close(self.held)
                self.buy(best, 10)
                self.held = best
        self.previous = latest.copy()
