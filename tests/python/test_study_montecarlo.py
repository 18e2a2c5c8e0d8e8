"""rustybt_api.study.montecarlo: permutation keeps the final value exactly, drawdowns stay in
[0, 1], the same seed gives the same result, bootstrap by hand, the JSON file of a run folder,
and noisy bars that stay valid."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_api.study import montecarlo
from study_support import write_run

returns_lists = st.lists(st.floats(-1.5, 3.0, allow_nan=False, allow_infinity=False), min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(returns_lists, st.integers(0, 2**32 - 1))
def test_permutation_keeps_the_final_value_for_every_seed(returns, seed):
    result = montecarlo.simulate(returns, 1000.0, "permutation", runs=20, seed=seed)
    # every percentile of the final value is the same number: the run's own
    assert set(result.final_value.values()) == {result.actual_final_value}
    clamped = [max(r, -1.0) for r in returns]
    expected = 1000.0 * math.prod(1 + r for r in clamped)
    assert result.actual_final_value == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(returns_lists, st.sampled_from(montecarlo.METHODS), st.integers(0, 1000))
def test_drawdowns_stay_within_zero_and_one(returns, method, seed):
    result = montecarlo.simulate(returns, 500.0, method, runs=15, seed=seed)
    assert all(0.0 <= v <= 1.0 for v in result.max_drawdown.values())
    assert 0.0 <= result.actual_max_drawdown <= 1.0
    for band in result.bands.values():
        assert all(v >= 0 for v in band)
    # the bands are ordered percentile by percentile
    lows = np.array([result.bands[str(p)] for p in montecarlo.PERCENTILES])
    assert np.all(np.diff(lows, axis=0) >= -1e-9 * np.maximum(lows[1:], 1))


def test_same_seed_same_result_and_different_seeds_differ():
    returns = np.random.default_rng(4).normal(0.002, 0.03, 80)
    a = montecarlo.simulate(returns, 10_000.0, "bootstrap", runs=200, seed=11)
    b = montecarlo.simulate(returns, 10_000.0, "bootstrap", runs=200, seed=11)
    c = montecarlo.simulate(returns, 10_000.0, "bootstrap", runs=200, seed=12)
    assert a == b and a.to_json() == b.to_json()
    assert a.final_value != c.final_value
    assert a.bands["50"][0] == 10_000.0 and len(a.steps) == 81


def test_bootstrap_by_hand():
    # two trades +10% and -10%: a bootstrap path is one of (+,+), (+,-), (-,+), (-,-)
    result = montecarlo.simulate([0.1, -0.1], 100.0, "bootstrap", runs=4000, seed=0)
    assert result.final_value["5"] == pytest.approx(81.0)
    assert result.final_value["95"] == pytest.approx(121.0)
    assert result.final_value["50"] == pytest.approx(99.0)
    assert result.max_drawdown["95"] == pytest.approx(0.19)  # -10% twice
    assert result.max_drawdown["5"] == 0.0


def test_trade_returns_compound_on_closed_equity():
    r = montecarlo.trade_returns([100.0, -220.0, 55.0], 1000.0)
    assert r.tolist() == pytest.approx([0.1, -0.2, 0.0625])
    # a loss beyond the equity is ruin (-100%), never less
    assert montecarlo.trade_returns([-2000.0, 10.0], 1000.0).tolist() == [-1.0, -1.0]


def test_a_run_folder_writes_its_json(tmp_path):
    trades = [{"symbol": "AAA", "direction": "long", "max_qty": "10", "entry_time": f"2024-01-{d:02d}T10:00:00Z",
               "exit_time": f"2024-01-{d:02d}T15:00:00Z", "pnl": pnl, "fees": "0.5"}
              for d, pnl in zip(range(2, 12), ["120.5", "-80", "45.25", "-10", "300", "-150", "20", "5", "-60", "75"])]
    run_dir = write_run(tmp_path / "run", [("2024-01-02T10:00:00Z", "10000"), ("2024-01-12T00:00:00Z", "10265.75")],
                        trades=trades)
    result = montecarlo.run(run_dir, "permutation", runs=300, seed=3)
    written = json.loads((run_dir / "montecarlo-permutation.json").read_text())
    assert written["method"] == "permutation" and written["runs"] == 300 and written["trades"] == 10
    assert written["final_value"]["50"] == result.final_value["50"]
    # the closed-trade equity: the initial cash plus every PnL
    assert result.actual_final_value == pytest.approx(10265.75, rel=1e-12)
    assert montecarlo.read(run_dir / "montecarlo-permutation.json")["bands"].keys() == {"5", "25", "50", "75", "95"}
    boot = montecarlo.run(run_dir, "bootstrap", runs=300, seed=3)
    assert (run_dir / "montecarlo-bootstrap.json").is_file()
    assert boot.final_value["5"] < boot.final_value["95"]


@pytest.mark.parametrize("call, message", [
    (lambda d: montecarlo.run(d / "nope"), "not a results folder"),
    (lambda d: montecarlo.run(write_run(d / "empty", [("2024-01-02T00:00:00Z", "10000")])), "has no closed trades"),
    (lambda d: montecarlo.simulate([0.1, 0.2], 100.0, "shuffle"), "unknown Monte Carlo method `shuffle`"),
    (lambda d: montecarlo.simulate([0.1], 100.0), "at least 2 closed trades"),
    (lambda d: montecarlo.simulate([0.1, float("nan")], 100.0), "NaN"),
    (lambda d: montecarlo.simulate([0.1, 0.2], 100.0, runs=0), "at least 1"),
    (lambda d: montecarlo.trade_returns([1.0], 0.0), "must be positive"),
])
def test_errors(tmp_path, call, message):
    with pytest.raises(montecarlo.MonteCarloError, match=message):
        call(tmp_path)


@st.composite
def bars(draw):
    n = draw(st.integers(1, 40))
    rows = []
    for _ in range(n):
        low = draw(st.floats(0.01, 1e5))
        high = low * draw(st.floats(1.0, 1.5))
        o = draw(st.floats(low, high))
        c = draw(st.floats(low, high))
        rows.append((o, high, low, c))
    return [np.array(col) for col in zip(*rows)]


@settings(max_examples=100, deadline=None)
@given(bars(), st.floats(0.0, 0.5), st.integers(0, 2**32 - 1), st.sampled_from([None, 2, 4]))
def test_noisy_bars_stay_valid(ohlc, scale, seed, decimals):
    o, h, lo, c = montecarlo.noisy_ohlc(*ohlc, scale=scale, seed=seed, decimals=decimals)
    assert np.all(lo > 0)
    assert np.all(lo <= o) and np.all(lo <= c) and np.all(o <= h) and np.all(c <= h)
    again = montecarlo.noisy_ohlc(*ohlc, scale=scale, seed=seed, decimals=decimals)
    assert all(np.array_equal(x, y) for x, y in zip((o, h, lo, c), again))
    if scale == 0 and decimals is None:
        assert all(np.array_equal(x, y) for x, y in zip((o, h, lo, c), ohlc))


def test_noise_moves_prices_by_about_its_scale():
    close = np.full(20_000, 100.0)
    o, h, lo, c = montecarlo.noisy_ohlc(close, close, close, close, scale=0.01, seed=1)
    assert np.std(np.log(c / 100.0)) == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize("args, message", [
    (([1.0], [1.0, 2.0], [1.0], [1.0]), "differ in length"),
    (([1.0], [2.0], [1.5], [1.0]), "bar 0 is not valid"),
    (([1.0], [2.0], [0.0], [1.0]), "finite and positive"),
])
def test_noisy_ohlc_refuses_bad_bars(args, message):
    with pytest.raises(montecarlo.MonteCarloError, match=message):
        montecarlo.noisy_ohlc(*args, scale=0.01, seed=0)
    with pytest.raises(montecarlo.MonteCarloError, match="noise scale"):
        montecarlo.noisy_ohlc([1.0], [1.0], [1.0], [1.0], scale=-1, seed=0)
