//! A live book's side of the control API (`crate::live::api`): the whole-book actions (halt,
//! resume, flatten) and the per-strategy ones (stop, add), applied by the book's loop at its
//! safe points, and the snapshot it publishes (the account, and each strategy in
//! `/strategies`). Everything here runs on the session's own thread, between bars or in a
//! wait slice. The book's changes themselves are `crate::portfolio::change`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::json;

use super::{LiveBook, Seat};
use crate::engine::{Stop, lock};
use crate::live::api::{
    Action, BookView, FillView, OrderView, Phase, PositionView, Reply, STRATEGY_FILLS, SessionLink,
    Snapshot, StrategyDetail, StrategySummary,
};
use crate::live::audit::audit_time;
use crate::live::breakers::BreakerError;
use crate::live::broker::Broker;
use crate::live::error::LiveError;
use crate::live::journal::StrategyChange;
use crate::live::session::session_api::{
    is_open, last_bar, order_view, record_action, session_state, stamp,
};
use crate::live::session::{Halt, LiveStrategy};
use crate::live::wall_ns;
use crate::model::{Fill, OrderId, OrderStatus, SymbolId, TimestampNs, format_timestamp};
use crate::portfolio::change::OPERATOR_STOP;
use crate::portfolio::{AddRequest, Member, StopRequest};

/// Builds the algorithm and session of a strategy an operator adds (the Python side, wired by
/// the command).
pub trait StrategyMaker<S> {
    /// `request`'s algorithm loaded and attached to a new session over `universe` (the
    /// session's symbols it trades) holding `request.capital`; `Err`: why it cannot be.
    fn make(&mut self, request: &AddRequest, universe: &[String]) -> Result<Member<S>, String>;
}

/// What the API shows that the book keeps between snapshots.
#[derive(Default)]
pub(super) struct BookApiView {
    last_bar: Option<(TimestampNs, TimestampNs)>,
    /// Fills of each strategy already listed, and the last [`KEEP`] of all.
    fills_seen: Vec<usize>,
    fills: VecDeque<FillView>,
    fills_shared: Arc<Vec<FillView>>,
}

const KEEP: usize = crate::live::session::session_api::KEEP;

impl<S: LiveStrategy> LiveBook<'_, '_, S> {
    /// Serves the control API from this book (`--api`).
    pub fn set_api(&mut self, link: SessionLink) {
        self.api = Some(link);
    }

    /// A bar arrived: its close and when (for the API's lag).
    pub(super) fn note_bar(&mut self, close_time: TimestampNs) {
        if self.api.is_some() {
            self.api_view.last_bar = Some((close_time, wall_ns()));
        }
    }

    /// A safe point: the queued actions are applied, then a snapshot is published when one
    /// is due (or `force`).
    pub(super) fn serve_api(&mut self, force: bool) -> Result<(), Halt> {
        let Some(link) = &self.api else {
            return Ok(());
        };
        let commands: Vec<_> = link.commands.try_iter().collect();
        let acted = !commands.is_empty();
        let mut answers = Vec::with_capacity(commands.len());
        for command in commands {
            let (reply, failure) = match self.apply(&command.action, &command.by) {
                Ok(reply) => (reply, None),
                Err(Halt::Live(e)) => (Reply::conflict(e.to_string()), Some(Halt::Live(e))),
                Err(halt) => return Err(halt),
            };
            record_action(self.state, &command.action, &command.by, &reply);
            answers.push((command.reply, reply));
            if let Some(Halt::Live(e)) = failure
                && e.storage().is_some()
            {
                crate::live::api::answer(answers);
                return Err(e.into());
            }
        }
        self.commit_soon |= acted;
        let due = self.api.as_ref().is_some_and(SessionLink::publish_due);
        if force || acted || due {
            crate::live::broker::pause_point("before_publish");
            self.publish(Phase::Running, None);
        }
        crate::live::api::answer(answers);
        Ok(())
    }

