//! Costs of holding positions rather than trading them: stock borrow on shorts, interest on
//! borrowed cash, and the margin an account must keep. Pure functions over Decimal; the
//! engine decides when to call them (once per day for the accruals, at submission for margin).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::OrderSide;

/// How many days an annual rate is spread over: money-market convention (USD, EUR) is 360,
/// GBP and most crypto venues use 365.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u16")]
pub enum DayCount {
    #[default]
    Act360,
    Act365,
}

impl DayCount {
    pub fn days_per_year(self) -> Decimal {
        match self {
            DayCount::Act360 => Decimal::from(360),
            DayCount::Act365 => Decimal::from(365),
        }
    }
}

impl TryFrom<u16> for DayCount {
    type Error = String;

    fn try_from(days: u16) -> Result<Self, String> {
        match days {
            360 => Ok(DayCount::Act360),
            365 => Ok(DayCount::Act365),
            other => Err(format!("day-count basis must be 360 or 365, got {other}")),
        }
    }
}

/// `amount × annual_rate × days / basis`, multiplied out before the one division so the
/// result keeps every digit Decimal can hold. `None` on overflow.
fn accrue(amount: Decimal, annual_rate: Decimal, days: u32, basis: DayCount) -> Option<Decimal> {
    amount
        .checked_mul(annual_rate)?
        .checked_mul(Decimal::from(days))?
        .checked_div(basis.days_per_year())
}

/// Stock-borrow fee for holding a short of value `short_notional` (either sign; its size is
/// used) for `days` at `annual_rate`. Never negative for a non-negative rate.
pub fn borrow_cost(
    short_notional: Decimal,
    annual_rate: Decimal,
    days: u32,
    basis: DayCount,
) -> Option<Decimal> {
    accrue(short_notional.abs(), annual_rate, days, basis)
}

/// Interest on `borrowed_amount` (its size) for `days` at `annual_rate`: the cost of a debit
/// cash balance that finances a leveraged long.
pub fn financing(
    borrowed_amount: Decimal,
    annual_rate: Decimal,
    days: u32,
    basis: DayCount,
) -> Option<Decimal> {
    accrue(borrowed_amount.abs(), annual_rate, days, basis)
}

/// Interest terms on the account's cash balance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinancingTerms {
    /// Annual rate paid on a negative (borrowed) cash balance.
    #[serde(default)]
    pub debit_annual_rate: Decimal,
    /// Annual rate received on a positive balance; zero (the default) means idle cash earns
    /// nothing, which is the conservative choice for a backtest.
    #[serde(default)]
    pub credit_annual_rate: Decimal,
    #[serde(default)]
    pub basis: DayCount,
}

impl FinancingTerms {
    /// The signed financing cost of holding `cash_balance` for `days`: positive (a cost) on a
    /// debit balance, negative (income) on a credit balance when `credit_annual_rate` is set.
    pub fn accrue(&self, cash_balance: Decimal, days: u32) -> Option<Decimal> {
        if cash_balance < Decimal::ZERO {
            financing(cash_balance, self.debit_annual_rate, days, self.basis)
        } else {
            Some(-financing(
                cash_balance,
                self.credit_annual_rate,
                days,
                self.basis,
            )?)
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.debit_annual_rate < Decimal::ZERO || self.credit_annual_rate < Decimal::ZERO {
            return Err("financing rates must not be negative".into());
        }
        Ok(())
    }
}

fn one() -> Decimal {
    Decimal::ONE
}

fn yes() -> bool {
    true
}

/// How much of a position's value the account's equity must cover. `1` is a cash account
/// (no leverage), `0.5` allows 2× (Reg T initial margin), `0.1` allows 10×.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarginTerms {
    #[serde(default = "one")]
    pub initial_long: Decimal,
    #[serde(default = "one")]
    pub initial_short: Decimal,
    /// Below these the account would get a margin call; the initial fractions when absent.
    #[serde(default)]
    pub maintenance_long: Option<Decimal>,
    #[serde(default)]
    pub maintenance_short: Option<Decimal>,
    /// Spot crypto accounts cannot sell what they do not hold.
    #[serde(default = "yes")]
    pub allow_shorts: bool,
}

impl Default for MarginTerms {
    /// A cash account that may short against full collateral.
    fn default() -> Self {
        MarginTerms {
            initial_long: Decimal::ONE,
            initial_short: Decimal::ONE,
            maintenance_long: None,
            maintenance_short: None,
            allow_shorts: true,
        }
    }
}

