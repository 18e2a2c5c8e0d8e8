//! The paper broker: the engine's matcher and costs fill its orders (a live paper session
//! trades exactly like a backtest); it journals what the engine did after each step.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use super::{Broker, News};
use crate::engine::{SharedSession, lock};
use crate::live::error::LiveError;
use crate::live::journal::{FillRecord, OrderIntent, OrderUpdate};
use crate::live::recovery::{State, restore_ledger};
use crate::live::wall_ns;
use crate::model::{Fill, OrderId, OrderStatus, SymbolId};

/// An order this broker placed, as last journaled.
struct Placed {
    client_id: String,
    status: OrderStatus,
    filled: Decimal,
    fills: u32,
}

#[derive(Default)]
pub struct PaperBroker {
    placed: HashMap<OrderId, Placed>,
    /// Always empty: a paper book is whole from the journal's fills.
    unseeded: BTreeMap<String, Decimal>,
}

impl PaperBroker {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Broker for PaperBroker {
    /// Earlier sessions' fills into the ledger: the paper book continues where it stopped (the
    /// algorithm sees each position's real cost), the trades they closed stay theirs.
    fn open_book(&mut self, state: &mut State, session: &SharedSession) -> Result<News, LiveError> {
        let fills = std::mem::take(&mut state.earlier_fills);
        let mut s = lock(session);
        let initial = state.initial_cash.unwrap_or_else(|| s.ledger.cash());
        s.ledger = restore_ledger(&s.market, initial, &fills)?;
        let mut news = News::default();
        if !fills.is_empty() {
            news.notices.push(format!(
                "restored the paper book from {} journaled fills: cash {}",
                fills.len(),
                s.ledger.cash()
            ));
        }
        Ok(news)
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
                trade_id: format!("{}-{}", fill.order_id.0, placed.fills),
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

    fn client_ids(&self) -> Vec<(String, OrderId)> {
        Vec::new()
    }

    /// A paper order cannot outlive its session: every open one is cancelled (and journaled
    /// so by the session's last [`Broker::after_step`]).
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
