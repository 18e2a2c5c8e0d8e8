//! Every cost of a run, one record per charge, with running totals per symbol: the source of
//! `costs.csv` and of the `costs` object in `metrics.json`.

use rust_decimal::Decimal;

use crate::execution::CostBreakdown;
use crate::model::{Fill, OrderId, SymbolId, TimestampNs};

/// What a cost record charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKind {
    /// A fill's fee (debited from cash with the fill).
    Commission,
    /// What a fill's price lost against the path price (already in the fill price).
    Slippage,
    /// A day's stock-borrow fee on a short (debited from cash).
    Borrow,
    /// A day's interest on the account's balance (debited, or credited when negative).
    Financing,
}

impl CostKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CostKind::Commission => "commission",
            CostKind::Slippage => "slippage",
            CostKind::Borrow => "borrow",
            CostKind::Financing => "financing",
        }
    }
}

/// One charge. `base` is what it was computed on (a fill's value, a short's value, the financed
/// balance) and `annual_rate` the rate of an accrual.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRecord {
    pub time: TimestampNs,
    /// `None` for account-level financing.
    pub symbol: Option<SymbolId>,
    pub kind: CostKind,
    /// Positive: a cost; negative: income (credit interest only).
    pub amount: Decimal,
    pub base: Decimal,
    pub annual_rate: Option<Decimal>,
    pub order_id: Option<OrderId>,
}

/// The run's cost records and their totals.
#[derive(Debug, Clone, Default)]
pub struct CostLog {
    records: Vec<CostRecord>,
    total: CostBreakdown,
    by_symbol: Vec<CostBreakdown>,
}

impl CostLog {
    pub fn new(symbol_count: usize) -> Self {
        CostLog {
            by_symbol: vec![CostBreakdown::default(); symbol_count],
            ..Default::default()
        }
    }

    pub fn records(&self) -> &[CostRecord] {
        &self.records
    }

    pub fn total(&self) -> &CostBreakdown {
        &self.total
    }

    /// Per symbol (index = symbol id); financing is never attributed to a symbol.
    pub fn by_symbol(&self) -> &[CostBreakdown] {
        &self.by_symbol
    }

    /// Records one charge; zero amounts leave no record. `Err` on overflow, log unchanged.
    pub fn record(&mut self, record: CostRecord) -> Result<(), &'static str> {
        if record.amount.is_zero() {
            return Ok(());
        }
        let item = |amount| {
            let mut c = CostBreakdown::default();
            match record.kind {
                CostKind::Commission => c.commission = amount,
                CostKind::Slippage => c.slippage = amount,
                CostKind::Borrow => c.borrow = amount,
                CostKind::Financing => c.financing = amount,
            }
            c
        };
        let delta = item(record.amount);
        let mut total = self.total;
        total.add(&delta).ok_or("decimal overflow summing costs")?;
        if let Some(symbol) = record.symbol {
            let slot = self
                .by_symbol
                .get_mut(symbol.index())
                .ok_or("cost for an unknown symbol")?;
            let mut sum = *slot;
            sum.add(&delta).ok_or("decimal overflow summing costs")?;
            *slot = sum;
        }
        self.total = total;
        self.records.push(record);
        Ok(())
    }

    /// The commission and slippage rows of one fill.
    pub fn record_fill(&mut self, fill: &Fill) -> Result<(), &'static str> {
        let value = fill
            .price
            .checked_mul(fill.quantity)
            .ok_or("decimal overflow in a fill's value")?;
        for (kind, amount) in [
            (CostKind::Commission, fill.fee),
            (CostKind::Slippage, fill.slippage),
        ] {
            self.record(CostRecord {
                time: fill.time,
                symbol: Some(fill.symbol),
                kind,
                amount,
                base: value,
                annual_rate: None,
                order_id: Some(fill.order_id),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OrderSide;
    use rust_decimal::dec;

    #[test]
    fn records_sum_per_symbol_and_in_total() {
        let mut log = CostLog::new(2);
        let fill = Fill {
            order_id: OrderId(3),
            symbol: SymbolId(1),
            side: OrderSide::Buy,
            quantity: dec!(10),
            price: dec!(2.5),
            fee: dec!(1),
            slippage: dec!(0.05),
            time: 7,
        };
        log.record_fill(&fill).unwrap();
        log.record(CostRecord {
            time: 9,
            symbol: None,
            kind: CostKind::Financing,
            amount: dec!(-0.25),
            base: dec!(1000),
            annual_rate: Some(dec!(0.01)),
            order_id: None,
        })
        .unwrap();
        // A zero charge leaves no row.
        log.record(CostRecord {
            kind: CostKind::Borrow,
            amount: dec!(0),
            symbol: Some(SymbolId(0)),
            ..log.records()[2].clone()
        })
        .unwrap();
        assert_eq!(log.records().len(), 3);
        assert_eq!(log.records()[0].base, dec!(25.0));
        assert_eq!(log.by_symbol()[1].commission, dec!(1));
        assert_eq!(log.by_symbol()[1].slippage, dec!(0.05));
        assert_eq!(log.by_symbol()[0], CostBreakdown::default());
        assert_eq!(log.total().financing, dec!(-0.25));
        assert_eq!(log.total().total(), Some(dec!(0.80)));
    }

    #[test]
    fn bad_records_leave_the_log_unchanged() {
        let mut log = CostLog::new(1);
        let record = CostRecord {
            time: 0,
            symbol: Some(SymbolId(4)),
            kind: CostKind::Borrow,
            amount: dec!(1),
            base: dec!(1),
            annual_rate: None,
            order_id: None,
        };
        assert_eq!(
            log.record(record.clone()),
            Err("cost for an unknown symbol")
        );
        let huge = CostRecord {
            symbol: Some(SymbolId(0)),
            amount: Decimal::MAX,
            ..record
        };
        log.record(huge.clone()).unwrap();
        assert_eq!(log.record(huge), Err("decimal overflow summing costs"));
        assert_eq!(log.records().len(), 1);
        assert_eq!(log.total().borrow, Decimal::MAX);
    }
}
