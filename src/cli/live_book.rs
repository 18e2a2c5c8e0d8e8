//! `rustybt live --portfolio FILE` (or `--algo a.py --algo b.py`): the wiring of a live book
//! (the portfolio file, the feed, the strategies' sessions, the state folder); the session
//! itself is `crate::live::book`, the book's step `crate::portfolio::BookStepper`. On paper,
//! each strategy has its own paper broker; on an exchange (`--broker ccxt:<id>`), the book
//! trades one account (`crate::live::book::AccountDesk`).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use rust_decimal::Decimal;

use super::LiveArgs;
use super::RunArgs;
use super::doctor::start_python;
use super::live::{
    BrokerChoice, Common, apply_market_rules, check_broker_feed, default_out_dir, exchange_cash,
    exit_code_of_end, open_exchange, open_feed_and_state, session_feed, start_api,
    start_exchange_broker, tap_api,
};
use super::portfolio::{
    AddedStrategies, Book, BookRun, allocator_of, build_book, code_dirs, read_spec, watch_own_file,
    write_book_results,
};
use crate::config::RunSettings;
use crate::data::BarSeries;
use crate::engine::lock;
use crate::error::{Error, ExitCode};
use crate::live::book::{AccountDesk, LiveBook, StrategyMaker};
use crate::live::recovery::{SessionStart, State};
use crate::live::session::{End, SessionOptions};
use crate::market::Market;
use crate::pipeline::session_on;
use crate::portfolio::change::spec_of;
use crate::portfolio::{AddRequest, BookRules, initial_capitals};
use crate::python::LogSink;

