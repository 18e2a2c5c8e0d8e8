//! Every order of a run: submission, the state machine, and matching against bars.

use rust_decimal::Decimal;

use super::matching::{BarPrices, PathMode, Touch, path_from, touch};
use crate::model::{
    Fill, Order, OrderEvent, OrderId, OrderKind, OrderSide, OrderStatus, SymbolId, TimeInForce,
    TimestampNs,
};

/// Why an order was refused at submission. Malformed requests (a non-positive quantity, an
/// unknown symbol) raise `OrderError` in Python; rule breaches (tick, lot, notional, buying
/// power) become a `rejected` order with this reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderRejected {
    #[error("quantity must be positive, got {0}")]
    NonPositiveQuantity(Decimal),
    #[error("unknown symbol `{0}`")]
    UnknownSymbol(String),
    #[error("{0}")]
    Invalid(String),
}

/// What an algorithm asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub symbol: SymbolId,
    pub side: OrderSide,
    pub quantity: Decimal,
    pub kind: OrderKind,
    pub tif: TimeInForce,
    pub oco_group: Option<u64>,
    pub parent: Option<OrderId>,
}

impl OrderRequest {
    pub fn market(symbol: SymbolId, side: OrderSide, quantity: Decimal) -> Self {
        OrderRequest {
            symbol,
            side,
            quantity,
            kind: OrderKind::Market,
            tif: TimeInForce::Gtc,
            oco_group: None,
            parent: None,
        }
    }
}

/// How fills are priced and charged; the session supplies its cost models.
pub trait FillCostModel {
    /// The executed price for a fill of `order` whose path price is `reference`; never better
    /// than it. `None` when it cannot be priced (overflow, or a user model that failed).
    fn price(
        &mut self,
        order: &Order,
        reference: Decimal,
        quantity: Decimal,
        bar_volume: Decimal,
        maker: bool,
    ) -> Option<Decimal>;
    /// The fee of a fill (≥ 0) of `order`; `order_done` when no fill of it follows, so a
    /// model that keeps per-order state (a per-order minimum) can drop it.
    #[allow(clippy::too_many_arguments)]
    fn fee(
        &mut self,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        maker: bool,
        time: TimestampNs,
        order: OrderId,
        order_done: bool,
    ) -> Option<Decimal>;
}

/// Matching settings of a broker profile.
#[derive(Debug, Clone, Default)]
pub struct MatchSettings {
    pub path: PathMode,
    /// Largest share of a bar's volume that may fill (over all orders of the symbol); None =
    /// unlimited.
    pub volume_share: Option<Decimal>,
}

/// One bar to match: its exact prices and its [open, close) interval.
#[derive(Debug, Clone, Copy)]
pub struct BarToMatch {
    pub prices: BarPrices,
    pub open_time: TimestampNs,
    pub close_time: TimestampNs,
    /// The symbol's lot size: a fill capped by the volume share is rounded down to whole lots.
    pub lot_size: Option<Decimal>,
}

/// Every order of a run, by id, plus the open ones of each symbol.
#[derive(Debug, Default)]
pub struct OrderBook {
    orders: Vec<Order>,
    open_by_symbol: Vec<Vec<OrderId>>,
    /// Every event of the run, for `orders.csv`; `on_order` gets those from `delivered` on.
    /// Without `orders.csv` to write (an optimizer's trial), only the undelivered ones.
    history: Vec<OrderEvent>,
    delivered: usize,
    forget_delivered: bool,
    next_group: u64,
    /// A bracket entry's exits, and the members of each OCO group: looked up per fill, so
    /// kept by key rather than found by scanning every order of the run.
    children: std::collections::HashMap<OrderId, Vec<OrderId>>,
    groups: std::collections::HashMap<u64, Vec<OrderId>>,
}

impl OrderBook {
    pub fn new(symbol_count: usize) -> Self {
        OrderBook {
            open_by_symbol: vec![Vec::new(); symbol_count],
            ..Default::default()
        }
    }

    /// Keeps only the events not yet delivered, not every event of the run: for a run that
    /// writes no `orders.csv` (about 110 bytes an event, four events an order).
    pub fn forget_delivered_events(&mut self) {
        self.forget_delivered = true;
        self.history.drain(..self.delivered);
        self.delivered = 0;
    }

    /// A fresh OCO group id.
    pub fn new_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    fn push_event(&mut self, event: OrderEvent) {
        self.history.push(event);
    }

    fn transition(
        &mut self,
        id: OrderId,
        status: OrderStatus,
        time: TimestampNs,
        reason: Option<String>,
    ) {
        let Some(order) = self.get_mut(id) else {
            return;
        };
        order.status = status;
        if reason.is_some() {
            order.reason = reason.clone();
        }
        let symbol = order.symbol;
        if !status.is_open() {
            self.open_by_symbol[symbol.index()].retain(|open| *open != id);
        }
        self.push_event(OrderEvent {
            time,
            order_id: id,
            symbol,
            status,
            fill_quantity: None,
            fill_price: None,
            reason,
        });
    }

    /// Records an order: accepted (or `new`, for a bracket exit waiting for its entry), active
    /// from `now + latency_ns`.
    pub fn submit(
        &mut self,
        request: OrderRequest,
        now: TimestampNs,
        latency_ns: i64,
    ) -> Result<OrderId, OrderRejected> {
        if request.quantity <= Decimal::ZERO {
            return Err(OrderRejected::NonPositiveQuantity(request.quantity));
        }
        let id = self.record(&request, now, now.saturating_add(latency_ns.max(0)));
        self.open_by_symbol[request.symbol.index()].push(id);
        if let Some(parent) = request.parent {
            self.children.entry(parent).or_default().push(id);
        }
        if let Some(group) = request.oco_group {
            self.groups.entry(group).or_default().push(id);
        }
        self.push_event(OrderEvent {
            time: now,
            order_id: id,
            symbol: request.symbol,
            status: OrderStatus::New,
            fill_quantity: None,
            fill_price: None,
            reason: None,
        });
        if request.parent.is_none() {
            self.transition(id, OrderStatus::Accepted, now, None);
        }
        Ok(id)
    }

