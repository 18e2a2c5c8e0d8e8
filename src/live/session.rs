//! The live session's loop: the same algorithm and engine step as `rustybt run`, driven by a
//! live feed, with every order, fill and breaker trip journaled before the session moves on.
//!
//! Bars arrive from a [`Feed`], are appended to the market's growable columns and closed by
//! the shared clock step (`engine::step`), so the algorithm sees exactly what a backtest
//! would. Orders go to a [`Broker`] (paper or an exchange). The algorithm is a
//! [`LiveStrategy`]: the engine's `Strategy` plus what a session needs beyond a backtest
//! (its state saved in the journal and restored after a restart, wall-clock schedules).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::audit::AuditKind;
use super::breakers::{BreakerError, Breakers, Trip};
use super::broker::{Broker, News};
use super::error::LiveError;
use super::feed::{Batch, Feed, Poll};
use super::journal::{self, AlgoState, Journal, OrderIntent, OrderType};
use super::recovery::{State, engine_book};
use super::status::StatusLine;
use super::wall_ns;
use crate::above_status;
use crate::engine::{BacktestOutcome, SharedSession, Stop, Strategy, lock, step};
use crate::market::Tick;
use crate::model::{
    Fill, OrderId, OrderKind, OrderStatus, SymbolId, TimestampNs, format_timestamp,
};
use crate::python::LogSink;
use crate::python::strategy::ReloadEvent;

/// Longest time between two journal checkpoints of a quiet session.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Longest wait between two looks at signals, the halt file and code changes.
const IDLE_SLICE: Duration = Duration::from_millis(200);

/// Shortest time between two looks at the halt file while bars arrive back to back.
const HALT_FILE_EVERY: Duration = Duration::from_millis(20);

/// The algorithm's state as the journal keeps it.
pub struct SavedState {
    pub format: String,
    pub data: Vec<u8>,
    /// Attributes that cannot be saved (said once).
    pub skipped: Vec<String>,
}

/// Why the algorithm's state was not saved.
pub enum SaveFailure {
    /// A Ctrl-C or SIGTERM landed inside the user's code that saves it.
    Interrupted,
    Failed(String),
}

/// What a restore did, for the operator.
pub struct Restored {
    /// Which attributes were restored (and how).
    pub restored: String,
    /// `Order` handles re-bound to the journal's orders.
    pub rebound: usize,
    /// Which were not, and why (empty: all were).
    pub not_restored: String,
}

/// The algorithm, as a live session drives it.
pub trait LiveStrategy: Strategy {
    /// Scheduled callbacks due at wall-clock `now`; whether any ran.
    fn run_schedules_at(&mut self, now: TimestampNs) -> Result<bool, Stop>;
    /// The algorithm's state, `Order` handles saved by client id: `new_ids` are the orders
    /// sent (or adopted) since the last call, with their client ids.
    fn save_state(&mut self, new_ids: &[(OrderId, String)]) -> Result<SavedState, SaveFailure>;
    /// The saved state back into the algorithm; saved `Order` handles re-bound by client id
    /// to `live` orders of the engine, else to the journal's record of them.
    fn restore_state(
        &mut self,
        saved: &AlgoState,
        live: &HashMap<String, OrderId>,
        journal: &Journal,
    ) -> Result<Restored, String>;
    /// Hot reloads so far (applied or rejected).
    fn reload_events(&self) -> &[ReloadEvent];
    /// Bars of history the algorithm says it needs before its first live bar (its `warmup`),
    /// or `None` when it does not say.
    fn declared_warmup(&self) -> Result<Option<usize>, String> {
        Ok(None)
    }
}

/// How a session ended.
pub enum End {
    FeedDone,
    MaxBars,
    Signal,
    Failed(Box<crate::error::AlgorithmError>),
    /// The engine could not continue (a decimal overflow in the books).
    Engine(String),
    /// The session could not continue: the journal, the exchange, the feed.
    Live(LiveError),
}

impl End {
    pub fn reason(&self) -> String {
        match self {
            End::FeedDone => "end of feed".into(),
            End::MaxBars => "--max-bars reached".into(),
            End::Signal => "stopped by signal".into(),
            End::Failed(_) => "algorithm failed".into(),
            End::Engine(message) => format!("engine error: {message}"),
            End::Live(error) => format!("engine error: {error}"),
        }
    }
}

/// What stops the loop: the algorithm or engine (`Stop`), or the session itself.
pub(crate) enum Halt {
    Stop(Stop),
    Live(LiveError),
}

impl From<Stop> for Halt {
    fn from(stop: Stop) -> Self {
        Halt::Stop(stop)
    }
}

