//! The paper broker: the engine's matcher and costs fill its orders (a live paper session
//! trades exactly like a backtest); it journals what the engine did after each step.
//!
//! Its open orders are saved with every checkpoint exactly as the engine holds them, so a
//! session killed with orders open restarts with them (and fills them where an uninterrupted
//! session would) instead of losing them with the process.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Broker, News};
use crate::engine::{SharedSession, lock};
use crate::execution::OrderFees;
use crate::live::error::LiveError;
use crate::live::journal::{FillRecord, JournalError, OrderIntent, OrderUpdate};
use crate::live::recovery::{State, restore_ledger};
use crate::live::wall_ns;
use crate::model::{Fill, Order, OrderId, OrderStatus, SymbolId};

/// An order this broker placed, as last journaled.
struct Placed {
    client_id: String,
    status: OrderStatus,
    filled: Decimal,
    fills: u32,
    /// Trade ids of an order taken back from an earlier run carry this run's prefix, so they
    /// never repeat one its first run journaled.
    trade_prefix: String,
}

/// An open paper order as a checkpoint saves it: the engine's order (ids are this process's;
/// the symbol and a bracket entry are saved by name) and a broker profile's running fees.
#[derive(Serialize, Deserialize)]
struct SavedOrder {
    symbol: String,
    /// The client order id of the bracket entry this exit waits for.
    parent: Option<String>,
    order: Order,
    fees_so_far: Option<OrderFees>,
}

#[derive(Default)]
pub struct PaperBroker {
    placed: HashMap<OrderId, Placed>,
    /// Orders taken back from the last checkpoint: client id → this process's engine id.
    restored: Vec<(String, OrderId)>,
    /// Always empty: a paper book is whole from the journal's fills.
    unseeded: BTreeMap<String, Decimal>,
}

impl PaperBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last checkpoint's open orders back into the engine's book, in the order they were
    /// placed, each as it stood (fills, a trailing stop's level, a trigger, its OCO group and
    /// bracket entry). The algorithm's saved `Order` handles re-bind to them by client id.
    fn restore_orders(
        &mut self,
        saved: Vec<(String, String)>,
        run_id: i64,
        session: &SharedSession,
    ) -> Result<usize, LiveError> {
        let mut s = lock(session);
        let mut ids: HashMap<String, OrderId> = HashMap::new();
        let mut groups: HashMap<u64, u64> = HashMap::new();
        for (client_id, text) in &saved {
            let corrupt = |why: String| {
                JournalError::Corrupt(format!("the saved paper order {client_id}: {why}"))
            };
            let SavedOrder {
                symbol,
                parent,
                mut order,
                fees_so_far,
            } = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
            order.symbol =
                s.market
                    .symbol_id(&symbol)
                    .ok_or_else(|| LiveError::UnlistedSymbol {
                        symbol: symbol.clone(),
                        what: format!("an open paper order ({client_id})"),
                    })?;
            // An entry no longer open has filled: its exits are active and wait for nothing.
            order.parent = parent.and_then(|p| ids.get(&p).copied());
            order.oco_group = order
                .oco_group
                .map(|g| *groups.entry(g).or_insert_with(|| s.orders.new_group()));
            let (status, filled) = (order.status, order.filled_quantity);
            let id = s.orders.restore(order);
            if let (Some(fees), Some(costs)) = (fees_so_far, s.profile_costs.as_mut()) {
                costs.order_fees.insert(id, fees);
            }
            ids.insert(client_id.clone(), id);
            self.restored.push((client_id.clone(), id));
            self.placed.insert(
                id,
                Placed {
                    client_id: client_id.clone(),
                    status,
                    filled,
                    fills: 0,
                    trade_prefix: format!("r{run_id}-"),
                },
            );
        }
        Ok(saved.len())
    }

    /// The paper book a session continues with: `initial` (genesis) cash, the journal's
    /// `fills` replayed, `transferred` cash added (a book's rebalancing moved it between its
    /// strategies), and the last checkpoint's open `orders` taken back.
    pub fn open_ledger(
        &mut self,
        run_id: i64,
        session: &SharedSession,
        initial: Decimal,
        fills: &[(String, String, FillRecord)],
        transferred: Decimal,
        orders: Vec<(String, String)>,
    ) -> Result<News, LiveError> {
        let mut s = lock(session);
        s.ledger = restore_ledger(&s.market, initial, fills)?;
        if !transferred.is_zero() {
            s.ledger.adjust_cash(transferred)?;
        }
        let mut news = News::default();
        if !fills.is_empty() {
            news.notices.push(format!(
                "restored the paper book from {} journaled fills: cash {}",
                fills.len(),
                s.ledger.cash()
            ));
        }
        drop(s);
        match self.restore_orders(orders, run_id, session)? {
            0 => {}
            1 => news
                .notices
                .push("1 paper order open at the last checkpoint is open again".into()),
            n => news.notices.push(format!(
                "{n} paper orders open at the last checkpoint are open again"
            )),
        }
        Ok(news)
    }
}

