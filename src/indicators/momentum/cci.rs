//! Commodity channel index (TA-Lib `CCI`).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// TA-Lib 0.8's flatness band, relative to the window's mean price (`TA_EPSILON`).
const EPSILON: f64 = 1e-14;

/// CCI = (tp − mean(tp)) / (0.015 · mean |tp − mean(tp)|) over `period` typical prices
/// tp = (high + low + close) / 3; 0 where the numerator or the mean deviation is at most
/// 1e-14 × |mean| (a flat window: identical prices leave only rounding residue), as TA-Lib 0.8.
///
/// *Not O(1):* the mean deviation needs every value of the window against the current mean, so
/// each bar costs O(period), as in TA-Lib. The window is summed in TA-Lib's circular-buffer order
/// so the mean, and therefore the near-zero numerator, are TA-Lib's to the bit.
#[derive(Debug, Clone)]
pub struct CommodityChannelIndex {
    period: usize,
    window: RingBuffer<f64>,
    value: f64,
    name: String,
}

impl CommodityChannelIndex {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("CCI", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            window: RingBuffer::new(period),
            value: f64::NAN,
            name: format!("CCI({period})"),
        })
    }
}

impl Indicator for CommodityChannelIndex {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        let last = bar.typical_price();
        self.window.push(last);
        if !self.window.is_full() {
            return;
        }
        let period = self.period as f64;
        let slots = self.window.slots();
        let mut average = 0.0;
        for &tp in slots {
            average += tp;
        }
        average /= period;
        let mut deviation = 0.0;
        for &tp in slots {
            deviation += (tp - average).abs();
        }
        deviation /= period;
        let numerator = last - average;
        let band = EPSILON * average.abs();
        self.value = if numerator.abs() <= band || deviation.abs() <= band {
            0.0
        } else {
            numerator / (0.015 * deviation)
        };
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["cci"]
    }

    fn is_ready(&self) -> bool {
        self.window.is_full()
    }

    fn warm_up_period(&self) -> usize {
        self.period
    }

    fn reset(&mut self) {
        self.window.clear();
        self.value = f64::NAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typical(tp: f64) -> BarInput {
        BarInput {
            open: tp,
            high: tp,
            low: tp,
            close: tp,
            volume: 0.0,
        }
    }

    #[test]
    fn deviation_from_the_mean_in_units_of_mean_deviation() {
        // tp 1, 2, 3, 6: mean 3, mean deviation (2 + 1 + 0 + 3) / 4 = 1.5 → 3 / (0.015 · 1.5).
        let mut cci = CommodityChannelIndex::new(4).unwrap();
        for tp in [1.0, 2.0, 3.0] {
            cci.update(&typical(tp));
            assert!(cci.value().is_nan());
            assert!(!cci.is_ready());
        }
        cci.update(&typical(6.0));
        assert!(cci.is_ready());
        assert!((cci.value() - 3.0 / 0.0225).abs() < 1e-9);
    }

    #[test]
    fn flat_window_reads_zero_and_reset_forgets() {
        let mut cci = CommodityChannelIndex::new(3).unwrap();
        for _ in 0..4 {
            cci.update(&typical(0.1));
        }
        assert_eq!(cci.value(), 0.0);
        cci.reset();
        assert!(cci.value().is_nan());
        assert!(!cci.is_ready());
    }
}
