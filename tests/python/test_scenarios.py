"""rustybt_api.scenarios: deterministic per seed, valid bars, and each scenario's defining property."""

from __future__ import annotations

import datetime as dt
import statistics
from decimal import Decimal

import pytest

from rustybt_api import scenarios
from rustybt_api.scenarios import Segment

ROWS = 1000


def assert_valid(bars):
    assert bars
    for bar in bars:
        assert Decimal("0.01") <= bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.volume >= 0
        for price in (bar.open, bar.high, bar.low, bar.close):
            assert price == price.quantize(Decimal("0.01"))
    times = [b.timestamp for b in bars]
    assert all(a < b for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("name", scenarios.names())
def test_every_scenario_is_valid_and_deterministic(name):
    scenario = scenarios.get(name)
    first = scenario.bars(ROWS, seed=5)
    assert_valid(first)
    assert first == scenario.bars(ROWS, seed=5)
    assert first != scenario.bars(ROWS, seed=6)


def test_names_in_validate_order():
    assert scenarios.names() == ["trend_up", "trend_down", "range", "gaps", "spikes", "flat", "zero_volume", "missing_bars"]


def test_unknown_scenario_lists_names():
    with pytest.raises(KeyError, match="trend_up"):
        scenarios.get("sideways")


def test_rows_must_be_positive():
    with pytest.raises(ValueError, match="rows >= 1"):
        scenarios.get("flat").bars(0)
    with pytest.raises(ValueError, match="rows >= 0"):
        scenarios.build([Segment(-1)], seed=1)


@pytest.mark.parametrize("seed", range(5))
def test_trends_trend(seed):
    up = scenarios.get("trend_up").bars(ROWS, seed)
    down = scenarios.get("trend_down").bars(ROWS, seed)
    assert up[-1].close > up[0].open * Decimal("1.5")
    assert down[-1].close < down[0].open * Decimal("0.7")


@pytest.mark.parametrize("seed", range(5))
def test_range_stays_in_a_band(seed):
    bars = scenarios.get("range").bars(ROWS, seed)
    closes = [float(b.close) for b in bars]
    assert max(closes) < 100 * 1.06 and min(closes) > 100 * 0.94
    # it does move: not a flat line
    assert statistics.pstdev(closes) > 0.2


def test_gaps_really_gap():
    bars = scenarios.get("gaps").bars(ROWS, seed=2)
    jumps = [abs(float(b.open) / float(a.close) - 1) for a, b in zip(bars, bars[1:])]
    big = [j for j in jumps if j > 0.025]
    assert len(big) >= 5
    # in the plain walk, the next open is the previous close
    plain = scenarios.build([Segment(ROWS)], seed=2)
    assert all(b.open == a.close for a, b in zip(plain, plain[1:]))


def test_spikes_have_long_wicks():
    bars = scenarios.get("spikes").bars(ROWS, seed=3)
    ranges = [float(b.high - b.low) / float(b.close) for b in bars]
    median = statistics.median(ranges)
    spikes = [r for r in ranges if r > 0.08]
    assert len(spikes) >= 3 and median < 0.005


def test_flat_bars_exist():
    bars = scenarios.get("flat").bars(ROWS, seed=4)
    flat = [b for b in bars if b.open == b.high == b.low == b.close]
    assert len(flat) >= ROWS // 3
    # the middle third is one price, the close of the bar before it
    middle = bars[ROWS // 3: ROWS - ROWS // 3]
    assert {(b.open, b.high, b.low, b.close) for b in middle} == {(bars[ROWS // 3 - 1].close,) * 4}


def test_zero_volume_bars_exist():
    bars = scenarios.get("zero_volume").bars(ROWS, seed=4)
    zero = sum(1 for b in bars if b.volume == 0)
    assert zero == ROWS // 5
    assert scenarios.with_zero_volume(bars, seed=1, fraction=2.0)[0].volume == 0  # more than all: all


def test_missing_bars_are_missing():
    bars = scenarios.get("missing_bars").bars(ROWS, seed=4)
    assert len(bars) == ROWS - ROWS // 10
    steps = [b.timestamp - a.timestamp for a, b in zip(bars, bars[1:])]
    assert min(steps) == dt.timedelta(minutes=1)
    assert max(steps) > dt.timedelta(minutes=1)
    # the kept bars are the full walk's bars at the same times
    full = {b.timestamp: b for b in scenarios.build([Segment(ROWS)], seed=4)}
    assert all(full[b.timestamp] == b for b in bars)


def test_custom_segments_chain_price_and_time():
    bars = scenarios.build(
        [Segment(100, drift=0.002), Segment(20, flat=True, volume=0), Segment(100, drift=-0.002)],
        seed=9, start=dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc), interval=dt.timedelta(hours=1),
        start_price=50.0,
    )
    assert_valid(bars)
    assert len(bars) == 220
    assert bars[0].timestamp == dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    assert bars[-1].timestamp - bars[0].timestamp == dt.timedelta(hours=219)
    flat = bars[100:120]
    assert all(b.volume == 0 and b.open == b.high == b.low == b.close == bars[99].close for b in flat)
    assert bars[99].close > Decimal("55") and bars[120].open == bars[119].close


def test_write_csv_round_trips(tmp_path):
    path = scenarios.get("gaps").write_csv(tmp_path / "G.csv", rows=50, seed=1, symbol="G")
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,open,high,low,close,volume,symbol"
    assert len(lines) == 51
    first = scenarios.get("gaps").bars(50, 1)[0]
    assert lines[1] == f"2024-01-01T00:00:00Z,{first.open},{first.high},{first.low},{first.close},{first.volume},G"
