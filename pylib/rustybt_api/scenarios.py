"""Seeded, deterministic market scenarios for testing algorithms.

``rustybt validate`` dry-runs an algorithm on each of :data:`SCENARIOS`; the same generators are
public so you can use them in your own tests::

    from rustybt_api import scenarios
    from rustybt_api.testing import write_csv

    bars = scenarios.get("gaps").bars(rows=2000, seed=3)      # list of testing.Bar
    write_csv("data/GAPS.csv", bars)

    # A custom scenario: a rally, a flat hour, a sell-off, with holes and a few spikes.
    bars = scenarios.build([scenarios.Segment(300, drift=0.001),
                            scenarios.Segment(60, flat=True),
                            scenarios.Segment(300, drift=-0.001)], seed=1)
    bars = scenarios.with_spikes(scenarios.without_bars(bars, seed=1), seed=1)

Every generator is pure Python (``random.Random``), so a seed gives the same bars on every
machine. Every bar satisfies the engine's validation: ``low <= open, close <= high``, volume
``>= 0``, strictly increasing timestamps (bar open times), 2-decimal prices of at least 0.01.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Callable, Sequence

from .testing import Bar, generate_bars, write_csv

__all__ = [
    "SCENARIOS",
    "Scenario",
    "Segment",
    "build",
    "get",
    "names",
    "with_gaps",
    "with_spikes",
    "with_zero_volume",
    "without_bars",
]

_CENT = Decimal("0.01")
_START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
_MINUTE = dt.timedelta(minutes=1)


def _cents(value: float) -> Decimal:
    return max(Decimal(repr(value)).quantize(_CENT, rounding=ROUND_HALF_EVEN), _CENT)


def _scale(bar: Bar, factor: float) -> Bar:
    return replace(
        bar,
        open=_cents(float(bar.open) * factor),
        high=_cents(float(bar.high) * factor),
        low=_cents(float(bar.low) * factor),
        close=_cents(float(bar.close) * factor),
    )


@dataclass(frozen=True)
class Segment:
    """A stretch of bars for :func:`build`.

    ``drift`` is the mean log return per bar (0.001 = +0.1% a bar), ``volatility`` its standard
    deviation; ``flat=True`` gives bars with open = high = low = close at the last price;
    ``volume`` fixes every bar's volume (e.g. 0), otherwise it is random in [1, 10000];
    ``mean_reversion`` in (0, 1] pulls the price back towards the segment's first price each bar
    (a range).
    """

    rows: int
    drift: float = 0.0
    volatility: float = 0.001
    flat: bool = False
    volume: int | None = None
    mean_reversion: float = 0.0


def build(
    segments: Sequence[Segment],
    seed: int,
    *,
    start: dt.datetime = _START,
    interval: dt.timedelta = _MINUTE,
    start_price: float = 100.0,
) -> list[Bar]:
    """Bars of consecutive segments; each continues from the previous one's last close."""
    rng = random.Random(seed)
    bars: list[Bar] = []
    price = start_price
    for segment in segments:
        if segment.rows < 0:
            raise ValueError(f"a segment needs rows >= 0, got {segment.rows}")
        anchor = math.log(price)
        if segment.flat or segment.mean_reversion:
            # Own path: flat bars, or an Ornstein-Uhlenbeck walk around the anchor.
            level = math.log(price)
            for _ in range(segment.rows):
                open_ = _cents(price)
                if not segment.flat:
                    level += segment.drift + segment.mean_reversion * (anchor - level)
                    level += segment.volatility * rng.gauss(0.0, 1.0)
                    price = math.exp(level)
                close = _cents(price)
                if segment.flat:
                    high = low = close = open_
                else:
                    wick = float(max(open_, close)) * segment.volatility * 0.5
                    high = max(open_, close) + _cents(abs(rng.gauss(0.0, 1.0)) * wick) - _CENT
                    low = max(min(open_, close) - _cents(abs(rng.gauss(0.0, 1.0)) * wick) + _CENT, _CENT)
                    high, low = max(high, open_, close), min(low, open_, close)
                volume = segment.volume if segment.volume is not None else 1 + int(rng.random() * 10000) % 10000
                bars.append(Bar(start + len(bars) * interval, open_, high, low, close, volume))
        else:
            walk = generate_bars(
                segment.rows,
                seed=rng.randrange(2**32),
                start=start + len(bars) * interval,
                interval=interval,
                start_price=price,
                volatility=segment.volatility,
                drift=segment.drift,
            )
            for bar in walk:
                if segment.volume is not None:
                    bar = replace(bar, volume=segment.volume)
                bars.append(bar)
        if bars:
            price = float(bars[-1].close)
    return bars


def with_gaps(bars: Sequence[Bar], seed: int, *, every: int = 50, size: float = 0.03) -> list[Bar]:
    """Price gaps: about once per ``every`` bars the price jumps by ``size`` (0.03 = 3%) up or
    down between one bar's close and the next bar's open; later bars continue from there."""
    rng = random.Random(seed)
    out: list[Bar] = []
    factor = 1.0
    for i, bar in enumerate(bars):
        if i > 0 and rng.random() < 1.0 / every:
            factor *= 1.0 + size if rng.random() < 0.5 else 1.0 - size
        out.append(_scale(bar, factor) if factor != 1.0 else bar)
    return out


