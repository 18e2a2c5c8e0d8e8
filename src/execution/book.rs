use rust_decimal::Decimal;

use super::CommissionModel;
use crate::model::{Fill, Order, OrderId, OrderSide, OrderStatus, SymbolId, TimestampNs};

/// Why an order was refused at submission; the algorithm receives it as an `OrderError`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderRejected {
    #[error("quantity must be positive, got {0}")]
    NonPositiveQuantity(Decimal),
    #[error("unknown symbol `{0}`")]
    UnknownSymbol(String),
}

/// Every order of a run, by id, plus the open ones of each symbol.
#[derive(Debug, Default)]
pub struct OrderBook {
    orders: Vec<Order>,
    open_by_symbol: Vec<Vec<OrderId>>,
}

impl OrderBook {
    pub fn new(symbol_count: usize) -> Self {
        OrderBook {
            orders: Vec::new(),
            open_by_symbol: vec![Vec::new(); symbol_count],
        }
    }

    /// Accepts a market order at `now`; it can fill from the next bar of its symbol that opens
    /// at or after `now`.
    pub fn submit_market(
        &mut self,
        symbol: SymbolId,
        side: OrderSide,
        quantity: Decimal,
        now: TimestampNs,
    ) -> Result<OrderId, OrderRejected> {
        if quantity <= Decimal::ZERO {
            return Err(OrderRejected::NonPositiveQuantity(quantity));
        }
        let id = OrderId(self.orders.len() as u64 + 1);
        self.orders.push(Order {
            id,
            symbol,
            side,
            quantity,
            submitted_at: now,
            status: OrderStatus::Accepted,
            filled_at: None,
            fill_price: None,
            reason: None,
        });
        self.open_by_symbol[symbol.index()].push(id);
        Ok(id)
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

    pub fn has_open(&self, symbol: SymbolId) -> bool {
        !self.open_by_symbol[symbol.index()].is_empty()
    }

    pub fn open_orders(&self, symbol: SymbolId) -> impl Iterator<Item = &Order> {
        self.open_by_symbol[symbol.index()]
            .iter()
            .filter_map(|id| self.get(*id))
    }

    /// Cancels an open order; returns false if it was not open.
    pub fn cancel(&mut self, id: OrderId, reason: &str) -> bool {
        let Some(order) = self.get_mut(id) else {
            return false;
        };
        if !order.status.is_open() {
            return false;
        }
        order.status = OrderStatus::Cancelled;
        order.reason = Some(reason.to_string());
        let symbol = order.symbol;
        self.open_by_symbol[symbol.index()].retain(|open| *open != id);
        true
    }

    pub fn cancel_all(&mut self, reason: &str) {
        let open: Vec<OrderId> = self.open_by_symbol.iter().flatten().copied().collect();
        for id in open {
            self.cancel(id, reason);
        }
    }

    /// Fills the open market orders of `symbol` at the open of a bar that opens at `bar_open`.
    /// Orders submitted after the bar opened wait for the next one: a fill price is never
    /// taken from before the decision.
    pub fn match_bar(
        &mut self,
        symbol: SymbolId,
        bar_open: TimestampNs,
        open_price: Decimal,
        commission: &CommissionModel,
        fills: &mut Vec<Fill>,
    ) -> Result<(), &'static str> {
        let open = std::mem::take(&mut self.open_by_symbol[symbol.index()]);
        let mut still_open = Vec::new();
        for id in open {
            let Some(order) = self.get_mut(id) else {
                continue;
            };
            if order.submitted_at > bar_open {
                still_open.push(id);
                continue;
            }
            let fee = commission
                .fee(order.quantity, open_price)
                .ok_or("decimal overflow computing a commission")?;
            order.status = OrderStatus::Filled;
            order.filled_at = Some(bar_open);
            order.fill_price = Some(open_price);
            fills.push(Fill {
                order_id: id,
                symbol,
                side: order.side,
                quantity: order.quantity,
                price: open_price,
                fee,
                time: bar_open,
            });
        }
        self.open_by_symbol[symbol.index()] = still_open;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn market_order_fills_at_the_open_of_a_bar_that_opens_after_it() {
        let mut book = OrderBook::new(1);
        let id = book
            .submit_market(SymbolId(0), OrderSide::Buy, dec!(2), 100)
            .unwrap();
        let mut fills = Vec::new();
        // A bar that opened before the decision is not used.
        book.match_bar(
            SymbolId(0),
            40,
            dec!(9),
            &CommissionModel::default(),
            &mut fills,
        )
        .unwrap();
        assert!(fills.is_empty());
        book.match_bar(
            SymbolId(0),
            100,
            dec!(10.5),
            &CommissionModel::default(),
            &mut fills,
        )
        .unwrap();
        assert_eq!(fills.len(), 1);
        assert_eq!(fills[0].price, dec!(10.5));
        assert_eq!(fills[0].time, 100);
        let order = book.get(id).unwrap();
        assert_eq!(order.status, OrderStatus::Filled);
        assert!(!book.has_open(SymbolId(0)));
    }

    #[test]
    fn rejects_non_positive_quantities_and_cancels() {
        let mut book = OrderBook::new(1);
        assert_eq!(
            book.submit_market(SymbolId(0), OrderSide::Sell, dec!(0), 0),
            Err(OrderRejected::NonPositiveQuantity(dec!(0)))
        );
        let id = book
            .submit_market(SymbolId(0), OrderSide::Sell, dec!(1), 0)
            .unwrap();
        assert!(book.cancel(id, "user"));
        assert!(!book.cancel(id, "again"));
        assert_eq!(book.get(id).unwrap().status, OrderStatus::Cancelled);
        assert!(book.get(OrderId(0)).is_none());
    }
}
