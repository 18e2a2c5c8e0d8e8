//! The results folder: `metrics.json` and the CSV files (Parquet twins are in `columnar`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use super::{EquityPoint, Metrics, MetricsError, RunInfo, columnar};
use crate::model::{ClosedTrade, Fill, SymbolId, TimestampNs, format_timestamp};

pub(crate) const METRICS_JSON: &str = "metrics.json";
pub(crate) const EQUITY_CSV: &str = "equity.csv";
pub(crate) const FILLS_CSV: &str = "fills.csv";
pub(crate) const TRADES_CSV: &str = "trades.csv";
pub(crate) const EQUITY_PARQUET: &str = "equity.parquet";
pub(crate) const FILLS_PARQUET: &str = "fills.parquet";
pub(crate) const TRADES_PARQUET: &str = "trades.parquet";

const CSV_BUFFER: usize = 1 << 16;

/// Writes the results folder `dir` (created if missing, files overwritten): the equity curve,
/// fills and trades as CSV and Parquet, then `metrics.json` last. Returns the paths written, in
/// that order. See the module documentation for the columns.
///
/// `metrics.json` holds `status` (`"complete"`, `"interrupted"` or `"failed"`), `partial`
/// (true unless complete), `reason` (the failure reason or `null`), every [`Metrics`] field, and
/// `run` with the [`RunInfo`] fields (except `status`, which is at the top).
pub fn write_results(
    dir: &Path,
    info: &RunInfo,
    metrics: &Metrics,
    equity: &[EquityPoint],
    fills: &[Fill],
    trades: &[ClosedTrade],
) -> Result<Vec<PathBuf>, MetricsError> {
    // The equity curve has a row per tick (a million for a million bars) and dominates the
    // writing: its files are written on two more threads while this one writes the rest.
    let (equity_written, written) = std::thread::scope(|scope| {
        let equity = scope.spawn(|| write_equity(dir, equity));
        let rest = write_records(dir, fills, trades, &info.symbols);
        (joined(equity), rest)
    });
    let mut all = equity_written?;
    all.extend(written?);
    all.push(write_metrics(dir, info, metrics)?);
    Ok(all)
}

/// `equity.csv` and `equity.parquet` in `dir` (created if missing), written on two threads;
/// returns their paths. Part of [`write_results`], for callers that overlap it with other
/// work (then [`write_metrics`] comes last, after both).
pub fn write_equity(dir: &Path, equity: &[EquityPoint]) -> Result<Vec<PathBuf>, MetricsError> {
    create_dir(dir)?;
    let (equity_csv, equity_parquet) = (dir.join(EQUITY_CSV), dir.join(EQUITY_PARQUET));
    let (csv_done, parquet_done) = std::thread::scope(|scope| {
        let parquet = scope.spawn(|| columnar::write_equity(&equity_parquet, equity));
        let csv = write_equity_csv(&equity_csv, equity);
        (csv, joined(parquet))
    });
    csv_done?;
    parquet_done?;
    Ok(vec![equity_csv, equity_parquet])
}

/// `metrics.json` in `dir`; written last, its presence says the folder is complete.
pub fn write_metrics(
    dir: &Path,
    info: &RunInfo,
    metrics: &Metrics,
) -> Result<PathBuf, MetricsError> {
    create_dir(dir)?;
    let path = dir.join(METRICS_JSON);
    write_metrics_json(&path, info, metrics)?;
    Ok(path)
}

pub(super) fn create_dir(dir: &Path) -> Result<(), MetricsError> {
    std::fs::create_dir_all(dir).map_err(|source| MetricsError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// The result of a scoped thread; its panic, if it panicked, continues on this thread.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The fills and trades files in `dir`, CSV then Parquet; returns their paths. Part of
/// [`write_results`]; `symbols` are the names by [`SymbolId`].
pub fn write_records(
    dir: &Path,
    fills: &[Fill],
    trades: &[ClosedTrade],
    symbols: &[String],
) -> Result<Vec<PathBuf>, MetricsError> {
    write_records_labelled(dir, fills, trades, symbols, None)
}

/// Which strategy each row belongs to, for a portfolio's combined files (a `strategy` column
/// in front).
pub struct Labels<'a> {
    pub names: &'a [String],
    /// An index into `names` per row.
    pub of_rows: &'a [u32],
}

impl Labels<'_> {
    pub fn name(&self, index: u32) -> &str {
        self.names.get(index as usize).map_or("", String::as_str)
    }
}

