//! `rustybt live`: the same algorithm and engine step as `rustybt run`, driven by a live feed.
//!
//! Bars arrive from a feed (a replay file, or an exchange's closed candles), are appended to the
//! market's growable columns and closed by the shared clock step (`engine::step`), so the
//! algorithm sees exactly what a backtest would. Orders go to the paper broker (the backtest's
//! matcher and costs) and every order, fill and breaker trip is journaled in SQLite before the
//! session moves on; see docs/live.md.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use rust_decimal::Decimal;

use super::LiveArgs;
use super::RunArgs;
use super::doctor::start_python;
use super::run::{RunRecord, load_algorithm, session_on, write_results};
use crate::config::{RunSettings, parse_duration};
use crate::data::{self, BarSeries, LoadOptions};
use crate::engine::{BacktestOutcome, SharedSession, Stop, Strategy, lock, step};
use crate::error::{Error, ExitCode, report};
use crate::live::audit::{AuditKind, AuditLog};
use crate::live::breakers::{BreakerError, Breakers, Trip};
use crate::live::config::LiveSettings;
use crate::live::feed::{Batch, ExchangeFeed, Feed, Poll, ReplayFeed};
use crate::live::lock::StateLock;
use crate::live::status::StatusLine;
use crate::live::storage::{self, journal_error};
use crate::live::venue::{MarketRules, Venue, VenueConfig, VenueError, VenueErrorKind, VenueUrls};
use crate::live::wall_ns;
use crate::python::venue::PyVenue;

use super::live_venue::{self, VenueBroker};
use crate::above_status;
use crate::live::journal::{
    self, Book, FillRecord, Journal, OrderIntent, OrderType, OrderUpdate, RunStart,
};
use crate::market::{Market, Tick};
use crate::model::{
    Fill, OrderId, OrderKind, OrderSide, OrderStatus, SymbolId, TimestampNs, format_timestamp,
};
use crate::python::{LogSink, PyStrategy};
use crate::watch::SourceWatcher;

/// Longest time between two journal checkpoints of a quiet session.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// How often an exchange session asks for fills and statuses between bars.
const BROKER_POLL: Duration = Duration::from_secs(2);

/// Longest wait between two looks at signals, the halt file and code changes.
const IDLE_SLICE: Duration = Duration::from_millis(200);

enum BrokerChoice {
    Paper,
    Ccxt(String),
}

enum FeedChoice {
    Replay(PathBuf),
    Ccxt(String),
}

fn parse_broker(text: &str) -> Result<BrokerChoice, Error> {
    match text.split_once(':') {
        None if text == "paper" => Ok(BrokerChoice::Paper),
        Some(("ccxt", id)) if !id.is_empty() => Ok(BrokerChoice::Ccxt(id.to_string())),
        _ => Err(Error::usage_with_hint(
            format!("`--broker {text}` is not a broker"),
            "use `--broker paper` or `--broker ccxt:<exchange_id>` (e.g. ccxt:binance)",
        )),
    }
}

fn parse_feed(text: Option<&str>, broker: &BrokerChoice) -> Result<FeedChoice, Error> {
    match (text, broker) {
        (None, BrokerChoice::Ccxt(id)) => Ok(FeedChoice::Ccxt(id.clone())),
        (None, BrokerChoice::Paper) => Err(Error::usage_with_hint(
            "paper trading needs a feed",
            "add `--feed replay:FILE` (bars from a file) or `--feed ccxt:<exchange_id>` (an exchange's candles)",
        )),
        (Some(text), _) => match text.split_once(':') {
            Some(("replay", path)) if !path.is_empty() => Ok(FeedChoice::Replay(path.into())),
            Some(("ccxt", id)) if !id.is_empty() => Ok(FeedChoice::Ccxt(id.to_string())),
            _ => Err(Error::usage_with_hint(
                format!("`--feed {text}` is not a feed"),
                "use `--feed replay:FILE` or `--feed ccxt:<exchange_id>`",
            )),
        },
    }
}

fn live_error(context: &str, error: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{context}: {error}"))
}

