//! Performance statistics of a finished (or interrupted) backtest, and the results folder.
//!
//! The engine hands this module three records of a run: the equity curve (one [`EquityPoint`]
//! per tick), the fills, and the closed round-trip trades. [`compute`] turns them into
//! [`Metrics`]; [`write_results`] writes the metrics and the records into a results folder;
//! [`summary_table`] renders the metrics for the terminal.
//!
//! # Definitions
//!
//! Money is exact: every amount (`final_equity`, `net_profit`, `fees_paid`, `total_return`,
//! trade PnL, fill price, quantity and fee) is a [`Decimal`] and is written to JSON and CSV as
//! the decimal string `rust_decimal` prints, never through `f64`. Ratios (Sharpe, drawdown, ...)
//! are `f64` and are written as JSON numbers, or `null` when undefined.
//!
//! * **Total return** = `final_equity / initial_cash - 1`, computed in `Decimal` and rounded to
//!   12 decimal places. **Net profit** = `final_equity - initial_cash`. **Fees paid** = the sum
//!   of the fees of all fills. `final_equity` is the equity of the last point of the curve
//!   (`initial_cash` when the curve is empty).
//! * **Which day a point belongs to.** Equity points are stamped with the tick time, the close
//!   time of the bars just completed, so a point at exactly 00:00 UTC closes the *previous* day:
//!   a point at time `t` belongs to the UTC calendar day holding the instant just before `t`.
//!   (A weekday market's Friday daily bar, opened Friday 00:00, closes Saturday 00:00 and counts
//!   as Friday.)
//! * **Returns for Sharpe and Sortino.** The equity curve is resampled to the last equity of
//!   each UTC calendar day that has at least one equity point (days without points are skipped,
//!   not filled), and simple returns `e_d / e_{d-1} - 1` are taken between consecutive such
//!   days. They are annualized with `sqrt(periods_per_year)`, where the trading-days-per-year
//!   figure is **365** if any equity point belongs to a Saturday or Sunday (UTC) — a 24/7
//!   market — and **252** otherwise. The risk-free rate is 0.
//! * **Minimum samples.** Sharpe, Sortino and annualized volatility need at least
//!   [`MIN_DAILY_RETURNS`] (20) daily returns, CAGR and Calmar an equity curve spanning at
//!   least [`MIN_CAGR_DAYS`] (30) days; below that they are `None` and `unavailable` in
//!   `metrics.json` says why (a ratio annualized from hours or a few days is noise).
//! * **Sharpe** = `mean(r) / std(r) × sqrt(periods_per_year)` with the sample standard
//!   deviation (ddof = 1). **Sortino** = `mean(r) / dd × sqrt(periods_per_year)` with the
//!   downside deviation `dd = sqrt(mean(min(r, 0)²))` taken over all returns. Both are `None`
//!   (JSON `null`) when fewer than 2 returns exist, when the deviation is zero (for Sharpe:
//!   below `1e-12`, i.e. numerically constant returns; for Sortino: no negative return), or when
//!   an equity used as a return's base is ≤ 0.
//! * **Annualized volatility** = `std(r) × sqrt(periods_per_year)` over the same returns.
//! * **Max drawdown** over the per-tick equity = `max_t (peak_t - equity_t) / peak_t`, where
//!   `peak_t` is the highest equity up to and including `t`; a positive fraction (0.12 = 12 %),
//!   0 when the equity never falls below a previous peak, and 1.0 (capped) once the equity is
//!   ≤ 0. **Max drawdown duration** is the longest time spent under water: from a peak to the
//!   first later point whose equity is back at or above it, or to the last point when the
//!   equity never recovers.
//! * **CAGR** = `(final_equity / initial_cash)^(1 / years) - 1`, with
//!   `years = (end - start) / 365.25 days` over the equity curve's first and last times. `None`
//!   when the span is shorter than 30 days, when `final_equity ≤ 0` or `initial_cash ≤ 0`.
//!   **Calmar** = `cagr / max_drawdown`, `None` when `max_drawdown` is 0 or CAGR is undefined.
//! * **Trades** are closed round trips. **Win rate** = trades with `pnl > 0` / all closed trades.
//!   **Profit factor** = `Σ pnl of winners / |Σ pnl of losers|` (`None` when no trade lost).
//!   **Average trade PnL** = `Σ pnl / trades`, rounded to 12 decimal places. All three are
//!   `None` without trades. Trades with `pnl == 0` are neither winners nor losers.
//!
//! Any ratio that would not be a finite number is reported as `None`.
//!
//! # Results folder
//!
//! [`write_results`] creates the folder and writes, in this order:
//!
//! * `equity.csv` (`time,cash,equity`) and `equity.parquet`;
//! * `fills.csv` (`time,symbol,side,qty,price,fee,order_id`) and `fills.parquet`;
//! * `trades.csv` (`symbol,direction,max_qty,entry_time,exit_time,pnl,fees,mae,mfe`) and `trades.parquet`;
//! * `metrics.json`, last, so that its presence means the folder is complete.
//!
//! Times in CSV are RFC 3339 UTC strings ([`format_timestamp`](crate::model::format_timestamp)),
//! symbols are names, sides are `buy`/`sell`, trade directions are `long`/`short`, money is the
//! exact decimal string. In Parquet, times are `Timestamp(Nanosecond, "UTC")`, symbol, side and
//! direction are `Utf8`, `order_id` is `UInt64`, and money columns are `Decimal128(p, s)` where
//! `s` is the largest scale present in the column (at most 28), so every value is stored exactly
//! (pandas and polars read them as decimals), and `p` is 18 (a Parquet `INT64`) when every value
//! fits in 18 digits, else 38. Only if a column mixes values so large and so
//! finely scaled that they need more than 38 digits is the scale lowered to fit and the
//! finest values rounded.

