"""Smart-money-concepts market structure: swing pivots, break of structure, change of character.

The state machine lives here once, in two equivalent forms that ``OrderBlocks`` reuses:
:class:`StructureTracker` (incremental, one bar at a time) and :func:`structure_arrays`
(vectorized over a whole series). Both follow these rules, bar ``t`` being the bar that closed:

Swing pivots
    Bar ``j`` is a *swing high* when ``high[j]`` is strictly greater than each of the ``swing``
    highs before it and the ``swing`` highs after it. Ties are not pivots: with two equal highs
    in the window neither bar is a swing high (a flat double top gives no level until a strictly
    higher or lower bar resolves it). Bars with fewer than ``swing`` bars before them are never
    pivots. A pivot needs the ``swing`` bars after it, so it is *confirmed* on bar ``j + swing``
    and invisible before that bar closes: nothing here ever looks ahead. Swing lows mirror this
    with ``low`` and "strictly lower".

Breaks (measured on closes, never wicks)
    On each bar the close is first compared with the latest swing high and swing low confirmed
    on an *earlier* bar (``<= t - 1``); only then are the pivots confirmed by bar ``t`` added. A
    bullish break is ``close[t] > level`` of that swing high, a bearish break ``close[t] < level``
    of that swing low. Each level can be broken once: after its break it stays the displayed
    ``swing_high`` but cannot produce another event until a newer swing high replaces it. Only the
    latest level of each side is live; an older unbroken one is forgotten when replaced. (A newly
    confirmed pivot can never be broken on its confirmation bar anyway: every bar after the pivot
    has a lower high, hence a lower close.) With valid bars a bar cannot break both sides; if
    inconsistent bars (close outside [low, high]) do, both levels are spent and no event is
    reported.

Trend, BOS and CHoCH
    ``trend`` starts at 0 (undetermined). The first break sets it to the break's direction and
    is reported as ``bos`` (there is no character to change yet). Afterwards a break in the
    trend's direction is a break of structure (``bos`` = +1/-1) and a break against it is a change
    of character (``choch`` = +1/-1) that flips ``trend``. So ``trend`` is always the direction of
    the latest break, and ``bos``/``choch`` are never both non-zero on one bar.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rustybt_api import Indicator

if TYPE_CHECKING:
    from rustybt_api.types import Bar, Bars

__all__ = [
    "MarketStructure",
    "StructureArrays",
    "StructureTracker",
    "latest_confirmed_pivot",
    "pivot_mask",
    "positive_int",
    "structure_arrays",
    "validate_swing",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1; a clear error beats an opaque numpy failure deep in a backtest."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return number


def validate_swing(swing: Any) -> int:
    return positive_int(swing, "swing")


class StructureTracker:
    """The incremental state machine (see the module docstring), O(swing) per bar.

    Memory is bounded: the last ``2 * swing + 1`` highs and lows plus a few scalars.
    After :meth:`step` the public attributes describe the state as of the bar just given.
    """

    def __init__(self, swing: int) -> None:
        self.swing = validate_swing(swing)
        self._highs: deque[float] = deque(maxlen=2 * self.swing + 1)
        self._lows: deque[float] = deque(maxlen=2 * self.swing + 1)
        self._bars_seen = 0
        #: Latest confirmed swing high (NaN until the first) and the bar index of its pivot.
        self.swing_high = math.nan
        self.swing_high_index = -1
        self._swing_high_broken = False
        self.swing_low = math.nan
        self.swing_low_index = -1
        self._swing_low_broken = False
        #: +1 bullish, -1 bearish, 0 undetermined.
        self.trend = 0
        #: Events of the last bar: +1/-1/0.
        self.bos = 0
        self.choch = 0

    def step(self, high: float, low: float, close: float) -> int:
        """Advances one closed bar; returns the direction of its break (+1, -1, or 0)."""
        index = self._bars_seen
        self._bars_seen += 1

        # Breaks are judged against levels confirmed on earlier bars (see module docstring).
        breaks_up = not self._swing_high_broken and close > self.swing_high
        breaks_down = not self._swing_low_broken and close < self.swing_low
        if breaks_up:
            self._swing_high_broken = True
        if breaks_down:
            self._swing_low_broken = True
        direction = 0
        if breaks_up != breaks_down:
            direction = 1 if breaks_up else -1
        self.bos = self.choch = 0
        if direction:
            if self.trend == -direction:
                self.choch = direction
            else:
                self.bos = direction
            self.trend = direction

        self._highs.append(high)
        self._lows.append(low)
        if len(self._highs) == 2 * self.swing + 1:
            self._confirm_pivots(index - self.swing)
        return direction

    def _confirm_pivots(self, center_index: int) -> None:
        """Checks the bar ``swing`` bars back, now that its right-hand neighbours are known."""
        s = self.swing
        highs, lows = self._highs, self._lows
        peak, trough = highs[s], lows[s]
        # `all(x > nan)` is False, so NaN bars never make pivots (as in the numpy version).
        if all(peak > highs[i] for i in range(len(highs)) if i != s):
            self.swing_high = peak
            self.swing_high_index = center_index
            self._swing_high_broken = False
        if all(trough < lows[i] for i in range(len(lows)) if i != s):
            self.swing_low = trough
            self.swing_low_index = center_index
            self._swing_low_broken = False


@dataclass(frozen=True)
class StructureArrays:
    """Per-bar state of the state machine, as :class:`StructureTracker` has it after each bar."""

    swing_high: FloatArray
    #: Bar index of the pivot behind ``swing_high`` (-1 when none).
    swing_high_index: IntArray
    swing_low: FloatArray
    swing_low_index: IntArray
    trend: FloatArray
    bos: FloatArray
    choch: FloatArray


def pivot_mask(values: FloatArray, swing: int, highs: bool) -> BoolArray:
    """``mask[j]``: ``values[j]`` is strictly above (``highs``) or below every one of the ``swing``
    values on each side. Vectorized with a sliding window; O(n * swing)."""
    n = len(values)
    mask = np.zeros(n, dtype=np.bool_)
    width = 2 * swing + 1
    if n < width:
        return mask
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    center = windows[:, swing]
    left, right = windows[:, :swing], windows[:, swing + 1 :]
    # NaN propagates through max/min and compares False: NaN never makes or sits beside a pivot.
    if highs:
        mask[swing : n - swing] = (center > left.max(axis=1)) & (center > right.max(axis=1))
    else:
        mask[swing : n - swing] = (center < left.min(axis=1)) & (center < right.min(axis=1))
    return mask


def latest_confirmed_pivot(mask: BoolArray, swing: int) -> IntArray:
    """For each bar ``t``, the index of the latest pivot confirmed by ``t`` (pivot ``j`` is
    confirmed on bar ``j + swing``); -1 before the first."""
    n = len(mask)
    pivots = np.flatnonzero(mask).astype(np.int64)
    latest = np.full(n, -1, dtype=np.int64)
    latest[pivots + swing] = pivots  # pivots + swing <= n - 1 by construction of the mask
    return np.maximum.accumulate(latest) if n else latest


def _first_breaks(
    close: FloatArray, values: FloatArray, latest: IntArray, above: bool
) -> BoolArray:
    """Bars whose close is the first to cross the level confirmed on an earlier bar."""
    n = len(close)
    live = np.full(n, -1, dtype=np.int64)
    live[1:] = latest[:-1]  # levels confirmed on bar t - 1 or before
    level = np.where(live >= 0, values[np.maximum(live, 0)], np.nan)
    crossed = close > level if above else close < level
    positions = np.flatnonzero(crossed)
    segment = live[positions]  # one segment per level: each level breaks at most once
    first = np.ones(len(positions), dtype=np.bool_)
    first[1:] = segment[1:] != segment[:-1]
    breaks = np.zeros(n, dtype=np.bool_)
    breaks[positions[first]] = True
    return breaks


def structure_arrays(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, swing: int
) -> StructureArrays:
    """The whole state machine over a series, vectorized: O(n * swing) with no Python loop."""
    swing = validate_swing(swing)
    high = np.asarray(high, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    close = np.asarray(close, dtype=np.float64)
    n = len(close)

    high_index = latest_confirmed_pivot(pivot_mask(high, swing, highs=True), swing)
    low_index = latest_confirmed_pivot(pivot_mask(low, swing, highs=False), swing)
    swing_high = np.where(high_index >= 0, high[np.maximum(high_index, 0)], np.nan)
    swing_low = np.where(low_index >= 0, low[np.maximum(low_index, 0)], np.nan)

    up = _first_breaks(close, high, high_index, above=True)
    down = _first_breaks(close, low, low_index, above=False)
    both = up & down  # only with inconsistent bars: both levels spent, no event
    direction = up.astype(np.int64) - down.astype(np.int64)
    direction[both] = 0

    events = np.flatnonzero(direction)
    event_direction = direction[events]
    previous = np.concatenate(([0], event_direction[:-1]))
    against = previous == -event_direction  # opposite of the trend set by the previous break
    bos = np.zeros(n)
    choch = np.zeros(n)
    bos[events[~against]] = event_direction[~against]
    choch[events[against]] = event_direction[against]

    last_event = np.where(direction != 0, np.arange(n), -1)
    if n:
        last_event = np.maximum.accumulate(last_event)
    trend = np.where(last_event >= 0, direction[np.maximum(last_event, 0)], 0).astype(np.float64)
    return StructureArrays(swing_high, high_index, swing_low, low_index, trend, bos, choch)


class MarketStructure(Indicator):
    """Swing highs/lows, trend, break of structure and change of character (module docstring).

    Outputs: ``swing_high``/``swing_low`` (latest confirmed level, NaN before the first),
    ``trend`` (+1/-1/0), ``bos`` and ``choch`` (+1/-1 on the breaking bar, else 0).

    ``update`` is O(swing) per bar and is what the engine calls. ``calculate`` recomputes the
    whole series each call (O(n * swing) numpy), so with ``window = None`` running it per bar
    would be O(n^2); it is there for research on full histories and to cross-check ``update``.
    """

    #: Bars on each side a swing high/low must strictly dominate.
    swing = 3
    #: First pivot is confirmed at bar 2 * swing (0-based), i.e. after 2 * swing + 1 bars.
    warm_up = 2 * 3 + 1  # the default's; __init__ sets it from the instance's swing
    window = None
    outputs = ("swing_high", "swing_low", "trend", "bos", "choch")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.swing = validate_swing(self.swing)
        self.warm_up = 2 * self.swing + 1  # type: ignore[misc]  # per instance: follows swing
        self._tracker = StructureTracker(self.swing)

    def update(self, bar: Bar) -> tuple[float, float, float, float, float]:
        state = self._tracker
        state.step(bar.high, bar.low, bar.close)
        return (
            state.swing_high,
            state.swing_low,
            float(state.trend),
            float(state.bos),
            float(state.choch),
        )

    def calculate(self, bars: Bars) -> tuple[FloatArray, ...]:
        s = structure_arrays(bars.high, bars.low, bars.close, self.swing)
        return (s.swing_high, s.swing_low, s.trend, s.bos, s.choch)
