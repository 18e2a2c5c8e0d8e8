//! Built-in technical indicators: incremental, allocation-free per bar, equal to TA-Lib.
//!
//! Every indicator takes one closed bar at a time ([`Indicator::update`]) in O(1) amortized (CCI:
//! O(period), see its doc) and allocates nothing after construction: its windows are ring buffers
//! sized by its parameters. After its warm-up each output equals the real TA-Lib's (the C library
//! 0.8.1 that the `TA-Lib` Python package 0.8.2 ships) on the same input fed from the first bar,
//! within 1e-9 relative or 1e-12 absolute; on the fixtures every value is in fact bit-identical,
//! because the algorithms, seeds, guards, fused multiply-adds and operation order are TA-Lib's.
//! The tests replay `tests/fixtures/talib/`, written by `make_fixtures.py` with the real TA-Lib.
//! Before the warm-up every output is NaN and [`Indicator::is_ready`] is false.
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
    /// Takes the next closed bar. O(1) amortized (CCI: O(period)), no allocation.
    fn update(&mut self, bar: &BarInput);
    /// The primary output of the latest bar: the first of [`outputs`](Indicator::outputs), except
    /// BBANDS (the middle band). NaN until ready.
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
        params: &[period("timeperiod", 30, SimpleMovingAverage::MIN_PERIOD)],
        build: |a| boxed(SimpleMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "EMA",
        params: &[period(
            "timeperiod",
            30,
            ExponentialMovingAverage::MIN_PERIOD,
        )],
        build: |a| boxed(ExponentialMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "WMA",
        params: &[period("timeperiod", 30, WeightedMovingAverage::MIN_PERIOD)],
        build: |a| boxed(WeightedMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "DEMA",
        params: &[period(
            "timeperiod",
            30,
            DoubleExponentialMovingAverage::MIN_PERIOD,
        )],
        build: |a| boxed(DoubleExponentialMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "TEMA",
        params: &[period(
            "timeperiod",
            30,
            TripleExponentialMovingAverage::MIN_PERIOD,
        )],
        build: |a| boxed(TripleExponentialMovingAverage::new(a.period(0))),
    },
    Spec {
        name: "RSI",
        params: &[period("timeperiod", 14, RelativeStrengthIndex::MIN_PERIOD)],
        build: |a| boxed(RelativeStrengthIndex::new(a.period(0))),
    },
    Spec {
        name: "MACD",
        params: &[
            period(
                "fastperiod",
                12,
                MovingAverageConvergenceDivergence::MIN_PERIOD,
            ),
            period(
                "slowperiod",
                26,
                MovingAverageConvergenceDivergence::MIN_PERIOD,
            ),
            period(
                "signalperiod",
                9,
                MovingAverageConvergenceDivergence::MIN_SIGNAL_PERIOD,
            ),
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
        params: &[period("timeperiod", 10, RateOfChange::MIN_PERIOD)],
        build: |a| boxed(RateOfChange::new(a.period(0))),
    },
    Spec {
        name: "MOM",
        params: &[period("timeperiod", 10, Momentum::MIN_PERIOD)],
        build: |a| boxed(Momentum::new(a.period(0))),
    },
    Spec {
        name: "STOCH",
        params: &[
            period("fastk_period", 5, Stochastic::MIN_PERIOD),
            period("slowk_period", 3, Stochastic::MIN_PERIOD),
            ma_type("slowk_matype"),
            period("slowd_period", 3, Stochastic::MIN_PERIOD),
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
        params: &[period("timeperiod", 14, CommodityChannelIndex::MIN_PERIOD)],
        build: |a| boxed(CommodityChannelIndex::new(a.period(0))),
    },
    Spec {
        name: "WILLR",
        params: &[period("timeperiod", 14, WilliamsPercentR::MIN_PERIOD)],
        build: |a| boxed(WilliamsPercentR::new(a.period(0))),
    },
    Spec {
        name: "MFI",
        params: &[period("timeperiod", 14, MoneyFlowIndex::MIN_PERIOD)],
        build: |a| boxed(MoneyFlowIndex::new(a.period(0))),
    },
    Spec {
        name: "ADX",
        params: &[period(
            "timeperiod",
            14,
            AverageDirectionalIndex::MIN_PERIOD,
        )],
        build: |a| boxed(AverageDirectionalIndex::new(a.period(0))),
    },
    Spec {
        name: "ATR",
        params: &[period("timeperiod", 14, AverageTrueRange::MIN_PERIOD)],
        build: |a| boxed(AverageTrueRange::new(a.period(0))),
    },
    Spec {
        name: "NATR",
        params: &[period(
            "timeperiod",
            14,
            NormalizedAverageTrueRange::MIN_PERIOD,
        )],
        build: |a| boxed(NormalizedAverageTrueRange::new(a.period(0))),
    },
    Spec {
        name: "STDDEV",
        params: &[
            period("timeperiod", 5, StandardDeviation::MIN_PERIOD),
            real("nbdev", 1.0),
        ],
        build: |a| boxed(StandardDeviation::new(a.period(0), a.real(1))),
    },
    Spec {
        name: "BBANDS",
        params: &[
            period("timeperiod", 20, BollingerBands::MIN_PERIOD),
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::hint::black_box;
    use std::time::Instant;

    /// TA-Lib reference outputs written by `make_fixtures.py` (see its docstring).
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/talib");

    fn reader(file: &str) -> csv::Reader<std::fs::File> {
        let path = format!("{FIXTURES}/{file}");
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    fn parse(text: &str) -> f64 {
        text.parse()
            .unwrap_or_else(|e| panic!("bad number `{text}`: {e}"))
    }

    /// Header and columns of a fixture CSV.
    fn read_columns(file: &str) -> (Vec<String>, Vec<Vec<f64>>) {
        let mut reader = reader(file);
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let mut columns = vec![Vec::new(); header.len()];
        for record in reader.records() {
            let record = record.unwrap();
            for (column, field) in columns.iter_mut().zip(record.iter()) {
                column.push(parse(field));
            }
        }
        (header, columns)
    }

    fn read_bars(file: &str) -> Vec<BarInput> {
        let (header, columns) = read_columns(file);
        assert_eq!(header, ["open", "high", "low", "close", "volume"]);
        (0..columns[0].len())
            .map(|i| BarInput {
                open: columns[0][i],
                high: columns[1][i],
                low: columns[2][i],
                close: columns[3][i],
                volume: columns[4][i],
            })
            .collect()
    }

    struct Case {
        file: String,
        input: String,
        indicator: String,
        params: Vec<(String, f64)>,
    }

    fn read_cases() -> Vec<Case> {
        let mut reader = reader("cases.csv");
        reader
            .records()
            .map(|record| {
                let record = record.unwrap();
                let params = record[3]
                    .split(';')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (key, value) = p.split_once('=').expect("name=value");
                        (key.to_owned(), parse(value))
                    })
                    .collect();
                Case {
                    file: record[0].to_owned(),
                    input: record[1].to_owned(),
                    indicator: record[2].to_owned(),
                    params,
                }
            })
            .collect()
    }

    /// TA-Lib equality: 1e-9 relative, or 1e-12 absolute near zero.
    fn close_enough(got: f64, want: f64) -> bool {
        let diff = (got - want).abs();
        diff <= 1e-9 * want.abs() || diff <= 1e-12
    }

    #[test]
    fn every_builtin_equals_talib_bar_by_bar() {
        let inputs: HashMap<&str, Vec<BarInput>> = ["input.csv", "input_stress.csv"]
            .into_iter()
            .map(|file| (file, read_bars(file)))
            .collect();
        let cases = read_cases();
        let mut failures = Vec::new();
        // Per indicator: (cases, cases with a non-default parameter).
        let mut tested: HashMap<String, (usize, usize)> = HashMap::new();
        for case in &cases {
            let bars = &inputs[case.input.as_str()];
            let (names, want) = read_columns(&case.file);
            assert_eq!(want[0].len(), bars.len(), "{}", case.file);
            let mut indicator = create(&case.indicator, &case.params)
                .unwrap_or_else(|e| panic!("{}: {e}", case.file));
            let defaults = default_parameters(&case.indicator).expect("a built-in");
            let non_default = case.params.iter().any(|(key, value)| {
                defaults
                    .iter()
                    .any(|(name, default)| name == key && default != value)
            });
            let entry = tested.entry(case.indicator.to_uppercase()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(non_default);
            assert_eq!(indicator.output_names().len(), names.len(), "{}", case.file);
            let first_value = want[0]
                .iter()
                .position(|v| !v.is_nan())
                .expect("TA-Lib produced values");
            if indicator.warm_up_period() != first_value + 1 {
                failures.push(format!(
                    "{}: warm_up_period {} but TA-Lib's first value is at bar {}",
                    case.file,
                    indicator.warm_up_period(),
                    first_value + 1
                ));
            }
            let mut max_relative = 0.0f64;
            let mut inexact = 0;
            let mut first_run = Vec::with_capacity(bars.len());
            for (i, bar) in bars.iter().enumerate() {
                indicator.update(bar);
                first_run.push(indicator.outputs().to_vec());
                if indicator.is_ready() != (i >= first_value) {
                    failures.push(format!(
                        "{}: bar {i}: is_ready() = {} but TA-Lib's first value is at index {first_value}",
                        case.file,
                        indicator.is_ready()
                    ));
                }
                for (column, (&got, expected)) in indicator.outputs().iter().zip(&want).enumerate()
                {
                    let expected = expected[i];
                    let ok = if expected.is_nan() {
                        got.is_nan()
                    } else {
                        !got.is_nan() && close_enough(got, expected)
                    };
                    if !ok {
                        failures.push(format!(
                            "{}: bar {i} `{}`: got {got:?}, TA-Lib {expected:?}",
                            case.file, names[column]
                        ));
                    } else if !expected.is_nan() && got.to_bits() != expected.to_bits() {
                        inexact += 1;
                        // Set to list every bar that is within tolerance but not bit-identical.
                        if std::env::var_os("INDICATORS_PRINT_INEXACT").is_some() {
                            outln!(
                                "  {} bar {i} col {column}: {got:?} vs {expected:?}",
                                case.file
                            );
                        }
                        let relative = (got - expected).abs() / expected.abs().max(1e-300);
                        max_relative = max_relative.max(relative);
                    }
                }
            }
            // reset() gives a fresh indicator: a second pass repeats the first bit for bit.
            indicator.reset();
            assert!(!indicator.is_ready(), "{}: ready after reset", case.file);
            assert!(
                indicator.outputs().iter().all(|v| v.is_nan()),
                "{}",
                case.file
            );
            for (i, bar) in bars.iter().enumerate() {
                indicator.update(bar);
                let same = indicator
                    .outputs()
                    .iter()
                    .zip(&first_run[i])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{}: bar {i} differs after reset()", case.file);
            }
            outln!(
                "{:<58} {:<22} not bit-identical: {inexact:>4}, max relative difference {max_relative:.1e}",
                case.file,
                indicator.name()
            );
        }
        failures.truncate(40);
        assert!(
            failures.is_empty(),
            "differences from TA-Lib:\n{}",
            failures.join("\n")
        );
        // Every built-in is covered, with at least one non-default parameter set.
        for name in builtin_names() {
            let (cases, non_default) = tested.get(name).copied().unwrap_or_default();
            let has_params = !default_parameters(name).unwrap().is_empty();
            assert!(cases > 0, "{name}: no fixture");
            assert!(
                !has_params || non_default > 0,
                "{name}: only default parameters tested"
            );
        }
    }

    #[test]
    fn create_accepts_talib_names_and_defaults() {
        let rsi = create("rsi", &[]).unwrap();
        assert_eq!(rsi.name(), "RSI(14)");
        assert_eq!(rsi.warm_up_period(), 15);
        let macd = create("MACD", &[("SignalPeriod".to_owned(), 5.0)]).unwrap();
        assert_eq!(macd.name(), "MACD(12,26,5)");
        assert_eq!(macd.output_names(), ["macd", "macdsignal", "macdhist"]);
        let bbands = create("BBANDS", &[]).unwrap();
        assert_eq!(bbands.name(), "BBANDS(20,2,2)");
        let stoch = create("stoch", &[("slowd_matype".to_owned(), 1.0)]).unwrap();
        assert_eq!(stoch.name(), "STOCH(5,3,SMA,3,EMA)");
        assert_eq!(create("vwap", &[]).unwrap().name(), "VWAP");
        assert_eq!(
            create("VWAP", &[("timeperiod".to_owned(), 20.0)])
                .unwrap()
                .name(),
            "VWAP(20)"
        );
        assert_eq!(
            default_parameters("Stoch").unwrap(),
            [
                ("fastk_period", 5.0),
                ("slowk_period", 3.0),
                ("slowk_matype", 0.0),
                ("slowd_period", 3.0),
                ("slowd_matype", 0.0)
            ]
        );
        assert_eq!(builtin_names().count(), 20);
        for name in builtin_names() {
            let indicator = create(name, &[]).unwrap();
            assert!(!indicator.is_ready(), "{name}");
            assert!(indicator.outputs().iter().all(|v| v.is_nan()), "{name}");
            assert_eq!(indicator.outputs().len(), indicator.output_names().len());
        }
    }

    #[test]
    fn create_errors_list_what_is_accepted() {
        let error = create("SMMA", &[]).err().unwrap().to_string();
        assert!(error.starts_with("unknown indicator `SMMA`"), "{error}");
        assert!(error.contains("SMA, EMA, WMA"), "{error}");

        let error = create("RSI", &[("period".to_owned(), 14.0)]).err().unwrap();
        assert!(matches!(error, IndicatorError::UnknownParameter { .. }));
        let text = error.to_string();
        assert!(text.contains("`RSI` has no parameter `period`"), "{text}");
        assert!(
            text.contains("`timeperiod` (an integer from 2 to 100000, default 14)"),
            "{text}"
        );

        let error = create("OBV", &[("timeperiod".to_owned(), 3.0)])
            .err()
            .unwrap();
        assert!(
            error.to_string().ends_with("it accepts no parameters"),
            "{error}"
        );

        for (name, param, value) in [
            ("RSI", "timeperiod", 1.0),
            ("SMA", "timeperiod", 2.5),
            ("SMA", "timeperiod", 100_001.0),
            ("EMA", "timeperiod", f64::NAN),
            ("STDDEV", "nbdev", f64::INFINITY),
            ("BBANDS", "matype", 7.0),
            ("MACD", "signalperiod", 0.0),
            ("VWAP", "timeperiod", -1.0),
        ] {
            let error = create(name, &[(param.to_owned(), value)]).err().unwrap();
            assert!(
                matches!(error, IndicatorError::InvalidParameter { .. }),
                "{name} {param}={value}: {error}"
            );
        }
        let error = create("BBANDS", &[("matype".to_owned(), 7.0)])
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains("0 (SMA), 1 (EMA), 2 (WMA), 3 (DEMA), 4 (TEMA)")
        );

        let twice = [
            ("timeperiod".to_owned(), 3.0),
            ("TimePeriod".to_owned(), 4.0),
        ];
        assert!(matches!(
            create("SMA", &twice).err().unwrap(),
            IndicatorError::DuplicateParameter { .. }
        ));
    }

    #[test]
    fn typed_constructors_validate_like_create() {
        assert!(RelativeStrengthIndex::new(1).is_err());
        assert!(MovingAverageConvergenceDivergence::new(12, 26, 0).is_err());
        assert!(StandardDeviation::new(5, f64::NAN).is_err());
        assert!(BollingerBands::new(20, 2.0, 4e37, MaType::Sma).is_err());
        assert!(VolumeWeightedAveragePrice::rolling(0).is_err());
        let error = Stochastic::new(0, 3, MaType::Sma, 3, MaType::Sma)
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "invalid `fastk_period` = 0 for `STOCH`: expected an integer from 1 to 100000"
        );
    }

    /// EMA at every bar from its closed form: the seed (mean of the first `period` values)
    /// decayed by (1 − k)ⁿ plus every later value weighted k(1 − k)^age.
    fn ema_closed_form(values: &[f64], period: usize, bar: usize) -> f64 {
        let k = 2.0 / (period as f64 + 1.0);
        let seed = values[..period].iter().sum::<f64>() / period as f64;
        let steps = bar + 1 - period;
        let mut value = seed * (1.0 - k).powi(steps as i32);
        for (age, x) in values[period..=bar].iter().rev().enumerate() {
            value += k * (1.0 - k).powi(age as i32) * x;
        }
        value
    }

    proptest! {
        #[test]
        fn incremental_sma_equals_naive_mean(
            values in prop::collection::vec(-1e3f64..1e3, 1..200),
            period in 1usize..20,
        ) {
            let mut sma = SimpleMovingAverage::new(period).unwrap();
            for (i, &x) in values.iter().enumerate() {
                let got = sma.update_value(x);
                if i + 1 < period {
                    prop_assert!(got.is_nan());
                    prop_assert!(!sma.is_ready());
                } else {
                    let window = &values[i + 1 - period..=i];
                    let want = window.iter().sum::<f64>() / period as f64;
                    prop_assert!((got - want).abs() <= 1e-9, "bar {}: {} vs {}", i, got, want);
                    prop_assert!(sma.is_ready());
                }
            }
        }

        #[test]
        fn incremental_ema_equals_closed_form(
            values in prop::collection::vec(-1e3f64..1e3, 1..150),
            period in 1usize..20,
        ) {
            let mut ema = ExponentialMovingAverage::new(period).unwrap();
            for (i, &x) in values.iter().enumerate() {
                let got = ema.update_value(x);
                if i + 1 < period {
                    prop_assert!(got.is_nan());
                } else {
                    let want = ema_closed_form(&values, period, i);
                    prop_assert!((got - want).abs() <= 1e-9, "bar {}: {} vs {}", i, got, want);
                }
            }
        }
    }

    /// A deterministic random-walk series (xorshift), built before timing.
    fn synthetic_bars(count: usize) -> Vec<BarInput> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut close = 100.0;
        (0..count)
            .map(|_| {
                let open = close;
                close = open * (1.0 + (uniform() - 0.5) * 0.02);
                let high = open.max(close) * (1.0 + uniform() * 0.005);
                let low = open.min(close) * (1.0 - uniform() * 0.005);
                BarInput {
                    open,
                    high,
                    low,
                    close,
                    volume: (uniform() * 10_000.0).round(),
                }
            })
            .collect()
    }

    /// `cargo test --release -- --ignored --nocapture indicator_throughput`
    #[test]
    #[ignore = "timing; run in release with --ignored --nocapture"]
    fn indicator_throughput() {
        let bars = synthetic_bars(1_000_000);
        outln!("ns per bar over {} bars (default parameters):", bars.len());
        for name in builtin_names() {
            let mut indicator = create(name, &[]).unwrap();
            // One untimed pass warms caches and branch predictors.
            for bar in &bars[..10_000] {
                indicator.update(bar);
            }
            indicator.reset();
            let start = Instant::now();
            for bar in &bars {
                indicator.update(black_box(bar));
            }
            let elapsed = start.elapsed();
            black_box(indicator.outputs());
            outln!(
                "{:<16} {:>6.1} ns/bar",
                indicator.name(),
                elapsed.as_nanos() as f64 / bars.len() as f64
            );
        }
    }
}
