//! A slippage model supplied by the host (the user's Python `SlippageModel`). The engine asks
//! it for an adverse adjustment per unit and enforces the rules itself: never favourable
//! (a negative answer is clamped to zero, with one warning per run), rounded to the tick
//! against the trader, all in Decimal.

use rust_decimal::Decimal;

use crate::error::AlgorithmError;
use crate::execution::{BarPrices, round_to_tick};
use crate::model::{Order, OrderSide, SymbolId, TimestampNs};

/// What the model is told about one fill.
#[derive(Debug, Clone)]
pub struct SlippageQuery<'a> {
    pub order: &'a Order,
    pub symbol: SymbolId,
    /// This fill's quantity (a partial fill's part), positive.
    pub quantity: Decimal,
    /// The path price the order met, before slippage.
    pub reference: Decimal,
    /// A resting limit's fill.
    pub maker: bool,
    pub bar: BarPrices,
    pub bar_open_time: TimestampNs,
}

/// The host's model. Called with the session locked: it must not call back into the engine.
pub trait ExternalSlippage: Send + std::fmt::Debug {
    /// The adverse price adjustment per unit for this fill (expected ≥ 0).
    fn adjustment(&mut self, query: &SlippageQuery<'_>) -> Result<Decimal, Box<AlgorithmError>>;
    /// For messages: `module.Class`.
    fn name(&self) -> String;
}

/// The executed price from a model's answer: a negative adjustment becomes zero (the returned
/// flag says it happened), the price moves against the trader and is rounded to `tick` the
/// same way. `None` on overflow.
pub fn adjusted_price(
    side: OrderSide,
    reference: Decimal,
    adjustment: Decimal,
    tick: Option<Decimal>,
) -> Option<(Decimal, bool)> {
    let clamped = adjustment < Decimal::ZERO;
    let adjustment = adjustment.max(Decimal::ZERO);
    let price = match side {
        OrderSide::Buy => reference.checked_add(adjustment)?,
        OrderSide::Sell => reference.checked_sub(adjustment)?,
    };
    let price = match tick {
        Some(tick) => round_to_tick(price, tick, side)?,
        None => price,
    };
    Some((price, clamped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn answers_move_the_price_against_the_trader_only() {
        let buy = adjusted_price(OrderSide::Buy, dec!(10), dec!(0.013), Some(dec!(0.01)));
        assert_eq!(buy, Some((dec!(10.02), false)));
        let sell = adjusted_price(OrderSide::Sell, dec!(10), dec!(0.013), Some(dec!(0.01)));
        assert_eq!(sell, Some((dec!(9.98), false)));
        // Trying to improve the price is clamped to the reference and reported.
        let better = adjusted_price(OrderSide::Buy, dec!(10), dec!(-0.5), None);
        assert_eq!(better, Some((dec!(10), true)));
        let better = adjusted_price(OrderSide::Sell, dec!(10), dec!(-0.5), Some(dec!(0.01)));
        assert_eq!(better, Some((dec!(10), true)));
        assert_eq!(
            adjusted_price(OrderSide::Buy, Decimal::MAX, dec!(1), None),
            None
        );
    }
}
