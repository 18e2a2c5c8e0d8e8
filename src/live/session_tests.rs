//! The session, the brokers and the recovery in Rust, without Python: a scripted
//! [`LiveStrategy`] traded on a replay feed by the paper broker, and the exchange broker
//! against an in-process exchange (a small but real order book: it keeps orders, fills and
//! balances and answers the [`Venue`] calls from them).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use rust_decimal::dec;

use super::*;
use crate::data::{BarSeries, Column};
use crate::engine::Session;
use crate::error::ExitCode;
use crate::execution::CommissionModel;
use crate::live::broker::exchange::ExchangeBroker;
use crate::live::broker::paper::PaperBroker;
use crate::live::config::LiveSettings;
use crate::live::feed::ReplayFeed;
use crate::live::journal::JournalError;
use crate::live::reconcile::AccountView;
use crate::live::recovery::{SessionStart, State, restore_ledger};
use crate::live::venue::{
    Candle, MarketRules, Venue, VenueError, VenueErrorKind, VenueEvent, VenueFill, VenueOrder,
};
use crate::market::Market;
use crate::model::OrderSide;

const MIN: i64 = 60_000_000_000;

fn series(prices: &[&str]) -> BarSeries {
    let column = |p: &[&str]| Column::parse_texts(p).unwrap();
    BarSeries {
        symbol: "X".into(),
        source: PathBuf::from("X.csv"),
        time: (0..prices.len() as i64)
            .map(|m| m * MIN)
            .collect::<Vec<_>>()
            .into(),
        open: column(prices),
        high: column(prices),
        low: column(prices),
        close: column(prices),
        volume: column(&vec!["1"; prices.len()]),
    }
}

fn shared_session(cash: Decimal) -> SharedSession {
    let market = Market::live(vec![BarSeries::empty("X", "X.csv")], MIN).unwrap();
    Session::new(market, cash, CommissionModel::default()).into_shared()
}

fn settings(dir: &Path) -> LiveSettings {
    let mut settings = LiveSettings::from_toml("").unwrap();
    settings.state_dir = dir.to_path_buf();
    settings.breakers.halt_file = None;
    settings
}

fn open_state(dir: &Path, paper: bool, cash: Decimal) -> State {
    open_state_of(dir, paper, cash, None).unwrap()
}

/// A state folder opened for one algorithm (`strategies` `None`) or a book.
fn open_state_of(
    dir: &Path,
    paper: bool,
    cash: Decimal,
    strategies: Option<&[String]>,
) -> Result<State, crate::error::Error> {
    let symbols = vec!["X".to_string()];
    State::open(
        &settings(dir),
        SessionStart {
            algorithm: "script".into(),
            broker: if paper { "paper" } else { "ccxt:stand-in" },
            paper,
            symbols: &symbols,
            timeframe: "1m",
            cash_currency: "USD",
            initial_cash: cash,
            reset_breaker: false,
            secrets: Vec::new(),
            audit_tap: None,
            strategies,
        },
    )
}

#[test]
fn a_state_folder_is_reopened_only_by_its_own_kind() {
    let book = ["a".to_string(), "b".to_string()];
    let other = ["a".to_string(), "c".to_string()];
    let refused = |dir: &Path, strategies: Option<&[String]>, made: &str| {
        let runs = Journal::open(dir.join("journal.sqlite"))
            .unwrap()
            .runs()
            .unwrap();
        let err = open_state_of(dir, true, dec!(1000), strategies)
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert!(err.to_string().contains(made), "{err}");
        // Refused before anything is written.
        let after = Journal::open(dir.join("journal.sqlite"))
            .unwrap()
            .runs()
            .unwrap();
        assert_eq!(after, runs);
    };
    let single = tempfile::tempdir().unwrap();
    open_state(single.path(), true, dec!(1000))
        .finish("done")
        .unwrap();
    refused(
        single.path(),
        Some(&book),
        "made by a session of one algorithm",
    );
    open_state(single.path(), true, dec!(1000))
        .finish("done")
        .unwrap();

    let books = tempfile::tempdir().unwrap();
    let mut state = open_state_of(books.path(), true, dec!(1000), Some(&book)).unwrap();
    state.finish("done").unwrap();
    drop(state);
    refused(
        books.path(),
        None,
        "made by a session of a book of strategies a, b",
    );
    refused(
        books.path(),
        Some(&other),
        "this session hosts a book of strategies a, c",
    );
    let again = open_state_of(books.path(), true, dec!(1000), Some(&book)).unwrap();
    assert_eq!(
        again.journal.runs().unwrap()[1].strategies.as_deref(),
        Some(&book[..])
    );
}

