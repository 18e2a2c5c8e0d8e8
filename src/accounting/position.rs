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
    /// Lowest and highest price PnL of the trade seen over a bar's range or at a fill (≤ 0
    /// and ≥ 0).
    pub mae: Decimal,
    pub mfe: Decimal,
    /// Lowest and highest price traded since the last fill (bar lows and highs, marks). Between
    /// fills the quantity and cost basis are fixed, so the PnL is monotonic in the price and
    /// its extremes are at these two: a bar costs two comparisons, the PnL is worked out at
    /// the next fill.
    pub low: Decimal,
    pub high: Decimal,
}

impl OpenTrade {
    /// The range `[low, high]` a bar traded over while the position was open.
    #[inline]
    pub fn seen(&mut self, low: Decimal, high: Decimal) {
        if low < self.low {
            self.low = low;
        }
        if high > self.high {
            self.high = high;
        }
    }

    /// Notes the PnL at the marks since the last fill, with the position as it was over them;
    /// called before a fill changes the position.
    pub fn flush(&mut self, quantity: Decimal, cost_basis: Decimal) {
        self.observe(quantity, cost_basis, self.low);
        self.observe(quantity, cost_basis, self.high);
    }

    /// Notes the trade's price PnL with the position valued at `price` and starts a new
    /// stretch of marks there: realized so far plus `quantity × price − cost_basis`. An amount
    /// too large for a Decimal is not noted (it would have failed the equity sum already).
    pub fn observe_fill(&mut self, quantity: Decimal, cost_basis: Decimal, price: Decimal) {
        self.observe(quantity, cost_basis, price);
        self.low = price;
        self.high = price;
    }

    fn observe(&mut self, quantity: Decimal, cost_basis: Decimal, price: Decimal) {
        let pnl = quantity
            .checked_mul(price)
            .and_then(|value| value.checked_sub(cost_basis))
            .and_then(|unrealized| unrealized.checked_add(self.realized));
        if let Some(pnl) = pnl {
            self.note(pnl);
        }
    }

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
