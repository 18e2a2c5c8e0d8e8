//! `rustybt run --portfolio FILE` (or `--algo a.py --algo b.py`): wires the portfolio file,
//! the data, the algorithms and the allocator to `portfolio::run_book`, then writes each
//! strategy's results folder and the account's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use rust_decimal::Decimal;

use super::RunArgs;
use super::progress::Progress;
use super::run::{RunRecord, default_out_dir, exit_code_of, load_and_start, write_results};
use crate::config::RunSettings;
use crate::engine::{BacktestOutcome, Stop, lock};
use crate::error::{Error, ExitCode};
use crate::metrics::{self, Labels, RunInfo, RunStatus};
use crate::model::SymbolId;
use crate::pipeline::{build_market, session_on};
use crate::portfolio::book::stop_reason;
use crate::portfolio::results::{self, StrategyReport};
use crate::portfolio::{
    BookRules, Member, PortfolioSpec, StrategySpec, initial_capitals, run_book,
};
use crate::python::{self, LoadedAlgorithm, LogSink, PyStrategy};

pub fn run(explicit_python: Option<&Path>, args: RunArgs) -> Result<ExitCode, Error> {
    refuse_single_run_flags(&args)?;
    let spec = read_spec(args.portfolio.as_deref(), &args.algo)?;
    let mut run_args = args.clone();
    run_args.algo = vec![spec.strategies[0].algo.clone()];
    let mut settings = RunSettings::resolve(&run_args)?;
    // The portfolio file's cash over the run config's; the `--cash` flag over both.
    if args.cash.is_none()
        && let Some(cash) = spec.cash
    {
        settings.cash = cash;
    }
    let (code_dirs, portfolio_dir) = code_dirs(&spec);
    let root = python::project_root();
    let (prepared, _, _) = load_and_start(
        explicit_python,
        &mut settings,
        &code_dirs,
        root.as_deref(),
        !args.no_progress,
        |_, _| (),
    )?;
    let mut market = build_market(&settings, prepared.series.clone())?;
    let names = market.symbol_names();
    let weights: Vec<Decimal> = spec.strategies.iter().map(|s| s.weight).collect();
    let capitals = initial_capitals(settings.cash, &weights, settings.currency.decimals);
    let out_dir = settings.out.clone().unwrap_or_else(default_out_dir);

    Python::attach(|py| -> Result<ExitCode, Error> {
        let sink = Arc::new(LogSink {
            echo: !settings.quiet,
            echo_level: settings.log_level,
            ..Default::default()
        });
        let Book {
            mut members,
            parts,
            cross,
        } = build_book(
            py,
            &spec,
            &settings,
            &names,
            &capitals,
            &sink,
            &mut |own, universe| {
                let series = prepared
                    .series
                    .iter()
                    .filter(|b| universe.contains(&b.symbol))
                    .cloned()
                    .collect();
                let session = session_on(own, build_market(own, series)?)?;
                crate::pipeline::install_actions(&session, &prepared.actions);
                Ok(session)
            },
        )?;
        let mut rules = BookRules {
            spec: &spec,
            allocator: allocator_of(py, &spec, &portfolio_dir)?,
            money_dp: settings.currency.decimals,
            cross_section: Some(cross),
            added: Vec::new(),
        };
        let started = Instant::now();
        let mut progress = Progress::new(market.total_bars(), settings.progress);
        let book = run_book(&mut market, &mut members, &mut rules, &mut |bars| {
            progress.update(bars)
        });
        progress.finish();
        let wall_seconds = started.elapsed().as_secs_f64();

        let files: Vec<String> = prepared
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        write_book_results(
            py,
            BookRun {
                spec: &spec,
                settings: &settings,
                parts: &parts,
                files,
                out_dir: out_dir.clone(),
                wall_seconds,
                paced: false,
                sink: &sink,
                names: &names,
                market: &market,
            },
            &mut members,
            &book,
        )?;
        errln!(
            "{} bars in {:.3} s ({:.0} bars/s); results in {}",
            book.bars,
            wall_seconds,
            book.bars as f64 / wall_seconds.max(1e-9),
            out_dir.display()
        );
        Ok(exit_code_of(book.stop, &out_dir))
    })
}

