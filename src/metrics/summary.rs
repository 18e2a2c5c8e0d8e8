//! The human-readable summary printed at the end of a run.

use rust_decimal::Decimal;

use super::{Metrics, ReturnsBasis, RunInfo, RunStatus};
use crate::model::format_timestamp;
use crate::model::time::{NANOS_PER_DAY, NANOS_PER_MINUTE, NANOS_PER_SECOND};

/// Longest failure reason shown in the status line, in characters.
const MAX_REASON_CHARS: usize = 200;

/// An aligned two-column table of the run and its metrics, for the terminal (plain text, no
/// colour codes, lines separated by `\n`, no trailing newline: `println!` it).
///
/// The first line is the status: `Status: complete`, `Status: interrupted (partial results)`
/// or `Status: failed (partial results): <reason>`, where the reason is its last non-empty line
/// (for a Python traceback, the exception), cut to 200 characters. Money is shown exactly;
/// ratios with two decimals; fractions as percentages; undefined values as `n/a`.
pub fn summary_table(info: &RunInfo, metrics: &Metrics) -> String {
    let m = metrics;
    let mut rows: Vec<(&str, String)> = vec![(
        "Algorithm",
        if info.class_name.is_empty() {
            info.algorithm.clone()
        } else {
            format!("{} ({})", info.algorithm, info.class_name)
        },
    )];
    if !info.parameters.is_empty() {
        let params: Vec<String> = info
            .parameters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push(("Parameters", params.join(", ")));
    }
    rows.push(("Symbols", list_or_none(&info.symbols)));
    rows.push(("Period", period(m)));
    rows.push((
        "Bars / ticks",
        format!(
            "{} / {} in {:.2} s",
            info.bars_processed, info.ticks_processed, info.wall_seconds
        ),
    ));
    let cur = &info.currency;
    let money = |amount: Decimal| format!("{} {}", cur.format(amount), cur.code);
    rows.push(("Initial cash", money(m.initial_cash)));
    rows.push(("Final equity", money(m.final_equity)));
    rows.push(("Net profit", money(m.net_profit)));
    rows.push(("Total return", decimal_percent(m.total_return)));
    rows.push(("Fees paid", money(m.fees_paid)));
    let c = &m.costs.totals;
    rows.push((
        "Costs",
        format!(
            "{} (commission {}, slippage {}, borrow {}, financing {})",
            money(c.total),
            cur.format(c.commission),
            cur.format(c.slippage),
            cur.format(c.borrow),
            cur.format(c.financing)
        ),
    ));
    let metric = |name: &str, value: Option<f64>, f: fn(f64) -> String| match value {
        Some(v) => f(v),
        None => match m.unavailable.get(name) {
            Some(why) => format!("n/a ({why})"),
            None => "n/a".to_string(),
        },
    };
    rows.push(("CAGR", metric("cagr", m.cagr, percent)));
    rows.push((
        "Sharpe",
        format!("{}{}", metric("sharpe", m.sharpe, ratio), returns_note(m)),
    ));
    rows.push(("Sortino", metric("sortino", m.sortino, ratio)));
    rows.push((
        "Volatility (ann.)",
        metric("annualized_volatility", m.annualized_volatility, percent),
    ));
    rows.push((
        "Max drawdown",
        if m.max_drawdown > 0.0 {
            format!(
                "{} (longest under water {})",
                percent(m.max_drawdown),
                duration(m.max_drawdown_duration_ns)
            )
        } else {
            percent(0.0)
        },
    ));
    rows.push(("Calmar", metric("calmar", m.calmar, ratio)));
    let historical = m.more.var.historical.get("95").and_then(|risk| risk.var);
    rows.push(("VaR 95% (1 day)", metric("var_95", historical, percent)));
    if let Some(b) = &m.benchmark {
        rows.push((
            "Benchmark",
            format!(
                "{}: return {}, Sharpe {}",
                b.name,
                opt(b.returns.total_return, percent),
                opt(b.returns.core.sharpe, ratio)
            ),
        ));
        rows.push((
            "Alpha / beta",
            format!(
                "{} / {}",
                metric("alpha", m.relative.alpha, percent),
                opt(m.relative.beta, ratio)
            ),
        ));
    }
    rows.push((
        "Trades",
        format!(
            "{} ({} won, {} lost)",
            m.num_trades, m.num_winning_trades, m.num_losing_trades
        ),
    ));
    rows.push(("Win rate", opt(m.win_rate, percent)));
    rows.push(("Profit factor", opt(m.profit_factor, ratio)));
    rows.push((
        "Avg trade PnL",
        m.avg_trade_pnl.map_or_else(|| "n/a".to_string(), money),
    ));
    rows.push(("Orders", m.orders.describe()));
    rows.push(("Fills", m.num_fills.to_string()));

    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = status_line(&info.status);
    for (label, value) in rows {
        out.push_str(&format!("\n  {label:<width$}{value}"));
    }
    out.push_str(&rejection_warning(m));
    out
}

