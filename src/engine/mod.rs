//! The clock step of ARCHITECTURE §2, shared state the algorithm reads, and the backtest loop.

pub mod actions;
pub mod adjust;
mod backtest;
pub mod carry;
pub mod cross_section;
pub mod external;
pub mod indicator_set;
pub mod margin;
pub mod schedule;
mod session;

pub use backtest::{
    Advanced, BacktestOptions, BacktestOutcome, Stop, Strategy, advance, react, run_backtest,
    run_backtest_into, step, warm_up,
};
pub use cross_section::CrossSection;
pub use indicator_set::IndicatorTiming;
pub use session::{ExecutionSettings, PreTradeCheck, Session, SessionCosts, SharedSession, lock};

/// Helpers shared by the engine's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use rust_decimal::Decimal;

    use super::Session;
    use crate::model::{Fill, OrderId, OrderSide, SymbolId};

    /// A market of `symbols` symbols `S0..`, one bar each (all prices 1) at time 0.
    pub fn one_bar_market(symbols: usize, interval_ns: i64) -> crate::market::Market {
        let one = || crate::data::Column::parse_texts(&["1"]).unwrap();
        let series = (0..symbols)
            .map(|i| crate::data::BarSeries {
                symbol: format!("S{i}"),
                source: std::path::PathBuf::from("x.csv"),
                time: vec![0i64].into(),
                open: one(),
                high: one(),
                low: one(),
                close: one(),
                volume: one(),
            })
            .collect();
        crate::market::Market::new(series, interval_ns, false).unwrap()
    }

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