fn refuse_single_run_flags(args: &RunArgs) -> Result<(), Error> {
    let flags = [
        (args.watch, "--watch"),
        (args.pace.is_some(), "--pace"),
        (args.debug, "--debug"),
        (args.class_name.is_some(), "--class"),
        (!args.params.is_empty(), "--param"),
        (args.report, "--report"),
    ];
    if let Some((_, flag)) = flags.iter().find(|(set, _)| *set) {
        return Err(Error::usage_with_hint(
            format!("`{flag}` is not available for a portfolio run"),
            "give each strategy's class and parameters in the portfolio file \
             (`class = \"...\"`, `params = { ... }`); `rustybt report DIR` draws the results",
        ));
    }
    Ok(())
}

/// The strategy's universe: its `symbols`, each of which must be loaded, or every symbol.
fn universe(id: &str, symbols: Option<&[String]>, loaded: &[String]) -> Result<Vec<String>, Error> {
    let Some(symbols) = symbols else {
        return Ok(loaded.to_vec());
    };
    if symbols.is_empty() {
        return Err(Error::usage(format!("strategy `{id}`: `symbols` is empty")));
    }
    for s in symbols {
        if !loaded.contains(s) {
            return Err(Error::usage_with_hint(
                format!("strategy `{id}`: symbol `{s}` is not in the run's data"),
                format!("loaded symbols: {}", loaded.join(", ")),
            ));
        }
    }
    // In the data's order, so a strategy's symbol ids match a plain run on the same files.
    Ok(loaded
        .iter()
        .filter(|n| symbols.contains(n))
        .cloned()
        .collect())
}

/// The lines of strategy `id` in the shared log (`TIME LEVEL id: text`).
fn lines_of(sink: &LogSink, id: &str) -> Vec<String> {
    let tag = format!("{id}:");
    sink.lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|line| line.split_whitespace().nth(2) == Some(tag.as_str()))
        .cloned()
        .collect()
}

