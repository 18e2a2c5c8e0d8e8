//! `rustybt live`: the command line of a live session and its wiring (the feed, the broker,
//! the algorithm, the state folder); the session itself is `crate::live::session`, its
//! brokers `crate::live::broker`; see docs/live.md and docs/architecture.md.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use pyo3::prelude::*;

use super::LiveArgs;
use super::RunArgs;
use super::doctor::start_python;
use super::run::{RunRecord, write_results};
use crate::catalog::Catalog;
use crate::config::{RunSettings, parse_duration};
use crate::data::{self, BarSeries, LoadOptions};
use crate::engine::{SharedSession, lock};
use crate::error::{Error, ExitCode, report};
use crate::live::api::auth::Tokens;
use crate::live::api::server::{ApiConfig, ApiServer};
use crate::live::api::{SessionLink, Snapshot};
use crate::live::audit::Tap;
use crate::live::broker::Broker;
use crate::live::broker::exchange::ExchangeBroker;
use crate::live::broker::paper::PaperBroker;
use crate::live::config::LiveSettings;
use crate::live::config::Secret;
use crate::live::feed::{ExchangeFeed, Feed, FeedMode, ReplayFeed, StreamChoice};
use crate::live::lock::StateLock;
use crate::live::recovery::{SessionStart, State, format_duration};
use crate::live::session::{End, LiveSession, SessionOptions};
use crate::live::venue::{MarketRules, Venue, VenueConfig, VenueError, VenueErrorKind, VenueUrls};
use crate::live::wall_ns;
use crate::live::warmup::{CatalogHistory, WarmFromCatalog};
use crate::market::Market;
use crate::pipeline::{load_algorithm, session_on};
use crate::python::PyStrategy;
use crate::python::venue::PyVenue;
use crate::watch::SourceWatcher;

pub(super) enum BrokerChoice {
    Paper,
    Ccxt(String),
}

pub(super) enum FeedChoice {
    Replay(PathBuf),
    Ccxt(String),
}

