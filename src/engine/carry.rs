//! Daily borrow and financing: at every UTC midnight the positions held then are charged, from
//! the books as they stood after the last tick before it (marks are last closes, so nothing
//! from after the boundary is used).

use rust_decimal::{Decimal, RoundingStrategy};

use super::Session;
use crate::accounting::{CostKind, CostRecord};
use crate::execution::{DayCount, FinancingTerms, borrow_cost};
use crate::model::time::NANOS_PER_DAY;
use crate::model::{SymbolId, TimestampNs};

/// Decimal places each daily accrual is rounded to (half away from zero). Fine enough for any
/// currency or crypto unit, and it keeps accrued amounts from growing 28-digit tails.
pub const ACCRUAL_DECIMALS: u32 = 12;

/// The run's carry terms, resolved from the config and the broker profile.
#[derive(Debug, Clone, Default)]
pub struct CarryRates {
    /// Annual borrow rate per symbol (index = symbol id).
    pub borrow: Vec<Decimal>,
    pub borrow_basis: DayCount,
    pub financing: FinancingTerms,
    /// Whether any accrual can be non-zero (computed once: checked every tick).
    enabled: bool,
}

impl CarryRates {
    pub fn new(borrow: Vec<Decimal>, borrow_basis: DayCount, financing: FinancingTerms) -> Self {
        let enabled = borrow.iter().any(|r| !r.is_zero())
            || !financing.debit_annual_rate.is_zero()
            || !financing.credit_annual_rate.is_zero();
        CarryRates {
            borrow,
            borrow_basis,
            financing,
            enabled,
        }
    }

    /// When false, the clock never looks at midnights.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

/// One day's charge, rounded to [`ACCRUAL_DECIMALS`].
fn round(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(ACCRUAL_DECIMALS, RoundingStrategy::MidpointAwayFromZero)
}

/// The first UTC midnight at or after `time`.
pub fn next_midnight(time: TimestampNs) -> TimestampNs {
    let day = time.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY;
    if day < time { day + NANOS_PER_DAY } else { day }
}

impl Session {
    /// Charges borrow and financing for every UTC midnight `m` with `last tick ≤ m < next`,
    /// one day each (a weekend between Friday's and Monday's bars is three days). Nothing
    /// before the first tick and nothing after the last one.
    pub fn accrue_carry(&mut self, next: TimestampNs) -> Result<(), String> {
        let Some(last) = self.last_tick else {
            return Ok(());
        };
        if !self.carry.enabled() {
            return Ok(());
        }
        let mut midnight = next_midnight(last);
        while midnight < next {
            self.accrue_day(midnight)?;
            midnight += NANOS_PER_DAY;
        }
        Ok(())
    }

    /// One day of carry at `midnight`. Every amount of the day is computed from the books
    /// before any of them is debited.
    fn accrue_day(&mut self, midnight: TimestampNs) -> Result<(), String> {
        let overflow = |what: &str| format!("decimal overflow while accruing {what}");
        let mut charges = Vec::new();
        // Short sale proceeds are collateral: they earn nothing and finance nothing, so the
        // financed balance is cash minus the value of the shorts.
        let mut balance = self.ledger.cash();
        for &symbol in self.ledger.open_symbols() {
            let Some(position) = self.ledger.position(symbol) else {
                continue;
            };
            if position.quantity >= Decimal::ZERO {
                continue;
            }
            let value = position.market_value().ok_or_else(|| overflow("borrow"))?;
            balance = balance
                .checked_add(value)
                .ok_or_else(|| overflow("financing"))?;
            let rate = self.carry.borrow.get(symbol.index()).copied();
            let rate = rate.unwrap_or_default();
            let amount = borrow_cost(value, rate, 1, self.carry.borrow_basis)
                .ok_or_else(|| overflow("borrow"))?;
            charges.push((
                Some(symbol),
                CostKind::Borrow,
                round(amount),
                value.abs(),
                rate,
            ));
        }
        let terms = &self.carry.financing;
        let amount = terms
            .accrue(balance, 1)
            .ok_or_else(|| overflow("financing"))?;
        let rate = if balance < Decimal::ZERO {
            terms.debit_annual_rate
        } else {
            terms.credit_annual_rate
        };
        charges.push((None, CostKind::Financing, round(amount), balance, rate));
        for (symbol, kind, amount, base, rate) in charges {
            if amount.is_zero() {
                continue;
            }
            self.ledger.apply_carry(amount).map_err(|e| e.to_string())?;
            self.costs.record(CostRecord {
                time: midnight,
                symbol,
                kind,
                amount,
                base,
                annual_rate: Some(rate),
                order_id: None,
            })?;
        }
        Ok(())
    }

