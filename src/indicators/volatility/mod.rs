//! Volatility: true range averages, deviation and bands.

mod atr;
mod bbands;
mod natr;
mod stddev;

pub use atr::AverageTrueRange;
pub(crate) use atr::true_range;
pub use bbands::BollingerBands;
pub use natr::NormalizedAverageTrueRange;
pub use stddev::StandardDeviation;
