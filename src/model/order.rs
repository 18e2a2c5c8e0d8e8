//! Orders as the engine tracks them. Issue-level scope today: market orders.

use rust_decimal::Decimal;
use std::fmt;

use super::{SymbolId, TimestampNs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderSide {
    Buy,
    Sell,
}

impl OrderSide {
    /// +1 for buys, -1 for sells: the sign a fill gives the position change.
    pub fn sign(self) -> Decimal {
        match self {
            OrderSide::Buy => Decimal::ONE,
            OrderSide::Sell => Decimal::NEGATIVE_ONE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderSide::Buy => "buy",
            OrderSide::Sell => "sell",
        }
    }
}

impl fmt::Display for OrderSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Accepted at the tick it was placed; waits for the next bar of its symbol.
    Accepted,
    Filled,
    Cancelled,
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Accepted => "accepted",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::Accepted)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub symbol: SymbolId,
    pub side: OrderSide,
    /// Always positive; the side carries the direction.
    pub quantity: Decimal,
    /// `ctx.time` of the tick that placed it; it can only match bars that open at or after this.
    pub submitted_at: TimestampNs,
    pub status: OrderStatus,
    pub filled_at: Option<TimestampNs>,
    pub fill_price: Option<Decimal>,
    /// Why the order ended without a fill (cancelled at the end of data, rejected, ...).
    pub reason: Option<String>,
}
