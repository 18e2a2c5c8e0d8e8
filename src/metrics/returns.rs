//! Statistics of a series of periodic (daily) simple returns: the definitions of
//! `docs/metrics.md`, written to give the numbers empyrical-reloaded gives on the same returns
//! (its test suite compares them to 1e-12 relative).
//!
//! Every function takes the returns as `f64` and follows empyrical's handling of missing
//! observations (`NaN`): means and deviations skip them (bottleneck's `nanmean`/`nanstd`, summed
//! in order), the percentile and moment based ones drop them first. Where empyrical sums
//! with NumPy (pairwise summation) so does [`np_sum`], so the last bits agree too. A result
//! that is not defined is `NaN`; the caller turns it into `null`.

/// `bottleneck.nanmean`: the in-order sum of the non-NaN values over their count.
pub fn nan_mean(x: &[f64]) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for &v in x {
        if !v.is_nan() {
            sum += v;
            count += 1;
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// `bottleneck.nanstd(x, ddof)`: two passes, the mean then the squared deviations, in order.
pub fn nan_std(x: &[f64], ddof: usize) -> f64 {
    let mean = nan_mean(x);
    let (mut sum, mut count) = (0.0, 0usize);
    for &v in x {
        if !v.is_nan() {
            let d = v - mean;
            sum += d * d;
            count += 1;
        }
    }
    if count <= ddof {
        return f64::NAN;
    }
    (sum / (count - ddof) as f64).sqrt()
}

/// NumPy's `np.sum` of a contiguous `float64` array: pairwise summation in blocks of 128
/// with eight accumulators, exactly as `DOUBLE_pairwise_sum`.
pub fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        np_sum(&a[..half]) + np_sum(&a[half..])
    }
}

/// `np.mean`.
pub fn np_mean(a: &[f64]) -> f64 {
    np_sum(a) / a.len() as f64
}

fn without_nan(r: &[f64]) -> Vec<f64> {
    r.iter().copied().filter(|v| !v.is_nan()).collect()
}

/// empyrical's `_zero_dispersion_std`: exactly 0 when every present value is equal (the
/// floating mean can leave a 1e-18 residue that would turn an infinite ratio into 1e15).
fn zero_dispersion_std(x: &[f64], std: f64) -> f64 {
    let present = x.iter().copied().filter(|v| !v.is_nan());
    let (min, max) = present.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if min == max && std.is_finite() {
        0.0
    } else {
        std
    }
}

/// `returns - rf`, or the returns themselves when `rf` is 0 (as empyrical's `_adjust_returns`).
fn adjusted(r: &[f64], rf: f64) -> std::borrow::Cow<'_, [f64]> {
    if rf == 0.0 {
        r.into()
    } else {
        r.iter().map(|v| v - rf).collect::<Vec<_>>().into()
    }
}

/// Compounded return `Π(1 + r) - 1`, missing days counting as 0 (`cum_returns_final`).
pub fn total_return(r: &[f64]) -> f64 {
    if r.is_empty() {
        return f64::NAN;
    }
    growth(r) - 1.0
}

/// `Π(1 + r)` over the present returns (`np.nanprod`, multiplied in order).
fn growth(r: &[f64]) -> f64 {
    r.iter()
        .filter(|v| !v.is_nan())
        .fold(1.0, |acc, v| acc * (v + 1.0))
}

/// Compound annual growth rate: `Π(1 + r)^(1 / years) - 1`, `years = n / periods_per_year`
/// (empyrical's `annual_return`/`cagr`; `n` counts missing days too).
pub fn cagr(r: &[f64], periods_per_year: f64) -> f64 {
    if r.is_empty() {
        return f64::NAN;
    }
    let years = r.len() as f64 / periods_per_year;
    growth(r).powf(1.0 / years) - 1.0
}

/// Sample standard deviation (ddof 1) × `periods_per_year^(1/2)` (`annual_volatility`).
pub fn annual_volatility(r: &[f64], periods_per_year: f64) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    nan_std(r, 1) * periods_per_year.powf(0.5)
}

