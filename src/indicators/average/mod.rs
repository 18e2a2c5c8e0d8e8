//! Moving averages, and the moving-average type that STOCH and BBANDS smooth with.

mod dema;
mod ema;
mod sma;
mod tema;
mod wma;

pub use dema::DoubleExponentialMovingAverage;
pub use ema::ExponentialMovingAverage;
pub use sma::SimpleMovingAverage;
pub use tema::TripleExponentialMovingAverage;
pub use wma::WeightedMovingAverage;

/// TA-Lib's `matype` codes that the built-ins implement (TA-Lib's default is 0, SMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaType {
    #[default]
    Sma = 0,
    Ema = 1,
    Wma = 2,
    Dema = 3,
    Tema = 4,
}

impl MaType {
    pub const ALL: [MaType; 5] = [
        MaType::Sma,
        MaType::Ema,
        MaType::Wma,
        MaType::Dema,
        MaType::Tema,
    ];

    /// The type with TA-Lib code `code` (a whole number), if implemented.
    pub fn from_code(code: f64) -> Option<MaType> {
        Self::ALL.into_iter().find(|ma| ma.code() as f64 == code)
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            MaType::Sma => "SMA",
            MaType::Ema => "EMA",
            MaType::Wma => "WMA",
            MaType::Dema => "DEMA",
            MaType::Tema => "TEMA",
        }
    }
}

/// A moving average chosen at run time, as TA-Lib's `TA_MA`: at period 1 every type is the
/// identity (TA-Lib copies the input), otherwise the type's own algorithm.
#[derive(Debug, Clone)]
pub(crate) enum MovingAverage {
    Identity,
    Sma(SimpleMovingAverage),
    Ema(ExponentialMovingAverage),
    Wma(WeightedMovingAverage),
    Dema(DoubleExponentialMovingAverage),
    Tema(TripleExponentialMovingAverage),
}

impl MovingAverage {
    /// `period` must already be validated (1..=MAX_PERIOD).
    pub(crate) fn new(ma_type: MaType, period: usize) -> Self {
        let invariant = "invariant: period validated by the caller";
        if period == 1 {
            return MovingAverage::Identity;
        }
        match ma_type {
            MaType::Sma => MovingAverage::Sma(SimpleMovingAverage::new(period).expect(invariant)),
            MaType::Ema => {
                MovingAverage::Ema(ExponentialMovingAverage::new(period).expect(invariant))
            }
            MaType::Wma => MovingAverage::Wma(WeightedMovingAverage::new(period).expect(invariant)),
            MaType::Dema => {
                MovingAverage::Dema(DoubleExponentialMovingAverage::new(period).expect(invariant))
            }
            MaType::Tema => {
                MovingAverage::Tema(TripleExponentialMovingAverage::new(period).expect(invariant))
            }
        }
    }

    /// Takes the next value; returns the average, NaN until ready.
    pub(crate) fn update_value(&mut self, value: f64) -> f64 {
        match self {
            MovingAverage::Identity => value,
            MovingAverage::Sma(ma) => ma.update_value(value),
            MovingAverage::Ema(ma) => ma.update_value(value),
            MovingAverage::Wma(ma) => ma.update_value(value),
            MovingAverage::Dema(ma) => ma.update_value(value),
            MovingAverage::Tema(ma) => ma.update_value(value),
        }
    }

    /// TA-Lib's lookback: values consumed before the first average.
    pub(crate) fn lookback(&self) -> usize {
        match self {
            MovingAverage::Identity => 0,
            MovingAverage::Sma(ma) => ma.lookback(),
            MovingAverage::Ema(ma) => ma.lookback(),
            MovingAverage::Wma(ma) => ma.lookback(),
            MovingAverage::Dema(ma) => ma.lookback(),
            MovingAverage::Tema(ma) => ma.lookback(),
        }
    }

    pub(crate) fn reset(&mut self) {
        match self {
            MovingAverage::Identity => {}
            MovingAverage::Sma(ma) => ma.reset_state(),
            MovingAverage::Ema(ma) => ma.reset_state(),
            MovingAverage::Wma(ma) => ma.reset_state(),
            MovingAverage::Dema(ma) => ma.reset_state(),
            MovingAverage::Tema(ma) => ma.reset_state(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ma_type_codes_are_talib_codes() {
        assert_eq!(MaType::from_code(0.0), Some(MaType::Sma));
        assert_eq!(MaType::from_code(4.0), Some(MaType::Tema));
        assert_eq!(MaType::from_code(5.0), None);
        assert_eq!(MaType::from_code(0.5), None);
        assert_eq!(MaType::default(), MaType::Sma);
    }

    #[test]
    fn period_one_is_the_identity_for_every_type() {
        for ma_type in MaType::ALL {
            let mut ma = MovingAverage::new(ma_type, 1);
            assert_eq!(ma.lookback(), 0);
            for x in [0.1, 0.3, 1e6, -2.5] {
                assert_eq!(ma.update_value(x), x);
            }
        }
    }
}
