"""Series reduced for drawing: a chart never carries more than a few thousand points.

A long series is cut into buckets of consecutive points; each bucket keeps its first, lowest,
highest and last point (in time order), so every extreme and every jump stays visible and the
line's envelope is exactly the full series'. Indices passed in ``keep`` (the maximum-drawdown
peak and trough) are kept as well.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import numpy.typing as npt

#: Points per drawn series at most (4 per bucket).
MAX_POINTS = 4000


def reduce_indices(values: npt.NDArray[np.float64], max_points: int = MAX_POINTS,
                   keep: Iterable[int] = ()) -> npt.NDArray[np.int64]:
    """Sorted indices of the points to draw (all of them when the series is short)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    buckets = max(max_points // 4, 1)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:]
    # min/max per bucket by reduceat, then the first index holding that value in the bucket.
    finite = np.where(np.isnan(values), np.nan, values)
    lows = np.fmin.reduceat(finite, starts)
    highs = np.fmax.reduceat(finite, starts)
    bucket_of = np.repeat(np.arange(buckets), ends - starts)
    chosen = [starts, ends - 1]
    for target in (lows, highs):
        hit = np.flatnonzero(finite == target[bucket_of])
        # first hit per bucket
        first = np.unique(bucket_of[hit], return_index=True)[1]
        chosen.append(hit[first])
    chosen.append(np.asarray([k for k in keep if 0 <= k < n], dtype=np.int64))
    return np.unique(np.concatenate(chosen).astype(np.int64))

