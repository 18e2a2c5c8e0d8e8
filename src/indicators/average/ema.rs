//! Exponential moving average (TA-Lib `EMA`).

use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// EMA with k = 2 / (period + 1), seeded like TA-Lib: the first value is the simple mean of the
/// first `period` inputs, then `ema = (x - ema) * k + ema` with one rounding (TA-Lib 0.8 fuses
/// that multiply-add). A period of 1 is the identity (TA-Lib copies the input).
#[derive(Debug, Clone)]
pub struct ExponentialMovingAverage {
    period: usize,
    k: f64,
    seen: usize,
    seed_sum: f64,
    value: f64,
    name: String,
}

impl ExponentialMovingAverage {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("EMA", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            k: 2.0 / (period + 1) as f64,
            seen: 0,
            seed_sum: 0.0,
            value: f64::NAN,
            name: format!("EMA({period})"),
        })
    }

    /// Takes the next value of the series; returns the average (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        if self.seen >= self.period {
            self.value = if self.period == 1 {
                value
            } else {
                (value - self.value).mul_add(self.k, self.value)
            };
        } else {
            self.seen += 1;
            self.seed_sum += value;
            if self.seen == self.period {
                self.value = if self.period == 1 {
                    value
                } else {
                    self.seed_sum / self.period as f64
                };
            }
        }
        self.value
    }

    pub(crate) fn lookback(&self) -> usize {
        self.period - 1
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.seen >= self.period
    }

    pub(crate) fn reset_state(&mut self) {
        self.seen = 0;
        self.seed_sum = 0.0;
        self.value = f64::NAN;
    }
}

impl Indicator for ExponentialMovingAverage {
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
        &["ema"]
    }

    fn is_ready(&self) -> bool {
        ExponentialMovingAverage::is_ready(self)
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
    fn seeds_with_the_mean_then_smooths() {
        // period 3: k = 0.5, seed = mean(1, 2, 3) = 2.
        let mut ema = ExponentialMovingAverage::new(3).unwrap();
        assert!(ema.update_value(1.0).is_nan());
        assert!(ema.update_value(2.0).is_nan());
        assert!(!Indicator::is_ready(&ema));
        assert_eq!(ema.update_value(3.0), 2.0);
        assert!(Indicator::is_ready(&ema));
        assert_eq!(ema.update_value(6.0), 4.0);
        assert_eq!(ema.update_value(0.0), 2.0);
        assert_eq!(ema.warm_up_period(), 3);
    }

    #[test]
    fn period_one_copies_the_input() {
        let mut ema = ExponentialMovingAverage::new(1).unwrap();
        for x in [0.1, 0.7, 3.3, 1e-9] {
            assert_eq!(ema.update_value(x), x);
        }
    }

    #[test]
    fn reset_forgets_everything() {
        let mut ema = ExponentialMovingAverage::new(2).unwrap();
        ema.update_value(5.0);
        ema.update_value(7.0);
        ema.reset();
        assert!(ema.value().is_nan());
        ema.update_value(1.0);
        assert_eq!(ema.update_value(3.0), 2.0);
    }
}
