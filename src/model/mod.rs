//! Pure domain types shared by every module: no I/O, no Python.

pub mod currency;
pub mod fill;
pub mod order;
pub mod time;
pub mod trade;

pub use currency::Currency;
pub use fill::Fill;
pub use order::{
    Order, OrderEvent, OrderId, OrderKind, OrderSide, OrderStatus, TimeInForce, Trail,
};
pub use time::{TimestampNs, format_timestamp};
pub use trade::ClosedTrade;

/// Index of a symbol in the run's market (dense, assigned in load order).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SymbolId(pub u32);

impl SymbolId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