fn sink() -> Arc<LogSink> {
    Arc::new(LogSink {
        lines: Mutex::new(Vec::new()),
        echo: false,
        echo_level: crate::console::LogLevel::Error,
    })
}

/// Buys one unit at the given ticks (1-based), sells one at others; remembers what it saw.
struct Script {
    session: SharedSession,
    buy_at: Vec<u64>,
    sell_at: Vec<u64>,
    ticks: u64,
    fills: Vec<Fill>,
    /// Control API actions sent at the given ticks (as an operator would, between bars).
    actions: Vec<(u64, crate::live::api::Action)>,
    commands: Option<std::sync::mpsc::Sender<crate::live::api::Command>>,
    replies: Vec<std::sync::mpsc::Receiver<crate::live::api::Reply>>,
}

impl Script {
    fn new(session: &SharedSession, buy_at: &[u64], sell_at: &[u64]) -> Self {
        Script {
            session: session.clone(),
            buy_at: buy_at.to_vec(),
            sell_at: sell_at.to_vec(),
            ticks: 0,
            fills: Vec::new(),
            actions: Vec::new(),
            commands: None,
            replies: Vec::new(),
        }
    }
}

impl Strategy for Script {
    fn initialize(&mut self) -> Result<(), Stop> {
        Ok(())
    }
    fn on_fill(&mut self, fill: &Fill) -> Result<(), Stop> {
        self.fills.push(fill.clone());
        Ok(())
    }
    fn on_tick(&mut self) -> Result<(), Stop> {
        self.ticks += 1;
        let mut s = lock(&self.session);
        if self.buy_at.contains(&self.ticks) {
            s.submit_market_order("X", OrderSide::Buy, dec!(1)).unwrap();
        }
        if self.sell_at.contains(&self.ticks) {
            s.submit_market_order("X", OrderSide::Sell, dec!(1))
                .unwrap();
        }
        for (_, action) in self.actions.iter().filter(|(at, _)| *at == self.ticks) {
            let (reply, replies) = std::sync::mpsc::sync_channel(1);
            let command = crate::live::api::Command {
                action: action.clone(),
                by: "ops".into(),
                reply,
            };
            self.commands.as_ref().unwrap().send(command).unwrap();
            self.replies.push(replies);
        }
        Ok(())
    }
    fn on_stop(&mut self) -> Result<(), Stop> {
        Ok(())
    }
    fn check_interrupt(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

impl LiveStrategy for Script {
    fn run_schedules_at(&mut self, _: TimestampNs) -> Result<bool, Stop> {
        Ok(false)
    }
    fn save_state(&mut self, _: &[(OrderId, String)]) -> Result<SavedState, SaveFailure> {
        Ok(SavedState {
            format: "ticks".into(),
            data: self.ticks.to_le_bytes().to_vec(),
            skipped: Vec::new(),
        })
    }
    fn restore_state(
        &mut self,
        saved: &AlgoState,
        _: &HashMap<String, OrderId>,
        _: &Journal,
    ) -> Result<Restored, String> {
        self.ticks = u64::from_le_bytes(saved.data.as_slice().try_into().unwrap());
        Ok(Restored {
            restored: "ticks".into(),
            rebound: 0,
            not_restored: String::new(),
        })
    }
    fn reload_events(&self) -> &[ReloadEvent] {
        &[]
    }
}

fn options() -> SessionOptions {
    SessionOptions {
        max_bars: None,
        wall_clock: false,
        status_line: false,
    }
}

/// One paper session over `prices` (1m bars from 00:00) on the state folder `dir`.
fn paper_session(
    dir: &Path,
    prices: &[&str],
    buy_at: &[u64],
    sell_at: &[u64],
) -> (SharedSession, Script, BacktestOutcome, State) {
    let session = shared_session(dec!(1000));
    let mut state = open_state(dir, true, dec!(1000));
    let mut script = Script::new(&session, buy_at, sell_at);
    let feed = ReplayFeed::new("X.csv".into(), vec![series(prices)], MIN, 0.0);
    let (outcome, end) = {
        let mut live = LiveSession::new(
            session.clone(),
            &mut state,
            Box::new(PaperBroker::new()),
            Box::new(feed),
            &mut script,
            sink(),
            options(),
        );
        live.run()
    };
    assert!(matches!(end, End::FeedDone), "{}", end.reason());
    state.finish(&end.reason()).unwrap();
    (session, script, outcome, state)
}

#[test]
fn the_paper_broker_fills_at_the_next_bars_open_never_earlier() {
    let dir = tempfile::tempdir().unwrap();
    let prices = ["10", "11", "12", "13", "14"];
    let (_, script, outcome, state) = paper_session(dir.path(), &prices, &[1, 3], &[]);
    // Decided at the close of bar k (ticks are 1-based): filled at the open of bar k+1.
    let fills = state.journal.fills().unwrap();
    let times: Vec<(TimestampNs, Decimal)> =
        fills.iter().map(|(_, _, f)| (f.time, f.price)).collect();
    assert_eq!(times, vec![(MIN, dec!(11)), (3 * MIN, dec!(13))]);
    assert_eq!(outcome.fills.len(), 2);
    assert_eq!(script.fills.len(), 2);
    for (fill, (_, _, record)) in script.fills.iter().zip(&fills) {
        assert_eq!((fill.time, fill.price), (record.time, record.price));
    }
    // Every order journaled as intent → sent → acknowledged → filled, none left open.
    let orders = state.journal.orders().unwrap();
    assert_eq!(orders.len(), 2);
    assert!(orders.iter().all(|o| o.status.as_deref() == Some("filled")));
}

#[test]
fn an_order_decided_on_the_last_bar_is_cancelled_at_the_end_not_filled() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _, state) = paper_session(dir.path(), &["10", "11"], &[2], &[]);
    assert!(state.journal.fills().unwrap().is_empty());
    let [order] = state.journal.orders().unwrap().try_into().unwrap();
    assert_eq!(order.status.as_deref(), Some("cancelled"));
}

