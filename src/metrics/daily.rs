//! The daily return series and the return-based metrics computed from it.
//!
//! A run's daily returns are taken between the equity at consecutive day ends, starting from
//! the initial cash: `r_1 = e_1 / initial_cash - 1`, `r_d = e_d / e_{d-1} - 1`, where `e_d` is
//! the last equity of day `d`. A day ends at `day_end` UTC (00:00 unless configured); days
//! without an equity point (a weekend of a weekday market, a gap in the data) are skipped,
//! not filled. The definitions are in `docs/metrics.md`.

use rust_decimal::Decimal;
use serde::Serialize;

use super::returns as r;
use super::risk::{self, ValueAtRisk};
use super::stats::{MIN_DAILY_RETURNS, finite, simple_returns};
use super::{EquityPoint, benchmark::BenchmarkChoice};
use crate::model::TimestampNs;
use crate::model::time::NANOS_PER_DAY;

/// The settings of the metrics: `[metrics]` in the config and the matching flags.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsOptions {
    /// Annual risk-free rate (0.04 = 4 %), compounded to a daily rate over the year's days.
    pub risk_free_rate: f64,
    /// Time of day (UTC) at which a day ends, in nanoseconds after 00:00.
    pub day_end_ns: i64,
    /// Seed of the Monte Carlo VaR.
    pub seed: u64,
    pub benchmark: BenchmarkChoice,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            risk_free_rate: 0.0,
            day_end_ns: 0,
            seed: risk::DEFAULT_SEED,
            benchmark: BenchmarkChoice::EqualWeight,
        }
    }
}

impl MetricsOptions {
    /// The day (count since the epoch) that the point at tick time `t` belongs to: a tick
    /// stamped exactly at the day end closes that day (ticks are bar close times).
    pub fn day_of(&self, t: TimestampNs) -> i64 {
        t.saturating_sub(1)
            .saturating_sub(self.day_end_ns)
            .div_euclid(NANOS_PER_DAY)
    }

    /// The daily risk-free return `(1 + rate)^(1 / periods_per_year) - 1`.
    pub fn risk_free_daily(&self, periods_per_year: f64) -> f64 {
        if self.risk_free_rate == 0.0 {
            0.0
        } else {
            (1.0 + self.risk_free_rate).powf(1.0 / periods_per_year) - 1.0
        }
    }

    /// `HH:MM` of the day end, as written to `metrics.json`.
    pub fn day_end_text(&self) -> String {
        let minutes = self.day_end_ns / (60 * 1_000_000_000);
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// The last equity of each day, after the initial cash (the value before the first day).
#[derive(Debug, Clone, PartialEq)]
pub struct DailySeries {
    /// The day of each value after the first.
    pub days: Vec<i64>,
    /// `initial_cash`, then one value per day.
    pub values: Vec<Decimal>,
}

impl DailySeries {
    pub fn new(initial_cash: Decimal, equity: &[EquityPoint], options: &MetricsOptions) -> Self {
        let mut series = DailySeries::start(initial_cash);
        for p in equity {
            series.push(options.day_of(p.time), p.equity);
        }
        series
    }

    /// A series with no day yet, to [`DailySeries::push`] points into as they come.
    pub fn start(initial_cash: Decimal) -> Self {
        DailySeries {
            days: Vec::new(),
            values: vec![initial_cash],
        }
    }

    /// The equity of a point of `day` (days in time order): the day's value so far.
    #[inline]
    pub fn push(&mut self, day: i64, equity: Decimal) {
        if self.days.last() == Some(&day) {
            *self.values.last_mut().expect("a day was seen") = equity;
        } else {
            self.days.push(day);
            self.values.push(equity);
        }
    }

    /// Simple returns between consecutive values; `None` if a base is ≤ 0.
    pub fn returns(&self) -> Option<Vec<f64>> {
        simple_returns(self.values.iter().copied())
    }
}

/// The headline return metrics (the strategy's are top-level keys of `metrics.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoreReturns {
    pub cagr: Option<f64>,
    pub annualized_volatility: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub calmar: Option<f64>,
}

/// The other return metrics, flattened into `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoreReturns {
    /// Deepest fall of the daily closes from their running peak, a positive fraction.
    pub max_drawdown_daily: Option<f64>,
    /// Longest run of daily closes below the previous peak, in days.
    pub max_drawdown_daily_days: Option<usize>,
    pub omega: Option<f64>,
    pub tail_ratio: Option<f64>,
    pub stability: Option<f64>,
    pub skew: Option<f64>,
    pub kurtosis: Option<f64>,
    pub var: ValueAtRisk,
}

