//! Weighted moving average (TA-Lib `WMA`).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// Linearly weighted mean of the last `period` closes (oldest weight 1, newest `period`).
///
/// TA-Lib's O(1) form: `sum` holds Σ wᵢxᵢ and `sub` Σ xᵢ; each bar adds `period·x` to `sum`,
/// divides by n(n+1)/2, then subtracts `sub` (which shifts every weight down by one). Like
/// TA-Lib 0.8, both totals are rebuilt from the window (oldest first) every `8·period` bars so
/// rounding residue does not accumulate; that rebuild is the only non-O(1) step, amortized O(1/8).
#[derive(Debug, Clone)]
pub struct WeightedMovingAverage {
    period: usize,
    divider: f64,
    window: RingBuffer<f64>,
    seen: usize,
    weighted_sum: f64,
    plain_sum: f64,
    trailing_value: f64,
    bars_since_rebuild: usize,
    value: f64,
    name: String,
}

impl WeightedMovingAverage {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("WMA", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            divider: period as f64 * (period + 1) as f64 / 2.0,
            window: RingBuffer::new(period),
            seen: 0,
            weighted_sum: 0.0,
            plain_sum: 0.0,
            trailing_value: 0.0,
            bars_since_rebuild: 8 * period,
            value: f64::NAN,
            name: format!("WMA({period})"),
        })
    }

    /// Takes the next value of the series; returns the average (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        if self.period == 1 {
            self.seen = 1;
            self.value = value;
            return value;
        }
        self.window.push(value);
        if self.seen + 1 < self.period {
            self.seen += 1;
            self.plain_sum += value;
            self.weighted_sum += value * self.seen as f64;
            return self.value;
        }
        self.seen = self.period;
        self.plain_sum += value;
        self.plain_sum -= self.trailing_value;
        self.weighted_sum += value * self.period as f64;
        self.bars_since_rebuild -= 1;
        if self.bars_since_rebuild == 0 {
            self.bars_since_rebuild = 8 * self.period;
            self.plain_sum = 0.0;
            self.weighted_sum = 0.0;
            for (i, x) in self.window.iter_oldest_first().enumerate() {
                self.plain_sum += x;
                self.weighted_sum += x * (i + 1) as f64;
            }
        }
        self.trailing_value = self.window.oldest();
        self.value = self.weighted_sum / self.divider;
        self.weighted_sum -= self.plain_sum;
        self.value
    }

    pub(crate) fn lookback(&self) -> usize {
        self.period - 1
    }

    pub(crate) fn reset_state(&mut self) {
        self.window.clear();
        self.seen = 0;
        self.weighted_sum = 0.0;
        self.plain_sum = 0.0;
        self.trailing_value = 0.0;
        self.bars_since_rebuild = 8 * self.period;
        self.value = f64::NAN;
    }
}

impl Indicator for WeightedMovingAverage {
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
        &["wma"]
    }

    fn is_ready(&self) -> bool {
        self.seen >= self.period
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

    fn naive(window: &[f64]) -> f64 {
        let n = window.len() as f64;
        let weighted: f64 = window
            .iter()
            .enumerate()
            .map(|(i, x)| x * (i + 1) as f64)
            .sum();
        weighted / (n * (n + 1.0) / 2.0)
    }

    #[test]
    fn weights_recent_values_more() {
        let mut wma = WeightedMovingAverage::new(3).unwrap();
        assert!(wma.update_value(1.0).is_nan());
        assert!(wma.update_value(2.0).is_nan());
        // (1·1 + 2·2 + 3·3) / 6
        assert_eq!(wma.update_value(3.0), 14.0 / 6.0);
        assert!(wma.is_ready());
        // (2·1 + 3·2 + 10·3) / 6
        assert_eq!(wma.update_value(10.0), 38.0 / 6.0);
    }

    #[test]
    fn stays_equal_to_the_definition_across_rebuilds() {
        let values: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 * 0.25).collect();
        let mut wma = WeightedMovingAverage::new(4).unwrap();
        for (i, &x) in values.iter().enumerate() {
            let got = wma.update_value(x);
            if i >= 3 {
                let want = naive(&values[i - 3..=i]);
                assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "bar {i}");
            }
        }
    }

    #[test]
    fn reset_forgets_everything() {
        let mut wma = WeightedMovingAverage::new(2).unwrap();
        wma.update_value(5.0);
        wma.update_value(7.0);
        wma.reset();
        assert!(!wma.is_ready());
        wma.update_value(3.0);
        assert_eq!(wma.update_value(6.0), 5.0);
    }
}