/// As [`write_records`], with a `strategy` column when `labels` are given (`fills` labels
/// the fills, `trades` the trades).
pub fn write_records_labelled(
    dir: &Path,
    fills: &[Fill],
    trades: &[ClosedTrade],
    symbols: &[String],
    labels: Option<(Labels<'_>, Labels<'_>)>,
) -> Result<Vec<PathBuf>, MetricsError> {
    create_dir(dir)?;
    let names = &SymbolNames(symbols);
    let (fill_labels, trade_labels) = match &labels {
        Some((f, t)) => (Some(f), Some(t)),
        None => (None, None),
    };
    let mut written = Vec::with_capacity(4);
    let path = dir.join(FILLS_CSV);
    write_fills_csv(&path, fills, names, fill_labels)?;
    written.push(path);
    let path = dir.join(FILLS_PARQUET);
    columnar::write_fills(&path, fills, names, fill_labels)?;
    written.push(path);

    let path = dir.join(TRADES_CSV);
    write_trades_csv(&path, trades, names, trade_labels)?;
    written.push(path);
    let path = dir.join(TRADES_PARQUET);
    columnar::write_trades(&path, trades, names, trade_labels)?;
    written.push(path);
    Ok(written)
}

/// `corporate_actions.csv`: every split and dividend applied to the books (written only when
/// the run had some).
pub fn write_corporate_actions(
    path: &Path,
    applied: &[crate::engine::actions::AppliedAction],
    symbols: &[String],
) -> Result<(), MetricsError> {
    let names = SymbolNames(symbols);
    let mut w = csv_writer(path)?;
    w.write_record([
        "time",
        "symbol",
        "kind",
        "value",
        "ex_date",
        "quantity_before",
        "quantity_after",
        "cash",
    ])
    .map_err(csv_err(path))?;
    for a in applied {
        let kind = match a.action.kind {
            crate::engine::actions::ActionKind::Split { .. } => "split",
            crate::engine::actions::ActionKind::Dividend { .. } => "dividend",
        };
        w.write_record([
            format_timestamp(a.time).as_str(),
            &names.name(a.symbol),
            kind,
            &a.action.text,
            format_timestamp(a.action.time).as_str(),
            &a.quantity_before.normalize().to_string(),
            &a.quantity_after.normalize().to_string(),
            &a.cash.to_string(),
        ])
        .map_err(csv_err(path))?;
    }
    w.flush().map_err(io_err(path))
}

/// Symbol names by [`SymbolId`]; an id without a name is written as `#<id>`.
pub(crate) struct SymbolNames<'a>(pub &'a [String]);

impl SymbolNames<'_> {
    pub fn name(&self, id: SymbolId) -> std::borrow::Cow<'_, str> {
        match self.0.get(id.index()) {
            Some(name) => name.as_str().into(),
            None => format!("#{}", id.0).into(),
        }
    }
}

/// `long` for a positive direction, `short` for a negative one.
pub(crate) fn direction_name(direction: i8) -> &'static str {
    match direction.signum() {
        1 => "long",
        -1 => "short",
        _ => "flat",
    }
}

/// Serializes an optional time as an RFC 3339 string (or `null`).
pub(crate) fn ser_opt_time<S: Serializer>(
    t: &Option<TimestampNs>,
    s: S,
) -> Result<S::Ok, S::Error> {
    t.map(format_timestamp).serialize(s)
}

#[derive(Serialize)]
struct MetricsJson<'a> {
    status: &'static str,
    partial: bool,
    reason: Option<&'a str>,
    #[serde(flatten)]
    metrics: &'a Metrics,
    run: RunJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct RunJson<'a> {
    algorithm: &'a str,
    class_name: &'a str,
    parameters: &'a BTreeMap<String, String>,
    data_files: &'a [String],
    symbols: &'a [String],
    initial_cash: Decimal,
    bars_processed: u64,
    ticks_processed: u64,
    wall_seconds: f64,
    rustybt_version: &'a str,
    python_version: &'a str,
    bar_interval_ns: i64,
}

