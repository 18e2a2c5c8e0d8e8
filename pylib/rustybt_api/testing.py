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
from typing import Iterator

__all__ = ["Bar", "generate_bars", "write_csv"]

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