fn log_text(sink: &LogSink) -> String {
    let lines = sink.lines.lock().unwrap_or_else(|p| p.into_inner());
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// One line per strategy under the account's summary.
fn strategy_table(reports: &[StrategyReport<'_>], currency: &crate::model::Currency) -> String {
    let mut out = format!(
        "{:<16} {:>7} {:>15} {:>15} {:>9} {:>7} {:>8} {:>7}  {}\n",
        "Strategy", "weight", "capital", "equity", "return", "sharpe", "max dd", "trades", "status"
    );
    for r in reports {
        let m = serde_json::to_value(r.metrics).unwrap_or_default();
        // Ratios are numbers, exact ones (returns) decimal strings; null when unavailable.
        let number = |key: &str| match m.get(key) {
            Some(serde_json::Value::String(text)) => text.parse::<f64>().ok(),
            Some(value) => value.as_f64(),
            None => None,
        };
        let percent =
            |key: &str| number(key).map_or("n/a".into(), |v| format!("{:.2}%", v * 100.0));
        out.push_str(&format!(
            "{:<16} {:>7} {:>15} {:>15} {:>9} {:>7} {:>8} {:>7}  {}\n",
            r.id,
            r.weight.round_dp(4).normalize(),
            currency.format(r.initial_capital),
            currency.format(r.final_equity),
            percent("total_return"),
            number("sharpe").map_or("n/a".into(), |v| format!("{v:.2}")),
            percent("max_drawdown"),
            number("num_trades").map_or("-".into(), |v| format!("{v:.0}")),
            if r.stopped.is_some() {
                "stopped"
            } else {
                "complete"
            },
        ));
    }
    out.trim_end().to_string()
}

/// The portfolio file (or `--algo` files, at equal weights), every algorithm file checked.
pub(super) fn read_spec(
    portfolio: Option<&Path>,
    algos: &[PathBuf],
) -> Result<PortfolioSpec, Error> {
    let spec = match portfolio {
        Some(file) => {
            if !algos.is_empty() {
                return Err(Error::usage_with_hint(
                    "`--portfolio` lists the strategies: `--algo` does not go with it",
                    "add the algorithm as a [[strategy]] of the portfolio file",
                ));
            }
            PortfolioSpec::read(file)?
        }
        None => PortfolioSpec::from_algos(algos)?,
    };
    for s in &spec.strategies {
        if !s.algo.is_file() {
            return Err(Error::usage(format!(
                "strategy `{}`: algorithm file `{}` does not exist",
                s.id,
                s.algo.display()
            )));
        }
    }
    Ok(spec)
}

/// The folders of the strategies' code, and the portfolio file's (a custom allocator's module
/// may sit beside it), which is also the last of them.
pub(super) fn code_dirs(spec: &PortfolioSpec) -> (Vec<PathBuf>, PathBuf) {
    let mut code_dirs: Vec<PathBuf> = Vec::new();
    for s in &spec.strategies {
        let dir = std::path::absolute(&s.algo)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        if !code_dirs.contains(&dir) {
            code_dirs.push(dir);
        }
    }
    let portfolio_dir = spec
        .file
        .as_ref()
        .and_then(|f| std::path::absolute(f).ok())
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| code_dirs[0].clone());
    if !code_dirs.contains(&portfolio_dir) {
        code_dirs.push(portfolio_dir.clone());
    }
    (code_dirs, portfolio_dir)
}

/// What a strategy's results need: its run settings, its algorithm, its universe.
pub(super) type StrategyParts = (RunSettings, LoadedAlgorithm, Vec<String>);

/// The strategies of a book, attached to their sessions, with what their results need.
pub(super) struct Book {
    pub members: Vec<Member<PyStrategy>>,
    /// Per strategy: its run settings, its algorithm, its universe.
    pub parts: Vec<(RunSettings, LoadedAlgorithm, Vec<String>)>,
    /// The cross-section the sessions over the whole universe share.
    pub cross: Arc<crate::engine::CrossSection>,
}

/// Builds a strategy's session from its settings and its universe.
pub(super) type SessionOf<'a> =
    dyn FnMut(&RunSettings, &[String]) -> Result<crate::engine::SharedSession, Error> + 'a;

/// Each strategy's session (`session_of` its settings and universe: a backtest's over the
/// loaded bars, a live session's over empty growable columns) and algorithm, in the book's
/// order, over the book's symbols `names`.
pub(super) fn build_book(
    py: Python<'_>,
    spec: &PortfolioSpec,
    settings: &RunSettings,
    names: &[String],
    capitals: &[Decimal],
    sink: &Arc<LogSink>,
    session_of: &mut SessionOf<'_>,
) -> Result<Book, Error> {
    let mut members = Vec::new();
    let mut parts: Vec<(RunSettings, Vec<String>)> = Vec::new();
    let mut built = Vec::new();
    for (k, s) in spec.strategies.iter().enumerate() {
        let universe = universe(&s.id, s.symbols.as_deref(), names)?;
        let own = own_settings(settings, capitals[k], s);
        let (session, global, loaded) =
            load_strategy(py, &s.id, &own, &universe, names, sink, session_of)?;
        built.push((session, global, loaded));
        parts.push((own, universe));
    }
    // The per-bar work the strategies share is done once by the book; set up before the
    // algorithms attach to their sessions.
    let sessions: Vec<_> = built.iter().map(|b| b.0.clone()).collect();
    let shared_cross = crate::portfolio::book::share_engine_work(&sessions, names);
    let mut loaded_all = Vec::new();
    for ((session, global, loaded), s) in built.into_iter().zip(&spec.strategies) {
        let strategy = PyStrategy::named(py, &loaded, session.clone(), sink.clone(), &s.id)
            .map_err(|e| Error::Internal(format!("attaching strategy `{}`: {e}", s.id)))?;
        members.push(Member::new(
            s.id.clone(),
            session,
            strategy,
            global,
            names.len(),
        ));
        loaded_all.push(loaded);
    }
    let parts: Vec<(RunSettings, LoadedAlgorithm, Vec<String>)> = parts
        .into_iter()
        .zip(loaded_all)
        .map(|((own, universe), loaded)| (own, loaded, universe))
        .collect();
    Ok(Book {
        members,
        parts,
        cross: shared_cross,
    })
}

/// A strategy's own run settings: the book's, with its capital, algorithm and parameters.
fn own_settings(settings: &RunSettings, capital: Decimal, s: &StrategySpec) -> RunSettings {
    let mut own = settings.clone();
    own.cash = capital;
    own.algo = s.algo.clone();
    own.class_name = s.class_name.clone();
    own.params = s.params.clone();
    own
}

/// A strategy's session over `universe` (`session_of`), its symbols' ids in the book's
/// `names`, and its algorithm loaded (not attached yet); hook warnings said and logged.
fn load_strategy(
    py: Python<'_>,
    id: &str,
    own: &RunSettings,
    universe: &[String],
    names: &[String],
    sink: &LogSink,
    session_of: &mut SessionOf<'_>,
) -> Result<(crate::engine::SharedSession, Vec<SymbolId>, LoadedAlgorithm), Error> {
    let session = session_of(own, universe)?;
    let global: Vec<SymbolId> = lock(&session)
        .market
        .symbol_names()
        .iter()
        .filter_map(|n| names.iter().position(|x| x == n))
        .map(|i| SymbolId(i as u32))
        .collect();
    let loaded = python::load_algorithm(py, &own.algo, own.class_name.as_deref(), &own.params)?;
    for warning in python::loader::hook_warnings(py, &loaded) {
        let line = format!("warning: strategy `{id}`: {warning}");
        errln!("{line}");
        sink.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
    Ok((session, global, loaded))
}

/// Builds the strategies operators add to a live book (`POST /strategies`, and again from the
/// journal at a restart); what their results need is kept in `parts`.
pub(super) struct AddedStrategies<'a, 'py> {
    pub py: Python<'py>,
    pub settings: &'a RunSettings,
    pub names: &'a [String],
    pub sink: Arc<LogSink>,
    pub session_of: Box<SessionOf<'a>>,
    /// (id, what its results need) of each strategy built.
    pub parts: &'a std::cell::RefCell<Vec<(String, StrategyParts)>>,
}

impl crate::live::book::StrategyMaker<PyStrategy> for AddedStrategies<'_, '_> {
    fn make(
        &mut self,
        request: &crate::portfolio::AddRequest,
        universe: &[String],
    ) -> Result<Member<PyStrategy>, String> {
        if !request.algo.is_file() {
            return Err(format!(
                "algorithm file `{}` does not exist",
                request.algo.display()
            ));
        }
        let spec = crate::portfolio::change::spec_of(request, universe, Decimal::ZERO);
        let own = own_settings(self.settings, request.capital, &spec);
        let (session, global, loaded) = load_strategy(
            self.py,
            &request.id,
            &own,
            universe,
            self.names,
            &self.sink,
            &mut *self.session_of,
        )
        .map_err(|e| error_text(&e))?;
        let mut strategy = PyStrategy::named(
            self.py,
            &loaded,
            session.clone(),
            self.sink.clone(),
            &request.id,
        )
        .map_err(|e| format!("attaching the algorithm: {e}"))?;
        watch_own_file(&mut strategy, &loaded, &own.params);
        self.parts
            .borrow_mut()
            .push((request.id.clone(), (own, loaded, universe.to_vec())));
        Ok(Member::new(
            request.id.clone(),
            session,
            strategy,
            global,
            self.names.len(),
        ))
    }
}

/// A live book's strategy reloads when its own file or a local module it imports is saved,
/// alone (`between_ticks`).
pub(super) fn watch_own_file(
    strategy: &mut PyStrategy,
    loaded: &LoadedAlgorithm,
    params: &[(String, String)],
) {
    let folders = crate::watch::SourceWatcher::folders_of(&loaded.source_files);
    if let Ok(watcher) = crate::watch::SourceWatcher::new(&folders) {
        strategy.enable_own_file_reload(
            watcher,
            loaded.path.clone(),
            loaded.class_name.clone(),
            params.to_vec(),
            loaded.source_files.clone(),
        );
    }
}

/// An error as one text: its message, the user's traceback or hint under it.
fn error_text(e: &Error) -> String {
    match e {
        Error::Algorithm(a) if !a.traceback.is_empty() => {
            format!("{a}\n{}", a.traceback.trim_end())
        }
        other => other.to_string(),
    }
}

/// The book's allocator: a built-in one, or the portfolio file's Python class.
pub(super) fn allocator_of(
    py: Python<'_>,
    spec: &PortfolioSpec,
    portfolio_dir: &Path,
) -> Result<Box<dyn crate::portfolio::Allocator>, Error> {
    match crate::portfolio::allocator::builtin(spec) {
        Some(builtin) => Ok(builtin),
        None => {
            let crate::portfolio::config::AllocatorKind::Custom(name) = &spec.allocator else {
                unreachable!("builtin() covers every other kind")
            };
            Ok(Box::new(
                python::allocator::PyAllocator::from_spec(
                    py,
                    name,
                    &spec.custom_params,
                    portfolio_dir.to_path_buf(),
                )
                .map_err(Error::Algorithm)?,
            ))
        }
    }
}

/// What the results of a book need beyond its strategies and outcome.
pub(super) struct BookRun<'a> {
    pub spec: &'a PortfolioSpec,
    pub settings: &'a RunSettings,
    pub parts: &'a [(RunSettings, LoadedAlgorithm, Vec<String>)],
    pub files: Vec<String>,
    pub out_dir: PathBuf,
    pub wall_seconds: f64,
    /// A live session's (results say so).
    pub paced: bool,
    pub sink: &'a LogSink,
    pub names: &'a [String],
    /// The book's market (the account's benchmark reads it).
    pub market: &'a crate::market::Market,
}

/// Each strategy's results folder (`strategies/<id>/`, as a plain run writes it, on its
/// flow-adjusted curve), the account's files and metrics beside them, and the summary.
pub(super) fn write_book_results(
    py: Python<'_>,
    run: BookRun<'_>,
    members: &mut [Member<PyStrategy>],
    book: &crate::portfolio::BookOutcome,
) -> Result<(), Error> {
    let BookRun {
        spec,
        settings,
        parts,
        out_dir,
        sink,
        names,
        market,
        ..
    } = &run;
    let (spec, settings, parts, sink, names, market) =
        (*spec, *settings, *parts, *sink, *names, *market);
    // Each strategy's own folder, as a plain run writes it, on its flow-adjusted curve.
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let mut finished = Vec::new();
    for (m, (own, loaded, symbols)) in members.iter_mut().zip(parts) {
        // Returns of a strategy added by weight alone (nothing at its start) are measured from
        // its first funding.
        let funded_later;
        let own = match own.cash.is_zero() && m.initial_capital.is_zero() {
            true => {
                funded_later = RunSettings {
                    cash: m.return_base(),
                    ..own.clone()
                };
                &funded_later
            }
            false => own,
        };
        let outcome = BacktestOutcome {
            equity: m.flow_adjusted_equity().into(),
            fills: m.outcome.fills.clone(),
            ticks: m.outcome.ticks,
            bars: m.outcome.bars,
            stop: m.stop.take(),
        };
        let own_sink = LogSink {
            lines: std::sync::Mutex::new(lines_of(sink, &m.id)),
            ..Default::default()
        };
        let interval = lock(&m.session).market.interval_ns(SymbolId(0));
        let record = RunRecord {
            settings: own,
            loaded,
            session: m.session.clone(),
            sink: &own_sink,
            files: run.files.clone(),
            symbols: symbols.clone(),
            bar_interval_ns: interval,
            wall_seconds: run.wall_seconds,
            paced: run.paced,
            out_dir: out_dir.join("strategies").join(&m.id),
            equity_stream: None,
        };
        finished.push(write_results(py, record, outcome, &m.strategy)?);
    }

    // The account.
    let fill_parts: Vec<(&[crate::model::Fill], &[SymbolId])> = members
        .iter()
        .map(|m| (m.outcome.fills.as_slice(), m.global.as_slice()))
        .collect();
    let (fills, fill_labels) = results::combined_fills(&fill_parts);
    let sessions: Vec<_> = members.iter().map(|m| lock(&m.session)).collect();
    let trade_parts: Vec<(&[crate::model::ClosedTrade], &[SymbolId])> = sessions
        .iter()
        .zip(members.iter())
        .map(|(s, m)| (s.ledger.closed_trades(), m.global.as_slice()))
        .collect();
    let (trades, trade_labels) = results::combined_trades(&trade_parts);
    drop(trade_parts);
    let final_equity: Vec<Decimal> = sessions
        .iter()
        .map(|s| s.ledger.equity().unwrap_or_default())
        .collect();
    let cost_parts: Vec<(&[crate::accounting::CostRecord], &[SymbolId])> = sessions
        .iter()
        .zip(members.iter())
        .map(|(s, m)| (s.costs.records(), m.global.as_slice()))
        .collect();
    let costs = results::combined_costs(&cost_parts, names.len())?;
    drop(cost_parts);
    let orders: Vec<crate::model::Order> = sessions
        .iter()
        .flat_map(|s| s.orders.all().iter().cloned())
        .collect();
    drop(sessions);
    let write_error = |e: metrics::MetricsError| Error::Io {
        context: "cannot write results to",
        path: out_dir.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    std::fs::write(out_dir.join("log.txt"), log_text(sink)).map_err(|source| Error::Io {
        context: "cannot write",
        path: out_dir.join("log.txt"),
        source,
    })?;
    metrics::write_equity(out_dir, &book.equity).map_err(write_error)?;
    metrics::write_records_labelled(
        out_dir,
        &fills,
        &trades,
        names,
        Some((
            Labels {
                names: &ids,
                of_rows: &fill_labels,
            },
            Labels {
                names: &ids,
                of_rows: &trade_labels,
            },
        )),
    )
    .map_err(write_error)?;
    results::combine_orders(out_dir, &ids)?;
    metrics::write_costs_csv(&out_dir.join("costs.csv"), costs.records(), names)
        .map_err(|e| Error::Internal(format!("writing costs.csv: {e}")))?;
    results::write_allocations(&out_dir.join("allocation.csv"), &book.allocations, &ids)?;

    let status = match &book.stop {
        None => RunStatus::Complete,
        Some(Stop::Interrupted) => RunStatus::Interrupted,
        Some(stop) => RunStatus::Failed {
            reason: stop_reason(stop),
        },
    };
    let info = RunInfo {
        status,
        algorithm: spec.source(),
        class_name: "portfolio".into(),
        parameters: Default::default(),
        data_files: run.files.clone(),
        symbols: names.to_vec(),
        initial_cash: settings.cash,
        bars_processed: book.bars,
        ticks_processed: book.ticks,
        wall_seconds: run.wall_seconds,
        rustybt_version: env!("CARGO_PKG_VERSION").to_string(),
        python_version: python::python_version(py),
        bar_interval_ns: market.interval_ns(SymbolId(0)),
        currency: settings.currency.clone(),
        data: settings.datasets_used.clone(),
    };
    let benchmark = metrics::BenchmarkPrices::from_market(market, &settings.metrics.benchmark);
    let records = metrics::Records {
        initial_cash: settings.cash,
        equity: &book.equity,
        trades: &trades,
        fills: &fills,
        symbols: names,
        benchmark: benchmark.as_ref().ok(),
    };
    let account = metrics::compute_with(&records, &settings.metrics)
        .with_unavailable_benchmark(benchmark.err())
        .with_costs(&costs, names)
        .with_orders(&orders);
    let reports: Vec<StrategyReport<'_>> = members
        .iter()
        .zip(parts)
        .zip(&finished)
        .enumerate()
        .map(|(k, ((m, (_, loaded, symbols)), done))| StrategyReport {
            id: &m.id,
            algorithm: loaded.path.display().to_string(),
            class_name: loaded.class_name.clone(),
            parameters: &loaded.parameters,
            symbols: symbols.clone(),
            weight: spec.strategies[k].weight,
            initial_capital: m.initial_capital,
            final_equity: final_equity[k],
            transfers: book
                .allocations
                .iter()
                .filter(|r| !r.initial && r.strategy == Some(k))
                .map(|r| r.transfer)
                .sum(),
            stopped: m.stopped.clone(),
            metrics: &done.metrics,
            daily: m.daily_returns(),
        })
        .collect();
    let rebalances = {
        let mut times: Vec<i64> = book
            .allocations
            .iter()
            .filter(|r| !r.initial)
            .map(|r| r.time)
            .collect();
        times.dedup();
        times.len()
    };
    let section = results::section(spec, &reports, book, settings.cash, rebalances);
    results::write_metrics(out_dir, &info, &account, section)?;

    outln!("{}", metrics::summary_table(&info, &account));
    outln!("{}", strategy_table(&reports, &settings.currency));
    for note in &book.notices {
        errln!("warning: {note}");
    }
    if let Some((time, reason)) = &book.halted {
        errln!(
            "warning: {reason} at {}; later orders were rejected",
            crate::model::format_timestamp(*time)
        );
    }
    if book.netting.crossings > 0 {
        errln!(
            "netting: {} crossing(s) between strategies, {} crossed ({} notional), \
             commission saved {}",
            book.netting.crossings,
            book.netting.quantity.normalize(),
            settings.currency.format(book.netting.notional),
            settings.currency.format(book.netting.commission_saved)
        );
    }
    if book.risk_rejections > 0 {
        errln!(
            "warning: the portfolio's risk limits rejected {} order(s); orders.csv says why",
            book.risk_rejections
        );
    }
    for r in reports.iter().filter(|r| r.stopped.is_some()) {
        if let Some((time, reason)) = &r.stopped {
            errln!(
                "warning: strategy `{}` stopped at {}: {}",
                r.id,
                crate::model::format_timestamp(*time),
                reason.lines().next().unwrap_or_default()
            );
        }
    }
    Ok(())
}
