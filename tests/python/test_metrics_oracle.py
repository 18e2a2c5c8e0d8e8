"""rustybt's metrics against empyrical-reloaded, the test oracle (docs/metrics.md).

The numbers compared come from the product's code: golden series go through the
`return_stats` example (the same functions `rustybt run` uses), real runs through
metrics.json. Money metrics are held against sums over the run's CSV files in Decimal.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BIN, ROOT, RunResult

REL = 1e-12
EXAMPLE = BIN.parent / "examples" / "return_stats"

# empyrical's own test fixtures (percent returns), plus the edge cases of issue 15.
rng = random.Random(1337)
FIXTURES: dict[str, list[float]] = {
    "simple_benchmark": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
    "positive_returns": [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    "negative_returns": [0.0, -6.0, -7.0, -1.0, -9.0, -2.0, -6.0, -8.0, -5.0],
    "all_negative_returns": [-2.0, -6.0, -7.0, -1.0, -9.0, -2.0, -6.0, -8.0, -5.0],
    "mixed_returns": [math.nan, 1.0, 10.0, -4.0, 2.0, 3.0, 2.0, 1.0, -10.0],
    "flat_line_1": [1.0] * 9,
    "flat_zero": [0.0] * 30,
    "one_return": [1.0],
    "nan_gaps": [0.5, math.nan, -1.2, 2.0, math.nan, math.nan, 0.3, -0.7, 1.1, -2.5, 0.9],
    "noise": [rng.gauss(0, 0.1) for _ in range(1000)],
    "noise_uniform": [rng.uniform(-1, 1) for _ in range(1000)],
    "long_drift": [0.05 + 0.8 * math.sin(i / 7.0) for i in range(400)],
}
SERIES = {name: np.array(v) / 100 for name, v in FIXTURES.items()}


def product_stats(returns: np.ndarray, benchmark: np.ndarray | None = None,
                  ppy: float = 252, rf: float = 0.0) -> dict[str, Any]:
    if not EXAMPLE.exists():
        pytest.fail(f"{EXAMPLE} is missing: `cargo build --examples` (same profile as RUSTYBT_BIN)")
    doc = {
        "returns": [None if math.isnan(x) else x for x in returns.tolist()],
        "benchmark": [] if benchmark is None else benchmark.tolist(),
        "periods_per_year": ppy,
        "risk_free": rf,
    }
    out = subprocess.run([str(EXAMPLE)], input=json.dumps(doc), capture_output=True,
                         text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def same(ours: float | None, theirs: float) -> None:
    theirs = float(theirs)
    if not math.isfinite(theirs):
        assert ours is None, f"empyrical gives {theirs}, rustybt {ours}"
        return
    assert ours is not None, f"empyrical gives {theirs}, rustybt null"
    assert ours == pytest.approx(theirs, rel=REL, abs=1e-300), (ours, theirs)


def oracle(r: np.ndarray, ppy: float, rf: float) -> dict[str, float]:
    present = r[~np.isnan(r)]
    return {
        "total_return": ep.cum_returns_final(r),
        "cagr": ep.cagr(r, annualization=ppy),
        "annual_volatility": ep.annual_volatility(r, annualization=ppy),
        "sharpe": ep.sharpe_ratio(r, risk_free=rf, annualization=ppy),
        "sortino": ep.sortino_ratio(r, required_return=rf, annualization=ppy),
        "downside_risk": ep.downside_risk(r, required_return=rf, annualization=ppy),
        "calmar": ep.calmar_ratio(r, annualization=ppy),
        "omega": ep.omega_ratio(r, risk_free=rf, required_return=0.0),
        "tail_ratio": ep.tail_ratio(r),
        "stability": ep.stability_of_timeseries(r),
        "max_drawdown": ep.max_drawdown(r),
        # SciPy and np.percentile propagate NaN; rustybt drops missing days first.
        "skew": scipy.stats.skew(present) if len(present) else math.nan,
        "kurtosis": scipy.stats.kurtosis(present) if len(present) else math.nan,
        "var_95": ep.value_at_risk(present, 0.05),
        "var_99": ep.value_at_risk(present, 0.01),
        "cvar_95": ep.conditional_value_at_risk(r, 0.05),
        "cvar_99": ep.conditional_value_at_risk(r, 0.01),
    }


@pytest.mark.parametrize("rf", [0.0, 0.0001])
@pytest.mark.parametrize("ppy", [252, 365])
@pytest.mark.parametrize("name", sorted(SERIES))
def test_golden_series_equal_empyrical(name: str, ppy: int, rf: float) -> None:
    r = SERIES[name]
    ours = product_stats(r, ppy=ppy, rf=rf)
    for key, theirs in oracle(r, ppy, rf).items():
        with np.errstate(all="ignore"):
            try:
                same(ours[key], theirs)
            except AssertionError as e:
                raise AssertionError(f"{key}: {e}") from None


def drawdown_days(r: np.ndarray) -> int:
    """Longest run of days under the previous peak, from empyrical's drawdown series."""
    longest = current = 0
    for dd in ep.stats.drawdown_series(r) if len(r) else []:
        current = current + 1 if dd < 0 else 0
        longest = max(longest, current)
    return longest


