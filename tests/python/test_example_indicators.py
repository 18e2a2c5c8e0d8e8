"""The example custom indicators in `indicators/`, pure Python (no engine).

MarketStructure and OrderBlocks: incremental == vectorized, no lookahead, exact values on
hand-made bars, and properties of random OHLC paths.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
for entry in (ROOT / "pylib", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from indicators.market_structure import MarketStructure  # noqa: E402
from indicators.order_blocks import OrderBlocks  # noqa: E402
from rustybt_api import Indicator  # noqa: E402
from rustybt_api.testing import BarArrays, generate_bars, run_indicator  # noqa: E402

NAN = float("nan")


def make_bars(ohlc: list[tuple[float, float, float, float]]) -> BarArrays:
    table = np.array(ohlc, dtype=np.float64).reshape(-1, 4)
    n = len(table)
    return BarArrays(
        np.arange(n, dtype=np.int64) * 60_000_000_000,
        table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy(), table[:, 3].copy(),
        np.ones(n),
    )


# Generating Decimal bars is the slow part; indicators never write to their inputs.
@functools.lru_cache(maxsize=None)
def random_bars(rows: int, seed: int, volatility: float = 0.002) -> BarArrays:
    return BarArrays.from_bars(list(generate_bars(rows, seed=seed, volatility=volatility)))


def assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], what: str) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        a, b = np.asarray(got[name]), np.asarray(expected[name])
        assert a.shape == b.shape, (what, name)
        differ = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
        assert differ.size == 0, f"{what}: `{name}` differs at bars {differ[:10].tolist()}: " \
            f"{a[differ[:5]].tolist()} vs {b[differ[:5]].tolist()}"


def series(length: int, *spans: tuple[int, int, float], default: float = NAN) -> np.ndarray:
    """`default` everywhere, then `value` on bars [start, stop) for each (start, stop, value)."""
    out = np.full(length, default)
    for start, stop, value in spans:
        out[start:stop] = value
    return out


def events(length: int, at: dict[int, float]) -> np.ndarray:
    out = np.zeros(length)
    for index, value in at.items():
        out[index] = value
    return out


# --------------------------------------------------------------------------------------------
# Hand-made bars (swing = 2). The story, bar by bar (o, h, l, c):
#   3  high 105: swing high H1, confirmed on bar 5 (highs 1,2 and 4,5 are lower)
#   6  low 98 (bearish candle 99.5 -> 99): swing low L1, confirmed on bar 8
#   9  close 106 > 105: first break -> bos +1, trend +1. Bullish order block = last bearish
#      candle in bars 6..8 = bar 6, zone [98, 100.5]
#   10-16 closes above 105 again: H1 already broken, no new event
#   11 high 110: H2, confirmed on bar 13;  14 low 103 (bearish 104.5 -> 104): L2, confirmed 16
#   17 close 111 > 110: bos +1; block = bar 14, zone [103, 105.5] (bar 6's block stays active)
#   19 high 114 (bullish 112.5 -> 113.5): H3, confirmed on bar 21
#   21 low 105 <= 105.5: first touch of the [103, 105.5] block -> signal +1
#   22 close 102 < 103: the block is mitigated; the close also breaks L2 against the trend ->
#      choch -1, trend -1. Bearish block = last bullish candle in bars 19..21 = bar 19,
#      zone [112, 114]. The older bullish block [98, 100.5] shows again.
#   23 low 99.5 <= 100.5: first touch of [98, 100.5] -> signal +1
#   24 close 97.5 < 98: that block is mitigated (no second signal)
#   25 low 96: L3, confirmed on bar 27;  27 high 100 (bullish 98.5 -> 99.5): H4, confirmed 29
#   30 close 95.5 < 96: bos -1; bearish block = bar 27, zone [98, 100]
#   32 high 98.4 >= 98: first touch of [98, 100] -> signal -1
#   33 close 100.5 > 100: that block is mitigated, and the close breaks H4 against the trend ->
#      choch +1. The swing low confirmed on this very bar (bar 31, 94.5) starts the leg, and bars
#      31..32 are bullish: no bullish block. The older bearish block [112, 114] shows again.
# --------------------------------------------------------------------------------------------
STORY = [
    (100, 101, 99.5, 100.5), (100.5, 102, 100, 101.5), (101.5, 103, 101, 102.5),
    (102.5, 105, 102, 104), (104, 104.5, 101, 101.5), (101.5, 102, 99, 99.5),
    (99.5, 100.5, 98, 99), (99, 101.5, 98.5, 101), (101, 103.5, 100.5, 103),
    (103, 106.5, 102.5, 106), (106, 109, 105.5, 108.5), (108.5, 110, 107.5, 109),
    (109, 109.5, 106, 106.5), (106.5, 107, 104, 104.5), (104.5, 105.5, 103, 104),
    (104, 106.5, 103.5, 106), (106, 108.5, 105.5, 108), (108, 111.5, 107.5, 111),
    (111, 113, 110.5, 112.5), (112.5, 114, 112, 113.5), (113.5, 113.8, 109, 109.5),
    (109.5, 110, 105, 105.5), (105.5, 106, 101.5, 102), (102, 102.5, 99.5, 100),
    (100, 100.5, 97, 97.5), (97.5, 98, 96, 96.5), (96.5, 99, 96.5, 98.5),
    (98.5, 100, 98, 99.5), (99.5, 99.8, 97.5, 98), (98, 98.5, 96.8, 97),
    (97, 97.2, 95, 95.5), (95.5, 97, 94.5, 96.5), (96.5, 98.4, 96, 98.2),
    (98.2, 101, 98, 100.5),
]
N = len(STORY)

STORY_STRUCTURE = {
    "swing_high": series(N, (5, 13, 105.0), (13, 21, 110.0), (21, 29, 114.0), (29, N, 100.0)),
    "swing_low": series(N, (8, 16, 98.0), (16, 27, 103.0), (27, 33, 96.0), (33, N, 94.5)),
    "trend": series(N, (9, 22, 1.0), (22, 33, -1.0), (33, N, 1.0), default=0.0),
    "bos": events(N, {9: 1.0, 17: 1.0, 30: -1.0}),
    "choch": events(N, {22: -1.0, 33: 1.0}),
}

STORY_BLOCKS = {
    "bull_top": series(N, (9, 17, 100.5), (17, 22, 105.5), (22, 24, 100.5)),
    "bull_bottom": series(N, (9, 17, 98.0), (17, 22, 103.0), (22, 24, 98.0)),
    "bear_top": series(N, (22, 30, 114.0), (30, 33, 100.0), (33, N, 114.0)),
    "bear_bottom": series(N, (22, 30, 112.0), (30, 33, 98.0), (33, N, 112.0)),
    "signal": events(N, {21: 1.0, 23: 1.0, 32: -1.0}),
}


def test_story_bars_are_valid() -> None:
    bars = make_bars(STORY)
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(np.maximum(bars.open, bars.close) <= bars.high)


@pytest.mark.parametrize("mode", ["update", "vectorized", "calculate", "engine"])
def test_market_structure_on_hand_made_bars(mode: str) -> None:
    got = run_indicator(MarketStructure(swing=2), make_bars(STORY), mode)
    assert_same(got, STORY_STRUCTURE, mode)


@pytest.mark.parametrize("mode", ["update", "vectorized", "calculate", "engine"])
def test_order_blocks_on_hand_made_bars(mode: str) -> None:
    got = run_indicator(OrderBlocks(swing=2), make_bars(STORY), mode)
    assert_same(got, STORY_BLOCKS, mode)


@pytest.mark.parametrize("mode", ["update", "vectorized"])
def test_order_blocks_keep_at_most_max_blocks_per_side(mode: str) -> None:
    # With one slot, bar 17's block evicts bar 6's: nothing shows after the mitigation on
    # bar 22 and bar 23 is no signal; bar 30's bearish block evicts [112, 114] for good.
    got = run_indicator(OrderBlocks(swing=2, max_blocks=1), make_bars(STORY), mode)
    expected = {
        "bull_top": series(N, (9, 17, 100.5), (17, 22, 105.5)),
        "bull_bottom": series(N, (9, 17, 98.0), (17, 22, 103.0)),
        "bear_top": series(N, (22, 30, 114.0), (30, 33, 100.0)),
        "bear_bottom": series(N, (22, 30, 112.0), (30, 33, 98.0)),
        "signal": events(N, {21: 1.0, 32: -1.0}),
    }
    assert_same(got, expected, mode)


@pytest.mark.parametrize("mode", ["update", "vectorized"])
def test_equal_highs_are_not_swing_highs(mode: str) -> None:
    # Highs 1 2 3 3 2 1 ...: the flat top at bars 2-3 is no pivot; bar 8 (high 5) is one.
    highs = [1, 2, 3, 3, 2, 1, 2, 3, 5, 4, 3, 2]
    bars = make_bars([(h - 0.5, h, h - 1, h - 0.5) for h in highs])
    got = run_indicator(MarketStructure(swing=2), bars, mode)
    assert_same({"swing_high": got["swing_high"]}, {"swing_high": series(12, (10, 12, 5.0))}, mode)


# --------------------------------------------------------------------------------------------
# Incremental == vectorized, no lookahead
# --------------------------------------------------------------------------------------------
CASES: list[tuple[type[Indicator], dict[str, int]]] = [
    (MarketStructure, {"swing": 1}),
    (MarketStructure, {"swing": 2}),
    (MarketStructure, {}),
    (MarketStructure, {"swing": 5}),
    (OrderBlocks, {"swing": 1, "max_blocks": 1}),
    (OrderBlocks, {"swing": 2}),
    (OrderBlocks, {}),
    (OrderBlocks, {"swing": 5, "max_blocks": 6}),
]
CASE_IDS = [f"{cls.__name__}-{params}" for cls, params in CASES]


@pytest.mark.parametrize(("cls", "params"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", [1, 7, 42])
def test_update_equals_vectorized(cls: type[Indicator], params: dict[str, int], seed: int) -> None:
    bars = random_bars(1500, seed)
    incremental = run_indicator(cls(**params), bars, "update")
    assert_same(incremental, run_indicator(cls(**params), bars, "vectorized"), "vectorized")
    # The comparison must not be vacuous: events and levels actually occur.
    if cls is MarketStructure:
        assert np.count_nonzero(~np.isnan(incremental["swing_high"])) > 1400
        assert np.count_nonzero(incremental["bos"]) >= 5
        assert np.count_nonzero(incremental["choch"]) >= 5
    else:
        assert np.count_nonzero(~np.isnan(incremental["bull_top"])) > 300
        assert np.count_nonzero(~np.isnan(incremental["bear_top"])) > 300
        assert np.count_nonzero(incremental["signal"] == 1) >= 5
        assert np.count_nonzero(incremental["signal"] == -1) >= 5


SMALL_CASES = [0, 2, 5, 6]


@pytest.mark.parametrize(
    ("cls", "params"), [CASES[i] for i in SMALL_CASES], ids=[CASE_IDS[i] for i in SMALL_CASES]
)
def test_update_equals_per_bar_calculate(cls: type[Indicator], params: dict[str, int]) -> None:
    bars = random_bars(200, seed=3, volatility=0.004)
    incremental = run_indicator(cls(**params), bars, "update")
    assert_same(run_indicator(cls(**params), bars, "calculate"), incremental, "calculate")
    events_seen = incremental["bos"] if cls is MarketStructure else incremental["signal"]
    assert np.count_nonzero(events_seen == 1) >= 2 and np.count_nonzero(events_seen == -1) >= 2


@pytest.mark.parametrize(("cls", "params"), CASES, ids=CASE_IDS)
def test_no_lookahead(cls: type[Indicator], params: dict[str, int]) -> None:
    bars = random_bars(800, seed=11)
    full_vectorized = run_indicator(cls(**params), bars, "vectorized")
    full_update = run_indicator(cls(**params), bars, "update")
    rng = np.random.default_rng(5)
    for cut in [0, 1, 2 * 5, *rng.integers(0, len(bars) - 1, size=6).tolist()]:
        prefix = bars.window(0, cut + 1)
        head = {k: v[: cut + 1] for k, v in full_vectorized.items()}
        got = run_indicator(cls(**params), prefix, "vectorized")
        assert_same(got, head, f"vectorized cut {cut}")
        head = {k: v[: cut + 1] for k, v in full_update.items()}
        assert_same(run_indicator(cls(**params), prefix, "update"), head, f"update cut {cut}")


def test_swing_high_appears_exactly_swing_bars_after_the_pivot() -> None:
    bars = make_bars(STORY)
    for mode in ("update", "vectorized"):
        values = run_indicator(MarketStructure(swing=2), bars, mode)["swing_high"]
        assert np.isnan(values[4]) and values[5] == 105.0  # pivot on bar 3, seen on bar 3 + 2
        assert values[12] == 105.0 and values[13] == 110.0  # pivot on bar 11, seen on bar 13


# --------------------------------------------------------------------------------------------
# Parameters and import paths
# --------------------------------------------------------------------------------------------
def test_parameters_and_outputs() -> None:
    assert MarketStructure.parameters() == {"swing": 3}
    assert MarketStructure.outputs == ("swing_high", "swing_low", "trend", "bos", "choch")
    assert MarketStructure.warm_up == 7 and MarketStructure.window is None
    assert OrderBlocks.parameters() == {"swing": 3, "max_blocks": 3}
    assert OrderBlocks.outputs == ("bull_top", "bull_bottom", "bear_top", "bear_bottom", "signal")
    assert repr(OrderBlocks(swing=4)) == "OrderBlocks(swing=4, max_blocks=3)"


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_invalid_swing_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="swing must be an integer >= 1"):
        MarketStructure(swing=bad)
    with pytest.raises(ValueError, match="swing must be an integer >= 1"):
        OrderBlocks(swing=bad)


def test_invalid_max_blocks_and_unknown_parameter_are_refused() -> None:
    with pytest.raises(ValueError, match="max_blocks must be an integer >= 1"):
        OrderBlocks(max_blocks=0)
    with pytest.raises(TypeError, match="no parameter `period`"):
        MarketStructure(period=3)


def test_order_blocks_import_with_the_indicators_folder_on_sys_path() -> None:
    """Both import styles work: `indicators.order_blocks` and plain `order_blocks`."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import order_blocks; "
        "print(order_blocks.OrderBlocks.outputs[0], order_blocks.StructureTracker.__module__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "pylib"), str(ROOT / "indicators")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["bull_top", "market_structure"]