pub fn live(explicit_python: Option<&Path>, args: LiveArgs) -> Result<ExitCode, Error> {
    let broker = parse_broker(&args.broker)?;
    let feed_choice = parse_feed(args.feed.as_deref(), &broker)?;
    let interval_ns = parse_duration(&args.timeframe)?;
    if !args.algo.is_file() {
        return Err(Error::usage(format!(
            "algorithm file `{}` does not exist",
            args.algo.display()
        )));
    }
    if !(args.speed >= 0.0 && args.speed.is_finite()) {
        return Err(Error::usage(format!(
            "`--speed {}` must be a number ≥ 0 (0 plays as fast as possible)",
            args.speed
        )));
    }
    let mut symbols: Vec<String> = Vec::new();
    for symbol in args.symbols.iter().map(|s| s.trim().to_string()) {
        if symbol.is_empty() || symbols.contains(&symbol) {
            return Err(Error::usage(format!(
                "`--symbols` lists `{symbol}` twice or empty"
            )));
        }
        symbols.push(symbol);
    }
    let mut live_settings = match &args.config {
        Some(path) => LiveSettings::load(path),
        None => LiveSettings::from_toml(""),
    }
    .map_err(|e| Error::usage(e.to_string()))?;
    if let Some(dir) = &args.state {
        if live_settings.breakers.halt_file == Some(live_settings.state_dir.join("HALT")) {
            live_settings.breakers.halt_file = Some(dir.join("HALT"));
        }
        live_settings.state_dir = dir.clone();
    }
    let run_args = RunArgs {
        algo: Some(args.algo.clone()),
        class_name: args.class_name.clone(),
        cash: args.cash.clone(),
        params: args.params.clone(),
        out: args.out.clone(),
        config: args.run_config.clone(),
        quiet: args.quiet,
        no_progress: true,
        ..Default::default()
    };
    let mut settings = RunSettings::resolve(&run_args)?;
    settings.out = Some(args.out.clone().unwrap_or_else(default_out_dir));

    if let BrokerChoice::Ccxt(id) = &broker {
        match &feed_choice {
            FeedChoice::Ccxt(feed) if feed != id => {
                return Err(Error::usage(format!(
                    "`--broker ccxt:{id}` trades on its own candles; `--feed ccxt:{feed}` is another exchange"
                )));
            }
            FeedChoice::Replay(_) => {
                return Err(Error::usage_with_hint(
                    format!("`--broker ccxt:{id}` cannot trade on a replay file"),
                    "replay with `--broker paper`; an exchange broker uses the exchange's candles",
                ));
            }
            _ => {}
        }
    }
    let replay = match &feed_choice {
        FeedChoice::Replay(path) => Some((path.clone(), load_replay(path, &symbols, interval_ns)?)),
        FeedChoice::Ccxt(_) => None,
    };
    // One session per state folder, held until this function returns: refused at once (before
    // Python starts) when another session holds it; a lock left by a killed one is taken over.
    let state_lock = StateLock::acquire(&live_settings.state_dir, &command_line())?;
    if let Some(stale) = &state_lock.stale {
        errln!(
            "note: the state folder's lock was left by {stale}, which no longer runs (killed or \
             crashed); taking it over"
        );
    }
    let source = match &feed_choice {
        FeedChoice::Replay(path) => path.display().to_string(),
        FeedChoice::Ccxt(id) => format!("ccxt:{id}"),
    };
    let paper = matches!(broker, BrokerChoice::Paper);

    let algo_dir = std::path::absolute(&args.algo)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    start_python(explicit_python, std::slice::from_ref(&algo_dir))?;
    Python::attach(|py| {
        // SIGTERM stops a session like Ctrl-C: the loop notices it, saves and exits cleanly.
        py.run(
            c"import signal\nsignal.signal(signal.SIGTERM, signal.default_int_handler)",
            None,
            None,
        )
        .map_err(|e| live_error("installing the SIGTERM handler", e))?;
        let exchange = match &feed_choice {
            FeedChoice::Ccxt(id) => Some(connect(py, id, &args, &live_settings, &symbols, paper)?),
            FeedChoice::Replay(_) => None,
        };
        let cash_currency = match &exchange {
            Some(exchange) => exchange.cash_asset.clone(),
            None => settings.currency.code.clone(),
        };
        // The summary shows money to the precision of the account's cash asset.
        if let Ok(currency) = crate::model::Currency::parse(&cash_currency) {
            settings.currency = currency;
        }
        let initial_cash = match (&exchange, paper) {
            (Some(exchange), false) => {
                let view = exchange
                    .venue
                    .borrow_mut()
                    .account_view(&exchange.cash_asset)
                    .map_err(|e| Error::Broker(format!("reading the account: {}", e.message)))?;
                view.balances
                    .get(&exchange.cash_asset)
                    .copied()
                    .unwrap_or_default()
            }
            _ => settings.cash,
        };
        let secrets = exchange
            .as_ref()
            .map(|e| e.secrets.clone())
            .unwrap_or_default();
        let series = symbols
            .iter()
            .map(|s| BarSeries::empty(s.clone(), source.clone()))
            .collect();
        let market = Market::live(series, interval_ns).map_err(|e| Error::Market(e.to_string()))?;
        let session = session_on(&settings, market)?;
        let (loaded, sink) = load_algorithm(py, &settings)?;
        let mut strategy = PyStrategy::new(py, &loaded, session.clone(), sink.clone())
            .map_err(|e| live_error("attaching the algorithm", e))?;
        let folders = [algo_dir.clone()];
        if let Ok(watcher) = SourceWatcher::new(&folders) {
            strategy.enable_reload(
                watcher,
                loaded.path.clone(),
                loaded.class_name.clone(),
                settings.params.clone(),
            );
        }
        let mut state = State::open(
            &live_settings,
            &args,
            &symbols,
            &cash_currency,
            initial_cash,
            paper,
            secrets,
        )?;
        let feed: Box<dyn Feed> = match (replay, &exchange) {
            (Some((path, series)), _) => Box::new(ReplayFeed::new(
                path.display().to_string(),
                series,
                interval_ns,
                args.speed,
            )),
            (None, Some(exchange)) => {
                let interval_ms = interval_ns / 1_000_000;
                // A restart continues after the last bar traded (catching up what it missed);
                // a first session starts with the candle forming now.
                let start_ms = match state.resume_after {
                    Some(close) => close / 1_000_000,
                    None => wall_ns() / 1_000_000 / interval_ms * interval_ms,
                };
                Box::new(ExchangeFeed::new(
                    exchange.venue.clone(),
                    exchange.id.clone(),
                    symbols.clone(),
                    args.timeframe.clone(),
                    interval_ms,
                    start_ms,
                ))
            }
            (None, None) => return Err(Error::Internal("a live session without a feed".into())),
        };
        if let Some(exchange) = &exchange {
            apply_market_rules(&session, &exchange.rules);
        }
        let venue_broker = (|| -> Result<Option<VenueBroker>, Error> {
            Ok(match (&exchange, paper) {
                (Some(exchange), false) => {
                    lock(&session).external_execution = true;
                    let mut broker = VenueBroker::new(
                        exchange.venue.clone(),
                        exchange.id.clone(),
                        exchange.cash_asset.clone(),
                        exchange.rules.clone(),
                        &live_settings,
                        state.last_trade_ids.clone(),
                    )
                    .map_err(Error::usage)?;
                    let unresolved = std::mem::take(&mut state.unresolved);
                    broker
                        .resolve_unresolved(&mut state, &unresolved)
                        .map_err(Error::Broker)?;
                    Some(broker)
                }
                _ => None,
            })
        })();
        let venue_broker = match venue_broker {
            Ok(broker) => broker,
            Err(e) => {
                let _ = state.finish(&format!("failed to start: {e}"));
                return Err(e);
            }
        };
        let mut live = LiveSession {
            session: session.clone(),
            state: &mut state,
            feed,
            sink: sink.clone(),
            tracker: Tracker::default(),
            status: StatusLine::new(live_settings.status_line),
            max_bars: args.max_bars,
            logged_lines: 0,
            skipped_warned: false,
            last_checkpoint: Instant::now(),
            last_close: None,
            broker: venue_broker,
            audited_reloads: 0,
            wall_clock: exchange.is_some(),
            interrupted: false,
            unseeded: BTreeMap::new(),
            last_poll: Instant::now(),
            start_equity: Decimal::ZERO,
            unpriced: HashMap::new(),
        };
        let started = Instant::now();
        let (outcome, end) = live.run(py, &mut strategy);
        let wall_seconds = started.elapsed().as_secs_f64();
        live.status.clear();
        // The results are this session's: measured from its own starting equity.
        settings.cash = live.start_equity();
        drop(live);
        // A journal that cannot be written (locked, I/O, full…) is not asked again: the next
        // session closes this run as one that ended without a clean stop.
        let storage_failure = storage::take_noted();
        let reason = match &end {
            End::FeedDone => "end of feed".to_string(),
            End::MaxBars => "--max-bars reached".to_string(),
            End::Signal => "stopped by signal".to_string(),
            End::Failed(_) => "algorithm failed".to_string(),
            End::Engine(message) => format!("engine error: {message}"),
        };
        if storage_failure.is_none() {
            state.finish(&reason)?;
        }
        let run = RunRecord {
            settings: &settings,
            loaded: &loaded,
            session: session.clone(),
            sink: &sink,
            files: vec![source.clone()],
            symbols: symbols.clone(),
            bar_interval_ns: interval_ns,
            wall_seconds,
            paced: true,
            out_dir: settings.out.clone().unwrap_or_else(default_out_dir),
        };
        let finished = write_results(py, run, outcome, &strategy)?;
        let last_report = state.state_dir.join("reconciliation.json");
        if !paper && last_report.is_file() {
            // The last reconciliation belongs with the session's results.
            let _ = std::fs::copy(&last_report, finished.out_dir.join("reconciliation.json"));
        }
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            crate::metrics::summary_table(&finished.info, &finished.metrics)
        );
        errln!(
            "live session ended ({reason}); journal {}, results in {}",
            state.journal_path.display(),
            finished.out_dir.display()
        );
        Ok(match end {
            End::FeedDone | End::MaxBars | End::Signal => ExitCode::Success,
            End::Failed(e) => {
                report(&Error::Algorithm(e));
                ExitCode::Algorithm
            }
            End::Engine(message) => match storage_failure {
                Some(failure) => {
                    let error = failure.to_error(&state.journal_path);
                    report(&error);
                    error.exit_code()
                }
                None => {
                    report(&Error::Internal(message));
                    ExitCode::Internal
                }
            },
        })
    })
}

/// `rustybt live report`: the state folder's history (see `crate::live::report`).
pub fn live_report(args: &super::LiveReportArgs) -> Result<ExitCode, Error> {
    let history = crate::live::report::History::read(&args.state)?;
    if let Some(out) = &args.out {
        history.write(out)?;
    }
    let _ = write!(std::io::stdout(), "{}", history.summary());
    Ok(ExitCode::Success)
}

/// An open connection to an exchange through ccxt, with its rules for the session's symbols.
struct Exchange {
    id: String,
    venue: Rc<RefCell<dyn Venue>>,
    rules: BTreeMap<String, MarketRules>,
    /// The quote currency every symbol shares: the book's cash.
    cash_asset: String,
    secrets: Vec<crate::live::config::Secret>,
}