/// When orders were rejected: how many, and the most frequent reasons with an example each.
fn rejection_warning(m: &Metrics) -> String {
    let o = &m.orders;
    if o.rejected == 0 {
        return String::new();
    }
    let mut out = format!(
        "\nWarning: {} of {} orders were rejected; most frequent reasons (all in orders.csv):",
        o.rejected, o.total
    );
    for reason in &o.rejection_reasons {
        out.push_str(&format!("\n  {:>6}x  {}", reason.count, reason.example));
    }
    out
}

fn status_line(status: &RunStatus) -> String {
    match status {
        RunStatus::Complete => "Status: complete".to_string(),
        RunStatus::Interrupted => "Status: interrupted (partial results)".to_string(),
        RunStatus::Failed { reason } => {
            let line = reason
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("unknown error");
            let mut shown: String = line.chars().take(MAX_REASON_CHARS).collect();
            if shown.len() < line.len() {
                shown.push_str("...");
            }
            format!("Status: failed (partial results): {shown}")
        }
    }
}

/// Most names a summary line lists before it shortens the list to its ends and a count.
const MAX_LISTED: usize = 8;

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        short_list(items)
    }
}

/// `A, B, C`; a long list (a 500-symbol universe) as its first names, `…`, the last one and
/// the count, so the summary stays one readable line. The full list is in `metrics.json`.
pub(crate) fn short_list(items: &[String]) -> String {
    if items.len() <= MAX_LISTED {
        return items.join(", ");
    }
    format!(
        "{}, …, {} ({} symbols)",
        items[..MAX_LISTED - 2].join(", "),
        items[items.len() - 1],
        items.len()
    )
}

fn period(m: &Metrics) -> String {
    match (m.start_time, m.end_time) {
        (Some(start), Some(end)) => format!(
            "{} .. {} ({}, {} points)",
            format_timestamp(start),
            format_timestamp(end),
            duration(end - start),
            m.num_equity_points
        ),
        _ => "no equity points".to_string(),
    }
}

