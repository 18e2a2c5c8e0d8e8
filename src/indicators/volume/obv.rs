//! On-balance volume (TA-Lib `OBV`).

use crate::indicators::{BarInput, Indicator};

/// Running volume signed by the close's direction: starts at the first bar's volume, then adds
/// the volume when the close rose, subtracts it when it fell, keeps it when unchanged. Ready
/// from the first bar (TA-Lib's lookback is 0).
#[derive(Debug, Clone)]
pub struct OnBalanceVolume {
    started: bool,
    previous_close: f64,
    value: f64,
}

impl OnBalanceVolume {
    pub fn new() -> Self {
        Self {
            started: false,
            previous_close: f64::NAN,
            value: f64::NAN,
        }
    }
}

impl Default for OnBalanceVolume {
    fn default() -> Self {
        Self::new()
    }
}

impl Indicator for OnBalanceVolume {
    fn name(&self) -> &str {
        "OBV"
    }

    fn update(&mut self, bar: &BarInput) {
        if !self.started {
            self.started = true;
            self.value = bar.volume;
        } else if bar.close > self.previous_close {
            self.value += bar.volume;
        } else if bar.close < self.previous_close {
            self.value -= bar.volume;
        }
        self.previous_close = bar.close;
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["obv"]
    }

    fn is_ready(&self) -> bool {
        self.started
    }

    fn warm_up_period(&self) -> usize {
        1
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(close: f64, volume: f64) -> BarInput {
        BarInput {
            open: close,
            high: close,
            low: close,
            close,
            volume,
        }
    }

    #[test]
    fn signed_running_volume_from_the_first_bar() {
        let mut obv = OnBalanceVolume::new();
        assert!(!obv.is_ready());
        assert!(obv.value().is_nan());
        obv.update(&bar(10.0, 100.0));
        assert!(obv.is_ready());
        assert_eq!(obv.value(), 100.0);
        obv.update(&bar(11.0, 50.0));
        assert_eq!(obv.value(), 150.0);
        obv.update(&bar(11.0, 70.0));
        assert_eq!(obv.value(), 150.0);
        obv.update(&bar(9.0, 30.0));
        assert_eq!(obv.value(), 120.0);
        obv.reset();
        assert!(obv.value().is_nan());
        assert!(!obv.is_ready());
    }
}