# --------------------------------------------------------------------------------------------
# Properties of random OHLC paths (integer-ish prices, so equal highs and lows happen)
# --------------------------------------------------------------------------------------------
@st.composite
def ohlc_paths(draw: st.DrawFn) -> BarArrays:
    steps = draw(st.lists(
        st.tuples(
            st.integers(-2, 2),  # gap from the previous close to this open
            st.integers(-6, 6),  # close - open
            st.integers(0, 3),   # upper wick
            st.integers(0, 3),   # lower wick
        ),
        min_size=1, max_size=120,
    ))
    rows = []
    close = 100.0
    for gap, body, upper, lower in steps:
        open_ = close + gap
        close = open_ + body
        rows.append((open_, max(open_, close) + upper, min(open_, close) - lower, close))
    return make_bars(rows)


def naive_latest_pivot(values: np.ndarray, swing: int, t: int, highs: bool) -> int:
    """The latest j with j + swing <= t that is a strict pivot, straight from the definition."""
    for j in range(t - swing, swing - 1, -1):
        others = [values[i] for i in range(j - swing, j + swing + 1) if i != j]
        if all(values[j] > v for v in others) if highs else all(values[j] < v for v in others):
            return j
    return -1


def check_structure_properties(bars: BarArrays, swing: int) -> dict[str, np.ndarray]:
    out = run_indicator(MarketStructure(swing=swing), bars, "update")
    assert_same(run_indicator(MarketStructure(swing=swing), bars, "vectorized"), out, "vectorized")
    trend, bos, choch = out["trend"], out["bos"], out["choch"]
    for t in range(len(bars)):
        sides = (("swing_high", bars.high, True), ("swing_low", bars.low, False))
        for name, values, highs in sides:
            j = naive_latest_pivot(values, swing, t, highs)
            if j < 0:
                assert np.isnan(out[name][t])
            else:
                # One of the past highs, confirmed at least `swing` bars before t.
                assert j <= t - swing and out[name][t] == values[j]
        assert bos[t] in (-1.0, 0.0, 1.0) and choch[t] in (-1.0, 0.0, 1.0)
        assert trend[t] in (-1.0, 0.0, 1.0)
        assert bos[t] == 0 or choch[t] == 0
        before = trend[t - 1] if t else 0.0
        event = bos[t] + choch[t]
        if event == 0:
            assert trend[t] == before
        else:
            assert trend[t] == event
            # Breaks are measured on the close against the level known on the previous bar.
            level = out["swing_high"][t - 1] if event > 0 else out["swing_low"][t - 1]
            assert (bars.close[t] > level) if event > 0 else (bars.close[t] < level)
            assert before == (-event if choch[t] else before)
            if bos[t]:
                assert before in (0.0, event)
    return out