fn returns_note(m: &Metrics) -> String {
    if m.sharpe.is_none() && m.sortino.is_none() {
        return String::new();
    }
    match m.returns_basis {
        ReturnsBasis::Daily => format!(" (daily returns, {}/yr)", m.days_per_year),
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

fn ratio(x: f64) -> String {
    format!("{x:.2}")
}

fn percent(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn decimal_percent(x: Decimal) -> String {
    match x.checked_mul(Decimal::ONE_HUNDRED) {
        Some(p) => format!("{:.2}%", p.round_dp(2)),
        None => "n/a".to_string(),
    }
}

/// `3.5 days`, `4.0 hours`, `12 min` or `30 s`.
fn duration(ns: i64) -> String {
    let hour = 60 * NANOS_PER_MINUTE;
    if ns >= NANOS_PER_DAY {
        format!("{:.1} days", ns as f64 / NANOS_PER_DAY as f64)
    } else if ns >= hour {
        format!("{:.1} hours", ns as f64 / hour as f64)
    } else if ns >= NANOS_PER_MINUTE {
        format!("{} min", ns / NANOS_PER_MINUTE)
    } else {
        format!("{} s", ns / NANOS_PER_SECOND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::compute;
    use crate::metrics::output::tests::{info, sample};

    #[test]
    fn a_wide_universe_is_listed_by_its_ends_and_count() {
        let names: Vec<String> = (0..500).map(|i| format!("S{i:03}")).collect();
        assert_eq!(
            short_list(&names),
            "S000, S001, S002, S003, S004, S005, …, S499 (500 symbols)"
        );
        assert_eq!(short_list(&names[..8]), names[..8].join(", "));
        assert_eq!(list_or_none(&[]), "none");
        let (equity, fills, trades) = sample();
        let mut info = info(RunStatus::Complete);
        info.symbols = names;
        let m = compute(info.initial_cash, &equity, &trades, &fills);
        let t = summary_table(&info, &m);
        assert!(t.lines().all(|line| line.chars().count() < 120), "{t}");
    }

    #[test]
    fn complete_run_table() {
        let (equity, fills, trades) = sample();
        let info = info(RunStatus::Complete);
        let m = compute(info.initial_cash, &equity, &trades, &fills);
        let t = summary_table(&info, &m);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Status: complete");
        assert!(!t.contains('\x1b'));
        assert!(t.ends_with("  Fills              3"));
        assert!(t.contains("  Algorithm          algorithms/sma_cross.py (SmaCross)\n"));
        assert!(t.contains("  Final equity       100,105.10 USD\n"));
        assert!(t.contains("  Total return       0.11%\n"));
        assert!(t.contains("  Fees paid          42.99 USD\n"), "{t}");
        assert!(t.contains("  Trades             1 (0 won, 1 lost)\n"));
        assert!(t.contains("  Profit factor      0.00\n"));
        assert!(t.contains(
            "  VaR 95% (1 day)    n/a (VaR and CVaR at 95 % need at least 20 daily returns; the run has 3)\n"
        ));
        // Two daily returns: no Sharpe, and the reason instead of a bare n/a.
        assert!(
            t.contains(
                "  Sharpe             n/a (needs at least 20 daily returns; the run has 3)\n"
            ),
            "{t}"
        );
        assert!(t.contains("  CAGR               n/a (needs at least 30 days of equity; the run spans 2.0 days)\n"), "{t}");
        assert!(
            t.contains("  Orders             0 (0 filled, 0 cancelled, 0 rejected, 0 expired)\n")
        );
        assert!(t.contains(
            "  Period             2024-01-02T09:00:00Z .. 2024-01-04T09:00:01.500Z (2.0 days, 3 points)\n"
        ));
        // Every value starts in the same column.
        let col = lines[1].find("algorithms").unwrap();
        for line in &lines[1..] {
            assert_eq!(line.as_bytes()[col - 1], b' ', "{line}");
            assert_ne!(line.as_bytes()[col], b' ', "{line}");
        }
    }

    #[test]
    fn partial_runs_say_so_first() {
        let info_i = info(RunStatus::Interrupted);
        let m = compute(info_i.initial_cash, &[], &[], &[]);
        let t = summary_table(&info_i, &m);
        assert!(t.starts_with("Status: interrupted (partial results)\n"));
        assert!(t.contains("  Sharpe             n/a\n"));
        assert!(t.contains("no equity points"));
        let failed = info(RunStatus::Failed {
            reason: "Traceback (most recent call last):\n  File \"a.py\", line 3\nZeroDivisionError: division by zero\n"
                .into(),
        });
        let t = summary_table(&failed, &m);
        assert_eq!(
            t.lines().next().unwrap(),
            "Status: failed (partial results): ZeroDivisionError: division by zero"
        );
    }

    #[test]
    fn rejected_orders_are_counted_and_warned_about() {
        use crate::model::{
            Order, OrderId, OrderKind, OrderSide, OrderStatus, SymbolId, TimeInForce,
        };
        let order = |id: u64, status: OrderStatus, reason: Option<String>| Order {
            id: OrderId(id),
            symbol: SymbolId(0),
            side: OrderSide::Buy,
            quantity: Decimal::ONE,
            kind: OrderKind::Market,
            tif: TimeInForce::Gtc,
            submitted_at: 0,
            active_from: 0,
            status,
            filled_quantity: Decimal::ZERO,
            filled_notional: Decimal::ZERO,
            fees: Decimal::ZERO,
            filled_at: None,
            reason,
            trail_stop: None,
            oco_group: None,
            parent: None,
            resting: false,
        };
        let power = |n: u64| {
            Some(format!(
                "insufficient buying power: the positions and orders would need {n}.00 of margin, equity is 100000.00"
            ))
        };
        let mut orders: Vec<Order> = (1..=67)
            .map(|i| order(i, OrderStatus::Rejected, power(200000 + i)))
            .collect();
        orders.push(order(
            68,
            OrderStatus::Rejected,
            Some("order value 5.00 is below the minimum notional 50".into()),
        ));
        let info = info(RunStatus::Complete);
        let m = compute(info.initial_cash, &[], &[], &[]).with_orders(&orders);
        let t = summary_table(&info, &m);
        assert!(
            t.contains("  Orders             68 (0 filled, 0 cancelled, 68 rejected, 0 expired)\n"),
            "{t}"
        );
        let warning: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("Warning:"))
            .collect();
        assert_eq!(
            warning,
            [
                "Warning: 68 of 68 orders were rejected; most frequent reasons (all in orders.csv):",
                "      67x  insufficient buying power: the positions and orders would need 200001.00 of margin, equity is 100000.00",
                "       1x  order value 5.00 is below the minimum notional 50",
            ]
        );
    }

    #[test]
    fn durations_and_percentages() {
        assert_eq!(duration(3 * NANOS_PER_DAY / 2), "1.5 days");
        assert_eq!(duration(4 * 60 * NANOS_PER_MINUTE), "4.0 hours");
        assert_eq!(duration(12 * NANOS_PER_MINUTE), "12 min");
        assert_eq!(duration(30 * NANOS_PER_SECOND), "30 s");
        assert_eq!(decimal_percent(Decimal::new(12345678, 8)), "12.35%");
        assert_eq!(decimal_percent(Decimal::new(-5, 1)), "-50.00%");
        assert_eq!(percent(0.2), "20.00%");
    }
}