/// `mean(r - rf) / std(r - rf) × sqrt(periods_per_year)` (`sharpe_ratio`).
pub fn sharpe(r: &[f64], rf: f64, periods_per_year: f64) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    let adj = adjusted(r, rf);
    let std = zero_dispersion_std(&adj, nan_std(&adj, 1));
    nan_mean(&adj) / std * periods_per_year.sqrt()
}

/// Downside deviation below `required` (all days in the mean), annualized (`downside_risk`).
pub fn downside_risk(r: &[f64], required: f64, periods_per_year: f64) -> f64 {
    if r.is_empty() {
        return f64::NAN;
    }
    let below: Vec<f64> = adjusted(r, required)
        .iter()
        .map(|v| {
            // `f64::min` would turn a missing day into 0; it must stay missing.
            let d = if *v > 0.0 { 0.0 } else { *v };
            d * d
        })
        .collect();
    nan_mean(&below).sqrt() * periods_per_year.sqrt()
}

/// `mean(r - required) × periods_per_year / downside_risk` (`sortino_ratio`).
pub fn sortino(r: &[f64], required: f64, periods_per_year: f64) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    let average_annual = nan_mean(&adjusted(r, required)) * periods_per_year;
    average_annual / downside_risk(r, required, periods_per_year)
}

/// The drawdown of each day's close from the running peak (≤ 0), as empyrical's
/// `drawdown_series`: the cumulative value starts at 100, missing days count as 0.
pub fn drawdown_series(r: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(r.len());
    let (mut peak, mut cumulative) = (100.0f64, 1.0f64);
    for &v in r {
        cumulative *= if v.is_nan() { 1.0 } else { v + 1.0 };
        let value = cumulative * 100.0;
        peak = peak.max(value);
        out.push((value - peak) / peak);
    }
    out
}

/// The deepest drawdown of the daily closes, a fraction ≤ 0 (`max_drawdown`).
pub fn max_drawdown(r: &[f64]) -> f64 {
    if r.is_empty() {
        return f64::NAN;
    }
    drawdown_series(r)
        .into_iter()
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, |acc: f64, v| acc.min(v))
}

/// Longest run of consecutive days below the previous peak (days until back at or above
/// it, or to the end when never recovered).
pub fn max_drawdown_days(r: &[f64]) -> usize {
    let (mut longest, mut current) = (0, 0);
    for dd in drawdown_series(r) {
        if dd < 0.0 {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    longest
}

/// `cagr / |max_drawdown|`; undefined without a drawdown (`calmar_ratio`).
pub fn calmar(r: &[f64], periods_per_year: f64) -> f64 {
    let max_dd = max_drawdown(r);
    if max_dd < 0.0 {
        let ratio = cagr(r, periods_per_year) / max_dd.abs();
        if ratio.is_infinite() { f64::NAN } else { ratio }
    } else {
        f64::NAN
    }
}

/// Σ gains over Σ losses of `r - rf` (threshold 0) (`omega_ratio` with `required_return` 0).
pub fn omega(r: &[f64], rf: f64) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    let (mut gains, mut losses) = (0.0, 0.0);
    for &v in r {
        let d = v - rf - 0.0;
        if d > 0.0 {
            gains += d;
        } else if d < 0.0 {
            losses += d;
        }
    }
    let denominator = -losses;
    if denominator > 0.0 {
        gains / denominator
    } else {
        f64::NAN
    }
}

/// `np.percentile(sorted, q)` with linear interpolation; `sorted` ascending, without NaN.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let virtual_index = (sorted.len() - 1) as f64 * (q / 100.0);
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let lo = (below as usize).min(sorted.len() - 1);
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    // NumPy's `_lerp`: from the nearer end, so the result is monotonic and exact at the ends.
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

fn sorted_present(r: &[f64]) -> Vec<f64> {
    let mut v = without_nan(r);
    v.sort_by(f64::total_cmp);
    v
}

/// `|95th percentile| / |5th percentile|` (`tail_ratio`).
pub fn tail_ratio(r: &[f64]) -> f64 {
    let sorted = sorted_present(r);
    if sorted.is_empty() {
        return f64::NAN;
    }
    percentile(&sorted, 95.0).abs() / percentile(&sorted, 5.0).abs()
}

/// R² of a least-squares line through the cumulative log returns (`stability_of_timeseries`,
/// with SciPy's `linregress` for the correlation).
pub fn stability(r: &[f64]) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    let mut total = 0.0;
    let y: Vec<f64> = without_nan(r)
        .into_iter()
        .map(|v| {
            total += v.ln_1p();
            total
        })
        .collect();
    let n = y.len();
    if n < 2 {
        return f64::NAN;
    }
    let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let (x_mean, y_mean) = (np_mean(&x), np_mean(&y));
    let dx: Vec<f64> = x.iter().map(|v| v - x_mean).collect();
    let dy: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / n as f64;
    let (ssxm, ssxym, ssym) = (dot(&dx, &dx), dot(&dx, &dy), dot(&dy, &dy));
    let r_value = if ssxm == 0.0 || ssym == 0.0 {
        if ssxym == 0.0 { f64::NAN } else { 0.0 }
    } else {
        (ssxym / (ssxm * ssym).sqrt()).clamp(-1.0, 1.0)
    };
    r_value * r_value
}

