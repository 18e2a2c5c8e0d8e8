//! Williams' %R (TA-Lib `WILLR`).

use crate::indicators::buffer::{RollingMax, RollingMin};
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// %R = (highest high − close) / (highest high − lowest low) · −100 over `period` bars, in
/// [−100, 0]; 0 where the range is zero (as TA-Lib). Extremes from monotonic deques (amortized
/// O(1), exact).
#[derive(Debug, Clone)]
pub struct WilliamsPercentR {
    period: usize,
    highest: RollingMax,
    lowest: RollingMin,
    seen: usize,
    value: f64,
    name: String,
}

impl WilliamsPercentR {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("WILLR", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            highest: RollingMax::new(period),
            lowest: RollingMin::new(period),
            seen: 0,
            value: f64::NAN,
            name: format!("WILLR({period})"),
        })
    }
}

impl Indicator for WilliamsPercentR {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        let highest = self.highest.push(bar.high);
        let lowest = self.lowest.push(bar.low);
        if self.seen < self.period {
            self.seen += 1;
            if self.seen < self.period {
                return;
            }
        }
        let range = highest - lowest;
        self.value = if range != 0.0 {
            ((highest - bar.close) / range) * -100.0
        } else {
            0.0
        };
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["willr"]
    }

    fn is_ready(&self) -> bool {
        self.seen >= self.period
    }

    fn warm_up_period(&self) -> usize {
        self.period
    }

    fn reset(&mut self) {
        self.highest.clear();
        self.lowest.clear();
        self.seen = 0;
        self.value = f64::NAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(high: f64, low: f64, close: f64) -> BarInput {
        BarInput {
            open: close,
            high,
            low,
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn position_of_the_close_in_the_range() {
        let mut willr = WilliamsPercentR::new(2).unwrap();
        willr.update(&bar(10.0, 6.0, 8.0));
        assert!(willr.value().is_nan());
        assert!(!willr.is_ready());
        // highs 10, 12; lows 6, 8: (12 − 9) / (6 / −100) = −50.
        willr.update(&bar(12.0, 8.0, 9.0));
        assert!(willr.is_ready());
        assert_eq!(willr.value(), -50.0);
        willr.update(&bar(12.0, 8.0, 12.0));
        assert_eq!(willr.value(), 0.0);
    }

    #[test]
    fn flat_range_reads_zero_and_reset_forgets() {
        let mut willr = WilliamsPercentR::new(2).unwrap();
        willr.update(&bar(5.0, 5.0, 5.0));
        willr.update(&bar(5.0, 5.0, 5.0));
        assert_eq!(willr.value(), 0.0);
        willr.reset();
        assert!(willr.value().is_nan());
        assert!(!willr.is_ready());
    }
}
