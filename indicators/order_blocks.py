"""Smart-money-concepts order blocks, on top of :mod:`market_structure`'s state machine.

Rules (bar ``t`` is the bar that closed; the structure rules are in ``market_structure``):

Creation
    On a bar with a bullish break (``bos`` or ``choch`` = +1) the leg that broke started at the
    latest confirmed swing low, pivot bar ``L`` (confirmed on bar ``t`` or earlier). The bullish
    order block is the last bearish candle (``close < open``) among bars ``L .. t-1``: the last
    selling before the impulse. Its zone is that candle's ``[low, high]``. If there is no swing
    low yet or no bearish candle in that range, no block is made. A candle becomes a block at
    most once (two breaks from the same leg do not duplicate it). Bearish blocks mirror this: the
    last bullish candle (``close > open``) among bars ``H .. t-1``, ``H`` being the latest
    confirmed swing high's pivot.

Life of a block (checked from the bar after its creation, before the bar's own structure step)
    A bullish block is *touched* on the first bar whose low trades into it (``low <= top``): that
    bar's ``signal`` is +1. It is *mitigated* (deactivated) on the first bar that closes below it
    (``close < bottom``). Both can happen on one bar: the signal fires (price did trade into an
    active block) and the block is gone at that bar's close. Bearish: touched when
    ``high >= bottom`` (``signal`` -1), mitigated when ``close > top``. At most ``max_blocks``
    blocks per side stay active; creating one more drops the oldest (after that bar's checks).

Outputs
    ``bull_top``/``bull_bottom``: the most recently created active bullish block (an older active
    one shows again when the newer is mitigated), NaN when none; ``bear_top``/``bear_bottom``
    likewise; ``signal``: +1 when some active bullish block is touched for the first time, -1 for
    bearish, 0 otherwise (and 0 when both sides are touched on one bar: it is ambiguous).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import numpy.typing as npt

from rustybt_api import Indicator

try:  # imported as `indicators.order_blocks` (repository root on sys.path)
    from .market_structure import (
        StructureTracker,
        positive_int,
        structure_arrays,
        validate_swing,
    )
except ImportError:  # imported as `order_blocks` (the indicators folder itself on sys.path)
    from market_structure import (  # type: ignore[no-redef]
        StructureTracker,
        positive_int,
        structure_arrays,
        validate_swing,
    )

if TYPE_CHECKING:
    from rustybt_api.types import Bar, Bars

__all__ = ["OrderBlocks", "first_index_at_or_below"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class _Block:
    top: float
    bottom: float
    touched: bool = False


@dataclass(frozen=True)
class _Candle:
    index: int
    high: float
    low: float


class OrderBlocks(Indicator):
    """Latest active bullish/bearish order block and their first-touch signal (module docstring).

    ``update`` is O(swing + max_blocks) per bar with bounded memory; ``calculate`` is a numpy
    pass over the whole series (O(n log n); a Python loop over created blocks only), so like
    ``MarketStructure.calculate`` it is for full-history research and cross-checks.
    """

    #: Bars on each side a swing high/low must strictly dominate (as in ``MarketStructure``).
    swing = 3
    #: Active blocks kept per side; the oldest is dropped beyond this.
    max_blocks = 3
    warm_up = 2 * 3 + 1  # the default's; __init__ sets it from the instance's swing
    window = None
    outputs = ("bull_top", "bull_bottom", "bear_top", "bear_bottom", "signal")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.swing = validate_swing(self.swing)
        self.warm_up = 2 * self.swing + 1  # type: ignore[misc]  # per instance: follows swing
        self.max_blocks = positive_int(self.max_blocks, "max_blocks")
        self._structure = StructureTracker(self.swing)
        self._bull: deque[_Block] = deque(maxlen=self.max_blocks)
        self._bear: deque[_Block] = deque(maxlen=self.max_blocks)
        self._last_bearish: _Candle | None = None
        self._last_bullish: _Candle | None = None
        self._last_bull_candle = -1  # candle index of the last bullish block made
        self._last_bear_candle = -1
        self._bars_seen = 0

    def update(self, bar: Bar) -> tuple[float, float, float, float, float]:
        index = self._bars_seen
        self._bars_seen += 1

        bull_touched = _check_blocks(
            self._bull,
            touched=lambda b: bar.low <= b.top,
            mitigated=lambda b: bar.close < b.bottom,
        )
        bear_touched = _check_blocks(
            self._bear,
            touched=lambda b: bar.high >= b.bottom,
            mitigated=lambda b: bar.close > b.top,
        )

        structure = self._structure
        direction = structure.step(bar.high, bar.low, bar.close)
        if direction > 0:
            candle = self._last_bearish
            leg_start = structure.swing_low_index
            if leg_start >= 0 and candle is not None and candle.index >= leg_start:
                if candle.index > self._last_bull_candle:
                    self._bull.append(_Block(candle.high, candle.low))  # maxlen drops the oldest
                    self._last_bull_candle = candle.index
        elif direction < 0:
            candle = self._last_bullish
            leg_start = structure.swing_high_index
            if leg_start >= 0 and candle is not None and candle.index >= leg_start:
                if candle.index > self._last_bear_candle:
                    self._bear.append(_Block(candle.high, candle.low))
                    self._last_bear_candle = candle.index

        # Only now: a block comes from the bars before its breaking bar, never the bar itself.
        if bar.close < bar.open:
            self._last_bearish = _Candle(index, bar.high, bar.low)
        elif bar.close > bar.open:
            self._last_bullish = _Candle(index, bar.high, bar.low)

        bull = self._bull[-1] if self._bull else None
        bear = self._bear[-1] if self._bear else None
        return (
            bull.top if bull is not None else math.nan,
            bull.bottom if bull is not None else math.nan,
            bear.top if bear is not None else math.nan,
            bear.bottom if bear is not None else math.nan,
            float(int(bull_touched) - int(bear_touched)),
        )

    def calculate(self, bars: Bars) -> tuple[FloatArray, ...]:
        open_ = np.asarray(bars.open, dtype=np.float64)
        high = np.asarray(bars.high, dtype=np.float64)
        low = np.asarray(bars.low, dtype=np.float64)
        close = np.asarray(bars.close, dtype=np.float64)
        structure = structure_arrays(high, low, close, self.swing)
        direction = structure.bos + structure.choch

        bull_top, bull_bottom, bull_touch = _side(
            breaks=direction > 0,
            candle_before=_latest_before(close < open_),
            leg_start=structure.swing_low_index,
            high=high,
            low=low,
            touch_values=low,  # touched: low <= top
            touch_level_is_top=True,
            mitigation_values=close,  # mitigated: close < bottom
            mitigation_level_is_top=False,
            negate=False,
            max_blocks=self.max_blocks,
        )
        bear_top, bear_bottom, bear_touch = _side(
            breaks=direction < 0,
            candle_before=_latest_before(close > open_),
            leg_start=structure.swing_high_index,
            high=high,
            low=low,
            touch_values=high,  # touched: high >= bottom  <=>  -high <= -bottom
            touch_level_is_top=False,
            mitigation_values=close,  # mitigated: close > top  <=>  -close < -top
            mitigation_level_is_top=True,
            negate=True,
            max_blocks=self.max_blocks,
        )
        signal = bull_touch.astype(np.float64) - bear_touch.astype(np.float64)
        return (bull_top, bull_bottom, bear_top, bear_bottom, signal)


def _check_blocks(
    blocks: deque[_Block],
    touched: Callable[[_Block], bool],
    mitigated: Callable[[_Block], bool],
) -> bool:
    """First touches and mitigations of one side's active blocks on this bar."""
    first_touch = False
    for block in list(blocks):
        if not block.touched and touched(block):
            block.touched = True
            first_touch = True
        if mitigated(block):
            blocks.remove(block)
    return first_touch


