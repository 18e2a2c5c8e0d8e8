//! Standard deviation (TA-Lib `STDDEV`) and the rolling variance it shares with BBANDS.

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period, check_real};

/// Population variance of the last `period` values, TA-Lib 0.8's cancellation-free algorithm.
///
/// The running sums hold deviations from a *shift* (the first value, later the window mean), so
/// `E[d²] − E[d]²` subtracts variance-sized numbers, never mean²-sized ones. The shift is
/// re-anchored with a fresh two-pass over the window when the variance falls below 1e-6 of the
/// mean squared deviation, when a value leaving the window dwarfs the rest, and at least every
/// 32·period bars; after a re-anchor a variance below 1e-12 of it is exactly 0 (a flat window).
/// The re-anchor is the only O(period) step, rare by construction (amortized O(1)).
#[derive(Debug, Clone)]
pub(crate) struct RollingVariance {
    period: usize,
    inv_period: f64,
    window: RingBuffer<f64>,
    shift: f64,
    total: f64,
    total_squares: f64,
    bars_until_reanchor: usize,
}

impl RollingVariance {
    /// `period` ≥ 1 (validated by the caller).
    pub(crate) fn new(period: usize) -> Self {
        Self {
            period,
            inv_period: 1.0 / period as f64,
            window: RingBuffer::new(period),
            shift: 0.0,
            total: 0.0,
            total_squares: 0.0,
            bars_until_reanchor: 32 * period,
        }
    }

    /// Takes the next value; returns the variance of the window ending with it once full.
    pub(crate) fn update(&mut self, value: f64) -> Option<f64> {
        if self.window.is_empty() {
            self.shift = value;
        }
        self.window.push(value);
        let deviation = value - self.shift;
        self.total += deviation;
        self.total_squares += deviation * deviation;
        if !self.window.is_full() {
            return None;
        }
        let mean = self.total * self.inv_period;
        let mut variance = self.total_squares * self.inv_period - mean * mean;

        // The oldest value leaves before the next bar.
        let leaving = self.window.oldest() - self.shift;
        self.total -= leaving;
        let leaving_square = leaving * leaving;
        self.total_squares -= leaving_square;

        self.bars_until_reanchor -= 1;
        if variance < 1e-6 * (self.total_squares * self.inv_period)
            || leaving_square > 1e6 * self.total_squares
            || self.bars_until_reanchor == 0
        {
            variance = self.reanchor();
        }
        Some(variance)
    }

    /// Re-anchors the shift on the window mean and rebuilds the sums (two passes, oldest first);
    /// returns the fresh variance of the current window.
    fn reanchor(&mut self) -> f64 {
        self.bars_until_reanchor = 32 * self.period;
        let mut sum = 0.0;
        for x in self.window.iter_oldest_first() {
            sum += x;
        }
        self.shift = sum * self.inv_period;
        self.total = 0.0;
        self.total_squares = 0.0;
        for x in self.window.iter_oldest_first() {
            let deviation = x - self.shift;
            self.total += deviation;
            self.total_squares += deviation * deviation;
        }
        let mean = self.total * self.inv_period;
        let mut variance = self.total_squares * self.inv_period - mean * mean;
        if variance < 1e-12 * (self.total_squares * self.inv_period) {
            variance = 0.0;
        }
        let leaving = self.window.oldest() - self.shift;
        self.total -= leaving;
        self.total_squares -= leaving * leaving;
        variance
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.window.is_full()
    }

    pub(crate) fn reset(&mut self) {
        self.window.clear();
        self.shift = 0.0;
        self.total = 0.0;
        self.total_squares = 0.0;
        self.bars_until_reanchor = 32 * self.period;
    }
}

/// Population standard deviation of the last `period` closes times `nbdev`.
#[derive(Debug, Clone)]
pub struct StandardDeviation {
    period: usize,
    nbdev: f64,
    variance: RollingVariance,
    value: f64,
    name: String,
}

impl StandardDeviation {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(period: usize, nbdev: f64) -> Result<Self, IndicatorError> {
        check_period("STDDEV", "timeperiod", period, Self::MIN_PERIOD)?;
        check_real("STDDEV", "nbdev", nbdev)?;
        Ok(Self {
            period,
            nbdev,
            variance: RollingVariance::new(period),
            value: f64::NAN,
            name: format!("STDDEV({period},{nbdev})"),
        })
    }

    /// Takes the next value of the series; returns the deviation (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        if let Some(variance) = self.variance.update(value) {
            self.value = variance.sqrt() * self.nbdev;
        }
        self.value
    }
}

impl Indicator for StandardDeviation {
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
        &["stddev"]
    }

    fn is_ready(&self) -> bool {
        self.variance.is_ready()
    }

    fn warm_up_period(&self) -> usize {
        self.period
    }

    fn reset(&mut self) {
        self.variance.reset();
        self.value = f64::NAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_deviation_times_nbdev() {
        let mut sd = StandardDeviation::new(4, 2.0).unwrap();
        for x in [2.0, 4.0, 4.0] {
            assert!(sd.update_value(x).is_nan());
            assert!(!sd.is_ready());
        }
        // 2, 4, 4, 6: mean 4, variance (4 + 0 + 0 + 4) / 4 = 2.
        let got = sd.update_value(6.0);
        assert!((got - 2.0 * 2f64.sqrt()).abs() < 1e-12);
        assert!(sd.is_ready());
    }

    #[test]
    fn flat_window_is_exactly_zero_and_small_spreads_survive() {
        let mut sd = StandardDeviation::new(3, 1.0).unwrap();
        for x in [100.1, 99.7, 100.3, 100.3, 100.3, 100.3] {
            sd.update_value(x);
        }
        assert_eq!(sd.value(), 0.0);
        // A tiny spread on a large level is measured, not zeroed.
        let mut fine = StandardDeviation::new(2, 1.0).unwrap();
        fine.update_value(100.0);
        let got = fine.update_value(100.0 + 2e-8);
        assert!((got - 1e-8).abs() < 1e-12, "{got}");
    }

    #[test]
    fn matches_a_two_pass_computation_over_long_series() {
        let values: Vec<f64> = (0..5000)
            .map(|i| 1e4 + ((i * 7919) % 1000) as f64 * 0.01)
            .collect();
        let mut sd = StandardDeviation::new(7, 1.0).unwrap();
        for (i, &x) in values.iter().enumerate() {
            let got = sd.update_value(x);
            if i >= 6 {
                let window = &values[i - 6..=i];
                let mean = window.iter().sum::<f64>() / 7.0;
                let want = (window.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 7.0).sqrt();
                assert!(
                    (got - want).abs() <= 1e-9 * want.max(1e-9),
                    "bar {i}: {got} vs {want}"
                );
            }
        }
        sd.reset();
        assert!(!sd.is_ready());
        assert!(sd.value().is_nan());
    }
}