/// Everything computed from one daily return series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReturnMetrics {
    /// Compounded daily returns, `Π(1 + r) - 1` (for the strategy, `total_return` as f64).
    pub total_return: Option<f64>,
    #[serde(flatten)]
    pub core: CoreReturns,
    #[serde(flatten)]
    pub more: MoreReturns,
}

/// What decides whether a metric has enough observations.
pub struct Sample {
    pub returns: usize,
    /// From the first to the last equity point.
    pub span_ns: i64,
}

impl Sample {
    pub fn enough_returns(&self) -> bool {
        self.returns >= MIN_DAILY_RETURNS
    }

    pub fn enough_span(&self) -> bool {
        self.span_ns >= super::MIN_CAGR_DAYS * NANOS_PER_DAY
    }

    /// A tail probability needs one observation in the tail besides the minimum.
    pub fn enough_for_tail(&self, tail: f64) -> bool {
        self.enough_returns() && self.returns as f64 * tail >= 1.0 - 1e-9
    }
}

fn opt(x: f64) -> Option<f64> {
    finite(x)
}

/// The return metrics of `returns`, gated by `sample` (below the minimum: `None`).
pub fn return_metrics(
    returns: &[f64],
    periods_per_year: f64,
    rf_daily: f64,
    seed: u64,
    sample: &Sample,
) -> ReturnMetrics {
    let many = sample.enough_returns();
    let gate = |ok: bool, x: f64| if ok { opt(x) } else { None };
    let any = !returns.is_empty();
    let cagr_ok = any && sample.enough_span();
    ReturnMetrics {
        total_return: gate(any, r::total_return(returns)),
        core: CoreReturns {
            cagr: gate(cagr_ok, r::cagr(returns, periods_per_year)),
            annualized_volatility: gate(many, r::annual_volatility(returns, periods_per_year)),
            sharpe: gate(many, r::sharpe(returns, rf_daily, periods_per_year)),
            sortino: gate(many, r::sortino(returns, rf_daily, periods_per_year)),
            calmar: gate(cagr_ok, r::calmar(returns, periods_per_year)),
        },
        more: MoreReturns {
            max_drawdown_daily: gate(any, -r::max_drawdown(returns)).map(|v| v.max(0.0)),
            max_drawdown_daily_days: any.then(|| r::max_drawdown_days(returns)),
            omega: gate(many, r::omega(returns, rf_daily)),
            tail_ratio: gate(many, r::tail_ratio(returns)),
            stability: gate(many, r::stability(returns)),
            skew: gate(many, r::skew(returns)),
            kurtosis: gate(many, r::kurtosis(returns)),
            var: risk::value_at_risk(returns, seed, |tail| sample.enough_for_tail(tail)),
        },
    }
}

/// The strategy against the benchmark, on the same days.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Relative {
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
    pub information_ratio: Option<f64>,
    pub tracking_error: Option<f64>,
}

pub fn relative(
    strategy: &[f64],
    benchmark: &[f64],
    periods_per_year: f64,
    rf_daily: f64,
    sample: &Sample,
) -> Relative {
    if !sample.enough_returns() || strategy.len() != benchmark.len() {
        return Relative::default();
    }
    Relative {
        alpha: opt(r::alpha(strategy, benchmark, rf_daily, periods_per_year)),
        beta: opt(r::beta(strategy, benchmark)),
        information_ratio: opt(r::information_ratio(strategy, benchmark, periods_per_year)),
        tracking_error: opt(r::tracking_error(strategy, benchmark, periods_per_year)),
    }
}
