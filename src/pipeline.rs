//! The run pipeline shared by `run`, `test`, `live` and `optimize`: load and check the data,
//! build the engine's session, load the algorithm. The commands in `src/cli/` wire these to
//! their flags and outputs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use crate::config::RunSettings;
use crate::data::{self, BarSeries, LoadOptions};
use crate::engine::actions::CorporateAction;
use crate::engine::{
    BacktestOptions, BacktestOutcome, Session, SharedSession, Stop, run_backtest_into,
};
use crate::error::Error;
use crate::market::Market;
use crate::metrics::{EquityCurve, EquitySummary, FillLog, FillTotals, RunInfo, RunStatus};
use crate::model::time::NANOS_PER_MINUTE;
use crate::python::{self, LoadedAlgorithm, LogSink, PyStrategy};

/// Where the bundled synthetic sample lives, relative to the project root.
pub const SAMPLE_DIR: &str = "examples/data/sample";

/// The data of a run, loaded and validated once (a watch loop reuses it for every rerun).
pub struct Prepared {
    pub files: Vec<PathBuf>,
    pub series: Vec<BarSeries>,
    /// The catalog datasets read, with their checksums (`None` for files).
    pub datasets: Option<serde_json::Value>,
    /// Splits and dividends of the loaded symbols (from the catalog), by symbol name.
    pub actions: Vec<(String, CorporateAction)>,
    /// The market [`load_data`] built to check the series (with the `bar_interval_ns` it used):
    /// the first [`build_session`] takes it instead of building it again (2–5 ms for 1M bars).
    pub market: Mutex<Option<(Option<i64>, Market)>>,
}

impl Prepared {
    /// Loaded data without a market built yet.
    pub fn new(
        files: Vec<PathBuf>,
        series: Vec<BarSeries>,
        datasets: Option<serde_json::Value>,
        actions: Vec<(String, CorporateAction)>,
    ) -> Self {
        Prepared {
            files,
            series,
            datasets,
            actions,
            market: Mutex::new(None),
        }
    }

    /// The same data with the market [`load_data`] checked it with, for the first session.
    fn with_market(mut self, bar_interval_ns: Option<i64>, market: Market) -> Self {
        self.market = Mutex::new(Some((bar_interval_ns, market)));
        self
    }

    /// The market checked at load time, if it was built for these settings and not taken yet.
    fn take_market(&self, settings: &RunSettings) -> Option<Market> {
        let mut slot = self.market.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some((interval, market)) if interval == settings.bar_interval_ns => Some(market),
            _ => None,
        }
    }
}