def with_spikes(bars: Sequence[Bar], seed: int, *, every: int = 100, size: float = 0.1) -> list[Bar]:
    """Wicks: about once per ``every`` bars the high (or the low) reaches ``size`` (10%) beyond
    the bar's body, as a flash crash or a bad print would; open and close stay."""
    rng = random.Random(seed)
    out: list[Bar] = []
    for bar in bars:
        if rng.random() < 1.0 / every:
            if rng.random() < 0.5:
                bar = replace(bar, high=_cents(float(max(bar.open, bar.close)) * (1.0 + size)))
            else:
                bar = replace(bar, low=_cents(float(min(bar.open, bar.close)) * (1.0 - size)))
        out.append(bar)
    return out


def with_zero_volume(bars: Sequence[Bar], seed: int, *, fraction: float = 0.2, run: int = 5) -> list[Bar]:
    """Sets the volume of about ``fraction`` of the bars to 0, in runs of up to ``run`` bars."""
    rng = random.Random(seed)
    out = list(bars)
    # Bars already at 0 count; never more than there are bars.
    zeroed = sum(1 for b in out if b.volume == 0)
    target = min(int(len(out) * fraction), len(out))
    while zeroed < target:
        at = rng.randrange(len(out))
        for i in range(at, min(at + rng.randint(1, run), len(out))):
            if out[i].volume != 0 and zeroed < target:
                out[i] = replace(out[i], volume=0)
                zeroed += 1
    return out


def without_bars(bars: Sequence[Bar], seed: int, *, fraction: float = 0.1, run: int = 30) -> list[Bar]:
    """Removes about ``fraction`` of the bars, in holes of up to ``run`` consecutive bars (an
    exchange outage, a halted symbol). The first two bars always stay, so the bar duration can
    still be inferred."""
    rng = random.Random(seed)
    keep = [True] * len(bars)
    target = min(int(len(bars) * fraction), max(len(bars) - 2, 0))
    dropped = 0
    while dropped < target and len(bars) > 2:
        at = rng.randrange(2, len(bars))
        for i in range(at, min(at + rng.randint(1, run), len(bars))):
            if keep[i] and dropped < target:
                keep[i] = False
                dropped += 1
    return [bar for bar, k in zip(bars, keep) if k]


@dataclass(frozen=True)
class Scenario:
    """A named market situation; ``bars(rows, seed)`` builds it."""

    name: str
    description: str
    make: Callable[[int, int], list[Bar]]

    def bars(self, rows: int = 1000, seed: int = 0) -> list[Bar]:
        """``rows`` bar slots of this scenario (``missing_bars`` returns fewer bars)."""
        if rows < 1:
            raise ValueError(f"a scenario needs rows >= 1, got {rows}")
        return self.make(rows, seed)

    def write_csv(self, path: str | Path, rows: int = 1000, seed: int = 0, symbol: str | None = None) -> Path:
        """Writes the scenario's bars as a CSV file the engine loads (see ``testing.write_csv``)."""
        return write_csv(path, self.bars(rows, seed), symbol)


def _flat(rows: int, seed: int) -> list[Bar]:
    # A walk, then a dead market (no price change), then the walk again.
    third = rows // 3
    return build([Segment(third), Segment(rows - 2 * third, flat=True), Segment(third)], seed)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("trend_up", "steady rise (+0.08% a bar on average)",
                 lambda rows, seed: build([Segment(rows, drift=0.0008)], seed)),
        Scenario("trend_down", "steady fall (-0.08% a bar on average)",
                 lambda rows, seed: build([Segment(rows, drift=-0.0008)], seed)),
        Scenario("range", "mean-reverting price in a narrow band around the start",
                 lambda rows, seed: build([Segment(rows, volatility=0.002, mean_reversion=0.05)], seed)),
        Scenario("gaps", "opens that jump 3% away from the previous close",
                 lambda rows, seed: with_gaps(build([Segment(rows)], seed), seed)),
        Scenario("spikes", "wicks reaching 10% beyond the bar's body",
                 lambda rows, seed: with_spikes(build([Segment(rows)], seed), seed)),
        Scenario("flat", "a middle third with open = high = low = close",
                 _flat),
        Scenario("zero_volume", "a fifth of the bars with volume 0, in runs",
                 lambda rows, seed: with_zero_volume(build([Segment(rows)], seed), seed)),
        Scenario("missing_bars", "a tenth of the bars missing, in holes of up to 30 bars",
                 lambda rows, seed: without_bars(build([Segment(rows)], seed), seed)),
    )
}


def names() -> list[str]:
    """The built-in scenarios' names, in the order ``rustybt validate`` runs them."""
    return list(SCENARIOS)


def get(name: str) -> Scenario:
    """The built-in scenario called ``name``; ``KeyError`` lists the valid names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario `{name}`; scenarios: {', '.join(SCENARIOS)}") from None