pub mod benchmark;
mod columnar;
mod costs;
pub mod daily;
mod equity_stream;
pub mod kept;
mod orders;
mod output;
mod records;
pub mod returns;
pub mod risk;
mod stats;
mod summary;
pub mod trades;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::TimestampNs;

pub use benchmark::{BenchmarkChoice, BenchmarkMetrics, BenchmarkPrices};
pub use costs::{CostSummary, CostTotals, write_costs_csv};
pub use daily::MetricsOptions;
pub use equity_stream::EquityStream;
pub use kept::{EquityCurve, EquitySummary, FillLog, FillTotals, Kept, Summary};
pub use orders::{OrderSummary, ReasonCount};
pub use output::{
    Labels, metrics_json, write_corporate_actions, write_equity, write_metrics, write_records,
    write_records_labelled, write_results,
};
pub use records::{RecordLog, write_record_files};
pub use stats::{
    MIN_CAGR_DAYS, MIN_DAILY_RETURNS, Records, compute, compute_from, compute_with, days_per_year,
};
pub use summary::summary_table;

/// The account at the end of one engine tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EquityPoint {
    /// Tick time: the close of the bar(s) processed at this tick.
    pub time: TimestampNs,
    /// Cash after the tick's fills.
    pub cash: Decimal,
    /// Cash plus the marked-to-market value of every position.
    pub equity: Decimal,
}

/// How the run ended. Anything but [`RunStatus::Complete`] means partial results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// The clock ran to the end of the data.
    Complete,
    /// Stopped by the user (Ctrl-C).
    Interrupted,
    /// The algorithm raised an error.
    Failed {
        /// The error, with the Python traceback when there is one.
        reason: String,
    },
}

