//! The one call the matcher makes per fill: price it with slippage, charge its commission, and
//! itemize both. Built once per run, because a tiered schedule remembers the volume it saw.

use rust_decimal::Decimal;

use super::carry::CostBreakdown;
use super::commission::{CommissionSchedule, FeeInput, OrderFees};
use super::profile::BrokerProfile;
use super::slippage::{SlippageInput, SlippageModel, executed_price, slippage_cost};
use crate::model::TimestampNs;

/// A fill's price and costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PricedFill {
    /// Executed price: reference moved by slippage, clamped, rounded to the tick.
    pub price: Decimal,
    /// Commission, never negative.
    pub fee: Decimal,
    /// `|price − reference| × quantity`, the amount slippage cost (never negative).
    pub slippage: Decimal,
}

impl PricedFill {
    pub fn costs(&self) -> CostBreakdown {
        CostBreakdown {
            commission: self.fee,
            slippage: self.slippage,
            ..CostBreakdown::default()
        }
    }
}

/// A run's slippage model and commission schedule together.
#[derive(Debug)]
pub struct FillCosts {
    slippage: Box<dyn SlippageModel>,
    commission: CommissionSchedule,
}

impl FillCosts {
    /// Any slippage model (a user's own included: `never_favourable` still applies).
    pub fn new(slippage: Box<dyn SlippageModel>, commission: CommissionSchedule) -> Self {
        FillCosts {
            slippage,
            commission,
        }
    }

    /// The profile's models, with a fresh rolling volume for a tiered schedule.
    pub fn from_profile(profile: &BrokerProfile) -> Self {
        let mut commission = profile.commission.clone();
        commission.reset();
        FillCosts::new(profile.slippage_model(), commission)
    }

    /// Prices one fill at `time`; `tick` is the instrument's price increment when it has one,
    /// `order` the running fees of the fill's order (a fresh `OrderFees` for its first fill).
    /// `None` on overflow.
    pub fn price(
        &mut self,
        input: &SlippageInput,
        tick: Option<Decimal>,
        time: TimestampNs,
        order: &mut OrderFees,
    ) -> Option<PricedFill> {
        let price = executed_price(self.slippage.as_ref(), input, tick)?;
        let fill = FeeInput {
            quantity: input.quantity,
            price,
            side: input.side,
            is_maker: input.is_maker,
            time,
        };
        let fee = self.commission.order_fee(&fill, order)?;
        let slippage = slippage_cost(input.side, input.reference_price, price, input.quantity)?;
        Some(PricedFill {
            price,
            fee,
            slippage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::commission::PerShare;
    use crate::execution::slippage::FixedBps;
    use crate::model::OrderSide;
    use rust_decimal::dec;

    #[test]
    fn prices_and_itemizes_a_fill() {
        let mut costs = FillCosts::new(
            Box::new(FixedBps {
                bps: dec!(10),
                applies_to_makers: false,
            }),
            CommissionSchedule::PerShare(PerShare {
                rate: dec!(0.005),
                minimum: dec!(1),
                maximum_fraction_of_notional: Some(dec!(0.01)),
            }),
        );
        let input = SlippageInput {
            side: OrderSide::Buy,
            reference_price: dec!(20.004),
            quantity: dec!(1000),
            bar_volume: dec!(100000),
            is_maker: false,
        };
        // 20.004 × 1.001 = 20.024004 → tick 0.01 up → 20.03; fee 1000 × 0.005 = 5.
        let fill = costs
            .price(&input, Some(dec!(0.01)), 0, &mut OrderFees::default())
            .expect("fits");
        assert_eq!(fill.price, dec!(20.03));
        assert_eq!(fill.fee, dec!(5));
        assert_eq!(fill.slippage, dec!(26));
        let mut total = CostBreakdown::default();
        total.add(&fill.costs()).expect("fits");
        assert_eq!(total.total(), Some(dec!(31)));
    }

    #[test]
    fn a_profile_starts_with_an_empty_volume_window() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("config/brokers/binance_like.toml");
        let mut profile = BrokerProfile::from_path(&path).expect("loads");
        let big = FeeInput {
            quantity: dec!(100),
            price: dec!(100000),
            side: OrderSide::Buy,
            is_maker: true,
            time: 0,
        };
        // Push the profile's own schedule into VIP 2; a run built from it must not inherit that.
        profile.commission.fee(&big).expect("fits");
        let mut costs = FillCosts::from_profile(&profile);
        let input = SlippageInput {
            side: OrderSide::Buy,
            reference_price: dec!(100),
            quantity: dec!(1),
            bar_volume: dec!(0),
            is_maker: true,
        };
        let fill = costs
            .price(&input, None, 1, &mut OrderFees::default())
            .expect("fits");
        assert_eq!(fill.price, dec!(100));
        assert_eq!(fill.fee, dec!(0.1));
    }
}