impl MarginTerms {
    pub fn validate(&self) -> Result<(), String> {
        let fractions = [
            ("margin.initial_long", Some(self.initial_long)),
            ("margin.initial_short", Some(self.initial_short)),
            ("margin.maintenance_long", self.maintenance_long),
            ("margin.maintenance_short", self.maintenance_short),
        ];
        for (key, value) in fractions {
            if let Some(value) = value
                && (value <= Decimal::ZERO || value > Decimal::TEN)
            {
                return Err(format!("{key} must be above 0 and at most 10, got {value}"));
            }
        }
        Ok(())
    }

    /// Requirement of one position of `quantity` (signed) at `price`, at the initial level.
    pub fn initial(&self, quantity: Decimal, price: Decimal) -> Option<Decimal> {
        let fraction = if quantity < Decimal::ZERO {
            self.initial_short
        } else {
            self.initial_long
        };
        quantity.checked_mul(price)?.abs().checked_mul(fraction)
    }

    /// Requirement of one position at the maintenance level.
    pub fn maintenance(&self, quantity: Decimal, price: Decimal) -> Option<Decimal> {
        let fraction = if quantity < Decimal::ZERO {
            self.maintenance_short.unwrap_or(self.initial_short)
        } else {
            self.maintenance_long.unwrap_or(self.initial_long)
        };
        quantity.checked_mul(price)?.abs().checked_mul(fraction)
    }
}

/// Initial margin of a set of positions, each `(signed quantity, mark price)`.
pub fn margin_requirement(
    positions: impl IntoIterator<Item = (Decimal, Decimal)>,
    terms: &MarginTerms,
) -> Option<Decimal> {
    positions
        .into_iter()
        .try_fold(Decimal::ZERO, |sum, (q, p)| {
            sum.checked_add(terms.initial(q, p)?)
        })
}

/// Maintenance margin of a set of positions, each `(signed quantity, mark price)`.
pub fn maintenance_requirement(
    positions: impl IntoIterator<Item = (Decimal, Decimal)>,
    terms: &MarginTerms,
) -> Option<Decimal> {
    positions
        .into_iter()
        .try_fold(Decimal::ZERO, |sum, (q, p)| {
            sum.checked_add(terms.maintenance(q, p)?)
        })
}

/// An order as the margin check sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarginOrder {
    pub side: OrderSide,
    /// Positive.
    pub quantity: Decimal,
    /// The price the order is expected to fill at (the last mark for a market order).
    pub price: Decimal,
    /// The account's current quantity in the symbol (signed), so that an order that only
    /// reduces a position is never refused.
    pub position_quantity: Decimal,
}

impl MarginOrder {
    /// How much the order changes the initial requirement of its symbol; negative when it
    /// reduces the position.
    pub fn added_requirement(&self, terms: &MarginTerms) -> Option<Decimal> {
        let after = self
            .position_quantity
            .checked_add(self.side.sign().checked_mul(self.quantity.abs())?)?;
        terms
            .initial(after, self.price)?
            .checked_sub(terms.initial(self.position_quantity, self.price)?)
    }
}

/// Whether the account can afford `order`: its equity must cover the current initial
/// requirement plus what the order adds. Orders that reduce exposure always pass. The error
/// reads like "buy 100 at 50 needs 5,000.00 of margin, 1,234.56 available".
pub fn check_buying_power(
    equity: Decimal,
    current_requirement: Decimal,
    order: &MarginOrder,
    terms: &MarginTerms,
) -> Result<(), String> {
    let overflow = || "decimal overflow while checking margin".to_string();
    let after = order
        .position_quantity
        .checked_add(
            order
                .side
                .sign()
                .checked_mul(order.quantity.abs())
                .ok_or_else(overflow)?,
        )
        .ok_or_else(overflow)?;
    if !terms.allow_shorts && after < Decimal::ZERO {
        return Err(format!(
            "{} {} would leave a short of {} and this account cannot short",
            order.side,
            order.quantity,
            after.abs()
        ));
    }
    let added = order.added_requirement(terms).ok_or_else(overflow)?;
    if added <= Decimal::ZERO {
        return Ok(());
    }
    let available = equity
        .checked_sub(current_requirement)
        .ok_or_else(overflow)?;
    if added > available {
        return Err(format!(
            "{} {} at {} needs {} of margin, {} available",
            order.side,
            order.quantity,
            order.price,
            format_amount(added),
            format_amount(available.max(Decimal::ZERO))
        ));
    }
    Ok(())
}

