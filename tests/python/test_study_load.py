"""rustybt_api.study.load over study.sqlite fixtures: the trial table, the best trial, the Pareto
front, the overfitting statistics from the stored returns, and walk-forward windows (stitched
out-of-sample equity, walk-forward efficiency, the parameters' path)."""

from __future__ import annotations

import math
import sqlite3
from decimal import Decimal

import numpy as np
import pytest

from rustybt_api import study
from rustybt_api.study import stats
from study_support import days, trial, write_run, write_study

SPACE = {"fast": {"kind": "int", "default": 10, "low": 5, "high": 20, "step": 5, "log": False, "choices": None},
         "slow": {"kind": "int", "default": 40, "low": 30, "high": 60, "step": 10, "log": False, "choices": None}}


def grid_study(tmp_path, count=12, objectives=None):
    rng = np.random.default_rng(0)
    trials = []
    for number in range(count):
        returns = rng.normal(0.0005 * (number % 4), 0.01, 300)
        sharpe = float(np.mean(returns) / np.std(returns, ddof=1) * math.sqrt(252))
        metrics = {"sharpe": sharpe, "max_drawdown": 0.05 + 0.01 * number, "net_profit": f"{100 * number}.25",
                   "num_trades": 10 + number, "costs": {"commission": "1.50"}}
        values = [sharpe] if objectives is None else [metrics[o["metric"]] for o in objectives]
        trials.append(trial(number, {"fast": 5 + 5 * (number % 4), "slow": 30 + 10 * (number // 4)}, values=values,
                            metrics=metrics, returns=returns))
    trials.append(trial(count, {"fast": 5, "slow": 60}, state="failed", error="ZeroDivisionError: division by zero"))
    trials.append(trial(count + 1, {"fast": 20, "slow": 30}, state="infeasible"))
    trials.append(trial(count + 2, {"fast": 15, "slow": 30}, state="too_few_trades", metrics={"num_trades": 0}))
    meta = {"space": SPACE}
    if objectives:
        meta["objectives"] = objectives
    return study.load(write_study(tmp_path / "study", trials, **meta)), trials


def test_the_trial_table(tmp_path):
    s, trials = grid_study(tmp_path)
    t = s.trials
    assert list(t.index) == list(range(15)) and t.index.name == "number"
    assert list(t.columns[:5]) == ["state", "window", "seed", "fast", "slow"]
    assert s.param_names == ["fast", "slow"] and s.objective_columns == ["objective.sharpe"]
    assert t["state"].value_counts().to_dict() == {"complete": 12, "failed": 1, "infeasible": 1, "too_few_trades": 1}
    assert t.loc[3, "fast"] == 20 and t.loc[3, "slow"] == 30
    assert t.loc[3, "objective.sharpe"] == trials[3]["values"][0]
    assert t.loc[3, "net_profit"] == Decimal("300.25") and t.loc[3, "costs.commission"] == Decimal("1.50")
    assert t.loc[12, "error"] == "ZeroDivisionError: division by zero" and math.isnan(t.loc[12, "objective.sharpe"])
    assert t.loc[14, "num_trades"] == 0
    assert s.meta["method"] == "grid" and s.meta["code_hash"] == "c0de" * 16
    assert not s.is_walk_forward and len(s.windows) == 0
    assert "complete 12" in repr(s)


def test_best_and_pareto_front(tmp_path):
    s, _ = grid_study(tmp_path)
    sharpe = s.trials["objective.sharpe"]
    assert s.best().name == sharpe.idxmax()
    assert s.best_params == {"fast": s.trials.loc[sharpe.idxmax(), "fast"], "slow": s.trials.loc[sharpe.idxmax(), "slow"]}
    assert list(s.pareto_front().index) == [sharpe.idxmax()]  # one objective: the best alone
    objectives = [{"metric": "sharpe", "direction": "maximize"}, {"metric": "max_drawdown", "direction": "minimize"}]
    m, _ = grid_study(tmp_path / "multi", objectives=objectives)
    front = m.pareto_front()
    values = m.complete()[["objective.sharpe", "objective.max_drawdown"]].to_numpy()
    # by hand: a trial is on the front when no other has a higher-or-equal sharpe and a
    # lower-or-equal drawdown, one of them strictly
    expected = [int(n) for n, (sr, dd) in zip(m.complete().index, values)
                if not any((o_sr >= sr and o_dd <= dd) and (o_sr > sr or o_dd < dd) for o_sr, o_dd in values)]
    assert sorted(front.index) == sorted(expected)
    assert 0 in front.index  # the lowest drawdown is never dominated
    assert len(front) >= 2 and front["objective.sharpe"].is_monotonic_decreasing


def test_overfitting_statistics_from_the_stored_returns(tmp_path):
    s, trials = grid_study(tmp_path)
    result = s.overfitting(partitions=10)
    matrix = np.array([t["returns"] for t in trials[:12]]).T
    sharpes = [stats.sharpe(matrix[:, i]) for i in range(12)]
    best = int(np.argmax(sharpes))
    assert result.best_trial == best and result.trials == 12 and result.observations == 300
    assert result.sharpe == pytest.approx(sharpes[best])
    assert result.sharpe_annual == pytest.approx(s.trials.loc[best, "objective.sharpe"], rel=1e-12)
    assert result.sharpe_variance == pytest.approx(np.var(sharpes, ddof=1))
    skew, kurt = stats.moments(matrix[:, best])
    assert result.dsr == pytest.approx(stats.deflated_sharpe_ratio(sharpes[best], 300, 12, np.var(sharpes, ddof=1),
                                                                   skew, kurt))
    assert result.psr == pytest.approx(stats.probabilistic_sharpe_ratio(sharpes[best], 0.0, 300, skew, kurt))
    assert result.dsr < result.psr  # selection among 12 deflates
    assert result.pbo is not None
    assert result.pbo.pbo == stats.probability_of_backtest_overfitting(matrix, 10).pbo
    short = s.overfitting(partitions=200)  # 300 days cannot fill 200 partitions twice
    assert short.pbo is None and "needs at least 400 days" in short.notes[0]


def test_trials_on_other_days_are_aligned_on_common_days(tmp_path):
    rng = np.random.default_rng(1)
    trials = [trial(0, {"fast": 5}, values=[1.0], returns=rng.normal(0, 0.01, 50)),
              trial(1, {"fast": 10}, values=[2.0], returns=rng.normal(0, 0.01, 40), day_list=days(50)[10:])]
    s = study.load(write_study(tmp_path / "s", trials))
    matrix = s.returns_matrix()
    assert matrix.shape == (40, 2) and matrix.index[0] == days(50)[10]


def window_study(tmp_path):
    base = tmp_path / "wf"
    windows, trials = [], []
    equity_levels = [("10000", "11000"), ("10000", "9900"), ("10000", "10500")]
    starts = ["2024-01-01", "2024-02-01", "2024-03-01"]
    ends = ["2024-02-01", "2024-03-01", "2024-04-01"]
    for k, ((first, last), start, end) in enumerate(zip(equity_levels, starts, ends)):
        write_run(base / f"windows/{k}", [(f"{start}T00:00:00Z", first), (f"{end}T00:00:00Z", last)],
                  metrics={"total_return": float(Decimal(last) / Decimal(first) - 1)})
        windows.append({"number": k, "train_start": f"2023-{7 + k:02d}-01", "train_end": start, "test_start": start, "test_end": end,
                        "best_params": {"fast": 5 + 5 * k, "slow": 40}, "best_train_values": [0.20 + 0.05 * k],
                        "test_metrics": {"total_return": float(Decimal(last) / Decimal(first) - 1), "num_trades": 4},
                        "results_dir": f"windows/{k}"})
        for j in range(3):
            trials.append(trial(10 * k + j, {"fast": 5 + 5 * j, "slow": 40}, values=[0.1 * j + 0.05 * k], window=k,
                                returns=np.random.default_rng(k * 10 + j).normal(0.001 * j, 0.01, 64)))
    objectives = [{"metric": "total_return", "direction": "maximize"}]
    wf = {"train": "180d", "test": "30d", "step": "30d", "anchored": False}
    return study.load(write_study(base, trials, windows, objectives=objectives, walk_forward=wf, space=SPACE))


def test_walk_forward_windows(tmp_path):
    s = window_study(tmp_path)
    assert s.is_walk_forward and list(s.windows.index) == [0, 1, 2]
    assert s.parameter_path()["fast"].tolist() == [5, 10, 15]
    assert s.windows.loc[1, "test_metrics"]["num_trades"] == 4
    # the last window's trials by default
    assert s.best().name == 22 and s.best_params == {"fast": 15, "slow": 40}
    assert s.best(window=0).name == 2
    assert s.overfitting(partitions=4).best_trial == 22


def test_trials_with_and_without_a_window(tmp_path):
    # a store may hold a full-period trial beside the windows' trials: each group stays apart
    trials = [trial(0, {"fast": 5}, values=[1.0]), trial(1, {"fast": 10}, values=[3.0], window=0),
              trial(2, {"fast": 15}, values=[2.0], window=0)]
    s = study.load(write_study(tmp_path / "mixed", trials))
    assert list(s.complete().index) == [0] and s.best().name == 0
    assert list(s.ranked(window=0).index) == [1, 2]


def test_stitched_out_of_sample_equity(tmp_path):
    s = window_study(tmp_path)
    stitched = s.stitched_equity()
    # each window starts where the previous ended: 10000 → 11000, ×0.99 → 10890, ×1.05 → 11434.5
    assert stitched.tolist() == pytest.approx([10000, 11000, 11000, 10890, 10890, 11434.5])
    assert str(stitched.index[0]) == "2024-01-01 00:00:00+00:00"


def test_walk_forward_efficiency(tmp_path):
    s = window_study(tmp_path)
    eff = s.efficiency()
    assert eff.metric == "total_return"
    table = eff.per_window
    # window 0: in sample 20% over the half year 2023-07-01..2024-01-01 (184 days), out of sample
    # 10% over January (31 days); both annualised by compounding
    is_years, oos_years = 184 / 365.25, 31 / 365.25
    is_annual, oos_annual = 1.2 ** (1 / is_years) - 1, 1.1 ** (1 / oos_years) - 1
    assert table.loc[0, "in_sample"] == pytest.approx(is_annual)
    assert table.loc[0, "out_of_sample"] == pytest.approx(oos_annual)
    assert table.loc[0, "efficiency"] == pytest.approx(oos_annual / is_annual)
    assert table.loc[1, "efficiency"] < 0  # a losing out-of-sample month
    assert eff.overall == pytest.approx(table["out_of_sample"].mean() / table["in_sample"].mean())


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "missing", "is not a study folder \\(no study.sqlite\\)"),
    (lambda d: write_study(d / "v2", [], schema_version=2), "schema version 2, this rustybt reads version 1"),
])
def test_load_errors(tmp_path, setup, message):
    with pytest.raises(study.StudyError, match=message):
        study.load(setup(tmp_path))


def test_a_damaged_store_is_an_error(tmp_path):
    folder = write_study(tmp_path / "bad", [trial(0, {"fast": 5}, values=[1.0])])
    with sqlite3.connect(folder / "study.sqlite") as db:
        db.execute("UPDATE trials SET params = '{not json'")
    with pytest.raises(study.StudyError, match="invalid JSON in trial 0 params"):
        study.load(folder)
    (folder / "study.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(study.StudyError, match="cannot read"):
        study.load(folder)


def test_a_study_without_complete_trials(tmp_path):
    s = study.load(write_study(tmp_path / "s", [trial(0, {"fast": 5}, state="failed", error="boom")]))
    with pytest.raises(study.StudyError, match="no complete trial") as err:
        s.best()
    assert "failed" in err.value.hint
    with pytest.raises(study.StudyError, match="at least 3 days of returns"):
        s.overfitting()
