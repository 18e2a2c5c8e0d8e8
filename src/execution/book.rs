//! Every order of a run: submission, the state machine, and matching against bars.

use rust_decimal::Decimal;

use super::matching::{BarPrices, PathMode, Touch, path_from, touch};
use crate::model::time::NANOS_PER_DAY;
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
pub trait FillCosts {
    /// The executed price for a fill whose path price is `reference`; never better than it.
    fn price(
        &self,
        side: OrderSide,
        reference: Decimal,
        quantity: Decimal,
        bar_volume: Decimal,
        maker: bool,
    ) -> Option<Decimal>;
    /// The fee of a fill (≥ 0).
    fn fee(
        &mut self,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        maker: bool,
        time: TimestampNs,
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
}

/// Every order of a run, by id, plus the open ones of each symbol.
#[derive(Debug, Default)]
pub struct OrderBook {
    orders: Vec<Order>,
    open_by_symbol: Vec<Vec<OrderId>>,
    events: Vec<OrderEvent>,
    /// Every event of the run, for `orders.csv`.
    history: Vec<OrderEvent>,
    next_group: u64,
}

impl OrderBook {
    pub fn new(symbol_count: usize) -> Self {
        OrderBook {
            open_by_symbol: vec![Vec::new(); symbol_count],
            ..Default::default()
        }
    }

    /// A fresh OCO group id.
    pub fn new_group(&mut self) -> u64 {
        self.next_group += 1;
        self.next_group
    }

    fn push_event(&mut self, event: OrderEvent) {
        self.history.push(event.clone());
        self.events.push(event);
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
        std::mem::take(&mut self.events)
    }

    /// Every event of the run (for `orders.csv`).
    pub fn history(&self) -> &[OrderEvent] {
        &self.history
    }

    pub fn has_open(&self, symbol: SymbolId) -> bool {
        !self.open_by_symbol[symbol.index()].is_empty()
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
        self.settle_children(id, entry_filled, now);
        true
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
        let status = order.status;
        self.push_event(OrderEvent {
            time: now,
            order_id: id,
            symbol: self.get(id).map(|o| o.symbol).unwrap_or(SymbolId(0)),
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
        Ok(())
    }

    /// A bracket entry is done (filled, or cancelled/expired): its exits become active for
    /// the quantity that filled, or are cancelled when nothing did.
    fn settle_children(&mut self, parent: OrderId, filled: Decimal, now: TimestampNs) {
        let children: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|o| o.parent == Some(parent) && o.status == OrderStatus::New)
            .map(|o| o.id)
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
                    order.active_from = order.active_from.max(now);
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
        let deadline = match order.tif {
            TimeInForce::Day => {
                Some((order.submitted_at.div_euclid(NANOS_PER_DAY) + 1) * NANOS_PER_DAY)
            }
            TimeInForce::Gtd(until) => Some(until),
            _ => None,
        };
        match deadline {
            Some(deadline) if open_time >= deadline => {
                let filled = order.filled_quantity;
                let reason = format!("{} order expired", order.tif.as_str().to_uppercase());
                self.transition(id, OrderStatus::Expired, open_time, Some(reason));
                self.settle_children(id, filled, open_time);
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
        costs: &mut dyn FillCosts,
        fills: &mut Vec<Fill>,
    ) -> Result<(), &'static str> {
        let points = bar.prices.path(settings.path);
        let mut volume_left = settings.volume_share.map(|share| bar.prices.volume * share);
        let duration = (bar.close_time - bar.open_time).max(1);
        let ids: Vec<OrderId> = self.open_by_symbol[symbol.index()].clone();
        for id in ids {
            let Some(order) = self.get(id) else { continue };
            // An OCO sibling may have cancelled it earlier in this bar.
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
            let path = if at_open {
                points.to_vec()
            } else {
                let fraction =
                    Decimal::from(order.active_from - bar.open_time) / Decimal::from(duration);
                path_from(points, fraction)
            };
            let tif = order.tif;
            let first_bar =
                order.filled_quantity.is_zero() && matches!(order.status, OrderStatus::Accepted);
            let mut working = order.clone();
            let touched = touch(&mut working, &path, at_open);
            let was = self.get(id).map(|o| o.status);
            // Keep the state the walk changed (trailing level, resting, trigger).
            if let Some(order) = self.get_mut(id) {
                order.trail_stop = working.trail_stop;
                order.resting = working.resting;
            }
            if working.status == OrderStatus::Triggered && was != Some(OrderStatus::Triggered) {
                self.transition(id, OrderStatus::Triggered, bar.open_time, None);
            }
            let (price, maker) = match touched {
                Touch::Fill { price, maker } => (price, maker),
                Touch::None | Touch::Triggered => {
                    if tif == TimeInForce::Ioc || tif == TimeInForce::Fok {
                        let reason = format!(
                            "{}: not marketable on its first bar",
                            tif.as_str().to_uppercase()
                        );
                        self.transition(id, OrderStatus::Expired, bar.open_time, Some(reason));
                        self.settle_children(id, working.filled_quantity, bar.open_time);
                    }
                    continue;
                }
            };
            let remaining = working.remaining();
            let quantity = match volume_left {
                Some(left) => remaining.min(left.max(Decimal::ZERO)),
                None => remaining,
            };
            if tif == TimeInForce::Fok && first_bar && quantity < remaining {
                let reason =
                    format!("FOK: only {quantity} of {remaining} could fill on its first bar");
                self.transition(id, OrderStatus::Expired, bar.open_time, Some(reason));
                self.settle_children(id, Decimal::ZERO, bar.open_time);
                continue;
            }
            if quantity <= Decimal::ZERO {
                continue;
            }
            if let Some(left) = volume_left.as_mut() {
                *left -= quantity;
            }
            let executed = costs
                .price(working.side, price, quantity, bar.prices.volume, maker)
                .ok_or("decimal overflow pricing a fill")?;
            let fee = costs
                .fee(working.side, quantity, executed, maker, bar.open_time)
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
                self.settle_children(id, filled, fill_time);
            } else if tif == TimeInForce::Ioc {
                let filled = self.get(id).map(|o| o.filled_quantity).unwrap_or_default();
                self.transition(
                    id,
                    OrderStatus::Expired,
                    fill_time,
                    Some("IOC: the rest expired".into()),
                );
                self.settle_children(id, filled, fill_time);
            }
            if let Some(group) = oco {
                let siblings: Vec<OrderId> = self
                    .orders
                    .iter()
                    .filter(|o| o.oco_group == Some(group) && o.id != id && o.status.is_open())
                    .map(|o| o.id)
                    .collect();
                for sibling in siblings {
                    self.cancel(sibling, &format!("OCO: order {} filled", id.0), fill_time);
                }
            }
        }
        Ok(())
    }
}