impl From<LiveError> for Halt {
    fn from(error: LiveError) -> Self {
        Halt::Live(error)
    }
}

impl From<Halt> for End {
    fn from(halt: Halt) -> Self {
        match halt {
            Halt::Stop(Stop::Interrupted) => End::Signal,
            Halt::Stop(Stop::Failed(e)) => End::Failed(e),
            Halt::Stop(Stop::Engine(message)) => End::Engine(message),
            Halt::Live(error) => End::Live(error),
        }
    }
}

/// Tick-to-order latency (closed bar received → order handed to the broker) and the loop's
/// rate, for `RUSTYBT_LIVE_STATS=FILE` (benches/live_replay.py).
#[derive(Default, serde::Serialize)]
pub struct LoopStats {
    pub bars: u64,
    /// From the first bar received to the end of the feed.
    pub loop_seconds: f64,
    /// One per order sent, in nanoseconds.
    pub tick_to_order_ns: Vec<u64>,
    #[serde(skip)]
    first_bar: Option<Instant>,
}

pub struct SessionOptions {
    pub max_bars: Option<u64>,
    /// The session's time is the wall clock's (an exchange feed), not only its bars' (replay).
    pub wall_clock: bool,
    pub status_line: bool,
}

pub struct LiveSession<'a, S: LiveStrategy> {
    session: SharedSession,
    state: &'a mut State,
    broker: Box<dyn Broker + 'a>,
    feed: Box<dyn Feed + 'a>,
    strategy: &'a mut S,
    sink: Arc<LogSink>,
    pub status: StatusLine,
    options: SessionOptions,
    /// Orders of the book already looked at (the book only appends).
    seen: usize,
    /// The journal's client id of each order this session sent.
    client_ids: HashMap<OrderId, String>,
    /// Orders (with client ids) the algorithm's state saver has not been told about yet.
    unsaved_ids: Vec<(OrderId, String)>,
    logged_lines: usize,
    skipped_warned: bool,
    last_checkpoint: Instant,
    last_halt_check: Option<Instant>,
    /// Close time of the last bar stepped (the final checkpoint's feed mark).
    last_close: Option<TimestampNs>,
    /// Reload events already in the audit log.
    audited_reloads: usize,
    /// A signal arrived inside user code the loop called outside a hook (`__getstate__`).
    interrupted: bool,
    /// The session's starting equity so far: its starting cash plus each carried position at
    /// the first price this session sees of it (see `price_carried`).
    start_equity: Decimal,
    /// Positions carried from earlier sessions not yet priced in this one.
    unpriced: HashMap<SymbolId, Decimal>,
    /// When the bar being processed was received.
    bar_received: Option<Instant>,
    pub stats: LoopStats,
    /// The control API's end, when `--api` is on (see `session_api.rs`).
    api: Option<crate::live::api::SessionLink>,
    /// The API's view kept between snapshots: the last bar, the session's fills.
    api_view: session_api::ApiView,
    /// Orders an operator placed (flatten): sent even while a breaker is tripped.
    exempt: HashSet<OrderId>,
    /// A paper session's journal commits once per checkpoint, not once per write (see
    /// `group_commits`).
    grouped: bool,
    /// Something that must reach the disk soon happened (a trip, an operator's action): the
    /// next bar checkpoints even if its interval has not passed.
    commit_soon: bool,
}

impl<'a, S: LiveStrategy> LiveSession<'a, S> {
    pub fn new(
        session: SharedSession,
        state: &'a mut State,
        broker: Box<dyn Broker + 'a>,
        feed: Box<dyn Feed + 'a>,
        strategy: &'a mut S,
        sink: Arc<LogSink>,
        options: SessionOptions,
    ) -> Self {
        LiveSession {
            session,
            state,
            broker,
            feed,
            strategy,
            sink,
            status: StatusLine::new(options.status_line),
            options,
            seen: 0,
            client_ids: HashMap::new(),
            unsaved_ids: Vec::new(),
            logged_lines: 0,
            skipped_warned: false,
            last_checkpoint: Instant::now(),
            last_halt_check: None,
            last_close: None,
            audited_reloads: 0,
            interrupted: false,
            start_equity: Decimal::ZERO,
            unpriced: HashMap::new(),
            bar_received: None,
            stats: LoopStats::default(),
            api: None,
            api_view: session_api::ApiView::default(),
            exempt: HashSet::new(),
            grouped: false,
            commit_soon: false,
        }
    }