@pytest.mark.parametrize("name", sorted(SERIES))
def test_drawdown_duration_counts_days_of_empyricals_drawdown_series(name: str) -> None:
    r = SERIES[name]
    assert product_stats(r)["max_drawdown_days"] == drawdown_days(r)


@pytest.mark.parametrize("ppy", [252, 365])
@pytest.mark.parametrize("rf", [0.0, 0.0002])
@pytest.mark.parametrize("name", ["noise", "noise_uniform", "long_drift", "positive_returns",
                                  "mixed_returns", "nan_gaps"])
def test_benchmark_relative_metrics_equal_empyrical(name: str, rf: float, ppy: int) -> None:
    r = SERIES[name]
    b = 0.6 * np.nan_to_num(r) + np.array([0.001 * math.cos(i) for i in range(len(r))])
    ours = product_stats(r, b, ppy=ppy, rf=rf)
    with np.errstate(all="ignore"):
        same(ours["beta"], ep.beta(r, b, risk_free=rf))
        same(ours["alpha"], ep.alpha(r, b, risk_free=rf, annualization=ppy))
        same(ours["information_ratio"], ep.excess_sharpe(r, b) * math.sqrt(ppy))
        same(ours["tracking_error"], ep.annual_volatility(r - b, annualization=ppy))


def test_parametric_var_uses_the_normal_quantiles() -> None:
    r = SERIES["noise"]
    ours = product_stats(r)
    mean, std = float(np.mean(r)), float(np.std(r, ddof=1))
    for level, tail in (("95", 0.05), ("99", 0.01)):
        z = scipy.stats.norm.ppf(tail)
        same(ours["parametric"][level]["var"], mean + std * z)
        same(ours["parametric"][level]["cvar"], mean - std * scipy.stats.norm.pdf(z) / tail)
        mc = ours["monte_carlo"][level]
        assert mc["var"] == pytest.approx(mean + std * z, rel=0.05)
    assert product_stats(r)["monte_carlo"] == ours["monte_carlo"]  # seeded


# Property tests (through the product's code).

# Returns in basis points: a return of 1e-112 is lost when 0.0078 is added and taken away again,
# which tests float rounding, not the definition.
bps_returns = st.lists(st.integers(-2000, 2000), min_size=3, max_size=60)


@settings(max_examples=25, deadline=None)
@given(bps_returns, st.integers(-100, 100))
def test_sharpe_unchanged_when_returns_and_risk_free_shift_together(
    returns_bps: list[int], shift_bps: int
) -> None:
    r, shift = np.array(returns_bps) / 1e4, shift_bps / 1e4
    base = product_stats(r)["sharpe"]
    shifted = product_stats(r + shift, rf=shift)["sharpe"]
    if base is None:
        return
    assert shifted == pytest.approx(base, rel=1e-9, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-0.99, 5.0, allow_nan=False), min_size=1, max_size=80))
