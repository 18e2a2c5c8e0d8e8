//! The session's side of the control API (`crate::live::api`): at its safe points the loop
//! applies the operators' queued actions and publishes a snapshot for the API's threads.
//! Everything here runs on the session's own thread, between bars or in a wait slice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{End, Halt, LiveSession, LiveStrategy};
use crate::engine::{BacktestOutcome, lock};
use crate::live::api::{
    Action, FillView, LastBar, OrderView, Phase, PositionView, Reconciliation, Reply, SessionLink,
    Snapshot, StrategyView,
};
use crate::live::audit::{AuditKind, audit_time};
use crate::live::breakers::BreakerError;
use crate::live::error::LiveError;
use crate::live::journal::ControlRecord;
use crate::live::wall_ns;
use crate::model::{Order, OrderId, SymbolId, TimestampNs, format_timestamp};

/// Orders and fills a snapshot lists (the most recent; every open order besides). The
/// journal, the audit log and the event stream have them all.
pub const KEEP: usize = 1_000;

/// What the API shows that the session keeps between snapshots.
#[derive(Default)]
pub(super) struct ApiView {
    pub running: bool,
    /// The last bar's close and when it was received (UTC ns).
    last_bar: Option<(TimestampNs, TimestampNs)>,
    /// The last [`KEEP`] fills, and how many of the session's are in.
    fills: VecDeque<FillView>,
    fills_seen: usize,
    fills_shared: Arc<Vec<FillView>>,
}