fn connect(
    py: Python<'_>,
    id: &str,
    args: &LiveArgs,
    settings: &LiveSettings,
    symbols: &[String],
    paper: bool,
) -> Result<Exchange, Error> {
    let credentials = match settings.credentials() {
        Ok(credentials) => credentials,
        // Candles are public: a paper session on an exchange's feed needs no keys.
        Err(_) if paper => crate::live::config::Credentials {
            api_key: crate::live::config::Secret::new(""),
            api_secret: crate::live::config::Secret::new(""),
        },
        Err(e) => {
            return Err(Error::usage_with_hint(
                e.to_string(),
                "set the API key and secret in the environment variables named in [credentials] \
                 (default RUSTYBT_API_KEY, RUSTYBT_API_SECRET) or in a 0600 file",
            ));
        }
    };
    let secrets: Vec<_> = credentials
        .secrets()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let mut config = VenueConfig::new(credentials.api_key, credentials.api_secret);
    config.urls = args.exchange_url.clone().map(VenueUrls::One);
    config.sandbox = args.sandbox;
    let x = &settings.exchange;
    config.timeout_ms = x.timeout_ms;
    config.recv_window_ms = x.recv_window_ms;
    config.rate_limit_ms = x.rate_limit_ms;
    config.settle_margin_ms = x.settle_margin_ms;
    if x.retry_attempts.is_some() || x.retry_base_delay_s.is_some() || x.retry_max_delay_s.is_some()
    {
        config.retry = Some(crate::live::venue::RetrySettings {
            max_attempts: x.retry_attempts.unwrap_or(5),
            base_delay_s: x.retry_base_delay_s.unwrap_or(0.2),
            max_delay_s: x.retry_max_delay_s.unwrap_or(5.0),
            seed: None,
        });
    }
    let failed = |what: &str, e: VenueError| match e.kind {
        VenueErrorKind::UnknownSymbol | VenueErrorKind::RuleViolation => {
            Error::usage(format!("{id}: {}", e.message))
        }
        _ => Error::Broker(format!("{id}: {what}: {}", e.message)),
    };
    let mut venue = PyVenue::open(py, id, &config).map_err(|e| failed("connecting", e))?;
    let rules = venue
        .markets(symbols)
        .map_err(|e| failed("loading markets", e))?;
    let quotes: std::collections::BTreeSet<&str> =
        rules.values().map(|r| r.quote.as_str()).collect();
    let cash_asset = match quotes.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => one.to_string(),
        many => {
            return Err(Error::usage(format!(
                "the symbols are quoted in several currencies ({}); one session trades against one cash currency",
                many.join(", ")
            )));
        }
    };
    if let Some(inactive) = rules.iter().find(|(_, r)| !r.active) {
        return Err(Error::usage(format!(
            "{id}: market {} is not trading (inactive)",
            inactive.0
        )));
    }
    Ok(Exchange {
        id: id.to_string(),
        venue: Rc::new(RefCell::new(venue)),
        rules,
        cash_asset,
        secrets,
    })
}

/// The exchange's tick, lot and minimum notional become the engine's instrument rules, so
/// an order the exchange would refuse is rejected before it is sent (paper too).
fn apply_market_rules(session: &SharedSession, rules: &BTreeMap<String, MarketRules>) {
    let mut s = lock(session);
    let names = s.market.symbol_names();
    let mut execution = s.execution.clone();
    for (i, name) in names.iter().enumerate() {
        if let (Some(rule), Some(instrument)) = (rules.get(name), execution.instruments.get_mut(i))
        {
            instrument.tick_size = rule.tick_size.or(instrument.tick_size);
            instrument.lot_size = rule.lot_step.or(instrument.lot_size);
            instrument.min_notional = rule.min_notional.or(instrument.min_notional);
        }
    }
    s.set_execution(execution);
}

/// This process's command line, for the state folder's lock (a refused session names it).
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "rustybt".into());
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn default_out_dir() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let base = PathBuf::from("runs").join(format!("live-{stamp}"));
    let mut candidate = base.clone();
    let mut n = 2;
    while candidate.exists() {
        candidate = PathBuf::from("runs").join(format!("live-{stamp}-{n}"));
        n += 1;
    }
    candidate
}

/// The replay file's bars of `symbols`, in that order. The file's bars must be `interval_ns`
/// apart (a replay does not resample).
fn load_replay(path: &Path, symbols: &[String], interval_ns: i64) -> Result<Vec<BarSeries>, Error> {
    let options = LoadOptions {
        symbol: (symbols.len() == 1).then(|| symbols[0].clone()),
        ..Default::default()
    };
    let loaded = data::load(path, &options)?;
    let mut out = Vec::new();
    for symbol in symbols {
        let Some(series) = loaded.iter().find(|s| &s.symbol == symbol) else {
            let names: Vec<&str> = loaded.iter().map(|s| s.symbol.as_str()).collect();
            return Err(Error::usage(format!(
                "the replay file `{}` has no bars of `{symbol}`; it has: {}",
                path.display(),
                names.join(", ")
            )));
        };
        if let Some(step) = crate::market::infer_interval(&series.time)
            && step < interval_ns
        {
            return Err(Error::usage_with_hint(
                format!(
                    "the replay file `{}` has bars {} apart for `{symbol}`, shorter than --timeframe {}",
                    path.display(),
                    format_duration(step),
                    format_duration(interval_ns)
                ),
                "give --timeframe the file's bar duration (a replay does not resample)",
            ));
        }
        out.push(series.clone());
    }
    Ok(out)
}

/// `90s` → `1m30s`: durations as a person writes them.
fn format_duration(ns: i64) -> String {
    let mut secs = ns / 1_000_000_000;
    if secs == 0 {
        return format!("{}ms", ns / 1_000_000);
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// How a session ended.
enum End {
    FeedDone,
    MaxBars,
    Signal,
    Failed(Box<crate::error::AlgorithmError>),
    Engine(String),
}

impl From<Stop> for End {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Interrupted => End::Signal,
            Stop::Failed(e) => End::Failed(e),
            Stop::Engine(message) => End::Engine(message),
        }
    }
}

/// The crash-safe side of a session: journal, audit log, breakers.
pub(super) struct State {
    pub journal: Journal,
    pub journal_path: PathBuf,
    pub audit: AuditLog,
    pub breakers: Breakers,
    pub state_dir: PathBuf,
    run_id: i64,
    prefix: String,
    cash_currency: String,
    /// Restored from the journal at start, applied after `initialize`.
    algo_state: Option<journal::AlgoState>,
    /// Bars closing at or before this were traded by an earlier session of this journal.
    resume_after: Option<TimestampNs>,
    /// Fills of earlier sessions, replayed into the ledger at start.
    earlier_fills: Vec<(String, String, FillRecord)>,
    initial_cash: Option<Decimal>,
    /// From the recovery, for an exchange broker: orders to resolve and to adopt.
    unresolved: Vec<journal::JournaledOrder>,
    open_orders: Vec<journal::JournaledOrder>,
    last_trade_ids: std::collections::BTreeMap<String, String>,
}