def _latest_before(mask: BoolArray) -> IntArray:
    """For each bar t, the latest index <= t - 1 where ``mask`` holds; -1 when none."""
    n = len(mask)
    latest = np.full(n, -1, dtype=np.int64)
    if n > 1:
        latest[1:] = np.maximum.accumulate(np.where(mask[:-1], np.arange(n - 1), -1))
    return latest


def first_index_at_or_below(
    values: FloatArray, starts: IntArray, thresholds: FloatArray, strict: bool
) -> IntArray:
    """For each query, the first ``i >= start`` with ``values[i] <= threshold`` (``<`` when
    ``strict``), or ``len(values)``. Binary lifting over a sparse table of range minima, all
    queries at once: O((n + queries) log n) instead of a scan per block."""
    n = len(values)
    starts = np.asarray(starts, dtype=np.int64)
    if n == 0 or len(starts) == 0:
        return np.full(len(starts), n, dtype=np.int64)
    clean = np.where(np.isnan(values), np.inf, values)  # NaN never satisfies, as in `update`
    thresholds = np.where(np.isnan(thresholds), -np.inf, thresholds)
    tables = [clean]  # tables[k][i] = min(values[i : i + 2**k])
    width = 1
    while width * 2 <= n:
        previous = tables[-1]
        tables.append(np.minimum(previous[:-width], previous[width:]))
        width *= 2
    position = starts.copy()
    for level in range(len(tables) - 1, -1, -1):
        width = 1 << level
        fits = position + width <= n
        block_min = tables[level][np.where(fits, position, 0)]
        clear = block_min >= thresholds if strict else block_min > thresholds
        position = np.where(fits & clear, position + width, position)
    return position


