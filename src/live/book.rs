//! A live book (`rustybt live --portfolio FILE --broker paper`): the strategies of a portfolio
//! file on one feed, each in its own session (sub-ledger, order book) over its universe,
//! stepped by the backtest book's own [`BookStepper`], so a paper replay of a book trades
//! exactly as `rustybt run --portfolio` does.
//!
//! The loop is the single-algorithm session's (`super::session`) with a book where that has
//! one algorithm: every bar is appended to the book's market and to each strategy's, the
//! stepper runs the close time, then each strategy's new orders are journaled with its id and
//! handed to its own [`PaperBroker`]. A checkpoint holds, in one transaction, the account's
//! book, each strategy's book, algorithm state and open paper orders, and the book's own state
//! (rebalancing, units, limits: [`SavedBook`]); a restart rebuilds each strategy's ledger from
//! its genesis capital, its journaled fills and the cash rebalancing moved to it.
//!
//! On an exchange (`--broker ccxt:<id>`) the book trades one account through an
//! [`AccountDesk`] instead of the paper brokers: see `book_account.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;

use super::api::SessionLink;
use super::breakers::Trip;
use super::broker::Broker;
use super::broker::paper::PaperBroker;
use super::error::LiveError;
use super::feed::{Batch, Feed, Poll};
use super::journal::{Book, CheckpointPart};
use super::recovery::{State, engine_book};
use super::session::{
    End, Halt, LiveStrategy, LoopStats, SessionOptions, announce_halt, audit_new_lines, bar_texts,
    halt_file_due, journal_and_send, new_orders, refuse_order, report_restore, report_warm_up,
    take_saved_state, traded_before,
};
use super::status::StatusLine;
use super::wall_ns;
use crate::above_status;
use crate::engine::{Stop, lock};
use crate::market::{Market, Tick};
use crate::model::{OrderId, OrderStatus, SymbolId, TimestampNs, format_timestamp};
use crate::portfolio::{BookOutcome, BookRules, BookStepper, Member, SavedBook};
use crate::python::LogSink;

#[path = "book_account.rs"]
mod book_account;
#[path = "book_api.rs"]
mod book_api;
pub use book_account::AccountDesk;
pub use book_api::StrategyMaker;

/// Longest time between two journal checkpoints (as a single-algorithm paper session).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest wait between two looks at signals and the halt file.
const IDLE_SLICE: std::time::Duration = std::time::Duration::from_millis(200);

/// One strategy's side of the session: its paper broker and the orders it journaled.
#[derive(Default)]
struct Seat {
    broker: PaperBroker,
    /// Orders of the strategy's order book already looked at (the book only appends).
    seen: usize,
    client_ids: HashMap<OrderId, String>,
    /// Orders (with client ids) its state saver has not been told about yet.
    unsaved_ids: Vec<(OrderId, String)>,
    skipped_warned: bool,
    /// Hot reloads of its file already in the audit log.
    audited_reloads: usize,
}

impl Seat {
    /// One of strategy `m`'s orders journaled with its id and sent to its broker.
    fn send<S>(
        &mut self,
        state: &mut State,
        m: &Member<S>,
        order: &crate::model::Order,
        symbol: &str,
        last_close: Option<Decimal>,
        stats: &mut LoopStats,
    ) -> Result<(), LiveError> {
        let client_id = journal_and_send(
            state,
            &mut self.broker,
            &m.session,
            order,
            symbol,
            last_close,
            Some(&m.id),
            None,
            stats,
        )?;
        self.client_ids.insert(order.id, client_id.clone());
        self.unsaved_ids.push((order.id, client_id));
        Ok(())
    }

    /// Every order of the strategy known by client id: placed now, or taken back.
    fn all_client_ids(&self) -> HashMap<OrderId, String> {
        let mut ids = self.client_ids.clone();
        for (client_id, id) in self.broker.client_ids() {
            ids.insert(id, client_id);
        }
        ids
    }
}

