//! Value at risk and conditional value at risk of daily returns, three ways.
//!
//! All are returns (a fraction of equity), negative for a loss: `-0.03` means "on the worst
//! 5 % of days the return is -3 % or worse". Definitions in `docs/metrics.md`.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::returns::{nan_mean, nan_std, percentile};

/// Confidence levels reported, with the tail probability of each.
pub const LEVELS: [(&str, f64); 2] = [("95", 0.05), ("99", 0.01)];
/// `Φ⁻¹(0.05)` and `Φ⁻¹(0.01)`, the standard normal quantiles of the two tails (equal to
/// SciPy's `norm.ppf`; the tests check it).
const NORMAL_QUANTILES: [f64; 2] = [-1.6448536269514722, -2.3263478740408408];
/// Draws of one Monte Carlo estimate.
pub const MONTE_CARLO_DRAWS: usize = 100_000;
/// Seed of the Monte Carlo stream unless the settings give another.
pub const DEFAULT_SEED: u64 = 0;

/// VaR and CVaR at one level by one method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TailRisk {
    /// The return at the tail probability (a percentile for the historical method).
    pub var: Option<f64>,
    /// The mean return at or below VaR.
    pub cvar: Option<f64>,
}

/// `metrics.json`'s `var`: by method, then level (`"95"`, `"99"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueAtRisk {
    pub historical: std::collections::BTreeMap<String, TailRisk>,
    pub parametric: std::collections::BTreeMap<String, TailRisk>,
    pub monte_carlo: std::collections::BTreeMap<String, TailRisk>,
    /// Seed and draw count of the Monte Carlo estimate (same seed, same numbers).
    pub monte_carlo_seed: u64,
    pub monte_carlo_draws: usize,
}

fn defined(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Historical VaR: the `tail` percentile (`empyrical.value_at_risk`), NaN days dropped.
pub fn historical_var(sorted: &[f64], tail: f64) -> f64 {
    percentile(sorted, 100.0 * tail)
}

/// Historical CVaR: the mean of the `⌊(n-1)·tail⌋ + 1` lowest returns
/// (`empyrical.conditional_value_at_risk`).
pub fn historical_cvar(sorted: &[f64], tail: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let cutoff = ((sorted.len() - 1) as f64 * tail) as usize;
    super::returns::np_mean(&sorted[..=cutoff])
}

/// Normal VaR and CVaR from the sample mean μ and deviation σ (ddof 1):
/// `VaR = μ + σ z`, `CVaR = μ - σ φ(z) / p` with `z = Φ⁻¹(p)`.
fn parametric(mean: f64, std: f64, tail: f64, z: f64) -> TailRisk {
    let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    TailRisk {
        var: defined(mean + std * z),
        cvar: defined(mean - std * density / tail),
    }
}

/// VaR and CVaR of `returns` (NaN days dropped) by the three methods at 95 % and 99 %.
/// `None` everywhere a level has fewer returns than `min_returns(level)` says.
pub fn value_at_risk(returns: &[f64], seed: u64, enough: impl Fn(f64) -> bool) -> ValueAtRisk {
    let mut sorted: Vec<f64> = returns.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let (mean, std) = (nan_mean(&sorted), nan_std(&sorted, 1));
    let simulated = simulate(mean, std, seed);
    let mut out = ValueAtRisk {
        historical: Default::default(),
        parametric: Default::default(),
        monte_carlo: Default::default(),
        monte_carlo_seed: seed,
        monte_carlo_draws: MONTE_CARLO_DRAWS,
    };
    let none = TailRisk {
        var: None,
        cvar: None,
    };
    for ((level, tail), z) in LEVELS.into_iter().zip(NORMAL_QUANTILES) {
        let ok = enough(tail);
        let pick = |risk: TailRisk| if ok { risk } else { none };
        let historical = TailRisk {
            var: defined(historical_var(&sorted, tail)),
            cvar: defined(historical_cvar(&sorted, tail)),
        };
        let mc = match &simulated {
            Some(draws) => TailRisk {
                var: defined(historical_var(draws, tail)),
                cvar: defined(historical_cvar(draws, tail)),
            },
            None => none,
        };
        out.historical.insert(level.into(), pick(historical));
        out.parametric
            .insert(level.into(), pick(parametric(mean, std, tail, z)));
        out.monte_carlo.insert(level.into(), pick(mc));
    }
    out
}

/// [`MONTE_CARLO_DRAWS`] daily returns from the normal distribution fitted to the sample,
/// drawn from a ChaCha20 stream seeded with `seed`, sorted; `None` when σ is undefined.
fn simulate(mean: f64, std: f64, seed: u64) -> Option<Vec<f64>> {
    let normal = Normal::new(mean, std).ok()?;
    if !mean.is_finite() || !std.is_finite() {
        return None;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut draws: Vec<f64> = (0..MONTE_CARLO_DRAWS)
        .map(|_| normal.sample(&mut rng))
        .collect();
    draws.sort_by(f64::total_cmp);
    Some(draws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<f64> {
        (0..250)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 2000.0)
            .collect()
    }

    #[test]
    fn monte_carlo_is_seeded_and_close_to_parametric() {
        let r = sample();
        let a = value_at_risk(&r, 7, |_| true);
        let b = value_at_risk(&r, 7, |_| true);
        assert_eq!(a, b);
        let c = value_at_risk(&r, 8, |_| true);
        assert_ne!(a.monte_carlo["95"], c.monte_carlo["95"]);
        for level in ["95", "99"] {
            let (mc, p) = (a.monte_carlo[level], a.parametric[level]);
            let (mc_var, p_var) = (mc.var.unwrap(), p.var.unwrap());
            assert!(
                (mc_var - p_var).abs() < 0.02 * p_var.abs(),
                "{mc_var} {p_var}"
            );
            let (mc_cvar, p_cvar) = (mc.cvar.unwrap(), p.cvar.unwrap());
            assert!((mc_cvar - p_cvar).abs() < 0.02 * p_cvar.abs());
            assert!(p_cvar < p_var && mc_cvar <= mc_var);
        }
    }

    #[test]
    fn too_few_returns_give_none() {
        let r = sample();
        let v = value_at_risk(&r[..30], 0, |tail| 30.0 * tail >= 1.0);
        assert!(v.historical["95"].var.is_some());
        assert_eq!(v.historical["99"].var, None);
        assert_eq!(v.monte_carlo["99"].cvar, None);
        let empty = value_at_risk(&[], 0, |_| true);
        assert_eq!(empty.parametric["95"].var, None);
        assert_eq!(empty.monte_carlo["95"].var, None);
    }

    #[test]
    fn historical_cvar_averages_the_tail() {
        let sorted: Vec<f64> = (0..100).map(|i| i as f64).collect();
        // ⌊99 × 0.05⌋ = 4: the mean of the five lowest.
        assert_eq!(historical_cvar(&sorted, 0.05), 2.0);
        assert_eq!(historical_var(&sorted, 0.05), 4.95);
    }
}