impl RunStatus {
    /// `"complete"`, `"interrupted"` or `"failed"`, as written to `metrics.json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed { .. } => "failed",
        }
    }

    /// True unless the run completed.
    pub fn is_partial(&self) -> bool {
        !matches!(self, RunStatus::Complete)
    }

    /// The failure reason, for [`RunStatus::Failed`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            RunStatus::Failed { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Everything about the run that is not a number computed by this module.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// How the run ended.
    pub status: RunStatus,
    /// Path of the algorithm file.
    pub algorithm: String,
    /// The `Algorithm` subclass that ran.
    pub class_name: String,
    /// The algorithm's parameters as run (after CLI/config overrides), as text.
    pub parameters: BTreeMap<String, String>,
    /// Paths of the data files loaded.
    pub data_files: Vec<String>,
    /// Symbol names; the index is the [`SymbolId`](crate::model::SymbolId).
    pub symbols: Vec<String>,
    /// Starting cash of the account.
    pub initial_cash: Decimal,
    /// Bars closed over the run, all symbols together.
    pub bars_processed: u64,
    /// Clock steps (`on_tick` calls) over the run.
    pub ticks_processed: u64,
    /// Wall-clock duration of the run, in seconds.
    pub wall_seconds: f64,
    /// Version of rustybt that ran.
    pub rustybt_version: String,
    /// Version of the embedded Python interpreter.
    pub python_version: String,
    /// Base bar interval of the data, in nanoseconds.
    pub bar_interval_ns: i64,
    /// The account's currency: the summary shows money to its precision.
    pub currency: crate::model::Currency,
    /// The catalog datasets the run read and their checksums (`data` in metrics.json).
    pub data: Option<serde_json::Value>,
}

/// Which returns the Sharpe and Sortino ratios are computed from (written to `metrics.json`
/// so a reader never has to guess).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnsBasis {
    /// Returns between the last equities of consecutive UTC calendar days.
    Daily,
}