/// The `metrics.json` document as a string (pretty printed, keys in a fixed order).
pub fn metrics_json(info: &RunInfo, metrics: &Metrics) -> String {
    let mut out =
        serde_json::to_string_pretty(&json_doc(info, metrics)).expect("metrics serialize to JSON");
    out.push('\n');
    out
}

fn json_doc<'a>(info: &'a RunInfo, metrics: &'a Metrics) -> MetricsJson<'a> {
    MetricsJson {
        status: info.status.as_str(),
        partial: info.status.is_partial(),
        reason: info.status.reason(),
        metrics,
        run: RunJson {
            algorithm: &info.algorithm,
            class_name: &info.class_name,
            parameters: &info.parameters,
            data_files: &info.data_files,
            symbols: &info.symbols,
            initial_cash: info.initial_cash,
            bars_processed: info.bars_processed,
            ticks_processed: info.ticks_processed,
            wall_seconds: info.wall_seconds,
            rustybt_version: &info.rustybt_version,
            python_version: &info.python_version,
            bar_interval_ns: info.bar_interval_ns,
        },
        data: info.data.as_ref(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MetricsError + '_ {
    move |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn csv_err(path: &Path) -> impl FnOnce(csv::Error) -> MetricsError + '_ {
    move |source| MetricsError::Csv {
        path: path.to_path_buf(),
        source,
    }
}

fn write_metrics_json(path: &Path, info: &RunInfo, metrics: &Metrics) -> Result<(), MetricsError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, &json_doc(info, metrics)).map_err(|source| {
        MetricsError::Json {
            path: path.to_path_buf(),
            source,
        }
    })?;
    w.write_all(b"\n").map_err(io_err(path))?;
    w.flush().map_err(io_err(path))
}

fn csv_writer(path: &Path) -> Result<csv::Writer<File>, MetricsError> {
    let file = File::create(path).map_err(io_err(path))?;
    Ok(csv::WriterBuilder::new()
        .buffer_capacity(CSV_BUFFER)
        .from_writer(file))
}

/// Replaces `buf` with the `Display` of `v` without allocating.
fn set(buf: &mut String, v: impl std::fmt::Display) -> &str {
    buf.clear();
    write!(buf, "{v}").expect("writing to a String");
    buf
}

/// `equity.csv`: one row per tick, so the one results file as long as the data. Written with
/// the hand-rolled formatters below rather than the `csv` crate and `Display` (no field needs
/// quoting), which makes it about four times cheaper; the text is byte for byte the same.
fn write_equity_csv(path: &Path, equity: &[EquityPoint]) -> Result<(), MetricsError> {
    let mut csv = EquityCsv::create(path)?;
    csv.rows(equity)?;
    csv.finish()
}

/// `equity.csv` written in pieces (see [`write_equity_csv`]): whole, or as a run goes.
pub(super) struct EquityCsv {
    path: PathBuf,
    w: BufWriter<File>,
    line: Vec<u8>,
    times: TimeText,
}