def test_max_drawdown_is_between_zero_and_one(returns: list[float]) -> None:
    dd = product_stats(np.array(returns))["max_drawdown"]
    assert -1.0 <= dd <= 0.0


# Real runs: metrics.json against empyrical on the run's own daily returns.

def daily_returns(run: RunResult, day_end_hours: int = 0) -> np.ndarray:
    """The definition of docs/metrics.md, from equity.csv, in Decimal until the division."""
    m = run.metrics()
    last: dict[pd.Timestamp, Decimal] = {}
    with (run.out / "equity.csv").open() as f:
        for row in csv.DictReader(f):
            t = pd.Timestamp(row["time"]) - pd.Timedelta(1, "ns") - pd.Timedelta(hours=day_end_hours)
            last[t.floor("D")] = Decimal(row["equity"])
    values = [Decimal(m["initial_cash"])] + [last[d] for d in sorted(last)]
    return np.array([float((b - a) / a) for a, b in zip(values, values[1:])])


SMA = ROOT / "algorithms" / "sma_cross.py"


@pytest.fixture
def long_run(run_rustybt: Any, bars_csv: Any, tmp_path: Path) -> RunResult:
    # 150 days of hourly bars (weekends included: 365 days a year), volatile enough to trade.
    data = bars_csv(rows=24 * 150, seed=11, name="AAA", interval=dt.timedelta(hours=1),
                    volatility=0.01)
    result: RunResult = run_rustybt("run", "--algo", SMA, "--data", data, "--no-progress",
                                    "--risk-free", "0.03")
    assert result.returncode == 0, result.stderr
    return result


def test_real_run_metrics_equal_empyrical(long_run: RunResult) -> None:
    m = long_run.metrics()
    r = daily_returns(long_run)
    ppy = m["periods_per_year"]
    assert m["num_returns"] == len(r) >= 100
    assert m["risk_free_rate"] == 0.03
    rf = (1 + 0.03) ** (1 / ppy) - 1
    same(m["risk_free_daily"], rf)
    for key, theirs in oracle(r, ppy, rf).items():
        ours = {
            "annual_volatility": m["annualized_volatility"],
            "max_drawdown": None if m["max_drawdown_daily"] is None else -m["max_drawdown_daily"],
            "total_return": float(m["total_return"]),
            "var_95": m["var"]["historical"]["95"]["var"],
            "var_99": m["var"]["historical"]["99"]["var"],
            "cvar_95": m["var"]["historical"]["95"]["cvar"],
            "cvar_99": m["var"]["historical"]["99"]["cvar"],
            "downside_risk": ep.downside_risk(r, rf, annualization=ppy),
        }.get(key, m.get(key))
        if key == "total_return":  # exact Decimal in the file: 12 places
            assert ours == pytest.approx(float(theirs), abs=1e-12)
            continue
        same(ours, theirs)
    assert m["max_drawdown_daily_days"] == drawdown_days(r)
    # The benchmark (default: buy and hold of the one symbol) and the relative metrics.
    b = benchmark_returns(long_run)
    bench = m["benchmark"]
    assert bench["symbols"] == ["AAA"]
    same(bench["sharpe"], ep.sharpe_ratio(b, risk_free=rf, annualization=ppy))
    same(bench["annualized_volatility"], ep.annual_volatility(b, annualization=ppy))
    same(m["beta"], ep.beta(r, b))
    same(m["alpha"], ep.alpha(r, b, risk_free=rf, annualization=ppy))
    same(m["information_ratio"], ep.excess_sharpe(r, b) * math.sqrt(ppy))
    same(m["tracking_error"], ep.annual_volatility(r - b, annualization=ppy))


