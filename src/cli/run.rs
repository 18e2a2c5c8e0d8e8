//! `rustybt run`: load data, start Python, load the algorithm, backtest, write results.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use super::RunArgs;
use super::doctor::start_python;
use super::indicator_report;
use super::progress::Progress;
use crate::config::RunSettings;
use crate::engine::{BacktestOptions, IndicatorTiming, SharedSession, Stop, lock, run_backtest};
use crate::error::{Error, ExitCode, report};
use crate::metrics::{self, RunInfo};
use crate::model::format_timestamp;
use crate::pipeline::{self, Prepared, build_session, load_algorithm, load_data};
use crate::python::strategy::ReloadEvent;
use crate::python::{self, HookTiming, LoadedAlgorithm, LogSink, PyStrategy};
use crate::watch::SourceWatcher;

pub fn run(explicit_python: Option<&Path>, args: RunArgs) -> Result<ExitCode, Error> {
    if args.portfolio.is_some() || args.algo.len() > 1 {
        return super::portfolio::run(explicit_python, args);
    }
    let mut settings = RunSettings::resolve(&args)?;
    if !settings.algo.is_file() {
        return Err(Error::usage(format!(
            "algorithm file `{}` does not exist",
            settings.algo.display()
        )));
    }
    if settings.watch && settings.pace_ns.is_some() {
        return Err(Error::usage_with_hint(
            "`--watch` and `--pace` do not go together",
            "`--watch` reruns the whole backtest on a save; `--pace` reloads in place during one run",
        ));
    }
    let debug = python::debug::DebugOptions::from_args(&args)?;
    let root = python::project_root();
    let algo_dir = std::path::absolute(&settings.algo)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    // The algorithm is imported while the data loads (a debugger must attach first, so not
    // under `--debug`); its error, if any, is reported once the data proved usable.
    let preload = debug.is_none();
    let (prepared, choice, preloaded) = load_and_start(
        explicit_python,
        &mut settings,
        std::slice::from_ref(&algo_dir),
        root.as_deref(),
        !args.no_progress,
        |py, settings| preload.then(|| load_algorithm(py, settings)),
    )?;
    let preloaded = preloaded.flatten();
    if let Some(debug) = &debug {
        // Once per process: a `--watch` loop keeps the same debugger session across reruns.
        debug.start(&choice)?;
    }
    let folders = WatchFolders {
        algo_dir,
        indicators: root.as_ref().map(|r| r.join("indicators")),
        pylib: root.as_ref().map(|r| r.join("pylib")),
    };
    if settings.watch {
        if args.report {
            return Err(Error::usage_with_hint(
                "`--watch` and `--report` do not go together",
                "run `rustybt report RUN_DIR` on the folder of the run you want to see",
            ));
        }
        return watch_loop(&settings, &prepared, &folders, preloaded);
    }
    let outcome = run_once(&settings, &prepared, &folders, preloaded)?;
    if args.report
        && let Some(out_dir) = &outcome.out_dir
    {
        Python::attach(|py| super::report::after_run(py, out_dir))?;
    }
    Ok(outcome.exit)
}