pub fn live_book(explicit_python: Option<&Path>, args: LiveArgs) -> Result<ExitCode, Error> {
    let refused = [
        (args.class_name.is_some(), "--class"),
        (!args.params.is_empty(), "--param"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(set, _)| *set) {
        return Err(Error::usage_with_hint(
            format!("`{flag}` is not available for a live book"),
            "give each strategy's class and parameters in the portfolio file (`class = \"...\"`, \
             `params = { ... }`)",
        ));
    }
    let spec = read_spec(args.portfolio.as_deref(), &args.algos)?;
    let Common {
        broker,
        feed_choice,
        interval_ns,
        feed_mode,
        symbols,
        live_settings,
    } = Common::parse(&args)?;
    check_broker_feed(&broker, &feed_choice)?;
    for s in &spec.strategies {
        if let Some(own) = &s.symbols {
            if let Some(missing) = own.iter().find(|x| !symbols.contains(x)) {
                return Err(Error::usage_with_hint(
                    format!(
                        "strategy `{}`: symbol `{missing}` is not in --symbols",
                        s.id
                    ),
                    format!("the session's symbols: {}", symbols.join(", ")),
                ));
            }
        }
    }
    let run_args = RunArgs {
        algo: vec![spec.strategies[0].algo.clone()],
        cash: args.cash.clone(),
        out: args.out.clone(),
        config: args.run_config.clone(),
        quiet: args.quiet,
        no_progress: true,
        ..Default::default()
    };
    let mut settings = RunSettings::resolve(&run_args)?;
    // The portfolio file's cash over the run config's; the `--cash` flag over both.
    if args.cash.is_none()
        && let Some(cash) = spec.cash
    {
        settings.cash = cash;
    }
    let paper = matches!(broker, BrokerChoice::Paper);
    let out_dir = args.out.clone().unwrap_or_else(default_out_dir);
    settings.out = Some(out_dir.clone());
    let (replay, state_lock, source) = open_feed_and_state(
        &feed_choice,
        &symbols,
        interval_ns,
        &live_settings.state_dir,
    )?;
    // The API listens from here on (/health answers while Python starts).
    let (api, api_link) = match &args.api {
        Some(addr) => {
            let (server, link) = start_api(addr, &args, &symbols, &source, &spec.source())?;
            (Some(server), Some(link))
        }
        None => (None, None),
    };
    let (code_dirs, portfolio_dir) = code_dirs(&spec);
    start_python(explicit_python, &code_dirs)?;
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
        // On an exchange, the book's capital is the account's cash balance.
        if let (Some(exchange), false) = (&exchange, paper) {
            settings.cash = exchange_cash(exchange)?;
        }
        let sink = Arc::new(LogSink {
            echo: !settings.quiet,
            echo_level: settings.log_level,
            ..Default::default()
        });
        let empty = |names: &[String]| -> Vec<BarSeries> {
            names
                .iter()
                .map(|s| BarSeries::empty(s.clone(), source.clone()))
                .collect()
        };
        let market_error = |e: crate::market::MarketError| Error::Market(e.to_string());
        let mut market = Market::live(empty(&symbols), interval_ns).map_err(market_error)?;
        let exchange_ref = exchange.as_ref();
        let make_session = move |own: &RunSettings,
                                 universe: &[String]|
              -> Result<crate::engine::SharedSession, Error> {
            let market = Market::live(empty(universe), interval_ns).map_err(market_error)?;
            let session = session_on(own, market)?;
            if let Some(exchange) = exchange_ref {
                apply_market_rules(&session, &exchange.rules);
            }
            // The exchange executes the orders: the engine never matches them.
            lock(&session).external_execution = !paper;
            Ok(session)
        };
        let weights: Vec<Decimal> = spec.strategies.iter().map(|s| s.weight).collect();
        let capitals = initial_capitals(settings.cash, &weights, settings.currency.decimals);
        let Book {
            mut members,
            mut parts,
            cross,
        } = build_book(py, &spec, &settings, &symbols, &capitals, &sink, &mut {
            make_session
        })?;
        for (m, (own, loaded, _)) in members.iter_mut().zip(&parts) {
            watch_own_file(&mut m.strategy, loaded, &own.params);
        }
        let mut rules = BookRules {
            spec: &spec,
            allocator: allocator_of(py, &spec, &portfolio_dir)?,
            money_dp: settings.currency.decimals,
            cross_section: Some(cross),
            added: Vec::new(),
        };
        let ids: Vec<String> = spec.strategies.iter().map(|s| s.id.clone()).collect();
        let mut secrets = exchange
            .as_ref()
            .map(|e| e.secrets.clone())
            .unwrap_or_default();
        let (api_link, audit_tap) = tap_api(api_link, &mut secrets);
        if let Some(link) = &api_link {
            let mut snapshot = (*link.shared.snapshot()).clone();
            snapshot.strategy.class = "portfolio".into();
            link.shared.set_snapshot(snapshot);
        }
        let mut state = State::open(
            &live_settings,
            SessionStart {
                algorithm: spec.source(),
                broker: &args.broker,
                paper,
                symbols: &symbols,
                timeframe: &args.timeframe,
                cash_currency: &cash_currency,
                initial_cash: settings.cash,
                reset_breaker: args.reset_breaker,
                secrets,
                audit_tap,
                strategies: Some(&ids),
            },
        )?;
        // A book restarts from its genesis capitals: the journal's initial cash.
        if let Some(initial) = state.initial_cash
            && initial != settings.cash
        {
            let capitals = initial_capitals(initial, &weights, settings.currency.decimals);
            for (m, capital) in members.iter_mut().zip(capitals) {
                m.initial_capital = capital;
            }
            settings.cash = initial;
        }
        // The strategies operators added in earlier sessions, after the file's, as added.
        let added_parts = RefCell::new(Vec::new());
        let mut maker = AddedStrategies {
            py,
            settings: &settings,
            names: &symbols,
            sink: sink.clone(),
            session_of: Box::new(make_session),
            parts: &added_parts,
        };
        for (id, json) in &state.added {
            let request: AddRequest = serde_json::from_str(json).map_err(|e| {
                Error::Internal(format!(
                    "the journal's record of strategy `{id}` (added through the control API) is not readable: {e}"
                ))
            })?;
            let universe = match &request.symbols {
                Some(own) => {
                    if let Some(missing) = own.iter().find(|x| !symbols.contains(x)) {
                        return Err(Error::usage_with_hint(
                            format!(
                                "strategy `{id}` (added through the control API) trades `{missing}`, which is not in --symbols"
                            ),
                            "start the book with the symbols it had",
                        ));
                    }
                    symbols
                        .iter()
                        .filter(|n| own.contains(n))
                        .cloned()
                        .collect()
                }
                None => symbols.clone(),
            };
            let member = maker.make(&request, &universe).map_err(|e| {
                Error::usage(format!(
                    "strategy `{id}` (added through the control API) cannot be loaded again: {e}"
                ))
            })?;
            rules.added.push(spec_of(
                &request,
                &universe,
                request.weight.unwrap_or_default(),
            ));
            members.push(member);
        }
        let feed = session_feed(
            replay,
            exchange.as_ref(),
            &args,
            feed_mode,
            &symbols,
            interval_ns,
            &mut state,
        )?;
        let account = match (&exchange, paper) {
            (Some(exchange), false) => {
                let session = make_session(&settings, &symbols)?;
                let broker =
                    start_exchange_broker(exchange, &live_settings, &mut state, feed_mode)?;
                Some(AccountDesk::new(
                    broker,
                    session,
                    exchange.cash_asset.clone(),
                    &exchange.rules,
                ))
            }
            _ => None,
        };
        let options = SessionOptions {
            max_bars: args.max_bars,
            wall_clock: exchange.is_some(),
            status_line: live_settings.status_line,
        };
        errln!(
            "live book: {} strategies ({}) on {source}, {}",
            members.len(),
            members
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            match paper {
                true => "paper".to_string(),
                false => format!("one account at {}", args.broker),
            }
        );
        let started = Instant::now();
        let (book, end, start_equity, opened_with) = {
            let mut live = LiveBook::new(
                &mut market,
                &mut members,
                &mut rules,
                &mut state,
                feed,
                sink.clone(),
                options,
            );
            if let Some(link) = api_link {
                live.set_api(link);
            }
            live.set_maker(Box::new(maker));
            if let Some(account) = account {
                live.set_account(account);
            }
            let (book, end) = live.run();
            live.status.clear();
            (book, end, live.start_equity(), live.opened_with())
        };
        // What the added strategies' results need (the last build of each id that joined).
        let mut added_parts = added_parts.into_inner();
        for m in &members[parts.len()..] {
            let Some(k) = added_parts.iter().rposition(|(id, _)| id == &m.id) else {
                return Err(Error::Internal(format!(
                    "strategy `{}` was added without its settings",
                    m.id
                )));
            };
            parts.push(added_parts.remove(k).1);
        }
        let spec = rules.full_spec();
        let wall_seconds = started.elapsed().as_secs_f64();
        let storage_failed = matches!(&end, End::Live(e) if e.storage().is_some());
        let reason = end.reason();
        if !storage_failed {
            state.finish(&reason)?;
        }
        // The results are this session's: each strategy measured from its equity at the start.
        for ((own, _, _), start) in parts.iter_mut().zip(&start_equity) {
            own.cash = *start;
        }
        if !start_equity.is_empty() {
            // Strategies added during the session were funded from inside the account.
            settings.cash = start_equity[..opened_with.min(start_equity.len())]
                .iter()
                .copied()
                .sum::<Decimal>();
        }
        write_book_results(
            py,
            BookRun {
                spec: &spec,
                settings: &settings,
                parts: &parts,
                files: vec![source.clone()],
                out_dir: out_dir.clone(),
                wall_seconds,
                paced: true,
                sink: &sink,
                names: &symbols,
                market: &market,
            },
            &mut members,
            &book,
        )?;
        let orders: usize = members
            .iter()
            .map(|m| lock(&m.session).orders.all().len())
            .sum();
        errln!(
            "live book ended ({reason}); {} bars, {orders} orders; journal {}, results in {}",
            book.bars,
            state.journal_path.display(),
            out_dir.display()
        );
        if let Some(server) = api {
            // Event streams get every event up to `stop` before the process exits.
            server.finish(std::time::Duration::from_secs(5));
        }
        drop(state_lock);
        Ok(exit_code_of_end(end, &state.journal_path))
    })
}