pub fn load_data(settings: &RunSettings, root: Option<&Path>) -> Result<Prepared, Error> {
    if let Some(request) = &settings.catalog {
        if !settings.data.is_empty() {
            return Err(Error::usage_with_hint(
                "`--symbols` reads the data catalog, and `--data` reads files: give one of them",
                "import the files with `rustybt data import FILE --symbol X`, or drop `--symbols`",
            ));
        }
        let loaded = crate::catalog::load_for_run(
            &request
                .root
                .clone()
                .unwrap_or_else(crate::catalog::Catalog::default_root),
            &crate::catalog::RunRequest {
                symbols: &request.symbols,
                timeframe: request.timeframe.as_deref(),
                source: request.source.as_deref(),
                start_ns: settings.start_ns,
                end_ns: settings.end_ns,
                allow_bad_data: request.allow_bad_data,
            },
        )?;
        let mut market = build_market(settings, loaded.series.clone())?;
        let mut actions = Vec::new();
        for (symbol, time, kind, value) in loaded.events {
            let action = CorporateAction::parse(time, &kind, &value).map_err(|e| {
                Error::usage(format!("the catalog's {kind} event of {symbol}: {e}"))
            })?;
            actions.push((symbol, action));
        }
        let (series, actions, datasets) = match request.adjust {
            None => (loaded.series, actions, loaded.used),
            Some(mode) => {
                let adjusted = crate::engine::adjust::adjust(loaded.series, actions, mode)
                    .map_err(Error::usage)?;
                market = build_market(settings, adjusted.series.clone())?;
                errln!(
                    "note: --adjust {}: prices before each {} are scaled by it (past bars \
                     embed events announced later)",
                    mode.as_str(),
                    match mode {
                        crate::engine::adjust::Adjust::Split => "split",
                        crate::engine::adjust::Adjust::All => "split and dividend",
                    }
                );
                // metrics.json's `data` says each dataset was read adjusted.
                let mut used = loaded.used;
                for dataset in used.as_array_mut().into_iter().flatten() {
                    if let Some(object) = dataset.as_object_mut() {
                        object.insert("adjust".into(), mode.as_str().into());
                    }
                }
                (adjusted.series, adjusted.actions, used)
            }
        };
        return Ok(Prepared::new(loaded.files, series, Some(datasets), actions)
            .with_market(settings.bar_interval_ns, market));
    }
    let files = if settings.data.is_empty() {
        sample_files(root)?
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
        format: settings.format.clone(),
    };
    let mut series = Vec::new();
    for file in &files {
        series.extend(data::load(file, &options)?);
    }
    // Fail on an unusable market (or benchmark) now, not after the run.
    let market = build_market(settings, series.clone())?;
    settings
        .metrics
        .benchmark
        .check(&market.symbol_names())
        .map_err(|e| Error::usage_with_hint(e, "`--benchmark SYMBOL` or `metrics.benchmark`"))?;
    Ok(
        Prepared::new(files, series, None, Vec::new())
            .with_market(settings.bar_interval_ns, market),
    )
}

pub fn build_market(settings: &RunSettings, series: Vec<BarSeries>) -> Result<Market, Error> {
    Market::new(
        series,
        settings.bar_interval_ns.unwrap_or(NANOS_PER_MINUTE),
        settings.bar_interval_ns.is_some(),
    )
    .map_err(|e| Error::Market(e.to_string()))
}

/// The engine's session for `settings`: market, cash, calendar, and execution settings with
/// each loaded symbol's instrument rules.
pub fn build_session(settings: &RunSettings, prepared: &Prepared) -> Result<SharedSession, Error> {
    let market = match prepared.take_market(settings) {
        Some(market) => market,
        None => build_market(settings, prepared.series.clone())?,
    };
    warn_on_mixed_intervals(&market);
    let session = session_on(settings, market)?;
    install_actions(&session, &prepared.actions);
    Ok(session)
}

/// Gives a session the splits and dividends of its symbols (by name; others are ignored).
pub fn install_actions(session: &SharedSession, actions: &[(String, CorporateAction)]) {
    if actions.is_empty() {
        return;
    }
    let mut s = crate::engine::lock(session);
    let mut by_symbol = vec![Vec::new(); s.market.symbol_count()];
    for (name, action) in actions {
        if let Some(id) = s.market.symbol_id(name) {
            by_symbol[id.index()].push(action.clone());
        }
    }
    s.actions = crate::engine::actions::Actions::new(by_symbol);
}

/// The engine's session for `settings` on a market (loaded, or a live feed's).
pub fn session_on(settings: &RunSettings, market: Market) -> Result<SharedSession, Error> {
    let symbols = market.symbol_names();
    let mut execution = settings.execution.clone();
    execution.default_instrument =
        settings
            .instruments
            .get("default")
            .cloned()
            .unwrap_or_else(|| {
                // Without [instruments.default], a broker profile's initial margin applies.
                let mut instrument = crate::execution::Instrument::default();
                if let Some(profile) = &execution.profile {
                    instrument.margin = profile
                        .margin
                        .initial_long
                        .max(profile.margin.initial_short);
                }
                instrument
            });
    for name in settings.instruments.keys().filter(|n| *n != "default") {
        if market.symbol_id(name).is_none() {
            return Err(Error::usage(format!(
                "[instruments.{name}] names a symbol that is not loaded; symbols: {}",
                symbols.join(", ")
            )));
        }
    }
    execution.instruments = symbols
        .iter()
        .map(|name| {
            settings
                .instruments
                .get(name)
                .cloned()
                .unwrap_or_else(|| execution.default_instrument.clone())
        })
        .collect();
    let mut session = Session::new(market, settings.cash, settings.commission.clone())
        .with_calendar(settings.calendar);
    session.set_execution(execution);
    Ok(session.into_shared())
}