impl State {
    fn open(
        settings: &LiveSettings,
        args: &LiveArgs,
        symbols: &[String],
        cash_currency: &str,
        initial_cash: Decimal,
        paper: bool,
        secrets: Vec<crate::live::config::Secret>,
    ) -> Result<State, Error> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|source| Error::Io {
            context: "cannot create the state folder",
            path: settings.state_dir.clone(),
            source,
        })?;
        let journal_path = settings.journal_path();
        let audit = AuditLog::open(settings.audit_path(), secrets)
            .map_err(|e| Error::usage(e.to_string()))?;
        // A storage condition (locked, I/O, full, read-only…) is reported as such; other
        // journal errors at start are the user's (not a rustybt journal, a newer schema).
        let failed = |e: journal::JournalError| journal_error(e, &journal_path, Error::usage);
        let mut journal = Journal::open(&journal_path).map_err(failed)?;
        let now = wall_ns();
        let recovery = journal
            .recover(now, settings.max_state_age_ns)
            .map_err(failed)?;
        // A paper order lives in this process only: one left open by a session that died is
        // gone with it. (An exchange's orders are resolved and adopted by the venue broker.)
        let paper_orders = if paper {
            recovery
                .unresolved
                .iter()
                .chain(&recovery.open_orders)
                .collect()
        } else {
            Vec::new()
        };
        for order in paper_orders {
            journal
                .record_status(&OrderUpdate {
                    client_order_id: order.client_order_id.clone(),
                    time: now,
                    status: OrderStatus::Cancelled,
                    filled_quantity: order.filled(),
                    exchange_id: order.exchange_id.clone(),
                    reason: Some("the paper session that placed it ended".into()),
                })
                .map_err(failed)?;
        }
        let breaker_journal = Journal::open(&journal_path).map_err(failed)?;
        let breaker_failed = |e: BreakerError| match e {
            BreakerError::Journal(e) => failed(e),
            other => Error::usage(other.to_string()),
        };
        let mut breakers = Breakers::new(settings.breakers.clone(), Some(breaker_journal))
            .map_err(breaker_failed)?;
        if args.reset_breaker {
            match breakers.reset(now, "rustybt live --reset-breaker") {
                Ok(Some(trip)) => errln!("breaker reset: {trip}"),
                Ok(None) => errln!("no breaker was tripped"),
                Err(e) => return Err(breaker_failed(e)),
            }
        }
        // A session that died without a clean stop (kill -9, power loss) says so.
        if let Some(last) = recovery
            .last_run
            .as_ref()
            .filter(|r| r.stopped_at.is_none())
        {
            journal
                .end_run(
                    last.id,
                    now,
                    "ended without a clean stop (killed or crashed)",
                )
                .map_err(failed)?;
            errln!(
                "the previous session (run {}) ended without a clean stop; recovering from the journal",
                last.id
            );
        }
        let run_id = journal
            .start_run(&RunStart {
                started_at: now,
                algorithm: args.algo.display().to_string(),
                broker: args.broker.clone(),
                symbols: symbols.to_vec(),
                cash_currency: cash_currency.to_string(),
                initial_cash,
            })
            .map_err(failed)?;
        let mut audit = audit;
        let _ = audit.record(
            now,
            AuditKind::Start,
            serde_json::json!({
                "run": run_id,
                "algorithm": args.algo.display().to_string(),
                "broker": args.broker,
                "symbols": symbols,
                "timeframe": args.timeframe,
            }),
        );
        let earlier_fills = journal.fills().map_err(failed)?;
        let initial_cash = journal.initial_cash().map_err(failed)?;
        let resume_after = journal.feed_mark().map_err(failed)?;
        if let Some(state) = &recovery.algo_state
            && state.stale
        {
            errln!(
                "warning: the saved algorithm state is {} old (older than [live] max_state_age); restoring it anyway",
                format_duration(state.age_ns)
            );
        }
        if let journal::SnapshotCheck::Mismatch { .. } = recovery.snapshot {
            errln!(
                "warning: the engine's last book snapshot differs from the journal's fills; the journal wins"
            );
        }
        Ok(State {
            state_dir: settings.state_dir.clone(),
            unresolved: recovery.unresolved.clone(),
            open_orders: recovery.open_orders.clone(),
            last_trade_ids: recovery.last_trade_ids.clone(),
            journal,
            journal_path,
            audit,
            breakers,
            run_id,
            prefix: format!("r{run_id}"),
            cash_currency: cash_currency.to_string(),
            algo_state: recovery.algo_state,
            resume_after,
            earlier_fills,
            initial_cash,
        })
    }

    fn finish(&mut self, reason: &str) -> Result<(), Error> {
        let now = wall_ns();
        self.journal
            .end_run(self.run_id, now, reason)
            .map_err(|e| {
                journal_error(e, &self.journal_path, |m| {
                    Error::Internal(format!("journaling the end of the run: {m}"))
                })
            })?;
        let _ = self.audit.record(
            now,
            AuditKind::Stop,
            serde_json::json!({"run": self.run_id, "reason": reason}),
        );
        Ok(())
    }
}

/// An order's new status in the audit log (the journal has it too).
pub(super) fn audit_status(audit: &mut AuditLog, wall: TimestampNs, update: &OrderUpdate) {
    let _ = audit.record(
        wall,
        AuditKind::OrderStatus,
        serde_json::json!({
            "client_order_id": update.client_order_id,
            "status": update.status.as_str(),
            "filled_quantity": update.filled_quantity.to_string(),
            "exchange_id": update.exchange_id,
            "reason": update.reason,
        }),
    );
}

/// The engine's book in the journal's terms (for snapshots and reconciliation).
fn engine_book(cash_currency: &str, session: &SharedSession) -> Book {
    let s = lock(session);
    let mut book = Book::new(cash_currency, s.ledger.cash());
    for &symbol in s.ledger.open_symbols() {
        if let Some(position) = s.ledger.position(symbol)
            && !position.quantity.is_zero()
        {
            book.positions
                .insert(s.market.symbol_name(symbol).to_string(), position.quantity);
        }
    }
    book
}

/// Journals the engine's orders and fills as they happen (paper broker).
#[derive(Default)]
struct Tracker {
    /// Orders of the book already looked at (the book only appends).
    seen: usize,
    client_ids: HashMap<OrderId, String>,
    /// Last journaled status and filled quantity of each order still open.
    open: HashMap<OrderId, (OrderStatus, Decimal)>,
    fills_of: HashMap<OrderId, u32>,
}

struct LiveSession<'a> {
    session: SharedSession,
    state: &'a mut State,
    feed: Box<dyn Feed>,
    sink: Arc<LogSink>,
    tracker: Tracker,
    status: StatusLine,
    max_bars: Option<u64>,
    logged_lines: usize,
    skipped_warned: bool,
    last_checkpoint: Instant,
    /// Close time of the last bar stepped (the final checkpoint's feed mark).
    last_close: Option<TimestampNs>,
    /// The exchange broker; `None` for paper.
    broker: Option<VenueBroker>,
    /// Reload events already in the audit log.
    audited_reloads: usize,
    /// The session's time is the wall clock's (an exchange feed), not only its bars' (replay).
    wall_clock: bool,
    /// A signal arrived inside user code the loop called outside a hook (`__getstate__`).
    interrupted: bool,
    /// Journal positions not yet in the ledger (exchange sessions; see `seed_positions`).
    unseeded: BTreeMap<String, Decimal>,
    last_poll: Instant,
    /// The session's starting equity so far: its starting cash plus each carried position at
    /// the first price this session sees of it (see `price_carried`).
    start_equity: Decimal,
    /// Positions carried from earlier sessions not yet priced in this one.
    unpriced: HashMap<SymbolId, Decimal>,
}

