//! Orders and how they fill against bars: every order type, time in force, the intrabar path,
//! partial fills by volume share, latency, and the cost hooks.

mod book;
mod fees;
mod instrument;
pub mod matching;

pub use book::{BarToMatch, FillCosts, MatchSettings, OrderBook, OrderRejected, OrderRequest};
pub use fees::CommissionModel;
pub use instrument::Instrument;
pub use matching::{BarPrices, PathMode};
