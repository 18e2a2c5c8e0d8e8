//! Capital allocators: how the book's equity is split between its strategies at each
//! rebalance. Everything is Decimal: the statistics (means, variances, covariances, square
//! roots) too, so a weight is the same on every machine and sums to exactly 1.
//!
//! An allocator proposes raw, non-negative weights; [`settle`] then applies the per-strategy
//! minimums and maximums and rounds to [`WEIGHT_DP`] places with the remainder on the largest
//! weight, so the weights sum to exactly 1.

use rust_decimal::{Decimal, MathematicalOps};

use super::config::{AllocatorKind, PortfolioSpec, RiskParity};
use crate::error::AlgorithmError;
use crate::model::TimestampNs;

/// Decimal places of a weight.
pub const WEIGHT_DP: u32 = 10;

/// Daily returns a statistical allocator needs for every strategy before it departs from the
/// configured weights.
pub const MIN_OBSERVATIONS: usize = 5;

/// What an allocator sees at a rebalance: per strategy, in the book's order.
#[derive(Debug, Clone)]
pub struct AllocationInput<'a> {
    pub time: TimestampNs,
    pub ids: &'a [String],
    /// The configured weights.
    pub base: &'a [Decimal],
    /// Completed daily returns (flows removed), oldest first, at most `lookback` of them.
    pub returns: &'a [Vec<Decimal>],
    /// How far each strategy's unit value is below its peak (0 at a peak).
    pub drawdown: &'a [Decimal],
    pub equity: &'a [Decimal],
}