#[test]
fn a_restart_restores_the_paper_ledger_the_journal_holds() {
    let dir = tempfile::tempdir().unwrap();
    let prices = ["10", "11.5", "12.25", "9", "14", "15"];
    let (session, _, _, state) = paper_session(dir.path(), &prices, &[1, 2, 4], &[3]);
    let (cash, position) = {
        let s = lock(&session);
        (
            s.ledger.cash(),
            s.ledger.position(SymbolId(0)).unwrap().quantity,
        )
    };
    assert_eq!(position, dec!(2));
    assert_eq!(
        cash,
        dec!(1000) - dec!(11.5) - dec!(12.25) + dec!(9) - dec!(14)
    );
    drop(state);

    // The next session's broker opens the book from the journal alone.
    let restored = shared_session(dec!(1000));
    let mut state = open_state(dir.path(), true, dec!(1000));
    let news = PaperBroker::new().open_book(&mut state, &restored).unwrap();
    assert_eq!(
        news.notices,
        vec![format!(
            "restored the paper book from 4 journaled fills: cash {cash}"
        )]
    );
    let s = lock(&restored);
    assert_eq!(s.ledger.cash(), cash);
    assert_eq!(s.ledger.position(SymbolId(0)).unwrap().quantity, position);
    // The trade the first session closed is its own, not the restart's.
    assert!(s.ledger.closed_trades().is_empty());
    // And the restart continues after the last bar traded.
    assert_eq!(state.resume_after, Some(6 * MIN));
}

