"""rustybt_api.study.stats: PSR, DSR and MinTRL against the worked examples of Bailey and López
de Prado's papers, and PBO (CSCV) on pure noise and on a planted edge.

The expected numbers are the papers' examples as esvhd/pypbo's tests pin them
(https://github.com/esvhd/pypbo, pypbo/tests/test_metrics.py), each recomputed here by hand in a
comment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rustybt_api.study import stats


def test_psr_reproduces_the_sharpe_ratio_efficient_frontier_example():
    # "The Sharpe Ratio Efficient Frontier" (2012), its worked PSR example: a hedge fund with an annualised Sharpe
    # ratio of 1.585 over 24 monthly returns, skewness -2.448, kurtosis 10.164; PSR(0) = 0.9132.
    # By hand: SR = 1.585/√12 = 0.45755; √(1 + 2.448·0.45755 + 9.164/4·0.45755²) = 1.6124;
    # z = 0.45755·√23 / 1.6124 = 1.3609; Φ(z) = 0.91323.
    sr = 1.585 / math.sqrt(12)
    assert stats.probabilistic_sharpe_ratio(sr, 0.0, 24, -2.448, 10.164) == pytest.approx(0.91323430688486018, abs=1e-12)
    # normal returns: the same Sharpe is more certain
    assert stats.probabilistic_sharpe_ratio(sr, 0.0, 24) > 0.97


def test_dsr_reproduces_the_deflated_sharpe_ratio_example():
    # "The Deflated Sharpe Ratio" (2014), numerical example: 5 years of daily returns (T = 1250),
    # annualised SR 2.5, skewness -3, kurtosis 10, N = 100 trials whose annualised Sharpe ratios
    # vary with V = 1/2. The paper: SR0 = 0.1132 (daily) and DSR = 0.9004.
    # By hand: E[max] factor (1-γ)Φ⁻¹(0.99) + γΦ⁻¹(1 - 1/(100e)) = 2.5306; √(0.5/250) · 2.5306 = 0.11317.
    assert stats.expected_max_sharpe(100, 1.0) == pytest.approx(2.5306028932016846, abs=1e-12)
    sr0 = stats.expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = stats.deflated_sharpe_ratio(2.5 / math.sqrt(250), 1250, 100, 0.5 / 250, -3.0, 10.0)
    assert dsr == pytest.approx(0.90039683444939034, abs=1e-12)
    assert round(dsr, 4) == 0.9004
    # the DSR is the PSR against SR0
    assert dsr == stats.probabilistic_sharpe_ratio(2.5 / math.sqrt(250), sr0, 1250, -3.0, 10.0)


@pytest.mark.parametrize("sr, target, periods, skew, kurt, years", [
    # "The Sharpe Ratio Efficient Frontier" (2012), Figure 8 and its text: an observed annualised SR of 2
    # against a true SR of 1 at 95% needs 2.73 years of daily, 2.83 years of weekly returns;
    # an SR of 3 against 2.5, monthly, skewness -0.72, kurtosis 5.78 needs 27.35 years.
    # By hand (daily): 1 + (1 + 0.5·0.12649²)·(1.64485 / 0.063246)² = 682.8 days = 2.7312 years.
    (2.0, 1.0, 250, 0.0, 3.0, 2.7311878017281761),
    (2.0, 1.0, 52, 0.0, 3.0, 2.8288335869452368),
    (3.0, 2.5, 12, -0.72, 5.78, 27.352920196040301),
])
def test_min_trl_reproduces_the_papers_figure(sr, target, periods, skew, kurt, years):
    got = stats.minimum_track_record_length(sr / math.sqrt(periods), target / math.sqrt(periods), skew, kurt, 0.95)
    assert got / periods == pytest.approx(years, rel=1e-12)


def test_min_trl_and_psr_agree():
    # after exactly MinTRL returns the PSR is the asked probability
    sr, skew, kurt = 0.08, -0.5, 6.0
    n = stats.minimum_track_record_length(sr, 0.0, skew, kurt, 0.9)
    assert stats.probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurt) == pytest.approx(0.9, abs=1e-12)


def test_sharpe_and_moments_by_hand():
    r = [0.01, -0.02, 0.03, 0.0, 0.01]
    mean, std = 0.006, math.sqrt(sum((x - 0.006) ** 2 for x in r) / 4)
    assert stats.sharpe(r) == pytest.approx(mean / std, rel=1e-12)
    skew, kurt = stats.moments(r)
    m2 = sum((x - mean) ** 2 for x in r) / 5
    assert skew == pytest.approx(sum((x - mean) ** 3 for x in r) / 5 / m2**1.5, rel=1e-12)
    assert kurt == pytest.approx(sum((x - mean) ** 4 for x in r) / 5 / m2**2, rel=1e-12)
    assert stats.sharpe([0.0] * 10) == 0.0 and stats.moments([0.0] * 10) == (0.0, 3.0)
    normal = np.random.default_rng(1).normal(size=200_000)
    skew, kurt = stats.moments(normal)
    assert abs(skew) < 0.02 and kurt == pytest.approx(3.0, abs=0.05)


def noise(seed: int, days: int = 1000, trials: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, (days, trials))


def test_pbo_of_pure_noise_is_about_one_half():
    # With no skill the in-sample best is a random pick out of sample: its out-of-sample rank is
    # uniform, and with an even number of trials exactly half the ranks give a logit <= 0, so
    # E[PBO] = 0.5. One matrix's PBO spreads widely (the C(16, 8) combinations share their
    # blocks): over 100 seeds of this size we measured a mean of 0.485 and a standard deviation
    # of 0.159. The mean over 20 seeds therefore has a standard error of 0.159/√20 = 0.036;
    # 0.5 ± 0.11 is three standard errors.
    values = [stats.probability_of_backtest_overfitting(noise(seed)).pbo for seed in range(20)]
    assert abs(np.mean(values) - 0.5) < 0.11
    assert all(0.0 <= v <= 1.0 for v in values)


@pytest.mark.parametrize("seed", range(5))
def test_pbo_of_a_planted_edge_is_low(seed):
    # one trial of 50 earns 0.2% a day more (a daily Sharpe ratio of 0.2, about 3.2 a year):
    # it wins in sample and stays on top out of sample (measured over 30 seeds: at most 0.05)
    returns = noise(seed)
    returns[:, 17] += 0.002
    result = stats.probability_of_backtest_overfitting(returns)
    assert result.pbo < 0.1
    assert result.partitions == 16 and result.observations == 992 and result.trials == 50
    assert len(result.logits) == math.comb(16, 8)
    assert np.median(result.oos_sharpe) > 0.1


def test_pbo_by_hand_on_a_tiny_matrix():
    # 2 partitions of 2 days, 3 trials: C(2,1) = 2 combinations.
    m = np.array([[0.01, 0.00, 0.02],
                  [0.03, 0.01, 0.00],
                  [0.00, 0.02, -0.01],
                  [0.00, 0.04, -0.01]])
    # block 1 (days 0-1) Sharpe: t0 0.02/0.01414=1.414, t1 0.005/0.00707=0.707, t2 0.01/0.01414=0.707
    # block 2 (days 2-3): t0 flat -> 0, t1 0.03/0.01414=2.121, t2 flat -> 0
    # train on block 1: best t0, test rank among (0, 2.121, 0): tied lowest -> 1.5, ω = 1.5/4, λ < 0
    # train on block 2: best t1, test rank among (1.414, 0.707, 0.707): 1.5 again -> λ < 0
    result = stats.probability_of_backtest_overfitting(m, partitions=2)
    assert result.pbo == 1.0
    assert result.logits == pytest.approx([math.log(1.5 / 2.5)] * 2)


@pytest.mark.parametrize("matrix, partitions, message", [
    (np.zeros((100, 1)), 16, "at least 2 trials"),
    (np.zeros((31, 4)), 16, "needs at least 32 days"),
    (np.zeros((100, 4)), 5, "must be even"),
    (np.zeros(100), 16, "T × N matrix"),
])
def test_pbo_refuses_degenerate_inputs(matrix, partitions, message):
    with pytest.raises(stats.StatsError, match=message):
        stats.probability_of_backtest_overfitting(matrix, partitions)


def test_pbo_refuses_nan():
    m = noise(0, 100, 4)
    m[40, 2] = np.nan
    with pytest.raises(stats.StatsError, match="NaN or infinite values \\(1; first at day 40, trial column 2\\)"):
        stats.probability_of_backtest_overfitting(m, 4)


@pytest.mark.parametrize("call, message", [
    (lambda: stats.sharpe([0.01, 0.02]), "at least 3 observations"),
    (lambda: stats.sharpe([0.01, float("nan"), 0.0]), "NaN or infinite"),
    (lambda: stats.probabilistic_sharpe_ratio(0.1, 0.0, 1), "at least 2 returns"),
    (lambda: stats.probabilistic_sharpe_ratio(2.5, 0.0, 100, 0.0, 0.0), "kurtosis is 3 for normal returns"),
    (lambda: stats.probabilistic_sharpe_ratio(float("nan"), 0.0, 100), "sr is nan"),
    (lambda: stats.minimum_track_record_length(0.05, 0.1), "not above the benchmark"),
    (lambda: stats.minimum_track_record_length(0.2, 0.1, probability=1.0), "between 0 and 1"),
    (lambda: stats.expected_max_sharpe(0, 1.0), "at least 1"),
    (lambda: stats.expected_max_sharpe(10, -1.0), ">= 0"),
])
def test_statistics_refuse_bad_inputs(call, message):
    with pytest.raises(stats.StatsError, match=message):
        call()


def test_one_trial_has_no_selection_bias():
    assert stats.expected_max_sharpe(1, 0.3) == 0.0
    assert stats.deflated_sharpe_ratio(0.1, 500, 1, 0.3) == stats.probabilistic_sharpe_ratio(0.1, 0.0, 500)
