//! Engine-owned bar state: the loaded series, how many bars of each are closed, and the clock
//! that walks their close times in order.

mod clock;
mod store;

pub use clock::{Clock, Tick};
pub use store::{HistoryView, Market, MarketError};
