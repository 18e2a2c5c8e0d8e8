//! The exchange broker (`rustybt live --broker ccxt:<id>`): orders the algorithm placed go to
//! the exchange through the [`Venue`] (journaled before they are sent), and the exchange's
//! statuses and fills come back into the journal, the engine's order book and its ledger.
//! The order of operations is the one in docs/architecture.md ("Live: journal, breakers,
//! reconciliation").

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::{Broker, News, crash_point};
use crate::engine::{SharedSession, lock};
use crate::live::error::LiveError;
use crate::live::journal::{IntentState, JournaledOrder, OrderIntent, OrderType, TimeInForce};
use crate::live::reconcile::{AccountView, Outcome, Reconciler, needs_lookup};
use crate::live::recovery::{State, audit_status};
use crate::live::venue::{
    AccountStream, MarketRules, StreamEvent, Venue, VenueError, VenueErrorKind, VenueFill,
    VenueOrder, lookup_for_reconcile, ms_to_ns,
};
use crate::live::wall_ns;
use crate::model::{Fill, OrderId, OrderKind, OrderSide, OrderStatus, SymbolId, TimestampNs};

/// How often an exchange session asks for fills and statuses between bars.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// The shortest pause between two polls an order stream woke.
const WOKEN_POLL_GAP: Duration = Duration::from_millis(100);

/// The account's order updates by websocket, and what the broker knows of it.
struct OrdersStream {
    source: Box<dyn AccountStream>,
    /// An update arrived since the last poll.
    woken: bool,
    /// An outage was reported (one notice per outage).
    down: bool,
    /// For the next poll's news.
    notices: Vec<String>,
}

impl OrdersStream {
    fn note(&mut self, exchange: &str, event: StreamEvent) {
        match event {
            StreamEvent::Connected { .. } => {
                if std::mem::take(&mut self.down) {
                    self.notices
                        .push(format!("{exchange}: the order stream reconnected"));
                }
                // Whatever happened while it was down: look now.
                self.woken = true;
            }
            StreamEvent::Disconnected { reason, .. } | StreamEvent::Unavailable { reason, .. } => {
                if !std::mem::replace(&mut self.down, true) {
                    self.notices.push(format!(
                        "{exchange}: the order stream is down ({}); polling every {}s until it reconnects",
                        reason.as_deref().unwrap_or("no reason given"),
                        POLL_EVERY.as_secs()
                    ));
                }
            }
            // only bar streams send these
            StreamEvent::Covering { .. } | StreamEvent::Warning { .. } => {}
            StreamEvent::Failed { reason, .. } => {
                self.down = true;
                self.notices.push(format!(
                    "{exchange}: the order stream gave up ({}); polling every {}s",
                    reason.as_deref().unwrap_or("no reason given"),
                    POLL_EVERY.as_secs()
                ));
            }
        }
    }
}

pub struct ExchangeBroker {
    venue: Rc<RefCell<dyn Venue>>,
    exchange: String,
    cash_asset: String,
    rules: BTreeMap<String, MarketRules>,
    reconciler: Reconciler,
    reconcile_every: Duration,
    last_reconcile: Option<Instant>,
    /// When the last reconciliation ran and how it ended (the control API's readiness).
    last_outcome: Option<(crate::model::TimestampNs, &'static str)>,
    last_poll: Instant,
    cancel_on_exit: bool,
    /// Client id → the engine's order (this process's orders and the recovered open ones).
    engine_ids: HashMap<String, OrderId>,
    /// Orders the algorithm cancelled whose cancel at the exchange is settled (not asked again).
    settled: HashSet<String>,
    /// Sent, outcome unknown: resumed (looked up, sent only if never received) each poll.
    unresolved: Vec<String>,
    /// Last trade id seen per symbol (the fills query starts there; replays are no-ops).
    last_trade: HashMap<String, String>,
    /// Session start (ms): fills before it were journaled by earlier sessions.
    since_ms: i64,
    /// Journal positions not yet in the ledger (see [`Broker::on_bar`]).
    unseeded: BTreeMap<String, Decimal>,
    /// Order updates by websocket, when the venue has them (in a cell: `poll_due` drains it).
    orders_stream: RefCell<Option<OrdersStream>>,
}

/// One execution at the exchange, in the engine's terms.
pub struct Execution<'a> {
    pub symbol: SymbolId,
    pub side: OrderSide,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    /// `None`: the cash asset.
    pub fee_asset: Option<&'a str>,
    pub time: TimestampNs,
}

