"""Channel breakout with a bracket: every entry carries its own take-profit and stop-loss.

When a bar closes above the highest high of the ``channel`` bars before it, buy ``quantity``
with a bracket: a take-profit limit ``reward`` ATRs above the close and a stop-loss ``risk`` ATRs
below it. The engine activates both exits once the entry fills and cancels one when the other
fills; the algorithm only watches the order events to know when it is flat again.

Prices are exact: the targets are rounded to the cent as ``Decimal`` before they are sent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from rustybt_api import Algorithm, Context, OrderEvent

CENT = Decimal("0.01")


def cents(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(CENT, rounding=ROUND_HALF_UP)


class BracketBreakout(Algorithm):
    channel = 30
    atr_period = 14
    reward = 3.0
    risk = 1.5
    quantity = 10

    def initialize(self, ctx: Context) -> None:
        self.atr = {s: self.indicator("ATR", s, timeperiod=self.atr_period) for s in ctx.symbols}
        self.busy: dict[str, set[int]] = {s: set() for s in ctx.symbols}  # open bracket orders
        self.exits = {"take_profit": 0, "stop_loss": 0}

    def on_order(self, event: OrderEvent) -> None:
        orders = self.busy[event.symbol]
        if event.status in ("filled", "cancelled", "expired", "rejected"):
            if event.status == "filled" and event.order.order_type != "market":
                self.exits["take_profit" if event.order.order_type == "limit" else "stop_loss"] += 1
            orders.discard(event.order_id)

    def on_tick(self, ctx: Context) -> None:
        for symbol, atr in self.atr.items():
            bars = ctx.history(symbol)
            n = len(bars)
            if n <= self.channel or not atr.ready or self.busy[symbol] or len(self.open_orders(symbol)):
                continue
            if ctx.portfolio.position(symbol) != 0:
                continue
            high = bars.high[n - 1 - self.channel : n - 1].max()
            close = bars.close[-1]
            if close > high:
                entry, take, stop = self.bracket(
                    symbol,
                    "buy",
                    self.quantity,
                    take_profit=cents(close + self.reward * atr.value),
                    stop_loss=cents(max(close - self.risk * atr.value, 0.01)),
                )
                self.busy[symbol] = {entry.id, take.id, stop.id}

    def on_stop(self, ctx: Context) -> None:
        self.log.info("exits: %s", self.exits)