pub struct LiveBook<'a, 'r, S: LiveStrategy> {
    /// Every symbol of the book (the account's benchmark and the shared cross-section read it).
    market: &'a mut Market,
    /// The file's strategies, then those operators add (`POST /strategies`).
    members: &'a mut Vec<Member<S>>,
    rules: &'a mut BookRules<'r>,
    stepper: Option<BookStepper>,
    seats: Vec<Seat>,
    state: &'a mut State,
    feed: Box<dyn Feed + 'a>,
    sink: Arc<LogSink>,
    pub status: StatusLine,
    options: SessionOptions,
    stats: LoopStats,
    last_checkpoint: Instant,
    last_halt_check: Option<Instant>,
    last_close: Option<TimestampNs>,
    logged_lines: usize,
    /// A signal arrived inside user code the loop called outside a hook (`__getstate__`).
    interrupted: bool,
    commit_soon: bool,
    /// Each strategy's cash when this session started, plus its carried positions priced so
    /// far (see [`LiveBook::start_equity`]).
    start_equity: Vec<Decimal>,
    /// Per strategy: positions carried from earlier sessions not priced yet (by its own id).
    unpriced: Vec<HashMap<SymbolId, Decimal>>,
    /// Bar times of the feed skipped at the start (an earlier session traded them).
    skipped: usize,
    /// The control API (`--api`) and what its snapshots keep.
    api: Option<SessionLink>,
    api_view: book_api::BookApiView,
    /// Builds the strategies operators add.
    maker: Option<Box<dyn StrategyMaker<S> + 'a>>,
    /// Bars stepped so far (the API's count, kept past the stepper's end).
    bars_seen: u64,
    /// Strategies the book had when this session started (operators add the others).
    opened_with: usize,
    /// The exchange account the book trades (`None`: each strategy's own paper broker).
    account: Option<AccountDesk>,
}