/// The statistics of one run. See the [module documentation](self) for the definitions.
///
/// Serialized (into `metrics.json`) in field order; money as decimal strings, times as
/// RFC 3339 strings, ratios as numbers or `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// First equity point's time; `None` for an empty curve.
    #[serde(serialize_with = "output::ser_opt_time")]
    pub start_time: Option<TimestampNs>,
    /// Last equity point's time; `None` for an empty curve.
    #[serde(serialize_with = "output::ser_opt_time")]
    pub end_time: Option<TimestampNs>,
    /// Length of the equity curve (one point per tick).
    pub num_equity_points: usize,
    /// Starting cash, the base of `total_return`, `net_profit` and CAGR.
    pub initial_cash: Decimal,
    /// Equity of the last point (`initial_cash` for an empty curve).
    pub final_equity: Decimal,
    /// `final_equity / initial_cash - 1`, exact to 12 decimal places (0 if `initial_cash` is 0).
    pub total_return: Decimal,
    /// `final_equity - initial_cash`.
    pub net_profit: Decimal,
    /// Sum of the fees of all fills.
    pub fees_paid: Decimal,
    /// Closed round trips.
    pub num_trades: usize,
    /// Closed trades with `pnl > 0`.
    pub num_winning_trades: usize,
    /// Closed trades with `pnl < 0`.
    pub num_losing_trades: usize,
    /// Executions.
    pub num_fills: usize,
    /// Annualized Sharpe ratio, risk-free rate 0.
    pub sharpe: Option<f64>,
    /// Annualized Sortino ratio, target 0.
    pub sortino: Option<f64>,
    /// Sample standard deviation of the returns × `sqrt(periods_per_year)` (0.2 = 20 %).
    pub annualized_volatility: Option<f64>,
    /// Always daily returns.
    pub returns_basis: ReturnsBasis,
    /// How many daily returns the curve has (Sharpe and Sortino need [`MIN_DAILY_RETURNS`]).
    pub num_returns: usize,
    /// 365 (a point falls on a weekend: 24/7 market) or 252.
    pub days_per_year: u32,
    /// The annualization factor: `days_per_year`.
    pub periods_per_year: f64,
    /// Positive fraction: 0.12 = 12 %.
    pub max_drawdown: f64,
    /// Longest time under water, in nanoseconds.
    pub max_drawdown_duration_ns: i64,
    /// Time of the peak that starts the deepest drawdown (`None` when there is none).
    #[serde(serialize_with = "output::ser_opt_time")]
    pub max_drawdown_peak_time: Option<TimestampNs>,
    /// Time of the deepest point of the deepest drawdown.
    #[serde(serialize_with = "output::ser_opt_time")]
    pub max_drawdown_trough_time: Option<TimestampNs>,
    /// Compound annual growth rate (0.1 = 10 % a year).
    pub cagr: Option<f64>,
    /// `cagr / max_drawdown`.
    pub calmar: Option<f64>,
    /// Fraction of closed trades with `pnl > 0`.
    pub win_rate: Option<f64>,
    /// `gross_profit / |gross_loss|`.
    pub profit_factor: Option<f64>,
    /// Σ pnl of winning trades.
    pub gross_profit: Decimal,
    /// Σ pnl of losing trades (zero or negative).
    pub gross_loss: Decimal,
    /// Mean pnl of the closed trades, rounded to 12 decimal places.
    pub avg_trade_pnl: Option<Decimal>,
    /// The UTC time of day (`HH:MM`) at which the daily returns' days end.
    pub returns_day_end: String,
    /// Annual risk-free rate (0.04 = 4 %) used by Sharpe, Sortino, Omega and alpha.
    pub risk_free_rate: f64,
    /// The daily rate it compounds to: `(1 + risk_free_rate)^(1 / periods_per_year) - 1`.
    pub risk_free_daily: f64,
    /// Daily drawdown, Omega, tail ratio, stability, skew, kurtosis, VaR and CVaR.
    #[serde(flatten)]
    pub more: daily::MoreReturns,
    /// Alpha, beta, information ratio and tracking error against the benchmark.
    #[serde(flatten)]
    pub relative: daily::Relative,
    /// The benchmark's own return metrics, on the same days (`None` without one).
    pub benchmark: Option<BenchmarkMetrics>,
    /// Averages and extremes of winning and losing trades, MAE and MFE.
    #[serde(flatten)]
    pub trade_money: trades::TradeMoney,
    /// Streaks, holding periods, exposure, long/short and per-symbol splits.
    pub trade_stats: trades::TradeStatistics,
    /// Commission, slippage, borrow and financing, in total and per symbol. [`compute`] fills
    /// commission and slippage from the fills; [`Metrics::with_costs`] sets all of it from the
    /// run's cost log.
    pub costs: CostSummary,
    /// Orders by final status and the most frequent rejection reasons; set from the order
    /// book by [`Metrics::with_orders`].
    pub orders: OrderSummary,
    /// Why a metric is `null` although the run has data: it needs more observations than the
    /// run has (metric name → reason).
    pub unavailable: BTreeMap<String, String>,
}

impl Metrics {
    /// The metrics with `costs` taken from the run's cost log (`names` by symbol id).
    pub fn with_costs(mut self, log: &crate::accounting::CostLog, names: &[String]) -> Self {
        self.costs = CostSummary::from_log(log, names);
        self
    }

    /// The metrics with the reason there is no benchmark, if there is none.
    pub fn with_unavailable_benchmark(mut self, reason: Option<String>) -> Self {
        if let Some(reason) = reason {
            self.unavailable.insert("benchmark".to_string(), reason);
        }
        self
    }

    /// The metrics with `orders` counted from the run's orders.
    pub fn with_orders(mut self, orders: &[crate::model::Order]) -> Self {
        self.orders = OrderSummary::from_orders(orders);
        self
    }
}

/// Writing the results folder failed; every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Creating the folder or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a CSV file failed.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },
    /// Writing a Parquet file failed.
    #[error("{}: {source}", path.display())]
    Parquet {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow batch for a Parquet file failed.
    #[error("{}: {source}", path.display())]
    Arrow {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// Serializing `metrics.json` failed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}