/// Proposes raw weights (non-negative; they need not sum to 1).
pub trait Allocator {
    /// A weight per strategy of `input`, in its order. Only a custom (Python) allocator fails.
    fn weights(&mut self, input: &AllocationInput<'_>)
    -> Result<Vec<Decimal>, Box<AlgorithmError>>;
}

/// The built-in allocator of `spec` (a custom one is built by the Python bridge).
pub fn builtin(spec: &PortfolioSpec) -> Option<Box<dyn Allocator>> {
    Some(match &spec.allocator {
        AllocatorKind::Fixed => Box::new(Fixed),
        AllocatorKind::Dynamic => Box::new(Dynamic),
        AllocatorKind::RiskParity(method) => Box::new(RiskParityAllocator { method: *method }),
        AllocatorKind::Kelly => Box::new(Kelly {
            fraction: spec.kelly_fraction,
            cap: spec.kelly_cap,
        }),
        AllocatorKind::Drawdown => Box::new(Drawdown {
            cut: spec.drawdown_cut,
            restore: spec.drawdown_restore,
            scale: spec.drawdown_scale,
            in_drawdown: Default::default(),
        }),
        AllocatorKind::Custom(_) => return None,
    })
}

fn enough_history_of(input: &AllocationInput<'_>) -> bool {
    enough_history(input.returns)
}

/// Whether every strategy has [`MIN_OBSERVATIONS`] daily returns.
pub fn enough_history(returns: &[Vec<Decimal>]) -> bool {
    returns.iter().all(|r| r.len() >= MIN_OBSERVATIONS)
}

/// `wᵀ Σ w`: the variance of the book's daily return with weights `w`.
pub fn portfolio_variance(weights: &[Decimal], cov: &[Vec<Decimal>]) -> Decimal {
    let mut variance = Decimal::ZERO;
    for (i, wi) in weights.iter().enumerate() {
        for (j, wj) in weights.iter().enumerate() {
            variance += *wi * *wj * cov[i][j];
        }
    }
    variance.max(Decimal::ZERO)
}

/// Correlation-aware sizing: each raw weight divided by `1 + Σ_j max(0, ρ_ij − threshold)`
/// over the other strategies, so strategies that move together share less capital.
pub fn correlation_scaled(
    raw: &[Decimal],
    cov: &[Vec<Decimal>],
    threshold: Decimal,
) -> Vec<Decimal> {
    let n = raw.len();
    (0..n)
        .map(|i| {
            let mut excess = Decimal::ZERO;
            for j in (0..n).filter(|&j| j != i) {
                let scale = (cov[i][i] * cov[j][j]).sqrt().unwrap_or(Decimal::ZERO);
                if scale > Decimal::ZERO {
                    excess += (cov[i][j] / scale - threshold).max(Decimal::ZERO);
                }
            }
            raw[i] / (Decimal::ONE + excess)
        })
        .collect()
}

pub struct Fixed;

impl Allocator for Fixed {
    fn weights(
        &mut self,
        input: &AllocationInput<'_>,
    ) -> Result<Vec<Decimal>, Box<AlgorithmError>> {
        Ok(input.base.to_vec())
    }
}

/// Each strategy's configured weight times its growth over the lookback, `max(0, 1 + R)`:
/// capital follows recent performance.
pub struct Dynamic;

impl Allocator for Dynamic {
    fn weights(
        &mut self,
        input: &AllocationInput<'_>,
    ) -> Result<Vec<Decimal>, Box<AlgorithmError>> {
        if !enough_history_of(input) {
            return Ok(input.base.to_vec());
        }
        Ok(input
            .returns
            .iter()
            .zip(input.base)
            .map(|(returns, base)| {
                let growth = returns
                    .iter()
                    .fold(Decimal::ONE, |g, r| g * (Decimal::ONE + r));
                *base * growth.max(Decimal::ZERO)
            })
            .collect())
    }
}

pub struct RiskParityAllocator {
    pub method: RiskParity,
}

impl Allocator for RiskParityAllocator {
    fn weights(
        &mut self,
        input: &AllocationInput<'_>,
    ) -> Result<Vec<Decimal>, Box<AlgorithmError>> {
        if !enough_history_of(input) {
            return Ok(input.base.to_vec());
        }
        let cov = covariance(input.returns);
        // A strategy whose returns never varied (it held cash) has no risk to balance: it
        // keeps its configured weight and the others share the rest.
        let risky: Vec<usize> = (0..cov.len())
            .filter(|&i| cov[i][i] > Decimal::ZERO)
            .collect();
        let mut weights: Vec<Decimal> = input.base.to_vec();
        if risky.is_empty() {
            return Ok(weights);
        }
        let share: Decimal = risky.iter().map(|&i| input.base[i]).sum();
        let sub: Vec<Vec<Decimal>> = risky
            .iter()
            .map(|&i| risky.iter().map(|&j| cov[i][j]).collect())
            .collect();
        let inner = match self.method {
            RiskParity::InverseVolatility => normalize(&inverse_volatility(&sub)),
            RiskParity::EqualRiskContribution => equal_risk_contribution(&sub),
        };
        for (k, &i) in risky.iter().enumerate() {
            weights[i] = share * inner[k];
        }
        Ok(weights)
    }
}

/// `1 / σ_i` for each variance on the diagonal (all positive).
pub fn inverse_volatility(cov: &[Vec<Decimal>]) -> Vec<Decimal> {
    (0..cov.len())
        .map(|i| {
            let sigma = cov[i][i].sqrt().unwrap_or(Decimal::ZERO);
            if sigma > Decimal::ZERO {
                Decimal::ONE / sigma
            } else {
                Decimal::ZERO
            }
        })
        .collect()
}

/// Weights whose risk contributions `w_i (Σw)_i` are equal, by cyclical coordinate descent
/// (Griveau-Billion, Richard and Roncalli, 2013): each step solves the quadratic
/// `Σ_ii w_i² + c_i w_i − 1/n = 0` for `w_i`, with `c_i = Σ_{j≠i} Σ_ij w_j`. Converges for a
/// positive definite `Σ`; normalized to sum to 1.
pub fn equal_risk_contribution(cov: &[Vec<Decimal>]) -> Vec<Decimal> {
    let n = cov.len();
    let budget = Decimal::ONE / Decimal::from(n);
    let mut w = normalize(&inverse_volatility(cov));
    let tolerance = Decimal::new(1, 18);
    for _ in 0..500 {
        let mut moved = Decimal::ZERO;
        for i in 0..n {
            let c: Decimal = (0..n).filter(|&j| j != i).map(|j| cov[i][j] * w[j]).sum();
            let a = cov[i][i];
            let discriminant = c * c + Decimal::from(4) * a * budget;
            let root = discriminant.sqrt().unwrap_or(Decimal::ZERO);
            let next = (root - c) / (Decimal::TWO * a);
            moved = moved.max((next - w[i]).abs());
            w[i] = next;
        }
        if moved < tolerance {
            break;
        }
    }
    normalize(&w)
}

/// Fractional Kelly per strategy, `fraction × μ / σ²` of its daily returns, at least 0 and at
/// most `cap`; a strategy with no variance gets 0. The results are then scaled to sum to 1.
pub struct Kelly {
    pub fraction: Decimal,
    pub cap: Decimal,
}

impl Allocator for Kelly {
    fn weights(
        &mut self,
        input: &AllocationInput<'_>,
    ) -> Result<Vec<Decimal>, Box<AlgorithmError>> {
        if !enough_history_of(input) {
            return Ok(input.base.to_vec());
        }
        Ok(input
            .returns
            .iter()
            .map(|r| {
                let (mean, variance) = mean_variance(r);
                if variance <= Decimal::ZERO {
                    return Decimal::ZERO;
                }
                (self.fraction * mean / variance)
                    .max(Decimal::ZERO)
                    .min(self.cap)
            })
            .collect())
    }
}

/// The configured weights, scaled by `scale` for a strategy whose drawdown reached `cut`,
/// until it recovers to `restore` or less.
pub struct Drawdown {
    pub cut: Decimal,
    pub restore: Decimal,
    pub scale: Decimal,
    /// The strategies cut now, by id (strategies stop and, in a live book, join).
    pub in_drawdown: std::collections::BTreeSet<String>,
}

impl Allocator for Drawdown {
    fn weights(
        &mut self,
        input: &AllocationInput<'_>,
    ) -> Result<Vec<Decimal>, Box<AlgorithmError>> {
        Ok(input
            .drawdown
            .iter()
            .zip(input.base)
            .zip(input.ids)
            .map(|((dd, base), id)| {
                let cut = self.in_drawdown.contains(id);
                if !cut && *dd >= self.cut {
                    self.in_drawdown.insert(id.clone());
                } else if cut && *dd <= self.restore {
                    self.in_drawdown.remove(id);
                }
                match self.in_drawdown.contains(id) {
                    true => *base * self.scale,
                    false => *base,
                }
            })
            .collect())
    }
}

/// Mean and sample variance (n − 1).
pub fn mean_variance(values: &[Decimal]) -> (Decimal, Decimal) {
    if values.len() < 2 {
        return (values.first().copied().unwrap_or_default(), Decimal::ZERO);
    }
    let n = Decimal::from(values.len());
    let mean = values.iter().copied().sum::<Decimal>() / n;
    let variance = values
        .iter()
        .map(|v| (*v - mean) * (*v - mean))
        .sum::<Decimal>()
        / (n - Decimal::ONE);
    (mean, variance)
}

/// The sample covariance matrix of the strategies' returns over their common (latest) days.
pub fn covariance(returns: &[Vec<Decimal>]) -> Vec<Vec<Decimal>> {
    let days = returns.iter().map(Vec::len).min().unwrap_or(0);
    let tails: Vec<&[Decimal]> = returns.iter().map(|r| &r[r.len() - days..]).collect();
    let means: Vec<Decimal> = tails
        .iter()
        .map(|t| t.iter().copied().sum::<Decimal>() / Decimal::from(days.max(1)))
        .collect();
    let denominator = Decimal::from(days.saturating_sub(1).max(1));
    (0..tails.len())
        .map(|i| {
            (0..tails.len())
                .map(|j| {
                    tails[i]
                        .iter()
                        .zip(tails[j])
                        .map(|(a, b)| (*a - means[i]) * (*b - means[j]))
                        .sum::<Decimal>()
                        / denominator
                })
                .collect()
        })
        .collect()
}

/// Proportional weights that sum to exactly 1, rounded to [`WEIGHT_DP`] places, the rounding
/// remainder on the largest (the first of equals). All zero (or empty of positives): equal.
pub fn normalize(raw: &[Decimal]) -> Vec<Decimal> {
    let clean: Vec<Decimal> = raw.iter().map(|w| (*w).max(Decimal::ZERO)).collect();
    let total: Decimal = clean.iter().copied().sum();
    let shares: Vec<Decimal> = if total > Decimal::ZERO {
        clean.iter().map(|w| *w / total).collect()
    } else {
        vec![Decimal::ONE / Decimal::from(raw.len().max(1)); raw.len()]
    };
    round_to_one(shares)
}

fn round_to_one(shares: Vec<Decimal>) -> Vec<Decimal> {
    let mut rounded: Vec<Decimal> = shares.iter().map(|w| w.round_dp(WEIGHT_DP)).collect();
    let sum: Decimal = rounded.iter().copied().sum();
    if let Some(largest) = largest(&rounded) {
        rounded[largest] += Decimal::ONE - sum;
    }
    rounded
}

fn largest(values: &[Decimal]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, v) in values.iter().enumerate() {
        if best.is_none_or(|b| *v > values[b]) {
            best = Some(i);
        }
    }
    best
}

