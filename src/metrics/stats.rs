//! The numbers: [`compute`] and its pieces. Definitions are in the module docs of `metrics`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{EquityPoint, Metrics, ReturnsBasis};
use crate::model::time::NANOS_PER_DAY;
use crate::model::{ClosedTrade, Fill, TimestampNs};

/// Trading days per year of a market that trades on weekends too.
pub const CALENDAR_DAYS_PER_YEAR: u32 = 365;
/// Trading days per year of a weekday-only market.
pub const WEEKDAY_DAYS_PER_YEAR: u32 = 252;
/// Length of the CAGR year, in days.
pub const DAYS_PER_CAGR_YEAR: f64 = 365.25;
/// Fewest daily returns Sharpe, Sortino and annualized volatility are computed from.
pub const MIN_DAILY_RETURNS: usize = 20;
/// Shortest equity curve, in days, that CAGR (and Calmar) are computed over.
pub const MIN_CAGR_DAYS: i64 = 30;
/// A sample standard deviation at or below this counts as zero (numerically constant returns).
const ZERO_STD: f64 = 1e-12;
/// Decimal places kept by `total_return` and `avg_trade_pnl`.
const RATIO_DP: u32 = 12;

/// Computes every statistic of a run. `equity` is in time order, one point per tick; `trades`
/// are the closed round trips; `fills` every execution. Never fails: a statistic that is not
/// defined for these inputs is `None` (see the module documentation for when).
pub fn compute(
    initial_cash: Decimal,
    equity: &[EquityPoint],
    trades: &[ClosedTrade],
    fills: &[Fill],
) -> Metrics {
    let final_equity = equity.last().map_or(initial_cash, |p| p.equity);
    let total_return = final_equity
        .checked_div(initial_cash)
        .map_or(Decimal::ZERO, |ratio| {
            (ratio - Decimal::ONE).round_dp(RATIO_DP).normalize()
        });
    let fees_paid = fills.iter().map(|f| f.fee).sum::<Decimal>();
    let slippage = fills.iter().map(|f| f.slippage).sum::<Decimal>();
    let costs = super::CostSummary {
        totals: super::CostTotals {
            commission: fees_paid,
            slippage,
            total: fees_paid + slippage,
            ..Default::default()
        },
        ..Default::default()
    };

    let returns = return_stats(equity);
    let dd = drawdown(equity);
    let start_time = equity.first().map(|p| p.time);
    let end_time = equity.last().map(|p| p.time);
    let cagr = match (start_time, end_time) {
        (Some(start), Some(end)) => cagr(initial_cash, final_equity, end - start),
        _ => None,
    };
    let calmar = match cagr {
        Some(c) if dd.max > 0.0 => finite(c / dd.max),
        _ => None,
    };
    let t = trade_stats(trades);

    Metrics {
        start_time,
        end_time,
        num_equity_points: equity.len(),
        initial_cash,
        final_equity,
        total_return,
        net_profit: final_equity - initial_cash,
        fees_paid,
        num_trades: trades.len(),
        num_winning_trades: t.wins,
        num_losing_trades: t.losses,
        num_fills: fills.len(),
        sharpe: returns.sharpe,
        sortino: returns.sortino,
        annualized_volatility: returns.volatility,
        returns_basis: ReturnsBasis::Daily,
        num_returns: returns.count,
        days_per_year: returns.days_per_year,
        periods_per_year: f64::from(returns.days_per_year),
        max_drawdown: dd.max,
        max_drawdown_duration_ns: dd.duration_ns,
        max_drawdown_peak_time: dd.peak_time,
        max_drawdown_trough_time: dd.trough_time,
        cagr,
        calmar,
        win_rate: t.win_rate,
        profit_factor: t.profit_factor,
        gross_profit: t.gross_profit,
        gross_loss: t.gross_loss,
        avg_trade_pnl: t.avg_pnl,
        costs,
        orders: super::OrderSummary::default(),
        unavailable: match (start_time, end_time) {
            (Some(start), Some(end)) => short_sample_reasons(returns.count, end - start),
            _ => BTreeMap::new(), // no equity at all: nothing is "too short"
        },
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
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
pub(crate) fn days_per_year(equity: &[EquityPoint]) -> u32 {
    if equity.iter().any(|p| is_weekend(p.time)) {
        CALENDAR_DAYS_PER_YEAR
    } else {
        WEEKDAY_DAYS_PER_YEAR
    }
}

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

/// Annualized Sharpe ratio with risk-free rate 0; `None` when undefined.
pub(crate) fn sharpe(r: &[f64], periods_per_year: f64) -> Option<f64> {
    let (mean, std) = mean_std(r)?;
    if std.is_nan() || std <= ZERO_STD {
        return None;
    }
    finite(mean / std * periods_per_year.sqrt())
}

/// Annualized Sortino ratio (target 0, downside deviation over all returns); `None` when
/// undefined.
pub(crate) fn sortino(r: &[f64], periods_per_year: f64) -> Option<f64> {
    if r.len() < 2 {
        return None;
    }
    let n = r.len() as f64;
    let mean = r.iter().sum::<f64>() / n;
    let downside = (r.iter().map(|x| x.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    if downside.is_nan() || downside <= 0.0 {
        return None;
    }
    finite(mean / downside * periods_per_year.sqrt())
}

struct ReturnStats {
    count: usize,
    days_per_year: u32,
    sharpe: Option<f64>,
    sortino: Option<f64>,
    volatility: Option<f64>,
}

/// Sharpe, Sortino and volatility from daily returns; all `None` with fewer than
/// [`MIN_DAILY_RETURNS`] of them (a ratio annualized from a few hours or days of returns is
/// noise that looks like a result).
fn return_stats(equity: &[EquityPoint]) -> ReturnStats {
    let days = days_per_year(equity);
    let closes = daily_closes(equity);
    let count = closes.len().saturating_sub(1);
    let mut stats = ReturnStats {
        count,
        days_per_year: days,
        sharpe: None,
        sortino: None,
        volatility: None,
    };
    if count < MIN_DAILY_RETURNS {
        return stats;
    }
    let returns = simple_returns(closes).unwrap_or_default();
    let periods_per_year = f64::from(days);
    stats.sharpe = sharpe(&returns, periods_per_year);
    stats.sortino = sortino(&returns, periods_per_year);
    stats.volatility =
        mean_std(&returns).and_then(|(_, std)| finite(std * periods_per_year.sqrt()));
    stats
}

/// Why the annualized metrics that need more observations than the run has are `None`.
fn short_sample_reasons(returns: usize, span_ns: i64) -> BTreeMap<String, String> {
    let mut reasons = BTreeMap::new();
    if returns < MIN_DAILY_RETURNS {
        let why =
            format!("needs at least {MIN_DAILY_RETURNS} daily returns; the run has {returns}");
        for name in ["sharpe", "sortino", "annualized_volatility"] {
            reasons.insert(name.to_string(), why.clone());
        }
    }
    if span_ns < MIN_CAGR_DAYS * NANOS_PER_DAY {
        let days = span_ns as f64 / NANOS_PER_DAY as f64;
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

pub(crate) struct Drawdown {
    pub max: f64,
    pub duration_ns: i64,
    pub peak_time: Option<TimestampNs>,
    pub trough_time: Option<TimestampNs>,
}

/// Max drawdown, longest time under water, and where the deepest drawdown was; one pass.
pub(crate) fn drawdown(equity: &[EquityPoint]) -> Drawdown {
    let mut out = Drawdown {
        max: 0.0,
        duration_ns: 0,
        peak_time: None,
        trough_time: None,
    };
    let Some(first) = equity.first() else {
        return out;
    };
    let mut peak = first.equity;
    let mut peak_time = first.time;
    let mut under_water = false;
    for p in equity {
        if p.equity >= peak {
            if under_water {
                out.duration_ns = out.duration_ns.max(p.time - peak_time);
                under_water = false;
            }
            peak = p.equity;
            peak_time = p.time;
        } else {
            under_water = true;
        }
        let dd = point_drawdown(p.equity, peak);
        if dd > out.max {
            out.max = dd;
            out.peak_time = Some(peak_time);
            out.trough_time = Some(p.time);
        }
    }
    if under_water {
        let last = equity.last().expect("not empty").time;
        out.duration_ns = out.duration_ns.max(last - peak_time);
    }
    out
}

/// Compound annual growth over `span_ns`; `None` when undefined.
pub(crate) fn cagr(initial: Decimal, final_equity: Decimal, span_ns: i64) -> Option<f64> {
    if span_ns < MIN_CAGR_DAYS * NANOS_PER_DAY
        || initial <= Decimal::ZERO
        || final_equity <= Decimal::ZERO
    {
        return None;
    }
    let years = span_ns as f64 / (DAYS_PER_CAGR_YEAR * NANOS_PER_DAY as f64);
    let ratio = to_f64(final_equity.checked_div(initial)?);
    finite(ratio.powf(1.0 / years) - 1.0)
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
    let mut s = TradeStats {
        wins: 0,
        losses: 0,
        gross_profit: Decimal::ZERO,
        gross_loss: Decimal::ZERO,
        win_rate: None,
        profit_factor: None,
        avg_pnl: None,
    };
    for t in trades {
        if t.pnl > Decimal::ZERO {
            s.wins += 1;
            s.gross_profit += t.pnl;
        } else if t.pnl < Decimal::ZERO {
            s.losses += 1;
            s.gross_loss += t.pnl;
        }
    }
    if trades.is_empty() {
        return s;
    }
    s.win_rate = Some(s.wins as f64 / trades.len() as f64);
    if s.losses > 0 {
        s.profit_factor = s
            .gross_profit
            .checked_div(-s.gross_loss)
            .and_then(|pf| finite(to_f64(pf)));
    }
    let total: Decimal = trades.iter().map(|t| t.pnl).sum();
    s.avg_pnl = total
        .checked_div(Decimal::from(trades.len()))
        .map(|a| a.round_dp(RATIO_DP).normalize());
    s
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
    fn reference(equities: &[f64], ppy: f64) -> (f64, f64) {
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
        assert_eq!(m.num_returns, days.len() - 1);
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
        let r: Vec<f64> = closes.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let (mean, std) = mean_std(&r).unwrap();
        assert!(close(m.annualized_volatility.unwrap(), std * 365f64.sqrt()));
        assert!(close(m.sharpe.unwrap(), mean / std * 365f64.sqrt()));
    }

    #[test]
    fn short_samples_give_no_annualized_ratios_and_say_why() {
        // Hours of one day (the "Sharpe 56.7 over 2.6 hours" case): no daily return at all.
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
        assert_eq!(m.num_returns, 0);
        assert_eq!(
            m.unavailable["sharpe"],
            "needs at least 20 daily returns; the run has 0"
        );
        assert_eq!(m.cagr, None);
        assert_eq!(
            m.unavailable["cagr"],
            "needs at least 30 days of equity; the run spans 0.2 days"
        );
        // Six daily returns (the "8.45 from 6 daily returns" case); 19 is still too few, 20 is enough.
        for (days, defined) in [(7, false), (20, false), (21, true)] {
            let e: Vec<_> = path(days)
                .iter()
                .zip(1..)
                .map(|(c, day)| pt(at(2024, 1, day, 23), &c.to_string()))
                .collect();
            let m = compute(d("100"), &e, &[], &[]);
            assert_eq!(m.num_returns, days - 1);
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
        let year = (DAYS_PER_CAGR_YEAR * NANOS_PER_DAY as f64) as i64;
        let e = [pt(0, "100"), pt(year / 2, "80"), pt(year, "110")];
        let m = compute(d("100"), &e, &[], &[]);
        assert!(close(m.cagr.unwrap(), 0.1));
        assert!(close(m.max_drawdown, 0.2));
        assert!(close(m.calmar.unwrap(), 0.5));
        // Two years doubling-and-a-bit: (1.21)^(1/2) - 1 = 0.1.
        let e = [pt(0, "100"), pt(2 * year, "121")];
        assert!(close(compute(d("100"), &e, &[], &[]).cagr.unwrap(), 0.1));
        // Under 30 days, or a wiped-out account: undefined.
        assert_eq!(cagr(d("100"), d("110"), 30 * NANOS_PER_DAY - 1), None);
        assert!(cagr(d("100"), d("110"), 30 * NANOS_PER_DAY).is_some());
        assert_eq!(cagr(d("100"), d("-1"), year), None);
        assert_eq!(cagr(d("100"), d("0"), year), None);
        assert_eq!(cagr(d("0"), d("10"), year), None);
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
