//! What the exchange allows for a symbol: tick size, lot size, minimum notional, margin.

use rust_decimal::Decimal;
use serde::Deserialize;

/// Trading rules of one symbol. Orders that break them are rejected with the rule named;
/// nothing is rounded for the algorithm.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Prices (limits, stops) must be multiples of this.
    #[serde(default)]
    pub tick_size: Option<Decimal>,
    /// Quantities must be multiples of this.
    #[serde(default)]
    pub lot_size: Option<Decimal>,
    /// Smallest order value (quantity × reference price).
    #[serde(default)]
    pub min_notional: Option<Decimal>,
    /// Share of a position's value that must be covered by equity: 1 = no leverage (a cash
    /// account), 0.5 = 2x. Shorts need it too.
    #[serde(default = "one")]
    pub margin: Decimal,
    /// Share of a position's value equity must keep covering at every bar close; below it
    /// the account gets a margin call. `None`: the broker profile's, else no check.
    #[serde(default)]
    pub maintenance_margin: Option<Decimal>,
    /// Annual stock-borrow rate of a short, accrued daily. `None`: the broker profile's.
    #[serde(default)]
    pub borrow_rate: Option<Decimal>,
    #[serde(default = "usd")]
    pub currency: String,
}

fn one() -> Decimal {
    Decimal::ONE
}

fn usd() -> String {
    "USD".to_string()
}

impl Default for Instrument {
    fn default() -> Self {
        Instrument {
            tick_size: None,
            lot_size: None,
            min_notional: None,
            margin: Decimal::ONE,
            maintenance_margin: None,
            borrow_rate: None,
            currency: usd(),
        }
    }
}

impl Instrument {
    /// Why `quantity` at `price` (the order's own price, if any) and `reference` (the price its
    /// value is judged at) break the rules, if they do.
    pub fn check(
        &self,
        quantity: Decimal,
        prices: &[Decimal],
        reference: Option<Decimal>,
    ) -> Result<(), String> {
        if let Some(lot) = self.lot_size.filter(|l| *l > Decimal::ZERO)
            && !(quantity % lot).is_zero()
        {
            return Err(format!(
                "quantity {quantity} is not a multiple of the lot size {lot}"
            ));
        }
        if let Some(tick) = self.tick_size.filter(|t| *t > Decimal::ZERO) {
            for price in prices {
                if !(*price % tick).is_zero() {
                    return Err(format!("price {price} is not on the tick size {tick}"));
                }
            }
        }
        for price in prices {
            if *price <= Decimal::ZERO {
                return Err(format!("price {price} must be positive"));
            }
        }
        if let (Some(minimum), Some(reference)) = (self.min_notional, reference) {
            let notional = quantity * reference;
            if notional < minimum {
                return Err(format!(
                    "order value {notional} is below the minimum notional {minimum}"
                ));
            }
        }
        Ok(())
    }

    pub fn validate(&self, symbol: &str) -> Result<(), String> {
        if self.margin <= Decimal::ZERO || self.margin > Decimal::ONE {
            return Err(format!(
                "instrument {symbol}: margin must be in (0, 1], got {}",
                self.margin
            ));
        }
        if let Some(maintenance) = self.maintenance_margin
            && (maintenance <= Decimal::ZERO || maintenance > self.margin)
        {
            return Err(format!(
                "instrument {symbol}: maintenance_margin must be in (0, margin = {}], got {maintenance}",
                self.margin
            ));
        }
        for (name, value) in [
            ("borrow_rate", self.borrow_rate),
            ("tick_size", self.tick_size),
            ("lot_size", self.lot_size),
            ("min_notional", self.min_notional),
        ] {
            if value.is_some_and(|v| v < Decimal::ZERO) {
                return Err(format!("instrument {symbol}: {name} must not be negative"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn breaches_are_named_never_rounded() {
        let i = Instrument {
            tick_size: Some(dec!(0.05)),
            lot_size: Some(dec!(10)),
            min_notional: Some(dec!(100)),
            ..Default::default()
        };
        assert!(i.check(dec!(20), &[dec!(10.05)], Some(dec!(10))).is_ok());
        assert_eq!(
            i.check(dec!(15), &[], None).unwrap_err(),
            "quantity 15 is not a multiple of the lot size 10"
        );
        assert_eq!(
            i.check(dec!(20), &[dec!(10.02)], None).unwrap_err(),
            "price 10.02 is not on the tick size 0.05"
        );
        assert_eq!(
            i.check(dec!(10), &[], Some(dec!(9))).unwrap_err(),
            "order value 90 is below the minimum notional 100"
        );
        assert!(
            Instrument {
                margin: dec!(0),
                ..Default::default()
            }
            .validate("X")
            .is_err()
        );
        let leveraged = Instrument {
            margin: dec!(0.5),
            maintenance_margin: Some(dec!(0.6)),
            ..Default::default()
        };
        assert!(
            leveraged
                .validate("X")
                .unwrap_err()
                .contains("maintenance_margin")
        );
        let free_borrow = Instrument {
            borrow_rate: Some(dec!(-0.01)),
            ..Default::default()
        };
        assert!(
            free_borrow
                .validate("X")
                .unwrap_err()
                .contains("borrow_rate")
        );
    }
}
