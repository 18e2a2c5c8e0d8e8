use rust_decimal::Decimal;

use crate::model::TimestampNs;

/// One symbol's holding. `cost_basis` is the signed Σ quantity × price of the open quantity
/// (negative for a short), so `quantity × mark − cost_basis` is the unrealized PnL with no
/// division involved; the average price is derived from it only for display.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    pub quantity: Decimal,
    pub cost_basis: Decimal,
    pub realized_pnl: Decimal,
    /// Last close seen for the symbol (the mark); zero before its first bar.
    pub mark: Decimal,
    pub(crate) open_trade: Option<OpenTrade>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenTrade {
    pub entry_time: TimestampNs,
    pub direction: i8,
    pub max_quantity: Decimal,
    pub realized: Decimal,
    pub fees: Decimal,
}

impl Position {
    pub fn is_flat(&self) -> bool {
        self.quantity.is_zero()
    }

    /// Average entry price of the open quantity; `None` when flat.
    pub fn average_price(&self) -> Option<Decimal> {
        if self.quantity.is_zero() {
            None
        } else {
            self.cost_basis.checked_div(self.quantity)
        }
    }

    /// `quantity × mark − cost_basis`, or `None` on overflow.
    pub fn unrealized_pnl(&self) -> Option<Decimal> {
        self.quantity
            .checked_mul(self.mark)?
            .checked_sub(self.cost_basis)
    }

    /// `quantity × mark`, or `None` on overflow.
    pub fn market_value(&self) -> Option<Decimal> {
        self.quantity.checked_mul(self.mark)
    }
}
