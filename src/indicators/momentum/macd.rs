//! Moving average convergence/divergence (TA-Lib `MACD`).

use crate::indicators::{BarInput, Indicator, IndicatorError, check_period};

const OUTPUT_NAMES: [&str; 3] = ["macd", "macdsignal", "macdhist"];

/// MACD line = EMA(fast) − EMA(slow), signal = EMA(signal) of the line, histogram = line − signal.
///
/// TA-Lib's alignment: the slow EMA is seeded with the mean of the first `slow` closes and the
/// fast EMA with the mean of the *last `fast` of those* (both seeds end on bar `slow`), so the
/// line starts at bar `slow`; the signal is seeded with the mean of the first `signal` line
/// values. All three outputs appear together at bar `slow + signal − 1`. Each EMA step is
/// `(x − prev)·k + prev` with k = 2/(p + 1), one fused multiply-add as in TA-Lib 0.8. As in
/// TA-Lib, a `slowperiod` below `fastperiod` is swapped; a signal period of 1 makes the signal the
/// line (histogram 0).
#[derive(Debug, Clone)]
pub struct MovingAverageConvergenceDivergence {
    fast: usize,
    slow: usize,
    signal: usize,
    fast_k: f64,
    slow_k: f64,
    signal_k: f64,
    seen: usize,
    fast_ema: f64,
    slow_ema: f64,
    signal_ema: f64,
    outputs: [f64; 3],
    name: String,
}

/// TA-Lib's EMA smoothing factor.
fn smoothing(period: usize) -> f64 {
    2.0 / (period + 1) as f64
}

impl MovingAverageConvergenceDivergence {
    pub const MIN_PERIOD: usize = 2;
    pub const MIN_SIGNAL_PERIOD: usize = 1;

    pub fn new(fast: usize, slow: usize, signal: usize) -> Result<Self, IndicatorError> {
        check_period("MACD", "fastperiod", fast, Self::MIN_PERIOD)?;
        check_period("MACD", "slowperiod", slow, Self::MIN_PERIOD)?;
        check_period("MACD", "signalperiod", signal, Self::MIN_SIGNAL_PERIOD)?;
        let name = format!("MACD({fast},{slow},{signal})");
        let (fast, slow) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        Ok(Self {
            fast,
            slow,
            signal,
            fast_k: smoothing(fast),
            slow_k: smoothing(slow),
            signal_k: smoothing(signal),
            seen: 0,
            fast_ema: 0.0,
            slow_ema: 0.0,
            signal_ema: 0.0,
            outputs: [f64::NAN; 3],
            name,
        })
    }

    /// Takes the next value of the series; returns the MACD line (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        self.seen += 1;
        let line = if self.seen <= self.slow {
            // Seeding: the slow sum over bars 1..=slow, the fast sum over its last `fast` bars.
            self.slow_ema += value;
            if self.seen > self.slow - self.fast {
                self.fast_ema += value;
            }
            if self.seen < self.slow {
                return self.outputs[0];
            }
            self.slow_ema /= self.slow as f64;
            self.fast_ema /= self.fast as f64;
            self.fast_ema - self.slow_ema
        } else {
            self.fast_ema = (value - self.fast_ema).mul_add(self.fast_k, self.fast_ema);
            self.slow_ema = (value - self.slow_ema).mul_add(self.slow_k, self.slow_ema);
            self.fast_ema - self.slow_ema
        };
        let ready_at = self.slow + self.signal - 1;
        if self.seen < ready_at {
            self.signal_ema += line;
            return self.outputs[0];
        }
        if self.seen == ready_at {
            self.signal_ema += line;
            self.signal_ema /= self.signal as f64;
        } else if self.signal == 1 {
            self.signal_ema = line;
        } else {
            self.signal_ema = (line - self.signal_ema).mul_add(self.signal_k, self.signal_ema);
        }
        self.outputs = [line, self.signal_ema, line - self.signal_ema];
        line
    }

    pub(crate) fn reset_state(&mut self) {
        self.seen = 0;
        self.fast_ema = 0.0;
        self.slow_ema = 0.0;
        self.signal_ema = 0.0;
        self.outputs = [f64::NAN; 3];
    }
}

impl Indicator for MovingAverageConvergenceDivergence {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        self.update_value(bar.close);
    }

    fn outputs(&self) -> &[f64] {
        &self.outputs
    }

    fn output_names(&self) -> &[&'static str] {
        &OUTPUT_NAMES
    }

    fn is_ready(&self) -> bool {
        self.seen >= self.slow + self.signal - 1
    }

    fn warm_up_period(&self) -> usize {
        self.slow + self.signal - 1
    }

    fn reset(&mut self) {
        self.reset_state();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_series_has_zero_line_signal_and_histogram() {
        let mut macd = MovingAverageConvergenceDivergence::new(2, 4, 3).unwrap();
        assert_eq!(macd.warm_up_period(), 6);
        for bar in 1..=8 {
            macd.update_value(5.0);
            assert_eq!(macd.is_ready(), bar >= 6, "bar {bar}");
            assert_eq!(macd.outputs()[0].is_nan(), bar < 6, "bar {bar}");
        }
        assert_eq!(macd.outputs(), [0.0, 0.0, 0.0]);
    }

    #[test]
    fn fast_seed_is_the_tail_of_the_slow_window() {
        // fast 2, slow 3, signal 1: at bar 3 the slow seed is mean(1, 2, 6) = 3 and the fast
        // seed mean(2, 6) = 4, so the line is 1; signal 1 equals the line.
        let mut macd = MovingAverageConvergenceDivergence::new(2, 3, 1).unwrap();
        macd.update_value(1.0);
        macd.update_value(2.0);
        assert_eq!(macd.update_value(6.0), 1.0);
        assert_eq!(macd.outputs(), [1.0, 1.0, 0.0]);
        assert_eq!(macd.output_names(), ["macd", "macdsignal", "macdhist"]);
    }

    #[test]
    fn periods_are_swapped_like_talib_and_reset_forgets() {
        let mut a = MovingAverageConvergenceDivergence::new(26, 12, 9).unwrap();
        let mut b = MovingAverageConvergenceDivergence::new(12, 26, 9).unwrap();
        for i in 0..60 {
            let x = 100.0 + (i as f64 * 0.7).sin();
            a.update_value(x);
            b.update_value(x);
        }
        assert_eq!(a.outputs(), b.outputs());
        a.reset();
        assert!(!a.is_ready());
        assert!(a.value().is_nan());
    }
}