/// An execution into a session's order book (`order`, when it still holds it open), ledger
/// and costs. A fee counts as cash only when charged in `cash_asset`; a fee in the symbol's
/// `base` asset leaves a smaller position: booked as a sale at price 0 (a realized loss of
/// the fee at cost). Returns the fill `on_fill` sees.
pub fn book_execution(
    s: &mut crate::engine::Session,
    order: Option<OrderId>,
    execution: &Execution<'_>,
    cash_asset: &str,
    base: Option<&str>,
) -> Result<Fill, LiveError> {
    let cash_fee = match execution.fee_asset {
        None => execution.fee,
        Some(asset) if asset == cash_asset => execution.fee,
        _ => Decimal::ZERO,
    };
    let engine_fill = order
        .and_then(|id| {
            s.orders.apply_venue_fill(
                id,
                execution.quantity,
                execution.price,
                cash_fee,
                execution.time,
            )
        })
        .unwrap_or(Fill {
            // An order the engine no longer holds open (cancelled here, filled there).
            order_id: order.unwrap_or(OrderId(0)),
            symbol: execution.symbol,
            side: execution.side,
            quantity: execution.quantity,
            price: execution.price,
            fee: cash_fee,
            slippage: Decimal::ZERO,
            time: execution.time,
        });
    s.ledger.apply_fill(&engine_fill).map_err(LiveError::from)?;
    s.costs
        .record_fill(&engine_fill)
        .map_err(|e| LiveError::Engine(format!("recording the costs of a fill: {e}")))?;
    if let (Some(asset), Some(base)) = (execution.fee_asset, base)
        && asset == base
        && execution.fee > Decimal::ZERO
    {
        let fee_fill = Fill {
            side: OrderSide::Sell,
            quantity: execution.fee,
            price: Decimal::ZERO,
            fee: Decimal::ZERO,
            ..engine_fill.clone()
        };
        s.ledger.apply_fill(&fee_fill).map_err(LiveError::from)?;
    }
    Ok(engine_fill)
}

/// An order open at the exchange since an earlier session, back in a session's order book
/// with what remains of it (`None`: nothing remains).
pub fn adopt(
    session: &SharedSession,
    order: &JournaledOrder,
) -> Result<Option<OrderId>, LiveError> {
    let mut s = lock(session);
    let now = s.now;
    let Some(symbol) = s.market.symbol_id(&order.symbol) else {
        return Err(LiveError::UnlistedSymbol {
            symbol: order.symbol.clone(),
            what: format!("an open order ({})", order.client_order_id),
        });
    };
    let kind = match (order.order_type, order.limit_price) {
        (OrderType::Limit, Some(limit)) => OrderKind::Limit { limit },
        _ => OrderKind::Market,
    };
    let quantity = order.remaining();
    if quantity <= Decimal::ZERO {
        return Ok(None);
    }
    let request = crate::execution::OrderRequest {
        symbol,
        side: order.order_side(),
        quantity,
        kind,
        tif: crate::model::TimeInForce::Gtc,
        oco_group: None,
        parent: None,
    };
    let id = s
        .orders
        .submit_with_reason(
            request,
            now,
            0,
            &format!(
                "open at the exchange since an earlier session ({})",
                order.client_order_id
            ),
        )
        .map_err(|e| LiveError::Engine(e.to_string()))?;
    Ok(Some(id))
}

/// Orders the journal holds as acknowledged and not final: open at the exchange.
fn open_at_exchange(state: &State) -> Result<Vec<JournaledOrder>, LiveError> {
    Ok(state.journal.acknowledged_orders()?)
}

fn venue_failure(context: &str, error: &VenueError) -> String {
    format!("{context}: {} ({})", error.message, error.kind.as_str())
}

impl ExchangeBroker {
    /// The broker of a session, started: every order the journal shows as intended or sent
    /// but never acknowledged is resolved by client id before anything else is sent
    /// (`resume` waits out the send window, looks it up, and submits only if the exchange
    /// never got it).
    pub fn start(
        venue: Rc<RefCell<dyn Venue>>,
        exchange: String,
        cash_asset: String,
        rules: BTreeMap<String, MarketRules>,
        settings: &crate::live::config::LiveSettings,
        state: &mut State,
    ) -> Result<Self, LiveError> {
        let reconciler =
            Reconciler::new(settings.reconcile.clone()).map_err(LiveError::Settings)?;
        let mut broker = ExchangeBroker {
            venue,
            exchange,
            cash_asset,
            rules,
            reconciler,
            reconcile_every: Duration::from_nanos(settings.reconcile_interval_ns.max(0) as u64),
            last_reconcile: None,
            last_outcome: None,
            last_poll: Instant::now(),
            cancel_on_exit: settings.cancel_open_orders_on_exit,
            engine_ids: HashMap::new(),
            settled: HashSet::new(),
            unresolved: Vec::new(),
            last_trade: state.last_trade_ids.clone().into_iter().collect(),
            since_ms: wall_ns() / 1_000_000,
            unseeded: BTreeMap::new(),
            orders_stream: RefCell::new(None),
        };
        let unresolved = std::mem::take(&mut state.unresolved);
        broker
            .unresolved
            .extend(unresolved.into_iter().map(|o| o.client_order_id));
        let mut news = News::default();
        broker.resume_pending(state, &mut news)?;
        for notice in news.notices {
            crate::above_status!("{notice}");
        }
        Ok(broker)
    }

