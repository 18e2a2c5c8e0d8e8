"""Trend following on two timeframes: 5-minute entries filtered by the 1-hour structure.

* Filter (1 hour): the market structure of closed hourly bars (``indicators/market_structure``)
  must be bullish, and the hourly close above its 20-hour EMA (a built-in, on the 1h bars).
* Entry (5 minutes): when a 5-minute bar closes with its RSI(14) crossing back up through
  ``entry_rsi`` (a pullback ending inside the uptrend), buy ``quantity``.
* Exit: RSI above ``exit_rsi`` on a 5-minute close, or the hourly filter turning off.

Everything runs on the engine's timeframes: the hourly values come only from closed hours and
the 5-minute RSI only from closed 5-minute bars, so no decision sees an unfinished bar. Orders
placed at a 5-minute close fill at the next one-minute bar's open.
"""

from __future__ import annotations

import math

from rustybt_api import Algorithm, Context
from indicators.market_structure import MarketStructure


class MtfTrend(Algorithm):
    quantity = 10
    swing = 2
    trend_ema = 20
    entry_rsi = 40.0
    exit_rsi = 70.0

    def initialize(self, ctx: Context) -> None:
        self.books = {}
        for symbol in ctx.symbols:
            self.books[symbol] = {
                "structure": self.indicator(MarketStructure, symbol, timeframe="1h", swing=self.swing),
                "ema": self.indicator("EMA", symbol, timeframe="1h", timeperiod=self.trend_ema),
                "rsi": self.indicator("RSI", symbol, timeframe="5m", timeperiod=14),
                "seen": 0,  # 5-minute bars already acted on
                "previous_rsi": math.nan,
                "long": False,
            }

    def uptrend(self, ctx: Context, symbol: str) -> bool:
        book = self.books[symbol]
        hours = ctx.history(symbol, "1h")
        ema = book["ema"]
        if not (ema.ready and len(hours)):
            return False
        bullish = book["structure"].latest["trend"] > 0
        return bullish and hours.close[-1] > ema.value

    def on_tick(self, ctx: Context) -> None:
        for symbol, book in self.books.items():
            rsi = book["rsi"]
            if len(rsi) == book["seen"]:
                continue  # no 5-minute bar closed for this symbol at this tick
            book["seen"] = len(rsi)
            value, previous = rsi.value, book["previous_rsi"]
            book["previous_rsi"] = value
            if not rsi.ready or math.isnan(previous):
                continue
            trend = self.uptrend(ctx, symbol)
            if not book["long"] and trend and previous < self.entry_rsi <= value:
                self.buy(symbol, self.quantity)
                book["long"] = True
                self.log.info("%s long: RSI %.1f -> %.1f in an hourly uptrend", symbol, previous, value)
            elif book["long"] and (value > self.exit_rsi or not trend):
                self.close(symbol)
                book["long"] = False
                self.log.info("%s flat: RSI %.1f, hourly uptrend %s", symbol, value, trend)
