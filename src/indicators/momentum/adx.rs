//! Average directional movement index (TA-Lib `ADX`).

use crate::indicators::volatility::true_range;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// TA-Lib's `TA_IS_ZERO` band (0.8: 1e-14), applied to the sum of the two DIs.
const ZERO_BAND: f64 = 1e-14;

/// Wilder's ADX: smoothed +DM, −DM and true range give +DI and −DI, DX = 100·|−DI − +DI| /
/// (−DI + +DI), and ADX is the Wilder average of DX.
///
/// TA-Lib's seeding: the first `period − 1` DMs and true ranges are summed, then each bar decays
/// the sums (`s − s/period + new`); the first ADX is the mean of the first `period` DX values, at
/// bar `2·period`, then `adx = (adx·(period − 1) + dx) / period`. A bar whose true-range sum is 0
/// or whose DI sum is within 1e-14 of 0 leaves ADX as it was.
#[derive(Debug, Clone)]
pub struct AverageDirectionalIndex {
    period: usize,
    seen: usize,
    prev_high: f64,
    prev_low: f64,
    prev_close: f64,
    minus_dm: f64,
    plus_dm: f64,
    true_range_sum: f64,
    dx_sum: f64,
    value: f64,
    name: String,
}

impl AverageDirectionalIndex {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("ADX", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            seen: 0,
            prev_high: f64::NAN,
            prev_low: f64::NAN,
            prev_close: f64::NAN,
            minus_dm: 0.0,
            plus_dm: 0.0,
            true_range_sum: 0.0,
            dx_sum: 0.0,
            value: f64::NAN,
            name: format!("ADX({period})"),
        })
    }

    /// DX of the current smoothed sums, if defined.
    fn dx(&self) -> Option<f64> {
        if self.true_range_sum > 0.0 {
            let minus_di = 100.0 * (self.minus_dm / self.true_range_sum);
            let plus_di = 100.0 * (self.plus_dm / self.true_range_sum);
            let sum = minus_di + plus_di;
            if sum.abs() >= ZERO_BAND {
                return Some(100.0 * ((minus_di - plus_di).abs() / sum));
            }
        }
        None
    }
}

impl Indicator for AverageDirectionalIndex {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        self.seen += 1;
        if self.seen == 1 {
            self.prev_high = bar.high;
            self.prev_low = bar.low;
            self.prev_close = bar.close;
            return;
        }
        let diff_plus = bar.high - self.prev_high;
        let diff_minus = self.prev_low - bar.low;
        self.prev_high = bar.high;
        self.prev_low = bar.low;
        let minus_dm1 = if diff_minus > 0.0 && diff_minus - diff_plus > 0.0 {
            diff_minus
        } else {
            0.0
        };
        let plus_dm1 = if diff_plus > 0.0 && diff_plus - diff_minus > 0.0 {
            diff_plus
        } else {
            0.0
        };
        let tr = true_range(bar.high, bar.low, self.prev_close);
        self.prev_close = bar.close;
        if self.seen <= self.period {
            // The first period − 1 movements are summed.
            self.minus_dm += minus_dm1;
            self.plus_dm += plus_dm1;
            self.true_range_sum += tr;
            return;
        }
        let period = self.period as f64;
        self.minus_dm -= self.minus_dm / period;
        self.plus_dm -= self.plus_dm / period;
        self.minus_dm += minus_dm1;
        self.plus_dm += plus_dm1;
        self.true_range_sum = self.true_range_sum - self.true_range_sum / period + tr;
        let dx = self.dx();
        if self.seen <= 2 * self.period {
            if let Some(dx) = dx {
                self.dx_sum += dx;
            }
            if self.seen == 2 * self.period {
                self.value = self.dx_sum / period;
            }
        } else if let Some(dx) = dx {
            self.value = (self.value * (period - 1.0) + dx) / period;
        }
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["adx"]
    }

    fn is_ready(&self) -> bool {
        self.seen >= 2 * self.period
    }

    fn warm_up_period(&self) -> usize {
        2 * self.period
    }

    fn reset(&mut self) {
        self.seen = 0;
        self.minus_dm = 0.0;
        self.plus_dm = 0.0;
        self.true_range_sum = 0.0;
        self.dx_sum = 0.0;
        self.value = f64::NAN;
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
    fn steady_uptrend_reads_100() {
        // Every bar: +DM 1, −DM 0, true range 2 → −DI 0, DX 100.
        let mut adx = AverageDirectionalIndex::new(3).unwrap();
        for i in 0..10 {
            let base = i as f64;
            adx.update(&bar(base + 2.0, base, base + 1.0));
            assert_eq!(adx.is_ready(), i + 1 >= 6, "bar {i}");
        }
        assert!((adx.value() - 100.0).abs() < 1e-9);
        assert_eq!(adx.warm_up_period(), 6);
    }

    #[test]
    fn nan_before_ready_and_reset_forgets() {
        let mut adx = AverageDirectionalIndex::new(2).unwrap();
        for i in 0..3 {
            adx.update(&bar(10.0 + i as f64, 9.0, 9.5));
            assert!(adx.value().is_nan());
        }
        adx.update(&bar(14.0, 9.0, 9.5));
        assert!(adx.is_ready());
        assert!(!adx.value().is_nan());
        adx.reset();
        assert!(adx.value().is_nan());
        assert!(!adx.is_ready());
    }
}
