"""Capital allocators written in Python: subclass ``Allocator`` and name it in the portfolio
file, ``allocator = "module:Class"`` (the module is imported from the portfolio file's folder,
the project root or ``sys.path``; ``[portfolio] params`` are passed to the constructor)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping, Sequence


@dataclass(frozen=True)
class AllocationState:
    """What the book knows at a rebalance, per strategy id (the running strategies only)."""

    time: _dt.datetime
    strategies: Sequence[str]
    base_weights: Mapping[str, Decimal]  # the portfolio file's weights
    returns: Mapping[str, Sequence[Decimal]]  # completed daily returns, oldest first
    drawdown: Mapping[str, Decimal]  # below the peak of its unit value, 0 at a peak
    equity: Mapping[str, Decimal]  # the strategy's capital now


class Allocator:
    """Base class of a capital allocator.

    ``weights(state)`` returns a mapping from every strategy id in ``state.strategies`` to a
    raw weight: a ``Decimal`` or an ``int`` of zero or more (floats are refused: they are
    inexact). The book then applies each strategy's ``min_weight``/``max_weight`` and scales
    the weights to sum to exactly 1, and moves capital so each strategy holds its share of
    the book's equity. Called at each rebalance, with the engine between clock steps.
    """

    def weights(self, state: AllocationState) -> Mapping[str, Decimal]:
        raise NotImplementedError(f"{type(self).__name__} must define weights(state)")
