"""Monte Carlo on a finished run: the order of its trades permuted, or its trades resampled with
replacement (bootstrap), N seeded reruns, with percentile bands of the equity path, the final
value and the maximum drawdown; and :func:`noisy_ohlc`, bars perturbed with price noise that stay
valid.

Trades compound: trade *i* returns ``r_i = pnl_i / E_i`` where ``E_i`` is the closed-trade equity
before it (the initial cash plus the PnL of the trades that closed earlier, in exit order), and a
simulated path is ``initial × Π (1 + r)``. A return below -100% is clamped to -100% (the equity
reaches 0 and stays there), so a drawdown is always within [0, 1]. The product does not depend on
the order, so every permutation ends on the run's own closed-trade equity; the final value is
computed as ``initial × exp(fsum(log(1 + r)))``, which is exactly the same number for every order.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from ..results import Results, ResultsError, load

__all__ = ["MonteCarlo", "MonteCarloError", "METHODS", "PERCENTILES", "trade_returns", "simulate", "run",
           "noisy_ohlc", "max_drawdowns", "read"]

METHODS = ("permutation", "bootstrap")
PERCENTILES = (5, 25, 50, 75, 95)
#: Points per drawn band at most (the trade axis is sampled evenly beyond that).
MAX_BAND_POINTS = 2000


class MonteCarloError(ValueError):
    """A Monte Carlo run that cannot be made; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class MonteCarlo:
    """The outcome of :func:`simulate` (what ``montecarlo-<method>.json`` holds)."""

    method: str
    seed: int
    runs: int
    trades: int
    initial: float
    percentiles: list[int]
    #: Trade numbers (0 = before the first trade) at which the bands are given.
    steps: list[int]
    #: Percentile -> equity at each of ``steps`` (keys as strings: "5", "25"...).
    bands: dict[str, list[float]]
    final_value: dict[str, float]
    max_drawdown: dict[str, float]
    #: The run's own path: its final closed-trade equity and maximum drawdown over trades.
    actual_final_value: float
    actual_max_drawdown: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False, indent=1)

    def summary(self) -> str:
        """A small table: the percentiles of the final value and of the maximum drawdown."""
        lines = [f"Monte Carlo ({self.method}, {self.runs} paths over {self.trades} trades, seed {self.seed})",
                 f"{'percentile':>10} {'final value':>14} {'max drawdown':>13}"]
        for p in self.percentiles:
            key = str(p)
            lines.append(f"{p:>10} {self.final_value[key]:>14.2f} {self.max_drawdown[key]:>13.2%}")
        lines.append(f"{'this run':>10} {self.actual_final_value:>14.2f} {self.actual_max_drawdown:>13.2%}")
        return "\n".join(lines)


