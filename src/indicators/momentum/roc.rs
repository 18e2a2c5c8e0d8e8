//! Rate of change (TA-Lib `ROC`).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// ((x / x[period bars ago]) − 1) · 100, and 0 where the earlier value is 0 (as TA-Lib).
#[derive(Debug, Clone)]
pub struct RateOfChange {
    period: usize,
    window: RingBuffer<f64>,
    value: f64,
    name: String,
}

impl RateOfChange {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("ROC", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            window: RingBuffer::new(period + 1),
            value: f64::NAN,
            name: format!("ROC({period})"),
        })
    }

    /// Takes the next value of the series; returns the rate of change (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        self.window.push(value);
        if self.window.is_full() {
            let earlier = self.window.oldest();
            self.value = if earlier != 0.0 {
                ((value / earlier) - 1.0) * 100.0
            } else {
                0.0
            };
        }
        self.value
    }

    pub(crate) fn reset_state(&mut self) {
        self.window.clear();
        self.value = f64::NAN;
    }
}

impl Indicator for RateOfChange {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        self.update_value(bar.close);
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["roc"]
    }

    fn is_ready(&self) -> bool {
        self.window.is_full()
    }

    fn warm_up_period(&self) -> usize {
        self.period + 1
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_change_over_the_period() {
        let mut roc = RateOfChange::new(2).unwrap();
        assert!(roc.update_value(50.0).is_nan());
        assert!(roc.update_value(80.0).is_nan());
        assert!(!roc.is_ready());
        assert_eq!(roc.update_value(75.0), 50.0);
        assert!(roc.is_ready());
        assert_eq!(roc.update_value(40.0), -50.0);
        assert_eq!(roc.warm_up_period(), 3);
    }

    #[test]
    fn zero_base_reads_zero_and_reset_forgets() {
        let mut roc = RateOfChange::new(1).unwrap();
        roc.update_value(0.0);
        assert_eq!(roc.update_value(5.0), 0.0);
        roc.reset();
        assert!(roc.value().is_nan());
        assert!(!roc.is_ready());
    }
}
