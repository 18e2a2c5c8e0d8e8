//! The numbers: [`compute`] and its pieces. Definitions are in the module docs of `metrics`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::benchmark::{BenchmarkMetrics, BenchmarkPrices};
use super::daily::{self, MetricsOptions, Relative, Sample, return_metrics};
use super::kept::{EquitySummary, FillTotals};
use super::trades::{TradeGroup, TradeMoney, TradeStatistics};
use super::{EquityPoint, Metrics, ReturnsBasis};
use crate::model::time::NANOS_PER_DAY;
use crate::model::{ClosedTrade, Fill, TimestampNs};

/// Trading days per year of a market that trades on weekends too.
pub const CALENDAR_DAYS_PER_YEAR: u32 = 365;
/// Trading days per year of a weekday-only market.
pub const WEEKDAY_DAYS_PER_YEAR: u32 = 252;
/// Fewest daily returns the distribution-based metrics (Sharpe, Sortino, volatility, Omega,
/// tail ratio, stability, skew, kurtosis, VaR, alpha, beta, ...) are computed from.
pub const MIN_DAILY_RETURNS: usize = 20;
/// Shortest equity curve, in days, that CAGR and Calmar are computed over.
pub const MIN_CAGR_DAYS: i64 = 30;
/// Decimal places kept by `total_return` and `avg_trade_pnl`.
const RATIO_DP: u32 = 12;

/// Computes every statistic of a run with the default [`MetricsOptions`] and no benchmark.
/// `equity` is in time order, one point per tick; `trades` are the closed round trips;
/// `fills` every execution. Never fails: a statistic that is not defined for these inputs is
/// `None` (see the module documentation for when).
pub fn compute(
    initial_cash: Decimal,
    equity: &[EquityPoint],
    trades: &[ClosedTrade],
    fills: &[Fill],
) -> Metrics {
    let records = Records {
        initial_cash,
        equity,
        trades,
        fills,
        symbols: &[],
        benchmark: None,
    };
    compute_with(&records, &MetricsOptions::default())
}

/// The records of a run that the metrics are computed from.
pub struct Records<'a> {
    pub initial_cash: Decimal,
    pub equity: &'a [EquityPoint],
    pub trades: &'a [ClosedTrade],
    pub fills: &'a [Fill],
    /// Names by symbol id, for the per-symbol breakdown.
    pub symbols: &'a [String],
    /// Prices of the benchmark; `None`: no benchmark metrics.
    pub benchmark: Option<&'a BenchmarkPrices>,
}

/// Computes every statistic of a run with `options`.
pub fn compute_with(records: &Records<'_>, options: &MetricsOptions) -> Metrics {
    let equity = EquitySummary::of(records.equity, records.initial_cash, options);
    compute_from(records, &equity, &FillTotals::of(records.fills), options)
}

