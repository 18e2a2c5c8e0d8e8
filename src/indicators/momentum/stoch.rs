//! Slow stochastic oscillator (TA-Lib `STOCH`).

use crate::indicators::average::{MaType, MovingAverage};
use crate::indicators::buffer::{RollingMax, RollingMin};
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

const OUTPUT_NAMES: [&str; 2] = ["slowk", "slowd"];

/// Fast %K = (close − lowest low) / (highest high − lowest low) · 100 over `fastk_period` bars,
/// slow %K = MA(fast %K, `slowk_period`), slow %D = MA(slow %K, `slowd_period`).
///
/// As in TA-Lib: a window whose range is zero within 1e-14 of its extremes gives a fast %K of 0;
/// both outputs appear together once %D is ready; the MA types are TA-Lib's `matype` codes
/// (default SMA). The highest/lowest come from monotonic deques (amortized O(1), exact).
#[derive(Debug, Clone)]
pub struct Stochastic {
    fastk_period: usize,
    warm_up: usize,
    highest: RollingMax,
    lowest: RollingMin,
    slow_k: MovingAverage,
    slow_d: MovingAverage,
    seen: usize,
    outputs: [f64; 2],
    name: String,
}

impl Stochastic {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(
        fastk_period: usize,
        slowk_period: usize,
        slowk_matype: MaType,
        slowd_period: usize,
        slowd_matype: MaType,
    ) -> Result<Self, IndicatorError> {
        check_period("STOCH", "fastk_period", fastk_period, Self::MIN_PERIOD)?;
        check_period("STOCH", "slowk_period", slowk_period, Self::MIN_PERIOD)?;
        check_period("STOCH", "slowd_period", slowd_period, Self::MIN_PERIOD)?;
        let slow_k = MovingAverage::new(slowk_matype, slowk_period);
        let slow_d = MovingAverage::new(slowd_matype, slowd_period);
        let warm_up = fastk_period + slow_k.lookback() + slow_d.lookback();
        let name = if slowk_matype == MaType::Sma && slowd_matype == MaType::Sma {
            format!("STOCH({fastk_period},{slowk_period},{slowd_period})")
        } else {
            format!(
                "STOCH({fastk_period},{slowk_period},{},{slowd_period},{})",
                slowk_matype.name(),
                slowd_matype.name()
            )
        };
        Ok(Self {
            fastk_period,
            warm_up,
            highest: RollingMax::new(fastk_period),
            lowest: RollingMin::new(fastk_period),
            slow_k,
            slow_d,
            seen: 0,
            outputs: [f64::NAN; 2],
            name,
        })
    }
}

impl Indicator for Stochastic {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        self.seen += 1;
        let highest = self.highest.push(bar.high);
        let lowest = self.lowest.push(bar.low);
        if self.seen < self.fastk_period {
            return;
        }
        let range = highest - lowest;
        let fast_k = if range.abs() <= 1e-14 * (highest.abs() + lowest.abs()) {
            0.0
        } else {
            ((bar.close - lowest) / range) * 100.0
        };
        let slow_k = self.slow_k.update_value(fast_k);
        if slow_k.is_nan() {
            return;
        }
        let slow_d = self.slow_d.update_value(slow_k);
        if self.seen >= self.warm_up {
            self.outputs = [slow_k, slow_d];
        }
    }

    fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn output_names(&self) -> &[&'static str] {
        &OUTPUT_NAMES
    }

    fn is_ready(&self) -> bool {
        self.seen >= self.warm_up
    }

    fn warm_up_period(&self) -> usize {
        self.warm_up
    }

    fn reset(&mut self) {
        self.highest.clear();
        self.lowest.clear();
        self.slow_k.reset();
        self.slow_d.reset();
        self.seen = 0;
        self.outputs = [f64::NAN; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(high: f64, low: f64, close: f64) -> BarInput {
        BarInput {
            open: close,
            high,
            low,
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn fast_k_without_smoothing() {
        let mut stoch = Stochastic::new(2, 1, MaType::Sma, 1, MaType::Sma).unwrap();
        assert_eq!(stoch.warm_up_period(), 2);
        stoch.update(&bar(10.0, 8.0, 9.0));
        assert!(!stoch.is_ready());
        assert!(stoch.value().is_nan());
        // Window highs 10, 12; lows 8, 9: (11 − 8) / (4 / 100) = 75.
        stoch.update(&bar(12.0, 9.0, 11.0));
        assert!(stoch.is_ready());
        assert_eq!(stoch.outputs(), [75.0, 75.0]);
    }

    #[test]
    fn smoothed_with_sma_and_flat_window_is_zero() {
        let mut stoch = Stochastic::new(1, 2, MaType::Sma, 2, MaType::Sma).unwrap();
        assert_eq!(stoch.warm_up_period(), 3);
        stoch.update(&bar(10.0, 0.0, 5.0)); // fast %K 50
        stoch.update(&bar(10.0, 0.0, 10.0)); // 100 → slow %K 75
        assert!(stoch.value().is_nan());
        stoch.update(&bar(4.0, 4.0, 4.0)); // flat: 0 → slow %K 50, slow %D 62.5
        assert_eq!(stoch.outputs(), [50.0, 62.5]);
        stoch.reset();
        assert!(!stoch.is_ready());
        assert!(stoch.outputs()[1].is_nan());
    }
}