impl<S: LiveStrategy> LiveSession<'_, S> {
    /// Serves the control API from this session (`--api`).
    pub fn set_api(&mut self, link: SessionLink) {
        self.api = Some(link);
    }

    /// A bar arrived: its close and when (for the API's lag).
    pub(super) fn note_bar(&mut self, close_time: TimestampNs) {
        if self.api.is_none() {
            return;
        }
        self.api_view.last_bar = Some((close_time, wall_ns()));
    }

    /// A safe point: the queued actions are applied, then a snapshot is published when one
    /// is due (or `force`).
    pub(super) fn serve_api(
        &mut self,
        outcome: &mut BacktestOutcome,
        force: bool,
    ) -> Result<(), Halt> {
        let Some(link) = &self.api else {
            return Ok(());
        };
        let commands: Vec<_> = link.commands.try_iter().collect();
        let acted = !commands.is_empty();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            let (reply, failure) = match self.apply(&command.action, outcome) {
                Ok(reply) => (reply, None),
                Err(e) => (Reply::conflict(e.to_string()), Some(e)),
            };
            self.record_action(&command.action, &command.by, &reply);
            answers.push((command.reply, reply));
            if let Some(e) = failure.filter(|e| e.storage().is_some()) {
                crate::live::api::answer(answers);
                return Err(e.into());
            }
        }
        // An operator's action reaches the disk with the next checkpoint, not a second later.
        self.commit_soon |= acted;
        let due = self.api.as_ref().is_some_and(SessionLink::publish_due);
        if force || acted || due {
            crate::live::broker::pause_point("before_publish");
            self.publish(outcome, Phase::Running, None);
        }
        crate::live::api::answer(answers);
        Ok(())
    }

    /// The last snapshot: the session has ended (and how).
    pub(super) fn api_stopped(&mut self, outcome: &BacktestOutcome, end: &End) {
        if self.api.is_some() {
            if let Some(link) = &self.api {
                link.refuse_queued();
            }
            self.publish(outcome, Phase::Stopped, Some(end.reason()));
        }
    }

    /// The journal and the audit log get every action with the token's name.
    fn record_action(&mut self, action: &Action, by: &str, reply: &Reply) {
        record_action(self.state, action, by, reply);
    }

    fn apply(
        &mut self,
        action: &Action,
        outcome: &mut BacktestOutcome,
    ) -> Result<Reply, LiveError> {
        match action {
            Action::Halt {
                reason,
                cancel_open_orders,
            } => self.api_halt(reason, *cancel_open_orders, outcome),
            Action::Resume => {
                let wall = wall_ns();
                match self.state.breakers.reset(wall, "the control API") {
                    Ok(cleared) => {
                        lock(&self.session).halted = None;
                        if let Some(trip) = &cleared {
                            crate::above_status!(
                                "RESUMED through the API: {trip} is cleared; new orders are accepted again"
                            );
                        }
                        Ok(Reply::ok(json!({"halted": false, "cleared": cleared})))
                    }
                    Err(e @ BreakerError::HaltFilePresent(_)) => Ok(Reply::conflict(e.to_string())),
                    Err(e) => Err(e.into()),
                }
            }
            Action::Reconcile => {
                let before = self.broker.last_reconciliation();
                let Some(news) = self.broker.reconcile_now(self.state, &self.session)? else {
                    return Ok(Reply::conflict(
                        "a paper session has no exchange account to reconcile against",
                    ));
                };
                let notices = news.notices.clone();
                self.tell(&news);
                let after = self.broker.last_reconciliation();
                match after.filter(|_| after != before) {
                    Some((time, outcome)) => Ok(Reply::ok(json!({
                        "time": audit_time(time), "outcome": outcome, "notices": notices,
                    }))),
                    None => Ok(Reply::conflict(format!(
                        "the reconciliation could not run: {}",
                        notices.join("; ")
                    ))),
                }
            }
            Action::Flatten { symbol } => self.api_flatten(symbol.as_deref(), outcome),
            Action::StopStrategy { .. } | Action::AddStrategy(_) => Ok(not_a_book()),
        }
    }

    fn api_halt(
        &mut self,
        reason: &str,
        cancel: bool,
        outcome: &mut BacktestOutcome,
    ) -> Result<Reply, LiveError> {
        let reason = match reason.trim() {
            "" => "halted through the control API".to_string(),
            text => format!("{text} (through the control API)"),
        };
        let already = self.state.breakers.is_tripped();
        let trip = self.state.breakers.halt(wall_ns(), &reason)?;
        self.halt(&trip, true);
        let cancelled = if cancel {
            self.cancel_open(None, "cancelled by a halt through the control API")
        } else {
            Vec::new()
        };
        if !cancelled.is_empty() {
            self.sync_orders(&[])?;
            if self.broker.sends_irrevocably() {
                // The exchange hears of the cancels now, not at the next poll.
                self.poll_broker(outcome).map_err(halt_to_live)?;
            }
        }
        Ok(Reply::ok(json!({
            "halted": true,
            "already_halted": already,
            "trip": trip,
            "cancelled_orders": cancelled.iter().map(|id| id.0).collect::<Vec<_>>(),
        })))
    }

    /// Cancels the engine's open orders (of one symbol, or all); returns them.
    fn cancel_open(&mut self, symbol: Option<SymbolId>, reason: &str) -> Vec<OrderId> {
        let mut s = lock(&self.session);
        let now = s.now;
        s.orders
            .cancel_open(|o| symbol.is_none_or(|id| o.symbol == id), reason, now)
    }

    /// Cancels the open orders of the symbol(s), then a market order closes each position.
    fn api_flatten(
        &mut self,
        symbol: Option<&str>,
        outcome: &mut BacktestOutcome,
    ) -> Result<Reply, LiveError> {
        let targets: Vec<SymbolId> = {
            let s = lock(&self.session);
            match symbol {
                Some(name) => match s.market.symbol_id(name) {
                    Some(id) => vec![id],
                    None => {
                        return Ok(Reply {
                            status: 404,
                            body: json!({"error": format!("`{name}` is not a symbol of this session ({})", s.market.symbol_names().join(", "))}),
                        });
                    }
                },
                None => (0..s.market.symbol_count())
                    .map(|i| SymbolId(i as u32))
                    .collect(),
            }
        };
        let mut cancelled = Vec::new();
        for &id in &targets {
            cancelled.extend(
                self.cancel_open(Some(id), "cancelled by a flatten through the control API"),
            );
        }
        let closing = lock(&self.session).close_positions(&targets);
        self.exempt.extend(closing.placed.iter().copied());
        if let Some((symbol, e)) = closing.refused.first() {
            return Ok(Reply::conflict(format!("closing {symbol}: {e}")));
        }
        let placed = closing.placed;
        let dust: Vec<serde_json::Value> = closing
            .dust
            .iter()
            .map(|(symbol, quantity)| json!({"symbol": symbol, "quantity": quantity}))
            .collect();
        if self.broker.sends_irrevocably() && !placed.is_empty() {
            self.checkpoint(self.last_close)?;
        }
        self.sync_orders(&[])?;
        if self.broker.sends_irrevocably() {
            self.poll_broker(outcome).map_err(halt_to_live)?;
        }
        let ids = self.all_client_ids();
        let s = lock(&self.session);
        let orders: Vec<OrderView> = placed
            .iter()
            .filter_map(|id| s.orders.get(*id))
            .map(|o| {
                let client_id = ids.get(&o.id).cloned();
                order_view(o, s.market.symbol_name(o.symbol), client_id)
            })
            .collect();
        Ok(Reply::ok(json!({
            "orders": orders,
            "cancelled_orders": cancelled.iter().map(|id| id.0).collect::<Vec<_>>(),
            "dust": dust,
        })))
    }

    /// The session as the API shows it, swapped in for the server's threads. Its cost is
    /// bounded whatever the session's length: the last [`KEEP`] orders (and every open one)
    /// and fills, each published list shared by `Arc`.
    fn publish(&mut self, outcome: &BacktestOutcome, phase: Phase, end: Option<String>) {
        let Some(link) = &self.api else {
            return;
        };
        let shared = link.shared.clone();
        let broker_ids: HashMap<OrderId, String> = self
            .broker
            .client_ids()
            .into_iter()
            .map(|(client_id, id)| (id, client_id))
            .collect();
        let own_ids = &self.client_ids;
        let client_id = |id: OrderId| own_ids.get(&id).or_else(|| broker_ids.get(&id)).cloned();
        let mut snapshot: Snapshot = (*shared.snapshot()).clone();
        {
            let view = &mut self.api_view;
            let s = lock(&self.session);
            let name = |id: SymbolId| s.market.symbol_name(id).to_string();
            let new_fills = outcome.fills.len() - view.fills_seen.min(outcome.fills.len());
            if new_fills > 0 {
                for fill in &outcome.fills[outcome.fills.len() - new_fills.min(KEEP)..] {
                    if view.fills.len() == KEEP {
                        view.fills.pop_front();
                    }
                    view.fills.push_back(FillView {
                        strategy: None,
                        order_id: fill.order_id.0,
                        client_order_id: client_id(fill.order_id),
                        symbol: name(fill.symbol),
                        side: fill.side.as_str(),
                        quantity: fill.quantity,
                        price: fill.price,
                        fee: fill.fee,
                        time: format_timestamp(fill.time),
                    });
                }
                view.fills_seen = outcome.fills.len();
                view.fills_shared = Arc::new(view.fills.iter().cloned().collect());
            }
            snapshot.fills = view.fills_shared.clone();
            snapshot.fills_total = outcome.fills.len();
            let all = s.orders.all();
            let recent = all.len().saturating_sub(KEEP);
            let orders: Vec<OrderView> = all[..recent]
                .iter()
                .filter(|o| o.status.is_open())
                .chain(&all[recent..])
                .map(|o| order_view(o, &name(o.symbol), client_id(o.id)))
                .collect();
            snapshot.set_orders(orders, all.len());
            snapshot.equity = s.ledger.equity().ok();
            snapshot.cash = Some(s.ledger.cash());
            snapshot.positions = s
                .ledger
                .open_symbols()
                .iter()
                .filter_map(|&id| s.ledger.position(id).map(|p| (id, p)))
                .filter(|(_, p)| !p.quantity.is_zero())
                .map(|(id, p)| PositionView {
                    symbol: name(id),
                    quantity: p.quantity,
                    cost_basis: p.cost_basis,
                    mark: p.mark,
                    realized_pnl: p.realized_pnl,
                })
                .collect();
            snapshot.halted = s.halted.clone();
            snapshot.last_bar = view.last_bar.map(last_bar);
        }
        stamp(&mut snapshot, phase, self.state, &*self.feed);
        snapshot.reconciliation =
            self.broker
                .last_reconciliation()
                .map(|(time, outcome)| Reconciliation {
                    time: audit_time(time),
                    outcome: outcome.to_string(),
                });
        snapshot.reconciled = match (&snapshot.reconciliation, self.broker.sends_irrevocably()) {
            (_, false) => true,
            (Some(r), true) => r.outcome != "halted",
            (None, true) => false,
        };
        snapshot.bars = outcome.bars;
        let reloads = self.strategy.reload_events();
        snapshot.strategy = StrategyView {
            state: session_state(phase, snapshot.halted.is_some()),
            reloads: reloads.len(),
            last_reload_ok: reloads.last().map(|e| e.ok),
            ..snapshot.strategy
        };
        snapshot.end = end;
        snapshot.updated_at = audit_time(wall_ns());
        shared.set_snapshot(snapshot);
        if let Some(link) = &mut self.api {
            link.last_publish = Some(Instant::now());
        }
    }
}