    /// Takes back an order a killed process left open, exactly as it stood (fills so far, a
    /// trailing stop's level, a trigger reached, its place on the book) under a new id; its
    /// `parent` and `oco_group` must already name this book's orders and groups. No event:
    /// nothing happened to the order.
    pub fn restore(&mut self, mut order: Order) -> OrderId {
        let id = OrderId(self.orders.len() as u64 + 1);
        order.id = id;
        if order.status.is_open() {
            self.open_by_symbol[order.symbol.index()].push(id);
        }
        if let Some(parent) = order.parent {
            self.children.entry(parent).or_default().push(id);
        }
        if let Some(group) = order.oco_group {
            self.next_group = self.next_group.max(group);
            self.groups.entry(group).or_default().push(id);
        }
        self.orders.push(order);
        id
    }

    /// Submits an order the engine places itself (a margin-call liquidation): its `new` and
    /// `accepted` events carry `reason`, so `orders.csv` and `on_order` say why it exists.
    pub fn submit_with_reason(
        &mut self,
        request: OrderRequest,
        now: TimestampNs,
        latency_ns: i64,
        reason: &str,
    ) -> Result<OrderId, OrderRejected> {
        let first = self.history.len();
        let id = self.submit(request, now, latency_ns)?;
        for event in &mut self.history[first..] {
            event.reason = Some(reason.to_string());
        }
        Ok(id)
    }

    /// Records an order refused by a rule (tick, lot, notional, buying power): `rejected` with
    /// the reason, never matched.
    pub fn reject(&mut self, request: &OrderRequest, now: TimestampNs, reason: String) -> OrderId {
        let id = self.record(request, now, now);
        self.push_event(OrderEvent {
            time: now,
            order_id: id,
            symbol: request.symbol,
            status: OrderStatus::New,
            fill_quantity: None,
            fill_price: None,
            reason: None,
        });
        self.transition(id, OrderStatus::Rejected, now, Some(reason));
        id
    }

    /// Rejects an open order that has not filled yet (a check that could only run once a
    /// price existed failed); false if it is no longer open or has fills.
    pub fn reject_open(&mut self, id: OrderId, now: TimestampNs, reason: String) -> bool {
        match self.get(id) {
            Some(order) if order.status.is_open() && order.filled_quantity.is_zero() => {
                self.transition(id, OrderStatus::Rejected, now, Some(reason));
                true
            }
            _ => false,
        }
    }

    fn record(
        &mut self,
        request: &OrderRequest,
        now: TimestampNs,
        active_from: TimestampNs,
    ) -> OrderId {
        let id = OrderId(self.orders.len() as u64 + 1);
        self.orders.push(Order {
            id,
            symbol: request.symbol,
            side: request.side,
            quantity: request.quantity,
            kind: request.kind,
            tif: request.tif,
            submitted_at: now,
            active_from,
            status: OrderStatus::New,
            filled_quantity: Decimal::ZERO,
            filled_notional: Decimal::ZERO,
            fees: Decimal::ZERO,
            filled_at: None,
            reason: None,
            trail_stop: None,
            oco_group: request.oco_group,
            parent: request.parent,
            resting: false,
        });
        id
    }