    /// Open orders of earlier sessions become orders of the engine's book again (with the
    /// quantity that remains), so fills and cancels reach the algorithm as for its own.
    fn adopt_open_orders(
        &mut self,
        session: &SharedSession,
        open: &[JournaledOrder],
    ) -> Result<usize, LiveError> {
        let mut adopted = 0;
        for order in open {
            if let Some(id) = adopt(session, order)? {
                self.engine_ids.insert(order.client_order_id.clone(), id);
                adopted += 1;
            }
        }
        Ok(adopted)
    }

    /// Sends one order the algorithm placed; the intent is journaled (and marked sent) by the
    /// caller. Returns the rejection reason when the exchange refused it.
    pub fn submit(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        engine_id: OrderId,
        intent: &OrderIntent,
        reference_price: Option<Decimal>,
    ) -> Result<Option<String>, LiveError> {
        self.engine_ids
            .insert(intent.client_order_id.clone(), engine_id);
        let result = match (intent.order_type, intent.time_in_force) {
            (
                OrderType::Market | OrderType::Limit,
                TimeInForce::Gtc | TimeInForce::Ioc | TimeInForce::Fok,
            ) => self.venue.borrow_mut().submit(intent, reference_price),
            _ => Err(VenueError::new(
                VenueErrorKind::RuleViolation,
                format!(
                    "{} sends market and limit orders (GTC, IOC, FOK) only; this is a {} {} order",
                    self.exchange,
                    intent.order_type.as_str(),
                    intent.time_in_force.as_str()
                ),
            )),
        };
        let wall = wall_ns();
        crash_point("after_send");
        match result {
            Ok(order) => {
                self.record_order(state, session, &order, wall)?;
                Ok(None)
            }
            Err(error) => match error.kind {
                VenueErrorKind::OutcomeUnknown
                | VenueErrorKind::RateLimited
                | VenueErrorKind::Internal => {
                    // The request may have reached the book: never resend blindly.
                    self.unresolved.push(intent.client_order_id.clone());
                    let _ = state.audit.log(
                        wall,
                        "warning",
                        &format!(
                            "order {}: outcome unknown ({}); it is looked up by client id before anything is resent",
                            intent.client_order_id, error.message
                        ),
                    );
                    Ok(None)
                }
                _ => {
                    let reason = format!("{}: {}", self.exchange, error.message);
                    self.reject(state, session, &intent.client_order_id, &reason, wall)?;
                    Ok(Some(reason))
                }
            },
        }
    }

    fn reject(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        client_id: &str,
        reason: &str,
        wall: TimestampNs,
    ) -> Result<(), LiveError> {
        state
            .journal
            .record_status(&crate::live::journal::OrderUpdate {
                client_order_id: client_id.to_string(),
                time: wall,
                status: OrderStatus::Rejected,
                filled_quantity: Decimal::ZERO,
                exchange_id: None,
                reason: Some(reason.to_string()),
            })?;
        if let Some(&id) = self.engine_ids.get(client_id) {
            let mut s = lock(session);
            let now = s.now;
            s.orders
                .apply_venue_status(id, OrderStatus::Rejected, Some(reason.to_string()), now);
        }
        Ok(())
    }