    /// The last snapshot: the book has ended (and how); actions still queued are answered.
    pub(super) fn api_stopped(&mut self, end: String) {
        let Some(link) = &self.api else {
            return;
        };
        link.refuse_queued();
        self.publish(Phase::Stopped, Some(end));
    }

    fn apply(&mut self, action: &Action, by: &str) -> Result<Reply, Halt> {
        Ok(match action {
            Action::Halt {
                reason,
                cancel_open_orders,
            } => self.api_halt(reason, *cancel_open_orders)?,
            Action::Resume => {
                let wall = wall_ns();
                match self.state.breakers.reset(wall, "the control API") {
                    Ok(cleared) => {
                        // A halt by the book's own risk limits is not a breaker: it stays.
                        let book_halt = self
                            .stepper
                            .as_ref()
                            .and_then(|s| s.outcome.halted.as_ref().map(|(_, r)| r.clone()));
                        for m in self.members.iter() {
                            lock(&m.session).halted = book_halt.clone();
                        }
                        if let Some(trip) = &cleared {
                            crate::above_status!(
                                "RESUMED through the API: {trip} is cleared; new orders are accepted again"
                            );
                        }
                        Reply::ok(json!({"halted": book_halt.is_some(), "cleared": cleared}))
                    }
                    Err(e @ BreakerError::HaltFilePresent(_)) => Reply::conflict(e.to_string()),
                    Err(e) => return Err(LiveError::from(e).into()),
                }
            }
            Action::Reconcile => {
                let Some(account) = self.account.as_mut() else {
                    return Ok(Reply::conflict(
                        "a paper session has no exchange account to reconcile against",
                    ));
                };
                let before = account.broker().last_reconciliation();
                let news = account.reconcile_now(self.state, self.members)?;
                let after = account.broker().last_reconciliation();
                let notices = news.notices.clone();
                self.take_account_news(news)?;
                match after.filter(|_| after != before) {
                    Some((time, outcome)) => Reply::ok(json!({
                        "time": audit_time(time), "outcome": outcome, "notices": notices,
                    })),
                    None => Reply::conflict(format!(
                        "the reconciliation could not run: {}",
                        notices.join("; ")
                    )),
                }
            }
            Action::Flatten { symbol } => self.api_flatten(symbol.as_deref())?,
            Action::StopStrategy { id, request } => self.api_stop(id, request, by)?,
            Action::AddStrategy(request) => self.api_add(request, by)?,
        })
    }

    fn api_halt(&mut self, reason: &str, cancel: bool) -> Result<Reply, Halt> {
        let reason = match reason.trim() {
            "" => "halted through the control API".to_string(),
            text => format!("{text} (through the control API)"),
        };
        let already = self.state.breakers.is_tripped();
        let trip = self
            .state
            .breakers
            .halt(wall_ns(), &reason)
            .map_err(LiveError::from)?;
        self.halt(&trip, true);
        let mut cancelled = Vec::new();
        if cancel {
            for m in self.members.iter() {
                let mut s = lock(&m.session);
                let now = s.now;
                let reason = "cancelled by a halt through the control API";
                for id in s.orders.cancel_open(|_| true, reason, now) {
                    cancelled.push(json!({"strategy": m.id, "order_id": id.0}));
                }
            }

            self.sync_all(true)?;
        }
        Ok(Reply::ok(json!({
            "halted": true,
            "already_halted": already,
            "trip": trip,
            "cancelled_orders": cancelled,
        })))
    }