    /// Runs the session to its end: the book restored from the journal, the feed's bars
    /// stepped, then the wrap-up (open orders closed, a last checkpoint).
    pub fn run(&mut self) -> (BacktestOutcome, End) {
        let mut outcome = BacktestOutcome::default();
        match self.broker.open_book(self.state, &self.session) {
            Ok(news) => self.tell(&news),
            Err(e) => return (outcome, End::Live(e)),
        }
        if let Err(e) = self.group_commits() {
            return (outcome, End::Live(e));
        }
        // Orders in the book now (adopted from the exchange) are not new orders to send.
        self.seen = lock(&self.session).orders.all().len();
        let adopted = self.broker.client_ids();
        self.unsaved_ids
            .extend(adopted.into_iter().map(|(client_id, id)| (id, client_id)));
        self.carry_into_session();
        if let Some(trip) = self.state.breakers.state().tripped {
            self.halt(&trip, false);
        }
        // A halt file already there halts the session before its first order, not after its
        // first bar.
        self.check_halt_file(true);
        let end: End = match self.drive(&mut outcome) {
            Ok(end) => end,
            Err(halt) => halt.into(),
        };
        if let Some(first) = self.stats.first_bar {
            self.stats.loop_seconds = first.elapsed().as_secs_f64();
        }
        self.stats.bars = outcome.bars;
        let end = match end {
            End::Failed(_) | End::Engine(_) | End::Live(_) => end,
            other => match self.strategy.on_stop() {
                Ok(()) => other,
                Err(stop) => Halt::Stop(stop).into(),
            },
        };
        // The results say how the session ended: a failure is `failed` (partial); a signal
        // or the end of the feed is how a live session normally ends (`complete`).
        outcome.stop = match &end {
            End::Failed(e) => Some(Stop::Failed(e.clone())),
            End::Engine(message) => Some(Stop::Engine(message.clone())),
            End::Live(error) => Some(Stop::Engine(error.to_string())),
            _ => None,
        };
        match self.broker.close(self.state, &self.session) {
            Ok(Some(line)) => above_status!("{line}"),
            Ok(None) => {}
            Err(e) => above_status!("error: cancelling open orders at exit: {e}"),
        }
        // A journal that cannot be written is not asked again.
        let storage_failed = matches!(&end, End::Live(e) if e.storage().is_some());
        if !storage_failed {
            let close = self.last_close;
            let saved = self.sync_orders(&[]).and_then(|_| self.checkpoint(close));
            if let Err(e) = saved {
                above_status!("error: the final checkpoint failed: {e}");
            }
        }
        // Back to a commit per write for what follows (the run's end); a journal that failed
        // keeps its last committed checkpoint instead of writes past it.
        if self.grouped {
            end_grouped_commits(&mut self.state.journal, storage_failed);
        }
        self.audit_log_lines();
        self.api_stopped(&outcome, &end);
        (outcome, end)
    }

    /// The equity this session started with (the base of its results). A carried position
    /// that never had a bar counts as the ledger values it at the end, so it adds nothing.
    pub fn start_equity(&self) -> Decimal {
        let s = lock(&self.session);
        self.unpriced
            .keys()
            .filter_map(|id| s.ledger.position(*id).and_then(|p| p.market_value()))
            .fold(self.start_equity, |total, value| total + value)
    }

    fn tell(&mut self, news: &News) {
        for notice in &news.notices {
            above_status!("{notice}");
        }
        for trip in &news.trips {
            self.halt(trip, true);
        }
    }

    /// What the broker reported since the last look, into the algorithm (`on_order`,
    /// `on_fill`); orders it placed in `on_fill` go out at once.
    fn poll_broker(&mut self, outcome: &mut BacktestOutcome) -> Result<bool, Halt> {
        let news = self.broker.poll(self.state, &self.session)?;
        for notice in &news.notices {
            let _ = self.state.audit.log(wall_ns(), "warning", notice);
        }
        self.tell(&news);
        if news.fills.is_empty() {
            return Ok(false);
        }
        outcome.fills.extend_from_slice(&news.fills);
        self.strategy.on_order_events()?;
        for fill in &news.fills {
            self.strategy.on_fill(fill)?;
        }
        self.sync_orders(&[])?;
        Ok(true)
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
        for (name, quantity) in self.broker.unseeded() {
            if let Some(id) = s.market.symbol_id(name) {
                self.unpriced.insert(id, *quantity);
            }
        }
    }

    /// A carried position enters the session's starting equity at the open of its first bar
    /// in this session: the price at which this session takes it over.
    fn price_carried(&mut self, batch: &Batch) -> Result<(), LiveError> {
        if self.unpriced.is_empty() {
            return Ok(());
        }
        for bar in &batch.bars {
            let id = SymbolId(bar.symbol as u32);
            if let Some(quantity) = self.unpriced.remove(&id) {
                let open = parse_price(&bar.texts[0])?;
                self.start_equity = quantity
                    .checked_mul(open)
                    .and_then(|value| self.start_equity.checked_add(value))
                    .ok_or_else(|| {
                        LiveError::Feed("decimal overflow while pricing a carried position".into())
                    })?;
            }
        }
        Ok(())
    }