    pub fn get(&self, id: OrderId) -> Option<&Order> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|index| self.orders.get(index))
    }

    fn get_mut(&mut self, id: OrderId) -> Option<&mut Order> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|index| self.orders.get_mut(index))
    }

    pub fn all(&self) -> &[Order] {
        &self.orders
    }

    /// Events since the last call, in order (for `on_order`).
    pub fn take_events(&mut self) -> Vec<OrderEvent> {
        if self.forget_delivered {
            return std::mem::take(&mut self.history);
        }
        let new = self.history[self.delivered..].to_vec();
        self.delivered = self.history.len();
        new
    }

    /// Marks the events so far as delivered without copying them (nobody listens).
    pub fn skip_events(&mut self) {
        if self.forget_delivered {
            self.history.clear();
        }
        self.delivered = self.history.len();
    }

    /// Every event of the run (for `orders.csv`); after [`OrderBook::forget_delivered_events`]
    /// only those not delivered yet.
    pub fn history(&self) -> &[OrderEvent] {
        &self.history
    }

    pub fn has_open(&self, symbol: SymbolId) -> bool {
        !self.open_by_symbol[symbol.index()].is_empty()
    }

    /// Whether any symbol has an open order.
    pub fn any_open(&self) -> bool {
        self.open_by_symbol.iter().any(|open| !open.is_empty())
    }

    pub fn open_orders(&self, symbol: SymbolId) -> impl Iterator<Item = &Order> {
        self.open_by_symbol[symbol.index()]
            .iter()
            .filter_map(|id| self.get(*id))
    }

    /// Cancels an open order (and a bracket's waiting exits with it when nothing of the entry
    /// filled); returns false if it was not open.
    pub fn cancel(&mut self, id: OrderId, reason: &str, now: TimestampNs) -> bool {
        let Some(order) = self.get(id) else {
            return false;
        };
        if !order.status.is_open() {
            return false;
        }
        let entry_filled = order.filled_quantity;
        self.transition(id, OrderStatus::Cancelled, now, Some(reason.to_string()));
        self.settle_children(id, entry_filled, now, now);
        true
    }

    /// An execution an outside venue reported (a live broker; the engine did not match it):
    /// the order's filled quantity, value and fees grow, its status becomes partially filled
    /// or filled, and `on_order` hears of it. `None` when the order is unknown or not open, or
    /// the quantity exceeds what remains (the caller reconciles instead).
    pub fn apply_venue_fill(
        &mut self,
        id: OrderId,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        time: TimestampNs,
    ) -> Option<Fill> {
        let order = self.get(id)?;
        if !order.status.is_open() || quantity <= Decimal::ZERO || quantity > order.remaining() {
            return None;
        }
        let notional = price.checked_mul(quantity)?;
        let order = self.get_mut(id)?;
        order.filled_quantity += quantity;
        order.filled_notional += notional;
        order.fees += fee;
        order.filled_at = Some(time);
        let (symbol, side, done) = (order.symbol, order.side, order.remaining().is_zero());
        let status = if done {
            OrderStatus::Filled
        } else {
            OrderStatus::PartiallyFilled
        };
        order.status = status;
        self.push_event(OrderEvent {
            time,
            order_id: id,
            symbol,
            status,
            fill_quantity: Some(quantity),
            fill_price: Some(price),
            reason: None,
        });
        if done {
            self.open_by_symbol[symbol.index()].retain(|open| *open != id);
        }
        Some(Fill {
            order_id: id,
            symbol,
            side,
            quantity,
            price,
            fee,
            slippage: Decimal::ZERO,
            time,
        })
    }

    /// A final status an outside venue reported for an open order (cancelled, expired,
    /// rejected). Returns false when the order was not open or the status is not final.
    pub fn apply_venue_status(
        &mut self,
        id: OrderId,
        status: OrderStatus,
        reason: Option<String>,
        time: TimestampNs,
    ) -> bool {
        if status.is_open() || status == OrderStatus::Filled {
            return false;
        }
        if !self.get(id).is_some_and(|o| o.status.is_open()) {
            return false;
        }
        self.transition(id, status, time, reason);
        true
    }

    /// Cancels the open orders `which` selects (an operator's halt, flatten or stop); returns
    /// those it cancelled.
    pub fn cancel_open(
        &mut self,
        which: impl Fn(&Order) -> bool,
        reason: &str,
        now: TimestampNs,
    ) -> Vec<OrderId> {
        let open: Vec<OrderId> = self
            .all()
            .iter()
            .filter(|o| o.status.is_open() && which(o))
            .map(|o| o.id)
            .collect();
        open.into_iter()
            .filter(|id| self.cancel(*id, reason, now))
            .collect()
    }

    pub fn cancel_all(&mut self, reason: &str, now: TimestampNs) {
        let open: Vec<OrderId> = self.open_by_symbol.iter().flatten().copied().collect();
        for id in open {
            self.cancel(id, reason, now);
        }
    }

    /// Changes an open order's quantity and/or price (limit, stop, or both of a stop-limit).
    /// The new quantity may not be below what has filled.
    pub fn modify(
        &mut self,
        id: OrderId,
        quantity: Option<Decimal>,
        price: Option<Decimal>,
        now: TimestampNs,
    ) -> Result<(), OrderRejected> {
        let order = self
            .get_mut(id)
            .ok_or_else(|| OrderRejected::Invalid(format!("no order {}", id.0)))?;
        if !order.status.is_open() {
            return Err(OrderRejected::Invalid(format!(
                "order {} is {} and cannot be modified",
                id.0,
                order.status.as_str()
            )));
        }
        if let Some(quantity) = quantity {
            if quantity <= order.filled_quantity || quantity <= Decimal::ZERO {
                return Err(OrderRejected::Invalid(format!(
                    "new quantity {quantity} must exceed the {} already filled",
                    order.filled_quantity
                )));
            }
            order.quantity = quantity;
        }
        if let Some(price) = price {
            order.kind = match order.kind {
                OrderKind::Limit { .. } => OrderKind::Limit { limit: price },
                OrderKind::Stop { .. } => OrderKind::Stop { stop: price },
                OrderKind::StopLimit { stop, .. } if order.status == OrderStatus::Triggered => {
                    OrderKind::StopLimit { stop, limit: price }
                }
                OrderKind::StopLimit { limit, .. } => OrderKind::StopLimit { stop: price, limit },
                other => {
                    return Err(OrderRejected::Invalid(format!(
                        "a {} order has no price to modify",
                        other.as_str()
                    )));
                }
            };
        }
        let (status, symbol) = (order.status, order.symbol);
        self.push_event(OrderEvent {
            time: now,
            order_id: id,
            symbol,
            status,
            fill_quantity: None,
            fill_price: None,
            reason: Some("modified".into()),
        });
        Ok(())
    }

    /// Links open orders into a new OCO group: a fill of one cancels the others.
    pub fn link_oco(&mut self, ids: &[OrderId]) -> Result<(), OrderRejected> {
        for id in ids {
            match self.get(*id) {
                Some(order) if order.status.is_open() && order.oco_group.is_none() => {}
                Some(order) if order.oco_group.is_some() => {
                    return Err(OrderRejected::Invalid(format!(
                        "order {} is already in an OCO group",
                        id.0
                    )));
                }
                _ => {
                    return Err(OrderRejected::Invalid(format!(
                        "order {} is not open",
                        id.0
                    )));
                }
            }
        }
        let group = self.new_group();
        for id in ids {
            if let Some(order) = self.get_mut(*id) {
                order.oco_group = Some(group);
            }
        }
        self.groups.insert(group, ids.to_vec());
        Ok(())
    }

    /// A bracket entry is done (filled, or cancelled/expired): its exits become active for
    /// the quantity that filled, or are cancelled when nothing did.
    ///
    /// Exits are active from `active_from`: for a fill, the end of the bar it happened in, so
    /// they never match price action of that bar from before the entry filled.
    fn settle_children(
        &mut self,
        parent: OrderId,
        filled: Decimal,
        now: TimestampNs,
        active_from: TimestampNs,
    ) {
        let Some(children) = self.children.remove(&parent) else {
            return;
        };
        let children: Vec<OrderId> = children
            .into_iter()
            .filter(|id| self.get(*id).is_some_and(|o| o.status == OrderStatus::New))
            .collect();
        for child in children {
            if filled.is_zero() {
                self.transition(
                    child,
                    OrderStatus::Cancelled,
                    now,
                    Some("the bracket's entry did not fill".into()),
                );
            } else {
                if let Some(order) = self.get_mut(child) {
                    order.quantity = filled;
                    order.active_from = order.active_from.max(active_from);
                }
                self.transition(child, OrderStatus::Accepted, now, None);
            }
        }
    }

    /// Expires what its time in force no longer allows at a bar opening at `open_time`.
    fn expire(&mut self, id: OrderId, open_time: TimestampNs) -> bool {
        let Some(order) = self.get(id) else {
            return false;
        };
        match order.deadline() {
            Some(deadline) if open_time >= deadline => {
                let filled = order.filled_quantity;
                let reason = format!("{} order expired", order.tif.as_str().to_uppercase());
                self.transition(id, OrderStatus::Expired, open_time, Some(reason));
                self.settle_children(id, filled, open_time, open_time);
                true
            }
            _ => false,
        }
    }

    /// Matches the open orders of `symbol` against one bar. Orders are only matched against
    /// price action after they became active: never against the bar they were placed on.
    pub fn match_bar(
        &mut self,
        symbol: SymbolId,
        bar: &BarToMatch,
        settings: &MatchSettings,
        costs: &mut dyn FillCostModel,
        fills: &mut Vec<Fill>,
    ) -> Result<(), &'static str> {
        let points = bar.prices.path(settings.path);
        let mut volume_left = settings.volume_share.map(|share| bar.prices.volume * share);
        let duration = (bar.close_time - bar.open_time).max(1);
        // First where each order would fill on the path, then the fills in path order, so that
        // of two orders touched in the same bar (a bracket's stop and target) the one the path
        // reaches first fills first and an OCO sibling is cancelled before it can fill.
        let ids: Vec<OrderId> = self.open_by_symbol[symbol.index()].clone();
        let mut touches = Vec::new();
        for id in ids {
            let Some(order) = self.get(id) else { continue };
            if !order.status.is_open() || order.status == OrderStatus::New {
                continue;
            }
            if order.active_from >= bar.close_time {
                continue;
            }
            if self.expire(id, bar.open_time) {
                continue;
            }
            let order = self.get(id).expect("checked above");
            let at_open = order.active_from <= bar.open_time;
            let fraction = if at_open {
                Decimal::ZERO
            } else {
                Decimal::from(order.active_from - bar.open_time) / Decimal::from(duration)
            };
            let path = path_from(points, fraction);
            let mut working = order.clone();
            let touched = touch(&mut working, &path, at_open);
            let at = match touched {
                Touch::Fill { at, .. } => at,
                _ => Decimal::from(4),
            };
            touches.push((at, id, touched, working));
        }
        touches.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, id, touched, working) in touches {
            let Some(order) = self.get(id) else { continue };
            if !order.status.is_open() {
                continue; // cancelled earlier in this bar by an OCO sibling
            }
            let tif = order.tif;
            let first_bar =
                order.filled_quantity.is_zero() && matches!(order.status, OrderStatus::Accepted);
            let was = order.status;
            // Keep the state the walk changed (trailing level, resting, trigger).
            if let Some(order) = self.get_mut(id) {
                order.trail_stop = working.trail_stop;
                order.resting = working.resting;
            }
            if working.status == OrderStatus::Triggered && was != OrderStatus::Triggered {
                self.transition(id, OrderStatus::Triggered, bar.open_time, None);
            }
            let (price, maker) = match touched {
                Touch::Fill { price, maker, .. } => (price, maker),
                Touch::None | Touch::Triggered => {
                    if tif == TimeInForce::Ioc || tif == TimeInForce::Fok {
                        let reason = format!(
                            "{}: not marketable on its first bar",
                            tif.as_str().to_uppercase()
                        );
                        self.transition(id, OrderStatus::Expired, bar.open_time, Some(reason));
                        self.settle_children(
                            id,
                            working.filled_quantity,
                            bar.open_time,
                            bar.close_time,
                        );
                    }
                    continue;
                }
            };
            let remaining = working.remaining();
            let quantity = match volume_left {
                Some(left) => volume_capped(remaining, left, bar.lot_size),
                None => remaining,
            };
            if tif == TimeInForce::Fok && first_bar && quantity < remaining {
                let reason = format!(
                    "FOK: only {} of {} could fill on its first bar",
                    quantity.normalize(),
                    remaining.normalize()
                );
                self.transition(id, OrderStatus::Expired, bar.open_time, Some(reason));
                self.settle_children(id, Decimal::ZERO, bar.open_time, bar.close_time);
                continue;
            }
            if quantity <= Decimal::ZERO {
                // The bar's volume share went to orders the path reached earlier.
                if tif == TimeInForce::Ioc {
                    let reason = "IOC: no volume left on its first bar".to_string();
                    self.transition(id, OrderStatus::Expired, bar.open_time, Some(reason));
                    self.settle_children(
                        id,
                        working.filled_quantity,
                        bar.open_time,
                        bar.close_time,
                    );
                }
                continue;
            }
            if let Some(left) = volume_left.as_mut() {
                *left -= quantity;
            }
            let mut executed = costs
                .price(&working, price, quantity, bar.prices.volume, maker)
                .ok_or("decimal overflow pricing a fill")?;
            // A limit protects its price: slippage never takes a fill past it.
            if let Some(limit) = working.kind.limit() {
                executed = match working.side {
                    OrderSide::Buy => executed.min(limit),
                    OrderSide::Sell => executed.max(limit),
                };
            }
            // Never negative: a limit clamp only moves the price back towards the reference.
            let slippage = executed
                .checked_sub(price)
                .and_then(|d| d.checked_mul(working.side.sign()))
                .and_then(|d| d.checked_mul(quantity))
                .ok_or("decimal overflow in a fill's slippage")?
                .max(Decimal::ZERO);
            let order_done = quantity >= remaining || tif == TimeInForce::Ioc;
            let fee = costs
                .fee(
                    working.side,
                    quantity,
                    executed,
                    maker,
                    bar.open_time,
                    id,
                    order_done,
                )
                .ok_or("decimal overflow computing a commission")?;
            let notional = executed
                .checked_mul(quantity)
                .ok_or("decimal overflow in a fill's value")?;
            let fill_time = match working.kind {
                OrderKind::MarketOnClose => bar.close_time,
                _ => bar.open_time.max(working.active_from),
            };
            let (done, oco, side) = {
                let order = self.get_mut(id).expect("checked above");
                order.filled_quantity += quantity;
                order.filled_notional += notional;
                order.fees += fee;
                order.filled_at = Some(fill_time);
                (order.remaining().is_zero(), order.oco_group, order.side)
            };
            fills.push(Fill {
                order_id: id,
                symbol,
                side,
                quantity,
                price: executed,
                fee,
                slippage,
                time: fill_time,
            });
            let status = if done {
                OrderStatus::Filled
            } else {
                OrderStatus::PartiallyFilled
            };
            if let Some(order) = self.get_mut(id) {
                order.status = status;
            }
            self.push_event(OrderEvent {
                time: fill_time,
                order_id: id,
                symbol,
                status,
                fill_quantity: Some(quantity),
                fill_price: Some(executed),
                reason: None,
            });
            if done {
                self.open_by_symbol[symbol.index()].retain(|open| *open != id);
                let filled = self.get(id).map(|o| o.filled_quantity).unwrap_or_default();
                self.settle_children(id, filled, fill_time, bar.close_time);
            } else if tif == TimeInForce::Ioc {
                let filled = self.get(id).map(|o| o.filled_quantity).unwrap_or_default();
                self.transition(
                    id,
                    OrderStatus::Expired,
                    fill_time,
                    Some("IOC: the rest expired".into()),
                );
                self.settle_children(id, filled, fill_time, bar.close_time);
            }
            if let Some(group) = oco {
                let siblings: Vec<OrderId> = self
                    .groups
                    .remove(&group)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|other| {
                        *other != id && self.get(*other).is_some_and(|o| o.status.is_open())
                    })
                    .collect();
                for sibling in siblings {
                    self.cancel(sibling, &format!("OCO: order {} filled", id.0), fill_time);
                }
            }
        }
        Ok(())
    }
}

