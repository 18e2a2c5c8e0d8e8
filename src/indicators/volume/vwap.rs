//! Volume-weighted average price (not in TA-Lib).

use crate::indicators::buffer::RingBuffer;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// A running sum with Neumaier's compensation: the rounding error of every addition is kept and
/// added back, so long cumulative sums (and add-then-subtract windows) stay exact to ~1 ulp.
#[derive(Debug, Clone, Copy, Default)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn add(&mut self, x: f64) {
        let total = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - total) + x;
        } else {
            self.compensation += (x - total) + self.sum;
        }
        self.sum = total;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// VWAP = Σ(typical price × volume) / Σ volume, typical price = (high + low + close) / 3.
///
/// TA-Lib has no VWAP; this is the definition used here:
/// - [`cumulative`](Self::cumulative) (`create("VWAP", [])`, or `timeperiod` 0): over every bar
///   since the first (or since the last [`reset`](Indicator::reset), which is how an engine starts
///   a new session); ready from the first bar;
/// - [`rolling`](Self::rolling) (`timeperiod` N ≥ 1): over the last N bars; ready at bar N.
///
/// A window without any volume has no weights: its VWAP is the latest bar's typical price.
/// Sums are compensated, so the value is the exactly rounded ratio to within a few ulp however
/// long the run.
#[derive(Debug, Clone)]
pub struct VolumeWeightedAveragePrice {
    period: Option<usize>,
    /// (typical price × volume, volume) of the last `period` bars (rolling only).
    window: Option<RingBuffer<(f64, f64)>>,
    price_volume: CompensatedSum,
    volume: CompensatedSum,
    bars_with_volume: usize,
    seen: usize,
    value: f64,
    name: String,
}

impl VolumeWeightedAveragePrice {
    pub const MIN_PERIOD: usize = 1;

    /// VWAP since the first bar (or the last reset).
    pub fn cumulative() -> Self {
        Self {
            period: None,
            window: None,
            price_volume: CompensatedSum::default(),
            volume: CompensatedSum::default(),
            bars_with_volume: 0,
            seen: 0,
            value: f64::NAN,
            name: "VWAP".to_owned(),
        }
    }

    /// VWAP of the last `period` bars.
    pub fn rolling(period: usize) -> Result<Self, IndicatorError> {
        check_period("VWAP", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period: Some(period),
            window: Some(RingBuffer::new(period)),
            name: format!("VWAP({period})"),
            ..Self::cumulative()
        })
    }
}

impl Indicator for VolumeWeightedAveragePrice {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        let typical = bar.typical_price();
        let price_volume = typical * bar.volume;
        if let Some(window) = &mut self.window {
            if window.is_full() {
                let (old_price_volume, old_volume) = window.oldest();
                self.price_volume.add(-old_price_volume);
                self.volume.add(-old_volume);
                if old_volume != 0.0 {
                    self.bars_with_volume -= 1;
                }
            }
            window.push((price_volume, bar.volume));
        }
        self.price_volume.add(price_volume);
        self.volume.add(bar.volume);
        if bar.volume != 0.0 {
            self.bars_with_volume += 1;
        }
        self.seen += 1;
        if self.seen < self.period.unwrap_or(1) {
            return;
        }
        self.value = if self.bars_with_volume == 0 {
            typical
        } else {
            self.price_volume.value() / self.volume.value()
        };
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["vwap"]
    }

    fn is_ready(&self) -> bool {
        self.seen >= self.period.unwrap_or(1)
    }

    fn warm_up_period(&self) -> usize {
        self.period.unwrap_or(1)
    }

    fn reset(&mut self) {
        if let Some(window) = &mut self.window {
            window.clear();
        }
        self.price_volume = CompensatedSum::default();
        self.volume = CompensatedSum::default();
        self.bars_with_volume = 0;
        self.seen = 0;
        self.value = f64::NAN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(typical: f64, volume: f64) -> BarInput {
        BarInput {
            open: typical,
            high: typical,
            low: typical,
            close: typical,
            volume,
        }
    }

    #[test]
    fn cumulative_weights_by_volume() {
        let mut vwap = VolumeWeightedAveragePrice::cumulative();
        assert!(!vwap.is_ready());
        vwap.update(&bar(10.0, 1.0));
        assert!(vwap.is_ready());
        assert_eq!(vwap.value(), 10.0);
        vwap.update(&bar(20.0, 3.0));
        assert_eq!(vwap.value(), 17.5);
        vwap.reset();
        assert!(vwap.value().is_nan());
        vwap.update(&bar(4.0, 2.0));
        assert_eq!(vwap.value(), 4.0);
        assert_eq!(vwap.name(), "VWAP");
    }

    #[test]
    fn rolling_window_forgets_old_bars() {
        let mut vwap = VolumeWeightedAveragePrice::rolling(2).unwrap();
        vwap.update(&bar(10.0, 1.0));
        assert!(vwap.value().is_nan());
        assert!(!vwap.is_ready());
        vwap.update(&bar(20.0, 1.0));
        assert_eq!(vwap.value(), 15.0);
        vwap.update(&bar(40.0, 3.0));
        assert_eq!(vwap.value(), 35.0);
        assert_eq!(vwap.warm_up_period(), 2);
    }

    #[test]
    fn window_without_volume_reads_the_typical_price() {
        let mut vwap = VolumeWeightedAveragePrice::rolling(2).unwrap();
        vwap.update(&bar(10.0, 5.0));
        vwap.update(&bar(11.0, 0.0));
        assert_eq!(vwap.value(), 10.0);
        vwap.update(&bar(12.0, 0.0));
        assert_eq!(vwap.value(), 12.0);
        let mut cumulative = VolumeWeightedAveragePrice::cumulative();
        cumulative.update(&bar(7.0, 0.0));
        assert_eq!(cumulative.value(), 7.0);
    }

    #[test]
    fn compensated_sums_cancel_exactly() {
        let mut sum = CompensatedSum::default();
        for x in [1e16, 1.0, -1e16, 0.1, 0.2] {
            sum.add(x);
        }
        // Plain summation loses the 1.0 entirely.
        assert!((sum.value() - 1.3).abs() < 1e-15, "{}", sum.value());
    }
}
