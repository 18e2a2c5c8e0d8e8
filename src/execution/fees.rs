use rust_decimal::Decimal;
use serde::Deserialize;

/// Commission on a fill: `max(rate × |notional|, minimum)`, all Decimal. Zero by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionModel {
    /// Fraction of the traded notional, e.g. `0.001` for 10 bp.
    #[serde(default)]
    pub rate: Decimal,
    /// Smallest commission charged on a fill.
    #[serde(default)]
    pub minimum: Decimal,
}

impl CommissionModel {
    /// The fee of a fill; `None` on overflow.
    pub fn fee(&self, quantity: Decimal, price: Decimal) -> Option<Decimal> {
        let notional = quantity.checked_mul(price)?.abs();
        let fee = notional.checked_mul(self.rate)?;
        Some(fee.max(self.minimum))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rate < Decimal::ZERO || self.minimum < Decimal::ZERO {
            return Err("commission rate and minimum must not be negative".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn fee_is_rate_times_notional_with_a_floor() {
        let model = CommissionModel {
            rate: dec!(0.001),
            minimum: dec!(1),
        };
        assert_eq!(model.fee(dec!(10), dec!(50)), Some(dec!(1)));
        assert_eq!(model.fee(dec!(100), dec!(50)), Some(dec!(5.000)));
        assert_eq!(
            CommissionModel::default().fee(dec!(3), dec!(2)),
            Some(dec!(0))
        );
    }
}