/// [`compute_with`] from the summaries of the equity curve and of the fills (a run that kept
/// neither): `records.equity` and `records.fills` are not read.
pub fn compute_from(
    records: &Records<'_>,
    equity: &EquitySummary,
    fills: &FillTotals,
    options: &MetricsOptions,
) -> Metrics {
    let Records {
        initial_cash,
        trades,
        ..
    } = *records;
    let final_equity = equity.final_equity();
    let total_return = final_equity
        .checked_div(initial_cash)
        .map_or(Decimal::ZERO, |ratio| {
            (ratio - Decimal::ONE).round_dp(RATIO_DP).normalize()
        });
    let fees_paid = fills.fees;
    let slippage = fills.slippage;
    let costs = super::CostSummary {
        totals: super::CostTotals {
            commission: fees_paid,
            slippage,
            total: fees_paid + slippage,
            ..Default::default()
        },
        ..Default::default()
    };

    let days = if equity.weekend {
        CALENDAR_DAYS_PER_YEAR
    } else {
        WEEKDAY_DAYS_PER_YEAR
    };
    let periods_per_year = f64::from(days);
    let rf_daily = options.risk_free_daily(periods_per_year);
    let series = equity.daily();
    let returns = series.returns().unwrap_or_default();
    let dd = equity.drawdown();
    let start_time = equity.first_time;
    let end_time = equity.end_time();
    let sample = Sample {
        returns: series.days.len(),
        span_ns: match (start_time, end_time) {
            (Some(start), Some(end)) => end - start,
            _ => 0,
        },
    };
    let strategy = return_metrics(&returns, periods_per_year, rf_daily, options.seed, &sample);
    let (benchmark, relative) = match records.benchmark {
        Some(prices) => {
            let b = prices.daily_returns(&series.days, |t| options.day_of(t));
            let metrics = return_metrics(&b, periods_per_year, rf_daily, options.seed, &sample);
            let relative = daily::relative(&returns, &b, periods_per_year, rf_daily, &sample);
            let named = BenchmarkMetrics {
                name: prices.name.clone(),
                symbols: prices.symbols.clone(),
                returns: metrics,
            };
            (Some(named), relative)
        }
        None => (None, Relative::default()),
    };
    let t = trade_stats(trades);
    let core = strategy.core;

    Metrics {
        start_time,
        end_time,
        num_equity_points: equity.count,
        initial_cash,
        final_equity,
        total_return,
        net_profit: final_equity - initial_cash,
        fees_paid,
        num_trades: trades.len(),
        num_winning_trades: t.wins,
        num_losing_trades: t.losses,
        num_fills: fills.count,
        sharpe: core.sharpe,
        sortino: core.sortino,
        annualized_volatility: core.annualized_volatility,
        returns_basis: ReturnsBasis::Daily,
        num_returns: sample.returns,
        days_per_year: days,
        periods_per_year,
        max_drawdown: dd.max,
        max_drawdown_duration_ns: dd.duration_ns,
        max_drawdown_peak_time: dd.peak_time,
        max_drawdown_trough_time: dd.trough_time,
        cagr: core.cagr,
        calmar: core.calmar,
        win_rate: t.win_rate,
        profit_factor: t.profit_factor,
        gross_profit: t.gross_profit,
        gross_loss: t.gross_loss,
        avg_trade_pnl: t.avg_pnl,
        returns_day_end: options.day_end_text(),
        risk_free_rate: options.risk_free_rate,
        risk_free_daily: rf_daily,
        more: strategy.more,
        relative,
        benchmark,
        trade_money: TradeMoney::from_trades(trades),
        trade_stats: TradeStatistics::from_trades(
            trades,
            records.symbols,
            start_time.zip(end_time),
        ),
        costs,
        orders: super::OrderSummary::default(),
        unavailable: if equity.count == 0 {
            BTreeMap::new() // no equity at all: nothing is "too short"
        } else {
            short_sample_reasons(&sample, records.benchmark.is_some())
        },
    }
}

pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn to_f64(d: Decimal) -> f64 {
    crate::data::decimal::decimal_to_f64(d)
}

/// The UTC calendar day (days since the Unix epoch) that an equity point at tick time `t`
/// belongs to. Tick times are bar close times, so a point at exactly midnight closes the
/// previous day: the day is the one holding the instant just before `t`. (A weekday market's
/// Friday daily bar closes at Saturday 00:00 and is Friday's close.)
pub(crate) fn utc_day(t: TimestampNs) -> i64 {
    t.saturating_sub(1).div_euclid(NANOS_PER_DAY)
}

/// True when the point at tick time `t` belongs to a Saturday or Sunday (see [`utc_day`]).
pub(crate) fn is_weekend(t: TimestampNs) -> bool {
    // 1970-01-01 was a Thursday; with Sunday = 0 it is day 4 of its week.
    let weekday = (utc_day(t) + 4).rem_euclid(7);
    weekday == 0 || weekday == 6
}

/// 365 if any equity point falls on a weekend (24/7 market), else 252.
pub fn days_per_year(equity: &[EquityPoint]) -> u32 {
    if equity.iter().any(|p| is_weekend(p.time)) {
        CALENDAR_DAYS_PER_YEAR
    } else {
        WEEKDAY_DAYS_PER_YEAR
    }
}