def trade_returns(pnl: Sequence[float] | npt.NDArray[np.float64], initial: float) -> npt.NDArray[np.float64]:
    """Each trade's return on the closed-trade equity before it (clamped at -1, see the module doc)."""
    pnl_array = np.asarray(pnl, dtype=np.float64)
    if not initial > 0 or not math.isfinite(initial):
        raise MonteCarloError(f"the initial equity must be positive, got {initial}")
    if not np.all(np.isfinite(pnl_array)):
        raise MonteCarloError("the trades' PnL holds NaN or infinite values")
    before = initial + np.concatenate([[0.0], np.cumsum(pnl_array)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(before > 0, pnl_array / np.where(before > 0, before, 1.0), -1.0)
    return np.maximum(returns, -1.0)


def _paths(log_growth: npt.NDArray[np.float64], initial: float) -> npt.NDArray[np.float64]:
    """Equity paths (runs × trades+1) from per-trade log growth (−inf is ruin)."""
    cumulative = np.cumsum(log_growth, axis=1)
    return np.asarray(initial * np.exp(np.concatenate([np.zeros((len(log_growth), 1)), cumulative], axis=1)),
                      dtype=np.float64)


def max_drawdowns(paths: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The maximum drawdown of each path (row), as a fraction in [0, 1]."""
    peaks = np.maximum.accumulate(paths, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        under = np.where(peaks > 0, 1.0 - paths / np.where(peaks > 0, peaks, 1.0), 1.0)
    return np.asarray(np.clip(under.max(axis=1), 0.0, 1.0), dtype=np.float64)


def _final(log_growth: npt.NDArray[np.float64], initial: float) -> float:
    # fsum is correctly rounded: the same value whatever the order of the terms
    return initial * math.exp(math.fsum(log_growth.tolist()))


def simulate(returns: Sequence[float] | npt.NDArray[np.float64], initial: float, method: str = "permutation",
             runs: int = 1000, seed: int = 0) -> MonteCarlo:
    """``runs`` reruns of the trade ``returns`` (``permutation`` or ``bootstrap``) from
    ``initial``, seeded: the same seed gives the same result."""
    if method not in METHODS:
        raise MonteCarloError(f"unknown Monte Carlo method `{method}`", f"methods: {', '.join(METHODS)}")
    if runs < 1:
        raise MonteCarloError(f"the number of runs must be at least 1, got {runs}")
    r = np.maximum(np.asarray(returns, dtype=np.float64), -1.0)
    if len(r) < 2:
        raise MonteCarloError(f"Monte Carlo needs at least 2 closed trades, the run has {len(r)}",
                              "a run with more trades (a longer period or more symbols)")
    if not np.all(np.isfinite(r)):
        raise MonteCarloError("the trade returns hold NaN or infinite values")
    with np.errstate(divide="ignore"):
        growth = np.log1p(r)
    rng = np.random.default_rng(seed)
    if method == "permutation":
        sampled = np.stack([growth[rng.permutation(len(growth))] for _ in range(runs)])
    else:
        sampled = growth[rng.integers(0, len(growth), size=(runs, len(growth)))]
    paths = _paths(sampled, initial)
    finals = np.array([_final(row, initial) for row in sampled])
    drawdowns = max_drawdowns(paths)
    steps = np.unique(np.linspace(0, len(r), min(len(r) + 1, MAX_BAND_POINTS)).astype(np.int64))
    bands = np.percentile(paths[:, steps], PERCENTILES, axis=0)
    actual = _paths(growth[None, :], initial)
    return MonteCarlo(
        method=method, seed=seed, runs=runs, trades=len(r), initial=initial, percentiles=list(PERCENTILES),
        steps=steps.tolist(), bands={str(p): bands[i].tolist() for i, p in enumerate(PERCENTILES)},
        final_value={str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(finals, PERCENTILES))},
        max_drawdown={str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(drawdowns, PERCENTILES))},
        actual_final_value=_final(growth, initial), actual_max_drawdown=float(max_drawdowns(actual)[0]))


def _initial_cash(results: Results) -> float:
    for value in (results.raw.get("initial_cash"), results.info.get("initial_cash")):
        if value is not None:
            return float(value)
    raise MonteCarloError(f"`{results.path}/metrics.json` has no initial_cash")


def run(run_dir: str | os.PathLike[str], method: str = "permutation", runs: int = 1000, seed: int = 0,
        write: bool = True) -> MonteCarlo:
    """Monte Carlo over the closed trades of the results folder ``run_dir``; writes
    ``run_dir/montecarlo-<method>.json`` unless ``write`` is false."""
    try:
        results = load(run_dir)
    except ResultsError as err:
        raise MonteCarloError(str(err), err.hint) from None
    trades = results.table("trades", money="float")
    if not len(trades) or "pnl" not in trades.columns:
        raise MonteCarloError(f"`{results.path}` has no closed trades", "Monte Carlo reorders a run's trades")
    trades = trades.sort_index(kind="stable")  # exit order
    initial = _initial_cash(results)
    outcome = simulate(trade_returns(trades["pnl"].to_numpy(dtype=np.float64), initial), initial, method, runs, seed)
    if write:
        (results.path / f"montecarlo-{method}.json").write_text(outcome.to_json() + "\n", encoding="utf-8")
    return outcome


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``montecarlo-<method>.json`` as written by :func:`run`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MonteCarloError(f"cannot read `{path}`: {err}") from None
    if not isinstance(data, dict) or "bands" not in data:
        raise MonteCarloError(f"`{path}` is not a Monte Carlo result")
    return data


def noisy_ohlc(open_: Sequence[float] | npt.NDArray[np.float64], high: Sequence[float] | npt.NDArray[np.float64],
               low: Sequence[float] | npt.NDArray[np.float64], close: Sequence[float] | npt.NDArray[np.float64],
               scale: float, seed: int, decimals: int | None = None
               ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The bars with each price multiplied by ``exp(scale × z)`` (z standard normal, one draw per
    price, seeded), then the high raised to the largest and the low lowered to the smallest of the
    bar's four prices, so every bar stays valid: ``0 < low <= open, close <= high``. With
    ``decimals`` the prices are rounded to that many places (rounding keeps their order; a low
    that would round to 0 becomes one unit of the last place)."""
    o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in (open_, high, low, close))
    if not (len(o) == len(h) == len(lo) == len(c)):
        raise MonteCarloError(f"open, high, low and close differ in length ({len(o)}, {len(h)}, {len(lo)}, {len(c)})")
    if not (math.isfinite(scale) and scale >= 0):
        raise MonteCarloError(f"the noise scale must be a finite number >= 0, got {scale}")
    stacked = np.stack([o, h, lo, c])
    if not np.all(np.isfinite(stacked)) or np.any(stacked <= 0):
        raise MonteCarloError("prices must be finite and positive")
    bad = np.flatnonzero((lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo > h))
    if len(bad):
        raise MonteCarloError(f"bar {int(bad[0])} is not valid (low <= open, close <= high)",
                              f"{len(bad)} invalid bars; fix the data first")
    rng = np.random.default_rng(seed)
    noisy = stacked * np.exp(scale * rng.standard_normal(stacked.shape))
    if decimals is not None:
        noisy = np.maximum(np.round(noisy, decimals), 10.0 ** -decimals)
    no, nc = noisy[0], noisy[3]
    nh = np.maximum.reduce([noisy[1], no, nc, noisy[2]])
    nl = np.minimum.reduce([noisy[2], no, nc, noisy[1]])
    return no, nh, nl, nc