impl<'a, 'r, S: LiveStrategy> LiveBook<'a, 'r, S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        market: &'a mut Market,
        members: &'a mut Vec<Member<S>>,
        rules: &'a mut BookRules<'r>,
        state: &'a mut State,
        feed: Box<dyn Feed + 'a>,
        sink: Arc<LogSink>,
        options: SessionOptions,
    ) -> Self {
        let seats = members.iter().map(|_| Seat::default()).collect();
        LiveBook {
            market,
            members,
            rules,
            stepper: None,
            seats,
            state,
            feed,
            sink,
            status: StatusLine::new(options.status_line),
            options,
            stats: LoopStats::default(),
            last_checkpoint: Instant::now(),
            last_halt_check: None,
            last_close: None,
            logged_lines: 0,
            interrupted: false,
            commit_soon: false,
            start_equity: Vec::new(),
            unpriced: Vec::new(),
            skipped: 0,
            api: None,
            api_view: Default::default(),
            maker: None,
            bars_seen: 0,
            opened_with: 0,
            account: None,
        }
    }

    /// Trades one exchange account for the whole book (see `book_account.rs`).
    pub fn set_account(&mut self, account: AccountDesk) {
        self.account = Some(account);
    }

    /// Lets operators add strategies through the control API (`POST /strategies`).
    pub fn set_maker(&mut self, maker: Box<dyn StrategyMaker<S> + 'a>) {
        self.maker = Some(maker);
    }

    /// How many of the book's strategies it had when this session started: the account's
    /// starting equity is theirs (an added strategy's capital moved inside the account).
    pub fn opened_with(&self) -> usize {
        self.opened_with
    }

    /// The equity each strategy started this session with: its cash, plus each position
    /// carried from earlier sessions at the open of its first bar in this session (as a
    /// single-algorithm session values them); one that never had a bar adds what the ledger
    /// values it at now, so nothing. A first session's is its capital; a strategy added
    /// during the session, its capital.
    pub fn start_equity(&self) -> Vec<Decimal> {
        self.members
            .iter()
            .zip(&self.start_equity)
            .zip(&self.unpriced)
            .map(|((m, start), unpriced)| {
                let s = lock(&m.session);
                unpriced
                    .keys()
                    .filter_map(|id| s.ledger.position(*id).and_then(|p| p.market_value()))
                    .fold(*start, |total, value| total + value)
            })
            .collect()
    }

    /// Runs the book to its end: each strategy's book restored from the journal, the feed's
    /// bars stepped, then the wrap-up (`on_stop`, open orders cancelled, a last checkpoint).
    /// Returns the book's outcome (each strategy's is in its [`Member`]) and how it ended.
    pub fn run(&mut self) -> (BookOutcome, End) {
        if let Err(e) = self.open_books() {
            let stepper = self.stepper.take();
            return (stepper.map(|s| s.outcome).unwrap_or_default(), End::Live(e));
        }
        let end: End = match self.drive() {
            Ok(end) => end,
            Err(halt) => halt.into(),
        };
        let stepper = self
            .stepper
            .as_mut()
            .expect("invariant: opened by open_books");
        stepper.outcome.stop = match &end {
            End::Failed(e) => Some(Stop::Failed(e.clone())),
            End::Engine(message) => Some(Stop::Engine(message.clone())),
            End::Live(error) => Some(Stop::Engine(error.to_string())),
            _ => None,
        };
        // `on_stop` for the strategies still running (unless the book failed), then every
        // open order is cancelled, as a single paper session's are.
        let ended = match self.account {
            Some(_) => "the session ended",
            None => "the paper session ended",
        };
        let outcome = stepper.finish_with(self.members, ended);
        if let Some(account) = self.account.as_mut() {
            match account.close(self.state) {
                Ok(Some(line)) => above_status!("{line}"),
                Ok(None) => {}
                Err(e) => above_status!("error: closing the exchange account: {e}"),
            }
        }
        let storage_failed = matches!(&end, End::Live(e) if e.storage().is_some());
        if !storage_failed {
            let saved = self
                .sync_all(false)
                .and_then(|_| self.checkpoint(self.last_close, Some(&outcome)));
            if let Err(e) = saved {
                above_status!("error: the final checkpoint failed: {e}");
            }
        }
        super::session::end_grouped_commits(&mut self.state.journal, storage_failed);
        self.audit_log_lines();
        self.api_stopped(end.reason());
        (outcome, end)
    }

    /// Each strategy's ledger from its capital, its journaled fills and the cash rebalancing
    /// moved to it; its open paper orders taken back; the book's own state restored.
    fn open_books(&mut self) -> Result<(), LiveError> {
        let saved: Option<SavedBook> = match self.state.book_state.take() {
            Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                super::journal::JournalError::Corrupt(format!("the saved book state: {e}"))
            })?),
            None => None,
        };
        if let Some(after) = self.state.resume_after {
            // Without waiting: a paced replay would otherwise sit through the traded bars.
            self.skipped = self.feed.skip_through(after);
        }
        // `ctx.time` in `initialize` (and the initial allocation's time): the open of the
        // first bar to come (a replay), or now.
        let first = self.feed.first_open().unwrap_or_else(wall_ns);
        for m in self.members.iter() {
            lock(&m.session).now = first;
        }
        let mut stepper = BookStepper::open(self.market, self.members, self.rules);
        let transferred = saved
            .as_ref()
            .map(|s| s.transferred.clone())
            .unwrap_or_else(|| vec![Decimal::ZERO; self.members.len()]);
        let mut reserve = Decimal::ZERO;
        if let Some(account) = self.account.as_mut() {
            let (news, adopted) = account.open(self.state, self.members, &transferred)?;
            reserve = news.reserve;
            for notice in news.notices {
                above_status!("{notice}");
            }
            for (i, seat) in self.seats.iter_mut().enumerate() {
                seat.seen = lock(&self.members[i].session).orders.all().len();
                for (id, client_id) in &adopted[i] {
                    seat.client_ids.insert(*id, client_id.clone());
                }
            }
            for trip in news.trips {
                self.halt(&trip, true);
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.account.is_some() {
                break;
            }
            let fills = self.state.journal.fills_of(Some(&m.id))?;
            let orders = self.state.strategy_orders.remove(&m.id).unwrap_or_default();
            let news = self.seats[i].broker.open_ledger(
                self.state.run_id,
                &m.session,
                m.initial_capital,
                &fills,
                transferred.get(i).copied().unwrap_or_default(),
                orders,
            )?;
            for notice in news.notices {
                above_status!("strategy `{}`: {notice}", m.id);
            }
            self.seats[i].seen = lock(&m.session).orders.all().len();
        }
        if let Some(saved) = saved {
            let seats = &self.seats;
            stepper
                .restore(saved, self.members, self.market, |i, client_id| {
                    seats[i]
                        .all_client_ids()
                        .into_iter()
                        .find(|(_, c)| c == client_id)
                        .map(|(id, _)| id)
                })
                .map_err(|e| {
                    super::journal::JournalError::Corrupt(format!("the saved book: {e}"))
                })?;
            for m in self.members.iter() {
                if let Some((time, reason)) = &m.stopped {
                    above_status!(
                        "strategy `{}` stopped at {} in an earlier session and stays stopped: {}",
                        m.id,
                        format_timestamp(*time),
                        reason.lines().next().unwrap_or_default()
                    );
                }
            }
        }
        // Adopted cash the saved reserve does not hold yet (see `AccountDesk::open`).
        stepper.risk.lock().reserve += reserve;
        self.start_equity.clear();
        self.unpriced.clear();
        self.opened_with = self.members.len();
        for m in self.members.iter() {
            let s = lock(&m.session);
            self.start_equity.push(s.ledger.cash());
            let carried = s
                .ledger
                .open_symbols()
                .iter()
                .filter_map(|&id| s.ledger.position(id).map(|p| (id, p.quantity)))
                .filter(|(_, q)| !q.is_zero())
                .collect();
            self.unpriced.push(carried);
        }
        self.stepper = Some(stepper);
        // A paper book commits its writes in groups, with its checkpoints (a killed process
        // loses nothing that left it); an exchange book's intents and fills are durable one
        // by one: the exchange has what was sent.
        if self.account.is_none() {
            self.state.journal.set_grouped(true)?;
            self.state.breakers.defer_writes();
        }
        if let Some(trip) = self.state.breakers.state().tripped {
            self.halt(&trip, false);
        }
        // A halt file already there halts the book before its first order.
        self.check_halt_file(true);
        Ok(())
    }

    /// The orders staged for the exchange account out (netted as the book's file says); each
    /// strategy's state saver learns their client ids.
    fn flush_account(&mut self) -> Result<(), LiveError> {
        let Some(account) = self.account.as_mut() else {
            return Ok(());
        };
        let netting = self.rules.spec.netting;
        for (i, id, client_id) in account.flush(self.state, self.members, netting)? {
            self.seats[i].client_ids.insert(id, client_id.clone());
            self.seats[i].unsaved_ids.push((id, client_id));
        }
        Ok(())
    }

    /// Whether any strategy placed an order not yet sent.
    fn has_new_orders(&self) -> bool {
        self.members
            .iter()
            .zip(&self.seats)
            .any(|(m, seat)| lock(&m.session).orders.all().len() > seat.seen)
    }

    /// What the exchange account reported (when a poll is due, or `always`): each fill to
    /// the strategy whose order it filled (`on_fill` on that strategy only), trips halt the
    /// book; orders placed in `on_fill` go out at once.
    fn poll_account(&mut self, always: bool) -> Result<(), Halt> {
        let Some(account) = self.account.as_mut() else {
            return Ok(());
        };
        if !always && !account.poll_due() {
            // Fills the book made inside (crossed orders) are in the journal already.
            let news = account.journal_fills(self.state, self.members)?;
            return self.take_account_news(news);
        }
        let now = self
            .members
            .iter()
            .map(|m| lock(&m.session).now)
            .max()
            .unwrap_or_else(wall_ns);
        let news = account.poll(self.state, self.members, now)?;
        self.take_account_news(news)
    }

    fn take_account_news(&mut self, news: book_account::AccountNews) -> Result<(), Halt> {
        for notice in &news.notices {
            let _ = self.state.audit.log(wall_ns(), "warning", notice);
            above_status!("{notice}");
        }
        for trip in &news.trips {
            self.halt(trip, true);
        }
        if !news.reserve.is_zero() {
            self.stepper().risk.lock().reserve += news.reserve;
            self.commit_soon = true;
        }
        if news.fills.is_empty() {
            return Ok(());
        }
        let mut told = vec![false; self.members.len()];
        for (i, fill) in news.fills {
            let m = &mut self.members[i];
            m.outcome.fills.push(fill.clone());
            if m.stopped.is_some() {
                continue;
            }
            let mut result = Ok(());
            if !std::mem::replace(&mut told[i], true) {
                result = m.strategy.on_order_events();
            }
            if let Err(stop) = result.and_then(|_| m.strategy.on_fill(&fill))
                && let Some(whole) =
                    crate::portfolio::book::fail(self.members, i, stop, self.rules.spec)
            {
                return Err(whole.into());
            }
        }
        self.commit_soon = true;
        self.sync_all(true)?;
        Ok(())
    }

    fn stepper(&mut self) -> &mut BookStepper {
        self.stepper
            .as_mut()
            .expect("invariant: opened by open_books")
    }

    fn drive(&mut self) -> Result<End, Halt> {
        let mut skipped = std::mem::take(&mut self.skipped);
        {
            let stepper = self.stepper.as_mut().expect("invariant: opened");
            stepper.initialize(self.members, self.rules)?;
            if self.account.is_some() && stepper.outcome.netting_on {
                // The exchange fills each order on its own: nothing crosses inside the book.
                stepper.outcome.netting_on = false;
                // The exchange fills each order on its own: the account desk nets a bar's
                // market orders before they go out instead (`book_account.rs`).
            }
        }
        self.warm_up()?;
        self.restore_algo_states();
        self.sync_all(true)?;
        self.serve_api(true)?;
        let mut tick = Tick {
            time: 0,
            symbols: Vec::new(),
        };
        loop {
            let polled = self.feed.poll().map_err(LiveError::Feed)?;
            for notice in self.feed.take_notices() {
                above_status!("{notice}");
                let _ = self.state.audit.log(wall_ns(), "warning", &notice);
            }
            let batch = match polled {
                Poll::End => return Ok(End::FeedDone),
                Poll::Wait(wait) => {
                    if self.state.journal.group_open() {
                        self.checkpoint(self.last_close, None)?;
                    }
                    self.idle(wait.min(IDLE_SLICE))?;
                    self.check_halt_file(true);
                    self.serve_api(false)?;
                    self.poll_account(false)?;
                    // On an exchange feed, scheduled callbacks fire at their wall-clock time.
                    if self.options.wall_clock {
                        let now = wall_ns();
                        for i in BookStepper::running(self.members).collect::<Vec<_>>() {
                            self.members[i].strategy.run_schedules_at(now)?;
                        }
                        self.sync_all(true)?;
                    }
                    continue;
                }
                Poll::Ready(batch) => batch,
            };
            self.note_bar(batch.close_time);
            if traded_before(self.state.resume_after, batch.close_time, &mut skipped) {
                continue;
            }
            if std::mem::take(&mut self.interrupted) {
                return Err(Stop::Interrupted.into());
            }
            self.append(&batch)?;
            self.price_carried(&batch)?;
            tick.time = batch.close_time;
            tick.symbols.clear();
            tick.symbols
                .extend(batch.bars.iter().map(|bar| SymbolId(bar.symbol as u32)));
            // In symbol order, as the backtest's clock gives them.
            tick.symbols.sort_unstable();
            self.last_close = Some(batch.close_time);
            {
                let stepper = self.stepper.as_mut().expect("invariant: opened");
                stepper.step(self.market, self.members, self.rules, &tick)?;
            }
            if self.account.is_some() && self.has_new_orders() {
                // Before anything goes to the exchange: the strategies' state that decided it
                // and the bar they decided on, so a crash after the send restarts past this bar
                // instead of deciding (and sending) again.
                self.checkpoint(Some(batch.close_time), None)?;
            }
            self.sync_all(false)?;
            self.poll_account(true)?;
            self.bars_seen = self.stepper().outcome.bars;
            self.after_bar(batch.close_time)?;
            self.serve_api(false)?;
            if std::mem::take(&mut self.interrupted) {
                return Err(Stop::Interrupted.into());
            }
            self.check_interrupt()?;
            for i in BookStepper::running(self.members).collect::<Vec<_>>() {
                // A changed file reloads its strategy only (see `PyStrategy`'s own-file reload).
                self.members[i].strategy.between_ticks()?;
                super::session::audit_reloads(
                    &mut self.state.audit,
                    self.members[i].strategy.reload_events(),
                    &mut self.seats[i].audited_reloads,
                    Some(&self.members[i].id),
                );
            }
            let bars = self.stepper().outcome.bars;
            if self.options.max_bars.is_some_and(|max| bars >= max) {
                return Ok(End::MaxBars);
            }
        }
    }

    /// Waits through the first running strategy (it releases the interpreter meanwhile),
    /// then looks for a signal.
    fn idle(&mut self, wait: std::time::Duration) -> Result<(), Stop> {
        match self.signal_watcher() {
            Some(m) => m.strategy.idle(wait)?,
            None => std::thread::sleep(wait),
        }
        self.check_interrupt()
    }

    fn check_interrupt(&mut self) -> Result<(), Stop> {
        match self.signal_watcher() {
            Some(m) => m.strategy.check_interrupt(),
            None => Ok(()),
        }
    }

    /// The strategy whose interpreter calls notice Ctrl-C and SIGTERM: the first running one,
    /// else the first (an operator may have stopped them all; the session still runs).
    fn signal_watcher(&mut self) -> Option<&mut Member<S>> {
        let running = self.members.iter().position(|m| m.stopped.is_none());
        self.members.get_mut(running.unwrap_or(0))
    }

    /// The batch's bars into the book's market and into the market of each strategy whose
    /// universe has the symbol.
    fn append(&mut self, batch: &Batch) -> Result<(), LiveError> {
        let describe = |e: String| LiveError::Feed(format!("{}: {e}", self.feed.describe()));
        for bar in &batch.bars {
            let id = SymbolId(bar.symbol as u32);
            let texts = bar_texts(bar);
            self.market
                .append_bar(id, bar.open_time, texts)
                .map_err(describe)?;
            for m in self.members.iter() {
                if let Some(local) = m.local[id.index()] {
                    lock(&m.session)
                        .market
                        .append_bar(local, bar.open_time, texts)
                        .map_err(describe)?;
                }
            }
        }
        Ok(())
    }

    /// A carried position enters its strategy's start equity at the open of its first bar in
    /// this session (see [`LiveBook::start_equity`]).
    fn price_carried(&mut self, batch: &Batch) -> Result<(), LiveError> {
        for bar in &batch.bars {
            for (i, m) in self.members.iter().enumerate() {
                let Some(local) = m.local[bar.symbol] else {
                    continue;
                };
                let Some(quantity) = self.unpriced[i].remove(&local) else {
                    continue;
                };
                let open: Decimal = bar.texts[0]
                    .parse()
                    .map_err(|e| LiveError::Feed(format!("price `{}`: {e}", bar.texts[0])))?;
                self.start_equity[i] = quantity
                    .checked_mul(open)
                    .and_then(|value| self.start_equity[i].checked_add(value))
                    .ok_or_else(|| {
                        LiveError::Feed("decimal overflow while pricing a carried position".into())
                    })?;
            }
        }
        Ok(())
    }

    /// Before the first live bar: the history the strategies need (the most any declares,
    /// else what their indicators need) into every market, the indicators, the higher
    /// timeframes and the shared cross-section, without trading on it.
    fn warm_up(&mut self) -> Result<(), Halt> {
        let mut wanted = 0;
        let mut needed = 0;
        for m in self.members.iter() {
            let declared = m.strategy.declared_warmup().map_err(LiveError::Settings)?;
            let own = {
                let s = lock(&m.session);
                s.indicators
                    .bars_needed(&s.aggregations, s.market.interval_ns(SymbolId(0)))
            };
            wanted = wanted.max(declared.unwrap_or(own));
            needed = needed.max(own);
        }
        if wanted == 0 {
            return Ok(());
        }
        let history = self.feed.history(wanted).map_err(LiveError::Feed)?;
        let mut counts = vec![0usize; self.market.symbol_count()];
        for batch in &history.batches {
            self.append(batch)?;
            let symbols: Vec<SymbolId> = batch
                .bars
                .iter()
                .map(|bar| SymbolId(bar.symbol as u32))
                .collect();
            for m in self.members.iter() {
                let local: Vec<SymbolId> =
                    symbols.iter().filter_map(|g| m.local[g.index()]).collect();
                if !local.is_empty() {
                    crate::engine::warm_up(&mut lock(&m.session), batch.close_time, &local);
                }
            }
            for &symbol in &symbols {
                counts[symbol.index()] += 1;
                if let Some(cross) = &self.rules.cross_section {
                    cross.on_bar(
                        symbol,
                        self.market.series(symbol),
                        self.market.closed_count(symbol),
                    );
                }
                self.market.close_next_bar(symbol);
            }
        }
        for m in self.members.iter_mut() {
            m.strategy.update_indicators()?;
        }
        report_warm_up(&mut self.state.audit, &history, &counts, wanted, needed);
        Ok(())
    }

    /// Each strategy's saved state back, its `Order` handles re-bound to its own orders.
    fn restore_algo_states(&mut self) {
        for (i, m) in self.members.iter_mut().enumerate() {
            let Some(saved) = self.state.strategy_states.remove(&m.id) else {
                continue;
            };
            let live: HashMap<String, OrderId> = self.seats[i]
                .all_client_ids()
                .into_iter()
                .map(|(id, client_id)| (client_id, id))
                .collect();
            let done = m.strategy.restore_state(&saved, &live, &self.state.journal);
            report_restore(&saved, done, &format!("strategy `{}`: ", m.id));
        }
    }

    /// Every strategy's new orders journaled (with its id) and sent to its broker, then what
    /// the step did to its orders (`stepped`: the last close time's fills, else none).
    fn sync_all(&mut self, quiet: bool) -> Result<bool, LiveError> {
        let mut active = false;
        for i in 0..self.members.len() {
            let fills = match (quiet, &self.stepper) {
                (false, Some(stepper)) => stepper.fills_of(i).to_vec(),
                _ => Vec::new(),
            };
            active |= self.sync_member(i, &fills)?;
        }
        self.flush_account()?;
        Ok(active)
    }

    fn sync_member(&mut self, i: usize, fills: &[crate::model::Fill]) -> Result<bool, LiveError> {
        let m = &self.members[i];
        let seat = &mut self.seats[i];
        let (new, now) = new_orders(&m.session, &mut seat.seen);
        let active = !new.is_empty() || !fills.is_empty();
        // A bracket's entry is linked to its exits (placed with it).
        let parents: std::collections::HashSet<OrderId> =
            new.iter().filter_map(|(o, _, _)| o.parent).collect();
        let wall = wall_ns();
        let mut halted: Option<Trip> = None;
        for (order, symbol, last_close) in new {
            if order.status == OrderStatus::Rejected {
                let reason = order.reason.clone().unwrap_or_default();
                let _ = self.state.audit.log(
                    wall,
                    "warning",
                    &format!(
                        "strategy `{}`: order {} rejected: {reason}",
                        m.id, order.id.0
                    ),
                );
                continue;
            }
            if !order.status.is_open() {
                continue; // placed and cancelled within one hook: nothing to send
            }
            if let Err(error) = self.state.breakers.on_order(now) {
                let who = format!("strategy `{}`: ", m.id);
                halted =
                    refuse_order(self.state, &m.session, order.id, &error, now, &who).or(halted);
                continue;
            }
            match self.account.as_mut() {
                Some(account) => {
                    let linked = parents.contains(&order.id);
                    account.stage(i, m, &order, &symbol, last_close, linked)
                }
                None => seat.send(self.state, m, &order, &symbol, last_close, &mut self.stats)?,
            }
        }
        let stepped = seat.broker.after_step(self.state, &m.session, fills)?;
        if let Some(trip) = halted {
            self.halt(&trip, true);
        }
        Ok(active || stepped)
    }

    /// After each bar: breakers on the account's equity and the halt file, the checkpoint,
    /// log lines to the audit log, the status line.
    fn after_bar(&mut self, close_time: TimestampNs) -> Result<(), LiveError> {
        let equity = self
            .stepper()
            .outcome
            .equity
            .last()
            .map(|p| p.equity)
            .unwrap_or_default();
        if let Some(trip) = self.state.breakers.on_equity(close_time, equity)? {
            self.halt(&trip, true);
        }
        self.check_halt_file(false);
        if std::mem::take(&mut self.commit_soon)
            || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY
        {
            self.checkpoint(Some(close_time), None)?;
        }
        self.audit_log_lines();
        if self.status.enabled() {
            let line = self.status_text(equity);
            self.status.set(line);
        }
        Ok(())
    }

    /// One transaction: the account's book, each strategy's book, algorithm state and open
    /// paper orders, the book's own state and the feed mark. `ended`: the book's outcome
    /// once the stepper has finished.
    fn checkpoint(
        &mut self,
        close_time: Option<TimestampNs>,
        ended: Option<&BookOutcome>,
    ) -> Result<(), LiveError> {
        let currency = self.state.cash_currency.clone();
        let mut books = Vec::with_capacity(self.members.len());
        let mut states = Vec::with_capacity(self.members.len());
        let mut orders = Vec::with_capacity(self.members.len());
        for (i, m) in self.members.iter_mut().enumerate() {
            books.push(engine_book(&currency, &m.session));
            // An exchange book's open orders are the exchange's (the journal has them).
            orders.push(match self.account {
                Some(_) => None,
                None => self.seats[i].broker.open_orders_to_save(&m.session)?,
            });
            let ids = std::mem::take(&mut self.seats[i].unsaved_ids);
            let saved = m.strategy.save_state(&ids);
            states.push(take_saved_state(
                saved,
                &mut self.seats[i].skipped_warned,
                &mut self.interrupted,
                &format!("strategy `{}`: ", m.id),
            ));
        }
        let (saved_book, reserve) = {
            let seats = &self.seats;
            let stepper = self
                .stepper
                .as_ref()
                .expect("invariant: the stepper lives until the final checkpoint");
            let mut saved = stepper.saved(self.members, self.market, |i, id| {
                seats[i].all_client_ids().get(&id).cloned()
            });
            if let Some(ended) = ended {
                saved.halted = ended.halted.clone();
            }
            let reserve = saved.reserve;
            (saved, reserve)
        };
        let account = account_book(&currency, &books, reserve);
        let json = serde_json::to_string(&saved_book).map_err(|e| {
            super::journal::JournalError::Corrupt(format!("cannot serialize the book state: {e}"))
        })?;
        let mut parts = vec![CheckpointPart {
            strategy: None,
            book: &account,
            algo_state: None,
            paper_orders: None,
        }];
        for (k, m) in self.members.iter().enumerate() {
            parts.push(CheckpointPart {
                strategy: Some(&m.id),
                book: &books[k],
                algo_state: states[k]
                    .as_ref()
                    .map(|s| (s.format.as_str(), s.data.as_slice())),
                paper_orders: orders[k].as_deref(),
            });
        }
        for write in self.state.breakers.take_writes() {
            write.apply(&mut self.state.journal)?;
        }
        self.state
            .journal
            .record_checkpoint_of(wall_ns(), close_time, &parts, Some(&json))?;
        self.state.journal.commit_group()?;
        self.last_checkpoint = Instant::now();
        self.commit_soon = false;
        Ok(())
    }

    fn check_halt_file(&mut self, always: bool) {
        if !halt_file_due(&mut self.last_halt_check, always) {
            return;
        }
        let now = self
            .members
            .first()
            .map(|m| lock(&m.session).now)
            .unwrap_or_else(wall_ns);
        match self.state.breakers.check_halt_file(now) {
            Ok(Some(trip)) => self.halt(&trip, true),
            Ok(None) => {}
            Err(e) => above_status!("warning: {e}"),
        }
    }

    /// Every strategy refuses new orders from now on; said once per trip.
    fn halt(&mut self, trip: &Trip, new: bool) {
        let message = trip.to_string();
        let mut changed = false;
        for m in self.members.iter() {
            let mut s = lock(&m.session);
            if s.halted.as_deref() != Some(message.as_str()) {
                s.halted = Some(message.clone());
                changed = true;
            }
        }
        if !changed {
            return;
        }
        self.commit_soon = true;
        announce_halt(&mut self.state.audit, trip, new);
    }

    fn audit_log_lines(&mut self) {
        audit_new_lines(&self.sink, &mut self.logged_lines, &mut self.state.audit);
    }

    /// Time, the account's equity, each strategy's, open orders, breakers.
    fn status_text(&self, equity: Decimal) -> String {
        let mut open = 0;
        let mut each = Vec::with_capacity(self.members.len());
        let mut time = 0;
        for m in self.members.iter() {
            let s = lock(&m.session);
            open += s.orders.all().iter().filter(|o| o.status.is_open()).count();
            time = time.max(s.now);
            let own = s.ledger.equity().unwrap_or_default();
            each.push(format!("{} {}", m.id, own.round_dp(2)));
        }
        let breaker = match self.state.breakers.state().tripped {
            Some(trip) => format!("HALTED ({})", trip.kind.as_str()),
            None => "breakers ok".into(),
        };
        format!(
            "{} | equity {} ({}) | open orders {open} | {breaker}",
            format_timestamp(time),
            equity.round_dp(2),
            each.join(", ")
        )
    }
}

/// The account's book: the strategies' cash, the book's reserve and their positions, summed.
fn account_book(currency: &str, books: &[Book], reserve: Decimal) -> Book {
    let mut account = Book::new(currency, reserve);
    let mut positions: BTreeMap<String, Decimal> = BTreeMap::new();
    for book in books {
        account.cash += book.cash;
        for (symbol, quantity) in &book.positions {
            *positions.entry(symbol.clone()).or_default() += quantity;
        }
    }
    positions.retain(|_, q| !q.is_zero());
    account.positions = positions;
    account
}
