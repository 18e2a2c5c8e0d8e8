//! Bollinger bands (TA-Lib `BBANDS`).

use super::stddev::RollingVariance;
use crate::indicators::average::{MaType, MovingAverage};
use crate::indicators::{BarInput, Indicator, IndicatorError, check_period, check_real};

const OUTPUT_NAMES: [&str; 3] = ["upperband", "middleband", "lowerband"];

/// Middle band = MA(close, `period`) (TA-Lib's default SMA), upper/lower = middle ± `nbdevup` /
/// `nbdevdn` × the population standard deviation of the last `period` closes.
///
/// As in TA-Lib, the deviation is always around the plain mean of the window, whatever the
/// middle band's MA type, and it starts its running sums where the middle band's first value
/// needs them (so for DEMA/TEMA middles it skips the bars before).
#[derive(Debug, Clone)]
pub struct BollingerBands {
    nbdev_up: f64,
    nbdev_down: f64,
    middle: MovingAverage,
    variance: RollingVariance,
    /// Bars before the deviation's first window starts (0 unless the MA has a longer lookback).
    variance_delay: usize,
    warm_up: usize,
    seen: usize,
    outputs: [f64; 3],
    name: String,
}

impl BollingerBands {
    pub const MIN_PERIOD: usize = 2;

    pub fn new(
        period: usize,
        nbdev_up: f64,
        nbdev_down: f64,
        ma_type: MaType,
    ) -> Result<Self, IndicatorError> {
        check_period("BBANDS", "timeperiod", period, Self::MIN_PERIOD)?;
        check_real("BBANDS", "nbdevup", nbdev_up)?;
        check_real("BBANDS", "nbdevdn", nbdev_down)?;
        let middle = MovingAverage::new(ma_type, period);
        let lookback = middle.lookback().max(period - 1);
        let name = if ma_type == MaType::Sma {
            format!("BBANDS({period},{nbdev_up},{nbdev_down})")
        } else {
            format!(
                "BBANDS({period},{nbdev_up},{nbdev_down},{})",
                ma_type.name()
            )
        };
        Ok(Self {
            nbdev_up,
            nbdev_down,
            middle,
            variance: RollingVariance::new(period),
            variance_delay: lookback - (period - 1),
            warm_up: lookback + 1,
            seen: 0,
            outputs: [f64::NAN; 3],
            name,
        })
    }

    /// Takes the next value of the series; returns the middle band (NaN until ready).
    pub fn update_value(&mut self, value: f64) -> f64 {
        self.seen += 1;
        let middle = self.middle.update_value(value);
        if self.seen <= self.variance_delay {
            return self.outputs[1];
        }
        let Some(variance) = self.variance.update(value) else {
            return self.outputs[1];
        };
        let deviation = variance.sqrt();
        self.outputs = if self.nbdev_up == self.nbdev_down {
            let width = deviation * self.nbdev_up;
            [middle + width, middle, middle - width]
        } else {
            // TA-Lib 0.8 fuses the upper band's multiply-add (and only that one).
            [
                deviation.mul_add(self.nbdev_up, middle),
                middle,
                middle - deviation * self.nbdev_down,
            ]
        };
        middle
    }
}

impl Indicator for BollingerBands {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, bar: &BarInput) {
        self.update_value(bar.close);
    }

    fn value(&self) -> f64 {
        self.outputs[1]
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
        self.middle.reset();
        self.variance.reset();
        self.seen = 0;
        self.outputs = [f64::NAN; 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_around_the_sma() {
        let mut bb = BollingerBands::new(4, 2.0, 1.0, MaType::Sma).unwrap();
        for x in [2.0, 4.0, 4.0] {
            bb.update_value(x);
            assert!(!bb.is_ready());
            assert!(bb.outputs().iter().all(|v| v.is_nan()));
        }
        // 2, 4, 4, 6: mean 4, deviation √2.
        bb.update_value(6.0);
        assert!(bb.is_ready());
        let [upper, middle, lower] = [bb.outputs()[0], bb.outputs()[1], bb.outputs()[2]];
        assert_eq!(middle, 4.0);
        assert_eq!(bb.value(), 4.0);
        assert!((upper - (4.0 + 2.0 * 2f64.sqrt())).abs() < 1e-12);
        assert!((lower - (4.0 - 2f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn warm_up_follows_the_middle_band() {
        let tema = BollingerBands::new(5, 2.0, 2.0, MaType::Tema).unwrap();
        assert_eq!(tema.warm_up_period(), 13);
        let mut ema = BollingerBands::new(5, 2.0, 2.0, MaType::Ema).unwrap();
        assert_eq!(ema.warm_up_period(), 5);
        for _ in 0..6 {
            ema.update_value(3.0);
        }
        assert_eq!(ema.outputs(), [3.0, 3.0, 3.0]);
        ema.reset();
        assert!(!ema.is_ready());
        assert!(ema.value().is_nan());
    }
}
