//! Double exponential moving average (TA-Lib `DEMA`).

use super::ExponentialMovingAverage;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// DEMA = 2·EMA(x) − EMA(EMA(x)), both EMAs seeded like TA-Lib (the inner one from the first
/// `period` values of the outer), so the first value comes at bar 2·(period − 1) + 1.
#[derive(Debug, Clone)]
pub struct DoubleExponentialMovingAverage {
    period: usize,
    ema1: ExponentialMovingAverage,
    ema2: ExponentialMovingAverage,
    value: f64,
    name: String,
}

impl DoubleExponentialMovingAverage {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("DEMA", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            ema1: ExponentialMovingAverage::new(period)?,
            ema2: ExponentialMovingAverage::new(period)?,
            value: f64::NAN,
            name: format!("DEMA({period})"),
        })
    }

    /// Takes the next value of the series; returns the average (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        let e1 = self.ema1.update_value(value);
        if self.ema1.is_ready() {
            let e2 = self.ema2.update_value(e1);
            if self.ema2.is_ready() {
                self.value = 2.0 * e1 - e2;
            }
        }
        self.value
    }

    pub(crate) fn lookback(&self) -> usize {
        2 * (self.period - 1)
    }

    pub(crate) fn reset_state(&mut self) {
        self.ema1.reset_state();
        self.ema2.reset_state();
        self.value = f64::NAN;
    }
}

impl Indicator for DoubleExponentialMovingAverage {
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
        &["dema"]
    }

    fn is_ready(&self) -> bool {
        self.ema2.is_ready()
    }

    fn warm_up_period(&self) -> usize {
        self.lookback() + 1
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_twice_the_ema_minus_the_ema_of_the_ema() {
        // period 2: k = 2/3. ema1 = 1.5 at bar 2, then (3-1.5)·2/3+1.5 = 2.5;
        // ema2 seeds with mean(1.5, 2.5) = 2 at bar 3: DEMA = 2·2.5 − 2 = 3.
        let mut dema = DoubleExponentialMovingAverage::new(2).unwrap();
        assert!(dema.update_value(1.0).is_nan());
        assert!(dema.update_value(2.0).is_nan());
        assert!(!dema.is_ready());
        assert_eq!(dema.update_value(3.0), 3.0);
        assert!(dema.is_ready());
        assert_eq!(dema.warm_up_period(), 3);
    }

    #[test]
    fn a_constant_series_gives_the_constant() {
        let mut dema = DoubleExponentialMovingAverage::new(5).unwrap();
        for _ in 0..20 {
            dema.update_value(4.0);
        }
        assert_eq!(dema.value(), 4.0);
        dema.reset();
        assert!(dema.value().is_nan());
        assert!(!dema.is_ready());
    }
}
