"""Slippage models written in Python: subclass ``SlippageModel`` and select it with
``self.set_slippage(MyModel())`` in ``initialize`` or ``[execution] slippage_model =
"module:Class"`` in the config file."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from decimal import Decimal

from .types import OrderType, Side


@dataclass(frozen=True)
class SlippageOrder:
    """The fill being priced. ``quantity`` is this fill's part of the order."""

    order_id: int
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    order_quantity: Decimal
    reference_price: Decimal  # the path price the order met, before slippage
    maker: bool  # a resting limit's fill


@dataclass(frozen=True)
class SlippageBar:
    """The bar the fill happens in (its prices are known to the engine, not to your
    algorithm yet: use them only to size the slippage)."""

    time: _dt.datetime  # the bar's open time
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class SlippageModel:
    """Base class of a slippage model.

    ``slippage(order, bar)`` returns the **adverse adjustment per unit**, a ``Decimal`` (or an
    ``int``) of zero or more: a buy fills at ``reference_price + adjustment``, a sell at
    ``reference_price - adjustment``. The engine rounds the price to the instrument's tick
    against you, keeps a limit order within its limit, and never lets a fill improve on the
    reference: a negative answer is clamped to zero (with one warning in the log). Floats are
    refused. The method is called once per fill, with the engine locked: it must not call
    the algorithm's API (``buy``, ``ctx.history``, ...).
    """

    def slippage(self, order: SlippageOrder, bar: SlippageBar) -> Decimal:
        raise NotImplementedError(f"{type(self).__name__} must define slippage(order, bar)")
