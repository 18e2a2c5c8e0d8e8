//! The Decimal ledger: cash, positions, cost basis, realized PnL, fees and round-trip trades,
//! and the log of every cost charged.

mod costs;
mod ledger;
mod position;

pub use costs::{CostKind, CostLog, CostRecord};
pub use ledger::{Ledger, LedgerError};
pub use position::Position;
