//! Built-in technical indicators: incremental, allocation-free per bar, equal to TA-Lib.
//!
//! Every indicator takes one closed bar at a time ([`Indicator::update`]) in O(1) (amortized) and
//! allocates nothing after construction: its windows are ring buffers sized by its parameters.
//! After its warm-up each output equals the real TA-Lib's (the C library that the `TA-Lib` Python
//! package 0.8.2 ships, 0.8.1) on the same input fed from the first bar, within 1e-9 relative
//! (in practice bit for bit): the algorithms, seeds, guards and floating-point operation order are
//! TA-Lib's. The tests replay `tests/fixtures/talib/`, written by `make_fixtures.py` with the real
//! TA-Lib. Before the warm-up every output is NaN and [`Indicator::is_ready`] is false.
//!
//! Vocabulary (LEAN): `update`, `value`, `is_ready`, `warm_up_period`, `reset`. Layout
//! (NautilusTrader): one file per indicator under `average/`, `momentum/`, `volatility/`,
//! `volume/`. [`create`] builds any of them by TA-Lib name and TA-Lib parameter names.
//!
//! Indicators on one series (SMA, EMA, RSI, MACD, BBANDS…) read the bar's close in `update`;
//! their typed constructors also offer `update_value` to feed any other series.
//!
//! Pure Rust: no pyo3, no I/O.

pub mod average;
mod buffer;
pub mod momentum;
pub mod volatility;
pub mod volume;

pub use average::{
    DoubleExponentialMovingAverage, ExponentialMovingAverage, MaType, SimpleMovingAverage,
    TripleExponentialMovingAverage, WeightedMovingAverage,
};
pub use momentum::{
    AverageDirectionalIndex, CommodityChannelIndex, Momentum, MoneyFlowIndex,
    MovingAverageConvergenceDivergence, RateOfChange, RelativeStrengthIndex, Stochastic,
    WilliamsPercentR,
};
pub use volatility::{
    AverageTrueRange, BollingerBands, NormalizedAverageTrueRange, StandardDeviation,
};
pub use volume::{OnBalanceVolume, VolumeWeightedAveragePrice};

/// One closed bar, as an indicator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BarInput {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl BarInput {
    /// (high + low + close) / 3, in TA-Lib's operation order.
    pub fn typical_price(&self) -> f64 {
        (self.high + self.low + self.close) / 3.0
    }
}

/// An incremental indicator: one [`update`](Indicator::update) per closed bar, in time order.
pub trait Indicator: Send {
    /// Short name with parameters, e.g. `RSI(14)`.
    fn name(&self) -> &str;
    /// Takes the next closed bar. O(1) amortized, no allocation.
    fn update(&mut self, bar: &BarInput);
    /// The primary output of the latest bar (the first of [`outputs`](Indicator::outputs)); NaN
    /// until ready.
    fn value(&self) -> f64 {
        self.outputs()[0]
    }
    /// Every output of the latest bar, in the order of [`output_names`](Indicator::output_names);
    /// NaN until ready.
    fn outputs(&self) -> &[f64];
    /// TA-Lib's names of the outputs (`macd`, `macdsignal`, `macdhist`; `upperband`,
    /// `middleband`, `lowerband`; `slowk`, `slowd`), or the indicator's own for single outputs.
    fn output_names(&self) -> &[&'static str];
    /// True from the first bar with a value (bar number `warm_up_period()`, counting from 1).
    fn is_ready(&self) -> bool;
    /// Bars needed before the first value: TA-Lib's lookback + 1.
    fn warm_up_period(&self) -> usize;
    /// Forgets every bar, as if just constructed.
    fn reset(&mut self);
}

/// Largest period TA-Lib accepts.
pub const MAX_PERIOD: usize = 100_000;

/// Largest magnitude TA-Lib accepts for a real parameter (`TA_REAL_MAX`).
pub const MAX_REAL_PARAMETER: f64 = 3e37;

/// Why an indicator could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndicatorError {
    #[error("unknown indicator `{name}`; the built-in indicators are {accepted}")]
    UnknownIndicator { name: String, accepted: String },
    #[error("`{indicator}` has no parameter `{parameter}`; it accepts {accepted}")]
    UnknownParameter {
        indicator: &'static str,
        parameter: String,
        accepted: String,
    },
    #[error("parameter `{parameter}` of `{indicator}` is given more than once")]
    DuplicateParameter {
        indicator: &'static str,
        parameter: String,
    },
    #[error("invalid `{parameter}` = {value} for `{indicator}`: expected {expected}")]
    InvalidParameter {
        indicator: &'static str,
        parameter: &'static str,
        value: f64,
        expected: String,
    },
}

/// Checks a period against TA-Lib's range `min..=MAX_PERIOD`.
pub(crate) fn check_period(
    indicator: &'static str,
    parameter: &'static str,
    value: usize,
    min: usize,
) -> Result<(), IndicatorError> {
    if (min..=MAX_PERIOD).contains(&value) {
        Ok(())
    } else {
        Err(IndicatorError::InvalidParameter {
            indicator,
            parameter,
            value: value as f64,
            expected: period_range(min),
        })
    }
}

