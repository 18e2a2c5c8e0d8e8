//! Validation as data: what is doubtful about a partition's bars, kept with the dataset.
//!
//! The row rules every loader applies (high and low bound the prices, volume not negative,
//! times strictly increasing, no duplicates; `data::validate`) refuse a file at import, so a
//! stored dataset always passes them. What is left are findings a file may have and still be
//! usable, each with a severity: prices at or below zero (error: a run refuses them unless
//! `--allow-bad-data`), jumps beyond `k` standard deviations or a percentage (warning), and
//! gaps against the expected interval (info).

#[cfg(test)]
use super::store::Bars;
use super::store::BarsRef;
use super::{Finding, Severity};
use crate::model::format_timestamp;

/// Thresholds of the outlier check.
#[derive(Debug, Clone, Copy)]
pub struct OutlierRule {
    /// A close-to-close return this many standard deviations from the mean is an outlier.
    pub sigmas: f64,
    /// So is a return whose size exceeds this fraction (0.5 = 50%).
    pub fraction: f64,
}

impl Default for OutlierRule {
    fn default() -> Self {
        Self {
            sigmas: 10.0,
            fraction: 0.5,
        }
    }
}

/// Findings listed one by one per kind and partition; more are summed up in one line.
const MAX_LISTED: usize = 5;

fn price(mantissa: i64, scale: u32) -> rust_decimal::Decimal {
    rust_decimal::Decimal::new(mantissa, scale)
}

/// The findings of one partition's bars (`scales` of its columns, `interval_ns` between bars).
pub fn check<'a>(
    bars: impl Into<BarsRef<'a>>,
    scales: [u32; 5],
    interval_ns: i64,
    rule: OutlierRule,
) -> Vec<Finding> {
    let bars: BarsRef<'a> = bars.into();
    let mut out = Vec::new();
    let listed = |out: &mut Vec<Finding>, severity, kind: &str, hits: Vec<(i64, String)>| {
        let n = hits.len();
        for (t, message) in hits.into_iter().take(MAX_LISTED) {
            out.push(Finding {
                severity,
                kind: kind.to_owned(),
                time_ns: Some(t),
                message,
            });
        }
        if n > MAX_LISTED {
            out.push(Finding {
                severity,
                kind: kind.to_owned(),
                time_ns: None,
                message: format!("{} more {kind} findings in this month", n - MAX_LISTED),
            });
        }
    };

    let mut non_positive = Vec::new();
    for (i, &t) in bars.time.iter().enumerate() {
        for (k, name) in ["open", "high", "low", "close"].iter().enumerate() {
            let m = bars.columns[k][i];
            if m <= 0 {
                non_positive.push((
                    t,
                    format!(
                        "{name} {} at {} is not positive",
                        price(m, scales[k]),
                        format_timestamp(t)
                    ),
                ));
                break;
            }
        }
    }
    listed(
        &mut out,
        Severity::Error,
        "non-positive price",
        non_positive,
    );

    let close: Vec<f64> = bars.columns[3]
        .iter()
        .map(|&m| m as f64 / 10f64.powi(scales[3] as i32))
        .collect();
    let returns: Vec<(usize, f64)> = (1..close.len())
        .filter(|&i| close[i - 1] > 0.0)
        .map(|i| (i, close[i] / close[i - 1] - 1.0))
        .collect();
    if returns.len() >= 2 {
        let n = returns.len() as f64;
        let mean = returns.iter().map(|r| r.1).sum::<f64>() / n;
        let sd = (returns.iter().map(|r| (r.1 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let jumps: Vec<(i64, String)> = returns
            .iter()
            .filter(|(_, r)| {
                r.abs() > rule.fraction || (sd > 0.0 && (r - mean).abs() > rule.sigmas * sd)
            })
            .map(|&(i, r)| {
                let t = bars.time[i];
                (
                    t,
                    format!(
                        "close jumps {:+.2}% to {} at {} ({:.1} standard deviations)",
                        r * 100.0,
                        price(bars.columns[3][i], scales[3]),
                        format_timestamp(t),
                        if sd > 0.0 { (r - mean).abs() / sd } else { 0.0 }
                    ),
                )
            })
            .collect();
        listed(&mut out, Severity::Warning, "outlier", jumps);
    }

    let gaps: Vec<(i64, String)> = bars
        .time
        .windows(2)
        .filter(|w| w[1] - w[0] > interval_ns)
        .map(|w| {
            let missing = (w[1] - w[0]) / interval_ns - 1;
            (
                w[0] + interval_ns,
                format!(
                    "{missing} bar{} missing after {}",
                    if missing == 1 { "" } else { "s" },
                    format_timestamp(w[0])
                ),
            )
        })
        .collect();
    listed(&mut out, Severity::Info, "gap", gaps);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn bars(closes: &[i64], times: &[i64]) -> Bars {
        Bars {
            time: times.to_vec(),
            columns: [
                closes.to_vec(),
                closes.to_vec(),
                closes.to_vec(),
                closes.to_vec(),
                vec![1; closes.len()],
            ],
        }
    }

    #[test]
    fn finds_non_positive_prices_outliers_and_gaps() {
        let mut closes: Vec<i64> = (0..100).map(|i| 10_000 + (i % 3)).collect();
        closes[50] = 20_000; // +100%
        closes[70] = 0;
        let mut times: Vec<i64> = (0..100).map(|i| i * MIN).collect();
        for t in &mut times[90..] {
            *t += 5 * MIN;
        }
        let f = check(&bars(&closes, &times), [2; 5], MIN, OutlierRule::default());
        let kinds: Vec<(&str, Severity)> =
            f.iter().map(|f| (f.kind.as_str(), f.severity)).collect();
        assert!(
            kinds.contains(&("non-positive price", Severity::Error)),
            "{f:?}"
        );
        assert!(kinds.contains(&("outlier", Severity::Warning)), "{f:?}");
        assert!(kinds.contains(&("gap", Severity::Info)), "{f:?}");
        let gap = f.iter().find(|f| f.kind == "gap").expect("gap");
        assert_eq!(gap.message, "5 bars missing after 1970-01-01T01:29:00Z");
        let zero = f
            .iter()
            .find(|f| f.kind == "non-positive price")
            .expect("zero");
        assert!(zero.message.starts_with("open 0.00 at"), "{}", zero.message);
    }

    #[test]
    fn clean_bars_have_no_findings() {
        let closes: Vec<i64> = (0..100).map(|i| 10_000 + (i % 7)).collect();
        let times: Vec<i64> = (0..100).map(|i| i * MIN).collect();
        assert!(check(&bars(&closes, &times), [2; 5], MIN, OutlierRule::default()).is_empty());
    }
}
