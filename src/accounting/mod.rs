//! The Decimal ledger: cash, positions, cost basis, realized PnL, fees and round-trip trades.

mod ledger;
mod position;

pub use ledger::{Ledger, LedgerError};
pub use position::Position;
