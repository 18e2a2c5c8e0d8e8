//! Money flow index (TA-Lib `MFI`).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// TA-Lib's `TA_EPSILON` (0.8), used relative to the prices compared.
const EPSILON: f64 = 1e-14;

/// MFI = 100 · positive flow / (positive + negative flow) over `period` bars, where a bar's money
/// flow is typical price × volume, positive when the typical price rose from the previous bar and
/// negative when it fell. First value at bar `period + 1`.
///
/// TA-Lib 0.8's rules: a change within 1e-14 of the two prices is no move; a window that received
/// no flow at all reads 0 (its running sums are reset to exact zeros once a whole period passed
/// without flow); the ratio is clamped into [0, 100].
#[derive(Debug, Clone)]
pub struct MoneyFlowIndex {
    period: usize,
    /// (positive, negative) flow of the last `period` bars.
    flows: RingBuffer<(f64, f64)>,
    seen: usize,
    previous_typical: f64,
    positive_sum: f64,
    negative_sum: f64,
    bars_without_flow: usize,
    value: f64,
    name: String,
}

impl MoneyFlowIndex {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("MFI", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            flows: RingBuffer::new(period),
            seen: 0,
            previous_typical: f64::NAN,
            positive_sum: 0.0,
            negative_sum: 0.0,
            bars_without_flow: 0,
            value: f64::NAN,
            name: format!("MFI({period})"),
        })
    }
}

impl Indicator for MoneyFlowIndex {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        let typical = bar.typical_price();
        if self.seen == 0 {
            self.seen = 1;
            self.previous_typical = typical;
            return;
        }
        if self.flows.is_full() {
            let (positive, negative) = self.flows.oldest();
            self.positive_sum -= positive;
            self.negative_sum -= negative;
        }
        let change = typical - self.previous_typical;
        let scale = typical.abs() + self.previous_typical.abs();
        self.previous_typical = typical;
        let money_flow = if change.abs() <= EPSILON * scale {
            0.0
        } else {
            typical * bar.volume
        };
        let (positive, negative) = if change < 0.0 {
            (0.0, money_flow)
        } else {
            (money_flow, 0.0)
        };
        self.flows.push((positive, negative));
        self.positive_sum += positive;
        self.negative_sum += negative;
        self.bars_without_flow = if money_flow == 0.0 {
            self.bars_without_flow + 1
        } else {
            0
        };
        if self.bars_without_flow >= self.period {
            self.bars_without_flow = self.period;
            self.positive_sum = 0.0;
            self.negative_sum = 0.0;
        }
        if self.seen <= self.period {
            self.seen += 1;
            if self.seen <= self.period {
                return;
            }
        }
        let total = self.positive_sum + self.negative_sum;
        let positive = if self.positive_sum < 0.0 {
            0.0
        } else if self.positive_sum > total {
            total
        } else {
            self.positive_sum
        };
        self.value = if total <= 0.0 {
            0.0
        } else {
            100.0 * (positive / total)
        };
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["mfi"]
    }

    fn is_ready(&self) -> bool {
        self.seen > self.period
    }

    fn warm_up_period(&self) -> usize {
        self.period + 1
    }

    fn reset(&mut self) {
        self.flows.clear();
        self.seen = 0;
        self.previous_typical = f64::NAN;
        self.positive_sum = 0.0;
        self.negative_sum = 0.0;
        self.bars_without_flow = 0;
        self.value = f64::NAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(typical: f64, volume: f64) -> BarInput {
        BarInput {
            open: typical,
            high: typical,
            low: typical,
            close: typical,
            volume,
        }
    }

    #[test]
    fn share_of_rising_money_flow() {
        let mut mfi = MoneyFlowIndex::new(2).unwrap();
        mfi.update(&bar(10.0, 1.0));
        mfi.update(&bar(12.0, 1.0)); // +12
        assert!(mfi.value().is_nan());
        assert!(!mfi.is_ready());
        mfi.update(&bar(6.0, 1.0)); // −6
        assert!(mfi.is_ready());
        assert!((mfi.value() - 100.0 * 12.0 / 18.0).abs() < 1e-12);
        mfi.update(&bar(8.0, 3.0)); // +24, the +12 leaves: 24 / 30
        assert!((mfi.value() - 80.0).abs() < 1e-12);
        assert_eq!(mfi.warm_up_period(), 3);
    }

    #[test]
    fn no_flow_reads_zero_and_reset_forgets() {
        let mut mfi = MoneyFlowIndex::new(2).unwrap();
        for _ in 0..4 {
            mfi.update(&bar(5.0, 100.0));
        }
        assert_eq!(mfi.value(), 0.0);
        mfi.reset();
        assert!(mfi.value().is_nan());
        assert!(!mfi.is_ready());
    }
}