    fn drive(&mut self, outcome: &mut BacktestOutcome) -> Result<End, Halt> {
        let mut skipped = 0usize;
        if let Some(after) = self.state.resume_after {
            // Without waiting: a paced replay would otherwise sit through the traded bars.
            skipped = self.feed.skip_through(after);
        }
        // `ctx.time` in `initialize`: the open of the first bar to come (a replay), or now.
        lock(&self.session).now = self.feed.first_open().unwrap_or_else(wall_ns);
        self.strategy.initialize()?;
        self.warm_up()?;
        self.restore_algo_state();
        self.sync_orders(&[])?;
        self.api_view.running = true;
        self.serve_api(outcome, true)?;
        let mut tick = Tick {
            time: 0,
            symbols: Vec::new(),
        };
        let mut fills = Vec::new();
        loop {
            let polled = self.feed.poll().map_err(LiveError::Feed)?;
            for notice in self.feed.take_notices() {
                above_status!("{notice}");
                let _ = self.state.audit.log(wall_ns(), "warning", &notice);
            }
            let batch = match polled {
                Poll::End => return Ok(End::FeedDone),
                Poll::Wait(wait) => {
                    // A session that waits for its next bar has time to make what it did
                    // durable: a paced or real-time paper session commits bar by bar.
                    if self.grouped && self.state.journal.group_open() {
                        self.checkpoint(self.last_close)?;
                    }
                    self.strategy.idle(wait.min(IDLE_SLICE))?;
                    self.strategy.check_interrupt()?;
                    self.check_halt_file(true);
                    self.serve_api(outcome, false)?;
                    if self.broker.poll_due() {
                        self.poll_broker(outcome)?;
                    }
                    // On an exchange feed, time passes between bars: scheduled callbacks fire
                    // at their wall-clock time. (A replay's time is its bars' only.)
                    if self.options.wall_clock && self.strategy.run_schedules_at(wall_ns())? {
                        if self.broker.sends_irrevocably() && self.has_new_orders() {
                            self.checkpoint(self.last_close)?;
                        }
                        self.sync_orders(&[])?;
                    }
                    continue;
                }
                Poll::Ready(batch) => batch,
            };
            let received = Instant::now();
            self.note_bar(batch.close_time);
            self.stats.first_bar.get_or_insert(received);
            self.bar_received = Some(received);
            if traded_before(self.state.resume_after, batch.close_time, &mut skipped) {
                continue;
            }
            if std::mem::take(&mut self.interrupted) {
                return Err(Stop::Interrupted.into());
            }
            let closes = self.append(&batch)?;
            self.price_carried(&batch)?;
            self.broker.on_bar(&self.session, &closes)?;
            let symbols: Vec<SymbolId> = closes.iter().map(|(id, _)| *id).collect();
            let close_time = batch.close_time;
            self.last_close = Some(close_time);
            step(
                &self.session,
                &mut *self.strategy,
                &mut tick,
                &mut fills,
                outcome,
                |_, tick| {
                    tick.time = close_time;
                    tick.symbols.clone_from(&symbols);
                    true
                },
            )?;
            if self.broker.sends_irrevocably() && self.has_new_orders() {
                // Before anything goes to the exchange: the algorithm's state that decided it
                // and the bar it decided on. A crash after the send then restarts past this
                // bar, with the decision made, instead of deciding (and sending) again.
                self.checkpoint(Some(close_time))?;
            }
            let mut active = self.sync_orders(&fills)?;
            active |= self.poll_broker(outcome)?;
            self.after_bar(close_time, active)?;
            self.bar_received = None;
            self.serve_api(outcome, false)?;
            if std::mem::take(&mut self.interrupted) {
                return Err(Stop::Interrupted.into());
            }
            self.strategy.check_interrupt()?;
            self.strategy.between_ticks()?;
            self.audit_reloads();
            if self.options.max_bars.is_some_and(|max| outcome.bars >= max) {
                return Ok(End::MaxBars);
            }
        }
    }

