"""rustybt_api.study.sensitivity over synthetic trial tables: lines and grids by hand, and the
isolated-peak flag (a plateau is not flagged, a single spike is)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rustybt_api import study
from rustybt_api.study import sensitivity
from study_support import trial, write_study

FAST = list(range(5, 55, 5))      # 10 values
SLOW = list(range(20, 220, 20))   # 10 values


def table(objective) -> pd.DataFrame:
    rows = [{"fast": f, "slow": s, "sharpe": objective(f, s)} for f in FAST for s in SLOW]
    return pd.DataFrame(rows, index=pd.RangeIndex(len(rows), name="number"))


def plateau(f, s):
    # a broad hill: the best (25, 100) and its neighbours are within a few percent
    return 2.0 - ((f - 25) / 60) ** 2 - ((s - 100) / 250) ** 2


def spike(f, s):
    rng = np.random.default_rng(f * 1000 + s)
    return 3.0 if (f, s) == (30, 120) else 0.2 + 0.1 * rng.standard_normal()


def test_a_plateau_is_not_flagged():
    peak = sensitivity.isolated_peak(table(plateau), ["fast", "slow"], "sharpe")
    assert peak.isolated is False
    assert peak.neighbours == 8  # the best is inside the grid: 3 × 3 - 1 cells
    assert peak.neighbour_score > 0.9
    assert "at or above 0.5" in peak.reason


def test_a_single_spike_is_flagged():
    frame = table(spike)
    peak = sensitivity.isolated_peak(frame, ["fast", "slow"], "sharpe")
    assert peak.isolated is True
    assert frame.loc[peak.best_number, "fast"] == 30 and frame.loc[peak.best_number, "slow"] == 120
    assert peak.neighbours == 8 and peak.neighbour_score < 0.2
    assert "below 0.5" in peak.reason


def test_a_spike_at_the_edge_and_a_minimized_objective():
    # max_drawdown minimized: the best is the lowest; (5, 20) sits in the corner (3 neighbours)
    frame = table(lambda f, s: 0.05 if (f, s) == (5, 20) else 0.30)
    peak = sensitivity.isolated_peak(frame, ["fast", "slow"], "sharpe", direction="minimize")
    assert peak.isolated is True and peak.neighbours == 3 and peak.neighbour_score == 0.0
    flat = table(lambda f, s: 1.0)
    assert sensitivity.isolated_peak(flat, ["fast", "slow"], "sharpe").isolated is False


def test_along_and_pair_by_hand():
    frame = pd.DataFrame({"fast": [5, 5, 10, 10, 10], "slow": [20, 40, 20, 40, 40],
                          "sharpe": [1.0, 3.0, 2.0, 0.5, 1.5]})
    line = sensitivity.along(frame, "fast", "sharpe")
    assert list(line.index) == ["5", "10"]
    assert line["best"].tolist() == [3.0, 2.0]
    assert line["median"].tolist() == [2.0, 1.5]
    assert line["count"].tolist() == [2, 3]
    low = sensitivity.along(frame, "fast", "sharpe", direction="minimize")
    assert low["best"].tolist() == [1.0, 0.5]
    grid = sensitivity.pair(frame, "fast", "slow", "sharpe")
    assert list(grid.columns) == ["5", "10"] and list(grid.index) == ["20", "40"]
    assert grid.to_numpy().tolist() == [[1.0, 2.0], [3.0, 1.5]]


def test_many_float_values_are_binned_and_categories_kept():
    rng = np.random.default_rng(3)
    risk = np.exp(rng.uniform(math.log(0.001), math.log(0.1), 200))
    frame = pd.DataFrame({"risk": risk, "kind": rng.choice(["sma", "ema"], 200), "sharpe": np.log(risk)})
    axis = sensitivity.make_axis("risk", list(frame["risk"]), bins=4, log=True)
    assert len(axis.labels) == 4 and axis.labels[0].startswith("[0.001")
    # equal cells in log space: each holds about a quarter of log-uniform draws
    assert all(30 < (axis.codes == c).sum() < 70 for c in range(4))
    line = sensitivity.along(frame, "risk", "sharpe", bins=4, space={"risk": {"log": True}})
    assert line["best"].is_monotonic_increasing
    kinds = sensitivity.along(frame, "kind", "sharpe", space={"kind": {"choices": ["sma", "ema"]}})
    assert list(kinds.index) == ["sma", "ema"]
    # categorical parameters are held: the neighbours of the best vary risk only
    peak = sensitivity.isolated_peak(frame, ["risk", "kind"], "sharpe", bins=4)
    assert peak.isolated is False and peak.neighbours == 1


def test_analyse_a_study(tmp_path):
    trials = [trial(i, {"fast": f, "slow": s, "kind": "sma"}, values=[spike(f, s)], metrics={"sharpe": spike(f, s)})
              for i, (f, s) in enumerate((f, s) for f in FAST for s in SLOW)]
    trials.append(trial(len(trials), {"fast": 5, "slow": 20, "kind": "sma"}, state="failed", error="ZeroDivisionError"))
    s = study.load(write_study(tmp_path / "s", trials, space={"fast": {"kind": "int"}, "slow": {"kind": "int"},
                                                              "kind": {"kind": "fixed"}}))
    result = sensitivity.analyse(s)
    assert result.params == ["fast", "slow"]  # `kind` holds one value
    assert set(result.along) == {"fast", "slow"} and set(result.pairs) == {("fast", "slow")}
    assert result.along["fast"]["count"].sum() == 100  # the failed trial is left out
    assert result.peak.isolated is True


@pytest.mark.parametrize("call, message", [
    (lambda f: sensitivity.along(f, "nope", "sharpe"), "`nope` is not a parameter"),
    (lambda f: sensitivity.along(f, "fast", "sortino"), "no column `sortino`"),
    (lambda f: sensitivity.along(f.iloc[:0], "fast", "sharpe"), "no complete trial"),
    (lambda f: sensitivity.isolated_peak(f, ["fast"], "sharpe", fraction=1.5), "between 0 and 1"),
])
def test_errors(call, message):
    with pytest.raises(sensitivity.SensitivityError, match=message):
        call(table(plateau))