/// The algorithm of `settings`, loaded, and the sink its log lines go to (echoed unless quiet).
pub fn load_algorithm(
    py: Python<'_>,
    settings: &RunSettings,
) -> Result<(LoadedAlgorithm, Arc<LogSink>), Error> {
    let loaded = python::load_algorithm(
        py,
        &settings.algo,
        settings.class_name.as_deref(),
        &settings.params,
    )?;
    let sink = Arc::new(LogSink {
        echo: !settings.quiet,
        echo_level: settings.log_level,
        ..Default::default()
    });
    for warning in python::loader::hook_warnings(py, &loaded) {
        let line = format!("warning: {warning}");
        errln!("{line}");
        sink.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
    Ok((loaded, sink))
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
        errln!(
            "warning: symbols have different inferred bar durations ({}); \
             if they share one, set it with `--bar-interval`",
            listed.join(", ")
        );
    }
}

/// The metrics of a finished backtest or session on `session` (what `metrics.json` holds).
pub fn metrics_of(
    settings: &RunSettings,
    session: &Session,
    outcome: &crate::engine::BacktestOutcome,
    symbols: &[String],
) -> crate::metrics::Metrics {
    metrics_beside(settings, session, outcome, symbols, || ()).0
}

/// [`metrics_of`], with `meanwhile` run on this thread while the statistics over the equity
/// curve (a point per tick: the costly part) are computed on another.
pub fn metrics_beside<T>(
    settings: &RunSettings,
    session: &Session,
    outcome: &crate::engine::BacktestOutcome,
    symbols: &[String],
    meanwhile: impl FnOnce() -> T,
) -> (crate::metrics::Metrics, T) {
    let options = &settings.metrics;
    // A live session's feed may lack the benchmark symbol: no benchmark then, not an error.
    let benchmark = crate::metrics::BenchmarkPrices::from_market_daily(
        &session.market,
        &options.benchmark,
        |t| options.day_of(t),
    );
    let records = crate::metrics::Records {
        initial_cash: settings.cash,
        equity: &outcome.equity,
        trades: session.ledger.closed_trades(),
        fills: &outcome.fills,
        symbols,
        benchmark: benchmark.as_ref().ok(),
    };
    let (computed, other) = std::thread::scope(|scope| {
        let computed = scope.spawn(|| {
            let equity = outcome.equity.summary(settings.cash, options);
            crate::metrics::compute_from(&records, &equity, &outcome.fills.totals(), options)
        });
        let other = meanwhile();
        let computed = computed
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (computed, other)
    });
    let metrics = computed
        .with_unavailable_benchmark(benchmark.err())
        .with_costs(&session.costs, symbols)
        .with_orders(session.orders.all());
    (metrics, other)
}

/// Where a run's bars came from: what `metrics.json` says about its data.
pub struct RunShape {
    pub files: Vec<String>,
    pub symbols: Vec<String>,
    pub bar_interval_ns: i64,
}

impl RunShape {
    pub fn of(prepared: &Prepared, session: &Session) -> Self {
        RunShape {
            files: prepared
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            symbols: session.market.symbol_names(),
            bar_interval_ns: session.market.interval_ns(crate::model::SymbolId(0)),
        }
    }
}

/// What a finished backtest or session says about itself in `metrics.json` (`run`, status).
pub fn run_info(
    py: Python<'_>,
    settings: &RunSettings,
    loaded: &LoadedAlgorithm,
    outcome: &BacktestOutcome,
    shape: RunShape,
    wall_seconds: f64,
) -> RunInfo {
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
    RunInfo {
        status,
        algorithm: loaded.path.display().to_string(),
        class_name: loaded.class_name.clone(),
        parameters: loaded.parameters.clone(),
        data_files: shape.files,
        symbols: shape.symbols,
        initial_cash: settings.cash,
        bars_processed: outcome.bars,
        ticks_processed: outcome.ticks,
        wall_seconds,
        rustybt_version: env!("CARGO_PKG_VERSION").to_string(),
        python_version: python::python_version(py),
        bar_interval_ns: shape.bar_interval_ns,
        currency: settings.currency.clone(),
        data: settings.datasets_used.clone(),
    }
}

