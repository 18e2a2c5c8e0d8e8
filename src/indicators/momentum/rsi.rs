//! Relative strength index (TA-Lib `RSI`).

use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// Wilder's RSI = 100 · avg gain / (avg gain + avg loss).
///
/// Seeded like TA-Lib: the first averages are the plain means of the first `period` changes
/// (first value at bar `period + 1`), then Wilder's smoothing
/// `avg = (avg · (period − 1) + change) · (1/period)`. While gain and loss are both exactly 0
/// (no change since the start) the RSI is 0, as in TA-Lib 0.8.1.
#[derive(Debug, Clone)]
pub struct RelativeStrengthIndex {
    period: usize,
    inv_period: f64,
    seen: usize,
    previous: f64,
    avg_gain: f64,
    avg_loss: f64,
    value: f64,
    name: String,
}

impl RelativeStrengthIndex {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("RSI", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            inv_period: 1.0 / period as f64,
            seen: 0,
            previous: f64::NAN,
            avg_gain: 0.0,
            avg_loss: 0.0,
            value: f64::NAN,
            name: format!("RSI({period})"),
        })
    }

    /// Takes the next value of the series; returns the RSI (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        if self.seen == 0 {
            self.seen = 1;
            self.previous = value;
            return self.value;
        }
        let change = value - self.previous;
        self.previous = value;
        let gain = if change > 0.0 { change } else { 0.0 };
        if self.seen <= self.period {
            self.avg_gain += gain;
            self.avg_loss += gain - change;
            self.seen += 1;
            if self.seen <= self.period {
                return self.value;
            }
            self.avg_loss *= self.inv_period;
            self.avg_gain *= self.inv_period;
        } else {
            let keep = (self.period - 1) as f64;
            self.avg_loss *= keep;
            self.avg_gain *= keep;
            self.avg_gain += gain;
            self.avg_loss += gain - change;
            self.avg_loss *= self.inv_period;
            self.avg_gain *= self.inv_period;
        }
        let total = self.avg_gain + self.avg_loss;
        self.value = if total > 0.0 {
            100.0 * (self.avg_gain / total)
        } else {
            0.0
        };
        self.value
    }

    pub(crate) fn reset_state(&mut self) {
        self.seen = 0;
        self.previous = f64::NAN;
        self.avg_gain = 0.0;
        self.avg_loss = 0.0;
        self.value = f64::NAN;
    }
}

impl Indicator for RelativeStrengthIndex {
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
        &["rsi"]
    }

    fn is_ready(&self) -> bool {
        self.seen > self.period
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
    fn first_value_is_the_ratio_of_mean_gain() {
        // changes +2, −1: mean gain 1, mean loss 0.5 → 100 · 1 / 1.5.
        let mut rsi = RelativeStrengthIndex::new(2).unwrap();
        assert!(rsi.update_value(10.0).is_nan());
        assert!(rsi.update_value(12.0).is_nan());
        assert!(!rsi.is_ready());
        let first = rsi.update_value(11.0);
        assert!((first - 200.0 / 3.0).abs() < 1e-12);
        assert!(rsi.is_ready());
        // Wilder: gain (1·1 + 0)/2 = 0.5, loss (0.5·1 + 1)/2 = 0.75 → 40.
        assert!((rsi.update_value(10.0) - 40.0).abs() < 1e-12);
        assert_eq!(rsi.warm_up_period(), 3);
    }

    #[test]
    fn only_gains_read_100_and_no_change_reads_0() {
        let mut up = RelativeStrengthIndex::new(3).unwrap();
        for x in [1.0, 2.0, 3.0, 4.0, 5.0] {
            up.update_value(x);
        }
        assert_eq!(up.value(), 100.0);
        let mut flat = RelativeStrengthIndex::new(3).unwrap();
        for _ in 0..5 {
            flat.update_value(7.0);
        }
        assert_eq!(flat.value(), 0.0);
        flat.reset();
        assert!(flat.value().is_nan());
        assert!(!flat.is_ready());
    }
}