    /// A state the exchange reported: acknowledged and status journaled; a final status other
    /// than filled closes the engine's order (fills arrive through [`Self::poll_fills`]).
    fn record_order(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        order: &VenueOrder,
        wall: TimestampNs,
    ) -> Result<(), LiveError> {
        let journaled = state.journal.order(&order.client_order_id)?;
        if journaled.exchange_id.is_none() {
            state
                .journal
                .record_ack(&order.client_order_id, &order.exchange_order_id, wall)?;
            let _ = state
                .audit
                .ack(wall, &order.client_order_id, &order.exchange_order_id);
        }
        if journaled.state != IntentState::Final {
            let update = order.to_update(wall);
            state.journal.record_status(&update)?;
            audit_status(&mut state.audit, wall, &update);
        }
        if !order.status.is_open()
            && order.status != OrderStatus::Filled
            && let Some(&id) = self.engine_ids.get(&order.client_order_id)
        {
            let mut s = lock(session);
            let now = s.now;
            s.orders
                .apply_venue_status(id, order.status, order.reason.clone(), now);
        }
        Ok(())
    }

    fn resume_pending(&mut self, state: &mut State, news: &mut News) -> Result<(), LiveError> {
        let pending = std::mem::take(&mut self.unresolved);
        for client_id in pending {
            let order = state.journal.order(&client_id)?;
            let intent = OrderIntent {
                client_order_id: order.client_order_id.clone(),
                symbol: order.symbol.clone(),
                side: order.order_side(),
                quantity: order.quantity,
                order_type: order.order_type,
                limit_price: order.limit_price,
                stop_price: order.stop_price,
                time_in_force: order.time_in_force,
                created_at: order.created_at,
            };
            let sent_at_ms = order.resume_from() / 1_000_000;
            let result = self.venue.borrow_mut().resume(&intent, sent_at_ms);
            let wall = wall_ns();
            match result {
                Ok(found) => {
                    let journaled = state.journal.order(&client_id)?;
                    if journaled.state == IntentState::Intent {
                        state.journal.mark_sent(&client_id, wall)?;
                    }
                    news.notices.push(format!(
                        "order {client_id} resolved by client id: {} ({} filled)",
                        found.status.as_str(),
                        found.filled
                    ));
                    let exchange_id = found.exchange_order_id.clone();
                    if journaled.exchange_id.is_none() {
                        state.journal.record_ack(&client_id, &exchange_id, wall)?;
                        let _ = state.audit.ack(wall, &client_id, &exchange_id);
                    }
                    state.journal.record_status(&found.to_update(wall))?;
                }
                Err(error)
                    if matches!(
                        error.kind,
                        VenueErrorKind::OutcomeUnknown
                            | VenueErrorKind::RateLimited
                            | VenueErrorKind::Unavailable
                            | VenueErrorKind::Internal
                    ) =>
                {
                    news.notices.push(venue_failure(
                        &format!("order {client_id} still unresolved"),
                        &error,
                    ));
                    self.unresolved.push(client_id);
                }
                Err(error) => {
                    state
                        .journal
                        .record_status(&crate::live::journal::OrderUpdate {
                            client_order_id: client_id.clone(),
                            time: wall,
                            status: OrderStatus::Rejected,
                            filled_quantity: Decimal::ZERO,
                            exchange_id: None,
                            reason: Some(error.message.clone()),
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Order updates by websocket wake the poll (which reads states and fills through REST, as
    /// without a stream) instead of waiting for its next turn.
    pub fn with_orders_stream(self, stream: Box<dyn AccountStream>) -> Self {
        *self.orders_stream.borrow_mut() = Some(OrdersStream {
            source: stream,
            woken: false,
            down: false,
            notices: Vec::new(),
        });
        self
    }

    /// Whether the order stream brought an update since the last poll (drains it).
    fn woken_by_stream(&self) -> bool {
        let mut slot = self.orders_stream.borrow_mut();
        let Some(stream) = slot.as_mut() else {
            return false;
        };
        match stream.source.take() {
            Ok(update) => {
                stream.woken |= update.updates > 0;
                for event in update.events {
                    stream.note(&self.exchange, event);
                }
            }
            Err(e) => {
                crate::above_status!(
                    "{}: the order stream failed ({e}); polling every {}s",
                    self.exchange,
                    POLL_EVERY.as_secs()
                );
                *slot = None;
                return false;
            }
        }
        // Woken polls are spaced a little: a burst of updates is one poll.
        stream.woken && self.last_poll.elapsed() >= WOKEN_POLL_GAP
    }

    /// Everything the exchange has to say since the last poll: unresolved orders, orders the
    /// algorithm cancelled, orders that closed, fills; and a reconciliation when due.
    fn poll_now(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError> {
        self.last_poll = Instant::now();
        let mut news = News::default();
        if let Some(stream) = self.orders_stream.get_mut().as_mut() {
            stream.woken = false;
            news.notices.append(&mut stream.notices);
        }
        self.resume_pending(state, &mut news)?;
        self.cancel_withdrawn(state, session, &mut news)?;
        self.poll_statuses(state, session)?;
        self.poll_fills(state, Some(session), &mut news)?;
        if self
            .last_reconcile
            .is_none_or(|t| t.elapsed() >= self.reconcile_every)
        {
            self.reconcile(state, session, &mut news)?;
        }
        self.count_requests(state, session, &mut news)?;
        Ok(news)
    }

    /// Orders the algorithm cancelled in the engine that are still open at the exchange.
    fn cancel_withdrawn(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        news: &mut News,
    ) -> Result<(), LiveError> {
        let withdrawn: Vec<(String, String)> = {
            let s = lock(session);
            self.engine_ids
                .iter()
                .filter(|(cid, id)| {
                    !self.settled.contains(*cid)
                        && s.orders
                            .get(**id)
                            .is_some_and(|o| o.status == OrderStatus::Cancelled)
                })
                .map(|(cid, id)| {
                    (
                        cid.clone(),
                        s.market
                            .symbol_name(s.orders.get(*id).map_or(SymbolId(0), |o| o.symbol))
                            .to_string(),
                    )
                })
                .collect()
        };
        for (client_id, symbol) in withdrawn {
            let journaled = state.journal.order(&client_id)?;
            if journaled.state == IntentState::Acknowledged {
                self.cancel_one(state, session, &client_id, &symbol, news)?;
            }
            // Asked once per order: final now, or looked at again only if the cancel failed.
            if state.journal.order(&client_id)?.state != IntentState::Acknowledged {
                self.settled.insert(client_id);
            }
        }
        Ok(())
    }

    fn cancel_one(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        client_id: &str,
        symbol: &str,
        news: &mut News,
    ) -> Result<(), LiveError> {
        let result = self.venue.borrow_mut().cancel(client_id, symbol);
        let wall = wall_ns();
        match result {
            Ok(order) => self.record_order(state, session, &order, wall),
            Err(error) => match (error.kind, error.state) {
                (VenueErrorKind::NotCancellable, Some(order)) => {
                    news.notices.push(format!(
                        "order {client_id} could not be cancelled: it is already {} at {}",
                        order.status.as_str(),
                        self.exchange
                    ));
                    self.record_order(state, session, &order, wall)
                }
                (VenueErrorKind::UnknownOrder, _) => {
                    self.reject(state, session, client_id, "unknown at the exchange", wall)
                }
                (kind, _) => {
                    news.notices.push(format!(
                        "cancelling {client_id} failed ({}): {}; retried at the next poll",
                        kind.as_str(),
                        error.message
                    ));
                    Ok(())
                }
            },
        }
    }

    /// Orders the journal has open that the exchange no longer lists as open: their final
    /// state by client id.
    fn poll_statuses(
        &mut self,
        state: &mut State,
        session: &SharedSession,
    ) -> Result<(), LiveError> {
        let open_here: Vec<JournaledOrder> = open_at_exchange(state)?;
        if open_here.is_empty() {
            return Ok(());
        }
        let open_there: HashSet<String> = match self.venue.borrow_mut().open_orders() {
            Ok(orders) => orders.into_iter().map(|o| o.client_order_id).collect(),
            Err(error) => {
                let _ =
                    state
                        .audit
                        .log(wall_ns(), "warning", &venue_failure("open orders", &error));
                return Ok(());
            }
        };
        for order in open_here {
            if open_there.contains(&order.client_order_id) {
                continue;
            }
            let found = self
                .venue
                .borrow_mut()
                .lookup(&order.client_order_id, &order.symbol);
            match found {
                Ok(Some(found)) => self.record_order(state, session, &found, wall_ns())?,
                Ok(None) => {} // reconciliation decides
                Err(error) => {
                    let _ = state.audit.log(
                        wall_ns(),
                        "warning",
                        &venue_failure(&format!("lookup of {}", order.client_order_id), &error),
                    );
                }
            }
        }
        Ok(())
    }

    /// Startup, after resolving: fills the exchange made while no session ran go into the
    /// journal (the engine's book is then opened from it). Returns how many were new.
    fn catch_up_fills(&mut self, state: &mut State) -> Result<usize, LiveError> {
        let before = state.journal.fills()?.len();
        let mut news = News::default();
        self.poll_fills(state, None, &mut news)?;
        let after = state.journal.fills()?.len();
        Ok(after - before)
    }

    /// New fills into the journal and, with a session, into the engine.
    fn poll_fills(
        &mut self,
        state: &mut State,
        session: Option<&SharedSession>,
        news: &mut News,
    ) -> Result<(), LiveError> {
        let symbols: Vec<String> = self.rules.keys().cloned().collect();
        for symbol in symbols {
            let from = self.last_trade.get(&symbol).cloned();
            let since = if from.is_none() {
                Some(self.since_ms - 60_000)
            } else {
                None
            };
            let fills = match self
                .venue
                .borrow_mut()
                .fills(&symbol, from.as_deref(), since)
            {
                Ok(fills) => fills,
                Err(error) => {
                    let _ = state
                        .audit
                        .log(wall_ns(), "warning", &venue_failure("fills", &error));
                    continue;
                }
            };
            for fill in fills {
                self.last_trade
                    .insert(symbol.clone(), fill.trade_id.clone());
                self.apply_fill(state, session, &fill, news)?;
            }
        }
        Ok(())
    }

    /// One execution: journaled (a replay is a no-op), then into the engine's book and ledger.
    fn apply_fill(
        &mut self,
        state: &mut State,
        session: Option<&SharedSession>,
        fill: &VenueFill,
        news: &mut News,
    ) -> Result<(), LiveError> {
        let Some(client_id) = fill.client_order_id.clone() else {
            return Ok(()); // not ours: reconciliation sees its effect on the account
        };
        if state.journal.order(&client_id).is_err() {
            return Ok(()); // an order this journal never placed
        }
        let record = fill.to_record(&client_id);
        if !state.journal.record_fill(&record)? {
            return Ok(());
        }
        let _ = state.audit.fill(wall_ns(), &record);
        crash_point("after_fill");
        let Some(session) = session else {
            return Ok(());
        };
        let base = self.rules.get(&fill.symbol).map(|r| r.base.as_str());
        let mut s = lock(session);
        let Some(symbol) = s.market.symbol_id(&fill.symbol) else {
            return Ok(());
        };
        let order = self.engine_ids.get(&client_id).copied();
        let execution = Execution {
            symbol,
            side: fill.side,
            quantity: fill.quantity,
            price: fill.price,
            fee: fill.fee,
            fee_asset: Some(fill.fee_asset.as_str()).filter(|a| !a.is_empty()),
            time: ms_to_ns(fill.time_ms),
        };
        let engine_fill = book_execution(&mut s, order, &execution, &self.cash_asset, base)?;
        news.fills.push(engine_fill);
        Ok(())
    }

    /// Journal and engine against the exchange: positions, the cash balance, open orders.
    pub fn reconcile(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        news: &mut News,
    ) -> Result<(), LiveError> {
        self.last_reconcile = Some(Instant::now());
        let book = state.journal.derive_book()?;
        let open: Vec<JournaledOrder> = open_at_exchange(state)?;
        let mut engine_view = AccountView::from_journal(&book, &open);
        engine_view
            .positions
            .retain(|symbol, _| self.rules.contains_key(symbol));
        let broker_view = match self.venue.borrow_mut().account_view(&self.cash_asset) {
            Ok(view) => view,
            Err(error) => {
                news.notices
                    .push(venue_failure("reconciliation skipped: the account", &error));
                return Ok(());
            }
        };
        let mut lookups = BTreeMap::new();
        for client_id in needs_lookup(&engine_view, &broker_view) {
            let symbol = engine_view
                .open_orders
                .get(&client_id)
                .map(|o| o.symbol.clone())
                .unwrap_or_default();
            let found = self.venue.borrow_mut().lookup(&client_id, &symbol);
            if let Ok(found) = found
                && let Some(lookup) = lookup_for_reconcile(found)
            {
                lookups.insert(client_id, lookup);
            }
        }
        let wall = wall_ns();
        let mut report = self
            .reconciler
            .reconcile(wall, &engine_view, &broker_view, &lookups);
        // Adopted adjustments are journaled with their report in one transaction: a book
        // attributes them as it journals them, and one it cannot attribute (a position no
        // strategy holds) is not adopted but halts.
        let mut adopted = Vec::new();
        let mut journaled = false;
        if report.outcome == Outcome::Synced {
            adopted = report.book_adjustments(&self.cash_asset);
            let recorded = state.journal.record_adopted(wall, &adopted, |shares| {
                report.attribution = shares.to_vec();
                Some((report.outcome.as_str().to_string(), report.to_json()))
            });
            match recorded {
                Ok(_) => {
                    journaled = true;
                    crash_point("after_adjustment");
                }
                Err(e @ crate::live::journal::JournalError::Unattributable(_)) => {
                    report.outcome = Outcome::Halted;
                    report.halt_reason = Some(e.to_string());
                    adopted.clear();
                }
                Err(e) => return Err(e.into()),
            }
        }
        let _ = state.audit.reconcile(&report);
        self.last_outcome = Some((wall, report.outcome.as_str()));
        if !journaled {
            state.journal.record_reconciliation(
                wall,
                report.outcome.as_str(),
                &report.to_json(),
            )?;
        }
        let _ = report.write_json(&state.state_dir.join("reconciliation.json"));
        if report.is_clean() {
            return Ok(());
        }
        news.notices.push(report.summary());
        match report.outcome {
            Outcome::Halted => {
                let reason = report
                    .halt_reason
                    .clone()
                    .unwrap_or_else(|| "reconciliation found critical discrepancies".into());
                match state.breakers.trip_external(
                    wall_ns(),
                    crate::live::breakers::BreakerKind::Reconciliation,
                    &reason,
                    serde_json::json!({"critical": report.critical, "minor": report.minor}),
                ) {
                    Ok(trip) => news.trips.push(trip),
                    Err(e) => news.notices.push(e.to_string()),
                }
            }
            Outcome::Synced => self.sync_engine(session, &adopted)?,
            Outcome::Clean => {}
        }
        Ok(())
    }

    /// Applies adopted broker numbers to the engine's ledger: a position change at the
    /// current mark (cash compensated, so only the position moves), a cash change as is.
    fn sync_engine(
        &mut self,
        session: &SharedSession,
        adjustments: &[crate::live::journal::BookAdjustment],
    ) -> Result<(), LiveError> {
        use crate::live::journal::AdjustmentTarget;
        let mut s = lock(session);
        for adjustment in adjustments {
            match &adjustment.target {
                AdjustmentTarget::Cash => s
                    .ledger
                    .adjust_cash(adjustment.delta)
                    .map_err(LiveError::from)?,
                AdjustmentTarget::Position(symbol) => {
                    let Some(id) = s.market.symbol_id(symbol) else {
                        continue;
                    };
                    let mark = s.ledger.position(id).map(|p| p.mark).unwrap_or_default();
                    let now = s.now;
                    shift_position(&mut s.ledger, id, adjustment.delta, mark, now)?;
                }
            }
        }
        Ok(())
    }

    /// Requests and failures since the last poll, for the error-rate breaker; backoffs to the log.
    fn count_requests(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        news: &mut News,
    ) -> Result<(), LiveError> {
        let now = lock(session).now;
        let events = self.venue.borrow_mut().take_events();
        for event in events {
            if let crate::live::venue::VenueEvent::Backoff { .. } = &event {
                let _ = state
                    .audit
                    .log(wall_ns(), "warning", &format!("backoff: {event:?}"));
                news.notices
                    .push(format!("{}: backing off ({event:?})", self.exchange));
            }
            if let crate::live::venue::VenueEvent::Request { .. } = &event {
                if let Ok(Some(trip)) = state.breakers.on_request(now) {
                    news.trips.push(trip);
                }
                if event.is_failed_request()
                    && let Ok(Some(trip)) = state.breakers.on_error(now)
                {
                    news.trips.push(trip);
                }
            }
        }
        Ok(())
    }

    /// At exit: cancel what is open at the exchange when `[live] cancel_open_orders_on_exit`.
    fn on_exit(&mut self, state: &mut State, session: &SharedSession) -> Result<usize, LiveError> {
        if !self.cancel_on_exit {
            return Ok(0);
        }
        let open: Vec<JournaledOrder> = open_at_exchange(state)?;
        let mut news = News::default();
        for order in &open {
            self.cancel_one(
                state,
                session,
                &order.client_order_id,
                &order.symbol,
                &mut news,
            )?;
        }
        for notice in news.notices {
            crate::above_status!("{notice}");
        }
        Ok(open.len())
    }
}

impl Broker for ExchangeBroker {
    /// The book is the journal's (genesis balance, fills, adopted broker numbers), after the
    /// fills made while no session ran are caught up: cash now, positions at the first prices
    /// seen ([`Broker::on_bar`]). Orders left open at the exchange become the engine's again,
    /// then the journal is reconciled against the exchange.
    fn open_book(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError> {
        let mut news = News::default();
        let caught = self.catch_up_fills(state)?;
        if caught > 0 {
            news.notices.push(format!(
                "{caught} fills made while no session ran are journaled"
            ));
        }
        let book = state.journal.derive_book()?;
        {
            let mut s = lock(session);
            let symbols = s.market.symbol_count();
            s.ledger = crate::accounting::Ledger::new(book.cash, symbols);
            for (symbol, quantity) in &book.positions {
                if quantity.is_zero() {
                    continue;
                }
                if s.market.symbol_id(symbol).is_none() {
                    news.notices.push(format!(
                        "note: the journal holds {quantity} {symbol}, which --symbols does not list; it is left alone"
                    ));
                    continue;
                }
                self.unseeded.insert(symbol.clone(), *quantity);
            }
        }
        let open = std::mem::take(&mut state.open_orders);
        let adopted = self.adopt_open_orders(session, &open)?;
        if adopted > 0 {
            news.notices.push(format!(
                "{adopted} orders open at the exchange since an earlier session are tracked again"
            ));
        }
        self.reconcile(state, session, &mut news)?;
        Ok(news)
    }

    fn unseeded(&self) -> &BTreeMap<String, Decimal> {
        &self.unseeded
    }

    /// Journal positions enter the ledger at the first close seen of their symbol: bought at
    /// that price with the cash it cost given back, so cash stays the journal's and PnL counts
    /// from the session's start.
    fn on_bar(
        &mut self,
        session: &SharedSession,
        closes: &[(SymbolId, Decimal)],
    ) -> Result<(), LiveError> {
        if self.unseeded.is_empty() {
            return Ok(());
        }
        let mut s = lock(session);
        let now = s.now;
        for &(id, price) in closes {
            let name = s.market.symbol_name(id).to_string();
            let Some(quantity) = self.unseeded.remove(&name) else {
                continue;
            };
            shift_position(&mut s.ledger, id, quantity, price, now)?;
        }
        Ok(())
    }

    fn refuses_linked(&self) -> Option<&'static str> {
        Some(
            "brackets and OCO groups are paper-only: an exchange broker sends single market and \
             limit orders",
        )
    }

    fn sends_irrevocably(&self) -> bool {
        true
    }

    fn send(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        order: OrderId,
        intent: &OrderIntent,
        reference_price: Option<Decimal>,
    ) -> Result<(), LiveError> {
        crash_point("before_send");
        self.submit(state, session, order, intent, reference_price)?;
        Ok(())
    }

    /// The exchange's fills and statuses come through [`Broker::poll`].
    fn after_step(
        &mut self,
        _: &mut State,
        _: &SharedSession,
        _: &[Fill],
    ) -> Result<bool, LiveError> {
        Ok(false)
    }

    fn poll_due(&self) -> bool {
        self.last_poll.elapsed() >= POLL_EVERY || self.woken_by_stream()
    }

    /// Everything the exchange has to say since the last poll: unresolved orders, orders the
    /// algorithm cancelled, orders that closed, fills; and a reconciliation when due.
    fn poll(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError> {
        self.poll_now(state, session)
    }

    fn last_reconciliation(&self) -> Option<(crate::model::TimestampNs, &'static str)> {
        self.last_outcome
    }

    fn reconcile_now(
        &mut self,
        state: &mut State,
        session: &SharedSession,
    ) -> Result<Option<News>, LiveError> {
        let mut news = News::default();
        self.reconcile(state, session, &mut news)?;
        Ok(Some(news))
    }

    fn client_ids(&self) -> Vec<(String, OrderId)> {
        self.engine_ids
            .iter()
            .map(|(cid, id)| (cid.clone(), *id))
            .collect()
    }

    /// Cancels what is open at the exchange when `[live] cancel_open_orders_on_exit`.
    fn close(
        &mut self,
        state: &mut State,
        session: &SharedSession,
    ) -> Result<Option<String>, LiveError> {
        Ok(match self.on_exit(state, session)? {
            0 => None,
            n => Some(format!("cancelled {n} open orders at the exchange")),
        })
    }
}

/// `delta` units of `symbol` into (or out of) a ledger at `price` with that cash given back:
/// the position moves, cash does not (units the account holds without an order of its own: a
/// journal position entering at its first close, an adopted reconciliation difference).
pub(crate) fn shift_position(
    ledger: &mut crate::accounting::Ledger,
    symbol: SymbolId,
    delta: Decimal,
    price: Decimal,
    time: TimestampNs,
) -> Result<(), crate::accounting::LedgerError> {
    ledger.apply_fill(&Fill {
        order_id: OrderId(0),
        symbol,
        side: if delta > Decimal::ZERO {
            OrderSide::Buy
        } else {
            OrderSide::Sell
        },
        quantity: delta.abs(),
        price,
        fee: Decimal::ZERO,
        slippage: Decimal::ZERO,
        time,
    })?;
    ledger.adjust_cash(delta * price)
}