impl EquityCsv {
    pub(super) fn create(path: &Path) -> Result<Self, MetricsError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut w = BufWriter::with_capacity(CSV_BUFFER, file);
        w.write_all(b"time,cash,equity\n").map_err(io_err(path))?;
        Ok(EquityCsv {
            path: path.to_path_buf(),
            w,
            line: Vec::with_capacity(96),
            times: TimeText::default(),
        })
    }

    pub(super) fn rows(&mut self, equity: &[EquityPoint]) -> Result<(), MetricsError> {
        let line = &mut self.line;
        for p in equity {
            line.clear();
            self.times.push(line, p.time);
            line.push(b',');
            push_decimal(line, p.cash);
            line.push(b',');
            push_decimal(line, p.equity);
            line.push(b'\n');
            self.w.write_all(line).map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<(), MetricsError> {
        self.w.flush().map_err(io_err(&self.path))
    }
}

/// Formats times as [`format_timestamp`] does, remembering the date part between calls: an
/// equity curve's consecutive ticks mostly share a day.
#[derive(Default)]
struct TimeText {
    day: Option<i64>,
    /// `YYYY-MM-DDT` of `day`.
    date: [u8; 11],
}

impl TimeText {
    fn push(&mut self, out: &mut Vec<u8>, ns: TimestampNs) {
        const NANOS_PER_SECOND: i64 = 1_000_000_000;
        const SECONDS_PER_DAY: i64 = 86_400;
        if ns % NANOS_PER_SECOND != 0 {
            // Fractional seconds: rare in bar data; chrono's digits rules apply.
            out.extend_from_slice(format_timestamp(ns).as_bytes());
            return;
        }
        let seconds = ns / NANOS_PER_SECOND;
        let (day, second) = (
            seconds.div_euclid(SECONDS_PER_DAY),
            seconds.rem_euclid(SECONDS_PER_DAY),
        );
        if self.day != Some(day) {
            let (y, m, d) = civil_from_days(day);
            // i64 nanoseconds span the years 1677 to 2262: always four digits.
            let digits = [
                y / 1000,
                y / 100 % 10,
                y / 10 % 10,
                y % 10,
                -1,
                m / 10,
                m % 10,
                -1,
                d / 10,
                d % 10,
            ];
            for (slot, digit) in self.date.iter_mut().zip(digits) {
                *slot = if digit < 0 { b'-' } else { b'0' + digit as u8 };
            }
            self.date[10] = b'T';
            self.day = Some(day);
        }
        out.extend_from_slice(&self.date);
        let (h, mi, se) = (second / 3600, second / 60 % 60, second % 60);
        for (i, part) in [h, mi, se].into_iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            out.push(b'0' + (part / 10) as u8);
            out.push(b'0' + (part % 10) as u8);
        }
        out.push(b'Z');
    }
}

/// Year, month, day of a count of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends the text `Display` gives a decimal (every digit of its scale, `-` when negative):
/// by hand for a non-zero mantissa that fits 64 bits, through `Display` otherwise.
fn push_decimal(out: &mut Vec<u8>, v: Decimal) {
    let mantissa = v.mantissa();
    let Ok(mut digits_left) = u64::try_from(mantissa.unsigned_abs()) else {
        let _ = write!(out, "{v}");
        return;
    };
    if mantissa == 0 {
        let _ = write!(out, "{v}");
        return;
    }
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    while digits_left > 0 {
        start -= 1;
        digits[start] = b'0' + (digits_left % 10) as u8;
        digits_left /= 10;
    }
    let digits = &digits[start..];
    let scale = v.scale() as usize;
    if mantissa < 0 {
        out.push(b'-');
    }
    if scale == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
}

/// The header with a `strategy` column in front when labelled.
fn header<'a>(columns: &[&'a str], labels: Option<&Labels<'_>>) -> Vec<&'a str> {
    let mut header = Vec::with_capacity(columns.len() + 1);
    if labels.is_some() {
        header.push("strategy");
    }
    header.extend_from_slice(columns);
    header
}

fn write_fills_csv(
    path: &Path,
    fills: &[Fill],
    names: &SymbolNames,
    labels: Option<&Labels<'_>>,
) -> Result<(), MetricsError> {
    let mut w = csv_writer(path)?;
    w.write_record(header(
        &["time", "symbol", "side", "qty", "price", "fee", "order_id"],
        labels,
    ))
    .map_err(csv_err(path))?;
    let (mut qty, mut price, mut fee, mut id) =
        (String::new(), String::new(), String::new(), String::new());
    for (row, f) in fills.iter().enumerate() {
        let time = format_timestamp(f.time);
        if let Some(labels) = labels {
            w.write_field(labels.name(labels.of_rows[row]))
                .map_err(csv_err(path))?;
        }
        w.write_record([
            time.as_str(),
            &names.name(f.symbol),
            f.side.as_str(),
            set(&mut qty, f.quantity),
            set(&mut price, f.price),
            set(&mut fee, f.fee),
            set(&mut id, f.order_id.0),
        ])
        .map_err(csv_err(path))?;
    }
    w.flush().map_err(io_err(path))
}

