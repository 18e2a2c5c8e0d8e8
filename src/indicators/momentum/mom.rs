//! Momentum (TA-Lib `MOM`).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// x − x[period bars ago].
#[derive(Debug, Clone)]
pub struct Momentum {
    period: usize,
    window: RingBuffer<f64>,
    value: f64,
    name: String,
}

impl Momentum {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("MOM", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            window: RingBuffer::new(period + 1),
            value: f64::NAN,
            name: format!("MOM({period})"),
        })
    }

    /// Takes the next value of the series; returns the momentum (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        self.window.push(value);
        if self.window.is_full() {
            self.value = value - self.window.oldest();
        }
        self.value
    }

    pub(crate) fn reset_state(&mut self) {
        self.window.clear();
        self.value = f64::NAN;
    }
}

impl Indicator for Momentum {
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
        &["mom"]
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
    fn difference_over_the_period() {
        let mut mom = Momentum::new(2).unwrap();
        assert!(mom.update_value(10.0).is_nan());
        assert!(mom.update_value(11.0).is_nan());
        assert!(!mom.is_ready());
        assert_eq!(mom.update_value(15.0), 5.0);
        assert_eq!(mom.update_value(9.0), -2.0);
        assert!(mom.is_ready());
        mom.reset();
        assert!(mom.value().is_nan());
        assert!(!mom.is_ready());
    }
}