#[test]
fn a_journal_with_fills_of_an_unlisted_symbol_is_refused_as_a_usage_error() {
    let market = Market::live(vec![BarSeries::empty("X", "X.csv")], MIN).unwrap();
    let record = crate::live::journal::FillRecord {
        client_order_id: "r1-1".into(),
        trade_id: "1".into(),
        quantity: dec!(1),
        price: dec!(10),
        fee: dec!(0),
        fee_asset: None,
        time: 0,
    };
    let error =
        restore_ledger(&market, dec!(100), &[("Y".into(), "buy".into(), record)]).unwrap_err();
    assert!(matches!(&error, LiveError::UnlistedSymbol { symbol, .. } if symbol == "Y"));
    let error = error.to_error(Path::new("j"));
    assert_eq!(error.exit_code(), ExitCode::Usage);
    assert!(
        error
            .to_string()
            .contains("`Y`, which --symbols does not list"),
        "{error}"
    );
}

#[test]
fn each_session_failure_has_its_exit_code() {
    let journal = Path::new("st/journal.sqlite");
    let locked = JournalError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("database is locked".into()),
    ));
    let cases: Vec<(LiveError, ExitCode)> = vec![
        (LiveError::Journal(locked), ExitCode::Storage),
        (
            LiveError::Journal(JournalError::UnknownOrder("r1-1".into())),
            ExitCode::Internal,
        ),
        (
            LiveError::venue(
                "sending r1-1",
                VenueError::new(VenueErrorKind::Unavailable, "down"),
            ),
            ExitCode::Broker,
        ),
        (LiveError::Feed("bad price".into()), ExitCode::Data),
        (
            LiveError::UnlistedSymbol {
                symbol: "Y".into(),
                what: "fills".into(),
            },
            ExitCode::Usage,
        ),
        (LiveError::Settings("bad rule".into()), ExitCode::Usage),
        (
            LiveError::Breaker(crate::live::breakers::BreakerError::Config("x".into())),
            ExitCode::Usage,
        ),
        (
            LiveError::Ledger(crate::accounting::LedgerError::Overflow("adding")),
            ExitCode::Internal,
        ),
    ];
    for (error, code) in cases {
        let text = error.to_string();
        let user = error.to_error(journal);
        assert_eq!(user.exit_code(), code, "{text}");
        if code == ExitCode::Storage {
            assert!(user.to_string().contains("st/journal.sqlite"), "{user}");
        }
    }
}

#[test]
fn a_bad_price_in_the_feed_ends_the_session_with_a_data_error() {
    let dir = tempfile::tempdir().unwrap();
    let session = shared_session(dec!(1000));
    let mut state = open_state(dir.path(), true, dec!(1000));
    let mut script = Script::new(&session, &[], &[]);
    let mut bad = series(&["10", "11"]);
    bad.close = Column::parse_texts(&["10", "-1"]).unwrap();
    let feed = ReplayFeed::new("X.csv".into(), vec![bad], MIN, 0.0);
    let mut live = LiveSession::new(
        session.clone(),
        &mut state,
        Box::new(PaperBroker::new()),
        Box::new(feed),
        &mut script,
        sink(),
        options(),
    );
    let (_, end) = live.run();
    let End::Live(error) = end else {
        panic!("{}", end.reason())
    };
    assert_eq!(error.to_error(Path::new("j")).exit_code(), ExitCode::Data);
}

/// An exchange in the process: orders by client id, their fills, a balance.
#[derive(Default)]
struct StandIn {
    orders: BTreeMap<String, VenueOrder>,
    fills: Vec<VenueFill>,
    cash: Decimal,
    position: Decimal,
}