def benchmark_returns(run: RunResult) -> np.ndarray:
    """Buy and hold of the run's one symbol from its first close, at the equity's day ends."""
    m = run.metrics()
    data = Path(m["run"]["data_files"][0])
    interval = pd.Timedelta(m["run"]["bar_interval_ns"], "ns")
    bars = pd.read_csv(data)
    time_col = bars.columns[0]
    closes = pd.Series(bars["close"].astype(float).to_numpy(),
                       index=pd.to_datetime(bars[time_col], utc=True) + interval)
    days = (closes.index - pd.Timedelta(1, "ns")).floor("D")
    by_day = closes.groupby(days).last()
    values = np.concatenate([[closes.iloc[0]], by_day.to_numpy()]) / closes.iloc[0]
    values[0] = 1.0
    return np.asarray(values[1:] / values[:-1] - 1)


def test_money_metrics_equal_sums_over_the_files(long_run: RunResult) -> None:
    m = long_run.metrics()
    fills = long_run.csv_rows("fills.csv")
    trades = long_run.csv_rows("trades.csv")
    costs = long_run.csv_rows("costs.csv")
    assert trades, "the run must trade"
    dec = Decimal
    pnl = [dec(t["pnl"]) for t in trades]
    wins = [p for p in pnl if p > 0]
    losses = [p for p in pnl if p < 0]
    assert dec(m["fees_paid"]) == sum((dec(f["fee"]) for f in fills), dec(0))
    for kind in ("commission", "slippage", "borrow", "financing"):
        total = sum((dec(c["amount"]) for c in costs if c["kind"] == kind), dec(0))
        assert dec(m["costs"][kind]) == total, kind
    assert dec(m["gross_profit"]) == sum(wins, dec(0))
    assert dec(m["gross_loss"]) == sum(losses, dec(0))
    assert dec(m["largest_win"]) == max(wins) and dec(m["smallest_win"]) == min(wins)
    assert dec(m["largest_loss"]) == min(losses) and dec(m["smallest_loss"]) == max(losses)
    q = dec("1e-12")
    assert dec(m["expectancy"]) == (sum(pnl, dec(0)) / len(pnl)).quantize(q).normalize()
    assert dec(m["avg_win"]) == (sum(wins, dec(0)) / len(wins)).quantize(q).normalize()
    assert dec(m["avg_loss"]) == (sum(losses, dec(0)) / len(losses)).quantize(q).normalize()
    mae = [dec(t["mae"]) for t in trades]
    mfe = [dec(t["mfe"]) for t in trades]
    assert all(a <= 0 <= f for a, f in zip(mae, mfe))
    assert all(a <= p + dec(t["fees"]) <= f for a, f, p, t in zip(mae, mfe, pnl, trades))
    assert dec(m["worst_mae"]) == min(mae) and dec(m["best_mfe"]) == max(mfe)
    assert dec(m["avg_mae"]) == (sum(mae, dec(0)) / len(mae)).quantize(q).normalize()
    final = dec(long_run.csv_rows("equity.csv")[-1]["equity"])
    assert dec(m["net_profit"]) == final - dec(m["initial_cash"])
    s = m["trade_stats"]
    assert sum(g["trades"] for g in s["by_direction"].values()) == len(trades)
    assert dec(s["by_symbol"]["AAA"]["net_pnl"]) == sum(pnl, dec(0))
    assert 0 < s["exposure"] <= 1
    assert m["num_winning_trades"] == len(wins)
    assert m["win_rate"] == pytest.approx(len(wins) / len(trades))


def test_unknown_benchmark_is_a_usage_error(run_rustybt: Any, bars_csv: Any) -> None:
    data = bars_csv(rows=500, name="AAA")
    result = run_rustybt("run", "--algo", SMA, "--data", data, "--no-progress",
                         "--benchmark", "SPY")
    assert result.returncode == 2, result.stderr
    assert "benchmark `SPY` is not one of the run's symbols (AAA)" in result.stderr
    result.assert_clean_failure()