/// What of `remaining` may fill when only `left` of the bar's volume share is free: whole
/// lots only, rounded down, so a partial fill never leaves a fraction of a lot behind. An
/// order's quantity is whole lots at submission, so what is left is too. A remainder that is
/// not (a quantity set before the lot rule, or no lot size) fills whole once the volume allows.
fn volume_capped(remaining: Decimal, left: Decimal, lot: Option<Decimal>) -> Decimal {
    let left = left.max(Decimal::ZERO);
    if remaining <= left {
        return remaining;
    }
    match lot.filter(|l| *l > Decimal::ZERO) {
        Some(lot) => (left / lot).floor() * lot,
        None => left,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::CommissionModel;
    use crate::model::Trail;
    use proptest::prelude::*;
    use rust_decimal::dec;

    const MIN: i64 = 60_000_000_000;

    /// Commission as configured, no slippage.
    struct Costs(CommissionModel, Decimal);

    impl FillCostModel for Costs {
        fn price(
            &mut self,
            order: &Order,
            reference: Decimal,
            _: Decimal,
            _: Decimal,
            maker: bool,
        ) -> Option<Decimal> {
            let side = order.side;
            if maker {
                return Some(reference);
            }
            let shift = reference * self.1 / Decimal::from(10_000);
            Some(match side {
                OrderSide::Buy => reference + shift,
                OrderSide::Sell => reference - shift,
            })
        }
        fn fee(
            &mut self,
            _: OrderSide,
            q: Decimal,
            p: Decimal,
            _: bool,
            _: TimestampNs,
            _: OrderId,
            _: bool,
        ) -> Option<Decimal> {
            self.0.fee(q, p)
        }
    }

    fn free() -> Costs {
        Costs(CommissionModel::default(), Decimal::ZERO)
    }

    fn bar(minute: i64, o: Decimal, h: Decimal, l: Decimal, c: Decimal, v: Decimal) -> BarToMatch {
        BarToMatch {
            prices: BarPrices {
                open: o,
                high: h,
                low: l,
                close: c,
                volume: v,
            },
            open_time: minute * MIN,
            close_time: (minute + 1) * MIN,
            lot_size: None,
        }
    }

    fn request(side: OrderSide, quantity: Decimal, kind: OrderKind) -> OrderRequest {
        OrderRequest {
            kind,
            ..OrderRequest::market(SymbolId(0), side, quantity)
        }
    }

    fn run(book: &mut OrderBook, bars: &[BarToMatch], settings: &MatchSettings) -> Vec<Fill> {
        let mut fills = Vec::new();
        for b in bars {
            book.match_bar(SymbolId(0), b, settings, &mut free(), &mut fills)
                .unwrap();
        }
        fills
    }

    fn statuses(book: &OrderBook, id: OrderId) -> Vec<&'static str> {
        book.history()
            .iter()
            .filter(|e| e.order_id == id)
            .map(|e| e.status.as_str())
            .collect()
    }

    #[test]
    fn market_order_fills_at_the_open_of_a_bar_that_opens_after_it() {
        let mut book = OrderBook::new(1);
        let id = book
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(2)),
                MIN,
                0,
            )
            .unwrap();
        // The bar it was placed at the close of (minute 0) is never used.
        let fills = run(
            &mut book,
            &[bar(0, dec!(9), dec!(9), dec!(9), dec!(9), dec!(10))],
            &MatchSettings::default(),
        );
        assert!(fills.is_empty());
        let fills = run(
            &mut book,
            &[bar(1, dec!(10.5), dec!(11), dec!(10), dec!(10), dec!(10))],
            &MatchSettings::default(),
        );
        assert_eq!((fills[0].price, fills[0].time), (dec!(10.5), MIN));
        assert_eq!(statuses(&book, id), ["new", "accepted", "filled"]);
        assert!(!book.has_open(SymbolId(0)));
        assert_eq!(book.take_events().len(), 3);
        assert!(book.take_events().is_empty());
    }

    #[test]
    fn a_book_that_forgets_delivered_events_delivers_the_same_events() {
        let place = |book: &mut OrderBook, minute: i64| {
            book.submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(1)),
                minute * MIN,
                0,
            )
            .unwrap();
        };
        let mut keeping = OrderBook::new(1);
        let mut forgetting = OrderBook::new(1);
        place(&mut forgetting, 0);
        forgetting.forget_delivered_events();
        place(&mut keeping, 0);
        let mut delivered = (Vec::new(), Vec::new());
        for minute in 1..5 {
            for book in [&mut keeping, &mut forgetting] {
                run(
                    book,
                    &[bar(
                        minute,
                        dec!(10),
                        dec!(10),
                        dec!(10),
                        dec!(10),
                        dec!(10),
                    )],
                    &MatchSettings::default(),
                );
                place(book, minute);
            }
            if minute == 2 {
                // Nobody listened at this tick.
                keeping.skip_events();
                forgetting.skip_events();
                continue;
            }
            delivered.0.extend(keeping.take_events());
            delivered.1.extend(forgetting.take_events());
        }
        assert_eq!(delivered.0.len(), 11);
        assert_eq!(delivered.0, delivered.1);
        assert_eq!(keeping.history().len(), 5 * 3 - 1);
        assert!(forgetting.history().is_empty());
        assert_eq!(keeping.all(), forgetting.all());
    }

    #[test]
    fn volume_capped_fills_are_whole_lots_and_leave_no_dust() {
        let mut book = OrderBook::new(1);
        let big = book
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(50)),
                0,
                0,
            )
            .unwrap();
        // Below one lot (as a quantity set before the lot rule could be): fills whole.
        let small = book
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(5)),
                0,
                0,
            )
            .unwrap();
        let settings = MatchSettings {
            volume_share: Some(dec!(0.5)),
            ..Default::default()
        };
        let bars: Vec<BarToMatch> = (0..6)
            .map(|m| BarToMatch {
                lot_size: Some(dec!(10)),
                ..bar(m, dec!(10), dec!(10), dec!(10), dec!(10), dec!(35))
            })
            .collect();
        let fills = run(&mut book, &bars, &settings);
        // 17.5 free per bar: 10 for the big order (7.5 stays free), then the small one's 5.
        let got: Vec<(u64, Decimal)> = fills.iter().map(|f| (f.order_id.0, f.quantity)).collect();
        assert_eq!(
            got,
            [
                (big.0, dec!(10)),
                (small.0, dec!(5)),
                (big.0, dec!(10)),
                (big.0, dec!(10)),
                (big.0, dec!(10)),
                (big.0, dec!(10)),
            ]
        );
        assert_eq!(book.get(big).unwrap().status, OrderStatus::Filled);
        assert_eq!(book.get(small).unwrap().status, OrderStatus::Filled);
        // Less than a lot free: nothing fills, the order waits whole.
        assert_eq!(volume_capped(dec!(30), dec!(9.99), Some(dec!(10))), dec!(0));
        assert_eq!(
            volume_capped(dec!(30), dec!(29.5), Some(dec!(10))),
            dec!(20)
        );
        assert_eq!(volume_capped(dec!(30), dec!(29.5), None), dec!(29.5));
        assert_eq!(volume_capped(dec!(30), dec!(-1), Some(dec!(10))), dec!(0));
    }

    #[test]
    fn fills_record_their_slippage_against_the_path_price() {
        let mut book = OrderBook::new(1);
        book.submit(
            OrderRequest::market(SymbolId(0), OrderSide::Sell, dec!(4)),
            0,
            0,
        )
        .unwrap();
        // 100 bp against a sell at 10: 9.9, i.e. 0.1 × 4 lost.
        let mut costs = Costs(CommissionModel::default(), dec!(100));
        let mut fills = Vec::new();
        book.match_bar(
            SymbolId(0),
            &bar(0, dec!(10), dec!(10), dec!(10), dec!(10), dec!(100)),
            &MatchSettings::default(),
            &mut costs,
            &mut fills,
        )
        .unwrap();
        assert_eq!((fills[0].price, fills[0].slippage), (dec!(9.9), dec!(0.4)));
    }

    #[test]
    fn partial_fills_carry_over_and_keep_an_exact_average() {
        let mut book = OrderBook::new(1);
        let id = book
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(25)),
                0,
                0,
            )
            .unwrap();
        let settings = MatchSettings {
            volume_share: Some(dec!(0.5)),
            ..Default::default()
        };
        let fills = run(
            &mut book,
            &[
                bar(0, dec!(10), dec!(10), dec!(10), dec!(10), dec!(20)),
                bar(1, dec!(11), dec!(11), dec!(11), dec!(11), dec!(20)),
                bar(2, dec!(12), dec!(12), dec!(12), dec!(12), dec!(20)),
            ],
            &settings,
        );
        let quantities: Vec<Decimal> = fills.iter().map(|f| f.quantity).collect();
        assert_eq!(quantities, [dec!(10), dec!(10), dec!(5)]);
        let order = book.get(id).unwrap();
        assert_eq!(order.status, OrderStatus::Filled);
        assert_eq!(order.filled_notional, dec!(100) + dec!(110) + dec!(60));
        assert_eq!(order.average_price(), Some(dec!(10.8)));
        assert_eq!(
            statuses(&book, id),
            [
                "new",
                "accepted",
                "partially_filled",
                "partially_filled",
                "filled"
            ]
        );
    }

    #[test]
    fn ioc_keeps_what_fills_on_its_first_bar_and_fok_is_all_or_nothing() {
        let settings = MatchSettings {
            volume_share: Some(dec!(0.1)),
            ..Default::default()
        };
        let mut book = OrderBook::new(1);
        let ioc = book
            .submit(
                OrderRequest {
                    tif: TimeInForce::Ioc,
                    ..OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(5))
                },
                0,
                0,
            )
            .unwrap();
        let fok = book
            .submit(
                OrderRequest {
                    tif: TimeInForce::Fok,
                    ..OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(5))
                },
                0,
                0,
            )
            .unwrap();
        let fills = run(
            &mut book,
            &[bar(0, dec!(10), dec!(10), dec!(10), dec!(10), dec!(30))],
            &settings,
        );
        assert_eq!(fills.len(), 1);
        assert_eq!(fills[0].quantity, dec!(3));
        assert_eq!(book.get(ioc).unwrap().status, OrderStatus::Expired);
        assert_eq!(book.get(ioc).unwrap().filled_quantity, dec!(3));
        let fok = book.get(fok).unwrap();
        assert_eq!(fok.status, OrderStatus::Expired);
        assert!(
            fok.reason
                .as_deref()
                .unwrap()
                .starts_with("FOK: only 0 of 5"),
            "{:?}",
            fok.reason
        );
    }

    #[test]
    fn ioc_expires_when_earlier_orders_took_the_bar_volume() {
        let settings = MatchSettings {
            volume_share: Some(dec!(0.1)),
            ..Default::default()
        };
        let mut book = OrderBook::new(1);
        book.submit(
            OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(5)),
            0,
            0,
        )
        .unwrap();
        let ioc = book
            .submit(
                OrderRequest {
                    tif: TimeInForce::Ioc,
                    ..OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(5))
                },
                0,
                0,
            )
            .unwrap();
        run(
            &mut book,
            &[bar(0, dec!(10), dec!(10), dec!(10), dec!(10), dec!(30))],
            &settings,
        );
        let ioc = book.get(ioc).unwrap();
        assert_eq!(ioc.status, OrderStatus::Expired);
        assert_eq!(
            ioc.reason.as_deref(),
            Some("IOC: no volume left on its first bar")
        );
    }

    #[test]
    fn day_and_good_till_date_orders_expire() {
        let mut book = OrderBook::new(1);
        let limit = OrderKind::Limit { limit: dec!(5) };
        let day = book
            .submit(
                OrderRequest {
                    tif: TimeInForce::Day,
                    ..request(OrderSide::Buy, dec!(1), limit)
                },
                23 * 60 * MIN,
                0,
            )
            .unwrap();
        let gtd = book
            .submit(
                OrderRequest {
                    tif: TimeInForce::Gtd(23 * 60 * MIN + 30 * MIN),
                    ..request(OrderSide::Buy, dec!(1), limit)
                },
                23 * 60 * MIN,
                0,
            )
            .unwrap();
        run(
            &mut book,
            &[bar(
                23 * 60 + 10,
                dec!(10),
                dec!(10),
                dec!(9),
                dec!(10),
                dec!(1),
            )],
            &MatchSettings::default(),
        );
        assert!(book.get(day).unwrap().status.is_open());
        run(
            &mut book,
            &[bar(
                23 * 60 + 40,
                dec!(10),
                dec!(10),
                dec!(9),
                dec!(10),
                dec!(1),
            )],
            &MatchSettings::default(),
        );
        assert_eq!(book.get(gtd).unwrap().status, OrderStatus::Expired);
        assert!(book.get(day).unwrap().status.is_open());
        run(
            &mut book,
            &[bar(24 * 60, dec!(10), dec!(10), dec!(9), dec!(10), dec!(1))],
            &MatchSettings::default(),
        );
        assert_eq!(book.get(day).unwrap().status, OrderStatus::Expired);
        assert_eq!(
            book.get(day).unwrap().reason.as_deref(),
            Some("DAY order expired")
        );
    }

    #[test]
    fn bracket_exits_wait_for_the_entry_and_cancel_each_other() {
        let mut book = OrderBook::new(1);
        let entry = book
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(4)),
                0,
                0,
            )
            .unwrap();
        let group = book.new_group();
        let exit = |kind| OrderRequest {
            oco_group: Some(group),
            parent: Some(entry),
            ..request(OrderSide::Sell, dec!(4), kind)
        };
        let take = book
            .submit(exit(OrderKind::Limit { limit: dec!(12) }), 0, 0)
            .unwrap();
        let stop = book
            .submit(exit(OrderKind::Stop { stop: dec!(9) }), 0, 0)
            .unwrap();
        assert_eq!(book.get(take).unwrap().status, OrderStatus::New);
        // Bar 0: the entry fills at 10; the exits become active but wait for the next bar
        // (they were placed, in effect, when the entry filled).
        let fills = run(
            &mut book,
            &[bar(0, dec!(10), dec!(13), dec!(8), dec!(10), dec!(100))],
            &MatchSettings::default(),
        );
        assert_eq!(fills.len(), 1);
        assert_eq!(book.get(take).unwrap().status, OrderStatus::Accepted);
        // Bar 1 touches both: open 10, low 8.5 is nearer than high 12.5 → the stop first.
        let fills = run(
            &mut book,
            &[bar(1, dec!(10), dec!(12.5), dec!(8.5), dec!(11), dec!(100))],
            &MatchSettings::default(),
        );
        assert_eq!(fills.len(), 1);
        assert_eq!((fills[0].order_id, fills[0].price), (stop, dec!(9)));
        let take = book.get(take).unwrap();
        assert_eq!(take.status, OrderStatus::Cancelled);
        assert_eq!(
            take.reason.as_deref(),
            Some(format!("OCO: order {} filled", stop.0).as_str())
        );
    }

    #[test]
    fn a_bracket_whose_entry_never_fills_cancels_its_exits() {
        let mut book = OrderBook::new(1);
        let entry = book
            .submit(
                request(OrderSide::Buy, dec!(1), OrderKind::Limit { limit: dec!(5) }),
                0,
                0,
            )
            .unwrap();
        let group = book.new_group();
        let exit = book
            .submit(
                OrderRequest {
                    parent: Some(entry),
                    oco_group: Some(group),
                    ..request(OrderSide::Sell, dec!(1), OrderKind::Stop { stop: dec!(4) })
                },
                0,
                0,
            )
            .unwrap();
        assert!(book.cancel(entry, "user", 0));
        assert_eq!(book.get(exit).unwrap().status, OrderStatus::Cancelled);
    }

    #[test]
    fn latency_starts_the_order_mid_bar_on_the_rest_of_the_path() {
        let mut book = OrderBook::new(1);
        // Active half-way through bar 1: the path 10 → 13 (high nearer? no: low 9.5 nearer) …
        let id = book
            .submit(
                OrderRequest::market(SymbolId(0), OrderSide::Buy, dec!(1)),
                MIN,
                MIN / 2,
            )
            .unwrap();
        let fills = run(
            &mut book,
            &[bar(1, dec!(10), dec!(13), dec!(9.5), dec!(12), dec!(100))],
            &MatchSettings::default(),
        );
        // Path: 10 → 9.5 → 13 → 12; half-way is the middle of the second leg: 11.25.
        assert_eq!(fills[0].price, dec!(11.25));
        assert_eq!(fills[0].time, MIN + MIN / 2);
        assert_eq!(book.get(id).unwrap().active_from, MIN + MIN / 2);
    }

    #[test]
    fn market_on_close_and_on_open() {
        let mut book = OrderBook::new(1);
        let moc = book
            .submit(
                request(OrderSide::Buy, dec!(1), OrderKind::MarketOnClose),
                0,
                0,
            )
            .unwrap();
        let moo = book
            .submit(
                request(OrderSide::Buy, dec!(1), OrderKind::MarketOnOpen),
                0,
                MIN / 3,
            )
            .unwrap();
        let fills = run(
            &mut book,
            &[
                bar(0, dec!(10), dec!(11), dec!(9), dec!(10.5), dec!(100)),
                bar(1, dec!(10.7), dec!(11), dec!(9), dec!(10), dec!(100)),
            ],
            &MatchSettings::default(),
        );
        assert_eq!(
            (fills[0].order_id, fills[0].price, fills[0].time),
            (moc, dec!(10.5), MIN)
        );
        // Active mid-bar 0: waits for the next open.
        assert_eq!((fills[1].order_id, fills[1].price), (moo, dec!(10.7)));
    }

    #[test]
    fn modify_and_oco_linking() {
        let mut book = OrderBook::new(1);
        let a = book
            .submit(
                request(OrderSide::Buy, dec!(2), OrderKind::Limit { limit: dec!(9) }),
                0,
                0,
            )
            .unwrap();
        let b = book
            .submit(
                request(OrderSide::Buy, dec!(2), OrderKind::Stop { stop: dec!(12) }),
                0,
                0,
            )
            .unwrap();
        book.link_oco(&[a, b]).unwrap();
        assert!(book.link_oco(&[a, b]).is_err());
        book.modify(a, Some(dec!(3)), Some(dec!(9.5)), 0).unwrap();
        assert_eq!(
            book.get(a).unwrap().kind,
            OrderKind::Limit { limit: dec!(9.5) }
        );
        let fills = run(
            &mut book,
            &[bar(0, dec!(10), dec!(10.2), dec!(9.4), dec!(10), dec!(100))],
            &MatchSettings::default(),
        );
        assert_eq!(
            (fills[0].order_id, fills[0].quantity, fills[0].price),
            (a, dec!(3), dec!(9.5))
        );
        assert_eq!(book.get(b).unwrap().status, OrderStatus::Cancelled);
        assert!(
            book.modify(a, None, Some(dec!(1)), 0).is_err(),
            "filled orders cannot change"
        );
        let trailing = book
            .submit(
                request(
                    OrderSide::Sell,
                    dec!(1),
                    OrderKind::TrailingStop {
                        trail: Trail::Amount(dec!(1)),
                    },
                ),
                0,
                0,
            )
            .unwrap();
        assert!(book.modify(trailing, None, Some(dec!(3)), 0).is_err());
    }

    proptest! {
        /// Whatever the bars and the volume share, the fills of an order sum to its filled
        /// quantity and exact value, fees are never negative, and a taker fill is never better
        /// than the path price it was matched at (slippage is never favourable).
        #[test]
        fn fills_add_up_exactly_and_costs_never_favour(
            bars in prop::collection::vec((1u32..5000, 0u32..300, 0u32..300, 0u32..600, 0u32..1000), 1..30),
            share in 1u32..100,
            quantity in 1u32..500,
            buy in any::<bool>(),
            bps in 0u32..50,
            limit_offset in 0u32..200,
            lot in 0u32..4,
        ) {
            let lot_size = (lot > 0).then(|| Decimal::from(lot));
            let quantity = quantity * lot.max(1);
            let side = if buy { OrderSide::Buy } else { OrderSide::Sell };
            let mut book = OrderBook::new(1);
            let market = book.submit(OrderRequest::market(SymbolId(0), side, Decimal::from(quantity)), 0, 0).unwrap();
            let first = Decimal::new(bars[0].0 as i64, 2);
            let limit_price = if buy { first - Decimal::new(limit_offset as i64, 2) } else { first + Decimal::new(limit_offset as i64, 2) }.max(dec!(0.01));
            let limit = book.submit(request(side, Decimal::from(quantity), OrderKind::Limit { limit: limit_price }), 0, 0).unwrap();
            let settings = MatchSettings { volume_share: Some(Decimal::new(share as i64, 2)), ..Default::default() };
            let mut costs = Costs(CommissionModel { rate: dec!(0.001), minimum: dec!(0.5) }, Decimal::from(bps));
            let mut fills = Vec::new();
            for (i, (open, up, down, span, volume)) in bars.iter().enumerate() {
                let open = Decimal::new(*open as i64, 2);
                let high = open + Decimal::new(*up as i64, 2);
                let low = (open - Decimal::new(*down as i64, 2)).max(dec!(0.01));
                let close = (low + Decimal::new(*span as i64, 2)).min(high);
                let b = BarToMatch { lot_size, ..bar(i as i64, open, high, low, close, Decimal::from(*volume)) };
                let before = fills.len();
                book.match_bar(SymbolId(0), &b, &settings, &mut costs, &mut fills).unwrap();
                let path = b.prices.path(PathMode::NearerFirst);
                for f in &fills[before..] {
                    prop_assert!(f.fee >= Decimal::ZERO);
                    prop_assert!(f.slippage >= Decimal::ZERO);
                    if let Some(lot) = lot_size {
                        prop_assert!((f.quantity % lot).is_zero(), "{} is not whole lots of {}", f.quantity, lot);
                    }
                    prop_assert!(f.price >= low.min(path[0]) * (Decimal::ONE - Decimal::from(bps) / Decimal::from(10_000)) - dec!(0.0000001));
                    if f.order_id == market {
                        // Market fills at the open, moved against the order by the slippage.
                        if buy { prop_assert!(f.price >= open) } else { prop_assert!(f.price <= open) }
                    } else if buy {
                        prop_assert!(f.price <= limit_price, "a buy limit never pays above its limit");
                    } else {
                        prop_assert!(f.price >= limit_price, "a sell limit never gets below its limit");
                    }
                }
            }
            for id in [market, limit] {
                let order = book.get(id).unwrap();
                let mine: Vec<&Fill> = fills.iter().filter(|f| f.order_id == id).collect();
                let quantity_sum: Decimal = mine.iter().map(|f| f.quantity).sum();
                let value_sum: Decimal = mine.iter().map(|f| f.quantity * f.price).sum();
                let fee_sum: Decimal = mine.iter().map(|f| f.fee).sum();
                prop_assert_eq!(quantity_sum, order.filled_quantity);
                prop_assert_eq!(value_sum, order.filled_notional);
                prop_assert_eq!(fee_sum, order.fees);
                prop_assert!(order.filled_quantity <= order.quantity);
                prop_assert_eq!(order.status == OrderStatus::Filled, order.filled_quantity == order.quantity);
            }
            // The volume share is respected per bar across both orders.
            for (i, (_, _, _, _, volume)) in bars.iter().enumerate() {
                let in_bar: Decimal = fills.iter().filter(|f| f.time >= i as i64 * MIN && f.time < (i as i64 + 1) * MIN).map(|f| f.quantity).sum();
                prop_assert!(in_bar <= Decimal::from(*volume) * Decimal::new(share as i64, 2));
            }
        }
    }

    #[test]
    fn venue_fills_and_statuses_drive_an_order_the_engine_never_matches() {
        let mut book = OrderBook::new(1);
        let id = book
            .submit(request(OrderSide::Buy, dec!(3), OrderKind::Market), 0, 0)
            .unwrap();
        let fill = book
            .apply_venue_fill(id, dec!(1), dec!(10.5), dec!(0.01), 5)
            .unwrap();
        assert_eq!(
            (fill.quantity, fill.price, fill.fee, fill.time),
            (dec!(1), dec!(10.5), dec!(0.01), 5)
        );
        assert_eq!(book.get(id).unwrap().status, OrderStatus::PartiallyFilled);
        // More than remains is refused (the caller reconciles instead).
        assert!(
            book.apply_venue_fill(id, dec!(2.5), dec!(10), dec!(0), 6)
                .is_none()
        );
        book.apply_venue_fill(id, dec!(2), dec!(11), dec!(0), 7)
            .unwrap();
        let order = book.get(id).unwrap();
        assert_eq!(
            (order.status, order.filled_quantity, order.filled_notional),
            (OrderStatus::Filled, dec!(3), dec!(32.5))
        );
        assert!(!book.has_open(SymbolId(0)));
        assert_eq!(
            statuses(&book, id),
            ["new", "accepted", "partially_filled", "filled"]
        );
        // A filled order takes no more fills and no final status.
        assert!(
            book.apply_venue_fill(id, dec!(1), dec!(1), dec!(0), 8)
                .is_none()
        );
        assert!(!book.apply_venue_status(id, OrderStatus::Cancelled, None, 8));

        let other = book
            .submit(
                request(
                    OrderSide::Sell,
                    dec!(1),
                    OrderKind::Limit { limit: dec!(20) },
                ),
                0,
                0,
            )
            .unwrap();
        assert!(
            !book.apply_venue_status(other, OrderStatus::Accepted, None, 9),
            "not final"
        );
        assert!(book.apply_venue_status(other, OrderStatus::Expired, Some("IOC".into()), 9));
        assert_eq!(book.get(other).unwrap().reason.as_deref(), Some("IOC"));
    }
}