    /// Every strategy's open orders of the symbol (or all) cancelled, then a market order
    /// closes each strategy's position, each in its own sub-ledger.
    fn api_flatten(&mut self, symbol: Option<&str>) -> Result<Reply, Halt> {
        let targets: Vec<SymbolId> = match symbol {
            Some(name) => match self.market.symbol_id(name) {
                Some(id) => vec![id],
                None => {
                    return Ok(Reply::error(
                        404,
                        format!(
                            "`{name}` is not a symbol of this session ({})",
                            self.market.symbol_names().join(", ")
                        ),
                    ));
                }
            },
            None => (0..self.market.symbol_count())
                .map(|i| SymbolId(i as u32))
                .collect(),
        };
        let reason = "cancelled by a flatten through the control API";
        let mut cancelled = Vec::new();
        let mut placed = Vec::new();
        let mut dust = Vec::new();
        let mut refused = None;
        for k in 0..self.members.len() {
            let m = &self.members[k];
            let local: Vec<SymbolId> = targets.iter().filter_map(|g| m.local[g.index()]).collect();
            let mut s = lock(&m.session);
            let now = s.now;
            for id in s
                .orders
                .cancel_open(|o| local.contains(&o.symbol), reason, now)
            {
                cancelled.push(json!({"strategy": m.id, "order_id": id.0}));
            }
            let closing = s.close_positions(&local);
            placed.extend(closing.placed.iter().map(|id| (k, *id)));
            dust.extend(
                closing
                    .dust
                    .iter()
                    .map(|(sym, q)| json!({"strategy": m.id, "symbol": sym, "quantity": q})),
            );
            if refused.is_none()
                && let Some((sym, e)) = closing.refused.first()
            {
                refused = Some(format!("closing {sym} of `{}`: {e}", m.id));
            }
            drop(s);
            self.journal_internal(k, &[])?;
        }
        if let Some(message) = refused {
            return Ok(Reply::conflict(message));
        }
        let orders: Vec<OrderView> = placed
            .iter()
            .filter_map(|&(k, id)| self.order_view_of(k, id))
            .collect();
        Ok(Reply::ok(json!({
            "orders": orders,
            "cancelled_orders": cancelled,
            "dust": dust,
        })))
    }

    /// `POST /strategies/{id}/stop`: see [`crate::portfolio::change`].
    fn api_stop(&mut self, id: &str, request: &StopRequest, by: &str) -> Result<Reply, Halt> {
        let Some(i) = self.members.iter().position(|m| m.id == id) else {
            return Ok(self.unknown(id));
        };
        let time = self.book_time();
        let reason = format!("{OPERATOR_STOP} by `{by}`");
        let stepper = self.stepper.as_mut().expect("invariant: opened");
        let done = match stepper.stop_member(
            self.market,
            self.members,
            self.rules,
            i,
            request,
            &reason,
            time,
        ) {
            Ok(done) => done,
            Err(refused) => return Ok(Reply::error(refused.status, refused.message)),
        };
        let mut by_member: BTreeMap<usize, Vec<Fill>> = BTreeMap::new();
        for (k, fill) in &done.handed {
            by_member.entry(*k).or_default().push(fill.clone());
        }
        by_member.entry(i).or_default();
        for (k, fills) in &by_member {
            self.journal_internal(*k, fills)?;
        }
        self.record_change(
            "stop",
            id,
            &serde_json::to_string(request).unwrap_or_default(),
            by,
        )?;
        if let Some(error) = &done.on_stop_error {
            crate::above_status!("warning: strategy `{id}`: on_stop raised: {error}");
        }
        crate::above_status!("strategy `{id}` stopped through the control API by `{by}`");
        let closing: Vec<OrderView> = done
            .closing
            .iter()
            .filter_map(|order| self.order_view_of(i, *order))
            .collect();
        let handed: Vec<serde_json::Value> = done
            .handed
            .iter()
            .map(|(k, f)| {
                let m = &self.members[*k];
                json!({
                    "strategy": m.id,
                    "symbol": self.market.symbol_name(m.global[f.symbol.index()]),
                    "side": f.side.as_str(),
                    "quantity": f.quantity,
                    "price": f.price,
                })
            })
            .collect();
        Ok(Reply::ok(json!({
            "id": id,
            "state": "stopped",
            "positions": request.positions,
            "to": request.to,
            "cancelled_orders": done.cancelled.iter().map(|o| o.0).collect::<Vec<_>>(),
            "closing_orders": closing,
            "refused": done.refused.iter().map(|(s, e)| json!({"symbol": s, "reason": e})).collect::<Vec<_>>(),
            "dust": done.dust.iter().map(|(s, q)| json!({"symbol": s, "quantity": q})).collect::<Vec<_>>(),
            "handed_over": handed,
            "cash_moved": done.cash,
            "value_moved": done.value,
            "on_stop_error": done.on_stop_error,
        })))
    }