impl LiveSession<'_> {
    fn run(&mut self, py: Python<'_>, strategy: &mut PyStrategy) -> (BacktestOutcome, End) {
        let mut outcome = BacktestOutcome::default();
        let restored = if self.broker.is_some() {
            self.open_exchange_book()
        } else {
            self.restore_book()
        };
        if let Err(e) = restored {
            return (outcome, End::Engine(e));
        }
        self.carry_into_session();
        if let Some(trip) = self.state.breakers.state().tripped {
            self.halt(&trip, false);
        }
        let end = match self.drive(py, strategy, &mut outcome) {
            Ok(end) => end,
            Err(stop) => stop.into(),
        };
        let end = match end {
            End::Failed(e) => End::Failed(e),
            End::Engine(e) => End::Engine(e),
            other => match strategy.on_stop() {
                Ok(()) => other,
                Err(stop) => stop.into(),
            },
        };
        // The results say how the session ended: a failure is `failed` (partial); a signal
        // or the end of the feed is how a live session normally ends (`complete`).
        outcome.stop = match &end {
            End::Failed(e) => Some(Stop::Failed(e.clone())),
            End::Engine(message) => Some(Stop::Engine(message.clone())),
            _ => None,
        };
        match self.broker.as_mut() {
            None => {
                let mut s = lock(&self.session);
                let now = s.now;
                s.orders.cancel_all("the paper session ended", now);
            }
            Some(broker) => match broker.on_exit(self.state, &self.session) {
                Ok(0) => {}
                Ok(n) => above_status!("cancelled {n} open orders at the exchange"),
                Err(e) => above_status!("error: cancelling open orders at exit: {e}"),
            },
        }
        let close = self.last_close;
        if !storage::noted() {
            let saved = self
                .sync_orders(&[])
                .and_then(|_| self.checkpoint(py, strategy, close));
            if let Err(e) = saved {
                above_status!("error: the final checkpoint failed: {e}");
            }
        }
        self.audit_log_lines();
        (outcome, end)
    }

    /// An exchange session's book is the journal's (genesis balance, fills, adopted broker
    /// numbers): cash now, positions at the first prices seen (see `seed_positions`). Orders
    /// left open at the exchange become the engine's again.
    fn open_exchange_book(&mut self) -> Result<(), String> {
        if let Some(broker) = self.broker.as_mut() {
            let caught = broker.catch_up_fills(self.state)?;
            if caught > 0 {
                above_status!("{caught} fills made while no session ran are journaled");
            }
        }
        let book = self.state.journal.derive_book().map_err(storage::note)?;
        {
            let mut s = lock(&self.session);
            let symbols = s.market.symbol_count();
            s.ledger = crate::accounting::Ledger::new(book.cash, symbols);
            for (symbol, quantity) in &book.positions {
                if quantity.is_zero() {
                    continue;
                }
                if s.market.symbol_id(symbol).is_none() {
                    above_status!(
                        "note: the journal holds {quantity} {symbol}, which --symbols does not list; it is left alone"
                    );
                    continue;
                }
                self.unseeded.insert(symbol.clone(), *quantity);
            }
        }
        let open = std::mem::take(&mut self.state.open_orders);
        if let Some(broker) = self.broker.as_mut() {
            let adopted = broker.adopt_open_orders(&self.session, &open)?;
            // Adopted orders are at the exchange already: never "new" orders to send.
            self.tracker.seen = lock(&self.session).orders.all().len();
            if adopted > 0 {
                above_status!(
                    "{adopted} orders open at the exchange since an earlier session are tracked again"
                );
            }
            let mut news = live_venue::VenueNews::default();
            broker.reconcile(self.state, &self.session, &mut news)?;
            for notice in news.notices {
                above_status!("{notice}");
            }
            for trip in news.trips {
                self.halt(&trip, true);
            }
        }
        Ok(())
    }

    /// Journal positions enter the ledger at the first close seen of their symbol: bought at
    /// that price with the cash it cost given back, so cash stays the journal's and PnL counts
    /// from the session's start.
    fn seed_positions(&mut self, batch: &Batch) -> Result<(), String> {
        if self.unseeded.is_empty() {
            return Ok(());
        }
        let mut s = lock(&self.session);
        let now = s.now;
        for bar in &batch.bars {
            let id = SymbolId(bar.symbol as u32);
            let name = s.market.symbol_name(id).to_string();
            let Some(quantity) = self.unseeded.remove(&name) else {
                continue;
            };
            let price: Decimal = bar.texts[3].parse().map_err(|e| format!("{e}"))?;
            let fill = Fill {
                order_id: OrderId(0),
                symbol: id,
                side: if quantity > Decimal::ZERO {
                    OrderSide::Buy
                } else {
                    OrderSide::Sell
                },
                quantity: quantity.abs(),
                price,
                fee: Decimal::ZERO,
                slippage: Decimal::ZERO,
                time: now,
            };
            s.ledger.apply_fill(&fill).map_err(|e| e.to_string())?;
            s.ledger
                .adjust_cash(quantity * price)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// What the exchange reported since the last look, into the journal, the engine and the
    /// algorithm (`on_order`, `on_fill`).
    fn poll_broker(
        &mut self,
        strategy: &mut PyStrategy,
        outcome: &mut BacktestOutcome,
    ) -> Result<(), Stop> {
        let Some(broker) = self.broker.as_mut() else {
            return Ok(());
        };
        let news = broker
            .poll(self.state, &self.session)
            .map_err(Stop::Engine)?;
        self.last_poll = Instant::now();
        for notice in &news.notices {
            above_status!("{notice}");
            let _ = self.state.audit.log(wall_ns(), "warning", notice);
        }
        for trip in &news.trips {
            self.halt(trip, true);
        }
        if !news.fills.is_empty() {
            outcome.fills.extend_from_slice(&news.fills);
            strategy.on_order_events()?;
            for fill in &news.fills {
                strategy.on_fill(fill)?;
            }
            // Orders the algorithm placed in on_fill go out now.
            self.sync_orders(&[]).map_err(Stop::Engine)?;
        }
        Ok(())
    }

    /// The book this session starts with: its cash, and the positions earlier sessions left
    /// (priced by `price_carried` at their first bar of this session).
    fn carry_into_session(&mut self) {
        let s = lock(&self.session);
        self.start_equity = s.ledger.cash();
        self.unpriced.clear();
        for &symbol in s.ledger.open_symbols() {
            if let Some(position) = s.ledger.position(symbol)
                && !position.quantity.is_zero()
            {
                self.unpriced.insert(symbol, position.quantity);
            }
        }
        for (name, quantity) in &self.unseeded {
            if let Some(id) = s.market.symbol_id(name) {
                self.unpriced.insert(id, *quantity);
            }
        }
    }

    /// A carried position enters the session's starting equity at the open of its first bar
    /// in this session: the price at which this session takes it over.
    fn price_carried(&mut self, batch: &Batch) -> Result<(), String> {
        if self.unpriced.is_empty() {
            return Ok(());
        }
        for bar in &batch.bars {
            let id = SymbolId(bar.symbol as u32);
            if let Some(quantity) = self.unpriced.remove(&id) {
                let open: Decimal = bar.texts[0].parse().map_err(|e| format!("{e}"))?;
                self.start_equity = quantity
                    .checked_mul(open)
                    .and_then(|value| self.start_equity.checked_add(value))
                    .ok_or("decimal overflow while pricing a carried position")?;
            }
        }
        Ok(())
    }

    /// The equity this session started with (the base of its results). A carried position
    /// that never had a bar counts as the ledger values it at the end, so it adds nothing.
    fn start_equity(&self) -> Decimal {
        let s = lock(&self.session);
        self.unpriced
            .keys()
            .filter_map(|id| s.ledger.position(*id).and_then(|p| p.market_value()))
            .fold(self.start_equity, |total, value| total + value)
    }

    /// Earlier sessions' fills into the ledger: the paper book continues where it stopped
    /// (the algorithm sees each position's real cost), but the trades they closed belong to
    /// the earlier sessions' results, not to this one's.
    fn restore_book(&mut self) -> Result<(), String> {
        let mut s = lock(&self.session);
        if let Some(initial) = self.state.initial_cash {
            let symbols = s.market.symbol_count();
            s.ledger = crate::accounting::Ledger::new(initial, symbols);
        }
        let fills = std::mem::take(&mut self.state.earlier_fills);
        for (symbol, side, record) in &fills {
            let Some(id) = s.market.symbol_id(symbol) else {
                return Err(format!(
                    "the journal holds fills of `{symbol}`, which --symbols does not list; \
                     add it, or use another --state folder"
                ));
            };
            let fill = Fill {
                order_id: OrderId(0),
                symbol: id,
                side: if side == "buy" {
                    OrderSide::Buy
                } else {
                    OrderSide::Sell
                },
                quantity: record.quantity,
                price: record.price,
                fee: record.fee,
                slippage: Decimal::ZERO,
                time: record.time,
            };
            s.ledger.apply_fill(&fill).map_err(|e| e.to_string())?;
        }
        s.ledger.forget_closed_trades();
        if !fills.is_empty() {
            above_status!(
                "restored the paper book from {} journaled fills: cash {}",
                fills.len(),
                s.ledger.cash()
            );
        }
        Ok(())
    }

    fn drive(
        &mut self,
        py: Python<'_>,
        strategy: &mut PyStrategy,
        outcome: &mut BacktestOutcome,
    ) -> Result<End, Stop> {
        let mut skipped = 0usize;
        if let Some(after) = self.state.resume_after {
            // Without waiting: a paced replay would otherwise sit through the traded bars.
            skipped = self.feed.skip_through(after);
        }
        // `ctx.time` in `initialize`: the open of the first bar to come (a replay), or now.
        lock(&self.session).now = self.feed.first_open().unwrap_or_else(wall_ns);
        strategy.initialize()?;
        self.restore_algo_state(py, strategy)?;
        self.sync_orders(&[]).map_err(Stop::Engine)?;
        let mut tick = Tick {
            time: 0,
            symbols: Vec::new(),
        };
        let mut fills = Vec::new();
        loop {
            let polled = self.feed.poll().map_err(Stop::Engine)?;
            for notice in self.feed.take_notices() {
                above_status!("{notice}");
                let _ = self.state.audit.log(wall_ns(), "warning", &notice);
            }
            let batch = match polled {
                Poll::End => return Ok(End::FeedDone),
                Poll::Wait(wait) => {
                    strategy.idle(wait.min(IDLE_SLICE))?;
                    strategy.check_interrupt()?;
                    self.check_halt_file();
                    if self.broker.is_some() && self.last_poll.elapsed() >= BROKER_POLL {
                        self.poll_broker(strategy, outcome)?;
                    }
                    // On an exchange feed, time passes between bars: scheduled callbacks fire
                    // at their wall-clock time. (A replay's time is its bars' only.)
                    if self.wall_clock && strategy.run_schedules_at(wall_ns())? {
                        if self.broker.is_some() && self.has_new_orders() {
                            let close = self.last_close;
                            self.checkpoint(py, strategy, close).map_err(Stop::Engine)?;
                        }
                        self.sync_orders(&[]).map_err(Stop::Engine)?;
                    }
                    continue;
                }
                Poll::Ready(batch) => batch,
            };
            if self
                .state
                .resume_after
                .is_some_and(|after| batch.close_time <= after)
            {
                skipped += 1;
                continue;
            }
            if std::mem::take(&mut self.interrupted) {
                return Err(Stop::Interrupted);
            }
            if skipped > 0 {
                above_status!(
                    "resuming after {}: skipped {skipped} bar times an earlier session traded",
                    format_timestamp(self.state.resume_after.unwrap_or_default())
                );
                skipped = 0;
            }
            self.append(&batch).map_err(Stop::Engine)?;
            self.price_carried(&batch).map_err(Stop::Engine)?;
            self.seed_positions(&batch).map_err(Stop::Engine)?;
            let symbols: Vec<SymbolId> = batch
                .bars
                .iter()
                .map(|b| SymbolId(b.symbol as u32))
                .collect();
            let close_time = batch.close_time;
            self.last_close = Some(close_time);
            step(
                &self.session,
                strategy,
                &mut tick,
                &mut fills,
                outcome,
                |_, tick| {
                    tick.time = close_time;
                    tick.symbols.clone_from(&symbols);
                    true
                },
            )?;
            if self.broker.is_some() && self.has_new_orders() {
                // Before anything goes to the exchange: the algorithm's state that decided it
                // and the bar it decided on. A crash after the send then restarts past this
                // bar, with the decision made, instead of deciding (and sending) again.
                self.checkpoint(py, strategy, Some(close_time))
                    .map_err(Stop::Engine)?;
            }
            let mut active = self.sync_orders(&fills).map_err(Stop::Engine)?;
            if self.broker.is_some() {
                let before = outcome.fills.len();
                self.poll_broker(strategy, outcome)?;
                active |= outcome.fills.len() > before;
            }
            self.after_bar(py, strategy, close_time, active)
                .map_err(Stop::Engine)?;
            if std::mem::take(&mut self.interrupted) {
                return Err(Stop::Interrupted);
            }
            strategy.check_interrupt()?;
            strategy.between_ticks()?;
            self.audit_reloads(strategy);
            if self.max_bars.is_some_and(|max| outcome.bars >= max) {
                return Ok(End::MaxBars);
            }
        }
    }

    fn append(&mut self, batch: &Batch) -> Result<(), String> {
        let mut s = lock(&self.session);
        for bar in &batch.bars {
            let id = SymbolId(bar.symbol as u32);
            let texts = [
                bar.texts[0].as_str(),
                bar.texts[1].as_str(),
                bar.texts[2].as_str(),
                bar.texts[3].as_str(),
                bar.texts[4].as_str(),
            ];
            s.market
                .append_bar(id, bar.open_time, texts)
                .map_err(|e| format!("{}: {e}", self.feed.describe()))?;
        }
        Ok(())
    }

    fn has_new_orders(&self) -> bool {
        lock(&self.session).orders.all().len() > self.tracker.seen
    }

    /// Journals new orders (refusing them when a breaker says so), fills and status changes.
    /// Returns whether anything was journaled.
    fn sync_orders(&mut self, fills: &[Fill]) -> Result<bool, String> {
        let wall = wall_ns();
        // Under the lock only to read: sending to an exchange takes the lock itself.
        let (new, now) = {
            let s = lock(&self.session);
            let new: Vec<(crate::model::Order, String, Option<Decimal>)> = s.orders.all()
                [self.tracker.seen..]
                .iter()
                .map(|o| {
                    let series = s.market.series(o.symbol);
                    let last_close = s
                        .market
                        .closed_count(o.symbol)
                        .checked_sub(1)
                        .map(|i| series.close.exact.get(i));
                    (
                        o.clone(),
                        s.market.symbol_name(o.symbol).to_string(),
                        last_close,
                    )
                })
                .collect();
            self.tracker.seen = s.orders.all().len();
            (new, s.now)
        };
        let mut active = !new.is_empty() || !fills.is_empty();
        // Entries of brackets placed in this batch (their exits name them as parent).
        let parents: std::collections::HashSet<OrderId> =
            new.iter().filter_map(|(o, _, _)| o.parent).collect();
        for (order, symbol, last_close) in new {
            if order.status == OrderStatus::Rejected {
                let reason = order.reason.clone().unwrap_or_default();
                let _ = self.state.audit.log(
                    wall,
                    "warning",
                    &format!("order {} rejected: {reason}", order.id.0),
                );
                continue;
            }
            if !order.status.is_open() {
                continue; // placed and cancelled within one hook: nothing to send
            }
            let linked =
                order.parent.is_some() || order.oco_group.is_some() || parents.contains(&order.id);
            if self.broker.is_some() && linked {
                let reason = "brackets and OCO groups are paper-only: an exchange broker sends \
                              single market and limit orders";
                lock(&self.session).orders.apply_venue_status(
                    order.id,
                    OrderStatus::Rejected,
                    Some(reason.into()),
                    now,
                );
                continue;
            }
            if let Err(error) = self.state.breakers.on_order(now) {
                let reason = match &error {
                    BreakerError::Halted(trip) => {
                        let trip = trip.as_ref().clone();
                        self.halt(&trip, true);
                        format!("trading halted: {trip}")
                    }
                    other => other.to_string(),
                };
                // Refused before it left: `rejected`, as an order placed while halted is.
                lock(&self.session).orders.apply_venue_status(
                    order.id,
                    OrderStatus::Rejected,
                    Some(reason.clone()),
                    now,
                );
                let _ = self.state.audit.log(
                    wall,
                    "warning",
                    &format!("order {} not placed: {reason}", order.id.0),
                );
                continue;
            }
            let state = &mut *self.state;
            let client_id = state
                .journal
                .next_client_order_id(&state.prefix)
                .map_err(storage::note)?;
            let intent = intent_of(&order, &client_id, &symbol, wall);
            state
                .journal
                .record_intent(&intent)
                .map_err(storage::note)?;
            let _ = state.audit.intent(wall, &intent);
            state
                .journal
                .mark_sent(&client_id, wall)
                .map_err(storage::note)?;
            self.tracker.client_ids.insert(order.id, client_id.clone());
            match self.broker.as_mut() {
                Some(broker) => {
                    live_venue::crash_point("before_send");
                    let reference = order.kind.limit().or(last_close);
                    broker.send(state, &self.session, order.id, &intent, reference)?;
                }
                None => {
                    let exchange_id = format!("paper-{}-{}", state.run_id, order.id.0);
                    state
                        .journal
                        .record_ack(&client_id, &exchange_id, wall)
                        .map_err(storage::note)?;
                    let _ = state.audit.ack(wall, &client_id, &exchange_id);
                    self.tracker
                        .open
                        .insert(order.id, (OrderStatus::Accepted, Decimal::ZERO));
                }
            }
        }
        if self.broker.is_some() {
            // The exchange's fills and statuses come through the broker's poll.
            return Ok(active);
        }
        let state = &mut *self.state;
        let tracker = &mut self.tracker;
        for fill in fills {
            let Some(client_id) = tracker.client_ids.get(&fill.order_id) else {
                continue;
            };
            let n = tracker.fills_of.entry(fill.order_id).or_default();
            *n += 1;
            let record = FillRecord {
                client_order_id: client_id.clone(),
                trade_id: format!("{}-{}", fill.order_id.0, n),
                quantity: fill.quantity,
                price: fill.price,
                fee: fill.fee,
                fee_asset: None,
                time: fill.time,
            };
            if state.journal.record_fill(&record).map_err(storage::note)? {
                let _ = state.audit.fill(wall, &record);
            }
        }
        let s = lock(&self.session);
        let mut closed = Vec::new();
        for (id, last) in tracker.open.iter_mut() {
            let Some(order) = s.orders.get(*id) else {
                continue;
            };
            if (order.status, order.filled_quantity) == *last {
                continue;
            }
            *last = (order.status, order.filled_quantity);
            active = true;
            let client_id = &tracker.client_ids[id];
            let update = OrderUpdate {
                client_order_id: client_id.clone(),
                time: wall,
                status: order.status,
                filled_quantity: order.filled_quantity,
                exchange_id: None,
                reason: order.reason.clone(),
            };
            state
                .journal
                .record_status(&update)
                .map_err(storage::note)?;
            audit_status(&mut state.audit, wall, &update);
            if !order.status.is_open() {
                closed.push(*id);
            }
        }
        for id in closed {
            tracker.open.remove(&id);
        }
        Ok(active)
    }

    /// After each bar: breakers on equity and the halt file, the journal's checkpoint, log
    /// lines to the audit log, the status line.
    fn after_bar(
        &mut self,
        py: Python<'_>,
        strategy: &PyStrategy,
        close_time: TimestampNs,
        active: bool,
    ) -> Result<(), String> {
        let equity = lock(&self.session)
            .ledger
            .equity()
            .map_err(|e| e.to_string())?;
        match self.state.breakers.on_equity(close_time, equity) {
            Ok(Some(trip)) => self.halt(&trip, true),
            Ok(None) => {}
            Err(e) => return Err(storage::note_breaker(e)),
        }
        self.check_halt_file();
        // A checkpoint (book snapshot, feed mark, algorithm state: one synchronous commit)
        // after every bar with order activity, else at most once per CHECKPOINT_EVERY: the
        // journal never holds fills past the feed mark, so a restart resumes consistently.
        if active || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.checkpoint(py, strategy, Some(close_time))?;
        }
        self.audit_log_lines();
        if self.status.enabled() {
            let line = status_text(
                &self.session,
                &self.state.cash_currency,
                equity,
                &self.state.breakers,
            );
            self.status.set(line);
        }
        Ok(())
    }

    /// The algorithm's state is taken first (user code, which may fail or be interrupted),
    /// then the book, the feed mark and that state are committed in one transaction.
    fn checkpoint(
        &mut self,
        py: Python<'_>,
        strategy: &PyStrategy,
        close_time: Option<TimestampNs>,
    ) -> Result<(), String> {
        let state = self.dump_algo_state(py, strategy);
        let book = engine_book(&self.state.cash_currency, &self.session);
        self.state
            .journal
            .record_checkpoint(
                wall_ns(),
                &book,
                close_time,
                state.as_ref().map(|(f, d)| (f.as_str(), d.as_slice())),
            )
            .map_err(storage::note)?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn check_halt_file(&mut self) {
        let now = lock(&self.session).now;
        match self.state.breakers.check_halt_file(now) {
            Ok(Some(trip)) => self.halt(&trip, true),
            Ok(None) => {}
            Err(e) => above_status!("warning: {e}"),
        }
    }

    /// Refuses new orders from now on and says why (once per trip).
    fn halt(&mut self, trip: &Trip, new: bool) {
        let message = trip.to_string();
        let mut s = lock(&self.session);
        if s.halted.as_deref() == Some(message.as_str()) {
            return;
        }
        s.halted = Some(message.clone());
        drop(s);
        if new {
            let _ = self.state.audit.breaker(trip);
            above_status!("HALTED: {message}; new orders are refused until the breaker is reset");
        } else {
            above_status!(
                "HALTED since an earlier session: {message}; new orders are refused \
                 (remove the halt file if any, then start with --reset-breaker)"
            );
        }
    }

    /// The algorithm's state as (format, bytes), or `None` with a warning when it cannot be
    /// taken. A Ctrl-C or SIGTERM that lands inside the user's `__getstate__` is kept for
    /// the loop (`interrupted`), never swallowed as a failed save.
    fn dump_algo_state(
        &mut self,
        py: Python<'_>,
        strategy: &PyStrategy,
    ) -> Option<(String, Vec<u8>)> {
        let result = (|| -> PyResult<(String, Vec<u8>, Vec<String>)> {
            let module = py.import("rustybt_api._live.state")?;
            // `Order` handles are saved as the journal's client order ids.
            let client_ids = PyDict::new(py);
            for (id, client_id) in &self.tracker.client_ids {
                client_ids.set_item(id.0, client_id)?;
            }
            if let Some(broker) = &self.broker {
                for (client_id, id) in broker.engine_ids() {
                    client_ids.set_item(id.0, client_id)?;
                }
            }
            let dumped =
                module.call_method1("dump", (strategy.algorithm().bind(py), client_ids))?;
            let (fmt, data, skipped): (String, Bound<'_, PyBytes>, Vec<String>) =
                dumped.extract()?;
            Ok((fmt, data.as_bytes().to_vec(), skipped))
        })();
        match result {
            Ok((fmt, data, skipped)) => {
                if !skipped.is_empty() && !self.skipped_warned {
                    self.skipped_warned = true;
                    above_status!(
                        "note: these attributes are not saved across restarts: {}",
                        skipped.join(", ")
                    );
                }
                Some((fmt, data))
            }
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => {
                self.interrupted = true;
                None
            }
            Err(e) => {
                above_status!("warning: the algorithm state could not be saved: {e}");
                None
            }
        }
    }

    /// The saved state back into the algorithm, saying which attributes were restored and
    /// which were not (and why). Saved `Order` handles are re-bound by client order id: to the
    /// engine's order when this session tracks it, else to the journal's record of it.
    fn restore_algo_state(&mut self, py: Python<'_>, strategy: &PyStrategy) -> Result<(), Stop> {
        let Some(saved) = self.state.algo_state.take() else {
            return Ok(());
        };
        let restored = (|| -> PyResult<(String, usize, String)> {
            let module = py.import("rustybt_api._live.state")?;
            let data = PyBytes::new(py, &saved.data);
            let wanted: Vec<String> = module
                .call_method1("order_ids", (saved.format.as_str(), &data))?
                .extract()?;
            let orders = self.saved_orders(py, &wanted)?;
            module
                .call_method1(
                    "load",
                    (
                        strategy.algorithm().bind(py),
                        saved.format.as_str(),
                        data,
                        orders,
                    ),
                )?
                .extract()
        })();
        match restored {
            Ok((restored, rebound, not_restored)) => {
                let handles = match rebound {
                    0 => String::new(),
                    1 => "; 1 order handle re-bound to the journal's orders".into(),
                    n => format!("; {n} order handles re-bound to the journal's orders"),
                };
                above_status!(
                    "restored the algorithm's state from {} ({restored}){handles}",
                    format_timestamp(saved.time)
                );
                if !not_restored.is_empty() {
                    above_status!("note: not restored: {not_restored}");
                }
            }
            Err(e) => above_status!("warning: the saved algorithm state was not restored: {e}"),
        }
        Ok(())
    }

    /// The orders the saved state names, by client order id: an `Order` handle for those this
    /// session tracks, else the journal's fields of the order (final status, fills, price).
    fn saved_orders<'py>(
        &self,
        py: Python<'py>,
        wanted: &[String],
    ) -> PyResult<Bound<'py, PyDict>> {
        let orders = PyDict::new(py);
        if wanted.is_empty() {
            return Ok(orders);
        }
        let mut live: HashMap<&str, OrderId> = self
            .tracker
            .client_ids
            .iter()
            .map(|(id, cid)| (cid.as_str(), *id))
            .collect();
        if let Some(broker) = &self.broker {
            live.extend(broker.engine_ids());
        }
        let fills = self
            .state
            .journal
            .fills()
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
        for client_id in wanted {
            if let Some(id) = live.get(client_id.as_str()) {
                orders.set_item(
                    client_id,
                    crate::python::objects::Order::handle(py, *id, &self.session)?,
                )?;
                continue;
            }
            let Ok(order) = self.state.journal.order(client_id) else {
                continue;
            };
            let own: Vec<&FillRecord> = fills
                .iter()
                .filter(|(_, _, f)| &f.client_order_id == client_id)
                .map(|(_, _, f)| f)
                .collect();
            let quantity: Decimal = own.iter().map(|f| f.quantity).sum();
            let fees: Decimal = own.iter().map(|f| f.fee).sum();
            // The average price of its fills (one fill: its price, digit for digit).
            let fill_price = match own.as_slice() {
                [] => None,
                [one] => Some(one.price),
                many => Some(many.iter().map(|f| f.quantity * f.price).sum::<Decimal>() / quantity),
            };
            let fields = PyDict::new(py);
            fields.set_item("client_order_id", client_id)?;
            fields.set_item("symbol", &order.symbol)?;
            fields.set_item("side", order.side)?;
            fields.set_item("quantity", order.quantity)?;
            fields.set_item("status", order.status.as_deref().unwrap_or("new"))?;
            fields.set_item("filled_quantity", order.filled())?;
            fields.set_item("fill_price", fill_price)?;
            fields.set_item("fees", fees)?;
            fields.set_item("order_type", order.order_type.as_str())?;
            fields.set_item("limit", order.limit_price)?;
            fields.set_item("stop", order.stop_price)?;
            fields.set_item("tif", order.time_in_force.as_str())?;
            fields.set_item("reason", order.reason.as_deref())?;
            fields.set_item("submitted_at_ns", order.created_at)?;
            orders.set_item(client_id, fields)?;
        }
        Ok(orders)
    }

    /// Hot reloads (applied or rejected) since the last call, into the audit log.
    fn audit_reloads(&mut self, strategy: &PyStrategy) {
        let events = strategy.reload_events();
        for event in &events[self.audited_reloads.min(events.len())..] {
            let wall = event
                .wall_time
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or_else(|_| wall_ns());
            let _ = self.state.audit.record(
                wall,
                AuditKind::Reload,
                serde_json::json!({
                    "ok": event.ok,
                    "files": event.files,
                    "millis": event.millis,
                    "message": event.message,
                    "session_time": format_timestamp(event.sim_time),
                }),
            );
        }
        self.audited_reloads = events.len();
    }

    fn audit_log_lines(&mut self) {
        let lines = self
            .sink
            .lines
            .lock()
            .map(|l| l[self.logged_lines.min(l.len())..].to_vec())
            .unwrap_or_default();
        self.logged_lines += lines.len();
        let wall = wall_ns();
        for line in lines {
            let _ = self.state.audit.log(wall, "algorithm", &line);
        }
    }
}

