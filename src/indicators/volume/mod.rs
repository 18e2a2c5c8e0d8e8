//! Volume-based indicators.

mod obv;
mod vwap;

pub use obv::OnBalanceVolume;
pub use vwap::VolumeWeightedAveragePrice;
