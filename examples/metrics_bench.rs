//! Benchmark of the metrics (issue 15: metrics for 100,000 trades in ≤ 1 s).
//!
//! `cargo build --release --examples && target/release/examples/metrics_bench`
//!
//! Times `compute_with` on 100,000 closed trades over 20 symbols, a year of one-minute equity
//! (525,600 points) and an equal-weight benchmark of the 20 symbols' hourly closes; prints
//! the best of five runs and exits non-zero above the 1 s budget.

use rust_decimal::Decimal;
use rustybt::metrics::{BenchmarkPrices, EquityPoint, MetricsOptions, Records, compute_with};
use rustybt::model::{ClosedTrade, SymbolId};

const MINUTE: i64 = 60_000_000_000;

fn main() {
    let trades: Vec<ClosedTrade> = (0..100_000i64)
        .map(|i| ClosedTrade {
            symbol: SymbolId((i % 20) as u32),
            direction: if i % 3 == 0 { -1 } else { 1 },
            max_quantity: Decimal::new(15 + i % 7, 1),
            entry_time: i * 5 * MINUTE,
            exit_time: i * 5 * MINUTE + (1 + i % 13) * MINUTE,
            pnl: Decimal::new((i * 7919) % 20_001 - 9_000, 2),
            fees: Decimal::new(125 + i % 50, 3),
            mae: Decimal::new(-((i * 31) % 5_000), 2),
            mfe: Decimal::new((i * 17) % 7_000, 2),
        })
        .collect();
    let equity: Vec<EquityPoint> = (0..525_600i64)
        .map(|i| EquityPoint {
            time: i * MINUTE + MINUTE,
            cash: Decimal::new(10_000_000, 2),
            equity: Decimal::new(10_000_000 + (i * 104_729) % 99_991 - 40_000 + i / 10, 2),
        })
        .collect();
    let names: Vec<String> = (0..20).map(|i| format!("S{i}")).collect();
    let prices = BenchmarkPrices {
        name: "equal weight".into(),
        symbols: names.clone(),
        closes: (0..20)
            .map(|k| {
                (0..525_600i64)
                    .step_by(60)
                    .map(|i| (i * MINUTE + MINUTE, 100.0 + ((i + k) % 977) as f64 / 10.0))
                    .collect()
            })
            .collect(),
    };
    let records = Records {
        initial_cash: Decimal::new(10_000_000, 2),
        equity: &equity,
        trades: &trades,
        fills: &[],
        symbols: &names,
        benchmark: Some(&prices),
    };
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let m = compute_with(&records, &MetricsOptions::default());
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(m.num_trades, 100_000);
        assert!(m.sharpe.is_some() && m.benchmark.is_some());
    }
    println!(
        "metrics for 100000 trades, 525600 equity points, 20-symbol benchmark: {:.3} s (best of 5)",
        best
    );
    if best > 1.0 {
        eprintln!("over the 1 s budget");
        std::process::exit(1);
    }
}