@settings(max_examples=100, deadline=None)
@given(bars=ohlc_paths(), swing=st.integers(1, 4))
def test_market_structure_properties(bars: BarArrays, swing: int) -> None:
    check_structure_properties(bars, swing)


def check_block_properties(bars: BarArrays, swing: int, max_blocks: int) -> dict[str, np.ndarray]:
    out = run_indicator(OrderBlocks(swing=swing, max_blocks=max_blocks), bars, "update")
    vectorized = run_indicator(OrderBlocks(swing=swing, max_blocks=max_blocks), bars, "vectorized")
    assert_same(vectorized, out, "vectorized")
    assert set(np.unique(out["signal"]).tolist()) <= {-1.0, 0.0, 1.0}
    for side, candle_is_right_colour in (
        ("bull", bars.close < bars.open),
        ("bear", bars.close > bars.open),
    ):
        top, bottom = out[f"{side}_top"], out[f"{side}_bottom"]
        assert np.array_equal(np.isnan(top), np.isnan(bottom))
        shown = ~np.isnan(top)
        assert np.all(top[shown] >= bottom[shown])
        for t in np.flatnonzero(shown):
            # The zone is the [low, high] of an earlier candle of the block's colour.
            candles = np.flatnonzero(
                candle_is_right_colour[:t] & (bars.high[:t] == top[t]) & (bars.low[:t] == bottom[t])
            )
            assert candles.size > 0, (side, t)
    return out


@settings(max_examples=100, deadline=None)
@given(bars=ohlc_paths(), swing=st.integers(1, 4), max_blocks=st.integers(1, 4))
def test_order_blocks_properties(bars: BarArrays, swing: int, max_blocks: int) -> None:
    check_block_properties(bars, swing, max_blocks)


@pytest.mark.parametrize("swing", [1, 3])
def test_properties_hold_on_a_long_path_with_many_events(swing: int) -> None:
    """The same checks where events are certain (hypothesis favours short paths)."""
    bars = random_bars(400, seed=23, volatility=0.004)
    structure = check_structure_properties(bars, swing)
    blocks = check_block_properties(bars, swing, max_blocks=2)
    assert np.count_nonzero(structure["bos"]) >= 5 and np.count_nonzero(structure["choch"]) >= 5
    assert np.count_nonzero(blocks["signal"] == 1) >= 3
    assert np.count_nonzero(blocks["signal"] == -1) >= 3