/// Loads the run's data (fetching what the catalog misses first) and starts the interpreter
/// with `code_dirs` on its path, then runs `meanwhile` in it (`rustybt run` imports the
/// algorithm there). The interpreter starts and `meanwhile` runs while the data loads: they
/// are independent, and each takes a noticeable part of a short run. A data error is still
/// the one reported first, and `meanwhile`'s result is dropped with it.
pub(super) fn load_and_start<T>(
    explicit_python: Option<&Path>,
    settings: &mut RunSettings,
    code_dirs: &[PathBuf],
    root: Option<&Path>,
    progress: bool,
    meanwhile: impl FnOnce(Python<'_>, &RunSettings) -> T,
) -> Result<(Prepared, python::InterpreterChoice, Option<T>), Error> {
    let (prepared, started, done) = if super::data::run_fetches(settings) {
        // Fetching the bars the catalog misses needs Python (ccxt, yfinance) before the load.
        let started = start_python(explicit_python, code_dirs);
        if started.is_ok() {
            super::data::fetch_for_run(settings, progress)?;
        }
        let prepared = load_data(settings, root);
        let done = (prepared.is_ok() && started.is_ok())
            .then(|| Python::attach(|py| meanwhile(py, settings)));
        (prepared, started, done)
    } else {
        let shared = &*settings;
        std::thread::scope(|scope| {
            let loading = scope.spawn(|| load_data(shared, root));
            let started = start_python(explicit_python, code_dirs);
            let done = started
                .is_ok()
                .then(|| Python::attach(|py| meanwhile(py, shared)));
            let loaded = loading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (loaded, started, done)
        })
    };
    let prepared = prepared?;
    settings.datasets_used = prepared.datasets.clone();
    let (choice, _) = started?;
    Ok((prepared, choice, done))
}

/// Where the user's code lives, for watching and reloading.
pub(super) struct WatchFolders {
    algo_dir: PathBuf,
    indicators: Option<PathBuf>,
    pylib: Option<PathBuf>,
}

impl WatchFolders {
    /// The algorithm's folder, `indicators/`, and the folders of every local module the
    /// algorithm imported (not the standard library, site-packages or pylib).
    fn resolve(&self, py: Python<'_>) -> Vec<PathBuf> {
        let mut folders = vec![self.algo_dir.clone()];
        folders.extend(self.indicators.iter().filter(|p| p.is_dir()).cloned());
        let exclude: Vec<String> = self.pylib.iter().map(|p| p.display().to_string()).collect();
        if let Ok(found) = py
            .import("rustybt_api._host")
            .and_then(|host| host.call_method1("user_module_dirs", (exclude,)))
            .and_then(|dirs| dirs.extract::<Vec<PathBuf>>())
        {
            for dir in found {
                if !folders.contains(&dir) {
                    folders.push(dir);
                }
            }
        }
        folders
    }
}

/// What one backtest produced, for the watch loop's comparison.
struct RunReport {
    exit: ExitCode,
    metrics: Option<metrics::Metrics>,
    /// The results folder written (for `--report`).
    out_dir: Option<PathBuf>,
}

/// A backtest that ran to its end (complete, failed or interrupted), its results written.
pub(super) struct Finished {
    pub stop: Option<Stop>,
    pub info: RunInfo,
    pub metrics: metrics::Metrics,
    pub session: SharedSession,
    pub out_dir: PathBuf,
    pub hook_timings: Vec<HookTiming>,
    pub indicator_timings: Vec<IndicatorTiming>,
    pub wall_seconds: f64,
}

/// Backtests `loaded` on `prepared` and writes the results folder. The caller reports.
pub(super) fn backtest(
    py: Python<'_>,
    settings: &RunSettings,
    prepared: &Prepared,
    loaded: &LoadedAlgorithm,
    sink: Arc<LogSink>,
    reload: Option<&WatchFolders>,
) -> Result<Finished, Error> {
    let session = build_session(settings, prepared)?;
    let (total_bars, symbols, bar_interval_ns) = {
        let s = lock(&session);
        (
            s.market.total_bars(),
            s.market.symbol_names(),
            s.market.interval_ns(crate::model::SymbolId(0)),
        )
    };
    let mut strategy = PyStrategy::new(py, loaded, session.clone(), sink.clone())
        .map_err(|e| Error::Internal(format!("attaching the algorithm: {e}")))?;
    let pace = settings
        .pace_ns
        .map(|ns| std::time::Duration::from_nanos(ns as u64));
    if let (Some(_), Some(folders)) = (pace, reload) {
        let watcher = SourceWatcher::new(&folders.resolve(py)).map_err(Error::usage)?;
        strategy.enable_reload(
            watcher,
            loaded.path.clone(),
            loaded.class_name.clone(),
            settings.params.clone(),
        );
    }

    // The equity curve (a row per tick) is written on the other core while the loop runs.
    let out_dir = settings.out.clone().unwrap_or_else(default_out_dir);
    let mut equity_stream =
        metrics::EquityStream::start(&out_dir).map_err(|e| results_error(&out_dir, e))?;
    let started = Instant::now();
    let mut progress = Progress::new(total_bars, settings.progress);
    let outcome = run_backtest(
        &session,
        &mut strategy,
        &mut |so_far| {
            progress.update(so_far.bars);
            equity_stream.offer(&so_far.equity);
        },
        &BacktestOptions { pace },
    );
    progress.finish();
    let wall_seconds = started.elapsed().as_secs_f64();

    let files: Vec<String> = prepared
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let run = RunRecord {
        settings,
        loaded,
        session,
        sink: &sink,
        files,
        symbols,
        bar_interval_ns,
        wall_seconds,
        paced: pace.is_some(),
        out_dir,
        equity_stream: Some(equity_stream),
    };
    write_results(py, run, outcome, &strategy)
}

fn results_error(out_dir: &Path, e: metrics::MetricsError) -> Error {
    Error::Io {
        context: "cannot write results to",
        path: out_dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// What a finished run writes about itself, besides the engine's outcome.
pub(super) struct RunRecord<'a> {
    pub settings: &'a RunSettings,
    pub loaded: &'a LoadedAlgorithm,
    pub session: SharedSession,
    pub sink: &'a LogSink,
    pub files: Vec<String>,
    pub symbols: Vec<String>,
    pub bar_interval_ns: i64,
    pub wall_seconds: f64,
    /// Reloads happen in paced and live runs: write `reloads.csv`.
    pub paced: bool,
    pub out_dir: PathBuf,
    /// The equity files, when they were written while the run went.
    pub equity_stream: Option<metrics::EquityStream>,
}

/// Writes the results folder of a run (backtest or live session) and returns its summary.
pub(super) fn write_results(
    py: Python<'_>,
    run: RunRecord<'_>,
    outcome: crate::engine::BacktestOutcome,
    strategy: &PyStrategy,
) -> Result<Finished, Error> {
    let RunRecord {
        settings,
        loaded,
        session,
        sink,
        files,
        symbols,
        bar_interval_ns,
        wall_seconds,
        paced,
        out_dir,
        equity_stream,
    } = run;
    let info = pipeline::run_info(
        py,
        settings,
        loaded,
        &outcome,
        pipeline::RunShape {
            files,
            symbols,
            bar_interval_ns,
        },
        wall_seconds,
    );
    // log.txt first: metrics.json is written last, so its presence means a complete folder.
    write_log(&out_dir.join("log.txt"), sink)?;
    if paced {
        write_reloads(&out_dir.join("reloads.csv"), strategy.reload_events())?;
    }
    let mut indicator_timings = lock(&session).indicators.timings();
    indicator_timings.extend(strategy.indicators.timings());
    if !indicator_timings.is_empty() {
        indicator_report::write(
            &out_dir.join("indicators.csv"),
            &indicator_timings,
            wall_seconds,
        )?;
    }
    let results_error = |e: metrics::MetricsError| results_error(&out_dir, e);
    // The equity files (a row per tick: the largest) are finished on other threads while this
    // one writes the orders and computes the metrics; metrics.json still comes last.
    let computed = std::thread::scope(|scope| -> Result<_, Error> {
        let equity = scope.spawn(|| match equity_stream {
            Some(stream) => stream.finish(&outcome.equity),
            None => metrics::write_equity(&out_dir, &outcome.equity),
        });
        let s = lock(&session);
        // The statistics on a third thread, while this one writes the order and trade files.
        let (computed, written) =
            pipeline::metrics_beside(settings, &s, &outcome, &info.symbols, || {
                write_orders(&out_dir.join("orders.csv"), &s)?;
                metrics::write_costs_csv(
                    &out_dir.join("costs.csv"),
                    s.costs.records(),
                    &info.symbols,
                )
                .map_err(|e| Error::Internal(format!("writing costs.csv: {e}")))?;
                let trades = s.ledger.closed_trades();
                metrics::write_records(&out_dir, &outcome.fills, trades, &info.symbols)
                    .map_err(results_error)?;
                metrics::write_record_files(&out_dir, &s.records).map_err(results_error)?;
                if !s.actions.applied.is_empty() {
                    metrics::write_corporate_actions(
                        &out_dir.join("corporate_actions.csv"),
                        &s.actions.applied,
                        &info.symbols,
                    )
                    .map_err(results_error)?;
                }
                Ok::<(), Error>(())
            });
        written?;
        equity
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(results_error)?;
        metrics::write_metrics(&out_dir, &info, &computed).map_err(results_error)?;
        Ok(computed)
    })?;
    Ok(Finished {
        stop: outcome.stop,
        info,
        metrics: computed,
        session,
        out_dir,
        hook_timings: strategy.timings.to_vec(),
        indicator_timings,
        wall_seconds,
    })
}

/// The algorithm loaded (or not) while the data loaded, to be used by the first run.
type Preloaded = Result<(LoadedAlgorithm, Arc<LogSink>), Error>;

fn run_once(
    settings: &RunSettings,
    prepared: &Prepared,
    folders: &WatchFolders,
    preloaded: Option<Preloaded>,
) -> Result<RunReport, Error> {
    Python::attach(|py| -> Result<RunReport, Error> {
        let (loaded, sink) = match preloaded {
            Some(loaded) => loaded?,
            None => load_algorithm(py, settings)?,
        };
        let finished = backtest(py, settings, prepared, &loaded, sink, Some(folders))?;
        let out_dir = &finished.out_dir;

        outln!(
            "{}",
            metrics::summary_table(&finished.info, &finished.metrics)
        );
        for timing in finished.hook_timings.iter().filter(|t| t.calls > 0) {
            errln!(
                "{:<10} {:>10} calls  {:>10.3} s  {:>9.2} µs/call",
                timing.name,
                timing.calls,
                timing.total_ns as f64 / 1e9,
                timing.total_ns as f64 / timing.calls as f64 / 1e3
            );
        }
        indicator_report::print(&finished.indicator_timings, finished.wall_seconds);
        let bars = finished.info.bars_processed;
        errln!(
            "{} bars in {:.3} s ({:.0} bars/s); results in {}",
            bars,
            finished.wall_seconds,
            bars as f64 / finished.wall_seconds.max(1e-9),
            out_dir.display()
        );
        let exit = exit_code_of(finished.stop, out_dir);
        Ok(RunReport {
            exit,
            metrics: Some(finished.metrics),
            out_dir: Some(finished.out_dir.clone()),
        })
    })
}

/// The exit code of a run that ended with `stop`, reporting a failure (the results, partial
/// or not, are in `out_dir`).
pub(super) fn exit_code_of(stop: Option<Stop>, out_dir: &Path) -> ExitCode {
    match stop {
        None => ExitCode::Success,
        Some(Stop::Interrupted) => {
            errln!(
                "interrupted: partial results written to {}",
                out_dir.display()
            );
            ExitCode::Interrupted
        }
        Some(Stop::Failed(e)) => {
            report(&Error::Algorithm(e));
            errln!("partial results written to {}", out_dir.display());
            ExitCode::Algorithm
        }
        Some(Stop::Engine(message)) => {
            report(&Error::Internal(message));
            errln!("partial results written to {}", out_dir.display());
            ExitCode::Internal
        }
    }
}

/// Reruns the backtest after every saved change until Ctrl-C, printing what changed.
fn watch_loop(
    settings: &RunSettings,
    prepared: &Prepared,
    folders: &WatchFolders,
    mut preloaded: Option<Preloaded>,
) -> Result<ExitCode, Error> {
    let mut watched = Python::attach(|py| folders.resolve(py));
    let mut watcher = SourceWatcher::new(&watched).map_err(Error::usage)?;
    let mut previous: Option<metrics::Metrics> = None;
    loop {
        match run_once(settings, prepared, folders, preloaded.take()) {
            Ok(report) => {
                if report.exit == ExitCode::Interrupted {
                    return Ok(ExitCode::Interrupted);
                }
                // Only complete runs are compared and become the baseline.
                if report.exit == ExitCode::Success {
                    if let (Some(before), Some(after)) = (&previous, &report.metrics) {
                        errln!("{}", compare(before, after));
                    }
                    previous = report.metrics;
                } else {
                    errln!("the run did not complete; nothing to compare");
                }
            }
            Err(Error::Interrupted) => return Ok(ExitCode::Interrupted),
            // A save that does not load shows its error; the loop keeps watching.
            Err(error) => report(&error),
        }
        let now_watched = Python::attach(|py| folders.resolve(py));
        let mut pending = Vec::new();
        if now_watched != watched {
            // Saves made during the run are queued in the old watcher: keep them.
            pending = watcher.poll();
            watcher = SourceWatcher::new(&now_watched).map_err(Error::usage)?;
            watched = now_watched;
        }
        let shown: Vec<String> = watched.iter().map(|f| f.display().to_string()).collect();
        errln!("watching {} for changes (Ctrl-C to stop)", shown.join(", "));
        loop {
            let changed = if pending.is_empty() {
                watcher.wait(std::time::Duration::from_millis(200))
            } else {
                std::mem::take(&mut pending)
            };
            if !changed.is_empty() {
                let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                errln!("changed: {}; running again", names.join(", "));
                break;
            }
            if Python::attach(|py| py.check_signals()).is_err() {
                errln!("stopped watching");
                return Ok(ExitCode::Success);
            }
        }
    }
}

/// The previous and the new run side by side: return, drawdown, trades, equity.
fn compare(before: &metrics::Metrics, after: &metrics::Metrics) -> String {
    let percent = |d: rust_decimal::Decimal| {
        use rust_decimal::prelude::ToPrimitive;
        d.to_f64().unwrap_or(f64::NAN) * 100.0
    };
    let (r0, r1) = (percent(before.total_return), percent(after.total_return));
    let (d0, d1) = (before.max_drawdown * 100.0, after.max_drawdown * 100.0);
    let (t0, t1) = (before.num_trades as i64, after.num_trades as i64);
    let mut lines = vec![format!(
        "{:<14} {:>14} {:>14} {:>14}",
        "change", "previous", "now", "difference"
    )];
    lines.push(format!(
        "{:<14} {:>13.2}% {:>13.2}% {:>+11.2} pp",
        "total return",
        r0,
        r1,
        r1 - r0
    ));
    lines.push(format!(
        "{:<14} {:>13.2}% {:>13.2}% {:>+11.2} pp",
        "max drawdown",
        d0,
        d1,
        d1 - d0
    ));
    lines.push(format!(
        "{:<14} {:>14} {:>14} {:>+14}",
        "trades",
        t0,
        t1,
        t1 - t0
    ));
    let difference = after.final_equity - before.final_equity;
    let signed = if difference.is_sign_negative() {
        difference.to_string()
    } else {
        format!("+{difference}")
    };
    lines.push(format!(
        "{:<14} {:>14} {:>14} {:>14}",
        "final equity",
        before.final_equity.to_string(),
        after.final_equity.to_string(),
        signed
    ));
    lines.join("\n")
}

fn write_reloads(path: &Path, events: &[ReloadEvent]) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error)?;
    }
    let mut writer =
        csv::Writer::from_path(path).map_err(|e| io_error(std::io::Error::other(e)))?;
    let mut write = || -> Result<(), csv::Error> {
        writer.write_record([
            "wall_time",
            "sim_time",
            "status",
            "millis",
            "files",
            "message",
        ])?;
        for event in events {
            let wall_ns = event
                .wall_time
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            writer.write_record([
                format_timestamp(wall_ns),
                format_timestamp(event.sim_time),
                if event.ok { "ok" } else { "failed" }.to_string(),
                format!("{:.1}", event.millis),
                event.files.join(";"),
                event.message.clone(),
            ])?;
        }
        writer.flush()?;
        Ok(())
    };
    write().map_err(|e| io_error(std::io::Error::other(e)))
}

