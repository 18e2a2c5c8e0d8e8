//! What a portfolio run writes besides each strategy's own results folder
//! (`strategies/<id>/`): the account's files with a `strategy` column, the capital moves
//! (`allocation.csv`), and the `portfolio` section of `metrics.json` (per-strategy results,
//! the correlation of their daily returns, the diversification benefit).

use std::path::Path;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use super::book::AllocationRow;
use crate::error::Error;
use crate::metrics::{EquityPoint, Metrics};
use crate::model::time::NANOS_PER_DAY;
use crate::model::{ClosedTrade, Fill, SymbolId, TimestampNs, format_timestamp};

/// One strategy's part of the book, as the results report it.
pub struct StrategyReport<'a> {
    pub id: &'a str,
    pub algorithm: String,
    pub class_name: String,
    pub parameters: &'a std::collections::BTreeMap<String, String>,
    pub symbols: Vec<String>,
    pub weight: Decimal,
    pub initial_capital: Decimal,
    /// The sub-ledger's equity at the end (real, with the capital moved in or out).
    pub final_equity: Decimal,
    /// Capital moved in (negative: out) by rebalancing after the start.
    pub transfers: Decimal,
    /// `None`: ran to the end.
    pub stopped: Option<(TimestampNs, String)>,
    /// On the flow-adjusted curve (see `Member::flow_adjusted_equity`).
    pub metrics: &'a Metrics,
    pub daily: &'a [(i64, Decimal)],
}

/// Every strategy's rows in one list ordered by `key` (strategies in book order within one
/// key), each relabelled to the book's symbol ids by `relabel`, with the index of the
/// strategy of each row.
fn combined<T: Clone, K: Ord>(
    parts: &[(&[T], &[SymbolId])],
    relabel: impl Fn(&mut T, &[SymbolId]),
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Vec<u32>) {
    let mut rows: Vec<(T, u32)> = Vec::new();
    for (k, (items, global)) in parts.iter().enumerate() {
        for item in items.iter() {
            let mut item = item.clone();
            relabel(&mut item, global);
            rows.push((item, k as u32));
        }
    }
    rows.sort_by_key(|a| (key(&a.0), a.1));
    rows.into_iter().unzip()
}

/// Every strategy's fills in the book's symbol ids, in time order.
pub fn combined_fills(parts: &[(&[Fill], &[SymbolId])]) -> (Vec<Fill>, Vec<u32>) {
    combined(
        parts,
        |f, global| f.symbol = global[f.symbol.index()],
        |f| f.time,
    )
}

/// Every strategy's closed trades in the book's symbol ids, by exit time.
pub fn combined_trades(parts: &[(&[ClosedTrade], &[SymbolId])]) -> (Vec<ClosedTrade>, Vec<u32>) {
    combined(
        parts,
        |t, global| t.symbol = global[t.symbol.index()],
        |t| t.exit_time,
    )
}

/// Every strategy's cost log in one, in the book's symbol ids and time order.
pub fn combined_costs(
    parts: &[(&[crate::accounting::CostRecord], &[SymbolId])],
    symbols: usize,
) -> Result<crate::accounting::CostLog, Error> {
    let (rows, _) = combined(
        parts,
        |r, global| r.symbol = r.symbol.map(|s| global[s.index()]),
        |r| r.time,
    );
    let mut log = crate::accounting::CostLog::new(symbols);
    for r in rows {
        log.record(r)
            .map_err(|e| Error::Internal(format!("combining the cost logs: {e}")))?;
    }
    Ok(log)
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// `allocation.csv`: every capital move (the initial allocation, then each rebalance).
pub fn write_allocations(path: &Path, rows: &[AllocationRow], ids: &[String]) -> Result<(), Error> {
    let mut w = csv::Writer::from_path(path).map_err(|e| io_error(path, e))?;
    w.write_record([
        "time",
        "strategy",
        "weight",
        "equity_before",
        "transfer",
        "equity_after",
    ])
    .map_err(|e| io_error(path, e))?;
    for r in rows {
        w.write_record([
            format_timestamp(r.time),
            r.strategy
                .map_or_else(|| "(reserve)".to_string(), |k| ids[k].clone()),
            r.weight.normalize().to_string(),
            r.equity_before.to_string(),
            r.transfer.to_string(),
            (r.equity_before + r.transfer).to_string(),
        ])
        .map_err(|e| io_error(path, e))?;
    }
    w.flush().map_err(|e| io_error(path, e))
}

/// The account's `orders.csv`: each strategy's `orders.csv` (in `strategies/<id>/`) with a
/// `strategy` column in front, merged in time order (book order within one time).
pub fn combine_orders(out_dir: &Path, ids: &[String]) -> Result<(), Error> {
    let mut rows: Vec<(String, usize, csv::StringRecord)> = Vec::new();
    let mut header: Option<csv::StringRecord> = None;
    for (k, id) in ids.iter().enumerate() {
        let path = out_dir.join("strategies").join(id).join("orders.csv");
        let mut reader = csv::Reader::from_path(&path).map_err(|e| io_error(&path, e))?;
        header.get_or_insert(reader.headers().map_err(|e| io_error(&path, e))?.clone());
        for record in reader.records() {
            let record = record.map_err(|e| io_error(&path, e))?;
            let time = record.get(0).unwrap_or_default().to_string();
            rows.push((time, k, record));
        }
    }
    // RFC 3339 times in one format sort as text.
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let path = out_dir.join("orders.csv");
    let mut w = csv::Writer::from_path(&path).map_err(|e| io_error(&path, e))?;
    let mut first = vec!["strategy".to_string()];
    first.extend(header.iter().flat_map(|h| h.iter().map(str::to_string)));
    w.write_record(&first).map_err(|e| io_error(&path, e))?;
    for (_, k, record) in rows {
        w.write_field(&ids[k]).map_err(|e| io_error(&path, e))?;
        w.write_record(&record).map_err(|e| io_error(&path, e))?;
    }
    w.flush().map_err(|e| io_error(&path, e))
}

/// Daily returns of the account (flows between strategies cancel out): the last equity of
/// each UTC day against the previous day's (the first against the starting cash).
pub fn account_daily_returns(equity: &[EquityPoint], initial: Decimal) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut previous = initial;
    let mut i = 0;
    while i < equity.len() {
        let day = equity[i].time.div_euclid(NANOS_PER_DAY);
        let mut j = i;
        while j + 1 < equity.len() && equity[j + 1].time.div_euclid(NANOS_PER_DAY) == day {
            j += 1;
        }
        let close = equity[j].equity;
        if previous > Decimal::ZERO {
            out.push((
                day,
                (close / previous - Decimal::ONE).to_f64().unwrap_or(0.0),
            ));
        }
        previous = close;
        i = j + 1;
    }
    out
}