impl Broker for PaperBroker {
    /// Earlier sessions' fills into the ledger: the paper book continues where it stopped (the
    /// algorithm sees each position's real cost), the trades they closed stay theirs.
    fn open_book(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError> {
        let fills = std::mem::take(&mut state.earlier_fills);
        let orders = std::mem::take(&mut state.paper_orders);
        let initial = state
            .initial_cash
            .unwrap_or_else(|| lock(session).ledger.cash());
        self.open_ledger(
            state.run_id,
            session,
            initial,
            &fills,
            Decimal::ZERO,
            orders,
        )
    }

    fn unseeded(&self) -> &BTreeMap<String, Decimal> {
        &self.unseeded
    }

    fn on_bar(&mut self, _: &SharedSession, _: &[(SymbolId, Decimal)]) -> Result<(), LiveError> {
        Ok(())
    }

    fn refuses_linked(&self) -> Option<&'static str> {
        None
    }

    fn sends_irrevocably(&self) -> bool {
        false
    }

    /// The engine holds the order already: acknowledged at once.
    fn send(
        &mut self,
        state: &mut State,
        _: &SharedSession,
        order: OrderId,
        intent: &OrderIntent,
        _: Option<Decimal>,
    ) -> Result<(), LiveError> {
        let wall = wall_ns();
        let exchange_id = format!("paper-{}-{}", state.run_id, order.0);
        state
            .journal
            .record_ack(&intent.client_order_id, &exchange_id, wall)?;
        let _ = state.audit.ack(wall, &intent.client_order_id, &exchange_id);
        self.placed.insert(
            order,
            Placed {
                client_id: intent.client_order_id.clone(),
                status: OrderStatus::Accepted,
                filled: Decimal::ZERO,
                fills: 0,
                trade_prefix: String::new(),
            },
        );
        Ok(())
    }

    /// The step's fills of this broker's orders, then every status that changed.
    fn after_step(
        &mut self,
        state: &mut State,
        session: &SharedSession,
        fills: &[Fill],
    ) -> Result<bool, LiveError> {
        let wall = wall_ns();
        let mut active = false;
        for fill in fills {
            let Some(placed) = self.placed.get_mut(&fill.order_id) else {
                continue;
            };
            placed.fills += 1;
            let record = FillRecord {
                client_order_id: placed.client_id.clone(),
                trade_id: format!(
                    "{}{}-{}",
                    placed.trade_prefix, fill.order_id.0, placed.fills
                ),
                quantity: fill.quantity,
                price: fill.price,
                fee: fill.fee,
                fee_asset: None,
                time: fill.time,
            };
            if state.journal.record_fill(&record)? {
                let _ = state.audit.fill(wall, &record);
            }
            active = true;
        }
        let s = lock(session);
        let mut closed = Vec::new();
        for (id, placed) in self.placed.iter_mut() {
            let Some(order) = s.orders.get(*id) else {
                continue;
            };
            if (order.status, order.filled_quantity) == (placed.status, placed.filled) {
                continue;
            }
            (placed.status, placed.filled) = (order.status, order.filled_quantity);
            active = true;
            state.record_status(&OrderUpdate {
                client_order_id: placed.client_id.clone(),
                time: wall,
                status: order.status,
                filled_quantity: order.filled_quantity,
                exchange_id: None,
                reason: order.reason.clone(),
            })?;
            if !order.status.is_open() {
                closed.push(*id);
            }
        }
        for id in closed {
            self.placed.remove(&id);
        }
        Ok(active)
    }

    fn poll_due(&self) -> bool {
        false
    }

    fn poll(&mut self, _: &mut State, _: &SharedSession) -> Result<News, LiveError> {
        Ok(News::default())
    }

    /// The orders taken back at the start (the session knows the ones it placed itself).
    fn client_ids(&self) -> Vec<(String, OrderId)> {
        self.restored.clone()
    }

    fn open_orders_to_save(
        &self,
        session: &SharedSession,
    ) -> Result<Option<Vec<(String, String)>>, LiveError> {
        let s = lock(session);
        let mut open: Vec<(&OrderId, &Placed)> = self
            .placed
            .iter()
            .filter(|(id, _)| s.orders.get(**id).is_some_and(|o| o.status.is_open()))
            .collect();
        open.sort_by_key(|(id, _)| **id);
        let mut saved = Vec::with_capacity(open.len());
        for (id, placed) in open {
            let Some(order) = s.orders.get(*id) else {
                continue;
            };
            let record = SavedOrder {
                symbol: s.market.symbol_name(order.symbol).to_string(),
                parent: order
                    .parent
                    .and_then(|p| self.placed.get(&p))
                    .map(|p| p.client_id.clone()),
                order: order.clone(),
                fees_so_far: s
                    .profile_costs
                    .as_ref()
                    .and_then(|c| c.order_fees.get(id).copied()),
            };
            let text = serde_json::to_string(&record).map_err(|e| {
                JournalError::Corrupt(format!(
                    "cannot serialize paper order {}: {e}",
                    placed.client_id
                ))
            })?;
            saved.push((placed.client_id.clone(), text));
        }
        Ok(Some(saved))
    }

    /// A paper session that stops (rather than dies) cancels its open orders (journaled so by
    /// the session's last [`Broker::after_step`]).
    fn close(
        &mut self,
        _: &mut State,
        session: &SharedSession,
    ) -> Result<Option<String>, LiveError> {
        let mut s = lock(session);
        let now = s.now;
        s.orders.cancel_all("the paper session ended", now);
        Ok(None)
    }
}
