//! Simple moving average (TA-Lib `SMA`).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// Mean of the last `period` closes.
///
/// TA-Lib keeps a running sum (add the new value, divide, subtract the oldest); so does this, in
/// the same order, so the values are TA-Lib's to the bit.
#[derive(Debug, Clone)]
pub struct SimpleMovingAverage {
    period: usize,
    window: RingBuffer<f64>,
    sum: f64,
    value: f64,
    name: String,
}

impl SimpleMovingAverage {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("SMA", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            window: RingBuffer::new(period),
            sum: 0.0,
            value: f64::NAN,
            name: format!("SMA({period})"),
        })
    }

    /// Takes the next value of the series; returns the average (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        self.window.push(value);
        self.sum += value;
        if self.window.is_full() {
            self.value = self.sum / self.period as f64;
            // The oldest value leaves the window before the next bar arrives.
            self.sum -= self.window.oldest();
        }
        self.value
    }

    pub(crate) fn lookback(&self) -> usize {
        self.period - 1
    }

    pub(crate) fn reset_state(&mut self) {
        self.window.clear();
        self.sum = 0.0;
        self.value = f64::NAN;
    }
}

impl Indicator for SimpleMovingAverage {
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
        &["sma"]
    }

    fn is_ready(&self) -> bool {
        self.window.is_full()
    }

    fn warm_up_period(&self) -> usize {
        self.period
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_last_period_values() {
        let mut sma = SimpleMovingAverage::new(3).unwrap();
        assert!(sma.update_value(1.0).is_nan());
        assert!(sma.update_value(2.0).is_nan());
        assert!(!sma.is_ready());
        assert_eq!(sma.update_value(3.0), 2.0);
        assert!(sma.is_ready());
        assert_eq!(sma.update_value(7.0), 4.0);
        assert_eq!(sma.value(), 4.0);
        assert_eq!(sma.warm_up_period(), 3);
        assert_eq!(sma.name(), "SMA(3)");
    }

    #[test]
    fn reset_forgets_everything() {
        let mut sma = SimpleMovingAverage::new(2).unwrap();
        sma.update_value(10.0);
        sma.update_value(20.0);
        sma.reset();
        assert!(!sma.is_ready());
        assert!(sma.value().is_nan());
        sma.update_value(1.0);
        assert_eq!(sma.update_value(3.0), 2.0);
    }

    #[test]
    fn rejects_periods_outside_talib_range() {
        assert!(SimpleMovingAverage::new(0).is_err());
        assert!(SimpleMovingAverage::new(100_001).is_err());
        assert!(SimpleMovingAverage::new(1).is_ok());
    }
}