/// Pearson correlation of each pair's daily returns over the days both have; `None` with
/// fewer than 3 common days or a series that never varied.
pub fn correlation(daily: &[Vec<(i64, f64)>]) -> Vec<Vec<Option<f64>>> {
    let n = daily.len();
    let mut matrix = vec![vec![None; n]; n];
    for i in 0..n {
        for j in 0..n {
            let b: std::collections::HashMap<i64, f64> = daily[j].iter().copied().collect();
            let pairs: Vec<(f64, f64)> = daily[i]
                .iter()
                .filter_map(|(d, x)| b.get(d).map(|y| (*x, *y)))
                .collect();
            matrix[i][j] = pearson(&pairs);
        }
    }
    matrix
}

fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Sample standard deviation; `None` under 2 values.
pub fn std_dev(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    Some((values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt())
}

/// The `portfolio` section of the account's `metrics.json`.
pub fn section(
    spec: &super::PortfolioSpec,
    strategies: &[StrategyReport<'_>],
    book: &super::BookOutcome,
    initial_cash: Decimal,
    rebalances: usize,
) -> Value {
    let account_equity = &book.equity;
    let limits = &spec.risk;
    let text = |v: Option<Decimal>| v.map(|d| d.normalize().to_string());
    let risk = json!({
        "max_gross_leverage": text(limits.max_gross_leverage),
        "max_net_leverage": text(limits.max_net_leverage),
        "max_symbol_exposure": text(limits.max_symbol_exposure),
        "max_drawdown": text(limits.max_drawdown),
        "on_halt": if limits.close_on_halt { "close" } else { "hold" },
        "on_violation": if limits.halt_on_violation { "halt" } else { "reject" },
        "volatility_target": text(limits.volatility_target),
        "correlation_threshold": text(limits.correlation_threshold),
        "rejected_orders": book.risk_rejections,
        "halted_at": book.halted.as_ref().map(|(t, _)| format_timestamp(*t)),
        "halt_reason": book.halted.as_ref().map(|(_, r)| r.clone()),
    });
    let daily: Vec<Vec<(i64, f64)>> = strategies
        .iter()
        .map(|s| {
            s.daily
                .iter()
                .map(|(d, r)| (*d, r.to_f64().unwrap_or(0.0)))
                .collect()
        })
        .collect();
    let matrix = correlation(&daily);
    let account: Vec<f64> = account_daily_returns(account_equity, initial_cash)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let portfolio_vol = std_dev(&account);
    let vols: Vec<Option<f64>> = daily
        .iter()
        .map(|d| std_dev(&d.iter().map(|(_, r)| *r).collect::<Vec<_>>()))
        .collect();
    let weighted_vol: Option<f64> = strategies
        .iter()
        .zip(&vols)
        .map(|(s, v)| v.map(|v| s.weight.to_f64().unwrap_or(0.0) * v))
        .sum();
    let benefit = match (portfolio_vol, weighted_vol) {
        (Some(p), Some(w)) if w > 0.0 => Some(1.0 - p / w),
        _ => None,
    };
    json!({
        "file": spec.file.as_ref().map(|f| f.display().to_string()),
        "allocator": allocator_name(&spec.allocator),
        "rebalance": spec.rebalance.as_ref().map(|r| r.text.clone()).unwrap_or_else(|| "never".into()),
        "rebalances": rebalances,
        "risk": risk,
        "netting": {
            "enabled": book.netting_on,
            "crossings": book.netting.crossings,
            "quantity": book.netting.quantity.normalize().to_string(),
            "notional": book.netting.notional.normalize().to_string(),
            "commission_saved": book.netting.commission_saved.normalize().to_string(),
            "dropped": book.netting.dropped,
        },
        "on_error": match spec.on_error {
            super::config::OnError::StopStrategy => "stop_strategy",
            super::config::OnError::StopAll => "stop_all",
        },
        "strategies": strategies.iter().zip(&vols).map(|(s, vol)| json!({
            "id": s.id,
            "algorithm": s.algorithm,
            "class_name": s.class_name,
            "parameters": s.parameters,
            "symbols": s.symbols,
            "weight": s.weight.normalize().to_string(),
            "initial_capital": s.initial_capital.to_string(),
            "transfers": s.transfers.to_string(),
            "final_equity": s.final_equity.to_string(),
            "pnl": (s.final_equity - s.initial_capital - s.transfers).to_string(),
            "status": if s.stopped.is_some() { "stopped" } else { "complete" },
            "stopped_at": s.stopped.as_ref().map(|(t, _)| format_timestamp(*t)),
            "reason": s.stopped.as_ref().map(|(_, r)| r.clone()),
            "daily_volatility": vol,
            "results": format!("strategies/{}", s.id),
            "metrics": s.metrics,
        })).collect::<Vec<_>>(),
        "correlation": {
            "strategies": strategies.iter().map(|s| s.id).collect::<Vec<_>>(),
            "matrix": matrix,
        },
        "diversification": {
            "portfolio_daily_volatility": portfolio_vol,
            "weighted_daily_volatility": weighted_vol,
            "benefit": benefit,
        },
    })
}

fn allocator_name(kind: &super::config::AllocatorKind) -> String {
    use super::config::{AllocatorKind, RiskParity};
    match kind {
        AllocatorKind::Fixed => "fixed".into(),
        AllocatorKind::Dynamic => "dynamic".into(),
        AllocatorKind::RiskParity(RiskParity::EqualRiskContribution) => {
            "risk_parity (equal_risk)".into()
        }
        AllocatorKind::RiskParity(RiskParity::InverseVolatility) => {
            "risk_parity (inverse_volatility)".into()
        }
        AllocatorKind::Kelly => "kelly".into(),
        AllocatorKind::Drawdown => "drawdown".into(),
        AllocatorKind::Custom(spec) => spec.clone(),
    }
}

/// The account's `metrics.json`: what a plain run writes, plus the `portfolio` section.
/// Written last, like a plain run's.
pub fn write_metrics(
    out_dir: &Path,
    info: &crate::metrics::RunInfo,
    metrics: &Metrics,
    section: Value,
) -> Result<(), Error> {
    let path = out_dir.join("metrics.json");
    let mut document: Value = serde_json::from_str(&crate::metrics::metrics_json(info, metrics))
        .map_err(|e| Error::Internal(format!("re-reading metrics.json: {e}")))?;
    if let Value::Object(map) = &mut document {
        map.insert("portfolio".into(), section);
    }
    let text = serde_json::to_string_pretty(&document)
        .map_err(|e| Error::Internal(format!("writing metrics.json: {e}")))?;
    std::fs::write(&path, text + "\n").map_err(|source| Error::Io {
        context: "cannot write",
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_perfectly_related_series() {
        let a = vec![(0, 0.01), (1, -0.02), (2, 0.03), (3, 0.0)];
        let b: Vec<(i64, f64)> = a.iter().map(|(d, r)| (*d, 2.0 * r + 0.001)).collect();
        let c: Vec<(i64, f64)> = a.iter().map(|(d, r)| (*d, -r)).collect();
        let m = correlation(&[a, b, c]);
        assert!((m[0][1].unwrap() - 1.0).abs() < 1e-12);
        assert!((m[0][2].unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(m[1][1], Some(1.0));
    }

    #[test]
    fn account_returns_per_utc_day() {
        let point = |day: i64, minute: i64, equity: i64| EquityPoint {
            time: day * NANOS_PER_DAY + minute * 60_000_000_000,
            cash: Decimal::ZERO,
            equity: Decimal::from(equity),
        };
        let equity = [point(0, 1, 101), point(0, 2, 110), point(1, 1, 99)];
        let r = account_daily_returns(&equity, Decimal::from(100));
        assert_eq!(r, vec![(0, 0.1), (1, -0.1)]);
    }
}