/// Checks a real parameter (a deviation multiplier) against TA-Lib's range.
pub(crate) fn check_real(
    indicator: &'static str,
    parameter: &'static str,
    value: f64,
) -> Result<(), IndicatorError> {
    if value.is_finite() && value.abs() <= MAX_REAL_PARAMETER {
        Ok(())
    } else {
        Err(IndicatorError::InvalidParameter {
            indicator,
            parameter,
            value,
            expected: real_range(),
        })
    }
}

fn period_range(min: usize) -> String {
    format!("an integer from {min} to {MAX_PERIOD}")
}

fn real_range() -> String {
    format!("a finite number from -{MAX_REAL_PARAMETER:e} to {MAX_REAL_PARAMETER:e}")
}

fn ma_type_range() -> String {
    let codes: Vec<String> = MaType::ALL
        .iter()
        .map(|ma| format!("{} ({})", ma.code(), ma.name()))
        .collect();
    format!("one of {}", codes.join(", "))
}

/// What kind of value a parameter takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Period { min: usize },
    Real,
    MaType,
}

/// One parameter accepted by [`create`], named as in TA-Lib.
#[derive(Debug, Clone, Copy)]
struct Param {
    name: &'static str,
    kind: Kind,
    default: f64,
}

const fn period(name: &'static str, default: usize, min: usize) -> Param {
    Param {
        name,
        kind: Kind::Period { min },
        default: default as f64,
    }
}

const fn real(name: &'static str, default: f64) -> Param {
    Param {
        name,
        kind: Kind::Real,
        default,
    }
}

const fn ma_type(name: &'static str) -> Param {
    Param {
        name,
        kind: Kind::MaType,
        default: 0.0,
    }
}

impl Param {
    fn describe(&self) -> String {
        let range = match self.kind {
            Kind::Period { min } => period_range(min),
            Kind::Real => real_range(),
            Kind::MaType => ma_type_range(),
        };
        format!("`{}` ({range}, default {})", self.name, self.default)
    }

    fn validate(&self, indicator: &'static str, value: f64) -> Result<f64, IndicatorError> {
        let valid = match self.kind {
            Kind::Period { min } => {
                value.fract() == 0.0 && value >= min as f64 && value <= MAX_PERIOD as f64
            }
            Kind::Real => value.is_finite() && value.abs() <= MAX_REAL_PARAMETER,
            Kind::MaType => value.fract() == 0.0 && MaType::from_code(value).is_some(),
        };
        if valid {
            return Ok(value);
        }
        let expected = match self.kind {
            Kind::Period { min } => period_range(min),
            Kind::Real => real_range(),
            Kind::MaType => ma_type_range(),
        };
        Err(IndicatorError::InvalidParameter {
            indicator,
            parameter: self.name,
            value,
            expected,
        })
    }
}

/// Validated parameter values of one [`create`] call, in the order of the indicator's [`Spec`].
struct Args<'a>(&'a [f64]);

impl Args<'_> {
    fn period(&self, index: usize) -> usize {
        // Validated: a whole number within 1..=MAX_PERIOD.
        self.0[index] as usize
    }

    fn real(&self, index: usize) -> f64 {
        self.0[index]
    }

    fn ma_type(&self, index: usize) -> MaType {
        MaType::from_code(self.0[index]).expect("invariant: validated by Param::validate")
    }
}

type Build = fn(&Args) -> Result<Box<dyn Indicator>, IndicatorError>;

/// A built-in indicator as [`create`] knows it.
struct Spec {
    name: &'static str,
    params: &'static [Param],
    build: Build,
}

fn boxed<I: Indicator + 'static>(
    indicator: Result<I, IndicatorError>,
) -> Result<Box<dyn Indicator>, IndicatorError> {
    indicator.map(|i| Box::new(i) as Box<dyn Indicator>)
}