fn intent_of(
    order: &crate::model::Order,
    client_id: &str,
    symbol: &str,
    wall: TimestampNs,
) -> OrderIntent {
    let (order_type, limit_price, stop_price) = match order.kind {
        OrderKind::Limit { limit } => (OrderType::Limit, Some(limit), None),
        OrderKind::Stop { stop } => (OrderType::Stop, None, Some(stop)),
        OrderKind::StopLimit { stop, limit } => (OrderType::StopLimit, Some(limit), Some(stop)),
        // A trailing stop is journaled with its current stop price when it has one.
        OrderKind::TrailingStop { .. } => match order.trail_stop {
            Some(stop) => (OrderType::Stop, None, Some(stop)),
            None => (OrderType::Market, None, None),
        },
        OrderKind::Market | OrderKind::MarketOnOpen | OrderKind::MarketOnClose => {
            (OrderType::Market, None, None)
        }
    };
    let time_in_force = match order.tif {
        crate::model::TimeInForce::Ioc => journal::TimeInForce::Ioc,
        crate::model::TimeInForce::Fok => journal::TimeInForce::Fok,
        crate::model::TimeInForce::Day => journal::TimeInForce::Day,
        crate::model::TimeInForce::Gtc | crate::model::TimeInForce::Gtd(_) => {
            journal::TimeInForce::Gtc
        }
    };
    OrderIntent {
        client_order_id: client_id.to_string(),
        symbol: symbol.to_string(),
        side: order.side,
        quantity: order.quantity,
        order_type,
        limit_price,
        stop_price,
        time_in_force,
        created_at: wall,
    }
}

/// The status line's text: time, equity, cash, positions, open orders, breakers.
fn status_text(
    session: &SharedSession,
    cash_currency: &str,
    equity: Decimal,
    breakers: &Breakers,
) -> String {
    let book = engine_book(cash_currency, session);
    let (time, open) = {
        let s = lock(session);
        let open = s.orders.all().iter().filter(|o| o.status.is_open()).count();
        (s.now, open)
    };
    let positions: Vec<String> = book
        .positions
        .iter()
        .map(|(symbol, qty)| format!("{symbol} {qty}"))
        .collect();
    let breaker = match breakers.state().tripped {
        Some(trip) => format!("HALTED ({})", trip.kind.as_str()),
        None => "breakers ok".into(),
    };
    format!(
        "{} | equity {} | cash {} | {} | open orders {open} | {breaker}",
        format_timestamp(time),
        equity.round_dp(2),
        book.cash.round_dp(2),
        if positions.is_empty() {
            "flat".to_string()
        } else {
            positions.join(", ")
        }
    )
}