    /// Before the first live bar: the history the algorithm needs (its `warmup`, else what its
    /// indicators need) into the market, the indicators and the higher timeframes, without
    /// trading on it, so `ctx.history()` and indicators are ready at the first live bar, in a
    /// first session and after a restart alike.
    fn warm_up(&mut self) -> Result<(), Halt> {
        let declared = self
            .strategy
            .declared_warmup()
            .map_err(LiveError::Settings)?;
        let needed = {
            let s = lock(&self.session);
            s.indicators
                .bars_needed(&s.aggregations, s.market.interval_ns(SymbolId(0)))
        };
        let wanted = declared.unwrap_or(needed);
        if wanted == 0 {
            return Ok(());
        }
        let history = self.feed.history(wanted).map_err(LiveError::Feed)?;
        let mut counts = vec![0usize; lock(&self.session).market.symbol_count()];
        for batch in &history.batches {
            self.append(batch)?;
            let symbols: Vec<SymbolId> = batch
                .bars
                .iter()
                .map(|bar| SymbolId(bar.symbol as u32))
                .collect();
            for id in &symbols {
                counts[id.index()] += 1;
            }
            crate::engine::warm_up(&mut lock(&self.session), batch.close_time, &symbols);
        }
        // Custom Python indicators catch up on the warm-up bars too.
        self.strategy.update_indicators()?;
        report_warm_up(&mut self.state.audit, &history, &counts, wanted, needed);
        Ok(())
    }

    /// The batch's bars into the market's columns; returns each symbol's close.
    fn append(&mut self, batch: &Batch) -> Result<Vec<(SymbolId, Decimal)>, LiveError> {
        let mut s = lock(&self.session);
        let mut closes = Vec::with_capacity(batch.bars.len());
        for bar in &batch.bars {
            let id = SymbolId(bar.symbol as u32);
            s.market
                .append_bar(id, bar.open_time, bar_texts(bar))
                .map_err(|e| LiveError::Feed(format!("{}: {e}", self.feed.describe())))?;
            closes.push((id, parse_price(&bar.texts[3])?));
        }
        Ok(closes)
    }

    fn has_new_orders(&self) -> bool {
        lock(&self.session).orders.all().len() > self.seen
    }