fn write_trades_csv(
    path: &Path,
    trades: &[ClosedTrade],
    names: &SymbolNames,
    labels: Option<&Labels<'_>>,
) -> Result<(), MetricsError> {
    let mut w = csv_writer(path)?;
    w.write_record(header(
        &[
            "symbol",
            "direction",
            "max_qty",
            "entry_time",
            "exit_time",
            "pnl",
            "fees",
            "mae",
            "mfe",
        ],
        labels,
    ))
    .map_err(csv_err(path))?;
    let (mut qty, mut pnl, mut fees) = (String::new(), String::new(), String::new());
    let (mut mae, mut mfe) = (String::new(), String::new());
    for (row, t) in trades.iter().enumerate() {
        let (entry, exit) = (
            format_timestamp(t.entry_time),
            format_timestamp(t.exit_time),
        );
        if let Some(labels) = labels {
            w.write_field(labels.name(labels.of_rows[row]))
                .map_err(csv_err(path))?;
        }
        w.write_record([
            &names.name(t.symbol),
            direction_name(t.direction),
            set(&mut qty, t.max_quantity),
            entry.as_str(),
            exit.as_str(),
            set(&mut pnl, t.pnl),
            set(&mut fees, t.fees),
            set(&mut mae, t.mae),
            set(&mut mfe, t.mfe),
        ])
        .map_err(csv_err(path))?;
    }
    w.flush().map_err(io_err(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::{RunStatus, compute};
    use crate::model::time::NANOS_PER_DAY;
    use crate::model::{OrderId, OrderSide};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, TimestampNanosecondType};
    use arrow_array::{Array, RecordBatch};
    use arrow_schema::{DataType, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::Value;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const T0: TimestampNs = 1_704_186_000_000_000_000; // 2024-01-02T09:00:00Z, a Tuesday

    pub(crate) fn info(status: RunStatus) -> RunInfo {
        RunInfo {
            status,
            algorithm: "algorithms/sma_cross.py".into(),
            class_name: "SmaCross".into(),
            parameters: [("fast".to_string(), "10".to_string())].into(),
            data_files: vec!["data/btc.parquet".into(), "data/eth.csv".into()],
            symbols: vec!["BTC-USD".into(), "ETH,USD".into()],
            initial_cash: d("100000.00"),
            bars_processed: 12,
            ticks_processed: 6,
            wall_seconds: 0.25,
            rustybt_version: "0.1.0".into(),
            python_version: "3.12.3".into(),
            bar_interval_ns: 60_000_000_000,
            currency: Default::default(),
            data: None,
        }
    }

    pub(crate) fn sample() -> (Vec<EquityPoint>, Vec<Fill>, Vec<ClosedTrade>) {
        let equity = vec![
            EquityPoint {
                time: T0,
                cash: d("100000.00"),
                equity: d("100000.00"),
            },
            EquityPoint {
                time: T0 + NANOS_PER_DAY,
                cash: d("57012.3456789"),
                equity: d("100250.123456789"),
            },
            EquityPoint {
                time: T0 + 2 * NANOS_PER_DAY + 1_500_000_000,
                cash: d("100105.10"),
                equity: d("100105.10"),
            },
        ];
        let fills = vec![
            Fill {
                order_id: OrderId(1),
                symbol: crate::model::SymbolId(0),
                side: OrderSide::Buy,
                quantity: d("0.5"),
                price: d("42987.654321"),
                fee: d("21.49382716"),
                slippage: Decimal::ZERO,
                time: T0 + 60_000_000_000,
            },
            Fill {
                order_id: OrderId(2),
                symbol: crate::model::SymbolId(1),
                side: OrderSide::Sell,
                quantity: d("3"),
                price: d("2300.1"),
                fee: d("0"),
                slippage: Decimal::ZERO,
                time: T0 + 2 * NANOS_PER_DAY,
            },
            Fill {
                order_id: OrderId(3),
                symbol: crate::model::SymbolId(7),
                side: OrderSide::Sell,
                quantity: d("0.5"),
                price: d("43000"),
                fee: d("21.5"),
                slippage: Decimal::ZERO,
                time: T0 + 2 * NANOS_PER_DAY + 1_500_000_000,
            },
        ];
        let trades = vec![ClosedTrade {
            symbol: crate::model::SymbolId(0),
            direction: 1,
            max_quantity: d("0.5"),
            entry_time: T0 + 60_000_000_000,
            exit_time: T0 + 2 * NANOS_PER_DAY + 1_500_000_000,
            pnl: d("-36.8210"),
            fees: d("42.99382716"),
            mae: d("-120.5"),
            mfe: d("35.25"),
        }];
        (equity, fills, trades)
    }

    fn read_csv(path: &Path) -> Vec<Vec<String>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(path)
            .unwrap();
        r.records()
            .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    fn read_parquet(path: &Path) -> Vec<RecordBatch> {
        let file = File::open(path).unwrap();
        ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn round_trip_through_the_results_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("results").join("run1");
        let (equity, fills, trades) = sample();
        let info = info(RunStatus::Complete);
        let m = compute(info.initial_cash, &equity, &trades, &fills);
        let written = write_results(&dir, &info, &m, &equity, &fills, &trades).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "equity.csv",
                "equity.parquet",
                "fills.csv",
                "fills.parquet",
                "trades.csv",
                "trades.parquet",
                "metrics.json"
            ]
        );
        assert!(written.iter().all(|p| p.starts_with(&dir) && p.is_file()));

        // metrics.json
        let text = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
        assert_eq!(text, metrics_json(&info, &m));
        let j: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["status"], "complete");
        assert_eq!(j["partial"], false);
        assert_eq!(j["reason"], Value::Null);
        assert_eq!(j["final_equity"], "100105.10");
        assert_eq!(j["net_profit"], "105.10");
        assert_eq!(j["total_return"], "0.001051");
        assert_eq!(j["fees_paid"], "42.99382716");
        assert_eq!(j["initial_cash"], "100000.00");
        assert_eq!(j["num_trades"], 1);
        assert_eq!(j["num_fills"], 3);
        assert_eq!(j["win_rate"], 0.0);
        assert_eq!(j["profit_factor"], 0.0);
        assert_eq!(j["avg_trade_pnl"], "-36.821");
        assert_eq!(j["gross_loss"], "-36.8210");
        // Two days of equity: the annualized ratios are null, with the reason.
        assert!(j["sharpe"].is_null() && j["sortino"].is_null() && j["calmar"].is_null());
        assert_eq!(
            j["unavailable"]["sharpe"],
            "needs at least 20 daily returns; the run has 3"
        );
        assert!(j["max_drawdown"].is_f64());
        assert!(j.get("sharpe").is_some());
        assert_eq!(j["start_time"], "2024-01-02T09:00:00Z");
        assert_eq!(j["end_time"], "2024-01-04T09:00:01.500Z");
        assert_eq!(j["returns_basis"], "daily");
        assert_eq!(j["run"]["class_name"], "SmaCross");
        assert_eq!(j["run"]["parameters"]["fast"], "10");
        assert_eq!(j["run"]["symbols"][1], "ETH,USD");
        assert_eq!(j["run"]["initial_cash"], "100000.00");
        assert_eq!(j["run"]["bar_interval_ns"], 60_000_000_000i64);
        assert!(j["run"].get("status").is_none());
        // Stable key order: status first, run last.
        let keys: Vec<_> = j.as_object().unwrap().keys().cloned().collect();
        let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(pos("status") < pos("partial") && pos("partial") < pos("reason"));
        assert!(pos("reason") < pos("final_equity") && pos("avg_trade_pnl") < pos("run"));
        assert!(keys.contains(&"max_drawdown_duration_ns".to_string()));

        // CSVs: exact decimal strings.
        let rows = read_csv(&dir.join("equity.csv"));
        assert_eq!(rows[0], ["time", "cash", "equity"]);
        assert_eq!(
            rows[2],
            ["2024-01-03T09:00:00Z", "57012.3456789", "100250.123456789"]
        );
        assert_eq!(rows.len(), 4);
        let rows = read_csv(&dir.join("fills.csv"));
        assert_eq!(
            rows[0],
            ["time", "symbol", "side", "qty", "price", "fee", "order_id"]
        );
        assert_eq!(
            rows[1],
            [
                "2024-01-02T09:01:00Z",
                "BTC-USD",
                "buy",
                "0.5",
                "42987.654321",
                "21.49382716",
                "1"
            ]
        );
        assert_eq!(rows[2][1], "ETH,USD"); // quoted in the file, intact when read
        assert_eq!(rows[2][2], "sell");
        assert_eq!(rows[3][1], "#7");
        let rows = read_csv(&dir.join("trades.csv"));
        assert_eq!(
            rows,
            [
                vec![
                    "symbol",
                    "direction",
                    "max_qty",
                    "entry_time",
                    "exit_time",
                    "pnl",
                    "fees",
                    "mae",
                    "mfe"
                ],
                vec![
                    "BTC-USD",
                    "long",
                    "0.5",
                    "2024-01-02T09:01:00Z",
                    "2024-01-04T09:00:01.500Z",
                    "-36.8210",
                    "42.99382716",
                    "-120.5",
                    "35.25"
                ]
            ]
        );

        // Parquet twins.
        let batches = read_parquet(&dir.join("equity.parquet"));
        let b = &batches[0];
        assert_eq!(b.num_rows(), 3);
        assert_eq!(
            b.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        );
        assert_eq!(
            b.schema().field(2).data_type(),
            &DataType::Decimal128(18, 9)
        );
        let times = b.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(times.value(2), T0 + 2 * NANOS_PER_DAY + 1_500_000_000);
        let eq = b.column(2).as_primitive::<Decimal128Type>();
        assert_eq!(eq.value(1), 100_250_123_456_789);
        assert_eq!(eq.value_as_string(1), "100250.123456789");
        assert_eq!(eq.value_as_string(2), "100105.100000000");
        let cash = b.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(cash.scale(), 7);
        assert_eq!(cash.value_as_string(1), "57012.3456789");

        let b = &read_parquet(&dir.join("fills.parquet"))[0];
        let cols: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            cols,
            ["time", "symbol", "side", "qty", "price", "fee", "order_id"]
        );
        assert_eq!(b.column(1).as_string::<i32>().value(1), "ETH,USD");
        assert_eq!(b.column(2).as_string::<i32>().value(0), "buy");
        let price = b.column(4).as_primitive::<Decimal128Type>();
        assert_eq!(price.value_as_string(0), "42987.654321");
        assert_eq!(price.value_as_string(2), "43000.000000");
        assert_eq!(
            b.column(5)
                .as_primitive::<Decimal128Type>()
                .value_as_string(0),
            "21.49382716"
        );
        let ids = b.column(6).as_primitive::<arrow_array::types::UInt64Type>();
        assert_eq!(ids.values().as_ref(), [1, 2, 3]);

        let b = &read_parquet(&dir.join("trades.parquet"))[0];
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(1).as_string::<i32>().value(0), "long");
        let pnl = b.column(5).as_primitive::<Decimal128Type>();
        assert_eq!(pnl.value_as_string(0), "-36.8210");
        assert!(!pnl.is_null(0));
    }

    #[test]
    fn hand_formatted_times_and_decimals_match_display() {
        let mut times = TimeText::default();
        let minute = 60_000_000_000;
        for ns in [
            0,
            T0,
            T0 + 1_500_000_000,
            -1_000_000_000,
            -86_400_000_000_000 * 365 * 200 + 7 * minute,
            951_782_400_000_000_000, // 2000-02-29
            i64::MAX / minute * minute,
            i64::MIN / minute * minute,
        ]
        .into_iter()
        .chain((0..5000).map(|i| T0 + i * 37 * minute))
        {
            let mut out = Vec::new();
            times.push(&mut out, ns);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format_timestamp(ns),
                "{ns}"
            );
        }
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut cases: Vec<Decimal> = [
            "0",
            "0.00",
            "-0.00",
            "1",
            "-1",
            "0.05",
            "-0.05",
            "100000.00",
            "123.456",
            "-0.000001",
            "18446744073709551615",
            "18446744073709551616",
            "-79228162514264337593543950335",
            "0.0000000000000000000000000001",
        ]
        .iter()
        .map(|t| d(t))
        .collect();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let m = (seed >> (seed % 40)) as i64 * if seed % 3 == 0 { -1 } else { 1 };
            cases.push(Decimal::new(m, (seed % 29) as u32));
        }
        for v in cases {
            let mut out = Vec::new();
            push_decimal(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    #[test]
    fn partial_runs_are_marked() {
        let tmp = tempfile::tempdir().unwrap();
        let (equity, fills, trades) = sample();
        for (status, name, reason) in [
            (RunStatus::Interrupted, "interrupted", Value::Null),
            (
                RunStatus::Failed {
                    reason: "ZeroDivisionError: division by zero".into(),
                },
                "failed",
                Value::from("ZeroDivisionError: division by zero"),
            ),
        ] {
            let info = info(status);
            let m = compute(info.initial_cash, &equity[..2], &trades, &fills);
            let dir = tmp.path().join(name);
            write_results(&dir, &info, &m, &equity[..2], &fills, &trades).unwrap();
            let j: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
                    .unwrap();
            assert_eq!(j["status"], name);
            assert_eq!(j["partial"], true);
            assert_eq!(j["reason"], reason);
            // Two ticks on two days: far too few daily returns, and a span too short for CAGR.
            assert_eq!(j["sharpe"], Value::Null);
            assert_eq!(j["cagr"], Value::Null);
            assert!(j["unavailable"]["sharpe"].is_string() && j["unavailable"]["cagr"].is_string());
        }
    }

    #[test]
    fn empty_run_writes_headers_and_nulls() {
        let tmp = tempfile::tempdir().unwrap();
        let info = info(RunStatus::Interrupted);
        let m = compute(info.initial_cash, &[], &[], &[]);
        let written = write_results(tmp.path(), &info, &m, &[], &[], &[]).unwrap();
        assert_eq!(written.len(), 7);
        assert_eq!(read_csv(&tmp.path().join("equity.csv")).len(), 1);
        assert_eq!(read_csv(&tmp.path().join("trades.csv")).len(), 1);
        let batches = read_parquet(&tmp.path().join("fills.parquet"));
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        let j: Value = serde_json::from_str(&metrics_json(&info, &m)).unwrap();
        for k in [
            "sharpe",
            "sortino",
            "calmar",
            "cagr",
            "win_rate",
            "profit_factor",
            "avg_trade_pnl",
            "start_time",
        ] {
            assert_eq!(j[k], Value::Null, "{k}");
        }
        assert_eq!(j["max_drawdown"], 0.0);
        assert_eq!(j["final_equity"], "100000.00");
        assert_eq!(j["total_return"], "0");
    }

    #[test]
    fn unwritable_folder_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let info = info(RunStatus::Complete);
        let m = compute(info.initial_cash, &[], &[], &[]);
        let err = write_results(&blocker.join("sub"), &info, &m, &[], &[], &[]).unwrap_err();
        assert!(matches!(err, MetricsError::Io { .. }));
        assert!(err.to_string().contains("file"), "{err}");
    }

    /// `cargo test --release -- --ignored --nocapture write_million`
    #[test]
    #[ignore]
    fn write_million_equity_points_timing() {
        let n = 1_000_000i64;
        let equity: Vec<EquityPoint> = (0..n)
            .map(|i| EquityPoint {
                time: T0 + i * 60_000_000_000,
                cash: Decimal::new(10_000_000 + (i * 7919) % 100_000, 2),
                equity: Decimal::new(100_000_000_000 + (i * 104_729) % 9_999_999, 6),
            })
            .collect();
        let info = info(RunStatus::Complete);
        let tmp = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        let m = compute(info.initial_cash, &equity, &[], &[]);
        let computed = start.elapsed();
        write_results(tmp.path(), &info, &m, &equity, &[], &[]).unwrap();
        let total = start.elapsed();
        let size = |f: &str| std::fs::metadata(tmp.path().join(f)).unwrap().len();
        let t = std::time::Instant::now();
        write_equity_csv(&tmp.path().join("e2.csv"), &equity).unwrap();
        let csv_time = t.elapsed();
        let t = std::time::Instant::now();
        columnar::write_equity(&tmp.path().join("e2.parquet"), &equity).unwrap();
        println!(
            "equity.csv alone {csv_time:?}, equity.parquet alone {:?}",
            t.elapsed()
        );
        println!(
            "1M equity points: compute {:?}, compute+write {:?} (equity.csv {} B, equity.parquet {} B)",
            computed,
            total,
            size("equity.csv"),
            size("equity.parquet")
        );
        let batches = read_parquet(&tmp.path().join("equity.parquet"));
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            n as usize
        );
        assert_eq!(
            read_csv(&tmp.path().join("equity.csv")).len(),
            n as usize + 1
        );
    }
}