/// Central moments about the NumPy mean, as SciPy's `_moment` forms them.
fn moments(x: &[f64]) -> (f64, f64, f64, f64) {
    let mean = np_mean(x);
    let d: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let sq: Vec<f64> = d.iter().map(|v| v * v).collect();
    let cube: Vec<f64> = sq.iter().zip(&d).map(|(s, v)| s * v).collect();
    let fourth: Vec<f64> = sq.iter().map(|s| s * s).collect();
    (mean, np_mean(&sq), np_mean(&cube), np_mean(&fourth))
}

/// A standardized moment of the present returns, `NaN` for none or (as SciPy) for returns
/// so nearly constant that `m2 ≤ (ε mean)²`; `of` gets `(m2, m3, m4)`.
fn standardized(r: &[f64], of: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let x = without_nan(r);
    if x.is_empty() {
        return f64::NAN;
    }
    let (mean, m2, m3, m4) = moments(&x);
    if m2 <= (f64::EPSILON * mean).powi(2) {
        return f64::NAN;
    }
    of(m2, m3, m4)
}

/// Sample skewness `m3 / m2^1.5` (biased, SciPy's `skew` default); NaN values dropped.
pub fn skew(r: &[f64]) -> f64 {
    standardized(r, |m2, m3, _| m3 / m2.powf(1.5))
}

/// Excess kurtosis `m4 / m2² - 3` (biased, Fisher; SciPy's `kurtosis` default); NaN dropped.
pub fn kurtosis(r: &[f64]) -> f64 {
    standardized(r, |m2, _, m4| m4 / m2.powf(2.0) - 3.0)
}

/// Beta of `r` to the benchmark `b`: `cov(b, r) / var(b)` over the days both are present
/// (`beta_aligned`; a benchmark variance below 1e-30 leaves it undefined).
pub fn beta(r: &[f64], b: &[f64]) -> f64 {
    if r.is_empty() || b.len() < 2 {
        return f64::NAN;
    }
    let independent: Vec<f64> = r
        .iter()
        .zip(b)
        .map(|(rv, bv)| if rv.is_nan() { f64::NAN } else { *bv })
        .collect();
    let mean = nan_mean(&independent);
    let residual: Vec<f64> = independent.iter().map(|v| v - mean).collect();
    let products: Vec<f64> = residual.iter().zip(r).map(|(x, y)| x * y).collect();
    let covariance = nan_mean(&products);
    let squares: Vec<f64> = residual.iter().map(|x| x * x).collect();
    let variance = nan_mean(&squares);
    if variance < 1.0e-30 {
        return f64::NAN;
    }
    covariance / variance
}