    /// `POST /strategies`: checked, its algorithm built and initialized, its history warmed
    /// up, then added with its capital; it trades from the next bar.
    fn api_add(&mut self, request: &AddRequest, by: &str) -> Result<Reply, Halt> {
        let stepper = self.stepper.as_ref().expect("invariant: opened");
        let (universe, weight) = match stepper.check_add(self.members, self.market, request) {
            Ok(checked) => checked,
            Err(refused) => return Ok(Reply::error(refused.status, refused.message)),
        };
        let Some(maker) = self.maker.as_mut() else {
            return Ok(Reply::conflict("this session cannot add strategies"));
        };
        let mut member = match maker.make(request, &universe) {
            Ok(member) => member,
            Err(e) => {
                return Ok(Reply::error(422, format!("strategy `{}`: {e}", request.id)));
            }
        };
        let time = self.book_time();
        lock(&member.session).now = time;
        match member.strategy.initialize() {
            Ok(()) => {}
            Err(Stop::Interrupted) => return Err(Stop::Interrupted.into()),
            Err(stop) => {
                return Ok(Reply::error(
                    422,
                    format!(
                        "strategy `{}`: `initialize` raised: {}",
                        request.id,
                        crate::portfolio::book::stop_reason(&stop)
                    ),
                ));
            }
        }
        self.warm_added(&member)?;
        if let Err(stop) = member.strategy.update_indicators() {
            if matches!(stop, Stop::Interrupted) {
                return Err(stop.into());
            }
            return Ok(Reply::error(
                422,
                format!(
                    "strategy `{}`: its indicators failed on the history: {}",
                    request.id,
                    crate::portfolio::book::stop_reason(&stop)
                ),
            ));
        }
        if let Some(halted) = lock(&self.members[0].session).halted.clone() {
            lock(&member.session).halted = Some(halted);
        }
        let mut applied = request.clone();
        applied.weight = Some(weight);
        let stepper = self.stepper.as_mut().expect("invariant: opened");
        if let Err(refused) =
            stepper.add_member(self.members, self.rules, &applied, member, weight, time)
        {
            return Ok(Reply::error(refused.status, refused.message));
        }
        self.seats.push(Seat::default());
        self.start_equity.push(request.capital);
        self.unpriced.push(HashMap::new());
        // Orders its `initialize` placed are the algorithm's: the breakers see them.
        let n = self.members.len() - 1;
        self.sync_member(n, &[])?;
        let json = serde_json::to_string(&applied).unwrap_or_default();
        self.record_change("add", &request.id, &json, by)?;
        let funding = match request.capital.is_zero() {
            true => format!("weight {weight}, funded at the next rebalance"),
            false => format!("capital {}", request.capital.normalize()),
        };
        crate::above_status!(
            "strategy `{}` added through the control API by `{by}` ({}, {funding}), trading from the next bar",
            request.id,
            request.algo.display(),
        );
        Ok(Reply::ok(json!({
            "id": request.id,
            "state": "running",
            "symbols": universe,
            "weight": weight,
            "capital": request.capital,
            "from": request.from,
        })))
    }