/// Simple returns `v[i] / v[i-1] - 1`; `None` if any base is ≤ 0. The difference is taken
/// exactly in Decimal before the one division in f64.
pub(crate) fn simple_returns(values: impl IntoIterator<Item = Decimal>) -> Option<Vec<f64>> {
    let mut it = values.into_iter();
    let Some(mut prev) = it.next() else {
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(it.size_hint().0);
    for v in it {
        if prev <= Decimal::ZERO {
            return None;
        }
        let diff = v.checked_sub(prev)?;
        out.push(to_f64(diff) / to_f64(prev));
        prev = v;
    }
    Some(out)
}

/// Why the metrics that need more observations than the run has are `None`.
fn short_sample_reasons(sample: &Sample, with_benchmark: bool) -> BTreeMap<String, String> {
    let mut reasons = BTreeMap::new();
    let returns = sample.returns;
    if !sample.enough_returns() {
        let why =
            format!("needs at least {MIN_DAILY_RETURNS} daily returns; the run has {returns}");
        let mut names = vec![
            "sharpe",
            "sortino",
            "annualized_volatility",
            "omega",
            "tail_ratio",
            "stability",
            "skew",
            "kurtosis",
        ];
        if with_benchmark {
            names.extend(["alpha", "beta", "information_ratio", "tracking_error"]);
        }
        for name in names {
            reasons.insert(name.to_string(), why.clone());
        }
    }
    for (level, tail) in super::risk::LEVELS {
        if !sample.enough_for_tail(tail) {
            let needed = MIN_DAILY_RETURNS.max((1.0 / tail).round() as usize);
            reasons.insert(
                format!("var_{level}"),
                format!(
                    "VaR and CVaR at {level} % need at least {needed} daily returns; the run has {returns}"
                ),
            );
        }
    }
    if !sample.enough_span() {
        let days = sample.span_ns as f64 / NANOS_PER_DAY as f64;
        let why =
            format!("needs at least {MIN_CAGR_DAYS} days of equity; the run spans {days:.1} days");
        for name in ["cagr", "calmar"] {
            reasons.insert(name.to_string(), why.clone());
        }
    }
    reasons
}

/// The drawdown of one point against its running peak, as defined for `max_drawdown`.
pub(crate) fn point_drawdown(equity: Decimal, peak: Decimal) -> f64 {
    if equity <= Decimal::ZERO {
        1.0
    } else if equity < peak {
        let peak = to_f64(peak);
        ((peak - to_f64(equity)) / peak).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The drawdown of a curve (see the module docs of `metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Drawdown {
    pub max: f64,
    pub duration_ns: i64,
    pub peak_time: Option<TimestampNs>,
    pub trough_time: Option<TimestampNs>,
}

/// Max drawdown, longest time under water, and where the deepest drawdown was; one pass.
#[cfg(test)]
pub(crate) fn drawdown(equity: &[EquityPoint]) -> Drawdown {
    let mut tracker = super::kept::DrawdownTracker::default();
    for p in equity {
        tracker.push(p);
    }
    tracker.finish(equity.last().map(|p| p.time))
}

struct TradeStats {
    wins: usize,
    losses: usize,
    gross_profit: Decimal,
    gross_loss: Decimal,
    win_rate: Option<f64>,
    profit_factor: Option<f64>,
    avg_pnl: Option<Decimal>,
}

fn trade_stats(trades: &[ClosedTrade]) -> TradeStats {
    let mut all = TradeGroup::default();
    for t in trades {
        all.add(t);
    }
    let profit_factor = if all.losses > 0 {
        all.gross_profit
            .checked_div(-all.gross_loss)
            .and_then(|pf| finite(to_f64(pf)))
    } else {
        None
    };
    TradeStats {
        wins: all.wins,
        losses: all.losses,
        gross_profit: all.gross_profit,
        gross_loss: all.gross_loss,
        win_rate: all.win_rate,
        profit_factor,
        avg_pnl: all
            .net_pnl
            .checked_div(Decimal::from(trades.len()))
            .filter(|_| !trades.is_empty())
            .map(|a| a.round_dp(RATIO_DP).normalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::NANOS_PER_SECOND;
    use crate::model::{OrderId, OrderSide, SymbolId};
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use std::str::FromStr;

    const HOUR: i64 = 3600 * NANOS_PER_SECOND;

    /// The last equity of each UTC calendar day that has points, in order.
    pub(crate) fn daily_closes(equity: &[EquityPoint]) -> Vec<Decimal> {
        let mut closes: Vec<Decimal> = Vec::new();
        let mut last_day = None;
        for p in equity {
            let day = utc_day(p.time);
            if last_day == Some(day) {
                *closes.last_mut().expect("a day was seen") = p.equity;
            } else {
                closes.push(p.equity);
                last_day = Some(day);
            }
        }
        closes
    }

    /// Sample mean and standard deviation (ddof = 1); `None` for fewer than 2 values.
    pub(crate) fn mean_std(r: &[f64]) -> Option<(f64, f64)> {
        if r.len() < 2 {
            return None;
        }
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Some((mean, var.sqrt()))
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Nanoseconds of `y-m-d hh:00:00Z`.
    fn at(y: i32, m: u32, day: u32, h: u32) -> TimestampNs {
        NaiveDate::from_ymd_opt(y, m, day)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn pt(time: TimestampNs, equity: &str) -> EquityPoint {
        EquityPoint {
            time,
            cash: d(equity),
            equity: d(equity),
        }
    }

    fn trade(pnl: &str) -> ClosedTrade {
        ClosedTrade {
            symbol: SymbolId(0),
            direction: 1,
            max_quantity: Decimal::ONE,
            entry_time: 0,
            exit_time: 1,
            pnl: d(pnl),
            fees: Decimal::ZERO,
            mae: Decimal::ZERO,
            mfe: Decimal::ZERO,
        }
    }

    fn fill(fee: &str) -> Fill {
        Fill {
            order_id: OrderId(1),
            symbol: SymbolId(0),
            side: OrderSide::Buy,
            quantity: Decimal::ONE,
            price: d("10"),
            fee: d(fee),
            slippage: Decimal::ZERO,
            time: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// Independent Sharpe/Sortino on f64 equities, straight from the formulas.
    fn reference(closes: &[f64], ppy: f64) -> (f64, f64) {
        // The initial cash (100 in these tests) is the base of the first return.
        let equities: Vec<f64> = std::iter::once(100.0)
            .chain(closes.iter().copied())
            .collect();
        let r: Vec<f64> = equities.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let n = r.len() as f64;
        let mean = r.iter().sum::<f64>() / n;
        let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
        let down = r
            .iter()
            .map(|x| if *x < 0.0 { x * x } else { 0.0 })
            .sum::<f64>()
            / n;
        (
            mean / var.sqrt() * ppy.sqrt(),
            mean / down.sqrt() * ppy.sqrt(),
        )
    }

    #[test]
    fn weekday_identification() {
        assert!(!is_weekend(at(2024, 1, 5, 23))); // Friday
        assert!(!is_weekend(at(2024, 1, 6, 0))); // Saturday 00:00 closes Friday
        assert!(is_weekend(at(2024, 1, 6, 0) + 1)); // Saturday
        assert!(is_weekend(at(2024, 1, 7, 12))); // Sunday
        assert!(is_weekend(at(2024, 1, 8, 0))); // Monday 00:00 closes Sunday
        assert!(!is_weekend(at(2024, 1, 8, 1))); // Monday
        assert!(!is_weekend(1)); // 1970-01-01, Thursday
        assert!(is_weekend(-NANOS_PER_DAY * 5 + 1)); // 1969-12-27, Saturday
        assert_eq!(utc_day(at(2024, 1, 2, 0)), utc_day(at(2024, 1, 1, 12)));
        assert_eq!(utc_day(i64::MIN), i64::MIN.div_euclid(NANOS_PER_DAY));
    }

    /// A wavy price path of `n` values starting at 100 (exact in f64 and Decimal text).
    fn path(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 100.0 + (i % 7) as f64 * 0.75 - (i % 3) as f64 * 0.5 + i as f64 * 0.25)
            .collect()
    }

    #[test]
    fn weekday_daily_bars_stamped_at_midnight_close_use_252() {
        // Daily bars of a weekday market: a bar opened Mon..Fri closes Tue 00:00 .. Sat 00:00.
        let close_days: Vec<u32> = (2..=31).filter(|d| !matches!(d % 7, 0 | 1)).collect();
        let closes = path(close_days.len());
        let e: Vec<_> = closes
            .iter()
            .zip(&close_days)
            .map(|(c, day)| pt(at(2024, 1, *day, 0), &c.to_string()))
            .collect();
        assert_eq!(daily_closes(&e).len(), closes.len());
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!(m.days_per_year, 252);
        assert_eq!(m.returns_basis, ReturnsBasis::Daily);
        let (sh, _) = reference(&closes, 252.0);
        assert!(close(m.sharpe.unwrap(), sh));
    }

    #[test]
    fn drawdown_of_twenty_percent() {
        let e = [
            pt(at(2024, 1, 1, 0), "100"),
            pt(at(2024, 1, 2, 0), "120"),
            pt(at(2024, 1, 3, 0), "96"),
            pt(at(2024, 1, 4, 0), "110"),
            pt(at(2024, 1, 5, 0), "130"),
            pt(at(2024, 1, 6, 0), "117"),
        ];
        let dd = drawdown(&e);
        assert!(close(dd.max, 0.2), "{}", dd.max);
        assert_eq!(dd.peak_time, Some(at(2024, 1, 2, 0)));
        assert_eq!(dd.trough_time, Some(at(2024, 1, 3, 0)));
        // Under water from Jan 2 (120) until Jan 5 (130 >= 120): 3 days; the final dip from 130
        // lasts 1 day.
        assert_eq!(dd.duration_ns, 3 * NANOS_PER_DAY);
    }

    #[test]
    fn drawdown_unrecovered_runs_to_the_end() {
        let e = [
            pt(0, "100"),
            pt(NANOS_PER_DAY, "90"),
            pt(2 * NANOS_PER_DAY, "95"),
            pt(10 * NANOS_PER_DAY, "99"),
        ];
        let dd = drawdown(&e);
        assert!(close(dd.max, 0.1));
        assert_eq!(dd.duration_ns, 10 * NANOS_PER_DAY);
    }

    #[test]
    fn drawdown_zero_when_never_below_peak() {
        let e = [pt(0, "100"), pt(1, "100"), pt(2, "101"), pt(3, "150")];
        let dd = drawdown(&e);
        assert_eq!(dd.max, 0.0);
        assert_eq!(dd.duration_ns, 0);
        assert_eq!(dd.peak_time, None);
        assert_eq!(drawdown(&[]).max, 0.0);
    }

    #[test]
    fn drawdown_capped_at_one_when_equity_not_positive() {
        let e = [pt(0, "100"), pt(1, "-5"), pt(2, "50")];
        assert_eq!(drawdown(&e).max, 1.0);
        let e = [pt(0, "100"), pt(1, "0")];
        assert_eq!(drawdown(&e).max, 1.0);
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!(m.max_drawdown, 1.0);
        assert_eq!(m.cagr, None);
    }

    #[test]
    fn sharpe_daily_weekday_market_uses_252() {
        // Five weeks of weekdays, two ticks a day; only each day's last tick counts.
        let days: Vec<u32> = (1..=31).filter(|d| !matches!(d % 7, 6 | 0)).collect();
        let closes = path(days.len());
        let mut e = Vec::new();
        for (c, day) in closes.iter().zip(&days) {
            e.push(pt(at(2024, 1, *day, 14), "1")); // intraday noise, ignored
            e.push(pt(at(2024, 1, *day, 21), &c.to_string()));
        }
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!(m.days_per_year, 252);
        assert_eq!(m.periods_per_year, 252.0);
        assert_eq!(m.returns_basis, ReturnsBasis::Daily);
        assert_eq!(m.num_returns, days.len());
        let (sh, so) = reference(&closes, 252.0);
        assert!(close(m.sharpe.unwrap(), sh), "{:?} vs {sh}", m.sharpe);
        assert!(close(m.sortino.unwrap(), so), "{:?} vs {so}", m.sortino);
    }

    #[test]
    fn sharpe_daily_24_7_market_uses_365() {
        let closes = path(25);
        // Jan 4 (Thu) .. Jan 28: includes weekends.
        let e: Vec<_> = closes
            .iter()
            .zip(4..)
            .map(|(c, day)| pt(at(2024, 1, day, 23), &c.to_string()))
            .collect();
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!(m.days_per_year, 365);
        assert_eq!(m.periods_per_year, 365.0);
        let (sh, so) = reference(&closes, 365.0);
        assert!(close(m.sharpe.unwrap(), sh));
        assert!(close(m.sortino.unwrap(), so));
        let based: Vec<f64> = std::iter::once(100.0)
            .chain(closes.iter().copied())
            .collect();
        let r: Vec<f64> = based.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let (mean, std) = mean_std(&r).unwrap();
        assert!(close(m.annualized_volatility.unwrap(), std * 365f64.sqrt()));
        assert!(close(m.sharpe.unwrap(), mean / std * 365f64.sqrt()));
    }

    #[test]
    fn short_samples_give_no_annualized_ratios_and_say_why() {
        // Hours of one day (the "Sharpe 56.7 over 2.6 hours" case): one daily return.
        let e: Vec<_> = path(6)
            .iter()
            .enumerate()
            .map(|(i, v)| pt(at(2024, 1, 2, 10) + i as i64 * HOUR, &v.to_string()))
            .collect();
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!(
            (m.sharpe, m.sortino, m.annualized_volatility),
            (None, None, None)
        );
        assert_eq!(m.num_returns, 1);
        assert_eq!(
            m.unavailable["sharpe"],
            "needs at least 20 daily returns; the run has 1"
        );
        assert_eq!(
            m.unavailable["var_99"],
            "VaR and CVaR at 99 % need at least 100 daily returns; the run has 1"
        );
        assert_eq!(m.more.var.historical["95"].var, None);
        assert_eq!(m.cagr, None);
        assert_eq!(
            m.unavailable["cagr"],
            "needs at least 30 days of equity; the run spans 0.2 days"
        );
        // Six daily returns (the "8.45 from 6 daily returns" case); 19 is still too few, 20 is enough.
        for (days, defined) in [(6, false), (19, false), (20, true)] {
            let e: Vec<_> = path(days)
                .iter()
                .zip(1..)
                .map(|(c, day)| pt(at(2024, 1, day, 23), &c.to_string()))
                .collect();
            let m = compute(d("100"), &e, &[], &[]);
            assert_eq!(m.num_returns, days);
            assert_eq!(m.sharpe.is_some(), defined, "{days} days");
            assert_eq!(
                m.unavailable.contains_key("sharpe"),
                !defined,
                "{days} days"
            );
        }
    }

    #[test]
    fn undefined_ratios_are_none() {
        // Flat equity for 40 days: std 0, no downside.
        let flat: Vec<_> = (0..40).map(|i| pt(i * NANOS_PER_DAY, "100")).collect();
        let m = compute(d("100"), &flat, &[], &[]);
        assert_eq!((m.sharpe, m.sortino), (None, None));
        assert_eq!(m.max_drawdown, 0.0);
        assert_eq!(m.calmar, None);
        assert_eq!(m.cagr, Some(0.0));
        // Only rising (unevenly, for a nonzero deviation): Sharpe defined, Sortino not.
        let up: Vec<_> = (0..25)
            .map(|i| pt(i * NANOS_PER_DAY, &(100 + i * i % 7 + 7 * i).to_string()))
            .collect();
        let m = compute(d("100"), &up, &[], &[]);
        assert!(m.sharpe.is_some());
        assert_eq!(m.sortino, None);
        // A single point, and nothing at all.
        let m = compute(d("100"), &[pt(0, "100")], &[], &[]);
        assert_eq!((m.sharpe, m.sortino, m.cagr), (None, None, None));
        let m = compute(d("100"), &[], &[], &[]);
        assert_eq!(m.final_equity, d("100"));
        assert_eq!(m.total_return, Decimal::ZERO);
        assert_eq!((m.start_time, m.end_time), (None, None));
        assert_eq!((m.sharpe, m.win_rate, m.profit_factor), (None, None, None));
        assert_eq!(m.avg_trade_pnl, None);
        // A non-positive base makes the returns undefined.
        let e: Vec<_> = (0..25)
            .map(|i| pt(i * NANOS_PER_DAY, if i == 1 { "0" } else { "100" }))
            .collect();
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!((m.sharpe, m.sortino), (None, None));
        assert_eq!(m.max_drawdown, 1.0);
    }

    #[test]
    fn money_is_exact() {
        let e = [
            pt(0, "100000"),
            EquityPoint {
                time: NANOS_PER_DAY,
                cash: d("50000.10"),
                equity: d("112345.678"),
            },
        ];
        let m = compute(d("100000"), &e, &[], &[fill("1.25"), fill("0.005")]);
        assert_eq!(m.final_equity.to_string(), "112345.678");
        assert_eq!(m.total_return.to_string(), "0.12345678");
        assert_eq!(m.net_profit.to_string(), "12345.678");
        assert_eq!(m.fees_paid.to_string(), "1.255");
        assert_eq!(m.num_fills, 2);
        let m = compute(d("3"), &[pt(0, "4")], &[], &[]);
        assert_eq!(m.total_return.to_string(), "0.333333333333");
        let m = compute(Decimal::ZERO, &[pt(0, "4")], &[], &[]);
        assert_eq!(m.total_return, Decimal::ZERO);
    }

    #[test]
    fn cagr_and_calmar() {
        // 252 weekday closes: one year of daily returns growing 10 %, with a 20 % fall.
        let days: Vec<i64> = (0..400).filter(|d| !matches!((d + 4) % 7, 0 | 6)).collect();
        let mut e = Vec::new();
        for (i, day) in days.iter().take(252).enumerate() {
            let value = match i {
                100 => "120",
                101 => "96",
                251 => "110",
                _ => "100",
            };
            e.push(pt(day * NANOS_PER_DAY + 21 * HOUR, value));
        }
        let m = compute(d("100"), &e, &[], &[]);
        assert_eq!((m.days_per_year, m.num_returns), (252, 252));
        assert!(close(m.cagr.unwrap(), 0.1), "{:?}", m.cagr);
        assert!(close(m.more.max_drawdown_daily.unwrap(), 0.2));
        assert!(close(m.calmar.unwrap(), 0.5));
        // Under 30 days: undefined.
        let short: Vec<_> = (0..25)
            .map(|i| pt(i * NANOS_PER_DAY + HOUR, "101"))
            .collect();
        let m = compute(d("100"), &short, &[], &[]);
        assert_eq!((m.cagr, m.calmar), (None, None));
        // A wiped-out account compounds to -100 % a year (as empyrical).
        let mut gone = e.clone();
        gone.last_mut().unwrap().equity = d("0");
        assert_eq!(compute(d("100"), &gone, &[], &[]).cagr, Some(-1.0));
    }

    #[test]
    fn trade_statistics() {
        let trades = [
            trade("30"),
            trade("-10"),
            trade("0"),
            trade("20"),
            trade("-5"),
        ];
        let m = compute(d("100"), &[], &trades, &[]);
        assert_eq!(m.num_trades, 5);
        assert_eq!((m.num_winning_trades, m.num_losing_trades), (2, 2));
        assert_eq!(m.win_rate, Some(0.4));
        assert!(close(m.profit_factor.unwrap(), 50.0 / 15.0));
        assert_eq!(m.gross_profit, d("50"));
        assert_eq!(m.gross_loss, d("-15"));
        assert_eq!(m.avg_trade_pnl, Some(d("7")));
        // No losers: profit factor undefined; average rounded to 12 dp.
        let m = compute(d("100"), &[], &[trade("1"), trade("0"), trade("1")], &[]);
        assert_eq!(m.profit_factor, None);
        assert_eq!(m.avg_trade_pnl.unwrap().to_string(), "0.666666666667");
        // All losers.
        let m = compute(d("100"), &[], &[trade("-1")], &[]);
        assert_eq!((m.win_rate, m.profit_factor), (Some(0.0), Some(0.0)));
    }

    fn brute_force_max_drawdown(e: &[EquityPoint]) -> f64 {
        let mut max: f64 = 0.0;
        for t in 0..e.len() {
            let peak = e[..=t].iter().map(|p| p.equity).max().unwrap();
            max = max.max(point_drawdown(e[t].equity, peak));
        }
        max
    }

    fn brute_force_reference(e: &[EquityPoint]) -> f64 {
        // Straight from the definition, without the shared helper.
        let mut max: f64 = 0.0;
        for t in 0..e.len() {
            let peak = e[..=t].iter().map(|p| p.equity).max().unwrap();
            let dd = if e[t].equity <= Decimal::ZERO {
                1.0
            } else {
                let (pk, v) = (to_f64(peak), to_f64(e[t].equity));
                (pk - v) / pk
            };
            max = max.max(dd);
        }
        max.min(1.0)
    }

    proptest! {
        #[test]
        fn max_drawdown_matches_brute_force(
            cents in proptest::collection::vec(-2_000i64..1_000_000, 0..60)
        ) {
            let e: Vec<_> = cents
                .iter()
                .zip(0..)
                .map(|(&c, i)| EquityPoint {
                    time: i * HOUR,
                    cash: Decimal::ZERO,
                    equity: Decimal::new(c, 2),
                })
                .collect();
            let dd = drawdown(&e).max;
            prop_assert!((0.0..=1.0).contains(&dd));
            prop_assert_eq!(dd, brute_force_max_drawdown(&e));
            prop_assert_eq!(dd, brute_force_reference(&e));
        }
    }
}