/// Annualized alpha: `(1 + mean((r - rf) - β (b - rf)))^periods_per_year - 1` (`alpha`).
pub fn alpha(r: &[f64], b: &[f64], rf: f64, periods_per_year: f64) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    let beta = beta(r, b);
    let (ar, ab) = (adjusted(r, rf), adjusted(b, rf));
    let excess: Vec<f64> = ar
        .iter()
        .zip(ab.iter())
        .map(|(x, y)| x - beta * y)
        .collect();
    (nan_mean(&excess) + 1.0).powf(periods_per_year) - 1.0
}

/// The active returns `r - b`.
pub fn active(r: &[f64], b: &[f64]) -> Vec<f64> {
    r.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// `mean(r - b) / std(r - b) × sqrt(periods_per_year)`: empyrical's `excess_sharpe`,
/// annualized.
pub fn information_ratio(r: &[f64], b: &[f64], periods_per_year: f64) -> f64 {
    if r.len() < 2 {
        return f64::NAN;
    }
    let act = active(r, b);
    let std = zero_dispersion_std(&act, nan_std(&act, 1));
    nan_mean(&act) / std * periods_per_year.sqrt()
}

/// Annualized standard deviation of `r - b` (`annual_volatility` of the active returns).
pub fn tracking_error(r: &[f64], b: &[f64], periods_per_year: f64) -> f64 {
    annual_volatility(&active(r, b), periods_per_year)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_groups_like_numpy() {
        // Values whose sum depends on the grouping: 1e16 + 1 + 1 ... in order loses the ones.
        let mut a = vec![1e16];
        a.extend(std::iter::repeat_n(1.0, 15));
        // NumPy: r[0] = 1e16 + 1 (lost), r[1..8] = 2 each -> ((1e16+2)+4)+(4+4) ...
        assert_eq!(np_sum(&a), 1e16 + 14.0);
        let sequential: f64 = a.iter().sum();
        assert_eq!(sequential, 1e16);
        assert_eq!(np_sum(&[]), 0.0);
        let long: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        assert_eq!(np_sum(&long), 249_750.0);
    }

    #[test]
    fn percentile_interpolates_linearly() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&s, 50.0), 3.0);
        assert_eq!(percentile(&s, 95.0), 4.8);
        assert_eq!(percentile(&s, 5.0), 1.2);
        assert_eq!(percentile(&s, 100.0), 5.0);
        assert_eq!(percentile(&[7.0], 5.0), 7.0);
    }

    #[test]
    fn nan_days_are_skipped_where_empyrical_skips_them() {
        let r = [0.01, f64::NAN, -0.02, 0.03];
        assert_eq!(nan_mean(&r), (0.01 - 0.02 + 0.03) / 3.0);
        assert!(total_return(&r) > 0.0);
        assert_eq!(max_drawdown(&[0.1, f64::NAN, -0.5]), -0.5);
        assert!(sharpe(&[f64::NAN, f64::NAN], 0.0, 252.0).is_nan());
        assert!(max_drawdown(&[]).is_nan());
    }

    #[test]
    fn flat_returns_have_no_dispersion() {
        let r = [0.001; 30];
        assert!(sharpe(&r, 0.0, 252.0).is_infinite());
        assert!(skew(&r).is_nan());
        assert_eq!(max_drawdown(&r), 0.0);
        assert!(calmar(&r, 252.0).is_nan());
        assert!(sortino(&r, 0.0, 252.0).is_infinite());
    }

    #[test]
    fn drawdown_duration_counts_days_under_water() {
        assert_eq!(max_drawdown_days(&[0.1, -0.1, 0.05, 0.1, -0.01]), 2);
        assert_eq!(max_drawdown_days(&[-0.1, 0.0, 0.0]), 3);
        assert_eq!(max_drawdown_days(&[0.1, 0.2]), 0);
    }
}
