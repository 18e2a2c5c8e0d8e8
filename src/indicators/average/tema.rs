//! Triple exponential moving average (TA-Lib `TEMA`).

use super::ExponentialMovingAverage;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// TEMA = 3·EMA1 − 3·EMA2 + EMA3 with EMA2 = EMA(EMA1) and EMA3 = EMA(EMA2), each seeded like
/// TA-Lib; the first value comes at bar 3·(period − 1) + 1. Combined as TA-Lib does:
/// `e3 + ((3·e1) − (3·e2))`. A period of 1 is the identity.
#[derive(Debug, Clone)]
pub struct TripleExponentialMovingAverage {
    period: usize,
    ema1: ExponentialMovingAverage,
    ema2: ExponentialMovingAverage,
    ema3: ExponentialMovingAverage,
    value: f64,
    name: String,
}

impl TripleExponentialMovingAverage {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("TEMA", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            ema1: ExponentialMovingAverage::new(period)?,
            ema2: ExponentialMovingAverage::new(period)?,
            ema3: ExponentialMovingAverage::new(period)?,
            value: f64::NAN,
            name: format!("TEMA({period})"),
        })
    }

    /// Takes the next value of the series; returns the average (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        if self.period == 1 {
            // TA-Lib copies the input: 3x − 3x + x is not always x in floating point.
            self.ema3.update_value(value);
            self.value = value;
            return value;
        }
        let e1 = self.ema1.update_value(value);
        if !self.ema1.is_ready() {
            return self.value;
        }
        let e2 = self.ema2.update_value(e1);
        if !self.ema2.is_ready() {
            return self.value;
        }
        let e3 = self.ema3.update_value(e2);
        if self.ema3.is_ready() {
            self.value = e3 + ((3.0 * e1) - (3.0 * e2));
        }
        self.value
    }

    pub(crate) fn lookback(&self) -> usize {
        3 * (self.period - 1)
    }

    pub(crate) fn reset_state(&mut self) {
        self.ema1.reset_state();
        self.ema2.reset_state();
        self.ema3.reset_state();
        self.value = f64::NAN;
    }
}

impl Indicator for TripleExponentialMovingAverage {
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
        &["tema"]
    }

    fn is_ready(&self) -> bool {
        self.ema3.is_ready()
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
    fn first_value_after_three_seedings() {
        let mut tema = TripleExponentialMovingAverage::new(2).unwrap();
        // ema1: 1.5, 2.5, 3.5 (bars 2..4); ema2: seed mean(1.5, 2.5) = 2 at bar 3, then
        // (3.5 − 2)·2/3 + 2 = 3 at bar 4; ema3: seed mean(2, 3) = 2.5 at bar 4.
        // TEMA = 2.5 + (3·3.5 − 3·3) = 4.
        for x in [1.0, 2.0, 3.0] {
            assert!(tema.update_value(x).is_nan());
        }
        assert!(!tema.is_ready());
        assert_eq!(tema.update_value(4.0), 4.0);
        assert!(tema.is_ready());
        assert_eq!(tema.warm_up_period(), 4);
    }

    #[test]
    fn period_one_copies_and_reset_forgets() {
        let mut tema = TripleExponentialMovingAverage::new(1).unwrap();
        assert_eq!(tema.update_value(0.1), 0.1);
        assert!(tema.is_ready());
        tema.reset();
        assert!(!tema.is_ready());
        assert!(tema.value().is_nan());
    }
}
