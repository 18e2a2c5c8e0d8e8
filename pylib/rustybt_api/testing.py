"""Deterministic synthetic bar data for examples and tests.

Pure Python (``random.Random`` only), so the same seed gives the same bars on every machine and
Python version. The data is synthetic: a geometric random walk, not any real market.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .indicator import Indicator

__all__ = [
    "Bar",
    "BarArrays",
    "BarValues",
    "generate_bars",
    "normalize_outputs",
    "run_indicator",
    "write_csv",
]

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Bar:
    timestamp: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


def _normal(rng: random.Random) -> float:
    # Box-Muller on random(), whose stream is stable across Python versions.
    u1 = max(rng.random(), 1e-300)
    u2 = rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _price(value: float) -> Decimal:
    return max(Decimal(repr(value)).quantize(_CENT, rounding=ROUND_HALF_EVEN), _CENT)


def generate_bars(
    rows: int,
    seed: int,
    start: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    interval: dt.timedelta = dt.timedelta(minutes=1),
    start_price: float = 100.0,
    volatility: float = 0.001,
    drift: float = 0.0,
) -> Iterator[Bar]:
    """``rows`` bars of a geometric random walk with 2-decimal prices.

    Invariants: ``low <= min(open, close) <= max(open, close) <= high``, volume in [1, 10000],
    timestamps (bar open times) strictly increasing by ``interval``.
    """
    rng = random.Random(seed)
    level = start_price
    close = _price(level)
    for i in range(rows):
        open_ = close
        level *= math.exp(drift + volatility * _normal(rng))
        close = _price(level)
        top = max(open_, close)
        bottom = min(open_, close)
        high = top + _price(abs(_normal(rng)) * volatility * 0.5 * float(top)) - _CENT
        low = bottom - (_price(abs(_normal(rng)) * volatility * 0.5 * float(bottom)) - _CENT)
        low = max(low, _CENT)
        volume = 1 + int(rng.random() * 10000) % 10000
        yield Bar(start + i * interval, open_, max(high, top), min(low, bottom), close, volume)


def write_csv(path: str | Path, bars: Iterator[Bar] | list[Bar], symbol: str | None = None) -> Path:
    """Writes bars as ``timestamp,open,high,low,close,volume`` (plus ``symbol`` if given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        header = ["timestamp", "open", "high", "low", "close", "volume"]
        writer.writerow(header + (["symbol"] if symbol else []))
        for bar in bars:
            row = [
                bar.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                str(bar.open),
                str(bar.high),
                str(bar.low),
                str(bar.close),
                str(bar.volume),
            ]
            writer.writerow(row + ([symbol] if symbol else []))
    return path


@dataclass(frozen=True)
class BarArrays:
    """Bars as NumPy arrays, shaped like the engine's ``Bars`` (``time_ns``, ``open`` ...
    ``volume``); for running an ``Indicator`` outside the engine."""

    time_ns: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    timeframe: str = "base"

    @classmethod
    def from_bars(cls, bars: Sequence[Bar]) -> BarArrays:
        """Float arrays of ``generate_bars`` output (or any objects with the same fields)."""
        import numpy as np

        def column(name: str) -> npt.NDArray[np.float64]:
            return np.array([float(getattr(b, name)) for b in bars], dtype=np.float64)

        times = np.array(
            [int(b.timestamp.timestamp()) * 1_000_000_000 for b in bars], dtype=np.int64
        )
        return cls(times, column("open"), column("high"), column("low"), column("close"),
                   column("volume"))

    def __len__(self) -> int:
        return len(self.close)

    def window(self, start: int, stop: int) -> BarArrays:
        """Bars ``start:stop`` (views, no copy)."""
        return BarArrays(
            self.time_ns[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            self.timeframe,
        )

    def bar(self, index: int) -> BarValues:
        return BarValues(
            int(self.time_ns[index]),
            float(self.open[index]),
            float(self.high[index]),
            float(self.low[index]),
            float(self.close[index]),
            float(self.volume[index]),
            index,
        )


@dataclass(frozen=True)
class BarValues:
    """One closed bar as ``Indicator.update`` receives it."""

    time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    #: Position of the bar in its timeframe's history (0 = first bar).
    index: int


def normalize_outputs(indicator: Indicator, result: Any, length: int | None) -> list[Any]:
    """The per-output values of a ``calculate`` (``length`` = bars) or ``update`` (None) result,
    in ``outputs`` order; raises ``ValueError`` naming what is wrong."""
    import numpy as np

    names = tuple(indicator.outputs)
    if isinstance(result, dict):
        missing = [n for n in names if n not in result]
        if missing:
            raise ValueError(f"result lacks output(s) {', '.join(missing)}")
        values = [result[n] for n in names]
    elif isinstance(result, tuple) or (
        length is None and isinstance(result, list)
    ):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(names):
        raise ValueError(f"result has {len(values)} output(s), expected {len(names)} {names}")
    if length is None:  # None is "no value for this bar", as in the engine
        return [math.nan if v is None else float(v) for v in values]
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    for name, array in zip(names, arrays):
        if array.shape != (length,):
            raise ValueError(
                f"output `{name}` has shape {array.shape}, expected ({length},): one value per bar"
            )
    return arrays


def run_indicator(indicator: Indicator, bars: BarArrays, mode: str = "engine") -> dict[str, Any]:
    """The values ``indicator`` produces for each bar of ``bars``, by output name.

    ``mode``: ``"engine"`` does what the engine does (``update`` per bar when defined, otherwise
    ``calculate`` over the last ``window`` bars per bar); ``"update"`` and ``"calculate"`` force
    one of those; ``"vectorized"`` is one ``calculate`` over all bars. Comparing ``"update"``
    with ``"vectorized"`` is the test that an incremental indicator matches its vectorized form.
    """
    import numpy as np

    names = tuple(indicator.outputs)  # per instance, as the engine reads them
    n = len(bars)
    if mode == "engine":
        mode = "update" if hasattr(indicator, "update") else "calculate"
    if mode == "vectorized":
        arrays = normalize_outputs(indicator, indicator.calculate(bars), n)
        return dict(zip(names, arrays))
    out = {name: np.full(n, np.nan) for name in names}
    window = indicator.window
    for i in range(n):
        if mode == "update":
            values = normalize_outputs(indicator, indicator.update(bars.bar(i)), None)
        elif mode == "calculate":
            start = 0 if window is None else max(0, i + 1 - window)
            part = bars.window(start, i + 1)
            values = [a[-1] for a in normalize_outputs(indicator, indicator.calculate(part), len(part))]
        else:
            raise ValueError(f"unknown mode `{mode}`; use engine, update, calculate or vectorized")
        for name, value in zip(names, values):
            out[name][i] = value
    return out
