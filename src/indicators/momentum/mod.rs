//! Momentum oscillators.

mod adx;
mod cci;
mod macd;
mod mfi;
mod mom;
mod roc;
mod rsi;
mod stoch;
mod willr;

pub use adx::AverageDirectionalIndex;
pub use cci::CommodityChannelIndex;
pub use macd::MovingAverageConvergenceDivergence;
pub use mfi::MoneyFlowIndex;
pub use mom::Momentum;
pub use roc::RateOfChange;
pub use rsi::RelativeStrengthIndex;
pub use stoch::Stochastic;
pub use willr::WilliamsPercentR;