    /// Journals new orders (refusing them when a breaker says so) and sends them, then what
    /// the step did to the broker's orders (`fills`). Returns whether anything was journaled.
    fn sync_orders(&mut self, fills: &[Fill]) -> Result<bool, LiveError> {
        let wall = wall_ns();
        let (new, now) = new_orders(&self.session, &mut self.seen);
        let active = !new.is_empty() || !fills.is_empty();
        // Entries of brackets placed in this batch (their exits name them as parent).
        let parents: HashSet<OrderId> = new.iter().filter_map(|(o, _, _)| o.parent).collect();
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
            if let Some(reason) = self.broker.refuses_linked().filter(|_| linked) {
                lock(&self.session).orders.apply_venue_status(
                    order.id,
                    OrderStatus::Rejected,
                    Some(reason.into()),
                    now,
                );
                continue;
            }
            // An operator's flatten goes out even while halted (it only reduces exposure).
            let refused = match self.exempt.remove(&order.id) {
                true => Ok(()),
                false => self.state.breakers.on_order(now),
            };
            if let Err(error) = refused {
                if let Some(trip) =
                    refuse_order(self.state, &self.session, order.id, &error, now, "")
                {
                    self.halt(&trip, true);
                }
                continue;
            }
            let client_id = journal_and_send(
                self.state,
                &mut *self.broker,
                &self.session,
                &order,
                &symbol,
                last_close,
                None,
                self.bar_received,
                &mut self.stats,
            )?;
            self.client_ids.insert(order.id, client_id.clone());
            self.unsaved_ids.push((order.id, client_id));
        }
        let stepped = self.broker.after_step(self.state, &self.session, fills)?;
        Ok(active || stepped)
    }

    /// After each bar: breakers on equity and the halt file, the journal's checkpoint, log
    /// lines to the audit log, the status line.
    fn after_bar(&mut self, close_time: TimestampNs, active: bool) -> Result<(), LiveError> {
        let equity = lock(&self.session).ledger.equity()?;
        if let Some(trip) = self.state.breakers.on_equity(close_time, equity)? {
            self.halt(&trip, true);
        }
        self.check_halt_file(false);
        // A checkpoint (book snapshot, feed mark, algorithm state in one transaction) after
        // every bar with order activity, else at most once per CHECKPOINT_EVERY: the journal
        // never holds fills past the feed mark, so a restart resumes consistently.
        // A grouped (paper) session checkpoints and commits once per CHECKPOINT_EVERY while it
        // has no time to wait, and whenever it waits (see `drive`); its open orders are part
        // of the checkpoint, so a restart from it takes them back.
        let elapsed = self.last_checkpoint.elapsed();
        let due = match self.grouped {
            true => std::mem::take(&mut self.commit_soon) || elapsed >= CHECKPOINT_EVERY,
            false => active || elapsed >= CHECKPOINT_EVERY,
        };
        if due {
            self.checkpoint(Some(close_time))?;
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
    /// then the book, the feed mark, that state and the paper broker's open orders are
    /// committed in one transaction.
    fn checkpoint(&mut self, close_time: Option<TimestampNs>) -> Result<(), LiveError> {
        let saved = self.save_algo_state();
        let book = engine_book(&self.state.cash_currency, &self.session);
        let open_orders = self.broker.open_orders_to_save(&self.session)?;
        for write in self.state.breakers.take_writes() {
            write.apply(&mut self.state.journal)?;
        }
        self.state.journal.record_checkpoint(
            wall_ns(),
            &book,
            close_time,
            saved
                .as_ref()
                .map(|s| (s.format.as_str(), s.data.as_slice())),
            open_orders.as_deref(),
        )?;
        self.state.journal.commit_group()?;
        self.last_checkpoint = Instant::now();
        self.commit_soon = false;
        Ok(())
    }

    /// A paper session (nothing it does leaves the process) groups its journal writes: one
    /// transaction from checkpoint to checkpoint instead of one per order event, so a fast
    /// replay is not bound by commits. Crash safety is unchanged in kind: the journal still
    /// only ever holds whole checkpoints with everything before them, and a killed session
    /// restarts from the last one, re-deriving the bars after it from the feed (as it did for
    /// quiet bars already). The breakers' writes join the same commits.
    fn group_commits(&mut self) -> Result<(), LiveError> {
        if self.broker.sends_irrevocably() {
            return Ok(());
        }
        self.state.journal.set_grouped(true)?;
        self.state.breakers.defer_writes();
        self.grouped = true;
        Ok(())
    }

    /// Looks at the halt file: at every wait, and between bars at most every
    /// [`HALT_FILE_EVERY`] (a fast replay would otherwise stat it for every bar).
    fn check_halt_file(&mut self, always: bool) {
        if !halt_file_due(&mut self.last_halt_check, always) {
            return;
        }
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
        self.commit_soon = true;
        announce_halt(&mut self.state.audit, trip, new);
    }

    /// Every order the session knows by client id: its own and the broker's.
    fn all_client_ids(&self) -> HashMap<OrderId, String> {
        let mut ids = self.client_ids.clone();
        for (client_id, id) in self.broker.client_ids() {
            ids.insert(id, client_id);
        }
        ids
    }

    /// The algorithm's state, or `None` with a warning when it cannot be taken. A Ctrl-C or
    /// SIGTERM that lands inside the user's `__getstate__` is kept for the loop
    /// (`interrupted`), never swallowed as a failed save.
    fn save_algo_state(&mut self) -> Option<SavedState> {
        let ids = std::mem::take(&mut self.unsaved_ids);
        let saved = self.strategy.save_state(&ids);
        take_saved_state(saved, &mut self.skipped_warned, &mut self.interrupted, "")
    }

    /// The saved state back into the algorithm, saying which attributes were restored and
    /// which were not (and why).
    fn restore_algo_state(&mut self) {
        let Some(saved) = self.state.algo_state.take() else {
            return;
        };
        let live: HashMap<String, OrderId> = self
            .all_client_ids()
            .into_iter()
            .map(|(id, client_id)| (client_id, id))
            .collect();
        let done = self
            .strategy
            .restore_state(&saved, &live, &self.state.journal);
        report_restore(&saved, done, "");
    }

    /// Hot reloads (applied or rejected) since the last call, into the audit log.
    fn audit_reloads(&mut self) {
        let events = self.strategy.reload_events();
        audit_reloads(
            &mut self.state.audit,
            events,
            &mut self.audited_reloads,
            None,
        );
    }

    fn audit_log_lines(&mut self) {
        audit_new_lines(&self.sink, &mut self.logged_lines, &mut self.state.audit);
    }
}

// ---- what the single-algorithm session and the live book (`super::book`) share --------------

/// Whether an earlier session of the state folder traded the bar time `close_time` (it
/// stepped through `resume_after`): counted in `skipped`, said once at the first bar after.
/// Back to a commit per write at a session's end; a journal that failed keeps its last
/// committed checkpoint instead of writes past it.
pub(crate) fn end_grouped_commits(journal: &mut Journal, storage_failed: bool) {
    let ungrouped = match storage_failed {
        true => journal
            .rollback_group()
            .and_then(|_| journal.set_grouped(false)),
        false => journal.set_grouped(false),
    };
    if let Err(e) = ungrouped {
        above_status!("error: the journal's last writes: {e}");
    }
}

pub(crate) fn traded_before(
    resume_after: Option<TimestampNs>,
    close_time: TimestampNs,
    skipped: &mut usize,
) -> bool {
    let Some(after) = resume_after else {
        return false;
    };
    if close_time <= after {
        *skipped += 1;
        return true;
    }
    if *skipped > 0 {
        above_status!(
            "resuming after {}: skipped {skipped} bar times an earlier session traded",
            format_timestamp(after)
        );
        *skipped = 0;
    }
    false
}

/// An order the breakers refused before it left: `rejected` with the reason (as an order
/// placed while halted is), audited. Returns the trip when trading is halted.
pub(crate) fn refuse_order(
    state: &mut State,
    session: &SharedSession,
    order: OrderId,
    error: &BreakerError,
    now: TimestampNs,
    who: &str,
) -> Option<Trip> {
    let (reason, trip) = match error {
        BreakerError::Halted(trip) => (
            format!("trading halted: {trip}"),
            Some(trip.as_ref().clone()),
        ),
        other => (other.to_string(), None),
    };
    lock(session).orders.apply_venue_status(
        order,
        OrderStatus::Rejected,
        Some(reason.clone()),
        now,
    );
    let _ = state.audit.log(
        wall_ns(),
        "warning",
        &format!("{who}order {} not placed: {reason}", order.0),
    );
    trip
}

/// A feed bar's five decimal texts: open, high, low, close, volume.
/// Hot reloads (applied or rejected) after the first `audited`, into the audit log (with the
/// book's `strategy`, if any).
pub(crate) fn audit_reloads(
    audit: &mut super::audit::AuditLog,
    events: &[ReloadEvent],
    audited: &mut usize,
    strategy: Option<&str>,
) {
    for event in &events[(*audited).min(events.len())..] {
        let wall = event
            .wall_time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_else(|_| wall_ns());
        let mut fields = serde_json::json!({
            "ok": event.ok,
            "files": event.files,
            "millis": event.millis,
            "message": event.message,
            "session_time": format_timestamp(event.sim_time),
        });
        if let Some(id) = strategy {
            fields["strategy"] = serde_json::json!(id);
        }
        let _ = audit.record(wall, AuditKind::Reload, fields);
    }
    *audited = events.len();
}

pub(crate) fn bar_texts(bar: &super::feed::FeedBar) -> [&str; 5] {
    [
        bar.texts[0].as_str(),
        bar.texts[1].as_str(),
        bar.texts[2].as_str(),
        bar.texts[3].as_str(),
        bar.texts[4].as_str(),
    ]
}

/// Says (and audits) how much history the warm-up found (`counts`: bars per symbol), and warns
/// when it ran short of what the indicators need (a young market, a short file); a first
/// replay session starts at the file's first bar like a backtest.
pub(crate) fn report_warm_up(
    audit: &mut super::audit::AuditLog,
    history: &super::feed::History,
    counts: &[usize],
    wanted: usize,
    needed: usize,
) {
    let fewest = counts.iter().copied().min().unwrap_or(0);
    let message = match history.batches.is_empty() {
        true => format!(
            "warm-up: no bars before the first live bar ({wanted} wanted){}",
            match history.source.is_empty() {
                true => String::new(),
                false => format!(" in {}", history.source),
            }
        ),
        false => format!(
            "warm-up: {fewest} of {wanted} bars of history per symbol from {}",
            history.source
        ),
    };
    above_status!("{message}");
    let _ = audit.log(wall_ns(), "info", &message);
    if !history.batches.is_empty() && fewest < needed {
        above_status!(
            "warning: the algorithm's indicators need {needed} bars; the first {} live bars \
             come before they are all ready",
            needed - fewest
        );
    }
}

/// Whether the halt file is due a look: at every wait (`always`), and between bars at most
/// every [`HALT_FILE_EVERY`] (a fast replay would otherwise stat it for every bar).
pub(crate) fn halt_file_due(last: &mut Option<Instant>, always: bool) -> bool {
    if !always && last.is_some_and(|t| t.elapsed() < HALT_FILE_EVERY) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// Says that trading is halted: a `new` trip is audited; one from an earlier session says how
/// to resume.
pub(crate) fn announce_halt(audit: &mut super::audit::AuditLog, trip: &Trip, new: bool) {
    if new {
        let _ = audit.breaker(trip);
        above_status!("HALTED: {trip}; new orders are refused until the breaker is reset");
    } else {
        above_status!(
            "HALTED since an earlier session: {trip}; new orders are refused \
             (remove the halt file if any, then start with --reset-breaker)"
        );
    }
}

/// The algorithm's state, or `None` with a warning when it cannot be taken. A Ctrl-C or
/// SIGTERM that landed inside the user's `__getstate__` is kept for the loop (`interrupted`),
/// never swallowed as a failed save. `who`: the strategy's prefix in a book.
pub(crate) fn take_saved_state(
    saved: Result<SavedState, SaveFailure>,
    warned: &mut bool,
    interrupted: &mut bool,
    who: &str,
) -> Option<SavedState> {
    match saved {
        Ok(saved) => {
            if !saved.skipped.is_empty() && !*warned {
                *warned = true;
                above_status!(
                    "note: {who}these attributes are not saved across restarts: {}",
                    saved.skipped.join(", ")
                );
            }
            Some(saved)
        }
        Err(SaveFailure::Interrupted) => {
            *interrupted = true;
            None
        }
        Err(SaveFailure::Failed(e)) => {
            above_status!("warning: {who}the algorithm state could not be saved: {e}");
            None
        }
    }
}

/// Says which attributes of a saved state were restored and which were not (and why).
pub(crate) fn report_restore(saved: &AlgoState, done: Result<Restored, String>, who: &str) {
    match done {
        Ok(done) => {
            let handles = match done.rebound {
                0 => String::new(),
                1 => "; 1 order handle re-bound to the journal's orders".into(),
                n => format!("; {n} order handles re-bound to the journal's orders"),
            };
            above_status!(
                "{who}restored the algorithm's state from {} ({}){handles}",
                format_timestamp(saved.time),
                done.restored
            );
            if !done.not_restored.is_empty() {
                above_status!("note: {who}not restored: {}", done.not_restored);
            }
        }
        Err(e) => above_status!("warning: {who}the saved algorithm state was not restored: {e}"),
    }
}

/// The algorithm's log lines since `logged` into the audit log.
pub(crate) fn audit_new_lines(
    sink: &LogSink,
    logged: &mut usize,
    audit: &mut super::audit::AuditLog,
) {
    let lines = sink
        .lines
        .lock()
        .map(|l| l[(*logged).min(l.len())..].to_vec())
        .unwrap_or_default();
    if lines.is_empty() {
        return;
    }
    *logged += lines.len();
    let wall = wall_ns();
    for line in lines {
        let _ = audit.log(wall, "algorithm", &line);
    }
}

/// Orders of `session`'s book placed since `seen` (moved past them), each with its symbol's
/// name and last close, and the session's time. Under the lock only to read: sending to an
/// exchange takes the lock itself.
#[allow(clippy::type_complexity)]
pub(crate) fn new_orders(
    session: &SharedSession,
    seen: &mut usize,
) -> (
    Vec<(crate::model::Order, String, Option<Decimal>)>,
    TimestampNs,
) {
    let s = lock(session);
    let new = s.orders.all()[*seen..]
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
    *seen = s.orders.all().len();
    (new, s.now)
}

/// One order out: a new client id, its intent journaled (for `strategy` of a book) and marked
/// sent, then handed to `broker`. Returns the client id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn journal_and_send(
    state: &mut State,
    broker: &mut dyn Broker,
    session: &SharedSession,
    order: &crate::model::Order,
    symbol: &str,
    last_close: Option<Decimal>,
    strategy: Option<&str>,
    bar_received: Option<Instant>,
    stats: &mut LoopStats,
) -> Result<String, LiveError> {
    let intent = journal_intent(state, order, symbol, strategy, &[])?;
    let client_id = intent.client_order_id.clone();
    if let Some(received) = bar_received {
        stats
            .tick_to_order_ns
            .push(received.elapsed().as_nanos() as u64);
    }
    let reference = order.kind.limit().or(last_close);
    broker.send(state, session, order.id, &intent, reference)?;
    Ok(client_id)
}

/// An order's intent under a new client id, journaled (for `strategy` of a book, or for the
/// `legs` of a netted order) and marked sent: from here on a restart resolves it at the
/// exchange by client id.
pub(crate) fn journal_intent(
    state: &mut State,
    order: &crate::model::Order,
    symbol: &str,
    strategy: Option<&str>,
    legs: &[(String, Decimal)],
) -> Result<OrderIntent, LiveError> {
    let wall = wall_ns();
    let client_id = state.journal.next_client_order_id(&state.prefix)?;
    let intent = intent_of(order, &client_id, symbol, wall);
    state
        .journal
        .record_intent_with_legs(&intent, strategy, legs)?;
    let _ = state.audit.intent(wall, &intent);
    state.journal.mark_sent(&client_id, wall)?;
    Ok(intent)
}

fn parse_price(text: &str) -> Result<Decimal, LiveError> {
    text.parse()
        .map_err(|e| LiveError::Feed(format!("price `{text}`: {e}")))
}

/// An engine order as the journal's intent.
pub fn intent_of(
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

#[path = "session_api.rs"]
pub(crate) mod session_api;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