/// `1234.567` → `"1,234.57"`: an amount for a message to the user (display only).
pub fn format_amount(amount: Decimal) -> String {
    let rounded =
        amount.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let text = format!("{:.2}", rounded.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "00"));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if rounded < Decimal::ZERO { "-" } else { "" };
    format!("{sign}{grouped}.{fraction}")
}

/// Every cost of a run, itemized for the results. Commission, slippage and borrow are never
/// negative; financing is negative when credit interest exceeded debit interest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CostBreakdown {
    pub commission: Decimal,
    pub slippage: Decimal,
    pub borrow: Decimal,
    pub financing: Decimal,
}

impl CostBreakdown {
    /// Adds `other` item by item; `None` (and `self` unchanged) on overflow.
    pub fn add(&mut self, other: &CostBreakdown) -> Option<()> {
        let sum = CostBreakdown {
            commission: self.commission.checked_add(other.commission)?,
            slippage: self.slippage.checked_add(other.slippage)?,
            borrow: self.borrow.checked_add(other.borrow)?,
            financing: self.financing.checked_add(other.financing)?,
        };
        *self = sum;
        Some(())
    }

    /// Σ of the items.
    pub fn total(&self) -> Option<Decimal> {
        self.commission
            .checked_add(self.slippage)?
            .checked_add(self.borrow)?
            .checked_add(self.financing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::dec;

    fn reg_t() -> MarginTerms {
        MarginTerms {
            initial_long: dec!(0.5),
            initial_short: dec!(0.5),
            maintenance_long: Some(dec!(0.25)),
            maintenance_short: Some(dec!(0.3)),
            allow_shorts: true,
        }
    }

    #[test]
    fn borrow_and_financing_accrue_by_day_count() {
        // 36,000 short at 10 %/year on 360 days: 10 per day.
        assert_eq!(
            borrow_cost(dec!(-36000), dec!(0.10), 1, DayCount::Act360),
            Some(dec!(10))
        );
        assert_eq!(
            borrow_cost(dec!(36500), dec!(0.10), 3, DayCount::Act365),
            Some(dec!(30))
        );
        assert_eq!(
            financing(dec!(-72000), dec!(0.05), 1, DayCount::Act360),
            Some(dec!(10))
        );
        let terms = FinancingTerms {
            debit_annual_rate: dec!(0.05),
            credit_annual_rate: dec!(0.0365),
            basis: DayCount::Act365,
        };
        assert_eq!(terms.accrue(dec!(-73000), 1), Some(dec!(10)));
        assert_eq!(terms.accrue(dec!(10000), 2), Some(dec!(-2)));
        let no_credit = FinancingTerms {
            credit_annual_rate: dec!(0),
            ..terms
        };
        assert_eq!(no_credit.accrue(dec!(10000), 2), Some(dec!(0)));
    }

    #[test]
    fn day_count_reads_360_or_365() {
        assert_eq!(DayCount::try_from(360), Ok(DayCount::Act360));
        assert_eq!(DayCount::try_from(365), Ok(DayCount::Act365));
        assert!(DayCount::try_from(364).is_err());
    }

    #[test]
    fn margin_sums_positions_by_side() {
        let terms = reg_t();
        let positions = [(dec!(100), dec!(50)), (dec!(-20), dec!(100))];
        assert_eq!(margin_requirement(positions, &terms), Some(dec!(3500)));
        // 5000 × 0.25 + 2000 × 0.3
        assert_eq!(maintenance_requirement(positions, &terms), Some(dec!(1850)));
        assert_eq!(
            margin_requirement(positions, &MarginTerms::default()),
            Some(dec!(7000))
        );
    }

    #[test]
    fn buying_power_refuses_with_a_readable_reason() {
        let cash_account = MarginTerms::default();
        let order = MarginOrder {
            side: OrderSide::Buy,
            quantity: dec!(100),
            price: dec!(50),
            position_quantity: dec!(0),
        };
        let refused = check_buying_power(dec!(11234.56), dec!(10000), &order, &cash_account);
        assert_eq!(
            refused,
            Err("buy 100 at 50 needs 5,000.00 of margin, 1,234.56 available".to_string())
        );
        // 2× leverage: the same order needs 2,500 and there are 11,234.56 free.
        assert!(check_buying_power(dec!(11234.56), dec!(0), &order, &reg_t()).is_ok());
        // Selling part of a long only lowers the requirement: allowed with no equity left.
        let reduce = MarginOrder {
            side: OrderSide::Sell,
            quantity: dec!(50),
            price: dec!(50),
            position_quantity: dec!(100),
        };
        assert!(check_buying_power(dec!(0), dec!(5000), &reduce, &cash_account).is_ok());
        // Flipping from long 100 to short 100 in a spot account is refused.
        let flip = MarginOrder {
            quantity: dec!(200),
            ..reduce
        };
        let spot = MarginTerms {
            allow_shorts: false,
            ..MarginTerms::default()
        };
        assert!(
            check_buying_power(dec!(1000000), dec!(5000), &flip, &spot)
                .unwrap_err()
                .contains("cannot short")
        );
    }

    #[test]
    fn amounts_are_grouped_for_display() {
        assert_eq!(format_amount(dec!(1234.565)), "1,234.57");
        assert_eq!(format_amount(dec!(0)), "0.00");
        assert_eq!(format_amount(dec!(-1234567.1)), "-1,234,567.10");
        assert_eq!(format_amount(dec!(999)), "999.00");
    }

    #[test]
    fn breakdown_adds_item_by_item() {
        let mut total = CostBreakdown::default();
        let day = CostBreakdown {
            commission: dec!(1.5),
            slippage: dec!(0.25),
            borrow: dec!(0.1),
            financing: dec!(-0.05),
        };
        total.add(&day).expect("fits");
        total.add(&day).expect("fits");
        assert_eq!(total.commission, dec!(3.0));
        assert_eq!(total.financing, dec!(-0.10));
        assert_eq!(total.total(), Some(dec!(3.60)));
        let mut full = CostBreakdown {
            commission: Decimal::MAX,
            ..day
        };
        assert_eq!(full.add(&day), None);
        assert_eq!(full.commission, Decimal::MAX);
    }

    fn amount() -> impl Strategy<Value = Decimal> {
        (-1_000_000_000_000i64..1_000_000_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn rate() -> impl Strategy<Value = Decimal> {
        (0i64..100_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn basis() -> impl Strategy<Value = DayCount> {
        prop_oneof![Just(DayCount::Act360), Just(DayCount::Act365)]
    }

    /// Equal up to Decimal's last significant digit (one division rounds each side).
    fn close(a: Decimal, b: Decimal) -> bool {
        let scale = a.abs().max(b.abs()).max(Decimal::ONE);
        (a - b).abs() <= scale * Decimal::new(1, 24)
    }

    proptest! {
        #[test]
        fn accruals_scale_linearly_with_days(
            amount in amount(),
            rate in rate(),
            days in 0u32..400,
            more in 0u32..400,
            basis in basis(),
        ) {
            for accrual in [borrow_cost, financing] {
                let a = accrual(amount, rate, days, basis).expect("fits");
                let b = accrual(amount, rate, more, basis).expect("fits");
                let both = accrual(amount, rate, days + more, basis).expect("fits");
                prop_assert!(a >= Decimal::ZERO);
                prop_assert!(close(both, a + b), "{} vs {} + {}", both, a, b);
                let one_day = accrual(amount, rate, 1, basis).expect("fits");
                prop_assert!(close(a, one_day * Decimal::from(days)));
            }
        }

        #[test]
        fn reducing_orders_never_need_margin(
            position in amount(),
            fraction in (1i64..=100).prop_map(|p| Decimal::new(p, 2)),
            price in rate(),
        ) {
            prop_assume!(!position.is_zero());
            let order = MarginOrder {
                side: if position > Decimal::ZERO { OrderSide::Sell } else { OrderSide::Buy },
                quantity: position.abs() * fraction,
                price,
                position_quantity: position,
            };
            let added = order.added_requirement(&reg_t()).expect("fits");
            prop_assert!(added <= Decimal::ZERO);
            prop_assert!(check_buying_power(Decimal::ZERO, Decimal::MAX / Decimal::TWO, &order, &reg_t()).is_ok());
        }
    }
}