    /// Resolves the carry terms: `[instruments.X] borrow_rate`, else the broker profile's rate
    /// for the symbol, else zero; `[execution]` financing, else the profile's; `day_count`
    /// overrides both bases.
    pub(super) fn resolve_carry(&mut self) {
        let profile = self.execution.profile.as_ref();
        let day_count = self.execution.day_count;
        let borrow = (0..self.market.symbol_count())
            .map(|i| {
                let symbol = SymbolId(i as u32);
                let name = self.market.symbol_name(symbol);
                self.instrument(symbol)
                    .borrow_rate
                    .or_else(|| profile.map(|p| p.borrow.annual_rate(name)))
                    .unwrap_or_default()
            })
            .collect();
        let borrow_basis = day_count
            .or(profile.map(|p| p.borrow.basis))
            .unwrap_or_default();
        let mut financing = self
            .execution
            .financing
            .clone()
            .or_else(|| profile.map(|p| p.financing.clone()))
            .unwrap_or_default();
        if let Some(basis) = day_count {
            financing.basis = basis;
        }
        self.carry = CarryRates::new(borrow, borrow_basis, financing);
    }
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use rust_decimal::dec;

    use super::*;
    use crate::engine::ExecutionSettings;
    use crate::engine::test_support::{hold, one_bar_market};
    use crate::execution::{CommissionModel, Instrument};
    use crate::model::OrderSide;

    const DAY: i64 = NANOS_PER_DAY;

    fn session(symbols: usize, borrow: Decimal, debit: Decimal, credit: Decimal) -> Session {
        let market = one_bar_market(symbols, DAY);
        let mut s = Session::new(market, dec!(100000), CommissionModel::default());
        s.set_execution(ExecutionSettings {
            default_instrument: Instrument {
                borrow_rate: Some(borrow),
                ..Default::default()
            },
            financing: Some(FinancingTerms {
                debit_annual_rate: debit,
                credit_annual_rate: credit,
                basis: DayCount::Act360,
            }),
            day_count: Some(DayCount::Act365),
            ..Default::default()
        });
        s
    }

    #[test]
    fn midnights_are_found_on_the_utc_grid() {
        assert_eq!(next_midnight(0), 0);
        assert_eq!(next_midnight(1), DAY);
        assert_eq!(next_midnight(DAY), DAY);
        assert_eq!(next_midnight(-1), 0);
    }

    #[test]
    fn a_short_pays_borrow_and_a_debit_balance_pays_interest_each_midnight() {
        // day_count 365 overrides the financing basis of 360 set with the rates.
        let mut s = session(2, dec!(0.0365), dec!(0.073), dec!(0));
        assert_eq!(s.carry.financing.basis, DayCount::Act365);
        hold(&mut s, 0, OrderSide::Sell, dec!(100), dec!(50)); // short 5,000
        hold(&mut s, 1, OrderSide::Buy, dec!(2000), dec!(100)); // long 200,000
        // Cash 100,000 + 5,000 − 200,000 = −95,000; financed balance −100,000.
        s.last_tick = Some(DAY / 2);
        s.accrue_carry(DAY / 2 + 3 * DAY).unwrap(); // three midnights
        let records = s.costs.records();
        assert_eq!(records.len(), 6);
        assert_eq!(records[0].kind, CostKind::Borrow);
        assert_eq!(records[0].amount, dec!(0.5)); // 5,000 × 0.0365 / 365
        assert_eq!(records[0].base, dec!(5000));
        assert_eq!(records[1].amount, dec!(20)); // 100,000 × 0.073 / 365
        assert_eq!(records[1].base, dec!(-100000));
        assert_eq!(records[1].symbol, None);
        assert_eq!(records[1].time, DAY);
        assert_eq!(records[5].time, 3 * DAY);
        // Debits compound: day 2's balance is 100,020.5 → 20.0041, day 3's 100,041.0041.
        assert_eq!(records[3].amount, dec!(20.0041));
        assert_eq!(records[5].amount, dec!(20.00820082));
        assert_eq!(s.ledger.cash(), dec!(-95000) - dec!(61.51230082));
        assert_eq!(s.costs.total().borrow, dec!(1.5));
        assert_eq!(s.costs.by_symbol()[0].borrow, dec!(1.5));
        assert_eq!(s.ledger.carry_paid(), dec!(61.51230082));
        // Nothing before the first tick, and no midnight in [last, next).
        let mut fresh = session(1, dec!(1), dec!(1), dec!(1));
        fresh.accrue_carry(10 * DAY).unwrap();
        assert!(fresh.costs.records().is_empty());
        s.last_tick = Some(DAY + 1);
        s.accrue_carry(2 * DAY).unwrap();
        assert_eq!(s.costs.records().len(), 6);
    }

