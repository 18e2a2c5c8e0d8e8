//! The clock step of ARCHITECTURE §2, shared state the algorithm reads, and the backtest loop.

mod backtest;
pub mod carry;
pub mod cross_section;
pub mod external;
pub mod indicator_set;
pub mod margin;
pub mod schedule;
mod session;

pub use backtest::{BacktestOptions, BacktestOutcome, Stop, Strategy, run_backtest};
pub use cross_section::CrossSection;
pub use indicator_set::IndicatorTiming;
pub use session::{ExecutionSettings, Session, SessionCosts, SharedSession, lock};

/// Helpers shared by the engine's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use rust_decimal::Decimal;

    use super::Session;
    use crate::model::{Fill, OrderId, OrderSide, SymbolId};

    /// Puts a position on the books directly (a fill at `price`, no fee) and marks it there.
    pub fn hold(s: &mut Session, symbol: u32, side: OrderSide, quantity: Decimal, price: Decimal) {
        let fill = Fill {
            order_id: OrderId(0),
            symbol: SymbolId(symbol),
            side,
            quantity,
            price,
            fee: Decimal::ZERO,
            slippage: Decimal::ZERO,
            time: 0,
        };
        s.ledger.apply_fill(&fill).unwrap();
        s.ledger.mark(SymbolId(symbol), price).unwrap();
    }
}