    /// The book's bars so far into an added strategy's market (grouped by close time), fed to
    /// its indicators and higher timeframes without trading, as the book's warm-up does.
    fn warm_added(&self, member: &Member<S>) -> Result<(), LiveError> {
        let mut bars: Vec<(TimestampNs, SymbolId, SymbolId, usize)> = Vec::new();
        for (local, &global) in member.global.iter().enumerate() {
            let series = self.market.series(global);
            let interval = self.market.interval_ns(global);
            for k in 0..self.market.closed_count(global) {
                bars.push((series.time[k] + interval, global, SymbolId(local as u32), k));
            }
        }
        bars.sort_unstable_by_key(|&(close, global, _, _)| (close, global));
        let mut s = lock(&member.session);
        let mut group: Vec<SymbolId> = Vec::new();
        for (n, &(close, global, local, k)) in bars.iter().enumerate() {
            let series = self.market.series(global);
            let texts = [
                series.open.exact.get(k).to_string(),
                series.high.exact.get(k).to_string(),
                series.low.exact.get(k).to_string(),
                series.close.exact.get(k).to_string(),
                series.volume.exact.get(k).to_string(),
            ];
            s.market
                .append_bar(
                    local,
                    series.time[k],
                    [&texts[0], &texts[1], &texts[2], &texts[3], &texts[4]],
                )
                .map_err(LiveError::Feed)?;
            group.push(local);
            if bars.get(n + 1).is_none_or(|next| next.0 != close) {
                crate::engine::warm_up(&mut s, close, &group);
                group.clear();
            }
        }
        Ok(())
    }

    /// The last close time the book stepped (or its start).
    fn book_time(&self) -> TimestampNs {
        self.members
            .iter()
            .map(|m| lock(&m.session).now)
            .max()
            .unwrap_or_else(wall_ns)
    }