pub(super) fn parse_broker(text: &str) -> Result<BrokerChoice, Error> {
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

pub(super) fn live_error(context: &str, error: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{context}: {error}"))
}

pub fn live(explicit_python: Option<&Path>, args: LiveArgs) -> Result<ExitCode, Error> {
    let mut args = args;
    args.algo = match (&args.portfolio, args.algos.as_slice()) {
        (None, [one]) => one.clone(),
        _ => return super::live_book::live_book(explicit_python, args),
    };
    let common = Common::parse(&args)?;
    let Common {
        broker,
        feed_choice,
        interval_ns,
        feed_mode,
        symbols,
        live_settings,
    } = common;
    if !args.algo.is_file() {
        return Err(Error::usage(format!(
            "algorithm file `{}` does not exist",
            args.algo.display()
        )));
    }
    let run_args = RunArgs {
        algo: vec![args.algo.clone()],
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

    check_broker_feed(&broker, &feed_choice)?;
    // The lock is held until this function returns.
    let (replay, _state_lock, source) = open_feed_and_state(
        &feed_choice,
        &symbols,
        interval_ns,
        &live_settings.state_dir,
    )?;
    let paper = matches!(broker, BrokerChoice::Paper);
    // The API listens from here on (/health answers while Python and the exchange start).
    let (api, api_link) = match &args.api {
        Some(addr) => {
            let algorithm = args.algo.display().to_string();
            let (server, link) = start_api(addr, &args, &symbols, &source, &algorithm)?;
            (Some(server), Some(link))
        }
        None => (None, None),
    };

    let algo_dir = std::path::absolute(&args.algo)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    start_python(explicit_python, std::slice::from_ref(&algo_dir))?;
    Python::attach(|py| {
        let (exchange, cash_currency) = open_exchange(
            py,
            &feed_choice,
            &args,
            &live_settings,
            &symbols,
            paper,
            &mut settings,
        )?;
        let initial_cash = match (&exchange, paper) {
            (Some(exchange), false) => exchange_cash(exchange)?,
            _ => settings.cash,
        };
        let mut secrets = exchange
            .as_ref()
            .map(|e| e.secrets.clone())
            .unwrap_or_default();
        let (api_link, audit_tap) = tap_api(api_link, &mut secrets);
        let series = symbols
            .iter()
            .map(|s| BarSeries::empty(s.clone(), source.clone()))
            .collect();
        let market = Market::live(series, interval_ns).map_err(|e| Error::Market(e.to_string()))?;
        let session = session_on(&settings, market)?;
        let (loaded, sink) = load_algorithm(py, &settings)?;
        if let Some(link) = &api_link {
            let mut snapshot = (*link.shared.snapshot()).clone();
            snapshot.strategy.class = loaded.class_name.clone();
            link.shared.set_snapshot(snapshot);
        }
        let mut strategy = PyStrategy::new(py, &loaded, session.clone(), sink.clone())
            .map_err(|e| live_error("attaching the algorithm", e))?;
        // The algorithm's folder and those of the local modules it imports (`helpers/x.py`).
        let mut folders = vec![algo_dir.clone()];
        folders.extend(SourceWatcher::folders_of(&loaded.source_files));
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
            SessionStart {
                algorithm: args.algo.display().to_string(),
                broker: &args.broker,
                paper,
                symbols: &symbols,
                timeframe: &args.timeframe,
                cash_currency: &cash_currency,
                initial_cash,
                reset_breaker: args.reset_breaker,
                secrets,
                audit_tap,
                strategies: None,
            },
        )?;
        let feed = session_feed(
            replay,
            exchange.as_ref(),
            &args,
            feed_mode,
            &symbols,
            interval_ns,
            &mut state,
        )?;
        if let Some(exchange) = &exchange {
            apply_market_rules(&session, &exchange.rules);
        }
        let broker: Box<dyn Broker> = match (&exchange, paper) {
            (Some(exchange), false) => {
                lock(&session).external_execution = true;
                start_exchange_broker(exchange, &live_settings, &mut state, feed_mode)?
            }
            _ => Box::new(PaperBroker::new()),
        };
        let options = SessionOptions {
            max_bars: args.max_bars,
            wall_clock: exchange.is_some(),
            status_line: live_settings.status_line,
        };
        let mut live = LiveSession::new(
            session.clone(),
            &mut state,
            broker,
            feed,
            &mut strategy,
            sink.clone(),
            options,
        );
        if let Some(link) = api_link {
            live.set_api(link);
        }
        let started = Instant::now();
        let (outcome, end) = live.run();
        let wall_seconds = started.elapsed().as_secs_f64();
        live.status.clear();
        // The results are this session's: measured from its own starting equity.
        settings.cash = live.start_equity();
        if let Some(path) = std::env::var_os("RUSTYBT_LIVE_STATS") {
            // benches/live_replay.py: the loop's rate and tick-to-order latencies.
            let _ = serde_json::to_vec(&live.stats).map(|json| std::fs::write(path, json));
        }
        drop(live);
        // A journal that cannot be written (locked, I/O, full…) is not asked again: the next
        // session closes this run as one that ended without a clean stop.
        let storage_failed = matches!(&end, End::Live(e) if e.storage().is_some());
        let reason = end.reason();
        if !storage_failed {
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
            equity_stream: None,
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
        if let Some(server) = api {
            // Event streams get every event up to `stop` before the process exits.
            server.finish(std::time::Duration::from_secs(5));
        }
        Ok(exit_code_of_end(end, &state.journal_path))
    })
}

/// What every session does first in Python: SIGTERM stops it like Ctrl-C (the loop notices,
/// saves and exits cleanly); the exchange of an exchange feed connected. Returns it and the
/// cash currency (the exchange's quote currency, else the run's), which also sets the
/// precision of the summary's money.
#[allow(clippy::too_many_arguments)]
pub(super) fn open_exchange(
    py: Python<'_>,
    feed_choice: &FeedChoice,
    args: &LiveArgs,
    live_settings: &LiveSettings,
    symbols: &[String],
    paper: bool,
    settings: &mut RunSettings,
) -> Result<(Option<Exchange>, String), Error> {
    py.run(
        c"import signal\nsignal.signal(signal.SIGTERM, signal.default_int_handler)",
        None,
        None,
    )
    .map_err(|e| live_error("installing the SIGTERM handler", e))?;
    let exchange = match feed_choice {
        FeedChoice::Ccxt(id) => Some(connect(py, id, args, live_settings, symbols, paper)?),
        FeedChoice::Replay(_) => None,
    };
    let cash_currency = match &exchange {
        Some(exchange) => exchange.cash_asset.clone(),
        None => settings.currency.code.clone(),
    };
    if let Ok(currency) = crate::model::Currency::parse(&cash_currency) {
        settings.currency = currency;
    }
    Ok((exchange, cash_currency))
}

/// The session's feed: the replay file's bars, or the exchange's candles. A feed that cannot
/// start ends the run it was started for (journaled as such).
#[allow(clippy::too_many_arguments)]
pub(super) fn session_feed(
    replay: Option<(PathBuf, Vec<BarSeries>)>,
    exchange: Option<&Exchange>,
    args: &LiveArgs,
    feed_mode: FeedMode,
    symbols: &[String],
    interval_ns: i64,
    state: &mut State,
) -> Result<Box<dyn Feed>, Error> {
    match (replay, exchange) {
        (Some((path, series)), _) => Ok(Box::new(ReplayFeed::new(
            path.display().to_string(),
            series,
            interval_ns,
            args.speed,
        ))),
        (None, Some(exchange)) => exchange_feed(
            exchange,
            args,
            feed_mode,
            symbols,
            interval_ns,
            state.resume_after,
        )
        .inspect_err(|error| {
            let _ = state.finish(&format!("failed to start: {error}"));
        }),
        (None, None) => Err(Error::Internal("a live session without a feed".into())),
    }
}

/// An exchange's candles as a session's feed: by websocket where it has one (REST fills the
/// gaps), else polled; warmed up from the catalog first. A restart continues after the last
/// bar traded (`resume_after`, catching up what it missed); a first session starts with the
/// candle forming now.
pub(super) fn exchange_feed(
    exchange: &Exchange,
    args: &LiveArgs,
    feed_mode: FeedMode,
    symbols: &[String],
    interval_ns: i64,
    resume_after: Option<i64>,
) -> Result<Box<dyn Feed>, Error> {
    let interval_ms = interval_ns / 1_000_000;
    let start_ms = match resume_after {
        Some(close) => close / 1_000_000,
        None => wall_ns() / 1_000_000 / interval_ms * interval_ms,
    };
    let feed = ExchangeFeed::new(
        exchange.venue.clone(),
        exchange.id.clone(),
        symbols.to_vec(),
        args.timeframe.clone(),
        interval_ms,
        start_ms,
    );
    let warm_from = CatalogHistory {
        root: args.catalog.clone().unwrap_or_else(Catalog::default_root),
        source: format!("ccxt:{}", exchange.id),
        timeframe: args.timeframe.clone(),
        interval_ns,
        symbols: symbols.to_vec(),
        first_open: start_ms * 1_000_000,
    };
    let id = &exchange.id;
    let opened = ExchangeFeed::open_stream(&exchange.venue, feed_mode, symbols, &args.timeframe)
        .map_err(|e| match e.kind {
            VenueErrorKind::Unavailable
            | VenueErrorKind::UnknownSymbol
            | VenueErrorKind::RuleViolation => {
                Error::usage(format!("{id}: no websocket stream: {}", e.message))
            }
            _ => Error::Broker(format!("{id}: opening the websocket stream: {}", e.message)),
        })?;
    Ok(match opened {
        StreamChoice::Stream(stream) => {
            errln!(
                "market data: {id} {} (REST fills gaps, and polls while it is down)",
                stream.describe()
            );
            Box::new(WarmFromCatalog::new(
                Box::new(feed.with_stream(stream)),
                warm_from,
            ))
        }
        StreamChoice::Poll { why } => {
            if let Some(why) = why {
                errln!("market data: polling {id} (no websocket stream: {why})");
            }
            Box::new(WarmFromCatalog::new(Box::new(feed), warm_from))
        }
    })
}

/// What every live session parses first, before the state folder or Python are touched.
pub(super) struct Common {
    pub broker: BrokerChoice,
    pub feed_choice: FeedChoice,
    pub interval_ns: i64,
    pub feed_mode: FeedMode,
    pub symbols: Vec<String>,
    pub live_settings: LiveSettings,
}

impl Common {
    pub(super) fn parse(args: &LiveArgs) -> Result<Common, Error> {
        let broker = parse_broker(&args.broker)?;
        let feed_choice = parse_feed(args.feed.as_deref(), &broker)?;
        let interval_ns = parse_duration(&args.timeframe)?;
        let flag_feed_mode = match args.feed_mode.as_deref() {
            None => None,
            Some(text) => Some(FeedMode::parse(text).ok_or_else(|| {
                Error::usage_with_hint(
                    format!("`--feed-mode {text}` is not a feed mode"),
                    format!("use {}", FeedMode::NAMES),
                )
            })?),
        };
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
        let feed_mode = flag_feed_mode.unwrap_or(live_settings.feed_mode);
        if let Some(dir) = &args.state {
            if live_settings.breakers.halt_file == Some(live_settings.state_dir.join("HALT")) {
                live_settings.breakers.halt_file = Some(dir.join("HALT"));
            }
            live_settings.state_dir = dir.clone();
        }
        Ok(Common {
            broker,
            feed_choice,
            interval_ns,
            feed_mode,
            symbols,
            live_settings,
        })
    }
}

/// The API's tokens are masked like the exchange's keys, and its event stream gets every
/// audit event from the session's `start` on.
pub(super) fn tap_api(
    api_link: Option<(SessionLink, Vec<Secret>)>,
    secrets: &mut Vec<Secret>,
) -> (Option<SessionLink>, Option<Tap>) {
    match api_link {
        Some((link, tokens)) => {
            secrets.extend(tokens);
            let shared = link.shared.clone();
            let tap = Tap::new(move |line| shared.hub().publish(line));
            (Some(link), Some(tap))
        }
        None => (None, None),
    }
}

/// The control API, listening: refused (usage) on a remote address without
/// `--api-allow-remote`, without a token, or with a token file others can read.
pub(super) fn start_api(
    addr: &str,
    args: &LiveArgs,
    symbols: &[String],
    source: &str,
    algorithm: &str,
) -> Result<(ApiServer, (SessionLink, Vec<Secret>)), Error> {
    use std::net::ToSocketAddrs;
    let socket = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut all| all.next())
        .ok_or_else(|| {
            Error::usage_with_hint(
                format!("`--api {addr}` is not an address to listen on"),
                "give an IP address and a port, e.g. `--api 127.0.0.1:8787`",
            )
        })?;
    if !socket.ip().is_loopback() {
        if !args.api_allow_remote {
            return Err(Error::usage_with_hint(
                format!("`--api {addr}` can be reached from other machines"),
                "listen on 127.0.0.1 (reach it through an SSH tunnel or a TLS proxy), or add \
                 --api-allow-remote if you mean it",
            ));
        }
        errln!(
            "warning: the control API listens on {socket}, reachable from other machines; it has \
             no TLS, so its token crosses the network in clear: put a TLS proxy in front"
        );
    }
    if args.api_rate_limit == 0 {
        return Err(Error::usage(
            "`--api-rate-limit` must be at least 1 request a second",
        ));
    }
    let tokens = Tokens::load(args.api_token_file.as_deref(), |k| std::env::var(k).ok())
        .map_err(|e| Error::usage_with_hint(e.to_string(), e.hint()))?;
    let secrets = tokens.secrets();
    let snapshot = Snapshot::empty(&args.broker, source, symbols, algorithm);
    let config = ApiConfig {
        addr: socket,
        tokens,
        rate_limit: args.api_rate_limit,
    };
    let (server, link) = ApiServer::start(config, snapshot).map_err(Error::usage)?;
    errln!(
        "control API on http://{} (docs/live.md, \"The control API\")",
        server.addr
    );
    Ok((server, (link, secrets)))
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
pub(super) struct Exchange {
    pub id: String,
    pub venue: Rc<RefCell<dyn Venue>>,
    pub rules: BTreeMap<String, MarketRules>,
    /// The quote currency every symbol shares: the book's cash.
    pub cash_asset: String,
    pub secrets: Vec<crate::live::config::Secret>,
}

pub(super) fn connect(
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
    config.ws_url = args.exchange_ws_url.clone();
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
pub(super) fn apply_market_rules(session: &SharedSession, rules: &BTreeMap<String, MarketRules>) {
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

/// The exchange broker of a session (one algorithm's, or a book's account), started: what an
/// earlier session left unresolved is resolved first; with a websocket feed, order updates by
/// websocket wake its polls. A broker that cannot start ends the run it was started for.
pub(super) fn start_exchange_broker(
    exchange: &Exchange,
    live_settings: &LiveSettings,
    state: &mut State,
    feed_mode: FeedMode,
) -> Result<Box<dyn Broker>, Error> {
    let started = ExchangeBroker::start(
        exchange.venue.clone(),
        exchange.id.clone(),
        exchange.cash_asset.clone(),
        exchange.rules.clone(),
        live_settings,
        state,
    );
    match started {
        Ok(broker) if feed_mode == FeedMode::Poll => Ok(Box::new(broker)),
        Ok(broker) => {
            // Order updates by websocket wake the broker's poll; without them it polls
            // every 2 s.
            let opened = exchange.venue.borrow_mut().open_account_stream();
            match opened {
                Ok(stream) => {
                    errln!(
                        "order updates: {} websocket stream (REST polls read them)",
                        exchange.id
                    );
                    Ok(Box::new(broker.with_orders_stream(stream)))
                }
                Err(e) => {
                    errln!(
                        "order updates: polling {} (no websocket stream: {})",
                        exchange.id,
                        e.message
                    );
                    Ok(Box::new(broker))
                }
            }
        }
        Err(e) => {
            let error = e.to_error(&state.journal_path);
            let _ = state.finish(&format!("failed to start: {error}"));
            Err(error)
        }
    }
}

/// `--broker ccxt:<id>` trades on that exchange's own candles: another exchange's feed or a
/// replay file is refused.
pub(super) fn check_broker_feed(broker: &BrokerChoice, feed: &FeedChoice) -> Result<(), Error> {
    if let BrokerChoice::Ccxt(id) = broker {
        match feed {
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
    Ok(())
}

/// The cash an exchange session starts with: the account's balance of its cash asset.
pub(super) fn exchange_cash(exchange: &Exchange) -> Result<rust_decimal::Decimal, Error> {
    let view = exchange
        .venue
        .borrow_mut()
        .account_view(&exchange.cash_asset)
        .map_err(|e| Error::Broker(format!("reading the account: {}", e.message)))?;
    Ok(view
        .balances
        .get(&exchange.cash_asset)
        .copied()
        .unwrap_or_default())
}

/// This process's command line, for the state folder's lock (a refused session names it).
pub(super) fn command_line() -> String {
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

pub(super) fn default_out_dir() -> PathBuf {
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
/// A replay file and its bars.
pub(super) type ReplayBars = Option<(PathBuf, Vec<BarSeries>)>;

/// A replay's bars (read before the state folder is touched), the state folder's lock, and
/// the feed's name for the results. One session per state folder, held while the returned lock
/// lives: refused at once (before Python starts) when another session holds it; a lock left by
/// a killed one is taken over.
pub(super) fn open_feed_and_state(
    feed_choice: &FeedChoice,
    symbols: &[String],
    interval_ns: i64,
    state_dir: &Path,
) -> Result<(ReplayBars, StateLock, String), Error> {
    let replay = match feed_choice {
        FeedChoice::Replay(path) => Some((path.clone(), load_replay(path, symbols, interval_ns)?)),
        FeedChoice::Ccxt(_) => None,
    };
    let state_lock = StateLock::acquire(state_dir, &command_line())?;
    if let Some(stale) = &state_lock.stale {
        errln!(
            "note: the state folder's lock was left by {stale}, which no longer runs (killed or \
             crashed); taking it over"
        );
    }
    let source = match feed_choice {
        FeedChoice::Replay(path) => path.display().to_string(),
        FeedChoice::Ccxt(id) => format!("ccxt:{id}"),
    };
    Ok((replay, state_lock, source))
}

/// The exit code of a session that ended with `end`, reporting a failure.
pub(super) fn exit_code_of_end(end: End, journal_path: &Path) -> ExitCode {
    match end {
        End::FeedDone | End::MaxBars | End::Signal => ExitCode::Success,
        End::Failed(e) => {
            report(&Error::Algorithm(e));
            ExitCode::Algorithm
        }
        End::Engine(message) => {
            report(&Error::Internal(message));
            ExitCode::Internal
        }
        End::Live(error) => {
            let error = error.to_error(journal_path);
            report(&error);
            error.exit_code()
        }
    }
}

pub(super) fn load_replay(
    path: &Path,
    symbols: &[String],
    interval_ns: i64,
) -> Result<Vec<BarSeries>, Error> {
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
