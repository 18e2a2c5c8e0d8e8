//! Orders and how they fill against bars. Today: market orders filling at the next bar's open.

mod book;
mod fees;

pub use book::{OrderBook, OrderRejected};
pub use fees::CommissionModel;
