//! Average true range (TA-Lib `ATR`).

use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

/// The greatest of high − low, |previous close − high| and |previous close − low|, compared in
/// TA-Lib's order.
pub(crate) fn true_range(high: f64, low: f64, previous_close: f64) -> f64 {
    let mut greatest = high - low;
    let to_high = (previous_close - high).abs();
    if to_high > greatest {
        greatest = to_high;
    }
    let to_low = (previous_close - low).abs();
    if to_low > greatest {
        greatest = to_low;
    }
    greatest
}

/// Wilder's average of the true range, shared by ATR and NATR.
///
/// Seeded like TA-Lib: the mean of the first `period` true ranges (bars 2..=period + 1), then
/// `atr = β·atr + α·tr` with β = (period − 1)/period and α = 1 − β, as one fused multiply-add on
/// the previous value (TA-Lib 0.8's exact step).
#[derive(Debug, Clone)]
pub(crate) struct WilderTrueRange {
    period: usize,
    alpha: f64,
    beta: f64,
    seen: usize,
    previous_close: f64,
    average: f64,
}

impl WilderTrueRange {
    pub(crate) fn new(period: usize) -> Self {
        let beta = (period - 1) as f64 / period as f64;
        Self {
            period,
            alpha: 1.0 - beta,
            beta,
            seen: 0,
            previous_close: f64::NAN,
            average: 0.0,
        }
    }

    /// Takes the next bar; returns the average true range once ready.
    pub(crate) fn update(&mut self, bar: &BarInput) -> Option<f64> {
        let previous_close = std::mem::replace(&mut self.previous_close, bar.close);
        if self.seen == 0 {
            self.seen = 1;
            return None;
        }
        let tr = true_range(bar.high, bar.low, previous_close);
        if self.seen <= self.period {
            self.seen += 1;
            self.average += tr;
            if self.seen <= self.period {
                return None;
            }
            self.average /= self.period as f64;
        } else {
            self.average = self.beta.mul_add(self.average, self.alpha * tr);
        }
        Some(self.average)
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.seen > self.period
    }

    pub(crate) fn reset(&mut self) {
        self.seen = 0;
        self.previous_close = f64::NAN;
        self.average = 0.0;
    }
}

/// Wilder's average true range over `period` bars; first value at bar `period + 1`.
#[derive(Debug, Clone)]
pub struct AverageTrueRange {
    period: usize,
    core: WilderTrueRange,
    value: f64,
    name: String,
}

impl AverageTrueRange {
    pub const MIN_PERIOD: usize = 1;

    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        check_period("ATR", "timeperiod", period, Self::MIN_PERIOD)?;
        Ok(Self {
            period,
            core: WilderTrueRange::new(period),
            value: f64::NAN,
            name: format!("ATR({period})"),
        })
    }
}

impl Indicator for AverageTrueRange {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        if let Some(atr) = self.core.update(bar) {
            self.value = atr;
        }
    }

    fn outputs(&self) -> &[f64] {
        std::slice::from_ref(&self.value)
    }

    fn output_names(&self) -> &[&'static str] {
        &["atr"]
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
    fn true_range_covers_gaps() {
        assert_eq!(true_range(12.0, 10.0, 11.0), 2.0);
        assert_eq!(true_range(12.0, 10.0, 5.0), 7.0); // gap up
        assert_eq!(true_range(12.0, 10.0, 16.0), 6.0); // gap down
    }

    #[test]
    fn seeds_with_the_mean_true_range_then_smooths() {
        let mut atr = AverageTrueRange::new(2).unwrap();
        atr.update(&bar(11.0, 9.0, 10.0));
        atr.update(&bar(12.0, 10.0, 11.0)); // tr 2
        assert!(atr.value().is_nan());
        assert!(!atr.is_ready());
        atr.update(&bar(15.0, 11.0, 14.0)); // tr 4
        assert!(atr.is_ready());
        assert_eq!(atr.value(), 3.0);
        atr.update(&bar(15.0, 14.0, 14.0)); // tr 1: (3 + 1) / 2
        assert_eq!(atr.value(), 2.0);
        assert_eq!(atr.warm_up_period(), 3);
        atr.reset();
        assert!(atr.value().is_nan());
        assert!(!atr.is_ready());
    }

    #[test]
    fn period_one_is_the_true_range() {
        let mut atr = AverageTrueRange::new(1).unwrap();
        atr.update(&bar(11.0, 9.0, 10.0));
        atr.update(&bar(12.0, 10.0, 11.0));
        assert_eq!(atr.value(), 2.0);
        atr.update(&bar(20.0, 15.0, 16.0));
        assert_eq!(atr.value(), 9.0);
    }
}