/// A backtest run to its end in this process, with nothing written and nothing drawn (what
/// an optimizer's trial is).
pub struct Simulated {
    pub session: SharedSession,
    pub outcome: BacktestOutcome,
    pub wall_seconds: f64,
}

/// What a simulated run keeps besides what its metrics are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every equity point, fill and order event, as `rustybt run` writes them.
    Everything,
    /// Only what the metrics read (an optimizer's trial): the equity curve's summary, not a
    /// point per tick, the fills' totals, and no order event once delivered.
    MetricsOnly,
}

pub fn simulate(
    py: Python<'_>,
    settings: &RunSettings,
    prepared: &Prepared,
    loaded: &LoadedAlgorithm,
    sink: Arc<LogSink>,
    keep: Keep,
) -> Result<Simulated, Error> {
    let session = build_session(settings, prepared)?;
    let mut outcome = BacktestOutcome::default();
    if keep == Keep::MetricsOnly {
        outcome.equity =
            EquityCurve::summarized(EquitySummary::new(settings.cash, &settings.metrics));
        outcome.fills = FillLog::summarized(FillTotals::default());
        crate::engine::lock(&session)
            .orders
            .forget_delivered_events();
    }
    let mut strategy = PyStrategy::new(py, loaded, session.clone(), sink)
        .map_err(|e| Error::Internal(format!("attaching the algorithm: {e}")))?;
    let started = std::time::Instant::now();
    let outcome = run_backtest_into(
        outcome,
        &session,
        &mut strategy,
        &mut |_| {},
        &BacktestOptions { pace: None },
    );
    Ok(Simulated {
        session,
        outcome,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The algorithm of `settings`, loaded with its parameters, printing nothing (an optimizer
/// loads it once per trial; the warnings were shown once).
pub fn load_algorithm_quiet(
    py: Python<'_>,
    settings: &RunSettings,
) -> Result<LoadedAlgorithm, Error> {
    python::load_algorithm(
        py,
        &settings.algo,
        settings.class_name.as_deref(),
        &settings.params,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::RunArgs;

    fn settings() -> RunSettings {
        let args = RunArgs {
            algo: vec![PathBuf::from("algorithms/sma_cross.py")],
            ..Default::default()
        };
        RunSettings::resolve(&args).unwrap()
    }

    #[test]
    fn the_market_checked_at_load_time_is_the_first_sessions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let settings = settings();
        let prepared = load_data(&settings, Some(root)).unwrap();
        let bars: usize = prepared.series.iter().map(BarSeries::len).sum();
        let first = build_session(&settings, &prepared).unwrap();
        assert!(
            prepared.market.lock().unwrap().is_none(),
            "taken by the first session"
        );
        // A rerun (`--watch`, an optimizer trial) builds its own, the same.
        let again = build_session(&settings, &prepared).unwrap();
        for session in [first, again] {
            let s = crate::engine::lock(&session);
            assert_eq!(s.market.total_bars() as usize, bars);
            assert_eq!(s.market.symbol_count(), prepared.series.len());
        }
    }

    #[test]
    fn a_market_checked_with_another_bar_interval_is_not_reused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prepared = load_data(&settings(), Some(root)).unwrap();
        let mut hourly = settings();
        hourly.bar_interval_ns = Some(3_600 * 1_000_000_000);
        assert!(prepared.take_market(&hourly).is_none());
        let session = build_session(&hourly, &prepared).unwrap();
        let s = crate::engine::lock(&session);
        assert_eq!(
            s.market.interval_ns(crate::model::SymbolId(0)),
            3_600 * 1_000_000_000
        );
    }
}
