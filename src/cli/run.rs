//! `rustybt run`: load data, start Python, load the algorithm, backtest, write results.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use super::RunArgs;
use super::doctor::start_python;
use super::progress::Progress;
use crate::config::RunSettings;
use crate::data::{self, LoadOptions};
use crate::engine::{Session, Stop, lock, run_backtest};
use crate::error::{Error, ExitCode, report};
use crate::market::Market;
use crate::metrics::{self, RunInfo, RunStatus};
use crate::model::time::NANOS_PER_MINUTE;
use crate::python::{self, LogSink, PyStrategy};

/// Where the bundled synthetic sample lives, relative to the project root.
pub const SAMPLE_DIR: &str = "examples/data/sample";

pub fn run(explicit_python: Option<&Path>, args: RunArgs) -> Result<ExitCode, Error> {
    let settings = RunSettings::resolve(&args)?;
    if !settings.algo.is_file() {
        return Err(Error::usage(format!(
            "algorithm file `{}` does not exist",
            settings.algo.display()
        )));
    }

    let root = python::project_root();
    let files = if settings.data.is_empty() {
        sample_files(root.as_deref())?
    } else {
        settings.data.clone()
    };
    if settings.symbol.is_some() && files.len() > 1 {
        return Err(Error::usage_with_hint(
            "`--symbol` names the symbol of one data file, but several were given",
            "give each file its symbol in its name (SPY.csv) or in a `symbol` column",
        ));
    }
    let options = LoadOptions {
        symbol: settings.symbol.clone(),
        start_ns: settings.start_ns,
        end_ns: settings.end_ns,
    };
    let mut series = Vec::new();
    for file in &files {
        series.extend(data::load(file, &options)?);
    }
    let market = Market::new(
        series,
        settings.bar_interval_ns.unwrap_or(NANOS_PER_MINUTE),
        settings.bar_interval_ns.is_some(),
    )
    .map_err(|e| Error::Market(e.to_string()))?;
    warn_on_mixed_intervals(&market);
    let total_bars = market.total_bars();
    let symbols = market.symbol_names();
    let bar_interval_ns = market.interval_ns(crate::model::SymbolId(0));
    let session = Session::new(market, settings.cash, settings.commission.clone()).into_shared();

    let algo_dir = std::path::absolute(&settings.algo)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    start_python(explicit_python, &[algo_dir])?;

    Python::attach(|py| -> Result<ExitCode, Error> {
        let loaded = python::load_algorithm(
            py,
            &settings.algo,
            settings.class_name.as_deref(),
            &settings.params,
        )?;
        let sink = Arc::new(LogSink {
            echo: !settings.quiet,
            ..Default::default()
        });
        let mut strategy = PyStrategy::new(py, &loaded, session.clone(), sink.clone())
            .map_err(|e| Error::Internal(format!("attaching the algorithm: {e}")))?;

        let started = Instant::now();
        let mut progress = Progress::new(total_bars, settings.progress);
        let outcome = run_backtest(&session, &mut strategy, &mut |bars| progress.update(bars));
        progress.finish();
        let wall_seconds = started.elapsed().as_secs_f64();

        let status = match &outcome.stop {
            None => RunStatus::Complete,
            Some(Stop::Interrupted) => RunStatus::Interrupted,
            Some(Stop::Failed(e)) => RunStatus::Failed {
                reason: if e.traceback.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}\n{}", e.traceback.trim_end())
                },
            },
            Some(Stop::Engine(message)) => RunStatus::Failed {
                reason: message.clone(),
            },
        };
        let info = RunInfo {
            status,
            algorithm: settings.algo.display().to_string(),
            class_name: loaded.class_name.clone(),
            parameters: loaded.parameters.clone(),
            data_files: files.iter().map(|f| f.display().to_string()).collect(),
            symbols,
            initial_cash: settings.cash,
            bars_processed: outcome.bars,
            ticks_processed: outcome.ticks,
            wall_seconds,
            rustybt_version: env!("CARGO_PKG_VERSION").to_string(),
            python_version: python::python_version(py),
            bar_interval_ns,
        };
        // log.txt first: metrics.json is written last, so its presence means a complete folder.
        let out_dir = settings.out.clone().unwrap_or_else(default_out_dir);
        write_log(&out_dir.join("log.txt"), &sink)?;
        let s = lock(&session);
        let trades = s.ledger.closed_trades();
        let computed = metrics::compute(settings.cash, &outcome.equity, trades, &outcome.fills);
        metrics::write_results(
            &out_dir,
            &info,
            &computed,
            &outcome.equity,
            &outcome.fills,
            trades,
        )
        .map_err(|e| Error::Io {
            context: "cannot write results to",
            path: out_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        drop(s);

        // stdout may be a closed pipe (`| head`): the results are on disk already.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            metrics::summary_table(&info, &computed)
        );
        for timing in strategy.timings.iter().filter(|t| t.calls > 0) {
            eprintln!(
                "{:<10} {:>10} calls  {:>10.3} s  {:>9.2} µs/call",
                timing.name,
                timing.calls,
                timing.total_ns as f64 / 1e9,
                timing.total_ns as f64 / timing.calls as f64 / 1e3
            );
        }
        eprintln!(
            "{} bars in {:.3} s ({:.0} bars/s); results in {}",
            outcome.bars,
            wall_seconds,
            outcome.bars as f64 / wall_seconds.max(1e-9),
            out_dir.display()
        );
        Ok(match outcome.stop {
            None => ExitCode::Success,
            Some(Stop::Interrupted) => {
                eprintln!(
                    "interrupted: partial results written to {}",
                    out_dir.display()
                );
                ExitCode::Interrupted
            }
            Some(Stop::Failed(e)) => {
                report(&Error::Algorithm(e));
                eprintln!("partial results written to {}", out_dir.display());
                ExitCode::Algorithm
            }
            Some(Stop::Engine(message)) => {
                report(&Error::Internal(message));
                eprintln!("partial results written to {}", out_dir.display());
                ExitCode::Internal
            }
        })
    })
}