/// The weights the book uses: `raw` proportions within each strategy's `[min, max]`, summing
/// to exactly 1. Bounds are met by water-filling: a weight outside its bound is pinned to it
/// and the others share what is left in proportion, until none is outside. The bounds were
/// checked to admit a solution when the portfolio was read.
pub fn settle(raw: &[Decimal], min: &[Decimal], max: &[Decimal]) -> Vec<Decimal> {
    let n = raw.len();
    let mut pinned: Vec<Option<Decimal>> = vec![None; n];
    let mut weights = normalize(raw);
    for _ in 0..=n {
        let pinned_sum: Decimal = pinned.iter().flatten().copied().sum();
        let free: Vec<usize> = (0..n).filter(|&i| pinned[i].is_none()).collect();
        let free_raw: Vec<Decimal> = free.iter().map(|&i| raw[i].max(Decimal::ZERO)).collect();
        let free_shares = if free_raw.iter().all(|w| *w == Decimal::ZERO) {
            vec![Decimal::ONE / Decimal::from(free.len().max(1)); free.len()]
        } else {
            let total: Decimal = free_raw.iter().copied().sum();
            free_raw.iter().map(|w| *w / total).collect()
        };
        for (k, &i) in free.iter().enumerate() {
            weights[i] = (Decimal::ONE - pinned_sum) * free_shares[k];
        }
        for i in 0..n {
            if let Some(p) = pinned[i] {
                weights[i] = p;
            }
        }
        // Pin the worst offenders on one side at a time: the side the free weights overshoot.
        let over: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&i| weights[i] > max[i])
            .collect();
        let under: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&i| weights[i] < min[i])
            .collect();
        if over.is_empty() && under.is_empty() {
            break;
        }
        if !over.is_empty() {
            for i in over {
                pinned[i] = Some(max[i]);
            }
        } else {
            for i in under {
                pinned[i] = Some(min[i]);
            }
        }
    }
    round_to_one(weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn input<'a>(
        ids: &'a [String],
        base: &'a [Decimal],
        returns: &'a [Vec<Decimal>],
        drawdown: &'a [Decimal],
    ) -> AllocationInput<'a> {
        AllocationInput {
            time: 0,
            ids,
            base,
            returns,
            drawdown,
            equity: base,
        }
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    /// Two uncorrelated return series: a at ±1%, b at ±3% (alternating in a pattern that
    /// makes their sample covariance exactly 0).
    fn uncorrelated() -> Vec<Vec<Decimal>> {
        let a = [
            "0.01", "-0.01", "0.01", "-0.01", "0.01", "-0.01", "0.01", "-0.01",
        ];
        let b = [
            "0.03", "0.03", "-0.03", "-0.03", "0.03", "0.03", "-0.03", "-0.03",
        ];
        vec![
            a.iter().map(|t| d(t)).collect(),
            b.iter().map(|t| d(t)).collect(),
        ]
    }

    #[test]
    fn normalize_sums_to_exactly_one() {
        let w = normalize(&[d("1"), d("1"), d("1")]);
        assert_eq!(w.iter().copied().sum::<Decimal>(), Decimal::ONE);
        assert_eq!(w[1], d("0.3333333333"));
        assert_eq!(
            w[0],
            d("0.3333333334"),
            "remainder on the first of the largest"
        );
        assert_eq!(
            normalize(&[Decimal::ZERO, Decimal::ZERO]),
            vec![d("0.5"), d("0.5")]
        );
    }

    #[test]
    fn covariance_matches_a_plain_computation() {
        let r = uncorrelated();
        let cov = covariance(&r);
        // Sample variance of ±0.01 over 8 days: 8 × 0.0001 / 7.
        assert_eq!(cov[0][0], d("0.0008") / d("7"));
        assert_eq!(cov[1][1], d("0.0072") / d("7"));
        assert_eq!(cov[0][1], Decimal::ZERO);
    }

    #[test]
    fn inverse_volatility_of_uncorrelated_strategies() {
        let r = uncorrelated();
        let ids = ids(2);
        let base = [d("0.5"), d("0.5")];
        let dd = [Decimal::ZERO; 2];
        let mut allocator = RiskParityAllocator {
            method: RiskParity::InverseVolatility,
        };
        let w = normalize(&allocator.weights(&input(&ids, &base, &r, &dd)).unwrap());
        // σ_b = 3 σ_a: weights 3/4 and 1/4.
        assert_eq!(w, vec![d("0.75"), d("0.25")]);
        // With no correlation, equal risk contribution is inverse volatility.
        let mut erc = RiskParityAllocator {
            method: RiskParity::EqualRiskContribution,
        };
        let w = normalize(&erc.weights(&input(&ids, &base, &r, &dd)).unwrap());
        assert!((w[0] - d("0.75")).abs() < d("1e-9"), "{w:?}");
    }

    #[test]
    fn equal_risk_contributions_are_equal_with_correlation() {
        // A 3×3 covariance with correlation between the first two.
        let cov = vec![
            vec![d("0.0004"), d("0.0003"), d("0")],
            vec![d("0.0003"), d("0.0009"), d("0.0001")],
            vec![d("0"), d("0.0001"), d("0.0016")],
        ];
        let w = equal_risk_contribution(&cov);
        assert_eq!(w.iter().copied().sum::<Decimal>(), Decimal::ONE);
        let contributions: Vec<Decimal> = (0..3)
            .map(|i| w[i] * (0..3).map(|j| cov[i][j] * w[j]).sum::<Decimal>())
            .collect();
        let total: Decimal = contributions.iter().copied().sum();
        for c in &contributions {
            assert!(
                ((*c / total) - d("1") / d("3")).abs() < d("1e-8"),
                "{contributions:?}"
            );
        }
    }

    #[test]
    fn statistical_allocators_keep_the_base_weights_without_history() {
        let ids = ids(2);
        let base = [d("0.3"), d("0.7")];
        let short = vec![vec![d("0.01"); 4], vec![d("0.02"); 4]];
        let dd = [Decimal::ZERO; 2];
        for mut a in [
            Box::new(Dynamic) as Box<dyn Allocator>,
            Box::new(RiskParityAllocator {
                method: RiskParity::EqualRiskContribution,
            }),
            Box::new(Kelly {
                fraction: d("0.5"),
                cap: Decimal::ONE,
            }),
        ] {
            assert_eq!(a.weights(&input(&ids, &base, &short, &dd)).unwrap(), base);
        }
    }

    #[test]
    fn kelly_is_fraction_of_mean_over_variance_capped() {
        let ids = ids(2);
        let base = [d("0.5"), d("0.5")];
        let r = vec![
            [d("0.02"), d("0"), d("0.02"), d("0"), d("0.02"), d("0")].to_vec(),
            vec![d("-0.01"); 6],
        ];
        let dd = [Decimal::ZERO; 2];
        let mut kelly = Kelly {
            fraction: d("0.5"),
            cap: d("0.8"),
        };
        let w = kelly.weights(&input(&ids, &base, &r, &dd)).unwrap();
        let (mean, variance) = mean_variance(&r[0]);
        assert_eq!(mean, d("0.01"));
        assert_eq!(variance, d("0.0006") / d("5"));
        // 0.5 × 0.01 / 0.00012 = 41.67: capped at 0.8. The losing, steady one gets 0.
        assert_eq!(w, vec![d("0.8"), Decimal::ZERO]);
    }

    #[test]
    fn dynamic_follows_growth() {
        let ids = ids(2);
        let base = [d("0.5"), d("0.5")];
        let r = vec![vec![d("0.1"); 5], vec![d("-0.1"); 5]];
        let dd = [Decimal::ZERO; 2];
        let w = Dynamic.weights(&input(&ids, &base, &r, &dd)).unwrap();
        assert_eq!(w[0], d("0.5") * d("1.1").powi(5));
        assert_eq!(w[1], d("0.5") * d("0.9").powi(5));
    }

    #[test]
    fn drawdown_cuts_and_restores_with_hysteresis() {
        let ids = ids(2);
        let base = [d("0.5"), d("0.5")];
        let r = vec![Vec::new(), Vec::new()];
        let mut a = Drawdown {
            cut: d("0.1"),
            restore: d("0.05"),
            scale: d("0.2"),
            in_drawdown: Default::default(),
        };
        let mut at = |dd: [&str; 2]| {
            let dd = [d(dd[0]), d(dd[1])];
            a.weights(&input(&ids, &base, &r, &dd)).unwrap()
        };
        assert_eq!(at(["0.12", "0"]), vec![d("0.1"), d("0.5")]);
        assert_eq!(
            at(["0.07", "0"]),
            vec![d("0.1"), d("0.5")],
            "still cut above restore"
        );
        assert_eq!(at(["0.05", "0"]), vec![d("0.5"), d("0.5")], "restored");
    }

    /// A strategy's cut belongs to it, not to its place among the running strategies: when
    /// the first (cut) strategy stops, or one joins before the others, nobody inherits it.
    #[test]
    fn a_drawdown_cut_follows_its_strategy_when_others_stop_or_join() {
        let mut a = Drawdown {
            cut: d("0.1"),
            restore: d("0.05"),
            scale: d("0.2"),
            in_drawdown: Default::default(),
        };
        let all = ids(2);
        let r = vec![Vec::new(), Vec::new()];
        let both = [d("0.5"), d("0.5")];
        let cut = a
            .weights(&input(&all, &both, &r, &[d("0.12"), d("0")]))
            .unwrap();
        assert_eq!(cut, vec![d("0.1"), d("0.5")]);
        // s0 stopped: s1 alone, not in drawdown, keeps its weight.
        let s1 = ["s1".to_string()];
        let alone = a
            .weights(&input(&s1, &[d("0.5")], &r[..1], &[d("0")]))
            .unwrap();
        assert_eq!(alone, vec![d("0.5")]);
        // s0 back in second place (still in drawdown): still cut.
        let swapped = ["s1".to_string(), "s0".to_string()];
        let again = a
            .weights(&input(&swapped, &both, &r, &[d("0"), d("0.08")]))
            .unwrap();
        assert_eq!(again, vec![d("0.5"), d("0.1")]);
    }

    #[test]
    fn correlated_strategies_share_less() {
        // 0 and 1 correlate at 0.9, 2 is independent; threshold 0.5: 0 and 1 are divided by
        // 1.4, 2 keeps its weight.
        let cov = vec![
            vec![d("0.0001"), d("0.00009"), d("0")],
            vec![d("0.00009"), d("0.0001"), d("0")],
            vec![d("0"), d("0"), d("0.0004")],
        ];
        let w = correlation_scaled(&[d("1"), d("1"), d("1")], &cov, d("0.5"));
        assert_eq!(w[2], d("1"));
        assert_eq!(w[0], d("1") / d("1.4"));
        assert_eq!(w[0], w[1]);
        // wᵀΣw of equal thirds: (0.0001×2 + 0.00018 + 0.0004) / 9.
        let third = d("1") / d("3");
        let v = portfolio_variance(&[third, third, third], &cov);
        assert!((v - d("0.00078") / d("9")).abs() < d("1e-20"), "{v}");
    }

    #[test]
    fn settle_pins_bounds_and_sums_to_one() {
        let w = settle(
            &[d("0.9"), d("0.05"), d("0.05")],
            &[d("0.1"), d("0.1"), d("0.1")],
            &[d("0.6"), d("1"), d("1")],
        );
        assert_eq!(w, vec![d("0.6"), d("0.2"), d("0.2")]);
        let w = settle(&[d("1"), d("0")], &[d("0"), d("0.3")], &[d("1"), d("1")]);
        assert_eq!(w, vec![d("0.7"), d("0.3")]);
    }

    proptest! {
        #[test]
        fn settled_weights_sum_to_one_within_bounds(
            raw in proptest::collection::vec(0u32..1000, 1..8),
            lows in proptest::collection::vec(0u32..20, 8),
            highs in proptest::collection::vec(30u32..100, 8),
        ) {
            let n = raw.len();
            let raw: Vec<Decimal> = raw.into_iter().map(Decimal::from).collect();
            // Bounds in hundredths that admit a solution.
            let min: Vec<Decimal> = lows[..n].iter().map(|v| Decimal::new(*v as i64, 2) / Decimal::from(n)).collect();
            let mut max: Vec<Decimal> = highs[..n].iter().map(|v| Decimal::new(*v as i64, 2)).collect();
            if max.iter().copied().sum::<Decimal>() < Decimal::ONE {
                max = vec![Decimal::ONE; n];
            }
            let w = settle(&raw, &min, &max);
            prop_assert_eq!(w.iter().copied().sum::<Decimal>(), Decimal::ONE);
            let slack = Decimal::new(1, WEIGHT_DP - 1);
            for i in 0..n {
                prop_assert!(w[i] >= min[i] - slack, "{:?} below {:?}", w, min);
                prop_assert!(w[i] <= max[i] + slack, "{:?} above {:?}", w, max);
            }
        }
    }
}
