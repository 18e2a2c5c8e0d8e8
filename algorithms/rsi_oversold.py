"""RSI mean reversion with TA-Lib on the engine's zero-copy close arrays.

Buys when TA-Lib's RSI drops below ``oversold`` while flat; sells when it rises above
``overbought``. RSI is computed over the last ``lookback`` closes only, so each tick costs the
same however long the history grows.
"""

from __future__ import annotations

from decimal import Decimal

import talib

from rustybt_api import Algorithm, Context


class RsiOversold(Algorithm):
    period = 14
    oversold = 30.0
    overbought = 70.0
    lookback = 200
    quantity = Decimal("5")

    def initialize(self, ctx: Context) -> None:
        self.symbol = ctx.symbols[0]
        self.log.info("trading %s with RSI(%d)", self.symbol, self.period)

    def on_tick(self, ctx: Context) -> None:
        bars = ctx.history(self.symbol)
        if len(bars) <= self.period:
            return
        rsi = talib.RSI(bars.close[-self.lookback :], timeperiod=self.period)[-1]
        position = ctx.portfolio.position(self.symbol)
        if rsi < self.oversold and position == 0:
            self.buy(self.symbol, self.quantity)
        elif rsi > self.overbought and position > 0:
            self.close(self.symbol)