/// `orders.csv`: every order state change of the run, one row each.
fn write_orders(path: &Path, session: &crate::engine::Session) -> Result<(), Error> {
    let io_error = |e: csv::Error| Error::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut writer = csv::Writer::from_path(path).map_err(io_error)?;
    writer
        .write_record([
            "time",
            "order_id",
            "symbol",
            "side",
            "type",
            "quantity",
            "limit",
            "stop",
            "tif",
            "status",
            "fill_quantity",
            "fill_price",
            "filled_quantity",
            "reason",
        ])
        .map_err(io_error)?;
    // One row per order event (over 100,000 in a busy run): the texts go into reused buffers.
    let mut cells: [String; 8] = Default::default();
    let set = |buf: &mut String, v: Option<&dyn std::fmt::Display>| {
        use std::fmt::Write as _;
        buf.clear();
        if let Some(v) = v {
            let _ = write!(buf, "{v}");
        }
    };
    let mut filled = std::collections::HashMap::new();
    for event in session.orders.history() {
        let Some(order) = session.orders.get(event.order_id) else {
            continue;
        };
        let so_far = filled
            .entry(event.order_id)
            .or_insert(rust_decimal::Decimal::ZERO);
        *so_far += event.fill_quantity.unwrap_or_default();
        let [
            id,
            quantity,
            limit,
            stop,
            fill_quantity,
            fill_price,
            total,
            time,
        ] = &mut cells;
        set(id, Some(&event.order_id.0));
        set(quantity, Some(&order.quantity));
        set(limit, order.kind.limit().as_ref().map(|d| d as _));
        set(stop, order.kind.stop().as_ref().map(|d| d as _));
        set(fill_quantity, event.fill_quantity.as_ref().map(|d| d as _));
        set(fill_price, event.fill_price.as_ref().map(|d| d as _));
        set(total, Some(&*so_far));
        *time = format_timestamp(event.time);
        writer
            .write_record([
                time.as_str(),
                id,
                session.market.symbol_name(event.symbol),
                order.side.as_str(),
                order.kind.as_str(),
                quantity,
                limit,
                stop,
                order.tif.as_str(),
                event.status.as_str(),
                fill_quantity,
                fill_price,
                total,
                event.reason.as_deref().unwrap_or_default(),
            ])
            .map_err(io_error)?;
    }
    writer.flush().map_err(|e| io_error(e.into()))
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

/// `runs/<YYYYMMDD-HHMMSS>` in UTC, with a suffix if that folder already exists.
pub(super) fn default_out_dir() -> PathBuf {
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