    #[test]
    fn credit_interest_is_income_on_cash_net_of_short_proceeds() {
        let mut s = session(1, dec!(0), dec!(0.1), dec!(0.0365));
        hold(&mut s, 0, OrderSide::Sell, dec!(100), dec!(10));
        s.last_tick = Some(0);
        s.accrue_carry(1).unwrap();
        let r = &s.costs.records()[0];
        // 101,000 cash − 1,000 short = 100,000 × 0.0365 / 365 = 10, received.
        assert_eq!(
            (r.kind, r.amount, r.base),
            (CostKind::Financing, dec!(-10), dec!(100000))
        );
        assert_eq!(s.ledger.cash(), dec!(101010));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let mut s = session(1, dec!(1000), dec!(0), dec!(0));
        hold(&mut s, 0, OrderSide::Sell, Decimal::MAX / dec!(10), dec!(1));
        s.ledger.mark(SymbolId(0), dec!(5)).unwrap();
        s.last_tick = Some(0);
        let err = s.accrue_carry(1).unwrap_err();
        assert!(err.contains("overflow"), "{err}");
    }

    proptest! {
        /// Over N midnights with fixed positions, the charges equal the reference formula
        /// round(|q × p| × rate / basis) per day, summed; and cash + positions stays equal to
        /// initial + PnL − carry after every day.
        #[test]
        fn accrual_over_days_matches_the_reference(
            qty in 1i64..100_000,
            price_cents in 1i64..1_000_000,
            rate_bp in 0i64..5_000,
            debit_bp in 0i64..2_000,
            days in 1i64..40,
            long in any::<bool>(),
        ) {
            let rate = Decimal::new(rate_bp, 4);
            let debit = Decimal::new(debit_bp, 4);
            let mut s = session(1, rate, debit, dec!(0));
            let price = Decimal::new(price_cents, 2);
            let quantity = Decimal::from(qty);
            let side = if long { OrderSide::Buy } else { OrderSide::Sell };
            hold(&mut s, 0, side, quantity, price);
            s.last_tick = Some(0);
            let mut cash = s.ledger.cash();
            let equity_before = s.ledger.equity().unwrap();
            for day in 0..days {
                s.accrue_carry(day * DAY + 1).unwrap();
                s.last_tick = Some(day * DAY + 1);
                // Reference: the formula written out, per day.
                let value = quantity * price;
                let balance = if long { cash } else { cash - value };
                let borrow = if long { Decimal::ZERO } else {
                    (value * rate / dec!(365)).round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero)
                };
                let financing = if balance < Decimal::ZERO {
                    (-balance * debit / dec!(365)).round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero)
                } else { Decimal::ZERO };
                cash = cash - borrow - financing;
                prop_assert_eq!(s.ledger.cash(), cash);
                let equity = s.ledger.equity().unwrap();
                prop_assert_eq!(equity, cash + s.ledger.position(SymbolId(0)).unwrap().market_value().unwrap());
                prop_assert_eq!(equity, equity_before - s.ledger.carry_paid());
            }
            let total = s.costs.total();
            prop_assert_eq!(total.borrow + total.financing, s.ledger.carry_paid());
        }
    }
}