/// What every snapshot says of the session: its phase, run, currency, feed and breakers.
pub(crate) fn stamp(
    snapshot: &mut Snapshot,
    phase: Phase,
    state: &crate::live::recovery::State,
    feed: &dyn crate::live::feed::Feed,
) {
    snapshot.phase = phase;
    snapshot.run_id = state.run_id;
    snapshot.cash_currency = state.cash_currency.clone();
    snapshot.feed = feed.describe();
    snapshot.feed_connected = feed.connected();
    snapshot.breakers = state.breakers.state();
}

/// The last bar as the API shows it: `(close, received)` (UTC ns).
pub(crate) fn last_bar((close, received): (TimestampNs, TimestampNs)) -> LastBar {
    LastBar {
        close_time: format_timestamp(close),
        received_at: audit_time(received),
        lag_seconds: (received - close) as f64 / 1e9,
        close_ns: close,
        received_ns: received,
    }
}

/// The session's (or book's) state in `/status`.
pub(crate) fn session_state(phase: Phase, halted: bool) -> &'static str {
    match (phase, halted) {
        (Phase::Stopped, _) => "stopped",
        (Phase::Starting, _) => "starting",
        (Phase::Running, true) => "halted",
        (Phase::Running, false) => "running",
    }
}

/// What `/strategies…` answers a single-algorithm session.
pub(crate) fn not_a_book() -> Reply {
    Reply::error(
        404,
        "this session hosts one algorithm: /strategies serves a book (`rustybt live --portfolio`)",
    )
}

