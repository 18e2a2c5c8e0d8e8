use rust_decimal::Decimal;

use super::{OrderId, OrderSide, SymbolId, TimestampNs};

/// One execution. `value()` is exact: price × quantity in Decimal.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub order_id: OrderId,
    pub symbol: SymbolId,
    pub side: OrderSide,
    /// Positive.
    pub quantity: Decimal,
    pub price: Decimal,
    /// Never negative.
    pub fee: Decimal,
    /// What slippage cost on this fill: `|price − reference| × quantity` against the path
    /// price the order met, never negative. Already in `price`; kept for the cost report.
    pub slippage: Decimal,
    pub time: TimestampNs,
}

impl Fill {
    /// Signed position change: +quantity for a buy, -quantity for a sell.
    pub fn signed_quantity(&self) -> Decimal {
        self.side.sign() * self.quantity
    }
}
