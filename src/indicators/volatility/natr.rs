//! Normalized average true range (TA-Lib `NATR`).

use super::atr::WilderTrueRange;
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// NATR = ATR / close · 100 (0 on a zero close), first value at bar `period + 1`.
///
/// As TA-Lib 0.8: at period 1 the output is the raw true range, not normalized.
#[derive(Debug, Clone)]
pub struct NormalizedAverageTrueRange {
    period: usize,
    core: WilderTrueRange,
    value: f64,
    name: String,
}

impl NormalizedAverageTrueRange {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("NATR", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            core: WilderTrueRange::new(period),
            value: f64::NAN,
            name: format!("NATR({period})"),
        })
    }
}

impl Indicator for NormalizedAverageTrueRange {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        if let Some(atr) = self.core.update(bar) {
            self.value = if self.period == 1 {
                atr
            } else if bar.close != 0.0 {
                (atr / bar.close) * 100.0
            } else {
                0.0
            };
        }
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["natr"]
    }

    fn is_ready(&self) -> bool {
        self.core.is_ready()
    }

    fn warm_up_period(&self) -> usize {
        self.period + 1
    }

    fn reset(&mut self) {
        self.core.reset();
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
    fn atr_as_a_percentage_of_the_close() {
        let mut natr = NormalizedAverageTrueRange::new(2).unwrap();
        natr.update(&bar(11.0, 9.0, 10.0));
        natr.update(&bar(12.0, 10.0, 11.0)); // tr 2
        assert!(natr.value().is_nan());
        natr.update(&bar(15.0, 11.0, 12.0)); // tr 4: atr 3, close 12 → 25
        assert!(natr.is_ready());
        assert_eq!(natr.value(), 25.0);
        natr.update(&bar(1.0, -1.0, 0.0)); // zero close
        assert_eq!(natr.value(), 0.0);
        natr.reset();
        assert!(natr.value().is_nan());
        assert!(!natr.is_ready());
    }
}