/// The journal and the audit log get every action with the token's name.
pub(crate) fn record_action(
    state: &mut crate::live::recovery::State,
    action: &Action,
    by: &str,
    reply: &Reply,
) {
    let params = action.params();
    let wall = wall_ns();
    let recorded = state.journal.record_control(&ControlRecord {
        time: wall,
        run_id: state.run_id,
        token: by,
        action: action.name(),
        params: &params,
        status: reply.status,
        result: &reply.body,
    });
    if let Err(e) = recorded {
        crate::above_status!(
            "warning: the API action `{}` was not journaled: {e}",
            action.name()
        );
    }
    let _ = state.audit.record(
        wall,
        AuditKind::Control,
        json!({"action": action.name(), "by": by, "params": params, "status": reply.status, "result": reply.body}),
    );
}

pub(crate) fn is_open(status: &str) -> bool {
    crate::live::api::is_open_status(status)
}

fn halt_to_live(halt: Halt) -> LiveError {
    match halt {
        Halt::Live(e) => e,
        Halt::Stop(stop) => LiveError::Engine(format!(
            "the algorithm stopped while an action was applied: {stop:?}"
        )),
    }
}

pub(crate) fn order_view(o: &Order, symbol: &str, client_order_id: Option<String>) -> OrderView {
    OrderView {
        strategy: None,
        id: o.id.0,
        client_order_id,
        symbol: symbol.to_string(),
        side: o.side.as_str(),
        quantity: o.quantity,
        kind: o.kind.as_str(),
        limit_price: o.kind.limit(),
        stop_price: o.kind.stop(),
        status: o.status.as_str(),
        filled_quantity: o.filled_quantity,
        average_price: o
            .filled_notional
            .checked_div(o.filled_quantity)
            .filter(|_| !o.filled_quantity.is_zero()),
        fees: o.fees,
        reason: o.reason.clone(),
        submitted_at: format_timestamp(o.submitted_at),
    }
}
