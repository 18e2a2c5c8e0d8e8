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
    /// Lowest and highest price PnL of the trade seen at a mark or fill (≤ 0 and ≥ 0).
    pub mae: Decimal,
    pub mfe: Decimal,
}

impl OpenTrade {
    /// Notes the trade's price PnL with the position valued at `price`: realized so far plus
    /// `quantity × price − cost_basis`. An amount too large for a Decimal is not noted (it
    /// would have failed the equity sum already).
    #[inline]
    pub fn observe(&mut self, quantity: Decimal, cost_basis: Decimal, price: Decimal) {
        let pnl = quantity
            .checked_mul(price)
            .and_then(|value| value.checked_sub(cost_basis))
            .and_then(|unrealized| unrealized.checked_add(self.realized));
        if let Some(pnl) = pnl {
            self.note(pnl);
        }
    }

    #[inline]
    pub fn note(&mut self, pnl: Decimal) {
        if pnl < self.mae {
            self.mae = pnl;
        } else if pnl > self.mfe {
            self.mfe = pnl;
        }
    }
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