impl Venue for StandIn {
    fn markets(&mut self, _: &[String]) -> Result<BTreeMap<String, MarketRules>, VenueError> {
        unreachable!("the broker does not load markets")
    }
    fn closed_candles(
        &mut self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        Ok(Vec::new())
    }
    fn submit(&mut self, _: &OrderIntent, _: Option<Decimal>) -> Result<VenueOrder, VenueError> {
        Err(VenueError::new(VenueErrorKind::Unavailable, "closed"))
    }
    fn resume(&mut self, intent: &OrderIntent, _: i64) -> Result<VenueOrder, VenueError> {
        self.lookup(&intent.client_order_id, &intent.symbol)?
            .ok_or_else(|| VenueError::new(VenueErrorKind::UnknownOrder, "unknown"))
    }
    fn lookup(&mut self, client_order_id: &str, _: &str) -> Result<Option<VenueOrder>, VenueError> {
        Ok(self.orders.get(client_order_id).cloned())
    }
    fn cancel(&mut self, client_order_id: &str, _: &str) -> Result<VenueOrder, VenueError> {
        self.orders
            .get(client_order_id)
            .cloned()
            .ok_or_else(|| VenueError::new(VenueErrorKind::UnknownOrder, "unknown"))
    }
    fn open_orders(&mut self) -> Result<Vec<VenueOrder>, VenueError> {
        Ok(self
            .orders
            .values()
            .filter(|o| o.status.is_open())
            .cloned()
            .collect())
    }
    fn fills(
        &mut self,
        _: &str,
        from: Option<&str>,
        _: Option<i64>,
    ) -> Result<Vec<VenueFill>, VenueError> {
        let start = from
            .and_then(|id| self.fills.iter().position(|f| f.trade_id == id))
            .unwrap_or(0);
        Ok(self.fills[start..].to_vec())
    }
    fn account_view(&mut self, cash_asset: &str) -> Result<AccountView, VenueError> {
        let mut view = AccountView::default();
        view.balances.insert(cash_asset.to_string(), self.cash);
        view.positions.insert("X".into(), self.position);
        Ok(view)
    }
    fn take_events(&mut self) -> Vec<VenueEvent> {
        Vec::new()
    }
}

#[test]
fn order_sync_journals_the_fills_an_exchange_made_while_no_session_ran() {
    let dir = tempfile::tempdir().unwrap();
    // An earlier session placed r1-1 (buy 2 X), acknowledged; then it died.
    let mut state = open_state(dir.path(), false, dec!(100));
    let intent = OrderIntent {
        client_order_id: "r1-1".into(),
        symbol: "X".into(),
        side: OrderSide::Buy,
        quantity: dec!(2),
        order_type: OrderType::Market,
        limit_price: None,
        stop_price: None,
        time_in_force: journal::TimeInForce::Gtc,
        created_at: 0,
    };
    state.journal.record_intent(&intent).unwrap();
    state.journal.mark_sent("r1-1", 1).unwrap();
    state.journal.record_ack("r1-1", "ex-1", 2).unwrap();
    drop(state);

    // Meanwhile the exchange filled it, in two trades.
    let venue_fill = |trade: &str, quantity: Decimal, price: Decimal| VenueFill {
        trade_id: trade.into(),
        exchange_order_id: "ex-1".into(),
        client_order_id: Some("r1-1".into()),
        symbol: "X".into(),
        side: OrderSide::Buy,
        quantity,
        price,
        fee: dec!(0),
        fee_asset: "USD".into(),
        time_ms: wall_ns() / 1_000_000,
        is_maker: false,
    };
    let mut stand_in = StandIn {
        cash: dec!(100) - dec!(10) - dec!(11),
        position: dec!(2),
        ..Default::default()
    };
    stand_in.fills = vec![
        venue_fill("t1", dec!(1), dec!(10)),
        venue_fill("t2", dec!(1), dec!(11)),
    ];
    let filled = VenueOrder {
        client_order_id: "r1-1".into(),
        exchange_order_id: "ex-1".into(),
        symbol: "X".into(),
        side: OrderSide::Buy,
        order_type: "market".into(),
        status: OrderStatus::Filled,
        raw_status: "closed".into(),
        quantity: dec!(2),
        filled: dec!(2),
        limit_price: None,
        average_price: Some(dec!(10.5)),
        fees: Vec::new(),
        reason: None,
        time_ms: None,
    };
    stand_in.orders.insert("r1-1".into(), filled);
    let venue: Rc<RefCell<dyn Venue>> = Rc::new(RefCell::new(stand_in));

    let mut state = open_state(dir.path(), false, dec!(100));
    let rule = MarketRules {
        exchange_symbol: "X".into(),
        base: "X".into(),
        quote: "USD".into(),
        active: true,
        tick_size: None,
        lot_step: None,
        min_qty: None,
        max_qty: None,
        min_price: None,
        max_price: None,
        min_notional: None,
        max_notional: None,
    };
    let rules = BTreeMap::from([("X".to_string(), rule)]);
    let session = shared_session(dec!(100));
    let mut broker = ExchangeBroker::start(
        venue,
        "stand-in".into(),
        "USD".into(),
        rules,
        &settings(dir.path()),
        &mut state,
    )
    .unwrap();
    let news = broker.open_book(&mut state, &session).unwrap();
    assert!(
        news.notices
            .contains(&"2 fills made while no session ran are journaled".to_string()),
        "{:?}",
        news.notices
    );
    let fills = state.journal.fills().unwrap();
    assert_eq!(fills.len(), 2);
    let book = state.journal.derive_book().unwrap();
    assert_eq!(book.cash, dec!(79));
    assert_eq!(book.position("X"), dec!(2));
    // The position waits for its first price; the cash is the journal's at once.
    assert_eq!(lock(&session).ledger.cash(), dec!(79));
    assert_eq!(broker.unseeded().get("X"), Some(&dec!(2)));
    broker.on_bar(&session, &[(SymbolId(0), dec!(12))]).unwrap();
    let s = lock(&session);
    assert_eq!(s.ledger.cash(), dec!(79));
    assert_eq!(s.ledger.position(SymbolId(0)).unwrap().quantity, dec!(2));
    drop(s);
    // The journal agrees with the exchange: a clean reconciliation.
    let [(_, outcome, _)] = state.journal.reconciliations().unwrap().try_into().unwrap();
    assert_eq!(outcome, "clean");
    // A second poll journals nothing twice (the last trade id is where it starts).
    let mut state_again = state;
    broker.poll(&mut state_again, &session).unwrap();
    assert_eq!(state_again.journal.fills().unwrap().len(), 2);
}