const SPECS: &[Spec] = &[
    Spec {
        name: "SMA",
        params: &[period("timeperiod", 30, 1)],
        build: |a| boxed(SimpleMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "EMA",
        params: &[period("timeperiod", 30, 1)],
        build: |a| boxed(ExponentialMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "WMA",
        params: &[period("timeperiod", 30, 1)],
        build: |a| boxed(WeightedMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "DEMA",
        params: &[period("timeperiod", 30, 1)],
        build: |a| boxed(DoubleExponentialMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "TEMA",
        params: &[period("timeperiod", 30, 1)],
        build: |a| boxed(TripleExponentialMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "RSI",
        params: &[period("timeperiod", 14, 2)],
        build: |a| boxed(RelativeStrengthIndex::new(a.period(0))),
    },
    Spec {
        name: "MACD",
        params: &[
            period("fastperiod", 12, 2),
            period("slowperiod", 26, 2),
            period("signalperiod", 9, 1),
        ],
        build: |a| {
            boxed(MovingAverageConvergenceDivergence::new(
                a.period(0),
                a.period(1),
                a.period(2),
            ))
        },
    },
    Spec {
        name: "ROC",
        params: &[period("timeperiod", 10, 1)],
        build: |a| boxed(RateOfChange::new(a.period(0))),
    },
    Spec {
        name: "MOM",
        params: &[period("timeperiod", 10, 1)],
        build: |a| boxed(Momentum::new(a.period(0))),
    },
    Spec {
        name: "STOCH",
        params: &[
            period("fastk_period", 5, 1),
            period("slowk_period", 3, 1),
            ma_type("slowk_matype"),
            period("slowd_period", 3, 1),
            ma_type("slowd_matype"),
        ],
        build: |a| {
            boxed(Stochastic::new(
                a.period(0),
                a.period(1),
                a.ma_type(2),
                a.period(3),
                a.ma_type(4),
            ))
        },
    },
    Spec {
        name: "CCI",
        params: &[period("timeperiod", 14, 2)],
        build: |a| boxed(CommodityChannelIndex::new(a.period(0))),
    },
    Spec {
        name: "WILLR",
        params: &[period("timeperiod", 14, 2)],
        build: |a| boxed(WilliamsPercentR::new(a.period(0))),
    },
    Spec {
        name: "MFI",
        params: &[period("timeperiod", 14, 2)],
        build: |a| boxed(MoneyFlowIndex::new(a.period(0))),
    },
    Spec {
        name: "ADX",
        params: &[period("timeperiod", 14, 2)],
        build: |a| boxed(AverageDirectionalIndex::new(a.period(0))),
    },
    Spec {
        name: "ATR",
        params: &[period("timeperiod", 14, 1)],
        build: |a| boxed(AverageTrueRange::new(a.period(0))),
    },
    Spec {
        name: "NATR",
        params: &[period("timeperiod", 14, 1)],
        build: |a| boxed(NormalizedAverageTrueRange::new(a.period(0))),
    },
    Spec {
        name: "STDDEV",
        params: &[period("timeperiod", 5, 2), real("nbdev", 1.0)],
        build: |a| boxed(StandardDeviation::new(a.period(0), a.real(1))),
    },
    Spec {
        name: "BBANDS",
        params: &[
            period("timeperiod", 20, 2),
            real("nbdevup", 2.0),
            real("nbdevdn", 2.0),
            ma_type("matype"),
        ],
        build: |a| {
            boxed(BollingerBands::new(
                a.period(0),
                a.real(1),
                a.real(2),
                a.ma_type(3),
            ))
        },
    },
    Spec {
        name: "OBV",
        params: &[],
        build: |_| boxed(Ok(OnBalanceVolume::new())),
    },
    Spec {
        name: "VWAP",
        params: &[Param {
            name: "timeperiod",
            // 0 = cumulative since the first bar (or the last reset).
            kind: Kind::Period { min: 0 },
            default: 0.0,
        }],
        build: |a| {
            let period = a.period(0);
            if period == 0 {
                boxed(Ok(VolumeWeightedAveragePrice::cumulative()))
            } else {
                boxed(VolumeWeightedAveragePrice::rolling(period))
            }
        },
    },
];

/// Names accepted by [`create`], in TA-Lib spelling.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|spec| spec.name)
}

/// The parameters of a built-in indicator with their defaults (TA-Lib's), or `None` for an
/// unknown name.
pub fn default_parameters(name: &str) -> Option<Vec<(&'static str, f64)>> {
    let spec = find_spec(name)?;
    Some(spec.params.iter().map(|p| (p.name, p.default)).collect())
}

fn find_spec(name: &str) -> Option<&'static Spec> {
    SPECS
        .iter()
        .find(|spec| spec.name.eq_ignore_ascii_case(name.trim()))
}

/// Builds a built-in indicator by TA-Lib name (case-insensitive) with TA-Lib parameter names
/// (`timeperiod`, `fastperiod`, `nbdevup`, `slowk_matype`…; case-insensitive). Parameters not
/// given take TA-Lib's defaults. Unknown names, unknown or repeated parameters and values outside
/// TA-Lib's ranges are errors that list what is accepted.
pub fn create(name: &str, params: &[(String, f64)]) -> Result<Box<dyn Indicator>, IndicatorError> {
    let spec = find_spec(name).ok_or_else(|| IndicatorError::UnknownIndicator {
        name: name.to_owned(),
        accepted: builtin_names().collect::<Vec<_>>().join(", "),
    })?;
    let mut values = [0.0; 5];
    let mut given = [false; 5];
    for (i, param) in spec.params.iter().enumerate() {
        values[i] = param.default;
    }
    for (key, value) in params {
        let index = spec
            .params
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(key.trim()))
            .ok_or_else(|| IndicatorError::UnknownParameter {
                indicator: spec.name,
                parameter: key.clone(),
                accepted: describe_params(spec.params),
            })?;
        if given[index] {
            return Err(IndicatorError::DuplicateParameter {
                indicator: spec.name,
                parameter: key.clone(),
            });
        }
        given[index] = true;
        values[index] = spec.params[index].validate(spec.name, *value)?;
    }
    (spec.build)(&Args(&values[..spec.params.len()]))
}

fn describe_params(params: &[Param]) -> String {
    if params.is_empty() {
        return "no parameters".to_owned();
    }
    params
        .iter()
        .map(Param::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
