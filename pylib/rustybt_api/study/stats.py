"""Overfitting statistics of a study: the Probabilistic and Deflated Sharpe Ratios, the Minimum
Track Record Length (Bailey and López de Prado, "The Sharpe Ratio Efficient Frontier", 2012, and
"The Deflated Sharpe Ratio", 2014) and the Probability of Backtest Overfitting by combinatorially
symmetric cross-validation (Bailey, Borwein, López de Prado and Zhu, "The Probability of Backtest
Overfitting", 2015).

Every Sharpe ratio here is *per observation* (not annualised): ``mean / std`` of the daily returns
(``std`` with ``ddof=1``), in the same unit as the number of observations ``n``. ``kurtosis`` is
the plain (not excess) kurtosis, 3 for normal returns; skewness and kurtosis are the population
moments of the returns (as the papers use them).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "StatsError", "sharpe", "moments", "probabilistic_sharpe_ratio", "deflated_sharpe_ratio",
    "expected_max_sharpe", "minimum_track_record_length", "PBOResult", "probability_of_backtest_overfitting",
]

_NORMAL = NormalDist()
#: The Euler-Mascheroni constant of the expected maximum of N normal draws.
EULER_GAMMA = 0.5772156649015329


class StatsError(ValueError):
    """Inputs a statistic cannot be computed from (too few trials or days, NaN, a Sharpe ratio
    not above its benchmark...); the message says which."""


def _returns(values: npt.ArrayLike, what: str = "returns") -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise StatsError(f"{what} must be one series, got an array of shape {array.shape}")
    if len(array) < 3:
        raise StatsError(f"{what} need at least 3 observations, got {len(array)}")
    if not np.all(np.isfinite(array)):
        raise StatsError(f"{what} hold NaN or infinite values (at positions {np.flatnonzero(~np.isfinite(array))[:5].tolist()})")
    return array


def sharpe(returns: npt.ArrayLike) -> float:
    """Per-observation Sharpe ratio ``mean / std`` (``ddof=1``) of ``returns``; 0 for a flat series."""
    array = _returns(returns)
    std = float(np.std(array, ddof=1))
    return 0.0 if std == 0 else float(np.mean(array)) / std


def moments(returns: npt.ArrayLike) -> tuple[float, float]:
    """``(skewness, kurtosis)`` of ``returns`` (population moments; kurtosis 3 when normal).
    A flat series has no shape: ``(0, 3)``."""
    array = _returns(returns)
    centred = array - array.mean()
    var = float(np.mean(centred**2))
    if var == 0:
        return 0.0, 3.0
    return float(np.mean(centred**3)) / var**1.5, float(np.mean(centred**4)) / var**2


def _sharpe_std_factor(sr: float, skew: float, kurtosis: float) -> float:
    inner = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not inner > 0:
        raise StatsError(f"the Sharpe ratio's variance term 1 - skew*SR + (kurtosis-1)/4*SR^2 is {inner:.4g}, "
                         "not positive: check the skewness and kurtosis (kurtosis is 3 for normal returns, not 0)")
    return math.sqrt(inner)


def probabilistic_sharpe_ratio(sr: float, benchmark: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """PSR: the probability that the true Sharpe ratio exceeds ``benchmark``, given the observed
    per-observation ``sr`` over ``n`` returns of that skewness and kurtosis:
    ``Φ((SR - SR*) √(n-1) / √(1 - γ3 SR + (γ4-1)/4 SR²))``."""
    if n < 2:
        raise StatsError(f"the PSR needs at least 2 returns, got {n}")
    for name, value in (("sr", sr), ("benchmark", benchmark), ("skew", skew), ("kurtosis", kurtosis)):
        if not math.isfinite(value):
            raise StatsError(f"{name} is {value}, not a finite number")
    z = (sr - benchmark) * math.sqrt(n - 1) / _sharpe_std_factor(sr, skew, kurtosis)
    return _NORMAL.cdf(z)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """``SR0``: the expected maximum of ``n_trials`` Sharpe ratios whose true value is 0 and whose
    estimates vary with ``variance`` (the variance of the trials' Sharpe ratios):
    ``√V ((1-γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``. One trial has no selection: 0."""
    if n_trials < 1:
        raise StatsError(f"the number of trials must be at least 1, got {n_trials}")
    if not (math.isfinite(variance) and variance >= 0):
        raise StatsError(f"the variance of the trials' Sharpe ratios must be finite and >= 0, got {variance}")
    if n_trials == 1:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n_trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e)))


def deflated_sharpe_ratio(sr: float, n: int, n_trials: int, sharpe_variance: float, skew: float = 0.0,
                          kurtosis: float = 3.0) -> float:
    """DSR: the PSR of the selected trial's ``sr`` against ``SR0 = expected_max_sharpe(n_trials,
    sharpe_variance)``, the best Sharpe ratio that ``n_trials`` skill-less trials would show."""
    return probabilistic_sharpe_ratio(sr, expected_max_sharpe(n_trials, sharpe_variance), n, skew, kurtosis)


def minimum_track_record_length(sr: float, benchmark: float, skew: float = 0.0, kurtosis: float = 3.0,
                                probability: float = 0.95) -> float:
    """MinTRL: how many returns (of the ``sr``'s frequency) are needed before the observed ``sr``
    is above ``benchmark`` with ``probability``:
    ``1 + (1 - γ3 SR + (γ4-1)/4 SR²) (Φ⁻¹(p) / (SR - SR*))²``."""
    if not 0 < probability < 1:
        raise StatsError(f"the probability must be between 0 and 1, got {probability}")
    if not sr > benchmark:
        raise StatsError(f"the Sharpe ratio {sr:.6g} is not above the benchmark {benchmark:.6g}: "
                         "no track record is long enough")
    factor = _sharpe_std_factor(sr, skew, kurtosis) ** 2
    return 1.0 + factor * (_NORMAL.inv_cdf(probability) / (sr - benchmark)) ** 2


@dataclass(frozen=True)
class PBOResult:
    """The outcome of CSCV: ``pbo`` is the share of ``logits`` at or below 0 (the in-sample best
    trial ranked in the lower half out of sample)."""

    pbo: float
    #: ``log(ω / (1 - ω))`` per combination, ω the out-of-sample relative rank of the in-sample best.
    logits: npt.NDArray[np.float64]
    #: In-sample and out-of-sample Sharpe ratio (per observation) of the in-sample best, per combination.
    is_sharpe: npt.NDArray[np.float64]
    oos_sharpe: npt.NDArray[np.float64]
    partitions: int
    #: Returns used (the oldest ``T mod S`` are dropped so the partitions are equal).
    observations: int
    trials: int


def probability_of_backtest_overfitting(returns: npt.ArrayLike, partitions: int = 16) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation over the ``T × N`` matrix of ``N``
    trials' returns on the same ``T`` days. The rows are cut into ``partitions`` (S, even) equal
    blocks in time order; for each of the C(S, S/2) ways to pick half the blocks as the training
    set (the rest is the test set), the trial with the best training Sharpe ratio is ranked among
    all trials by test Sharpe ratio; its relative rank ω = rank / (N + 1) gives the logit
    λ = log(ω / (1 - ω)). PBO is the share of λ ≤ 0."""
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise StatsError(f"PBO needs a T × N matrix of returns (days × trials), got shape {matrix.shape}")
    if partitions < 2 or partitions % 2:
        raise StatsError(f"the number of partitions must be even and at least 2, got {partitions}")
    total, trials = matrix.shape
    if trials < 2:
        raise StatsError(f"PBO needs at least 2 trials with returns, got {trials}")
    if total < 2 * partitions:
        raise StatsError(f"PBO with {partitions} partitions needs at least {2 * partitions} days of returns, "
                         f"got {total}")
    bad = ~np.isfinite(matrix)
    if bad.any():
        day, trial = np.argwhere(bad)[0]
        raise StatsError(f"the returns hold NaN or infinite values ({int(bad.sum())}; first at day {day}, "
                         f"trial column {trial}): every trial needs a return on every day")
    block = total // partitions
    used = matrix[total - block * partitions:]
    blocks = used.reshape(partitions, block, trials)
    # Sums per block make every half's mean and variance exact without copying the rows.
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)
    combos = np.array([[i in pick for i in range(partitions)] for pick in
                       itertools.combinations(range(partitions), partitions // 2)], dtype=np.float64)
    half = block * partitions // 2
    logits, is_best, oos_best = [], [], []
    # in chunks of combinations, so memory stays ~ chunk × N whatever the number of trials
    chunk = max(1, 2_000_000 // trials)
    for start in range(0, len(combos), chunk):
        part = combos[start:start + chunk]
        train = _block_sharpe(part @ sums, part @ squares, half)
        test = _block_sharpe((1 - part) @ sums, (1 - part) @ squares, half)
        best = np.argmax(train, axis=1)
        rows = np.arange(len(part))
        chosen = test[rows, best][:, None]
        # rank with ties averaged (1 = worst), as scipy.stats.rankdata
        rank = (test < chosen).sum(axis=1) + ((test == chosen).sum(axis=1) + 1) / 2
        omega = rank / (trials + 1)
        logits.append(np.log(omega / (1 - omega)))
        is_best.append(train[rows, best])
        oos_best.append(chosen[:, 0])
    all_logits = np.concatenate(logits)
    return PBOResult(pbo=float(np.mean(all_logits <= 0)), logits=all_logits, is_sharpe=np.concatenate(is_best),
                     oos_sharpe=np.concatenate(oos_best), partitions=partitions, observations=block * partitions,
                     trials=trials)


def _block_sharpe(sums: npt.NDArray[np.float64], squares: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    mean = sums / n
    var = np.maximum((squares - n * mean**2) / (n - 1), 0.0)
    std = np.sqrt(var)
    # A flat trial (no position over the half) has Sharpe 0; so has a constant one, whose
    # variance is only rounding noise.
    flat = std <= 1e-12 * np.abs(mean)
    return np.where(flat | (std == 0), 0.0, mean / np.where(std == 0, 1.0, std))