def _side(
    *,
    breaks: BoolArray,
    candle_before: IntArray,
    leg_start: IntArray,
    high: FloatArray,
    low: FloatArray,
    touch_values: FloatArray,
    touch_level_is_top: bool,
    mitigation_values: FloatArray,
    mitigation_level_is_top: bool,
    negate: bool,
    max_blocks: int,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """One side's displayed (top, bottom) per bar and its first-touch bars, vectorized."""
    n = len(breaks)
    created = np.flatnonzero(breaks)
    candles = candle_before[created]
    starts = leg_start[created]
    valid = (starts >= 0) & (candles >= starts)
    created, candles = created[valid], candles[valid]
    # candle_before never decreases with t, so "new candle" = differs from the previous block's.
    new = np.ones(len(candles), dtype=np.bool_)
    new[1:] = candles[1:] != candles[:-1]
    created, candles = created[new], candles[new]
    tops, bottoms = high[candles], low[candles]

    sign = -1.0 if negate else 1.0
    touch_level = tops if touch_level_is_top else bottoms
    mitigation_level = tops if mitigation_level_is_top else bottoms
    touched_at = first_index_at_or_below(
        sign * touch_values, created + 1, sign * touch_level, strict=False
    )
    mitigated_at = first_index_at_or_below(
        sign * mitigation_values, created + 1, sign * mitigation_level, strict=True
    )

    # Eviction depends on which older blocks are still active: a loop over blocks, not bars.
    stop = mitigated_at.copy()  # last bar of checks; the block shows on bars [created, stop)
    active: list[int] = []
    for k, bar in enumerate(created.tolist()):
        active = [j for j in active if mitigated_at[j] > bar]
        active.append(k)
        if len(active) > max_blocks:
            stop[active.pop(0)] = bar

    top_out = np.full(n, np.nan)
    bottom_out = np.full(n, np.nan)
    for k, bar in enumerate(created.tolist()):  # later blocks overwrite: most recent shows
        top_out[bar : stop[k]] = tops[k]
        bottom_out[bar : stop[k]] = bottoms[k]

    touches = np.zeros(n, dtype=np.bool_)
    hit = (touched_at <= stop) & (touched_at < n)
    touches[touched_at[hit]] = True
    return top_out, bottom_out, touches