fn write_log(path: &Path, sink: &LogSink) -> Result<(), Error> {
    let lines = sink.lines.lock().unwrap_or_else(|p| p.into_inner());
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: "cannot create the results folder",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| Error::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

fn sample_files(root: Option<&Path>) -> Result<Vec<PathBuf>, Error> {
    let dir = root
        .map(|r| r.join(SAMPLE_DIR))
        .ok_or_else(|| Error::usage("cannot find the bundled sample data"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|source| Error::Io {
            context: "cannot read the sample data folder",
            path: dir.clone(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::usage_with_hint(
            format!("no sample data in `{}`", dir.display()),
            "regenerate it with `python examples/make_sample_data.py`",
        ));
    }
    Ok(files)
}

/// `runs/<YYYYMMDD-HHMMSS>` in UTC, with a suffix if that folder already exists.
fn default_out_dir() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let stamp = chrono::DateTime::from_timestamp(now, 0)
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| "run".into());
    let base = PathBuf::from("runs").join(&stamp);
    let mut candidate = base.clone();
    let mut n = 2;
    while candidate.exists() {
        candidate = PathBuf::from("runs").join(format!("{stamp}-{n}"));
        n += 1;
    }
    candidate
}

/// Each symbol's bar duration is inferred on its own (the safe side: a sparse symbol's bars
/// become visible late, never early). Different durations usually mean a symbol with few bars.
fn warn_on_mixed_intervals(market: &Market) {
    let intervals: Vec<(String, i64)> = (0..market.symbol_count())
        .map(|i| {
            let id = crate::model::SymbolId(i as u32);
            (market.symbol_name(id).to_string(), market.interval_ns(id))
        })
        .collect();
    if intervals.windows(2).any(|w| w[0].1 != w[1].1) {
        let listed: Vec<String> = intervals
            .iter()
            .map(|(name, ns)| format!("{name} {}s", ns / 1_000_000_000))
            .collect();
        eprintln!(
            "warning: symbols have different inferred bar durations ({}); \
             if they share one, set it with `--bar-interval`",
            listed.join(", ")
        );
    }
}