/// The control API's actions, applied by the loop between bars: a halt refuses the orders
/// placed after it (with the reason), a resume accepts them again, a flatten closes the
/// position (sent although it is the operator's, not the algorithm's); each is journaled and
/// audited with the token's name, and the event stream sees every audit event.
#[test]
fn api_actions_are_applied_between_bars_journaled_and_streamed() {
    use crate::live::api::{Action, Phase, SessionLink, Shared, Snapshot};
    let dir = tempfile::tempdir().unwrap();
    let session = shared_session(dec!(1000));
    let shared = Shared::new(Snapshot::empty("paper", "X.csv", &["X".into()], "script"));
    let stream = shared.hub().subscribe(Some(0)).unwrap();
    let mut state = {
        let symbols = vec!["X".to_string()];
        let hub = shared.clone();
        State::open(
            &settings(dir.path()),
            SessionStart {
                algorithm: "script".into(),
                broker: "paper",
                paper: true,
                symbols: &symbols,
                timeframe: "1m",
                cash_currency: "USD",
                initial_cash: dec!(1000),
                reset_breaker: false,
                secrets: Vec::new(),
                audit_tap: Some(crate::live::audit::Tap::new(move |line| {
                    hub.hub().publish(line)
                })),
                strategies: None,
            },
        )
        .unwrap()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // Queued before the session starts: applied at its first safe point, before bar 1.
    let (first_reply, first) = std::sync::mpsc::sync_channel(1);
    tx.send(crate::live::api::Command {
        action: Action::Halt {
            reason: "maintenance".into(),
            cancel_open_orders: false,
        },
        by: "ops".into(),
        reply: first_reply,
    })
    .unwrap();
    let mut script = Script::new(&session, &[1, 3, 4], &[]);
    script.commands = Some(tx);
    script.actions = vec![
        (2, Action::Resume),
        (5, Action::Flatten { symbol: None }),
        (6, Action::Reconcile),
        (
            6,
            Action::Flatten {
                symbol: Some("Y".into()),
            },
        ),
    ];
    let prices = ["10", "11", "12", "13", "14", "15", "16", "17"];
    let feed = ReplayFeed::new("X.csv".into(), vec![series(&prices)], MIN, 0.0);
    let (outcome, end) = {
        let mut live = LiveSession::new(
            session.clone(),
            &mut state,
            Box::new(PaperBroker::new()),
            Box::new(feed),
            &mut script,
            sink(),
            options(),
        );
        live.set_api(SessionLink {
            commands: rx,
            shared: shared.clone(),
            last_publish: None,
        });
        live.run()
    };
    assert!(matches!(end, End::FeedDone), "{}", end.reason());
    state.finish(&end.reason()).unwrap();
    shared.hub().close();

    let halted = first.recv().unwrap();
    assert_eq!(halted.status, 200, "{:?}", halted.body);
    assert_eq!(halted.body["trip"]["kind"], "manual");
    let replies: Vec<_> = script.replies.iter().map(|r| r.recv().unwrap()).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 409, 404], "{replies:?}");
    assert_eq!(replies[0].body["cleared"]["kind"], "manual");
    assert_eq!(replies[1].body["orders"][0]["side"], "sell");
    assert_eq!(replies[1].body["orders"][0]["quantity"], "2");

    // The buy at bar 1 was refused with the halt's reason; those at 3 and 4 filled at the
    // next opens, and the flatten after bar 5 sold both at bar 6's open.
    let s = lock(&session);
    let orders = s.orders.all();
    assert_eq!(orders[0].status, OrderStatus::Rejected);
    let reason = orders[0].reason.as_deref().unwrap();
    assert!(
        reason.starts_with("trading halted: manual breaker tripped at ")
            && reason.ends_with("maintenance (through the control API)"),
        "{reason}"
    );
    let fills: Vec<(OrderSide, Decimal, Decimal)> = outcome
        .fills
        .iter()
        .map(|f| (f.side, f.quantity, f.price))
        .collect();
    assert_eq!(
        fills,
        [
            (OrderSide::Buy, dec!(1), dec!(13)),
            (OrderSide::Buy, dec!(1), dec!(14)),
            (OrderSide::Sell, dec!(2), dec!(15)),
        ]
    );
    assert!(s.ledger.position(SymbolId(0)).unwrap().quantity.is_zero());
    assert_eq!(s.halted, None);
    drop(s);

    // Journaled with the token's name and the answer.
    let db = rusqlite::Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let mut statement = db
        .prepare("SELECT token, action, status FROM control_actions ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String, u16)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [
        ("halt", 200),
        ("resume", 200),
        ("flatten", 200),
        ("reconcile", 409),
        ("flatten", 404),
    ];
    assert_eq!(
        rows,
        expected.map(|(a, s)| ("ops".to_string(), a.to_string(), s))
    );

    // The stream is the audit log, event for event, numbered from 0.
    let streamed: Vec<String> = stream.try_iter().map(|e| e.to_string()).collect();
    let logged = crate::live::audit::read_events(&dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(streamed.len(), logged.len());
    for (seq, (line, event)) in streamed.iter().zip(&logged).enumerate() {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["seq"], seq as u64);
        value.as_object_mut().unwrap().remove("seq");
        assert_eq!(value, serde_json::to_value(event).unwrap());
    }
    let controls = logged
        .iter()
        .filter(|e| e.kind == crate::live::audit::AuditKind::Control)
        .count();
    assert_eq!(controls, 5);

    // The last snapshot: stopped, flat, every fill.
    let snapshot = shared.snapshot();
    assert_eq!(snapshot.phase, Phase::Stopped);
    assert_eq!(snapshot.end.as_deref(), Some("end of feed"));
    assert!(snapshot.positions.is_empty());
    assert_eq!(snapshot.fills.len(), 3);
    assert_eq!((snapshot.orders.len(), snapshot.orders_total), (4, 4));
    assert_eq!(snapshot.bars, 8);
}