    fn unknown(&self, id: &str) -> Reply {
        Reply::error(
            404,
            format!(
                "the book has no strategy `{id}` (it has {})",
                self.members
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }

    /// Orders an operator's action placed for strategy `k` (closing, handed over), journaled
    /// with its id and sent to its broker without the breakers (they only reduce exposure or
    /// move it inside the book); then `fills` of them and their statuses.
    fn journal_internal(&mut self, k: usize, fills: &[Fill]) -> Result<(), LiveError> {
        let m = &self.members[k];
        let seat = &mut self.seats[k];
        let (new, _) = crate::live::session::new_orders(&m.session, &mut seat.seen);
        for (order, symbol, last_close) in new {
            if order.status == OrderStatus::Rejected {
                continue;
            }
            // On an exchange, an order still open goes there; one the book filled inside
            // (a hand-over) is journaled with its fills as a paper order is.
            match self.account.as_mut().filter(|_| order.status.is_open()) {
                Some(account) => account.stage(k, m, &order, &symbol, last_close, false),
                None => {
                    seat.send(self.state, m, &order, &symbol, last_close, &mut self.stats)?;
                    // Booked already (a hand-over): its journaled fills are not booked again.
                    if let (Some(account), Some(client_id)) =
                        (self.account.as_mut(), seat.client_ids.get(&order.id))
                    {
                        account.booked_inside(client_id);
                    }
                }
            }
        }
        seat.broker.after_step(self.state, &m.session, fills)?;
        self.flush_account()
    }

    /// The change into the journal, then a checkpoint: the answer means it is on the disk.
    fn record_change(
        &mut self,
        action: &str,
        strategy: &str,
        request: &str,
        by: &str,
    ) -> Result<(), LiveError> {
        self.state.journal.record_strategy_change(&StrategyChange {
            time: wall_ns(),
            run_id: self.state.run_id,
            action,
            strategy,
            request,
            token: by,
        })?;
        self.checkpoint(self.last_close, None)
    }

    fn order_view_of(&self, k: usize, id: OrderId) -> Option<OrderView> {
        let m = &self.members[k];
        let ids = self.seats[k].all_client_ids();
        let s = lock(&m.session);
        let o = s.orders.get(id)?;
        let mut view = order_view(o, s.market.symbol_name(o.symbol), ids.get(&o.id).cloned());
        view.strategy = Some(m.id.clone());
        Some(view)
    }

    /// The book as the API shows it: the account (every strategy summed, plus the
    /// unallocated cash) and each strategy.
    fn publish(&mut self, phase: Phase, end: Option<String>) {
        let Some(link) = &self.api else {
            return;
        };
        let shared = link.shared.clone();
        let mut snapshot: Snapshot = (*shared.snapshot()).clone();
        let reserve = self
            .stepper
            .as_ref()
            .map(|s| s.risk.lock().reserve)
            .unwrap_or_default();
        let mut equity = reserve;
        let mut cash = reserve;
        let mut positions: BTreeMap<SymbolId, PositionView> = BTreeMap::new();
        let mut all_orders: Vec<(TimestampNs, usize, OrderView)> = Vec::new();
        let mut summaries = Vec::with_capacity(self.members.len());
        let mut details = Vec::with_capacity(self.members.len());
        let mut fills_total = 0;
        let mut orders_total = 0;
        let mut new_fills: Vec<(TimestampNs, usize, FillView)> = Vec::new();
        self.api_view.fills_seen.resize(self.members.len(), 0);
        let mut halted = None;
        for (k, m) in self.members.iter().enumerate() {
            let ids = self.seats[k].all_client_ids();
            let s = lock(&m.session);
            let name =
                |local: SymbolId| self.market.symbol_name(m.global[local.index()]).to_string();
            let own_equity = s.ledger.equity().unwrap_or_default();
            equity += own_equity;
            cash += s.ledger.cash();
            halted = halted.or_else(|| s.halted.clone());
            let mut own_positions = Vec::new();
            for &local in s.ledger.open_symbols() {
                let Some(p) = s.ledger.position(local).filter(|p| !p.quantity.is_zero()) else {
                    continue;
                };
                let view = PositionView {
                    symbol: name(local),
                    quantity: p.quantity,
                    cost_basis: p.cost_basis,
                    mark: p.mark,
                    realized_pnl: p.realized_pnl,
                };
                let total =
                    positions
                        .entry(m.global[local.index()])
                        .or_insert_with(|| PositionView {
                            quantity: Decimal::ZERO,
                            cost_basis: Decimal::ZERO,
                            realized_pnl: Decimal::ZERO,
                            ..view.clone()
                        });
                total.quantity += p.quantity;
                total.cost_basis += p.cost_basis;
                total.realized_pnl += p.realized_pnl;
                own_positions.push(view);
            }
            let view_of = |o: &crate::model::Order| {
                let mut view = order_view(o, &name(o.symbol), ids.get(&o.id).cloned());
                view.strategy = Some(m.id.clone());
                view
            };
            let all = s.orders.all();
            orders_total += all.len();
            let recent = all.len().saturating_sub(KEEP);
            let open: Vec<OrderView> = all
                .iter()
                .filter(|o| o.status.is_open())
                .map(view_of)
                .collect();
            all_orders.extend(
                all[..recent]
                    .iter()
                    .filter(|o| o.status.is_open())
                    .chain(&all[recent..])
                    .map(|o| (o.submitted_at, k, view_of(o))),
            );
            let fill_view = |f: &Fill| FillView {
                strategy: Some(m.id.clone()),
                order_id: f.order_id.0,
                client_order_id: ids.get(&f.order_id).cloned(),
                symbol: name(f.symbol),
                side: f.side.as_str(),
                quantity: f.quantity,
                price: f.price,
                fee: f.fee,
                time: format_timestamp(f.time),
            };
            let fills = &m.outcome.fills;
            fills_total += fills.len();
            let seen = self.api_view.fills_seen[k].min(fills.len());
            let fresh = &fills[seen.max(fills.len().saturating_sub(KEEP))..];
            new_fills.extend(fresh.iter().map(|f| (f.time, k, fill_view(f))));
            self.api_view.fills_seen[k] = fills.len();
            let (state, stopped_at, stop_reason) = match &m.stopped {
                Some((at, reason)) => (
                    match reason.starts_with(OPERATOR_STOP) {
                        true => "stopped",
                        false => "failed",
                    },
                    Some(format_timestamp(*at)),
                    Some(reason.clone()),
                ),
                None if s.halted.is_some() => ("halted", None, None),
                None => ("running", None, None),
            };
            let spec = self.rules.strategy(k);
            let summary = StrategySummary {
                id: m.id.clone(),
                state,
                algorithm: spec.algo.display().to_string(),
                class: spec.class_name.clone().unwrap_or_default(),
                symbols: s.market.symbol_names(),
                weight: spec.weight,
                allocated_capital: m.initial_capital,
                transfers: self
                    .stepper
                    .as_ref()
                    .and_then(|st| st.transferred.get(k).copied())
                    .unwrap_or_default(),
                cash: s.ledger.cash(),
                equity: own_equity,
                positions: own_positions,
                open_orders: open.len(),
                orders_total: all.len(),
                fills_total: fills.len(),
                stopped_at,
                stop_reason,
            };
            let recent_fills = fills[fills.len().saturating_sub(STRATEGY_FILLS)..]
                .iter()
                .map(fill_view)
                .collect();
            summaries.push(summary.clone());
            details.push(StrategyDetail {
                summary,
                orders: open,
                fills: recent_fills,
            });
        }
        new_fills.sort_by_key(|(time, k, _)| (*time, *k));
        let view = &mut self.api_view;
        if !new_fills.is_empty() {
            for (_, _, fill) in new_fills {
                if view.fills.len() == KEEP {
                    view.fills.pop_front();
                }
                view.fills.push_back(fill);
            }
            view.fills_shared = Arc::new(view.fills.iter().cloned().collect());
        }
        all_orders.sort_by_key(|(time, k, o)| (*time, *k, o.id));
        let start = all_orders.len().saturating_sub(KEEP);
        let orders: Vec<OrderView> = all_orders
            .into_iter()
            .enumerate()
            .filter(|(n, (_, _, o))| *n >= start || is_open(o.status))
            .map(|(_, (_, _, o))| o)
            .collect();
        snapshot.set_orders(orders, orders_total);
        snapshot.fills = view.fills_shared.clone();
        snapshot.fills_total = fills_total;
        snapshot.equity = Some(equity);
        snapshot.cash = Some(cash);
        snapshot.positions = positions
            .into_iter()
            .filter(|(_, p)| !p.quantity.is_zero())
            .map(|(_, p)| p)
            .collect();
        snapshot.halted = halted;
        snapshot.last_bar = view.last_bar.map(last_bar);
        stamp(&mut snapshot, phase, self.state, &*self.feed);
        let account = self.account.as_ref().map(|a| a.broker());
        snapshot.reconciliation =
            account
                .and_then(|b| b.last_reconciliation())
                .map(|(time, outcome)| crate::live::api::Reconciliation {
                    time: audit_time(time),
                    outcome: outcome.to_string(),
                });
        // An exchange book is reconciled once its last reconciliation did not halt it.
        snapshot.reconciled = match (&snapshot.reconciliation, account.is_some()) {
            (_, false) => true,
            (Some(r), true) => r.outcome != "halted",
            (None, true) => false,
        };
        snapshot.bars = self.bars_seen;
        snapshot.strategy.state = session_state(phase, snapshot.halted.is_some());
        snapshot.book = Some(Arc::new(BookView {
            strategies: summaries,
            unallocated: reserve,
            details,
        }));
        snapshot.end = end;
        snapshot.updated_at = audit_time(wall_ns());
        shared.set_snapshot(snapshot);
        if let Some(link) = &mut self.api {
            link.last_publish = Some(Instant::now());
        }
    }
}
